//! What a run's report shows, gathered by [`super::report`] and drawn by [`super::html`].

use crate::model::manifest::Manifest;
use crate::model::run_record::RunRecord;

/// Whether the run's files still match the manifest, as `verify` found (run by the caller).
#[derive(Debug, Clone, Default)]
pub struct FilesCheck {
    pub intact: bool,
    pub files_checked: usize,
    pub problems: Vec<String>,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub manifest_uri: String,
    pub manifest_sha256: String,
    pub manifest: Manifest,
    pub files: FilesCheck,
    pub records: Vec<RunRecord>,
    pub days: Vec<TableDays>,
    pub generated_at: String,
}

/// One table's rows per day, side by side.
#[derive(Debug, Clone, Default)]
pub struct TableDays {
    pub table: String,
    /// The charted column; `None` when the table has no DATE or TIMESTAMP column.
    pub column: Option<String>,
    /// Where BigQuery's counts come from (`project.dataset.table`).
    pub bigquery_table: Option<String>,
    pub rows: Vec<DayRow>,
    /// Why a side is missing or may differ, in words.
    pub notes: Vec<String>,
}

/// One day: its rows in the snapshot, in BigQuery and in Postgres (where counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    pub day: String,
    pub snapshot: u64,
    pub bigquery: Option<u64>,
    pub postgres: Option<u64>,
}

impl DayRow {
    /// A side that was counted holds another number of rows than the snapshot.
    pub fn differs(&self) -> bool {
        [self.bigquery, self.postgres].into_iter().flatten().any(|n| n != self.snapshot)
    }
}

impl TableDays {
    pub fn differing_days(&self) -> usize {
        self.rows.iter().filter(|r| r.differs()).count()
    }
}
