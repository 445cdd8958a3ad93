//! pg2bq: PostgreSQL → Parquet snapshot (with a manifest that proves it) → BigQuery.
//!
//! Layers, each importing only those above it in this list (docs/architecture.md; the
//! `layers` integration test enforces it):
//! - [`model`]: the type table, the manifest, aggregates; no I/O.
//! - [`gcp`]: the BigQuery client, its SQL, retries. [`storage`]: object stores, run claims,
//!   reading a committed run. [`source`]: Postgres.
//! - The stages [`export`], [`load`], [`validate`], [`verify`], and [`audit`] (the report,
//!   external tables, the runs listed): none imports another.
//! - [`config`] resolves flags, environment and file into each stage's config; [`cli`] is the
//!   only module that knows clap, `report` (in the binary) the only one that knows terminals.

pub mod audit;
pub mod cli;
pub mod config;
pub mod export;
pub mod gcp;
pub mod load;
pub mod model;
pub mod source;
pub mod storage;
pub mod validate;
pub mod verify;

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
    Verify(#[from] verify::VerifyError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}
