//! One comparison of an expected and an actual value, as validate and verify report it.

use serde::Serialize;

/// One comparison, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `row_count`, `null_count`, `value_count`, `min`, `max`, `sum`, `nan_count`,
    /// `fingerprint`, `orphans`, `denormalized`, `sample`, `source_drift`, `probe`.
    pub check: String,
    pub column: Option<String>,
    pub expected: String,
    pub actual: String,
    pub passed: bool,
    /// Where a mismatch was narrowed to (partition, file), or what a check means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    pub fn new(check: &str, column: Option<&str>, expected: impl ToString, actual: impl ToString, passed: bool) -> Self {
        Self {
            check: check.into(),
            column: column.map(str::to_string),
            expected: expected.to_string(),
            actual: actual.to_string(),
            passed,
            detail: None,
        }
    }
}
