//! With `--source`: random rows fetched by primary key from BigQuery and Postgres and compared
//! field by field (after the type mapping), and the source's drift since the snapshot.

use serde_json::Value;

use super::compare::{floats_equal, parse_float, Check};
use super::{pg_table, ValidateConfig, ValidateError};
use crate::gcp::bigquery::BigQuery;
use crate::gcp::sql::{encoding, quote};
use crate::model::manifest::{ColumnManifest, TableManifest};
use crate::model::types::{quote_ident, BigQueryType};
use crate::source::postgres::connect;
use crate::source::postgres::SESSION_SETTINGS;
use crate::source::SourceError;

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
        // Temporal select expressions already yield epoch microseconds.
        other => (encoding(other, &bq), format!("{pg}::text"), *element_compare(other)),
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

/// A JSON array of element texts; a NULL array counts as empty (as BigQuery loads it).
fn list_items(text: Option<&str>) -> Vec<Option<String>> {
    text.and_then(|t| serde_json::from_str::<Vec<Option<String>>>(t).ok()).unwrap_or_default()
}

fn same(how: Compare, bq: Option<&str>, pg: Option<&str>) -> bool {
    match (how, bq, pg) {
        (Compare::List(element), b, p) => {
            let (b, p) = (list_items(b), list_items(p));
            b.len() == p.len() && b.iter().zip(&p).all(|(x, y)| same(*element, x.as_deref(), y.as_deref()))
        }
        (_, None, None) => true,
        (_, Some(b), Some(p)) => match how {
            Compare::Exact => b == p,
            Compare::Decimal => minimal(b) == minimal(p),
            Compare::Float => parse_float(b).is_some() && floats_equal(b, p),
            Compare::Json => serde_json::from_str::<Value>(b).ok() == serde_json::from_str::<Value>(p).ok(),
            Compare::List(_) => unreachable!("handled above"),
        },
        _ => false,
    }
}

pub(super) async fn sample_checks(
    config: &ValidateConfig,
    bq: &BigQuery,
    url: &str,
    table: &TableManifest,
    target: &str,
) -> Result<Vec<Check>, ValidateError> {
    let client = connect(url).await?;
    let source_error = |action: String| move |source| ValidateError::Source(SourceError::Query { action, source });
    let settings = SESSION_SETTINGS.map(|s| s.replace("SET LOCAL", "SET")).join("; ");
    client.batch_execute(&settings).await.map_err(source_error("set session settings".into()))?;
    let mut checks = Vec::new();
    let now: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", pg_table(&table.name)), &[])
        .await
        .map_err(source_error(format!("count rows of {}", table.name)))?
        .get(0);
    let mut drift = Check::new("source_drift", None, table.row_count, now, true);
    drift.detail =
        Some(format!("rows in the source now vs the snapshot ({:+}); informational: the source moves on", now - table.row_count as i64));
    checks.push(drift);

    let [key] = table.primary_key.as_slice() else {
        let mut skipped = Check::new("sample", None, "rows by primary key", "skipped", true);
        skipped.detail = Some("no single-column primary key".into());
        checks.push(skipped);
        return Ok(checks);
    };
    let Some(key_column) = table.columns.iter().find(|c| &c.mapping.name == key) else { return Ok(checks) };
    let key_bq = quote(&key_column.mapping.bq_name);
    let sql = format!("SELECT CAST({key_bq} AS STRING) FROM {target} ORDER BY RAND() LIMIT {}", config.sample_rows);
    let keys: Vec<String> = bq.query_rows(&sql).await?.into_iter().filter_map(|row| row.into_iter().next().flatten()).collect();
    if keys.is_empty() {
        return Ok(checks);
    }
    // Keys are integers or strings from our own table; quote them as literals on both sides.
    let literal = |k: &str| format!("'{}'", k.replace('\'', "''"));
    let key_list = keys.iter().map(|k| literal(k)).collect::<Vec<_>>().join(", ");
    let expressions: Vec<(String, String, Compare)> = table.columns.iter().map(expressions).collect();
    let bq_sql = format!(
        "SELECT CAST({key_bq} AS STRING), {} FROM {target} WHERE CAST({key_bq} AS STRING) IN ({})",
        expressions.iter().map(|(b, _, _)| format!("CAST({b} AS STRING)")).collect::<Vec<_>>().join(", "),
        key_list.replace("''", "\\'")
    );
    let pg_sql = format!(
        "SELECT {}::text, {} FROM {} WHERE {}::text IN ({key_list})",
        quote_ident(key),
        expressions.iter().map(|(_, p, _)| format!("({p})::text")).collect::<Vec<_>>().join(", "),
        pg_table(&table.name),
        quote_ident(key),
    );
    let bq_rows: std::collections::HashMap<String, Vec<Option<String>>> =
        bq.query_rows(&bq_sql).await?.into_iter().map(|row| (row[0].clone().unwrap_or_default(), row)).collect();
    let pg_rows = client.query(&pg_sql, &[]).await.map_err(source_error(format!("fetch sample rows of {}", table.name)))?;
    let mut compared = 0;
    for pg_row in &pg_rows {
        let pg: Vec<Option<String>> = (0..=expressions.len()).map(|i| pg_row.get::<_, Option<String>>(i)).collect();
        let key = pg[0].clone().unwrap_or_default();
        let Some(bq_row) = bq_rows.get(&key) else { continue };
        compared += 1;
        for (i, (column, (_, _, how))) in table.columns.iter().zip(&expressions).enumerate() {
            let (b, p) = (bq_row[i + 1].as_deref(), pg[i + 1].as_deref());
            if !same(*how, b, p) {
                let clip = |v: Option<&str>| v.map_or("NULL".to_string(), |t| t.chars().take(80).collect());
                let mut check = Check::new("sample", Some(&column.mapping.bq_name), clip(p), clip(b), false);
                check.detail = Some(format!(
                    "{key_bq} = {key}: Postgres (expected) vs BigQuery (actual); the source may have changed since the snapshot"
                ));
                checks.push(check);
            }
        }
    }
    let mut summary = Check::new("sample", None, format!("{} rows equal", keys.len()), format!("{compared} rows compared"), compared > 0);
    summary.detail = Some(format!("random rows by {key}; missing in Postgres: {}", keys.len() - compared));
    checks.push(summary);
    Ok(checks)
}
