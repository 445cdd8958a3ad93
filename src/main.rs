//! The `pg2bq` binary: parse flags, set up logging, run a stage, map the result to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use pg2bq::cli::{Cli, Command, Progress};
use pg2bq::config::{env, ConfigFile};
use pg2bq::export::config::ExportConfig;
use pg2bq::load::LoadConfig;
use pg2bq::validate::ValidateConfig;

mod report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let terminal = std::io::stderr().is_terminal();
    let board = match cli.progress {
        Progress::On => true,
        Progress::Off => false,
        Progress::Auto => terminal,
    }
    .then(|| std::sync::Arc::new(report::ProgressBoard::new(terminal)));
    let log_writer = board.as_ref().map(|board| board.log_writer()).unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter(cli.verbose)));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || log_writer.clone()).with_ansi(terminal).init();
    let reporter = |stage| {
        let board = board.clone()?;
        Some(move |table: &str, counter: &pg2bq::model::progress::ProgressCounter| board.add(stage, table, counter))
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Export(args) => {
                let file = match &args.config {
                    Some(path) => ConfigFile::load(path)?,
                    None => ConfigFile::default(),
                };
                let config = ExportConfig::resolve(&args, file, std::env::var(env::DATABASE_URL).ok())?;
                let progress = reporter(report::Stage::Export);
                let outcome = pg2bq::export(&config, progress.as_ref().map(|p| p as _)).await;
                finish(&board, outcome.is_ok());
                let outcome = outcome?;
                report::print_export(&outcome, args.json);
                if let pg2bq::ExportOutcome::Planned(plan) = &outcome {
                    if !plan.problems.is_empty() {
                        // The plan is printed; the run it describes would be refused.
                        let problems = plan.problems.clone();
                        return Err(pg2bq::export::ExportError::Plan(pg2bq::export::PlanError::Refused { problems }).into());
                    }
                }
                Ok::<bool, pg2bq::Error>(true)
            }
            Command::Load(args) => {
                let file = match &args.config {
                    Some(path) => ConfigFile::load(path)?,
                    None => ConfigFile::default(),
                };
                let config = LoadConfig::resolve(&args, file)?;
                let progress = reporter(report::Stage::Load);
                let outcome = pg2bq::load(&config, progress.as_ref().map(|p| p as _)).await;
                finish(&board, outcome.is_ok());
                let outcome = outcome?;
                report::print_load(&outcome, args.json);
                Ok(true)
            }
            Command::Validate(args) => {
                let file = match &args.config {
                    Some(path) => ConfigFile::load(path)?,
                    None => ConfigFile::default(),
                };
                let config = ValidateConfig::resolve(&args, file)?;
                let progress = reporter(report::Stage::Validate);
                let report = pg2bq::validate::validate(&config, progress.as_ref().map(|p| p as _)).await;
                finish(&board, report.is_ok());
                let report = report?;
                report::print_validation(&report, args.json);
                Ok(report.passed)
            }
            Command::Verify(args) => {
                let report = pg2bq::verify::verify(&args.manifest, &args.gcp.gcs()).await?;
                report::print_verification(&report, args.json);
                Ok(report.passed)
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        // The checks ran and found mismatches.
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            report::print_error(&error);
            ExitCode::from(2)
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

/// Draws the bars' final state before anything else is printed.
fn finish(board: &Option<std::sync::Arc<report::ProgressBoard>>, succeeded: bool) {
    if let Some(board) = board {
        board.finish(succeeded);
    }
}
