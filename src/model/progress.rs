//! Live per-table counters that export, load and validate advance as they work, for whoever
//! shows progress (the binary draws them; the library never prints).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// One table's work in a stage. The stage sets what is planned and adds to the counters;
/// readers only load them.
#[derive(Debug, Default)]
pub struct TableProgress {
    /// Rows planned (export, load); 0 where the size is not known up front (validate).
    pub planned_rows: u64,
    /// Load jobs planned (load).
    pub planned_jobs: u64,
    /// Rows exported or loaded so far.
    pub rows: AtomicU64,
    /// Bytes so far: Arrow data read from Postgres (export), Parquet files loaded (load).
    pub bytes: AtomicU64,
    /// Load jobs done (load).
    pub jobs: AtomicU64,
    /// Checks run and failed so far (validate).
    pub checks: AtomicU64,
    pub failed_checks: AtomicU64,
}

/// A table's live counters, shared between the stage and the reporter.
pub type ProgressCounter = Arc<TableProgress>;

/// Called once per table as a stage starts it, with the table's name and counters.
pub type ProgressReporter = dyn Fn(&str, &ProgressCounter) + Sync;
