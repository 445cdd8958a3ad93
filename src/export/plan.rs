//! The export plan: for every table, the columns with their mappings, the SELECT, the
//! partitions (units of work) with bounds and exact row counts, and the data checks, all read
//! inside the snapshot. Not pure: planning queries Postgres (the catalog, the counts, the value
//! checks, a tail's earlier rows) in the run's snapshot, and reads a `--since` run's row hashes.
//! Nothing is written while planning; `--dry-run` prints this plan. Refusals are
//! [`Problem`]s, every table's at once.
//!
//! How a table is cut into units (child relations, key ranges, block ranges, and how many) is
//! described once, for users, in docs/export.md ("Units"); `plan_units` and
//! `tree_units` apply it, `UnitSizing` sizes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::export::changes::{changes_among, locate_changes, HashError};
use crate::export::config::{ExportConfig, ExportTable, TableSource};
use crate::export::problem::{EarlierCount, Problem, Subject};
use crate::model::manifest::{ForeignKey, Manifest, PartitionManifest, RowHashes, TableManifest};
use crate::model::partition::{BlockSpan, KeyColumn, PartitionBounds, Relation};
use crate::model::row_hash::{Changes, HashQuery, MAX_CARRIED_KEYS};
use crate::model::table_ref::TableRef;
use crate::model::tail::{updated_since, Carried, Tail};
use crate::model::types::{
    bigquery_column_names, bigquery_identifier, json_number_check, map_column, quote_ident, ColumnMapping, OnBadValue, OutOfRange, PgColumn,
};
use crate::source::postgres::{CompressedChunk, InvalidText, SnapshotSession, TreeRelation};
use crate::source::PgStep;
use crate::source::SourceError;
use crate::storage::store::Store;

/// Units are not cut smaller than this: below it a unit's own cost (a connection joining the
/// snapshot, a file) outweighs the parallelism it adds.
pub const MIN_UNIT_BYTES: u64 = 64 << 20;
/// Units are not larger than this, so a retry or a resumed run repeats little and a table
/// of any size is shared among the workers.
pub const MAX_UNIT_BYTES: u64 = 1 << 30;
/// Heap block size assumed for sizing (PostgreSQL's default build).
const BLOCK_BYTES: u64 = 8192;

/// What a run will do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportPlan {
    pub run_id: String,
    pub destination: String,
    pub source: crate::model::manifest::SourceInfo,
    pub tables: Vec<TablePlan>,
    /// `--dry-run` only: what would refuse the run (a real run stops with these instead); a
    /// plan read back (a worker's) has none.
    #[serde(skip_deserializing)]
    pub problems: Vec<Problem>,
}

/// One table or query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TablePlan {
    /// The name the table goes by in the run: its [`TableRef`] displayed, or the query's name.
    pub name: String,
    /// The table read, as the catalog spells it; `None` for a query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableRef>,
    pub bq_table: String,
    pub source_query: String,
    /// What the SELECT reads: the quoted table, or the query as a subquery.
    pub from: String,
    pub columns: Vec<ColumnMapping>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub partitions: Vec<PartitionManifest>,
    pub row_count: u64,
    /// A tail export (`--since`): every unit reads only the rows above the earlier run's (and
    /// those it carries).
    pub tail: Option<Tail>,
    /// A tail's `--carry-changes`: the keys of the rows deleted below its watermark since the
    /// parent, written to `_deleted/keys.parquet` when the run commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_keys: Vec<String>,
    /// `--on-bad-value quarantine`: the rows set aside instead of exported.
    pub quarantine: Option<Quarantine>,
    /// Rows per column that `--out-of-range clamp|null` will change.
    pub adjusted_rows: Vec<(String, u64)>,
    /// Per numeric column, the largest scale and integer-digit count its values use.
    pub numeric_in_use: Vec<NumericInUse>,
    /// Files at least written: one per non-empty partition (more when `--file-size` rolls them).
    pub min_files: usize,
}

/// What a numeric column's values need, found while counting (dry-run information).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    Refused { problems: Vec<Problem> },
    #[error("--since: cannot compare table `{table}` with the row hashes run `{run_id}` recorded (`{uri}`)")]
    ParentRowHashes {
        run_id: String,
        table: String,
        uri: String,
        #[source]
        source: HashError,
    },
    #[error("table `{table}`: --partition-on column `{column}` {reason}")]
    PartitionKey { table: String, column: String, reason: String },
    #[error("table `{table}`: its {units} units hold {unit_rows} rows but the snapshot holds {table_rows}; a relation under it was not read (report this), nothing was exported")]
    UnitsMissRows { table: String, units: usize, unit_rows: u64, table_rows: u64 },
}

/// The run a tail continues (`--since`): its manifest, and per table the keys of the rows it
/// set aside (from its `_rejected` files; NULL keys, of a table without one, left out).
#[derive(Debug, Clone)]
pub struct Parent {
    pub manifest: Manifest,
    pub set_aside: BTreeMap<String, Vec<String>>,
    /// Where its files are: the store and the run directory in it.
    pub store: Arc<Store>,
    pub run_dir: String,
}

