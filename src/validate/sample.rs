//! With `--source`: random rows fetched by primary key from BigQuery and Postgres and compared
//! field by field (after the type mapping), and the source's drift since the snapshot.

use std::collections::HashMap;

use serde_json::Value;
use tokio_postgres::Client;

use super::compare::{floats_equal, parse_float, Check};
use super::plan::SourceSample;
use super::{pg_table, ValidateError};
use crate::gcp::bigquery::BigQuery;
use crate::gcp::sql::{encoding, quote};
use crate::model::check::CheckKind;
use crate::model::manifest::{ColumnManifest, TableManifest};
use crate::model::types::BigQueryType;
use crate::source::postgres::connect;
use crate::source::postgres::SESSION_SETTINGS;
use crate::source::{PgStep, SourceError};

/// How a column's two texts are compared.
#[derive(Clone, Copy)]
enum Compare {
    Exact,
    Float,
    Decimal,
    Json,
    /// A JSON array of element texts, each compared the given way.
    List(&'static Compare),
}

/// BigQuery expression, Postgres expression (from the export's select expression) and how
/// their texts compare.
fn expressions(column: &ColumnManifest) -> (String, String, Compare) {
    let bq = quote(&column.mapping.bq_name);
    let pg = format!("({})", column.mapping.select_expr);
    if column.mapping.repeated {
        // Both sides as a JSON array of element texts, compared element by element.
        let element = encoding(column.mapping.bq_type, "e");
        return (
            format!("TO_JSON_STRING(ARRAY(SELECT {element} FROM UNNEST({bq}) AS e WITH OFFSET AS o ORDER BY o))"),
            format!("to_json(ARRAY(SELECT e::text FROM unnest({pg}) WITH ORDINALITY AS u(e, o) ORDER BY o))::text"),
            Compare::List(element_compare(column.mapping.bq_type)),
        );
    }
    match column.mapping.bq_type {
        BigQueryType::Bytes => (format!("TO_HEX({bq})"), format!("encode({pg}, 'hex')"), Compare::Exact),
        BigQueryType::Bool => {
            (encoding(BigQueryType::Bool, &bq), format!("CASE WHEN {pg} THEN 'true' WHEN NOT {pg} THEN 'false' END"), Compare::Exact)
        }
        BigQueryType::Date => (encoding(BigQueryType::Date, &bq), format!("(({pg}) - DATE '1970-01-01')::text"), Compare::Exact),
        BigQueryType::Time => {
            (encoding(BigQueryType::Time, &bq), format!("(EXTRACT(EPOCH FROM {pg}) * 1000000)::int8::text"), Compare::Exact)
        }
        BigQueryType::Json => (encoding(BigQueryType::Json, &bq), format!("{pg}::text"), Compare::Json),
        // concat() keeps char(n) padding, as the export did.
        BigQueryType::String => (bq, format!("CASE WHEN {pg} IS NULL THEN NULL ELSE concat({pg}) END"), Compare::Exact),
        BigQueryType::Timestamp | BigQueryType::Datetime => {
            (encoding(column.mapping.bq_type, &bq), epoch_micros_text(&column.mapping.select_expr), Compare::Exact)
        }
        other => (encoding(other, &bq), format!("{pg}::text"), *element_compare(other)),
    }
}

/// A timestamp's microseconds since 1970 as text, as BigQuery's side gives them. Manifests
/// written before timestamps were read natively selected them as these microseconds already.
fn epoch_micros_text(select_expr: &str) -> String {
    if select_expr.starts_with("(EXTRACT(EPOCH FROM ") {
        format!("({select_expr})::text")
    } else {
        format!("(EXTRACT(EPOCH FROM ({select_expr})) * 1000000)::int8::text")
    }
}

fn element_compare(bq_type: BigQueryType) -> &'static Compare {
    match bq_type {
        BigQueryType::Float64 => &Compare::Float,
        BigQueryType::Numeric | BigQueryType::Bignumeric => &Compare::Decimal,
        BigQueryType::Json => &Compare::Json,
        _ => &Compare::Exact,
    }
}

