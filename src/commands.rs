//! One function per command: read the config file, resolve the settings, run the stage, print
//! its result. Each returns whether the checks passed (`false` → exit code 1).

use std::io::IsTerminal;
use std::sync::Arc;

use pg2bq::cli::env;
use pg2bq::cli::{Command, ExportArgs, LoadArgs, Progress, ValidateArgs, VerifyArgs};
use pg2bq::config::ConfigFile;
use pg2bq::export::config::ExportConfig;
use pg2bq::export::{ExportError, PlanError};
use pg2bq::load::LoadConfig;
use pg2bq::model::progress::{ProgressCounter, ProgressReporter};
use pg2bq::validate::ValidateConfig;
use pg2bq::{Error, ExportOutcome};

use crate::report::{self, ProgressBoard, Stage};

/// Where logs and progress go: the bars (when shown) and the log subscriber writing around them.
pub struct Output {
    board: Option<Arc<ProgressBoard>>,
}

impl Output {
    /// Installs the log subscriber on stderr, drawing bars unless `progress` says otherwise.
    pub fn start(progress: Progress, verbose: u8) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let board = match progress {
            Progress::On => true,
            Progress::Off => false,
            Progress::Auto => terminal,
        }
        .then(|| Arc::new(ProgressBoard::new(terminal)));
        let log_writer = board.as_ref().map(|board| board.log_writer()).unwrap_or_default();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter(verbose)));
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || log_writer.clone()).with_ansi(terminal).init();
        Self { board }
    }

    /// A bar per table of `stage`, when bars are shown.
    fn reporter(&self, stage: Stage) -> Option<Box<ProgressReporter>> {
        let board = self.board.clone()?;
        Some(Box::new(move |table: &str, counter: &ProgressCounter| board.add(stage, table, counter)))
    }

    /// Draws the bars' final state before anything else is printed.
    fn finish(&self, succeeded: bool) {
        if let Some(board) = &self.board {
            board.finish(succeeded);
        }
    }
}

/// Without RUST_LOG: INFO from pg2bq and warnings from its dependencies; `-v` adds pg2bq's
/// DEBUG lines (per batch, per query) and the dependencies' INFO; `-vv` pg2bq's TRACE (SQL,
/// every check) and the dependencies' DEBUG.
fn default_log_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "pg2bq=info,warn",
        1 => "pg2bq=debug,info",
        _ => "pg2bq=trace,debug",
    }
}

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
    }
}

async fn export(args: &ExportArgs, output: &Output) -> Result<bool, Error> {
    let file = ConfigFile::load_or_default(args.config.as_deref())?;
    let config = ExportConfig::resolve(args, file, std::env::var(env::DATABASE_URL).ok())?;
    let progress = output.reporter(Stage::Export);
    let outcome = pg2bq::export(&config, progress.as_deref()).await;
    output.finish(outcome.is_ok());
    let outcome = outcome?;
    report::print_export(&outcome, args.json);
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
    report::print_load(&outcome?, args.json);
    Ok(true)
}

async fn validate(args: &ValidateArgs, output: &Output) -> Result<bool, Error> {
    let file = ConfigFile::load_or_default(args.config.as_deref())?;
    let config = ValidateConfig::resolve(args, file)?;
    let progress = output.reporter(Stage::Validate);
    let report = pg2bq::validate::validate(&config, progress.as_deref()).await;
    output.finish(report.is_ok());
    let report = report?;
    report::print_validation(&report, args.json);
    Ok(report.passed)
}

async fn verify(args: &VerifyArgs) -> Result<bool, Error> {
    let report = pg2bq::verify::verify(&args.manifest, &args.gcp.gcs()).await?;
    report::print_verification(&report, args.json);
    Ok(report.passed)
}
