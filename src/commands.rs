//! One function per command: read the config file, resolve the settings, run the stage, print
//! its result on stdout. Each returns whether the checks passed (`false` → exit code 1).

use pg2bq::cli::env;
use pg2bq::cli::{Command, ExportArgs, Format, LoadArgs, OutputArgs, ValidateArgs, VerifyArgs, WorkArgs};
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
    }
}

async fn export(args: &ExportArgs, output: &Output) -> Result<bool, Error> {
    let file = ConfigFile::load_or_default(args.config.as_deref())?;
    let config = ExportConfig::resolve(args, file, std::env::var(env::DATABASE_URL).ok())?;
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

/// Whether the result goes out as JSON (`--json`, `--format json`).
fn json(output: &OutputArgs) -> bool {
    output.format() == Format::Json
}
