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
pub mod sink;
pub mod source;
pub mod validate;

pub use export::{export, ExportOutcome};
pub use load::{load, LoadOutcome};

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
