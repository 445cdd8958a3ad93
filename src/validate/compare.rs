//! Manifest aggregate vs BigQuery result, one check at a time. Counts, integer and decimal
//! sums, min/max and fingerprints must match exactly; float sums within a relative tolerance.

use crate::gcp::measures::Measure;
use crate::model::aggregates::ColumnAggregates;
pub use crate::model::check::Check;
use crate::model::check::CheckKind;
use crate::model::types::BigQueryType;

/// Float sums are compared within this fraction of Σ|x| (summation order differs).
pub const FLOAT_SUM_RELATIVE_TOLERANCE: f64 = 1e-9;

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
/// `abs_sum` is BigQuery's Σ|x| for float sums. None for [`Measure::AbsSum`], which is not
/// compared itself.
pub fn compare(
    column: &str,
    bq_type: BigQueryType,
    measure: Measure,
    expected: &ColumnAggregates,
    actual: Option<&str>,
    abs_sum: Option<f64>,
) -> Option<Check> {
    let kind = measure.check_kind()?;
    let is_float = bq_type == BigQueryType::Float64;
    let (want, passed) = match measure {
        // BigQuery loads NULL and empty arrays alike as empty arrays.
        Measure::NullCount => count_matches(expected.null_count + expected.empty_count.unwrap_or(0), actual),
        Measure::ValueCount => count_matches(expected.value_count, actual),
        Measure::NanCount => count_matches(expected.nan_count.unwrap_or(0), actual),
        Measure::Min => (or_null(&expected.min), extreme_matches(expected.min.as_deref(), actual, is_float)),
        Measure::Max => (or_null(&expected.max), extreme_matches(expected.max.as_deref(), actual, is_float)),
        Measure::Sum => (or_null(&expected.sum), sum_matches(expected, actual, is_float, abs_sum)),
        // An aggregate over no value is NULL: the empty fingerprint, 0.
        Measure::FingerprintXor => (expected.fingerprint_xor.clone(), actual.unwrap_or("0") == expected.fingerprint_xor),
        Measure::FingerprintSum => (expected.fingerprint_sum.clone(), actual.unwrap_or("0") == expected.fingerprint_sum),
        Measure::AbsSum => return None,
    };
    let check = Check::new(kind, Some(column), &want, actual.unwrap_or("NULL"), passed);
    let date_range = matches!(kind, CheckKind::Min | CheckKind::Max).then(|| readable_time(bq_type, &want)).flatten();
    Some(match date_range {
        _ if kind == CheckKind::Sum && is_float => {
            check.with_detail(format!("float sum, relative tolerance {FLOAT_SUM_RELATIVE_TOLERANCE} of Σ|x|"))
        }
        Some(when) => check.with_detail(when),
        None => check,
    })
}

/// A date or timestamp extreme in the manifest's integer form (days or µs since 1970-01-01)
/// as a reader writes it, for the report's date ranges: `2024-01-01`, `2024-01-01 00:13:07.123456 UTC`.
fn readable_time(bq_type: BigQueryType, value: &str) -> Option<String> {
    let value: i64 = value.parse().ok()?;
    let micros = || chrono::DateTime::from_timestamp_micros(value);
    match bq_type {
        BigQueryType::Date => {
            let day = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::TimeDelta::try_days(value)?)?;
            Some(day.to_string())
        }
        BigQueryType::Timestamp => Some(micros()?.format("%Y-%m-%d %H:%M:%S%.f UTC").to_string()),
        BigQueryType::Datetime => Some(micros()?.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        _ => None,
    }
}

fn or_null(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "NULL".into())
}

/// A count must be there and equal, as text.
fn count_matches(want: u64, actual: Option<&str>) -> (String, bool) {
    let want = want.to_string();
    let passed = actual == Some(want.as_str());
    (want, passed)
}

/// Min or max: both absent, or equal (floats by value).
fn extreme_matches(want: Option<&str>, actual: Option<&str>, is_float: bool) -> bool {
    match (want, actual) {
        (None, None) => true,
        (Some(w), Some(a)) if is_float => floats_equal(w, a),
        (Some(w), Some(a)) => w == a,
        _ => false,
    }
}