fn minimal(text: &str) -> String {
    let trimmed = crate::model::decimal::trim_fraction(text);
    if trimmed == "-0" {
        "0".into()
    } else {
        trimmed.to_string()
    }
}

/// A JSON array of element texts; a NULL array counts as empty (as BigQuery loads it). None
/// if the text is not such an array: it then equals nothing.
fn list_items(text: Option<&str>) -> Option<Vec<Option<String>>> {
    text.map_or(Some(Vec::new()), |t| serde_json::from_str(t).ok())
}

/// Whether two texts hold the same value; a text that does not parse (float, JSON) differs.
fn same(how: Compare, bq: Option<&str>, pg: Option<&str>) -> bool {
    match (how, bq, pg) {
        (Compare::List(element), b, p) => match (list_items(b), list_items(p)) {
            (Some(b), Some(p)) => b.len() == p.len() && b.iter().zip(&p).all(|(x, y)| same(*element, x.as_deref(), y.as_deref())),
            _ => false,
        },
        (_, None, None) => true,
        (_, Some(b), Some(p)) => match how {
            Compare::Exact => b == p,
            Compare::Decimal => minimal(b) == minimal(p),
            Compare::Float => parse_float(b).is_some() && floats_equal(b, p),
            Compare::Json => matches!((serde_json::from_str::<Value>(b), serde_json::from_str::<Value>(p)), (Ok(x), Ok(y)) if x == y),
            Compare::List(_) => unreachable!("handled above"),
        },
        _ => false,
    }
}

/// A failed Postgres query, named by what it was for.
fn query_failed(step: PgStep) -> impl FnOnce(tokio_postgres::Error) -> ValidateError {
    move |source| ValidateError::Source(SourceError::Query { step, source })
}

/// The source's drift since the snapshot, then random rows by primary key (one column or
/// several: each row is found by its whole key) compared field by field; a sample that cannot
/// run (no primary key, a key column not exported, no rows to pick) is a skipped check saying
/// why.
pub(super) async fn sample_checks(
    sample: &SourceSample,
    bq: &BigQuery,
    table: &TableManifest,
    target: &str,
) -> Result<Vec<Check>, ValidateError> {
    let client = connect(&sample.url).await?;
    let settings = SESSION_SETTINGS.map(|s| s.replace("SET LOCAL", "SET")).join("; ");
    client.batch_execute(&settings).await.map_err(query_failed(PgStep::SetSessionSettings))?;
    let mut checks = vec![drift_check(&client, table).await?];
    if sample.rows == 0 {
        return Ok(checks);
    }
    let key = match sample_key(table) {
        Ok(key) => key,
        Err(reason) => {
            checks.push(Check::skipped(CheckKind::Sample, None, format!("{} random rows equal", sample.rows), reason));
            return Ok(checks);
        }
    };
    let picked: Vec<String> = key.iter().map(|k| format!("CAST({} AS STRING)", k.bq)).collect();
    let sql = format!("SELECT {} FROM {target} ORDER BY RAND() LIMIT {}", picked.join(", "), sample.rows);
    let keys: Vec<Vec<String>> =
        bq.query_rows(&sql).await?.into_iter().filter_map(|row| row.into_iter().collect::<Option<Vec<String>>>()).collect();
    if keys.is_empty() {
        let reason = "BigQuery holds no rows of the table to pick";
        checks.push(Check::skipped(CheckKind::Sample, None, format!("{} random rows equal", sample.rows), reason));
        return Ok(checks);
    }
    checks.extend(compare_sample(bq, &client, table, target, &key, &keys).await?);
    Ok(checks)
}

/// One column of the key a sample finds rows by: its names and its text on either side (the
/// same text for the same value, as the comparison renders it).
struct KeyColumn {
    name: String,
    bq: String,
    pg: String,
}

