//! The `pg2bq` binary: parse flags, set up logging, run a stage, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use pg2bq::cli::Cli;

mod commands;
mod report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = report::Output::start(cli.progress, cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let result = runtime.block_on(commands::run(cli.command, &output));
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
