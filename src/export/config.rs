//! What `export` is asked to do, every option resolved (by `crate::config`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::export::parquet::ParquetSettings;
use crate::model::run_id::RunId;
use crate::model::shard::WorkerIdentity;
use crate::model::table_ref::TableRef;
use crate::model::types::{CastOverride, OnBadValue, OutOfRange};
use crate::storage::gcs::GcsOptions;

/// Everything `export` needs.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// A `postgresql://` URL with connection defaults (see [`crate::source::postgres::with_connection_defaults`]).
    pub source_url: String,
    pub destination: String,
    /// Every table and query once, with its options resolved.
    pub tables: Vec<ExportTable>,
    pub run_id: Option<RunId>,
    /// Take the run over from an earlier attempt even if pg2bq cannot tell that it is gone.
    pub take_over: bool,
    /// Keep the units an earlier attempt of `run_id` recorded and export only the rest.
    pub resume: bool,
    /// Workers exporting units at once, across all tables.
    pub jobs: usize,
    /// `--since`: the manifest of the earlier run this one continues (a tail export).
    pub since: Option<String>,
    /// `--carry-changes`: a tail carries the rows changed below its watermark and the keys of
    /// those deleted, instead of being refused.
    pub carry_changes: bool,
    pub dry_run: bool,
    pub parquet: ParquetSettings,
    pub batch_rows: usize,
    pub gcs: GcsOptions,
    /// `--coordinate`: hand the units to workers on other machines instead of running them.
    pub coordinate: Option<Coordination>,
    /// `--lock-timeout`: how long the snapshot's session waits to lock each table.
    pub lock_timeout: Duration,
    /// `--lock-wait`: how long a unit's statement waits for a lock (zero: it does not).
    pub lock_wait: Duration,
}

/// `export --coordinate`: how many workers run the units, and how long they may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coordination {
    pub workers: usize,
    /// The run is given up (and its files removed) when the workers have not recorded every
    /// unit by then, so no snapshot is held open forever.
    pub deadline: Duration,
}

/// `pg2bq work`: one worker of a sharded run.
#[derive(Debug, Clone)]
pub struct WorkConfig {
    /// `<dest>/<run-id>/plan.json`, written by the coordinator.
    pub plan_uri: String,
    /// The source's URL with its credentials, which the plan never holds.
    pub source_url: String,
    pub identity: WorkerIdentity,
    pub gcs: GcsOptions,
    /// `--lock-wait`: how long a unit's statement waits for a lock (zero: it does not).
    pub lock_wait: Duration,
}

/// One table or query of a run, every option resolved (flags > environment > file > default).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportTable {
    /// The name the table goes by in the run: its [`TableRef`] displayed (`"sales.eu".orders`),
    /// or the query's name.
    pub name: String,
    pub source: TableSource,
    pub casts: BTreeMap<String, CastOverride>,
    /// `--partitions N`: ranges per relation read; `None` sizes units automatically
    /// (see [`crate::export::plan`]).
    pub partitions: Option<usize>,
    pub partition_on: Option<String>,
    pub out_of_range: OutOfRange,
    /// `--on-bad-value`: refuse the table, or quarantine the rows BigQuery cannot hold.
    pub on_bad_value: OnBadValue,
    /// `--watermark`: the column a tail export continues by (default: an integer primary key).
    pub watermark: Option<String>,
    /// `--updated-at`: a column the app sets to the time of every insert and update, by which a
    /// tail's check re-reads only the rows changed since the parent's snapshot.
    pub updated_at: Option<String>,
}

/// Where a table's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSource {
    Table(TableRef),
    /// One SELECT, trailing `;` removed.
    Query(String),
}
