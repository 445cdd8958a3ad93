//! The export plan: for every table, the columns with their mappings, the SELECT, the
//! partitions with bounds and exact row counts, and the data checks, all read inside the
//! snapshot. Nothing is written while planning; `--dry-run` prints this plan.

use serde::Serialize;

use crate::export::config::{ExportConfig, ExportTable, TableSource};
use crate::model::manifest::{ForeignKey, PartitionManifest};
use crate::model::partition::{KeyColumn, PartitionBounds};
use crate::model::types::{bigquery_column_names, bigquery_identifier, map_column, quote_ident, ColumnMapping, OutOfRange, PgColumn};
use crate::source::postgres::SnapshotSession;
use crate::source::SourceError;

/// What a run will do.
#[derive(Debug, Clone, Serialize)]
pub struct ExportPlan {
    pub run_id: String,
    pub destination: String,
    pub source: crate::model::manifest::SourceInfo,
    pub tables: Vec<TablePlan>,
    /// `--dry-run` only: what would refuse the run (a real run stops with these instead).
    pub problems: Vec<String>,
}

/// One table or query.
#[derive(Debug, Clone, Serialize)]
pub struct TablePlan {
    pub name: String,
    pub bq_table: String,
    pub source_query: String,
    pub columns: Vec<ColumnMapping>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub partitions: Vec<PartitionManifest>,
    pub row_count: u64,
    /// Rows per column that `--out-of-range clamp|null` will change.
    pub adjusted_rows: Vec<(String, u64)>,
    /// Per numeric column, the largest scale and integer-digit count its values use.
    pub numeric_in_use: Vec<NumericInUse>,
    /// Files at least written: one per non-empty partition (more when `--file-size` rolls them).
    pub min_files: usize,
}

/// What a numeric column's values need, found while counting (dry-run information).
#[derive(Debug, Clone, Serialize)]
pub struct NumericInUse {
    pub column: String,
    pub max_scale: Option<i64>,
    pub max_integer_digits: Option<i64>,
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
/// [`PlanError::Refused`] lists every column that cannot be exported as is, with the way out
/// (with `dry_run`, they are returned in the plan instead, next to the tables that can go).
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
    problems.extend(bigquery_name_collisions(&tables));
    if !problems.is_empty() && !config.dry_run {
        return Err(PlanError::Refused { problems });
    }
    Ok(ExportPlan { run_id: run_id.to_string(), destination: config.destination.clone(), source: session.info.clone(), tables, problems })
}

/// A table or query as the source describes it, before any column is mapped.
struct SourceShape {
    /// `schema.table`, or the query's name.
    name: String,
    /// What the SELECT reads: the quoted table, or the query as a subquery.
    from: String,
    columns: Vec<PgColumn>,
    primary_key: Vec<String>,
    foreign_keys: Vec<ForeignKey>,
    /// The table's oid; `None` for a query.
    oid: Option<u32>,
}

impl SourceShape {
    /// How problems name it: table \`s.t\` or query \`name\`.
    fn what(&self) -> String {
        match self.oid {
            Some(_) => format!("table `{}`", self.name),
            None => format!("query `{}`", self.name),
        }
    }
}

/// One table's plan, or the problems that keep it from being exported.
type Planned = Result<TablePlan, Vec<String>>;

async fn plan_table(config: &ExportConfig, spec: &ExportTable, session: &SnapshotSession) -> Result<Planned, PlanError> {
    let shape = match read_shape(spec, session).await? {
        Ok(shape) => shape,
        Err(problems) => return Ok(Err(problems)),
    };
    let what = shape.what();
    let mappings = match map_columns(config, spec, &shape) {
        Ok(mappings) => mappings,
        Err(problems) => return Ok(Err(problems)),
    };
    let select_list: Vec<String> = mappings.iter().map(|m| format!("{} AS {}", m.select_expr, quote_ident(&m.bq_name))).collect();
    let source_query = format!("SELECT {} FROM {}", select_list.join(", "), shape.from);
    session.probe(&source_query, &what).await?;
    let several = config.tables.len() > 1;
    let basis = split_basis(spec, session, &shape, &mappings, several).await?;
    let partitions = partitions_for(&basis, spec.partitions.max(1));
    let counted = count_rows(spec, session, &shape, &mappings, partitions).await?;
    let adjusted_rows = match out_of_range_rows(spec.out_of_range, &what, &mappings, &counted.offending) {
        Ok(adjusted_rows) => adjusted_rows,
        Err(problems) => return Ok(Err(problems)),
    };
    let SourceShape { name, primary_key, foreign_keys, .. } = shape;
    Ok(Ok(TablePlan {
        bq_table: bigquery_table_name(&name),
        name,
        source_query,
        columns: mappings,
        primary_key,
        foreign_keys,
        row_count: counted.row_count,
        adjusted_rows,
        numeric_in_use: counted.numeric_in_use,
        min_files: counted.partitions.iter().filter(|p| p.rows > 0).count(),
        partitions: counted.partitions,
    }))
}

