//! The audit record of a run, for analysts and auditors (docs/audit.md): the run's report, one
//! self-contained HTML file rebuilt from the run directory ([`report`]); the snapshot queryable
//! in place as BigQuery external tables or DuckDB views ([`external`]); and the runs under a
//! destination, listed with their state, chain and records ([`runs`]).
//!
//! Input: a manifest or a destination, the records `load` and `validate` left beside the runs,
//! and (for the report's per-day counts) BigQuery and Postgres as they are now. Output: the
//! report, DDL, views, a listing. It never changes a run's snapshot, manifest or records.

pub mod contents;
pub mod external;
pub mod html;
pub mod report;
pub mod runs;

use crate::gcp::bigquery::BigQueryError;
use crate::storage::manifest::ManifestError;
use crate::storage::records::RecordError;
use crate::storage::store::StoreError;

/// Why an audit command could not finish.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Manifest(Box<ManifestError>),
    #[error(transparent)]
    Record(Box<RecordError>),
    #[error("cannot write the report to `{uri}`")]
    WriteReport {
        uri: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("cannot write the report to `{path}`")]
    WriteLocal {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list the runs under `{uri}`")]
    ListRuns {
        uri: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("cannot read `{uri}`")]
    Read {
        uri: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("no committed run under `{dest}` exports {tables}: `--since latest` needs one (list them with `pg2bq runs --dest {dest}`)")]
    NoCommittedRun { dest: String, tables: String },
    #[error("BigQuery external tables read files from GCS; the snapshot `{uri}` is not in a gs:// bucket. Query it with `--duckdb FILE.sql` instead")]
    NotInGcs { uri: String },
    #[error("`--time-column {column}` names no DATE or TIMESTAMP column of the run's tables; the run recorded days of: {recorded}")]
    UnknownTimeColumn { column: String, recorded: String },
    #[error(transparent)]
    BigQuery(Box<BigQueryError>),
}

impl From<BigQueryError> for AuditError {
    fn from(error: BigQueryError) -> Self {
        Self::BigQuery(Box::new(error))
    }
}

impl From<ManifestError> for AuditError {
    fn from(error: ManifestError) -> Self {
        Self::Manifest(Box::new(error))
    }
}

impl From<RecordError> for AuditError {
    fn from(error: RecordError) -> Self {
        Self::Record(Box::new(error))
    }
}
