//! The `pg2bq` binary: parse flags, set up logging, run a stage, map the result to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use pg2bq::cli::{Cli, Command, Progress};
use pg2bq::config::{env, ConfigFile, ExportConfig};
use pg2bq::load::LoadConfig;
use pg2bq::validate::ValidateConfig;

mod report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = ["info", "debug", "trace"][usize::from(cli.verbose.min(2))];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("pg2bq={default_level},warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init();
    let show_progress = match cli.progress {
        Progress::On => true,
        Progress::Off => false,
        Progress::Auto => std::io::stderr().is_terminal(),
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
                let outcome = pg2bq::export(&config, show_progress.then_some(&report::spawn_progress as _)).await?;
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
                let outcome = pg2bq::load(&config).await?;
                report::print_load(&outcome, args.json);
                Ok(true)
            }
            Command::Validate(args) => {
                let file = match &args.config {
                    Some(path) => ConfigFile::load(path)?,
                    None => ConfigFile::default(),
                };
                let config = ValidateConfig::resolve(&args, file)?;
                let report = pg2bq::validate::validate(&config).await?;
                report::print_validation(&report, args.json);
                Ok(report.passed)
            }
            Command::Verify(args) => {
                let report = pg2bq::validate::verify::verify(&args.manifest, &args.gcp.gcs()).await?;
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