/// The primary key's columns, or why the sample cannot find rows by it.
fn sample_key(table: &TableManifest) -> Result<Vec<KeyColumn>, String> {
    if table.primary_key.is_empty() {
        return Err("no primary key: rows cannot be found on both sides".into());
    }
    let mut key = Vec::new();
    for name in &table.primary_key {
        let Some(column) = table.columns.iter().find(|c| &c.mapping.name == name) else {
            return Err(format!("primary key column `{name}` is not exported"));
        };
        let (bq, pg, how) = expressions(column);
        if !matches!(how, Compare::Exact) {
            return Err(format!("primary key column `{name}` ({}) has no exact text on both sides", column.mapping.pg_type));
        }
        key.push(KeyColumn { name: column.mapping.bq_name.clone(), bq, pg });
    }
    Ok(key)
}

/// Rows in the source now vs the snapshot: informational, never fails.
async fn drift_check(client: &Client, table: &TableManifest) -> Result<Check, ValidateError> {
    let now: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", pg_table(table)), &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(query_failed(PgStep::CountSampledTable { table: table.name.clone() }))?;
    let snapshot = table.snapshot_rows();
    Ok(Check::new(CheckKind::SourceDrift, None, snapshot, now, true).with_detail(format!(
        "rows in the source now vs the snapshot ({:+}; the snapshot's rows count those set aside and, for a tail, \
         those of the earlier runs); informational: the source moves on",
        now - snapshot as i64
    )))
}

/// A Postgres string literal.
fn pg_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A BigQuery string literal.
fn bq_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// BigQuery's rows of `keys`: `(k1 = 'a' AND k2 = 'b') OR …`; Postgres' by row value
/// (`k IN ('a', …)` for one column):
/// `(k1, k2) IN (('a', 'b'), …)`. Both compare each key column's text.
fn key_filters(key: &[KeyColumn], keys: &[Vec<String>]) -> (String, String) {
    let bq: Vec<String> = keys
        .iter()
        .map(|values| {
            let pairs: Vec<String> = key.iter().zip(values).map(|(k, v)| format!("CAST({} AS STRING) = {}", k.bq, bq_literal(v))).collect();
            format!("({})", pairs.join(" AND "))
        })
        .collect();
    let columns: Vec<String> = key.iter().map(|k| format!("({})::text", k.pg)).collect();
    let rows: Vec<String> =
        keys.iter().map(|values| format!("({})", values.iter().map(|v| pg_literal(v)).collect::<Vec<_>>().join(", "))).collect();
    match columns.as_slice() {
        [one] => (bq.join(" OR "), format!("{one} IN ({})", keys.iter().map(|v| pg_literal(&v[0])).collect::<Vec<_>>().join(", "))),
        _ => (bq.join(" OR "), format!("({}) IN ({})", columns.join(", "), rows.join(", "))),
    }
}