/// Reads what the table or query is made of; a table this role cannot read whole gives
/// its access problems instead.
async fn read_shape(spec: &ExportTable, session: &SnapshotSession) -> Result<Result<SourceShape, Vec<String>>, PlanError> {
    match &spec.source {
        TableSource::Query(sql) => Ok(Ok(SourceShape {
            name: spec.name.clone(),
            // A newline ends a trailing `-- comment` before the closing parenthesis.
            from: format!("({sql}\n) AS {}", quote_ident("q")),
            columns: session.query_columns(sql, &spec.name).await?,
            primary_key: Vec::new(),
            foreign_keys: Vec::new(),
            oid: None,
        })),
        TableSource::Table { schema, table } => {
            let table = session.resolve_table(schema, table).await?;
            let name = format!("{}.{}", table.schema, table.name);
            let columns = session.columns(table.oid).await?;
            let access = session.access_problems(table.oid, &name, columns.len()).await?;
            if !access.is_empty() {
                return Ok(Err(access));
            }
            Ok(Ok(SourceShape {
                name,
                from: format!("{}.{}", quote_ident(&table.schema), quote_ident(&table.name)),
                columns,
                primary_key: session.primary_key(table.oid).await?,
                foreign_keys: session.foreign_keys(table.oid).await?,
                oid: Some(table.oid),
            }))
        }
    }
}

