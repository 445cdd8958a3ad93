//! The export plan: for every table, the columns with their mappings, the SELECT, the
//! partitions with bounds and exact row counts, and the data checks, all read inside the
//! snapshot. Nothing is written while planning; `--dry-run` prints this plan.

use serde::Serialize;

use crate::config::{ExportConfig, TableSpec};
use crate::sink::manifest::{ForeignKey, PartitionManifest};
use crate::source::postgres::SnapshotSession;
use crate::source::types::{bigquery_column_names, map_column, quote_ident, ColumnMapping, OutOfRange, PgColumn};
use crate::source::SourceError;

/// What a run will do.
#[derive(Debug, Clone, Serialize)]
pub struct ExportPlan {
    pub run_id: String,
    pub destination: String,
    pub source: crate::sink::manifest::SourceInfo,
    pub tables: Vec<TablePlan>,
}

/// One table or query.
#[derive(Debug, Clone, Serialize)]
pub struct TablePlan {
    pub name: String,
    pub bq_table: String,
    /// Directory name under the run: `schema.table` or the query name.
    pub directory: String,
    pub source_query: String,
    pub columns: Vec<ColumnMapping>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub partitions: Vec<PartitionManifest>,
    pub row_count: u64,
    /// Rows per column that `--out-of-range clamp|null` will change.
    pub adjusted_rows: Vec<(String, u64)>,
    /// Files at least written: one per non-empty partition (more when `--file-size` rolls them).
    pub min_files: usize,
}

/// Why a plan cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("nothing to export: give --table, --query or a config file with tables")]
    NothingToExport,
    #[error("{} problem(s) must be solved before any data moves:\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Refused { problems: Vec<String> },
    #[error("table `{table}`: --partition-on column `{column}` {reason}")]
    PartitionKey { table: String, column: String, reason: String },
}

/// Builds the plan inside `session`'s snapshot.
///
/// # Errors
/// [`PlanError::Refused`] lists every column that cannot be exported as is, with the way out.
pub async fn plan_export(config: &ExportConfig, session: &SnapshotSession, run_id: &str) -> Result<ExportPlan, PlanError> {
    if config.tables.is_empty() {
        return Err(PlanError::NothingToExport);
    }
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    for spec in &config.tables {
        match plan_table(config, spec, session).await? {
            Ok(table) => tables.push(table),
            Err(mut table_problems) => problems.append(&mut table_problems),
        }
    }
    if !problems.is_empty() {
        return Err(PlanError::Refused { problems });
    }
    Ok(ExportPlan { run_id: run_id.to_string(), destination: config.destination.clone(), source: session.info.clone(), tables })
}