/// Fetches the rows of `keys` from both sides and compares them field by field: one failed
/// check per differing field, then a summary.
async fn compare_sample(
    bq: &BigQuery,
    client: &Client,
    table: &TableManifest,
    target: &str,
    key: &[KeyColumn],
    keys: &[Vec<String>],
) -> Result<Vec<Check>, ValidateError> {
    let expressions: Vec<(String, String, Compare)> = table.columns.iter().map(expressions).collect();
    let (bq_filter, pg_filter) = key_filters(key, keys);
    let bq_key: Vec<String> = key.iter().map(|k| format!("CAST({} AS STRING)", k.bq)).collect();
    let pg_key: Vec<String> = key.iter().map(|k| format!("({})::text", k.pg)).collect();
    let bq_sql = format!(
        "SELECT {}, {} FROM {target} WHERE {bq_filter}",
        bq_key.join(", "),
        expressions.iter().map(|(b, _, _)| format!("CAST({b} AS STRING)")).collect::<Vec<_>>().join(", "),
    );
    let pg_sql = format!(
        "SELECT {}, {} FROM {} WHERE {pg_filter}",
        pg_key.join(", "),
        expressions.iter().map(|(_, p, _)| format!("({p})::text")).collect::<Vec<_>>().join(", "),
        pg_table(table),
    );
    let width = key.len();
    let bq_rows: HashMap<Vec<Option<String>>, Vec<Option<String>>> =
        bq.query_rows(&bq_sql).await?.into_iter().map(|mut row| (row.drain(..width).collect(), row)).collect();
    let fetch_failed = || query_failed(PgStep::FetchSampleRows { table: table.name.clone() });
    let pg_rows = client.query(&pg_sql, &[]).await.map_err(fetch_failed())?;
    let key_names: Vec<&str> = key.iter().map(|k| k.name.as_str()).collect();
    let mut checks = Vec::new();
    let mut compared = 0;
    for pg_row in &pg_rows {
        let mut pg: Vec<Option<String>> =
            (0..width + expressions.len()).map(|i| pg_row.try_get(i)).collect::<Result<_, _>>().map_err(fetch_failed())?;
        let values: Vec<Option<String>> = pg.drain(..width).collect();
        let Some(bq_row) = bq_rows.get(&values) else { continue };
        compared += 1;
        let shown: Vec<&str> = values.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
        for (i, (column, (_, _, how))) in table.columns.iter().zip(&expressions).enumerate() {
            let (b, p) = (bq_row[i].as_deref(), pg[i].as_deref());
            if !same(*how, b, p) {
                let clip = |v: Option<&str>| v.map_or("NULL".to_string(), |t| t.chars().take(80).collect());
                checks.push(Check::new(CheckKind::Sample, Some(&column.mapping.bq_name), clip(p), clip(b), false).with_detail(format!(
                    "({}) = ({}): Postgres (expected) vs BigQuery (actual); the source may have changed since the snapshot",
                    key_names.join(", "),
                    shown.join(", ")
                )));
            }
        }
    }
    let summary =
        Check::new(CheckKind::Sample, None, format!("{} rows equal", keys.len()), format!("{compared} rows compared"), compared > 0);
    checks.push(summary.with_detail(format!("random rows by ({}); missing in Postgres: {}", key_names.join(", "), keys.len() - compared)));
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_that_do_not_parse_never_compare_equal() {
        assert!(same(Compare::Json, Some(r#"{"a": 1}"#), Some(r#"{"a":1}"#)));
        assert!(!same(Compare::Json, Some("{"), Some("{")));
        let list = Compare::List(&Compare::Exact);
        assert!(same(list, None, Some("[]")));
        assert!(!same(list, Some("not a list"), Some("not a list")));
        assert!(!same(list, Some("not a list"), None));
    }

    #[test]
    fn a_composite_key_finds_rows_by_its_whole_value_on_both_sides() {
        let key = [
            KeyColumn { name: "id".into(), bq: "`id`".into(), pg: "\"id\"".into() },
            KeyColumn { name: "at".into(), bq: "CAST(UNIX_MICROS(`at`) AS STRING)".into(), pg: "\"at\"".into() },
        ];
        let keys = [vec!["1".to_string(), "17".to_string()], vec!["2".to_string(), "o'k\\".to_string()]];
        let (bq, pg) = key_filters(&key, &keys);
        assert_eq!(
            bq,
            r"(CAST(`id` AS STRING) = '1' AND CAST(CAST(UNIX_MICROS(`at`) AS STRING) AS STRING) = '17') OR (CAST(`id` AS STRING) = '2' AND CAST(CAST(UNIX_MICROS(`at`) AS STRING) AS STRING) = 'o\'k\\')"
        );
        assert_eq!(pg, r#"(("id")::text, ("at")::text) IN (('1', '17'), ('2', 'o''k\'))"#);
        let (_, pg) = key_filters(&key[..1], &[vec!["1".to_string()], vec!["2".to_string()]]);
        assert_eq!(pg, r#"("id")::text IN ('1', '2')"#);
    }
}