/// Builds the plan inside `session`'s snapshot.
///
/// # Errors
/// [`PlanError::Refused`] lists every column that cannot be exported as is, with the way out
/// (with `dry_run`, they are returned in the plan instead, next to the tables that can go).
/// With `parent` (`--since`), each table is a tail of the parent run's ([`crate::model::tail`]).
pub async fn plan_export(
    config: &ExportConfig,
    session: &SnapshotSession,
    run_id: &str,
    parent: Option<&Parent>,
) -> Result<ExportPlan, PlanError> {
    if config.tables.is_empty() {
        return Err(PlanError::NothingToExport);
    }
    let workers = config.jobs;
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    for spec in &config.tables {
        let sizing = UnitSizing { workers, explicit: spec.partitions };
        match plan_table(config, spec, session, sizing, parent).await? {
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

/// A tail's bound for the table (`--since`), checked: the rows at or below it (or without a
/// watermark) in this snapshot must be exactly those the earlier runs hold, or (with `carry`,
/// by key) the tail carries the rows changed there and the keys of those deleted. The
/// watermark is `--watermark`, else a single-column integer primary key (an append-only
/// table's).
async fn plan_tail(
    (spec, carry): (&ExportTable, bool),
    session: &SnapshotSession,
    shape: &SourceShape,
    mappings: &[ColumnMapping],
    parent: Option<&Parent>,
) -> Result<Result<Option<(Tail, Vec<String>)>, Vec<Problem>>, PlanError> {
    let Some(parent_run @ Parent { manifest: parent, set_aside, .. }) = parent else { return Ok(Ok(None)) };
    let refuse = |problem: Problem| Ok(Err(vec![problem]));
    let what = shape.subject();
    let same = |t: &&TableManifest| match &shape.table {
        Some(table) => t.source_table().as_ref() == Some(table),
        None => t.name == shape.name,
    };
    let Some(earlier) = parent.tables.iter().find(same) else {
        return refuse(Problem::NotInParent { what, parent_run: parent.run_id.clone() });
    };
    let column = match (&spec.watermark, shape.primary_key.as_slice()) {
        (Some(column), _) => column.clone(),
        (None, [key]) => key.clone(),
        (None, _) => return refuse(Problem::NoWatermark { what, name: shape.name.clone() }),
    };
    let Some(mapping) = mappings.iter().find(|m| m.name == column) else {
        return refuse(Problem::NoWatermarkColumn { what, column });
    };
    let set_aside = set_aside.get(&earlier.name).map_or(&[][..], Vec::as_slice);
    let tail = match Tail::after_run(earlier.tail_parent(&parent.run_id, &mapping.name), mapping, &shape.primary_key, set_aside) {
        Ok(tail) => tail,
        Err(refused) => return refuse(Problem::Watermark(refused)),
    };
    let updated_at = match &spec.updated_at {
        None => None,
        Some(name) => match mappings.iter().find(|m| &m.name == name) {
            Some(m) if m.pg_type == "timestamp with time zone" => Some(m),
            Some(m) => return refuse(Problem::UpdatedAtType { what, column: name.clone(), pg_type: m.pg_type.clone() }),
            None => return refuse(Problem::NoUpdatedAtColumn { what, column: name.clone() }),
        },
    };
    let context = TailContext { session, shape, earlier, tail: &tail, column: &column, updated_at, parent: parent_run };
    match earlier_rows(&context).await? {
        EarlierRows::Held => Ok(Ok(Some((tail, Vec::new())))),
        EarlierRows::Differ(problem) => refuse(problem),
        EarlierRows::Changed { counted, changes } if !carry => {
            refuse(Problem::EarlierRowsChanged { what, counted, changes: changes.describe() })
        }
        EarlierRows::Changed { changes, .. } => {
            carried_tail(what, tail, &shape.primary_key, changes).map_or_else(|problems| Ok(Err(problems)), |t| Ok(Ok(Some(t))))
        }
    }
}

/// The tail carrying `changes` (every key, up to [`MAX_CARRIED_KEYS`]) and the deleted keys.
fn carried_tail(what: Subject, tail: Tail, key: &[String], changes: Changes) -> Result<(Tail, Vec<String>), Vec<Problem>> {
    let total = changes.updated.count() + changes.deleted.count() + changes.inserted_late.count();
    if total > MAX_CARRIED_KEYS {
        return Err(vec![Problem::TooManyChanges { what, parent_run: tail.parent_run, total, changes: changes.describe() }]);
    }
    let carried = Carried { keys: changes.carried(), updated: changes.updated.count(), deleted: changes.deleted.count() };
    let mut deleted = changes.deleted.keys().to_vec();
    deleted.sort_unstable();
    Ok((tail.carrying(key, carried), deleted))
}

/// What a tail's check of its earlier rows reads.
struct TailContext<'a> {
    session: &'a SnapshotSession,
    shape: &'a SourceShape,
    earlier: &'a TableManifest,
    tail: &'a Tail,
    column: &'a str,
    /// `--updated-at`: the column the app sets on every insert and update.
    updated_at: Option<&'a ColumnMapping>,
    parent: &'a Parent,
}

/// What a tail's check of the rows at or below its bound found.
enum EarlierRows {
    /// Exactly the rows the earlier runs hold.
    Held,
    /// Other rows, by key: how they count and the keys.
    Changed { counted: EarlierCount, changes: Changes },
    /// Other rows, not told apart by key (no row hashes, or none differ by key): the refusal.
    Differ(Problem),
}

/// Whether the rows at or below the tail's bound are those the earlier runs hold: their count,
/// and (when the parent recorded row hashes under the same key) the sum of their hashes; when
/// they differ, the keys updated, deleted and inserted late.
async fn earlier_rows(c: &TailContext<'_>) -> Result<EarlierRows, PlanError> {
    let (shape, tail) = (c.shape, c.tail);
    let hashes = c.earlier.row_hashes.as_ref().filter(|_| !shape.primary_key.is_empty() && shape.primary_key == c.earlier.primary_key);
    let query = hashes.map(|h| HashQuery {
        from: shape.from.clone(),
        key: shape.primary_key.clone(),
        method: h.method,
        columns: h.columns.clone(),
        text_columns: h.text_columns.clone(),
        filter: Some(tail.earlier_rows_filter()),
    });
    if let (Some(hashes), Some(query)) = (hashes, &query) {
        if let Some(found) = narrowed_check(c, hashes, query).await? {
            return Ok(found);
        }
    }
    let what = format!("rows at or below the watermark of {}", shape.what());
    let (rows, sum) = match &query {
        Some(query) => {
            let totals = c.session.text_rows(&query.totals_sql(), PgStep::CountBelowWatermark { of: shape.what().to_string() }).await?;
            let value = |i: usize| totals.first().and_then(|row| row.get(i).cloned().flatten());
            (value(0).and_then(|n| n.parse().ok()).unwrap_or_default(), value(1))
        }
        None => (c.session.counts(&shape.from, false, &[], &[], Some(&tail.earlier_rows_filter()), &what).await?.counts[0], None),
    };
    if rows == tail.rows_through && hashes.map(|h| &h.sum) == sum.as_ref() {
        return Ok(EarlierRows::Held);
    }
    let counted = counted(c, rows);
    let changes = match (hashes, &query) {
        (Some(hashes), Some(query)) => locate_parent_changes(c, hashes, query).await?,
        _ => Changes::default(),
    };
    if !changes.is_empty() {
        return Ok(EarlierRows::Changed { counted, changes });
    }
    let keyless_set_aside = shape.primary_key.is_empty() && c.earlier.rejected.is_some();
    Ok(EarlierRows::Differ(Problem::EarlierRowsDiffer { what: shape.subject(), counted, keyless_set_aside }))
}

/// How the rows at or below the bound count now, against what the runs up to the parent hold.
fn counted(c: &TailContext<'_>, rows: u64) -> EarlierCount {
    EarlierCount {
        rows,
        watermark: c.column.to_string(),
        parent_run: c.parent.manifest.run_id.clone(),
        set_aside: !c.tail.set_aside.is_empty(),
        held: c.tail.rows_through,
    }
}

/// `--updated-at`: hashes only the rows updated since the parent's snapshot
/// ([`SourceInfo::changes_since`](crate::model::manifest::SourceInfo)) and counts the others.
/// `None` (the whole check runs) when the parent recorded no such time, or when the count shows
/// rows deleted, whose keys only the whole check finds.
async fn narrowed_check(c: &TailContext<'_>, hashes: &RowHashes, query: &HashQuery) -> Result<Option<EarlierRows>, PlanError> {
    let (Some(column), Some(since)) = (c.updated_at, c.parent.manifest.source.changes_since) else { return Ok(None) };
    let Some(updated) = updated_since(column, since) else { return Ok(None) };
    let earlier = c.tail.earlier_rows_filter();
    let what = format!("rows at or below the watermark of {}", c.shape.what());
    let rows = c.session.counts(&c.shape.from, false, &[], &[], Some(&earlier), &what).await?.counts[0];
    let recent = HashQuery { filter: Some(format!("({earlier}) AND {updated}")), ..query.clone() };
    let parent = parent_file(c, hashes).await?;
    let changes = changes_among(c.session, &parent, &recent).await.map_err(|source| parent_failed(c, hashes, source))?;
    let held = c.tail.rows_through + changes.inserted_late.count();
    if rows != held {
        info!(table = %c.shape.name, rows, held, "Rows deleted below the watermark: checking every row's hash");
        return Ok(None);
    }
    Ok(Some(match changes.is_empty() {
        true => EarlierRows::Held,
        false => EarlierRows::Changed { counted: counted(c, rows), changes },
    }))
}

/// The parent's row-hash file, checked against its record, compared with the snapshot's rows.
async fn locate_parent_changes(c: &TailContext<'_>, hashes: &RowHashes, query: &HashQuery) -> Result<Changes, PlanError> {
    let data = parent_file(c, hashes).await?;
    locate_changes(c.session, &data, hashes.file.rows, query).await.map_err(|source| parent_failed(c, hashes, source))
}

/// The parent's row-hash file, checked against its record.
async fn parent_file(c: &TailContext<'_>, hashes: &RowHashes) -> Result<bytes::Bytes, PlanError> {
    let path = format!("{}/{}", c.parent.run_dir, hashes.file.path);
    let data = c.parent.store.get(&path).await.map_err(|e| parent_failed(c, hashes, Box::new(e)))?;
    let crc = crate::storage::store::crc32c_base64(crc32c::crc32c(&data));
    if let Some(difference) = crate::storage::manifest::file_difference(&hashes.file, Some((data.len() as u64, Some(&crc)))) {
        return Err(parent_failed(c, hashes, format!("it differs from the manifest's record: {difference}").into()));
    }
    Ok(data)
}

fn parent_failed(c: &TailContext<'_>, hashes: &RowHashes, source: HashError) -> PlanError {
    PlanError::ParentRowHashes {
        run_id: c.parent.manifest.run_id.clone(),
        table: c.earlier.name.clone(),
        uri: c.parent.store.uri(&format!("{}/{}", c.parent.run_dir, hashes.file.path)),
        source,
    }
}

/// A table or query as the source describes it, before any column is mapped.
struct SourceShape {
    /// The table's [`TableRef`] displayed, or the query's name.
    name: String,
    /// `None` for a query.
    table: Option<TableRef>,
    /// What the SELECT reads: the quoted table, or the query as a subquery.
    from: String,
    columns: Vec<PgColumn>,
    primary_key: Vec<String>,
    foreign_keys: Vec<ForeignKey>,
    /// The table's oid; `None` for a query.
    oid: Option<u32>,
}

impl SourceShape {
    /// What problems are about: the table or the query.
    fn subject(&self) -> Subject {
        match self.oid {
            Some(_) => Subject::Table(self.name.clone()),
            None => Subject::Query(self.name.clone()),
        }
    }

    /// How queries' errors name it: table \`s.t\` or query \`name\`.
    fn what(&self) -> String {
        self.subject().to_string()
    }
}

/// One table's plan, or the problems that keep it from being exported.
type Planned = Result<TablePlan, Vec<Problem>>;

async fn plan_table(
    config: &ExportConfig,
    spec: &ExportTable,
    session: &SnapshotSession,
    sizing: UnitSizing,
    parent: Option<&Parent>,
) -> Result<Planned, PlanError> {
    let shape = match read_shape(spec, session).await? {
        Ok(shape) => shape,
        Err(problems) => return Ok(Err(problems)),
    };
    let what = shape.what();
    let mappings = match map_columns(config, spec, &shape) {
        Ok(mappings) => mappings,
        Err(problems) => return Ok(Err(problems)),
    };
    if let Some(problem) = invalid_text(session, &shape, &mappings).await? {
        return Ok(Err(vec![problem]));
    }
    let source_query = format!("SELECT {} FROM {}", select_list(&mappings), shape.from);
    let several = config.tables.len() > 1;
    // Before the probe: a foreign child would fail it with the remote server's error.
    let units = match plan_units(spec, session, &shape, &mappings, several, sizing).await? {
        Ok(units) => units,
        Err(problems) => return Ok(Err(problems)),
    };
    session.probe(&source_query, &what).await?;
    let (tail, deleted_keys) = match plan_tail((spec, config.carry_changes), session, &shape, &mappings, parent).await? {
        Ok(tail) => tail.map_or((None, Vec::new()), |(tail, deleted)| (Some(tail), deleted)),
        Err(problems) => return Ok(Err(problems)),
    };
    let (counted, adjusted_rows, quarantine) = match count_checked_rows(spec, session, &shape, &mappings, units, tail.as_ref()).await? {
        Ok(checked) => checked,
        Err(problems) => return Ok(Err(problems)),
    };
    let SourceShape { name, table, from, primary_key, foreign_keys, .. } = shape;
    Ok(Ok(TablePlan {
        bq_table: table.as_ref().map_or_else(|| bigquery_identifier(&name), TableRef::bigquery_name),
        name,
        table,
        source_query,
        from,
        columns: mappings,
        primary_key,
        foreign_keys,
        row_count: counted.row_count,
        tail,
        deleted_keys,
        quarantine,
        adjusted_rows,
        numeric_in_use: counted.numeric_in_use,
        min_files: counted.partitions.iter().filter(|p| p.rows > 0).count(),
        partitions: counted.partitions,
    }))
}

/// A SQL_ASCII database's text that is not UTF-8 (which Parquet and BigQuery need), named by
/// column and the first row's key, with the ways out.
async fn invalid_text(session: &SnapshotSession, shape: &SourceShape, mappings: &[ColumnMapping]) -> Result<Option<Problem>, SourceError> {
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8);
    let columns: Vec<(String, String)> = mappings
        .iter()
        .filter(|m| text(&m.arrow_type) || matches!(&m.arrow_type, DataType::List(f) if text(f.data_type())))
        .map(|m| (m.name.clone(), m.select_expr.clone()))
        .collect();
    let what = shape.what();
    let Some(found) = session.first_invalid_text(&shape.from, &shape.primary_key, &columns, &what).await? else { return Ok(None) };
    let InvalidText { column, value, key, rows } = found;
    Ok(Some(Problem::InvalidText { what: shape.subject(), rows, column, value, key }))
}

/// Counts the rows (of a tail: above its bound) and applies the value checks' findings: rows
/// adjusted by `--out-of-range`, or set aside by quarantine (the units then read the other
/// rows, counted again without the bad ones), or the problems refusing the table.
async fn count_checked_rows(
    spec: &ExportTable,
    session: &SnapshotSession,
    shape: &SourceShape,
    mappings: &[ColumnMapping],
    units: Vec<PartitionBounds>,
    tail: Option<&Tail>,
) -> Result<Result<(Counted, Vec<(String, u64)>, Option<Quarantine>), Vec<Problem>>, PlanError> {
    let tail_filter: Vec<String> = tail.iter().map(|t| t.row_filter()).collect();
    let counted = count_rows(spec, session, shape, mappings, units.clone(), &tail_filter).await?;
    let BadValues { adjusted_rows, quarantined } = match bad_values(spec, shape.subject(), mappings, &counted.offending) {
        Ok(found) => found,
        Err(problems) => return Ok(Err(problems)),
    };
    if quarantined.is_empty() {
        return Ok(Ok((counted, adjusted_rows, None)));
    }
    let bad = Quarantine { reasons: quarantined, rows: 0 };
    let filters = [tail_filter, vec![bad.good_rows_filter()]].concat();
    let good = count_rows(spec, session, shape, mappings, units, &filters).await?;
    let quarantine = Quarantine { rows: counted.row_count - good.row_count, ..bad };
    Ok(Ok((good, adjusted_rows, Some(quarantine))))
}

impl TablePlan {
    /// The table's directory in the run: [`TableRef::directory`] (`sales+2Eeu.orders`), or the
    /// query's name (letters, digits, `_` and `-` only).
    pub fn directory(&self) -> String {
        self.table.as_ref().map_or_else(|| self.name.clone(), TableRef::directory)
    }

    /// The filters every unit of the table reads under: a tail's rows, a quarantine's good rows.
    pub fn row_filters(&self) -> Vec<String> {
        let tail = self.tail.iter().map(Tail::row_filter);
        tail.chain(self.quarantine.iter().map(Quarantine::good_rows_filter)).collect()
    }
}

/// The select list every unit of a table reads: each column's expression under its BigQuery name.
pub fn select_list(mappings: &[ColumnMapping]) -> String {
    let columns: Vec<String> = mappings.iter().map(|m| format!("{} AS {}", m.select_expr, quote_ident(&m.bq_name))).collect();
    columns.join(", ")
}

/// Reads what the table or query is made of; a table this role cannot read whole gives
/// its access problems instead.
async fn read_shape(spec: &ExportTable, session: &SnapshotSession) -> Result<Result<SourceShape, Vec<Problem>>, PlanError> {
    match &spec.source {
        TableSource::Query(sql) => Ok(Ok(SourceShape {
            name: spec.name.clone(),
            table: None,
            // A newline ends a trailing `-- comment` before the closing parenthesis.
            from: format!("({sql}\n) AS {}", quote_ident("q")),
            columns: session.query_columns(sql, &spec.name).await?,
            primary_key: Vec::new(),
            foreign_keys: Vec::new(),
            oid: None,
        })),
        TableSource::Table(table) => {
            let table = session.resolve_table(&table.schema, &table.name).await?;
            let table_ref = TableRef::new(&table.schema, &table.name);
            let name = table_ref.to_string();
            let columns = session.columns(table.oid).await?;
            let access = session.access_problems(table.oid, &name, columns.len()).await?;
            if !access.is_empty() {
                return Ok(Err(access.into_iter().map(Problem::Access).collect()));
            }
            Ok(Ok(SourceShape {
                name,
                from: table_ref.quoted(),
                table: Some(table_ref),
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
fn map_columns(config: &ExportConfig, spec: &ExportTable, shape: &SourceShape) -> Result<Vec<ColumnMapping>, Vec<Problem>> {
    let (what, columns) = (shape.subject(), &shape.columns);
    let mut problems = Vec::new();
    let unnamed = |c: &&PgColumn| shape.oid.is_none() && c.name == "?column?";
    for (position, _) in columns.iter().enumerate().filter(|(_, c)| unnamed(c)) {
        problems.push(Problem::Unnamed { what: what.clone(), position: position + 1 });
    }
    let mut mappings = Vec::new();
    for column in columns {
        match map_column(column, spec.casts.get(&column.name).copied(), spec.out_of_range) {
            Ok(mapping) if spec.on_bad_value == OnBadValue::Quarantine && mapping.check.is_none() => match json_number_check(&mapping) {
                Some(check) => mappings.push(mapping.with_check(check)),
                None => mappings.push(mapping),
            },
            Ok(mapping) => mappings.push(mapping),
            Err(refusal) => problems.push(Problem::Unmappable {
                what: what.clone(),
                column: refusal.column,
                pg_type: refusal.pg_type,
                reason: refusal.reason,
            }),
        }
    }
    if columns.is_empty() {
        problems.push(Problem::NoColumns { what: what.clone() });
    }
    for unknown in spec.casts.keys().filter(|c| !columns.iter().any(|col| &col.name == *c)) {
        problems.push(Problem::UnknownCast { what: what.clone(), column: unknown.clone(), several: config.tables.len() > 1 });
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

/// Counts, in one scan of the snapshot, every unit's rows, the rows each value check catches,
/// and what the numeric columns' values need; the units' rows must add up to the table's.
async fn count_rows(
    spec: &ExportTable,
    session: &SnapshotSession,
    shape: &SourceShape,
    mappings: &[ColumnMapping],
    units: Vec<PartitionBounds>,
    row_filters: &[String],
) -> Result<Counted, PlanError> {
    let mut filters: Vec<String> = units.iter().filter_map(PartitionBounds::scan_filter).collect();
    let unit_filters = filters.len();
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
    let row_filter = and_all(row_filters);
    let what = format!("table `{}`", shape.name);
    let scan = session.counts(&shape.from, shape.oid.is_some(), &filters, &stats, row_filter.as_deref(), &what).await?;
    let numeric_in_use = numeric
        .iter()
        .zip(scan.stats.chunks(2))
        .map(|(c, s)| NumericInUse { column: c.name.clone(), max_scale: s[0], max_integer_digits: s[1] })
        .collect();
    let row_count = scan.counts[0];
    let mut filtered = scan.counts[1..=unit_filters].iter();
    let mut partitions = Vec::new();
    for (index, bounds) in units.into_iter().enumerate() {
        let rows = match (bounds.scan_filter(), bounds.relation()) {
            (Some(_), _) => *filtered.next().expect("one count per unit filter"),
            (None, Some(relation)) => {
                scan.per_relation.iter().find(|(s, n, _)| *s == relation.schema && *n == relation.name).map_or(0, |r| r.2)
            }
            (None, None) => row_count,
        };
        partitions.push(PartitionManifest { rows, ..PartitionManifest::new(index, bounds) });
    }
    let covered: u64 = partitions.iter().map(|p| p.rows).sum();
    if covered != row_count {
        return Err(PlanError::UnitsMissRows {
            table: shape.name.clone(),
            units: partitions.len(),
            unit_rows: covered,
            table_rows: row_count,
        });
    }
    Ok(Counted { row_count, partitions, offending: scan.counts[1 + unit_filters..].to_vec(), numeric_in_use })
}

/// A value check's offending rows the export sets aside (`--on-bad-value quarantine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadValue {
    /// `column: problem`, as the rejected rows' `reason` says it.
    pub reason: String,
    pub predicate: String,
    pub rows: u64,
}

/// The rows of a table set aside by `--on-bad-value quarantine`: those failing any of its
/// reasons' checks, written as Postgres prints them with their key and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub reasons: Vec<BadValue>,
    /// Rows failing at least one check (a row can fail several).
    pub rows: u64,
}

impl Quarantine {
    /// Rows failing any check (a NULL check result is not a failure).
    pub fn bad_rows_filter(&self) -> String {
        let any: Vec<String> = self.reasons.iter().map(|r| format!("({})", r.predicate)).collect();
        format!("COALESCE({}, false)", any.join(" OR "))
    }

    /// The rows the units export.
    pub fn good_rows_filter(&self) -> String {
        format!("NOT {}", self.bad_rows_filter())
    }
}

/// Filters joined by `AND`, each in parentheses; `None` for none.
pub fn and_all(filters: &[String]) -> Option<String> {
    match filters {
        [] => None,
        [one] => Some(one.clone()),
        several => Some(format!("({})", several.join(") AND ("))),
    }
}

/// What the value checks found in a table the export takes.
struct BadValues {
    /// Rows `--out-of-range clamp|null` adjusts, per column.
    adjusted_rows: Vec<(String, u64)>,
    /// Rows `--on-bad-value quarantine` sets aside, per check.
    quarantined: Vec<BadValue>,
}

/// What the value checks found, or the problems that refuse the table.
fn bad_values(spec: &ExportTable, what: Subject, mappings: &[ColumnMapping], offending: &[u64]) -> Result<BadValues, Vec<Problem>> {
    let checked = mappings.iter().filter_map(|m| m.check.as_ref().map(|check| (m, check)));
    let mut adjusted_rows = Vec::new();
    let mut quarantined = Vec::new();
    let mut problems = Vec::new();
    for ((mapping, check), &offending) in checked.zip(offending).filter(|(_, &n)| n > 0) {
        if check.range_adjustable && spec.out_of_range != OutOfRange::Refuse {
            adjusted_rows.push((mapping.name.clone(), offending));
            continue;
        }
        if spec.on_bad_value == OnBadValue::Quarantine {
            let reason = format!("{}: {}", mapping.name, check.problem);
            quarantined.push(BadValue { reason, predicate: check.predicate.clone(), rows: offending });
            continue;
        }
        problems.push(Problem::BadValues {
            what: what.clone(),
            column: mapping.name.clone(),
            pg_type: mapping.pg_type.clone(),
            rows: offending,
            problem: check.problem.clone(),
            range_adjustable: check.range_adjustable,
        });
    }
    if problems.is_empty() {
        Ok(BadValues { adjusted_rows, quarantined })
    } else {
        Err(problems)
    }
}

/// Tables and queries that would land in one BigQuery table (names compared ignoring case,
/// as a case-insensitive dataset does), each pair named, with the way out.
fn bigquery_name_collisions(tables: &[TablePlan]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, later) in tables.iter().enumerate() {
        if let Some(first) = tables[..i].iter().find(|t| t.bq_table.eq_ignore_ascii_case(&later.bq_table)) {
            problems.push(Problem::NameCollision {
                first: first.name.clone(),
                later: later.name.clone(),
                bq_table: later.bq_table.clone(),
            });
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

/// How many ranges each relation of a table is cut into (the rule is in the module docs).
#[derive(Debug, Clone, Copy)]
struct UnitSizing {
    /// Workers sharing the units.
    workers: usize,
    /// `--partitions N`: exactly `N` ranges per relation.
    explicit: Option<usize>,
}

impl UnitSizing {
    /// Ranges for a relation of `blocks` heap blocks in a table of `table_blocks` in all.
    fn ranges_for(&self, blocks: i64, table_blocks: i64) -> usize {
        if let Some(count) = self.explicit {
            return count.max(1);
        }
        let bytes = |blocks: i64| blocks.max(0) as u64 * BLOCK_BYTES;
        let target = (bytes(table_blocks) / self.workers.max(1) as u64).clamp(MIN_UNIT_BYTES, MAX_UNIT_BYTES);
        bytes(blocks).div_ceil(target).max(1) as usize
    }
}

/// The units of a table or query (rows not counted yet), or the problems that keep a child
/// from being read.
async fn plan_units(
    spec: &ExportTable,
    session: &SnapshotSession,
    shape: &SourceShape,
    mappings: &[ColumnMapping],
    several: bool,
    sizing: UnitSizing,
) -> Result<Result<Vec<PartitionBounds>, Vec<Problem>>, PlanError> {
    let what = shape.what();
    let tree = match shape.oid {
        Some(oid) => session.relation_tree(oid, &what).await?,
        None => Vec::new(),
    };
    if tree.len() > 1 && spec.partition_on.is_none() {
        return child_units(session, shape, &tree, sizing).await;
    }
    let table_blocks: i64 = tree.iter().filter_map(|r| r.blocks).sum();
    let basis = split_basis(spec, session, shape, mappings, several, table_blocks).await?;
    let count = match (&basis, shape.oid) {
        (Basis::Key { .. }, None) => sizing.explicit.unwrap_or(sizing.workers),
        _ => sizing.ranges_for(table_blocks, table_blocks),
    };
    Ok(Ok(partitions_for(&basis, count)))
}

/// The units of a table with children, after checking that this role can read each child
/// directly and that none is foreign, being detached, or a compressed chunk without range.
async fn child_units(
    session: &SnapshotSession,
    shape: &SourceShape,
    tree: &[TreeRelation],
    sizing: UnitSizing,
) -> Result<Result<Vec<PartitionBounds>, Vec<Problem>>, PlanError> {
    let what = shape.what();
    let compressed = session.compressed_chunks(&tree[0].schema, &tree[0].name, &what).await?;
    let mut problems = tree_problems(&shape.subject(), tree, &compressed);
    let read_alone = tree.iter().filter(|r| r.level > 0 && r.kind == 'r' && !is_compressed(r, &compressed));
    for child in read_alone {
        let name = TableRef::new(&child.schema, &child.name).to_string();
        let denied = session.access_problems(child.oid, &name, shape.columns.len()).await?;
        problems.extend(denied.into_iter().map(|problem| Problem::ChildAccess { what: shape.subject(), problem }));
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    Ok(Ok(tree_units(tree, &compressed, sizing, session.tid_range_scans())))
}

fn is_compressed(relation: &TreeRelation, compressed: &[CompressedChunk]) -> bool {
    compressed.iter().any(|c| c.schema == relation.schema && c.name == relation.name)
}

/// What keeps the relations of a table's tree from being read one by one, with the way out.
fn tree_problems(what: &Subject, tree: &[TreeRelation], compressed: &[CompressedChunk]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for relation in tree {
        let child = TableRef::new(&relation.schema, &relation.name).to_string();
        if relation.kind == 'f' {
            problems.push(Problem::ForeignChild { what: what.clone(), child: child.clone() });
        }
        if relation.detach_pending {
            problems.push(Problem::DetachPending { what: what.clone(), child });
        }
    }
    for chunk in compressed.iter().filter(|c| c.predicate.is_empty()) {
        let chunk = TableRef::new(&chunk.schema, &chunk.name).to_string();
        problems.push(Problem::ChunkWithoutRange { what: what.clone(), chunk });
    }
    problems
}

/// The units of a table with children, in tree order: each relation that stores rows read
/// `FROM ONLY` it (cut into block ranges when large and the server has TID range scans),
/// each compressed chunk through the table by its range; one whole unit when nothing stores rows.
fn tree_units(tree: &[TreeRelation], compressed: &[CompressedChunk], sizing: UnitSizing, tid_ranges: bool) -> Vec<PartitionBounds> {
    let table_blocks: i64 = tree.iter().filter_map(|r| r.blocks).sum();
    // The counting scan runs every unit's filter over the compressed chunks too, and
    // TimescaleDB's decompression refuses system columns other than `tableoid`.
    let tid_ranges = tid_ranges && compressed.is_empty();
    let mut units = Vec::new();
    for stored in tree {
        let relation = Relation { schema: stored.schema.clone(), name: stored.name.clone() };
        if let Some(chunk) = compressed.iter().find(|c| c.schema == stored.schema && c.name == stored.name) {
            units.push(PartitionBounds::ChunkRange { relation, predicate: chunk.predicate.clone() });
            continue;
        }
        let blocks = stored.blocks.unwrap_or(0);
        let count = if tid_ranges { sizing.ranges_for(blocks, table_blocks) } else { 1 };
        if blocks == 0 {
            // No block holds a row of the snapshot (a partitioned parent stores nothing).
        } else if count <= 1 {
            units.push(PartitionBounds::Child { relation, blocks: None });
        } else {
            let spans = ranges(0, blocks, count).into_iter().map(|(from, to)| BlockSpan { from, to });
            units.extend(spans.map(|span| PartitionBounds::Child { relation: relation.clone(), blocks: Some(span) }));
        }
    }
    if units.is_empty() {
        units.push(PartitionBounds::Whole);
    }
    units
}

async fn split_basis(
    spec: &ExportTable,
    session: &SnapshotSession,
    shape: &SourceShape,
    mappings: &[ColumnMapping],
    several: bool,
    table_blocks: i64,
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
    // Before TID range scans, every block range would read the whole table.
    let blocks_usable = shape.oid.is_some() && session.tid_range_scans() && table_blocks > 1;
    Ok(if blocks_usable { Basis::Blocks { blocks: table_blocks } } else { Basis::Whole })
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

/// The units of a table by its split basis.
fn partitions_for(basis: &Basis, count: usize) -> Vec<PartitionBounds> {
    match basis {
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
    }
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
        let predicates: Vec<String> = partitions_for(&basis, 2).iter().map(PartitionBounds::postgres_predicate).collect();
        assert_eq!(predicates, [r#""k" < 50"#, r#""k" >= 50"#, r#""k" IS NULL"#]);
        let blocks: Vec<String> =
            partitions_for(&Basis::Blocks { blocks: 10 }, 2).iter().map(PartitionBounds::postgres_predicate).collect();
        assert_eq!(blocks, ["ctid < '(5,0)'::tid", "ctid >= '(5,0)'::tid"]);
    }

    const MIB_BLOCKS: i64 = (1 << 20) / BLOCK_BYTES as i64;

    fn automatic(workers: usize) -> UnitSizing {
        UnitSizing { workers, explicit: None }
    }

    #[test]
    fn small_tables_are_one_unit_and_large_ones_feed_every_worker_within_the_maximum() {
        let one = |mib: i64, workers: usize| automatic(workers).ranges_for(mib * MIB_BLOCKS, mib * MIB_BLOCKS);
        assert_eq!((one(0, 4), one(10, 4), one(64, 4)), (1, 1, 1));
        assert_eq!((one(200, 2), one(200, 8)), (2, 4), "split among the workers, units of at least 64 MiB");
        assert_eq!(
            (one(100 << 10, 2), one(100 << 10, 256), one(100 << 10, 4096)),
            (100, 256, 1600),
            "at most 1 GiB a unit, at least 64 MiB"
        );
        let explicit = UnitSizing { workers: 2, explicit: Some(3) };
        assert_eq!((explicit.ranges_for(0, 0), explicit.ranges_for(MIB_BLOCKS << 20, 0)), (3, 3), "--partitions N overrides");
        // A child is sized against the whole table's target: 24 × 512 MiB on 2 workers gives
        // one unit per child, one 3 GiB child of a 4 GiB table three.
        assert_eq!(automatic(2).ranges_for(512 * MIB_BLOCKS, 24 * 512 * MIB_BLOCKS), 1);
        assert_eq!(automatic(2).ranges_for((3 << 10) * MIB_BLOCKS, (4 << 10) * MIB_BLOCKS), 3);
    }

    fn relation(name: &str, level: i32, kind: char, blocks: Option<i64>) -> TreeRelation {
        TreeRelation { oid: 1, schema: "s".into(), name: name.into(), level, kind, blocks, detach_pending: false }
    }

    /// A declaratively partitioned table: a partitioned parent, a nested partitioned month with
    /// two leaves, an empty leaf and a default partition holding `default_blocks`.
    fn declarative(default_blocks: i64) -> Vec<TreeRelation> {
        vec![
            relation("t", 0, 'p', None),
            relation("t_2024", 1, 'p', None),
            relation("t_default", 1, 'r', Some(default_blocks)),
            relation("t_empty", 1, 'r', Some(0)),
            relation("t_2024_a", 2, 'r', Some(3)),
            relation("t_2024_b", 2, 'r', Some(5)),
        ]
    }

    fn described(units: &[PartitionBounds]) -> Vec<String> {
        units
            .iter()
            .map(|u| format!("{} {} {}", u.method(), u.relation().map_or("-".into(), ToString::to_string), u.postgres_predicate()))
            .collect()
    }

    #[test]
    fn every_relation_that_stores_rows_is_a_unit_read_on_its_own() {
        let units = tree_units(&declarative(2), &[], automatic(2), true);
        assert_eq!(described(&units), ["child s.t_default ", "child s.t_2024_a ", "child s.t_2024_b "]);
        // An inheritance parent holding rows is read FROM ONLY itself, beside its children.
        let inherited = [relation("p", 0, 'r', Some(4)), relation("p_child", 1, 'r', Some(1))];
        assert_eq!(described(&tree_units(&inherited, &[], automatic(2), true)), ["child s.p ", "child s.p_child "]);
        // Nothing stored anywhere: the table is one whole unit (of no rows).
        let empty = [relation("e", 0, 'p', None), relation("e_1", 1, 'r', Some(0))];
        assert_eq!(tree_units(&empty, &[], automatic(2), true), [PartitionBounds::Whole]);
    }

    #[test]
    fn large_children_are_cut_into_block_ranges_only_with_tid_range_scans() {
        let big = 1 << 18; // 2 GiB
        let units = tree_units(&declarative(big), &[], automatic(2), true);
        assert_eq!(
            described(&units[..2]),
            [
                format!("child_block_range s.t_default ctid < '({},0)'::tid", big / 2),
                format!("child_block_range s.t_default ctid >= '({},0)'::tid", big / 2)
            ]
        );
        assert_eq!(units[0].scan_filter().unwrap(), format!(r#"tableoid = '"s"."t_default"'::regclass AND ctid < '({},0)'::tid"#, big / 2));
        assert_eq!(units.len(), 4, "{units:?}");
        let explicit = UnitSizing { workers: 2, explicit: Some(2) };
        assert_eq!(tree_units(&declarative(2), &[], explicit, true).len(), 6, "--partitions 2 cuts every stored child in two");
        assert_eq!(
            described(&tree_units(&declarative(big), &[], explicit, false))[0],
            "child s.t_default ",
            "PostgreSQL 13: one unit per child"
        );
    }

    #[test]
    fn compressed_chunks_are_read_through_the_hypertable_and_never_by_blocks() {
        let tree = [
            relation("events", 0, 'r', Some(0)),
            relation("_hyper_1_1_chunk", 1, 'r', Some(0)),
            relation("_hyper_1_2_chunk", 1, 'r', Some(1 << 18)),
        ];
        let predicate =
            "((t >= '2024-01-01 00:00:00+00'::timestamp with time zone) AND (t < '2024-02-01 00:00:00+00'::timestamp with time zone))";
        let compressed = [CompressedChunk { schema: "s".into(), name: "_hyper_1_1_chunk".into(), predicate: predicate.into() }];
        let units = tree_units(&tree, &compressed, automatic(2), true);
        assert_eq!(described(&units), [format!("chunk_range s._hyper_1_1_chunk {predicate}"), "child s._hyper_1_2_chunk ".to_string()]);
        assert_eq!(units[0].scan_filter().as_deref(), Some(predicate));
    }

    #[test]
    fn foreign_children_detaching_partitions_and_rangeless_chunks_are_refused_by_name() {
        let mut tree = declarative(2);
        tree.push(relation("t_remote", 1, 'f', None));
        tree[4].detach_pending = true;
        let chunk = CompressedChunk { schema: "s".into(), name: "_hyper_9_9_chunk".into(), predicate: String::new() };
        let what = Subject::Table("s.t".into());
        let problems = tree_problems(&what, &tree, &[chunk]);
        assert_eq!(
            problems,
            [
                Problem::DetachPending { what: what.clone(), child: "s.t_2024_a".into() },
                Problem::ForeignChild { what: what.clone(), child: "s.t_remote".into() },
                Problem::ChunkWithoutRange { what, chunk: "s._hyper_9_9_chunk".into() },
            ]
        );
        assert!(problems[0].to_string().contains("`s.t_2024_a` is being detached") && problems[0].to_string().contains("FINALIZE"));
        assert!(
            problems[1].to_string().contains("child `s.t_remote` is a foreign table") && problems[1].to_string().contains("NO INHERIT")
        );
    }

    #[test]
    fn a_plan_gives_its_problems_as_text_and_a_plan_read_back_has_none() {
        let problem = Problem::NoColumns { what: Subject::Query("empty".into()) };
        let text = "query `empty` has no columns; a BigQuery table needs at least one, leave it out of the run";
        let plan = ExportPlan {
            run_id: "r1".into(),
            destination: "gs://b/p".into(),
            source: crate::model::manifest::SourceInfo::default(),
            tables: Vec::new(),
            problems: vec![problem],
        };
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["problems"], serde_json::json!([text]));
        let read: ExportPlan = serde_json::from_value(json).unwrap();
        assert!(read.problems.is_empty());
    }

    #[test]
    fn ranges_cover_the_keys_without_overlap() {
        assert_eq!(split_range(1, 100, 4), vec![1, 26, 51, 76, 100]);
        assert_eq!(split_range(5, 6, 4), vec![5, 6, 6]);
        assert_eq!(split_range(i64::MIN, i64::MAX, 2), vec![i64::MIN, 0, i64::MAX]);
    }
}
