//! Manifest aggregate vs BigQuery result, one check at a time. Counts, integer and decimal
//! sums, min/max and fingerprints must match exactly; float sums within a relative tolerance.

use serde::Serialize;

use super::sql::Measure;
use crate::aggregates::ColumnAggregates;
use crate::source::types::BigQueryType;

/// Float sums are compared within this fraction of Σ|x| (summation order differs).
pub const FLOAT_SUM_RELATIVE_TOLERANCE: f64 = 1e-9;

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

/// A float from BigQuery's or Postgres' text (`nan`/`NaN`, `inf`/`Infinity`).
pub fn parse_float(text: &str) -> Option<f64> {
    match text {
        "nan" | "NaN" => Some(f64::NAN),
        "inf" | "Infinity" => Some(f64::INFINITY),
        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Equal as floats (NaN equals NaN, -0 equals 0); texts that are not floats compare as text.
pub fn floats_equal(a: &str, b: &str) -> bool {
    match (parse_float(a), parse_float(b)) {
        (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}

/// Compares one measure of one column. `actual` is BigQuery's text (NULL → `None`);
/// `abs_sum` is BigQuery's Σ|x| for float sums.
pub fn compare(
    column: &str,
    bq_type: BigQueryType,
    measure: Measure,
    expected: &ColumnAggregates,
    actual: Option<&str>,
    abs_sum: Option<f64>,
) -> Option<Check> {
    let actual_text = actual.unwrap_or("NULL").to_string();
    let is_float = bq_type == BigQueryType::Float64;
    let (name, want, passed): (&str, String, bool) = match measure {
        Measure::NullCount => {
            // BigQuery loads NULL and empty arrays alike as empty arrays.
            let want = expected.null_count + expected.empty_count.unwrap_or(0);
            ("null_count", want.to_string(), actual == Some(want.to_string().as_str()))
        }
        Measure::ValueCount => ("value_count", expected.value_count.to_string(), actual == Some(expected.value_count.to_string().as_str())),
        Measure::Min | Measure::Max => {
            let want = if measure == Measure::Min { &expected.min } else { &expected.max };
            let name = if measure == Measure::Min { "min" } else { "max" };
            let passed = match (want, actual) {
                (None, None) => true,
                (Some(w), Some(a)) if is_float => floats_equal(w, a),
                (Some(w), Some(a)) => w == a,
                _ => false,
            };
            (name, want.clone().unwrap_or_else(|| "NULL".into()), passed)
        }
        Measure::Sum => {
            let want = expected.sum.clone();
            let passed = match (&want, actual) {
                (None, None) => true,
                (Some(w), None) => expected.value_count == 0 && (w == "0" || w == "0.0"),
                (Some(w), Some(a)) if is_float => match (parse_float(w), parse_float(a)) {
                    (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                        (x - y).abs() <= FLOAT_SUM_RELATIVE_TOLERANCE * abs_sum.unwrap_or(0.0).max(1.0)
                    }
                    _ => floats_equal(w, a),
                },
                (Some(w), Some(a)) => w == a,
                (None, Some(_)) => false,
            };
            ("sum", want.unwrap_or_else(|| "NULL".into()), passed)
        }
        Measure::NanCount => {
            let want = expected.nan_count.unwrap_or(0).to_string();
            ("nan_count", want.clone(), actual == Some(want.as_str()))
        }
        Measure::FingerprintXor => {
            let passed = actual.unwrap_or("0") == expected.fingerprint_xor;
            ("fingerprint_xor", expected.fingerprint_xor.clone(), passed)
        }
        Measure::FingerprintSum => {
            let passed = actual.unwrap_or("0") == expected.fingerprint_sum;
            ("fingerprint_sum", expected.fingerprint_sum.clone(), passed)
        }
        Measure::AbsSum => return None,
    };
    let mut check = Check::new(name, Some(column), want, actual_text, passed);
    if name == "sum" && is_float {
        check.detail = Some(format!("float sum, relative tolerance {FLOAT_SUM_RELATIVE_TOLERANCE} of Σ|x|"));
    }
    Some(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregates() -> ColumnAggregates {
        ColumnAggregates {
            null_count: 1,
            value_count: 3,
            min: Some("-0".into()),
            max: Some("2.5".into()),
            sum: Some("3.0000000001".into()),
            nan_count: Some(0),
            empty_count: None,
            fingerprint_xor: "-5".into(),
            fingerprint_sum: "17".into(),
        }
    }

    #[test]
    fn float_min_compares_by_value_and_sum_within_tolerance() {
        let a = aggregates();
        assert!(compare("c", BigQueryType::Float64, Measure::Min, &a, Some("0"), None).unwrap().passed);
        assert!(compare("c", BigQueryType::Float64, Measure::Sum, &a, Some("3"), Some(1e6)).unwrap().passed);
        assert!(!compare("c", BigQueryType::Float64, Measure::Sum, &a, Some("3.1"), Some(3.0)).unwrap().passed);
    }

    #[test]
    fn exact_measures_must_match_exactly() {
        let a = aggregates();
        assert!(!compare("c", BigQueryType::Numeric, Measure::Sum, &a, Some("3"), None).unwrap().passed);
        assert!(compare("c", BigQueryType::Int64, Measure::FingerprintSum, &a, Some("17"), None).unwrap().passed);
        assert!(!compare("c", BigQueryType::Int64, Measure::FingerprintXor, &a, None, None).unwrap().passed);
        assert!(compare("c", BigQueryType::Int64, Measure::AbsSum, &a, Some("1"), None).is_none());
    }

    #[test]
    fn empty_arrays_count_with_nulls() {
        let mut a = aggregates();
        a.empty_count = Some(2);
        assert!(compare("c", BigQueryType::Int64, Measure::NullCount, &a, Some("3"), None).unwrap().passed);
    }
}
