//! One function per command: read the config file, resolve the settings, run the stage, print
//! its result on stdout. Each returns whether the checks passed (`false` → exit code 1).

use pg2bq::audit::contents::FilesCheck;
use pg2bq::audit::external::ExternalConfig;
use pg2bq::audit::report::ReportConfig;
use pg2bq::cli::env;
use pg2bq::cli::{
    Command, ExportArgs, ExternalArgs, Format, LoadArgs, OutputArgs, ReportArgs, RunsArgs, ValidateArgs, VerifyArgs, WorkArgs,
};
use pg2bq::config::ConfigFile;
use pg2bq::export::config::{ExportConfig, WorkConfig};
use pg2bq::export::{ExportError, PlanError};
use pg2bq::load::{LoadConfig, LoadError};
use pg2bq::validate::ValidateConfig;
use pg2bq::verify::VerifyConfig;
use pg2bq::{Error, ExportOutcome, LoadOutcome};

use crate::report::{self, Output, Stage};

/// Runs one command.
///
/// # Errors
/// The stage's [`Error`], or a dry-run plan the run would refuse.
pub async fn run(command: Command, output: &Output) -> Result<bool, Error> {
    match command {
        Command::Export(args) => export(&args, output).await,
        Command::Load(args) => load(&args, output).await,
        Command::Validate(args) => validate(&args, output).await,
        Command::Verify(args) => verify(&args).await,
        Command::Work(args) => work(&args).await,
        Command::Report(args) => write_report(&args).await,
        Command::External(args) => external(&args).await,
        Command::Runs(args) => runs(&args).await,
    }
}

async fn export(args: &ExportArgs, output: &Output) -> Result<bool, Error> {
    let file = ConfigFile::load_or_default(args.config.as_deref())?;
    let mut config = ExportConfig::resolve(args, file, std::env::var(env::DATABASE_URL).ok())?;
    if config.since.as_deref() == Some(LATEST) {
        let tables: Vec<String> = config.tables.iter().map(|t| t.name.clone()).collect();
        let manifest = pg2bq::audit::runs::latest_committed(&config.destination, &tables, &config.gcs).await?;
        tracing::info!(manifest = %manifest, "--since latest: continuing the newest committed run of these tables");
        config.since = Some(manifest);
    }
    let progress = output.reporter(Stage::Export);
    let outcome = pg2bq::export(&config, progress.as_deref()).await;
    output.finish(outcome.is_ok());
    let outcome = outcome?;
    report::print_export(&outcome, json(&args.output));
    if let ExportOutcome::Planned(plan) = &outcome {
        if !plan.problems.is_empty() {
            // The plan is printed; the run it describes would be refused.
            let problems = plan.problems.clone();
            return Err(ExportError::Plan(PlanError::Refused { problems }).into());
        }
    }
    Ok(true)
}

async fn load(args: &LoadArgs, output: &Output) -> Result<bool, Error> {
    let file = ConfigFile::load_or_default(args.config.as_deref())?;
    let config = LoadConfig::resolve(args, file)?;
    let progress = output.reporter(Stage::Load);
    let outcome = pg2bq::load(&config, progress.as_deref()).await;
    output.finish(outcome.is_ok());
    let outcome = outcome?;
    report::print_load(&outcome, json(&args.output));
    if let LoadOutcome::Planned(plan) = &outcome {
        if !plan.problems.is_empty() {
            // The plan is printed; the load it describes would be refused.
            return Err(LoadError::Refused { problems: plan.problems.clone() }.into());
        }
    }
    Ok(true)
}

async fn validate(args: &ValidateArgs, output: &Output) -> Result<bool, Error> {
    let file = ConfigFile::load_or_default(args.config.as_deref())?;
    let config = ValidateConfig::resolve(args, file)?;
    let progress = output.reporter(Stage::Validate);
    let report = pg2bq::validate::validate(&config, progress.as_deref()).await;
    output.finish(report.is_ok());
    let mut report = report?;
    if args.strict && report.skipped > 0 {
        // --strict: a check that could not run fails the run as a difference would.
        report.passed = false;
    }
    report::print_validation(&report, json(&args.output));
    Ok(report.passed)
}

async fn verify(args: &VerifyArgs) -> Result<bool, Error> {
    let config = VerifyConfig::resolve(args);
    let report = pg2bq::verify::verify(&config.manifest_uri, &config.gcs).await?;
    report::print_verification(&report, json(&args.output));
    Ok(report.passed)
}

async fn work(args: &WorkArgs) -> Result<bool, Error> {
    let config = WorkConfig::resolve(args, |name| std::env::var(name).ok())?;
    let outcome = pg2bq::export::sharded::worker::work(&config).await?;
    report::print_work(&outcome, json(&args.output));
    Ok(true)
}

/// `export --since latest`.
const LATEST: &str = "latest";

/// `report`: verifies the run's files first (the report says whether they still match), then
/// writes the report.
async fn write_report(args: &ReportArgs) -> Result<bool, Error> {
    let config = ReportConfig::resolve(args);
    let verified = pg2bq::verify::verify(&config.manifest_uri, &config.gcs).await?;
    let files = FilesCheck {
        intact: verified.passed,
        files_checked: verified.files_checked,
        problems: verified.problems.iter().map(|p| format!("{}: expected {}, found {}", p.check, p.expected, p.actual)).collect(),
    };
    let outcome = pg2bq::audit::report::report(&config, files).await?;
    report::print_report(&outcome, json(&args.output));
    Ok(true)
}

async fn external(args: &ExternalArgs) -> Result<bool, Error> {
    let config = ExternalConfig::resolve(args)?;
    let outcome = pg2bq::audit::external::external(&config).await?;
    report::print_external(&outcome, json(&args.output));
    Ok(true)
}

async fn runs(args: &RunsArgs) -> Result<bool, Error> {
    let dest: String = args.dest.clone().into();
    let runs = pg2bq::audit::runs::list_runs(&dest, &args.gcs.options()).await?;
    report::print_runs(&runs, json(&args.output));
    Ok(true)
}

/// Whether the result goes out as JSON (`--json`, `--format json`).
fn json(output: &OutputArgs) -> bool {
    output.format() == Format::Json
}
