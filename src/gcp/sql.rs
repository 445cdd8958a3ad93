//! BigQuery standard SQL as text: identifier quoting, literals, label parts, and the value encodings whose
//! fingerprints must equal the manifest's (`aggregates::encode_value`, docs/manifest.md).
//! Pure text generation, used by load (JSON fingerprints) and validate.

use crate::model::types::{BigQueryType, NameAlphabet};

/// An identifier or path (`project.dataset.table`) back-quoted for BigQuery SQL.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "\\`"))
}

/// A table as BigQuery SQL names it: `` `project.dataset.table` ``.
pub fn table_path(project: &str, dataset: &str, table: &str) -> String {
    quote(&format!("{project}.{dataset}.{table}"))
}

/// `L.`a` = R.`a` AND …`: the rows aliased `left` and `right` hold the same key (`columns`).
pub fn key_join<S: AsRef<str>>(left: &str, right: &str, columns: &[S]) -> String {
    columns.iter().map(|c| format!("{left}.{0} = {right}.{0}", quote(c.as_ref()))).collect::<Vec<_>>().join(" AND ")
}

/// A string literal: `'it\'s'`.
pub fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n"))
}

/// Label keys and values allow lower-case letters, digits, `_` and `-`, 63 characters.
pub fn label_part(text: &str) -> String {
    NameAlphabet::ID.sanitize(&text.to_ascii_lowercase(), 63)
}

/// Minimal decimal text of a NUMERIC/BIGNUMERIC expression: `1.5`, `2`, `0` (emulators pad
/// `CAST(… AS STRING)` with zeros; BigQuery does not; this gives the same text on both).
pub fn minimal_decimal(expr: &str) -> String {
    let text = format!("CAST({expr} AS STRING)");
    format!("IF(STRPOS({text}, '.') > 0, RTRIM(RTRIM({text}, '0'), '.'), {text})")
}

/// The fingerprint encoding of a scalar expression of BigQuery type `bq_type`.
pub fn encoding(bq_type: BigQueryType, expr: &str) -> String {
    match bq_type {
        // CASE keeps NULL as NULL (IF(NULL, …) would take the else branch).
        BigQueryType::Bool => format!("CASE WHEN {expr} THEN 'true' WHEN NOT {expr} THEN 'false' END"),
        BigQueryType::Int64 => format!("CAST({expr} AS STRING)"),
        BigQueryType::Float64 => format!("FORMAT('%.17g', {expr})"),
        BigQueryType::Numeric | BigQueryType::Bignumeric => minimal_decimal(expr),
        BigQueryType::String | BigQueryType::Bytes => expr.to_string(),
        // TO_JSON_STRING(NULL) is the text `null`: keep SQL NULL out of the fingerprint, as the
        // manifest does.
        BigQueryType::Json => format!("IF({expr} IS NULL, NULL, TO_JSON_STRING({expr}))"),
        BigQueryType::Date => format!("CAST(UNIX_DATE({expr}) AS STRING)"),
        BigQueryType::Time => format!("CAST(TIME_DIFF({expr}, TIME '00:00:00', MICROSECOND) AS STRING)"),
        BigQueryType::Datetime => format!("CAST(UNIX_MICROS(TIMESTAMP({expr})) AS STRING)"),
        BigQueryType::Timestamp => format!("CAST(UNIX_MICROS({expr}) AS STRING)"),
    }
}

/// A non-empty array as `<byte length>:<element>` per element (`element` is an expression of
/// `e`); NULL for an empty array.
pub fn list_encoding(array: &str, element: &str) -> String {
    format!(
        "IF(ARRAY_LENGTH({array}) > 0, ARRAY_TO_STRING(ARRAY(SELECT CONCAT(CAST(BYTE_LENGTH({element}) AS STRING), ':', {element}) FROM UNNEST({array}) AS e WITH OFFSET AS o ORDER BY o), ''), NULL)"
    )
}

/// A row's encoding over its columns' STRING encodings, in order: `-` for NULL, else
/// `<byte length>:<value>` (`model::row_fingerprint`).
pub fn row_encoding(encodings: &[String]) -> String {
    if encodings.is_empty() {
        return "''".into();
    }
    let parts: Vec<String> = encodings.iter().map(|e| format!("IFNULL(CONCAT(CAST(BYTE_LENGTH({e}) AS STRING), ':', {e}), '-')")).collect();
    format!("CONCAT({})", parts.join(", "))
}

/// `CAST(BIT_XOR(fp) AS STRING), SUM(fp)` of an encoding, as two SELECT items.
pub fn fingerprint_items(encoding: &str) -> [String; 2] {
    fingerprint_sums(&format!("FARM_FINGERPRINT({encoding})"))
}

/// `CAST(BIT_XOR(f) AS STRING), SUM(f)` (exact, as text) of an INT64 fingerprint `f`, as two
/// SELECT items.
pub fn fingerprint_sums(fingerprint: &str) -> [String; 2] {
    [format!("CAST(BIT_XOR({fingerprint}) AS STRING)"), minimal_decimal(&format!("SUM(CAST({fingerprint} AS NUMERIC))"))]
}
