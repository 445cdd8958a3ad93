//! What `load` and `validate` record beside the run they worked on: one object per invocation,
//! create-only, under `<run-id>/_records/` (named by the time, the command and a random nonce,
//! so two invocations never collide and the names sort by time), never changed afterwards. The
//! run's report (`pg2bq report`) and `pg2bq runs` are rebuilt from them and the manifest alone.
//! Typed both ways: the stages build a [`RunRecord`], the report parses it back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::check::Check;

/// Directory of the records inside a run directory.
pub const RECORDS_DIR: &str = "_records";

/// The run's report (`pg2bq report`), written beside its manifest.
pub const REPORT_FILE: &str = "report.html";

/// What a failed export leaves in its run directory once it has removed its files, so
/// `pg2bq runs` can list the run as given up (a new attempt of the run removes it).
pub const GIVEN_UP_FILE: &str = "given-up.json";

/// The content of [`GIVEN_UP_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenUp {
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// The error that ended the run, as it was printed.
    pub error: String,
    /// Whether unit records were kept for `export --resume`.
    pub resumable: bool,
}

/// Whether `name` (an object's path inside a run directory) belongs to the run's audit record
/// (a record, the report, a given-up note) rather than to its snapshot.
pub fn is_audit_file(name: &str) -> bool {
    name == REPORT_FILE || name == GIVEN_UP_FILE || RunRecord::is_record(name)
}

/// The command a record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedCommand {
    Load,
    Validate,
}

impl RecordedCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Validate => "validate",
        }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// load: every table loaded.
    Loaded,
    /// validate: every check that ran matched.
    Passed,
    /// validate: a check found a difference.
    Failed,
    /// The command stopped with an error (see `error`).
    Error,
}

/// One invocation of `load` or `validate` on a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub command: RecordedCommand,
    /// When it finished, RFC 3339 in UTC.
    pub recorded_at: String,
    pub tool_version: String,
    /// Where: the BigQuery project and dataset.
    pub project: String,
    pub dataset: String,
    /// load: `truncate`, `append` or `merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub verdict: Verdict,
    /// validate: checks that ran and differed, and checks that could not run.
    #[serde(default)]
    pub failed: usize,
    #[serde(default)]
    pub skipped: usize,
    /// The error that stopped the command, as it was printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub tables: Vec<RecordedTable>,
}

/// What the invocation did to, or found in, one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordedTable {
    /// The snapshot table (`schema.table` or a query's name).
    pub table: String,
    /// The BigQuery table it went to (`dataset.table` or the table's id).
    pub bq_table: String,
    /// load: rows loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// load: what the load did to the table, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// load: the table's column each renamed snapshot column went to (`--column-map`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub column_map: BTreeMap<String, String>,
    /// validate: every check, as `validate --json` prints it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<RecordedCheck>,
    /// validate: the rows located when a check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub located: Option<RecordedLocation>,
}

/// A check as recorded: the fields of [`Check`], its kind and status as their names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCheck {
    pub check: String,
    #[serde(default)]
    pub column: Option<String>,
    pub expected: String,
    pub actual: String,
    /// `pass`, `fail` or `skip`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl From<&Check> for RecordedCheck {
    fn from(check: &Check) -> Self {
        Self {
            check: check.check.as_str().to_string(),
            column: check.column.clone(),
            expected: check.expected.clone(),
            actual: check.actual.clone(),
            status: check.status.label().to_ascii_lowercase(),
            detail: check.detail.clone(),
        }
    }
}

impl RecordedCheck {
    pub fn failed(&self) -> bool {
        self.status == "fail"
    }
}

/// The rows found to differ (validate's row location), as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedLocation {
    pub key: Vec<String>,
    pub missing: u64,
    pub only_in_bigquery: u64,
    pub differing: u64,
    /// False when the counts are lower bounds.
    pub complete: bool,
    /// The first rows, by key.
    pub rows: Vec<RecordedRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One located row: its key (`id=5`), how it differs, and the columns that differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRow {
    pub key: String,
    /// `missing`, `only_in_bigquery` or `differs`.
    pub status: String,
    pub columns: Vec<String>,
}

impl RunRecord {
    /// The record's path inside the run directory: `_records/<time>-<command>-<nonce>.json`,
    /// the time as `20261208T021530.123456Z` so names sort by time.
    pub fn path(&self, nonce: u64) -> String {
        let time = chrono::DateTime::parse_from_rfc3339(&self.recorded_at)
            .map(|t| t.with_timezone(&chrono::Utc).format("%Y%m%dT%H%M%S%.6fZ").to_string())
            .unwrap_or_else(|_| self.recorded_at.replace(':', ""));
        format!("{RECORDS_DIR}/{time}-{}-{nonce:016x}.json", self.command.as_str())
    }

    /// Whether `name` (an object's path inside a run directory) is a record.
    pub fn is_record(name: &str) -> bool {
        name.strip_prefix(RECORDS_DIR).is_some_and(|rest| rest.starts_with('/') && !rest[1..].contains('/') && rest.ends_with(".json"))
    }

    /// The record's JSON.
    ///
    /// # Errors
    /// serde_json's, which a record's plain fields do not produce.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    /// A record read back.
    ///
    /// # Errors
    /// When the bytes are not a record.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A record of `command` made now, by this pg2bq.
    pub fn now(command: RecordedCommand, project: &str, dataset: &str, verdict: Verdict) -> Self {
        Self {
            command,
            recorded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            project: project.to_string(),
            dataset: dataset.to_string(),
            mode: None,
            verdict,
            failed: 0,
            skipped: 0,
            error: None,
            tables: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::check::CheckKind;

    #[test]
    fn a_record_round_trips_and_its_path_sorts_by_time() {
        let mut record = RunRecord::now(RecordedCommand::Validate, "p", "d", Verdict::Failed);
        record.recorded_at = "2026-12-08T02:15:30.000123Z".into();
        let check = Check::new(CheckKind::RowCount, None, 3, 2, false).with_detail("partition 0");
        record.tables.push(RecordedTable {
            table: "public.events".into(),
            bq_table: "events".into(),
            checks: vec![RecordedCheck::from(&check)],
            located: Some(RecordedLocation { key: vec!["id".into()], missing: 1, complete: true, ..Default::default() }),
            ..Default::default()
        });
        assert_eq!(RunRecord::parse(&record.encode().unwrap()).unwrap(), record);
        let path = record.path(0xab);
        assert_eq!(path, "_records/20261208T021530.000123Z-validate-00000000000000ab.json");
        assert!(RunRecord::is_record(&path));
        assert!(!RunRecord::is_record("_records/x/y.json") && !RunRecord::is_record("public.t/part-p0000-s00000.parquet"));
        let recorded = &record.tables[0].checks[0];
        assert_eq!((recorded.check.as_str(), recorded.status.as_str(), recorded.failed()), ("row_count", "fail", true));
    }
}
