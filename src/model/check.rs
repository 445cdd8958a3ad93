//! One comparison of an expected and an actual value, as validate and verify report it.

use std::fmt;

use serde::{Serialize, Serializer};

/// What a [`Check`] compared; serialised (and displayed) in snake_case, e.g. `null_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    // validate: a table against its manifest
    RowCount,
    NullCount,
    ValueCount,
    Min,
    Max,
    Sum,
    NanCount,
    FingerprintXor,
    FingerprintSum,
    /// The count, XOR and sum of the rows' fingerprints ([`crate::model::row_fingerprint`]).
    RowFingerprint,
    /// NULLs in a column that is NOT NULL in Postgres.
    Required,
    Orphans,
    Denormalized,
    Sample,
    SourceDrift,
    Probe,
    /// Rows of a merged table outside the snapshot (the app's own): reported, never compared.
    OutsideSnapshot,
    /// Rows of the snapshot set aside by `--on-bad-value quarantine`: listed, never loaded.
    Rejected,
    /// `validate --dry-run`: the bytes a query would scan, estimated by BigQuery.
    Estimate,
    /// A snapshot column left out of the load (`--exclude-column`): not compared.
    Excluded,
    /// Rows holding a `--set` column's constant.
    SetValue,
    /// `load --apply-deletes`: rows of the keys deleted in Postgres still in the table (none).
    DeletedKeys,
    // verify: the snapshot's files against their manifest
    ManifestInconsistent,
    FileMissing,
    FileAltered,
    FileRows,
    FileAggregates,
    FileUnreadable,
    FileExtra,
}

impl CheckKind {
    /// The name reports and `--json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RowCount => "row_count",
            Self::NullCount => "null_count",
            Self::ValueCount => "value_count",
            Self::Min => "min",
            Self::Max => "max",
            Self::Sum => "sum",
            Self::NanCount => "nan_count",
            Self::FingerprintXor => "fingerprint_xor",
            Self::FingerprintSum => "fingerprint_sum",
            Self::RowFingerprint => "row_fingerprint",
            Self::Required => "required",
            Self::Orphans => "orphans",
            Self::Denormalized => "denormalized",
            Self::Sample => "sample",
            Self::SourceDrift => "source_drift",
            Self::Probe => "probe",
            Self::OutsideSnapshot => "outside_snapshot",
            Self::Rejected => "rejected",
            Self::Estimate => "estimate",
            Self::Excluded => "excluded",
            Self::SetValue => "set_value",
            Self::DeletedKeys => "deleted_keys",
            Self::ManifestInconsistent => "manifest_inconsistent",
            Self::FileMissing => "file_missing",
            Self::FileAltered => "file_altered",
            Self::FileRows => "file_rows",
            Self::FileAggregates => "file_aggregates",
            Self::FileUnreadable => "file_unreadable",
            Self::FileExtra => "file_extra",
        }
    }
}

/// Honours width and alignment (`{:<16}`), as report columns need.
impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for CheckKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// How a [`Check`] came out: it ran and matched, ran and differed, or could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// The check could not run (its `detail` says why): neither a pass nor a failure, counted
    /// apart; `validate --strict` fails on it.
    Skip,
}

impl Status {
    /// `PASS`, `FAIL`, `SKIP`, as reports print it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One comparison, for the report. `passed` is true only for a check that ran and matched
/// (kept for readers of earlier JSON); `status` also tells a failure from a skip.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: CheckKind,
    pub column: Option<String>,
    pub expected: String,
    pub actual: String,
    pub passed: bool,
    pub status: Status,
    /// Where a mismatch was narrowed to (partition, file), what a check means, or why it was
    /// skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    pub fn new(check: CheckKind, column: Option<&str>, expected: impl ToString, actual: impl ToString, passed: bool) -> Self {
        Self {
            check,
            column: column.map(str::to_string),
            expected: expected.to_string(),
            actual: actual.to_string(),
            passed,
            status: if passed { Status::Pass } else { Status::Fail },
            detail: None,
        }
    }

    /// A check that could not run: `expected` says what it would have compared, `reason` why
    /// it did not.
    pub fn skipped(check: CheckKind, column: Option<&str>, expected: impl ToString, reason: impl Into<String>) -> Self {
        let skipped = Self { status: Status::Skip, ..Self::new(check, column, expected, "not run", false) };
        skipped.with_detail(reason)
    }

    /// The check with `detail` set.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// It ran and found a difference.
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }

    /// It could not run.
    pub fn is_skipped(&self) -> bool {
        self.status == Status::Skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports, `--json` and the tests that read them know the kinds by these names.
    #[test]
    fn kinds_keep_their_report_names() {
        let named = [
            (CheckKind::RowCount, "row_count"),
            (CheckKind::FingerprintXor, "fingerprint_xor"),
            (CheckKind::SourceDrift, "source_drift"),
            (CheckKind::ManifestInconsistent, "manifest_inconsistent"),
            (CheckKind::FileUnreadable, "file_unreadable"),
        ];
        for (kind, name) in named {
            assert_eq!(kind.to_string(), name);
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
    }

    #[test]
    fn a_check_serialises_its_kind_as_a_string_and_pads_in_reports() {
        let check = Check::new(CheckKind::NullCount, Some("c"), 0, 1, false);
        let json = serde_json::to_string(&check).unwrap();
        assert_eq!(json, r#"{"check":"null_count","column":"c","expected":"0","actual":"1","passed":false,"status":"fail"}"#);
        assert_eq!(format!("[{:<12}]", CheckKind::Sum), "[sum         ]");
    }

    /// A check that could not run is neither passed nor failed, and says why.
    #[test]
    fn a_skipped_check_is_not_passed_and_not_failed() {
        let check = Check::skipped(CheckKind::Sample, None, "rows by primary key", "no primary key");
        assert_eq!((check.passed, check.failed(), check.is_skipped(), check.status.label()), (false, false, true, "SKIP"));
        let json = serde_json::to_string(&check).unwrap();
        assert_eq!(
            json,
            r#"{"check":"sample","column":null,"expected":"rows by primary key","actual":"not run","passed":false,"status":"skip","detail":"no primary key"}"#
        );
        let passing = Check::new(CheckKind::RowCount, None, 1, 1, true);
        assert_eq!((passing.status, passing.failed(), passing.is_skipped()), (Status::Pass, false, false));
    }
}