/// Exact sums are equal as text; float sums within the tolerance of Σ|x|.
fn sum_matches(expected: &ColumnAggregates, actual: Option<&str>, is_float: bool, abs_sum: Option<f64>) -> bool {
    match (expected.sum.as_deref(), actual) {
        (None, None) => true,
        // BigQuery's SUM over no value (all NULL, all NaN, no rows) is NULL; the manifest's is 0.
        (Some(w), None) => expected.value_count == expected.nan_count.unwrap_or(0) && (w == "0" || w == "0.0"),
        (Some(w), Some(a)) if is_float => match (parse_float(w), parse_float(a)) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                (x - y).abs() <= FLOAT_SUM_RELATIVE_TOLERANCE * abs_sum.unwrap_or(0.0).max(1.0)
            }
            _ => floats_equal(w, a),
        },
        (Some(w), Some(a)) => w == a,
        (None, Some(_)) => false,
    }
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

    /// BigQuery's answer to a measure over `nulls` NULLs and no value: COUNTIF counts, every
    /// other aggregate (MIN, MAX, SUM, BIT_XOR, LOGICAL_AND) is NULL.
    fn bigquery_over_no_value(measure: Measure, nulls: u64) -> Option<String> {
        match measure {
            Measure::NullCount => Some(nulls.to_string()),
            Measure::ValueCount | Measure::NanCount => Some("0".into()),
            _ => None,
        }
    }

    /// The manifest's aggregates of an all-NULL (or empty) column of every mapped type pass
    /// against BigQuery's answers over the same column.
    #[test]
    fn all_null_and_empty_columns_of_every_type_pass() {
        use crate::model::aggregates::ColumnAccumulator;
        use crate::model::manifest::ColumnManifest;
        use crate::model::types::{map_column, OutOfRange, PgColumn};
        let numeric_12_2 = (12 << 16 | 2) + 4;
        let types = [
            ("bool", None, -1),
            ("int2", None, -1),
            ("int4", None, -1),
            ("int8", None, -1),
            ("float4", None, -1),
            ("float8", None, -1),
            ("numeric", None, numeric_12_2),
            ("text", None, -1),
            ("bpchar", None, 9),
            ("uuid", None, -1),
            ("jsonb", None, -1),
            ("bytea", None, -1),
            ("date", None, -1),
            ("time", None, -1),
            ("timestamp", None, -1),
            ("timestamptz", None, -1),
            ("_int4", Some("int4"), -1),
            ("_float8", Some("float8"), -1),
            ("_bool", Some("bool"), -1),
            ("_text", Some("text"), -1),
            ("_jsonb", Some("jsonb"), -1),
        ];
        for (type_name, element, typmod) in types {
            let pg = PgColumn { element_type: element.map(str::to_string), ..PgColumn::base("c", type_name, typmod) };
            let mapping = map_column(&pg, None, OutOfRange::Refuse).unwrap();
            for nulls in [0, 3] {
                let mut accumulator = ColumnAccumulator::for_column(&mapping);
                accumulator.update(&arrow::array::new_null_array(&mapping.arrow_type, nulls as usize));
                let column = ColumnManifest { mapping: mapping.clone(), adjusted_rows: 0, aggregates: accumulator.finish() };
                for (measure, _) in crate::gcp::measures::column_measures(&column) {
                    let actual = bigquery_over_no_value(measure, nulls);
                    if let Some(check) = compare("c", mapping.bq_type, measure, &column.aggregates, actual.as_deref(), None) {
                        assert!(check.passed, "{type_name} with {nulls} NULLs: {check:?}");
                    }
                }
            }
        }
    }

    /// A float column of NaNs only: BigQuery's SUM skips them all and answers NULL.
    #[test]
    fn all_nan_float_sum_passes() {
        let mut a = aggregates();
        (a.value_count, a.nan_count, a.sum, a.min, a.max) = (2, Some(2), Some("0".into()), None, None);
        assert!(compare("c", BigQueryType::Float64, Measure::Sum, &a, None, None).unwrap().passed);
        a.nan_count = Some(1);
        assert!(!compare("c", BigQueryType::Float64, Measure::Sum, &a, None, None).unwrap().passed);
    }

    #[test]
    fn empty_arrays_count_with_nulls() {
        let mut a = aggregates();
        a.empty_count = Some(2);
        assert!(compare("c", BigQueryType::Int64, Measure::NullCount, &a, Some("3"), None).unwrap().passed);
    }

    #[test]
    fn date_and_timestamp_extremes_read_as_dates() {
        assert_eq!(readable_time(BigQueryType::Timestamp, "1704067987123456").as_deref(), Some("2024-01-01 00:13:07.123456 UTC"));
        assert_eq!(readable_time(BigQueryType::Datetime, "0").as_deref(), Some("1970-01-01 00:00:00"));
        assert_eq!(readable_time(BigQueryType::Date, "19723").as_deref(), Some("2024-01-01"));
        assert_eq!(readable_time(BigQueryType::Int64, "19723"), None);
        let expected = ColumnAggregates { min: Some("19723".into()), ..ColumnAggregates::default() };
        let check = compare("day", BigQueryType::Date, Measure::Min, &expected, Some("19723"), None).unwrap();
        assert_eq!((check.passed, check.detail.as_deref()), (true, Some("2024-01-01")));
    }
}
