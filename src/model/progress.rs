//! Live per-table counters that export, load and validate advance as they work, for whoever
//! shows progress (the binary draws them; the library never prints), and what export reports
//! of each unit once it is done.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::Serialize;

/// One table's work in a stage. The stage sets what is planned and adds to the counters;
/// readers only load them.
#[derive(Debug, Default)]
pub struct TableProgress {
    /// Rows planned (export, load); 0 where the size is not known up front (validate).
    pub planned_rows: u64,
    /// Load jobs planned (load).
    pub planned_jobs: u64,
    /// Units planned (export).
    pub planned_units: u64,
    /// Rows exported or loaded so far.
    pub rows: AtomicU64,
    /// Bytes so far: Arrow data read from Postgres (export), Parquet files loaded (load).
    pub bytes: AtomicU64,
    /// Load jobs done (load).
    pub jobs: AtomicU64,
    /// Units done, recorded ones of a resumed run included (export).
    pub units: AtomicU64,
    /// Units a worker is reading now (export).
    pub running_units: AtomicU64,
    /// Unit attempts that failed transiently and were retried (export).
    pub retries: AtomicU64,
    /// Checks run and failed so far (validate).
    pub checks: AtomicU64,
    pub failed_checks: AtomicU64,
}

/// A table's live counters, shared between the stage and the reporter.
pub type ProgressCounter = Arc<TableProgress>;

/// Called once per table as a stage starts it, with the table's name and counters.
pub type ProgressReporter = dyn Fn(&str, &ProgressCounter) + Sync;

/// How one export unit went, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitReport {
    pub table: String,
    /// The unit's index within its table.
    pub unit: usize,
    pub rows: u64,
    /// Parquet bytes written.
    pub bytes: u64,
    pub seconds: f64,
    /// Attempts the unit took (1 unless it was retried).
    pub attempts: u32,
    /// `pg_export_snapshot()` of the snapshot the unit was read in (one per export attempt).
    pub snapshot: String,
    /// Recorded by an earlier attempt of the run and kept by `--resume`, not read again.
    pub resumed: bool,
}
