//! What a load plan is made of, below the planners (`plan.rs`, `deletes.rs`): the BigQuery
//! jobs it runs and why a plan cannot be made.

use serde::Serialize;
use serde_json::{json, Value};

use crate::gcp::routes::RouteProblem;
use crate::gcp::runs::LoadMode;

/// What a load job does to rows already in its destination, displayed and serialised as
/// BigQuery names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDisposition {
    WriteTruncate,
    WriteAppend,
}

impl std::fmt::Display for WriteDisposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteDisposition::WriteTruncate => "WRITE_TRUNCATE",
            WriteDisposition::WriteAppend => "WRITE_APPEND",
        })
    }
}

impl Serialize for WriteDisposition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadJob {
    pub job_id: String,
    pub destination_table_id: String,
    pub write_disposition: WriteDisposition,
    pub uris: Vec<String>,
    pub bytes: u64,
    pub rows: u64,
    /// The job's `configuration` as `jobs.insert` takes it.
    pub configuration: Value,
}

impl LoadJob {
    /// The job's files for messages: the one URI, or the first and last of several.
    pub fn files(&self) -> String {
        match self.uris.as_slice() {
            [one] => one.clone(),
            many => format!("{} … {} ({} files)", many[0], many[many.len() - 1], many.len()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryJob {
    pub job_id: String,
    pub sql: String,
    /// The job's `configuration` as `jobs.insert` takes it.
    pub configuration: Value,
}

impl QueryJob {
    pub fn new(job_id: String, sql: String) -> Self {
        let configuration = json!({ "query": { "query": sql, "useLegacySql": false } });
        Self { job_id, sql, configuration }
    }
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadPlanError {
    #[error("table `{table}` would load from `{uri}`: BigQuery loads from gs:// only; export to a gs:// destination (or copy the run directory to a bucket)")]
    NotOnGcs { table: String, uri: String },
    #[error("--partition-by names column `{column}` of table `{table}`, which {reason}")]
    Partition { table: String, column: String, reason: String },
    #[error("--cluster-by names column `{column}`, which table `{table}` does not have")]
    Cluster { table: String, column: String },
    #[error("--partition-by/--cluster-by/--table-map/--column-map/--key name table `{table}`, which the manifest does not hold")]
    UnknownTable { table: String },
    #[error("table `{table}` cannot be loaded into the existing table `{table_id}`; nothing was loaded:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Routing { table: String, table_id: String, problems: Vec<RouteProblem> },
    #[error("table `{table}` is a tail of run `{since_run}` that carried changes; nothing was loaded: {reason}")]
    CarriedChanges { table: String, since_run: String, reason: String },
    #[error("table `{table}`: cannot merge by key ({key}): {reason}")]
    MergeKey { table: String, key: String, reason: String },
    #[error("snapshot tables {} would all go to table `{table_id}`: in {} mode each would {}; nothing was loaded. Map each to a table of its own (--table-map), or append them with --mode append", sources.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "), mode.as_str(), if *mode == LoadMode::Truncate { "replace the rows of the one before" } else { "merge into the rows of the other by key, and validate could not tell their rows apart" })]
    FanIn { table_id: String, sources: Vec<String>, mode: LoadMode },
}
