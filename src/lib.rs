//! pg2bq: PostgreSQL → Parquet snapshot (with a manifest that proves it) → BigQuery.
//!
//! Stages: [`source`] reads Postgres, [`batches`] pins Arrow types, [`aggregates`] computes
//! what validation compares, [`sink`] writes Parquet and the manifest, [`export`] runs them.

pub mod aggregates;
pub mod batches;
pub mod cli;
pub mod config;
pub mod export;
pub mod fingerprint;
pub mod load;
pub mod progress;
pub mod retry;
pub mod sink;
pub mod source;
pub mod validate;

pub use export::{export, ExportOutcome};
pub use load::{load, LoadOutcome};

/// The messages of an error and of each of its sources, outermost first.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(error), |e| e.source()).map(|e| e.to_string()).collect()
}

/// Every error pg2bq reports, by the stage that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Export(#[from] export::ExportError),
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error(transparent)]
    Validate(#[from] validate::ValidateError),
    #[error(transparent)]
    Verify(#[from] validate::verify::VerifyError),
}