/// Maps every column to its route under a BigQuery-safe name, or lists every column that
/// cannot go as it is (unnamed, unmappable, absent but cast), with the way out.
fn map_columns(config: &ExportConfig, spec: &ExportTable, shape: &SourceShape) -> Result<Vec<ColumnMapping>, Vec<String>> {
    let (what, columns) = (shape.what(), &shape.columns);
    let mut problems = Vec::new();
    let unnamed = |c: &&PgColumn| shape.oid.is_none() && c.name == "?column?";
    for (position, _) in columns.iter().enumerate().filter(|(_, c)| unnamed(c)) {
        problems.push(format!(
            "{what}: column {} has no name (`?column?`); give every expression an alias, e.g. `SELECT a + b AS total`",
            position + 1
        ));
    }
    let mut mappings = Vec::new();
    for column in columns {
        match map_column(column, spec.casts.get(&column.name).copied(), spec.out_of_range) {
            Ok(mapping) => mappings.push(mapping),
            Err(refusal) => problems.push(format!("{what}, column `{}` ({}): {}", refusal.column, refusal.pg_type, refusal.reason)),
        }
    }
    if columns.is_empty() {
        problems.push(format!("{what} has no columns; a BigQuery table needs at least one, leave it out of the run"));
    }
    for unknown in spec.casts.keys().filter(|c| !columns.iter().any(|col| &col.name == *c)) {
        let hint = if config.tables.len() > 1 {
            format!("; to cast it in one table only, qualify it: `--cast schema.table.{unknown}=text`")
        } else {
            String::new()
        };
        problems.push(format!("{what}: --cast names column `{unknown}`, which it does not have{hint}"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for (mapping, bq_name) in mappings.iter_mut().zip(bigquery_column_names(columns.iter().map(|c| c.name.as_str()))) {
        mapping.bq_name = bq_name;
    }
    Ok(mappings)
}

/// What one scan of the table counted: rows in all and per partition, rows failing each
/// column's value check, and the numeric columns' scales in use.
struct Counted {
    row_count: u64,
    partitions: Vec<PartitionManifest>,
    /// Per column with a value check, in column order: the rows that fail it.
    offending: Vec<u64>,
    numeric_in_use: Vec<NumericInUse>,
}

/// Counts, in one scan of the snapshot, every partition's rows, the rows each value check
/// catches, and what the numeric columns' values need.
async fn count_rows(
    spec: &ExportTable,
    session: &SnapshotSession,
    shape: &SourceShape,
    mappings: &[ColumnMapping],
    mut partitions: Vec<PartitionManifest>,
) -> Result<Counted, PlanError> {
    let mut filters: Vec<String> = partitions.iter().filter(|p| !p.predicate.is_empty()).map(|p| p.predicate.clone()).collect();
    let partition_filters = filters.len();
    filters.extend(mappings.iter().filter_map(|m| m.check.as_ref().map(|c| format!("({})", c.predicate))));
    let numeric: Vec<&PgColumn> = shape
        .columns
        .iter()
        .filter(|c| c.type_name == "numeric" && c.element_type.is_none() && !spec.casts.contains_key(&c.name))
        .collect();
    let finite = |c: &PgColumn| format!("CASE WHEN {0} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {0} END", quote_ident(&c.name));
    let stats: Vec<String> = numeric
        .iter()
        .flat_map(|c| [format!("max(scale({}))", finite(c)), format!("max(length(trunc(abs({}))::text))", finite(c))])
        .collect();
    let (counts, stats) = session.counts(&shape.from, &filters, &stats, &format!("table `{}`", shape.name)).await?;
    let numeric_in_use = numeric
        .iter()
        .zip(stats.chunks(2))
        .map(|(c, s)| NumericInUse { column: c.name.clone(), max_scale: s[0], max_integer_digits: s[1] })
        .collect();
    let row_count = counts[0];
    if partition_filters == 0 {
        partitions[0].rows = row_count;
    } else {
        for (p, rows) in partitions.iter_mut().zip(&counts[1..=partition_filters]) {
            p.rows = *rows;
        }
    }
    Ok(Counted { row_count, partitions, offending: counts[1 + partition_filters..].to_vec(), numeric_in_use })
}

/// The rows `--out-of-range clamp|null` will change, per column; or, for values it cannot or
/// may not adjust, a problem per column with the way out.
fn out_of_range_rows(
    out_of_range: OutOfRange,
    what: &str,
    mappings: &[ColumnMapping],
    offending: &[u64],
) -> Result<Vec<(String, u64)>, Vec<String>> {
    let checked = mappings.iter().filter_map(|m| m.check.as_ref().map(|check| (m, check)));
    let mut adjusted_rows = Vec::new();
    let mut problems = Vec::new();
    for ((mapping, check), &offending) in checked.zip(offending).filter(|(_, &n)| n > 0) {
        if check.range_adjustable && out_of_range != OutOfRange::Refuse {
            adjusted_rows.push((mapping.name.clone(), offending));
            continue;
        }
        let way_out = if check.range_adjustable {
            format!("pass `--out-of-range clamp` or `--out-of-range null`, or `--cast {}=text`", mapping.name)
        } else {
            format!("export the column as text with `--cast {}=text`", mapping.name)
        };
        problems
            .push(format!("{what}, column `{}` ({}): {offending} row(s) hold {}; {way_out}", mapping.name, mapping.pg_type, check.problem));
    }
    if problems.is_empty() {
        Ok(adjusted_rows)
    } else {
        Err(problems)
    }
}

/// `public.events` → `events`; `audit.events` → `audit__events`; then BigQuery-safe.
pub fn bigquery_table_name(name: &str) -> String {
    let flat = match name.split_once('.') {
        Some(("public", table)) => table.to_string(),
        Some((schema, table)) => format!("{schema}__{table}"),
        None => name.to_string(),
    };
    bigquery_identifier(&flat)
}

/// Tables and queries that would land in one BigQuery table (names compared ignoring case,
/// as a case-insensitive dataset does), each pair named, with the way out.
fn bigquery_name_collisions(tables: &[TablePlan]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, later) in tables.iter().enumerate() {
        if let Some(first) = tables[..i].iter().find(|t| t.bq_table.eq_ignore_ascii_case(&later.bq_table)) {
            problems.push(format!(
                "`{}` and `{}` both map to BigQuery table `{}`; export them in separate runs (loaded with different \
                 --table-prefix or datasets), or give the query another name",
                first.name, later.name, later.bq_table
            ));
        }
    }
    problems
}

/// What a table's rows are split on, for partitions and for the chunks inside them.
#[derive(Debug, Clone)]
enum Basis {
    /// No integer key and no heap to split (queries, tiny tables).
    Whole,
    /// An integer column: `min`..=`max`; NULL keys get their own partition.
    Key { key: KeyColumn, min: i64, max: i64, nullable: bool },
    /// Heap blocks `0..blocks` by ctid (the last range is open, so rows in later blocks count).
    Blocks { blocks: i64 },
}

async fn split_basis(
    spec: &ExportTable,
    session: &SnapshotSession,
    shape: &SourceShape,
    mappings: &[ColumnMapping],
    several: bool,
) -> Result<Basis, PlanError> {
    let what = format!("table `{}`", shape.name);
    if let Some(position) = key_column(spec, shape, several)? {
        let column = &shape.columns[position];
        let key = KeyColumn { postgres: column.name.clone(), bigquery: mappings[position].bq_name.clone() };
        return Ok(match session.key_range(&shape.from, &quote_ident(&key.postgres), &what).await? {
            Some((min, max)) => Basis::Key { key, min, max, nullable: !column.not_null },
            None => Basis::Whole,
        });
    }
    match shape.oid {
        Some(oid) => {
            let blocks = session.block_count(oid, &what).await?;
            Ok(if blocks > 1 { Basis::Blocks { blocks } } else { Basis::Whole })
        }
        None => Ok(Basis::Whole),
    }
}

/// The position of the integer column to split on: `--partition-on`, else a one-column
/// integer primary key.
fn key_column(spec: &ExportTable, shape: &SourceShape, several: bool) -> Result<Option<usize>, PlanError> {
    let is_integer = |c: &PgColumn| matches!(c.type_name.as_str(), "int2" | "int4" | "int8") && c.element_type.is_none();
    let position = |name: &str| shape.columns.iter().position(|c| c.name == name);
    let Some(column) = &spec.partition_on else {
        return Ok(match shape.primary_key.as_slice() {
            [key] => position(key).filter(|&p| is_integer(&shape.columns[p])),
            _ => None,
        });
    };
    let refused = |reason: String| PlanError::PartitionKey { table: shape.name.clone(), column: column.clone(), reason };
    let found = position(column).ok_or_else(|| {
        refused(if several {
            format!("does not exist; to split one table only, qualify it: `--partition-on schema.table.{column}`")
        } else {
            "does not exist".into()
        })
    })?;
    if !is_integer(&shape.columns[found]) {
        let shown = &shape.columns[found].type_display;
        return Err(refused(format!("is {shown}, not an integer; omit --partition-on to split by heap blocks")));
    }
    Ok(Some(found))
}

/// Splits `[first, last]` into `count` ranges; each is `(lower, upper)` with open outer ends.
fn ranges(first: i64, last: i64, count: usize) -> Vec<(Option<i64>, Option<i64>)> {
    let bounds = split_range(first, last, count);
    let n = bounds.len() - 1;
    (0..n).map(|i| ((i > 0).then(|| bounds[i]), (i < n - 1).then(|| bounds[i + 1]))).collect()
}

/// The partitions of a table with their bounds (row counts are filled in later).
fn partitions_for(basis: &Basis, count: usize) -> Vec<PartitionManifest> {
    let bounds: Vec<PartitionBounds> = match basis {
        Basis::Whole => vec![PartitionBounds::Whole],
        Basis::Key { key, min, max, nullable } => {
            let ranges = ranges(*min, *max, count).into_iter();
            let mut bounds: Vec<_> = ranges.map(|(from, to)| PartitionBounds::KeyRange { key: key.clone(), from, to }).collect();
            if *nullable {
                bounds.push(PartitionBounds::KeyNull { key: key.clone() });
            }
            bounds
        }
        Basis::Blocks { blocks } => {
            ranges(0, *blocks, count).into_iter().map(|(from, to)| PartitionBounds::BlockRange { from, to }).collect()
        }
    };
    bounds.into_iter().enumerate().map(|(index, bounds)| PartitionManifest::new(index, bounds)).collect()
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
    fn partitions_have_open_outer_ends_and_a_null_partition() {
        let key = KeyColumn { postgres: "k".into(), bigquery: "k".into() };
        let basis = Basis::Key { key, min: 0, max: 99, nullable: true };
        let predicates: Vec<String> = partitions_for(&basis, 2).into_iter().map(|p| p.predicate).collect();
        assert_eq!(predicates, [r#""k" < 50"#, r#""k" >= 50"#, r#""k" IS NULL"#]);
        let blocks: Vec<String> = partitions_for(&Basis::Blocks { blocks: 10 }, 2).into_iter().map(|p| p.predicate).collect();
        assert_eq!(blocks, ["ctid < '(5,0)'::tid", "ctid >= '(5,0)'::tid"]);
    }

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
        assert_eq!(bigquery_table_name("public.t-1"), bigquery_table_name("public.t_1"));
        assert_eq!(bigquery_table_name("audit.events"), bigquery_table_name("public.audit__events"));
        assert_eq!(bigquery_table_name("public._PARTITIONTIME"), "_PARTITIONTIME");
    }
}