async fn plan_table(config: &ExportConfig, spec: &TableSpec, session: &SnapshotSession) -> Result<Result<TablePlan, Vec<String>>, PlanError> {
    let (name, from, columns, primary_key, foreign_keys, oid) = match &spec.query {
        Some(sql) => {
            let columns = session.query_columns(sql, &spec.name).await?;
            (spec.name.clone(), format!("({sql}) AS {}", quote_ident("q")), columns, Vec::new(), Vec::new(), None)
        }
        None => {
            let table = session.resolve_table(&spec.name).await?;
            let from = format!("{}.{}", quote_ident(&table.schema), quote_ident(&table.name));
            let columns = session.columns(table.oid).await?;
            let pk = session.primary_key(table.oid).await?;
            let fks = session.foreign_keys(table.oid).await?;
            (format!("{}.{}", table.schema, table.name), from, columns, pk, fks, Some(table.oid))
        }
    };
    let out_of_range = spec.out_of_range.unwrap_or(config.out_of_range);
    let mut problems = Vec::new();
    let mut mappings = Vec::new();
    for column in &columns {
        match map_column(column, spec.casts.get(&column.name).copied(), out_of_range) {
            Ok(mapping) => mappings.push(mapping),
            Err(refusal) => problems.push(format!("table `{name}`, column `{}` ({}): {}", refusal.column, refusal.pg_type, refusal.reason)),
        }
    }
    for unknown in spec.casts.keys().filter(|c| !columns.iter().any(|col| &col.name == *c)) {
        problems.push(format!("table `{name}`: --cast names column `{unknown}`, which the table does not have"));
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    for (mapping, bq_name) in mappings.iter_mut().zip(bigquery_column_names(columns.iter().map(|c| c.name.as_str()))) {
        mapping.bq_name = bq_name;
    }
    let select_list: Vec<String> = mappings.iter().map(|m| format!("{} AS {}", m.select_expr, quote_ident(&m.bq_name))).collect();
    let source_query = format!("SELECT {} FROM {from}", select_list.join(", "));

    let partitions = partition_predicates(config, spec, session, &name, &from, &columns, &primary_key, oid).await?;
    let checks: Vec<(&ColumnMapping, String)> =
        mappings.iter().filter_map(|m| m.check.as_ref().map(|c| (m, format!("({})", c.predicate)))).collect();
    let mut filters: Vec<String> = partitions.iter().map(|p| p.predicate.clone()).collect();
    let partition_filters = if partitions.len() > 1 { filters.len() } else { 0 };
    if partitions.len() <= 1 {
        filters.clear();
    }
    filters.extend(checks.iter().map(|(_, predicate)| predicate.clone()));
    let counts = session.counts(&from, &filters, &format!("table `{name}`")).await?;
    let row_count = counts[0];
    let mut partitions = partitions;
    if partition_filters == 0 {
        if let Some(p) = partitions.first_mut() {
            p.rows = row_count;
        }
    } else {
        for (p, rows) in partitions.iter_mut().zip(&counts[1..=partition_filters]) {
            p.rows = *rows;
        }
    }
    let mut adjusted_rows = Vec::new();
    for ((mapping, _), offending) in checks.iter().zip(&counts[1 + partition_filters..]) {
        if *offending == 0 {
            continue;
        }
        let check = mapping.check.as_ref().expect("checks come from mappings with a check");
        if check.range_adjustable && out_of_range != OutOfRange::Refuse {
            adjusted_rows.push((mapping.name.clone(), *offending));
            continue;
        }
        let way_out = if check.range_adjustable {
            format!("pass `--out-of-range clamp` or `--out-of-range null`, or `--cast {}=text`", mapping.name)
        } else {
            format!("export the column as text with `--cast {}=text`", mapping.name)
        };
        problems.push(format!(
            "table `{name}`, column `{}` ({}): {offending} row(s) hold {}; {way_out}",
            mapping.name, mapping.pg_type, check.problem
        ));
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let directory = name.clone();
    let bq_table = bigquery_table_name(&name);
    Ok(Ok(TablePlan {
        name,
        bq_table,
        directory,
        source_query,
        columns: mappings,
        primary_key,
        foreign_keys,
        row_count,
        adjusted_rows,
        min_files: partitions.iter().filter(|p| p.rows > 0).count(),
        partitions,
    }))
}

/// `public.events` → `events`; `audit.events` → `audit__events`; then BigQuery-safe.
pub fn bigquery_table_name(name: &str) -> String {
    let flat = match name.split_once('.') {
        Some(("public", table)) => table.to_string(),
        Some((schema, table)) => format!("{schema}__{table}"),
        None => name.to_string(),
    };
    bigquery_column_names([flat.as_str()]).remove(0)
}

#[allow(clippy::too_many_arguments)]
async fn partition_predicates(
    config: &ExportConfig,
    spec: &TableSpec,
    session: &SnapshotSession,
    name: &str,
    from: &str,
    columns: &[PgColumn],
    primary_key: &[String],
    oid: Option<u32>,
) -> Result<Vec<PartitionManifest>, PlanError> {
    let count = spec.partitions.unwrap_or(config.partitions).max(1);
    let whole = || vec![PartitionManifest { index: 0, method: "whole".into(), predicate: String::new(), lower: None, upper: None, rows: 0 }];
    if count == 1 {
        return Ok(whole());
    }
    let is_integer = |c: &&PgColumn| matches!(c.type_name.as_str(), "int2" | "int4" | "int8") && c.element_type.is_none();
    let key = match &spec.partition_on {
        Some(column) => {
            let found = columns.iter().find(|c| &c.name == column).ok_or_else(|| PlanError::PartitionKey {
                table: name.to_string(),
                column: column.clone(),
                reason: "does not exist".into(),
            })?;
            if !is_integer(&found) {
                return Err(PlanError::PartitionKey {
                    table: name.to_string(),
                    column: column.clone(),
                    reason: format!("is {}, not an integer; omit --partition-on to split by heap blocks", found.type_display),
                });
            }
            Some(found)
        }
        None if primary_key.len() == 1 => columns.iter().find(|c| c.name == primary_key[0]).filter(is_integer),
        None => None,
    };
    if let Some(key) = key {
        let quoted = quote_ident(&key.name);
        let Some((min, max)) = session.key_range(from, &quoted, &format!("table `{name}`")).await? else {
            return Ok(whole());
        };
        let bounds = split_range(min, max, count);
        let mut partitions: Vec<PartitionManifest> = bounds
            .windows(2)
            .enumerate()
            .map(|(index, w)| {
                let (lower, upper) = (w[0], w[1]);
                let first = index == 0;
                let last = index == bounds.len() - 2;
                let predicate = match (first, last) {
                    (true, true) => format!("{quoted} IS NOT NULL"),
                    (true, false) => format!("{quoted} < {upper}"),
                    (false, true) => format!("{quoted} >= {lower}"),
                    (false, false) => format!("{quoted} >= {lower} AND {quoted} < {upper}"),
                };
                PartitionManifest {
                    index,
                    method: "key_range".into(),
                    predicate,
                    lower: (!first).then(|| lower.to_string()),
                    upper: (!last).then(|| upper.to_string()),
                    rows: 0,
                }
            })
            .collect();
        if !key.not_null {
            partitions.push(PartitionManifest {
                index: partitions.len(),
                method: "key_null".into(),
                predicate: format!("{quoted} IS NULL"),
                lower: None,
                upper: None,
                rows: 0,
            });
        }
        return Ok(partitions);
    }
    let Some(oid) = oid else {
        return Ok(whole());
    };
    let blocks = session.block_count(oid, &format!("table `{name}`")).await?;
    if blocks < count as i64 {
        return Ok(whole());
    }
    let bounds = split_range(0, blocks, count);
    Ok(bounds
        .windows(2)
        .enumerate()
        .map(|(index, w)| {
            let first = index == 0;
            let last = index == bounds.len() - 2;
            let lower = format!("ctid >= '({},0)'::tid", w[0]);
            let upper = format!("ctid < '({},0)'::tid", w[1]);
            let predicate = match (first, last) {
                (true, true) => "true".to_string(),
                (true, false) => upper,
                (false, true) => lower,
                (false, false) => format!("{lower} AND {upper}"),
            };
            PartitionManifest {
                index,
                method: "block_range".into(),
                predicate,
                lower: (!first).then(|| format!("({},0)", w[0])),
                upper: (!last).then(|| format!("({},0)", w[1])),
                rows: 0,
            }
        })
        .collect())
}

/// `count + 1` increasing bounds from `min` to `max`, splitting the range evenly.
fn split_range(min: i64, max: i64, count: usize) -> Vec<i64> {
    let span = (max as i128 - min as i128).max(0) + 1;
    let count = (count as i128).min(span).max(1);
    let mut bounds: Vec<i64> = (0..count).map(|i| (min as i128 + span * i / count) as i64).collect();
    bounds.push(max);
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_keys_without_overlap() {
        assert_eq!(split_range(1, 100, 4), vec![1, 26, 51, 76, 100]);
        assert_eq!(split_range(5, 6, 4), vec![5, 6, 6]);
        assert_eq!(split_range(i64::MIN, i64::MAX, 2), vec![i64::MIN, 0, i64::MAX]);
    }

    #[test]
    fn table_names_flatten_schemas() {
        assert_eq!(bigquery_table_name("public.events"), "events");
        assert_eq!(bigquery_table_name("audit.log-2024"), "audit__log_2024");
        assert_eq!(bigquery_table_name("recent"), "recent");
    }
}
