//! The load plan, pure: from a manifest, where it was found and the load settings to the exact
//! BigQuery jobs, their deterministic ids, URIs, schema, partitioning and the final atomic step,
//! down to the JSON each job and the table are created with. `pg2bq load --dry-run` prints it.
//! File URIs are the manifest's relative paths resolved against the run directory the manifest
//! was read from, never the URIs recorded at export.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::gcp::bigquery::{DAILY_LOAD_JOBS_PER_TABLE, MAX_BYTES_PER_JOB, MAX_URIS_PER_JOB};
use crate::gcp::routes::{route_columns, snapshot_columns, ColumnRoute, RouteProblem, Routing, TargetOptions};
pub use crate::gcp::runs::LoadMode;
use crate::gcp::runs::{keys_table_id, staging_table_id, CREATED_LABEL};
use crate::gcp::schema::{
    schema_json, set_layout, table_reference, table_resource, Field, FieldMode, PartitionUnit, TableColumn, TimePartitioning,
};
use crate::gcp::sql::{quote, string_literal, table_path};
use crate::load::deletes::{check_carried, plan_deletes, DeleteTarget, Deletes};
use crate::load::jobs::{LoadJob, LoadPlanError, QueryJob, WriteDisposition};
use crate::load::merge::{merge_sql, MergeSpec};
use crate::model::manifest::{FileManifest, Manifest, TableManifest, TableNames};
use crate::model::types::{BigQueryType, NameAlphabet};

/// What to load where, resolved from flags and the config file.
#[derive(Debug, Clone, Default)]
pub struct LoadTarget {
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    pub names: TableNames,
    pub mode: LoadMode,
    /// How snapshot columns go into an existing table's columns.
    pub routing: Routing,
    /// Merge: manifest table name → key columns (BigQuery names); default the primary key.
    pub merge_keys: BTreeMap<String, Vec<String>>,
    /// Merge: also update rows whose key exists and whose values differ.
    pub overwrite_existing: bool,
    /// Merge: also delete the rows a tail carried as deleted, by key.
    pub apply_deletes: bool,
    /// Truncate: also replace the rows of a table pg2bq did not create (an app's).
    pub replace_existing_rows: bool,
    /// Create a `--table-map` target that is not in the dataset (else refused: a typo).
    pub create_missing: bool,
    /// Manifest table name (or its BigQuery name) → (column, unit).
    pub partition_by: BTreeMap<String, (String, PartitionUnit)>,
    /// Manifest table name (or its BigQuery name) → columns.
    pub cluster_by: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadPlan {
    pub run_id: String,
    /// The run directory the manifest was read from; the files' URIs resolve against it.
    pub run_uri: String,
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    pub mode: LoadMode,
    pub overwrite_existing: bool,
    pub tables: Vec<TableLoad>,
    /// Why the load would be refused against the destination as it is (`--dry-run`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// Why the load is refused against the destinations as they are, before any job: one variant
/// per refusal, each naming the table and the way out (`--dry-run` lists them in the plan).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A snapshot table's columns cannot be routed into the existing table's.
    #[error(transparent)]
    Route(RouteProblem),
    /// No plan against the existing table (a merge key it lacks, a tail's carried changes, …).
    #[error(transparent)]
    Plan(LoadPlanError),
    #[error(
        "table `{dataset}.{table_id}` was not created by pg2bq and holds {held}: a truncate load would delete them. Add the snapshot's rows \
         by key with --mode merge (rows already there are left alone), or replace every row with \
         --mode truncate --replace-existing-rows"
    )]
    ReplacesRows { dataset: String, table_id: String, held: RowsHeld },
    #[error(
        "--table-map sends `{snapshot_table}` to table `{table_id}`, which is not in dataset `{dataset}` ({}); correct the name, \
         or pass --create-missing to create it",
        match closest.is_empty() {
            true => format!("the dataset holds {dataset_tables} table(s), none with a similar name"),
            false => format!("closest: {}", closest.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")),
        }
    )]
    MissingTarget { snapshot_table: String, table_id: String, dataset: String, closest: Vec<String>, dataset_tables: usize },
    #[error(
        "table `{dataset}.{table_id}` does not exist, and --column-map/--set apply to the columns of an existing table; \
         create it first, or drop them to let pg2bq create it with the snapshot's columns"
    )]
    RoutesNeedTable { dataset: String, table_id: String },
}

/// A plan's JSON (`--dry-run --json`) gives each problem as its message.
impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The rows a table holds, as `tables.get` counts them, and those in its streaming buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsHeld {
    pub rows: String,
    pub buffered: Option<String>,
}

impl std::fmt::Display for RowsHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.buffered {
            Some(buffered) => write!(f, "{} row(s) and about {buffered} more in its streaming buffer", self.rows),
            None => write!(f, "{} row(s)", self.rows),
        }
    }
}

/// One table's jobs.
#[derive(Debug, Clone, Serialize)]
pub struct TableLoad {
    /// The manifest's table name.
    pub source: String,
    pub table_id: String,
    pub rows: u64,
    pub bytes: u64,
    pub fields: Vec<Field>,
    pub time_partitioning: Option<TimePartitioning>,
    pub clustering: Vec<String>,
    /// The table as `tables.insert` creates it when it does not exist (BigQuery's JSON).
    pub table_resource: Value,
    /// Set when files go to a staging table first (JSON columns, several jobs, merge, or an
    /// existing table with other columns); the final step then moves them in one atomic
    /// statement.
    pub staging_table_id: Option<String>,
    /// How each column of the table is fed from the staging table, with its conversion.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ColumnRoute>,
    /// Merge: the table's columns that identify a row.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merge_key: Vec<String>,
    /// The table already exists with columns other than the snapshot's: rows go in by DML
    /// through [`Self::routes`], which keeps its schema, partitioning, clustering,
    /// descriptions and constraints.
    pub into_existing: bool,
    pub load_jobs: Vec<LoadJob>,
    pub finalize: Option<QueryJob>,
    /// Merge: keeps the snapshot's keys (as the table holds them) in
    /// [`keys_table_id`], for `validate` to compare exactly the snapshot's rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_keys: Option<QueryJob>,
    /// Merge with `--apply-deletes` of a tail that carried deleted keys: their deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletes: Option<Deletes>,
    /// The name its job ids and staging table derive from: the table's, and the snapshot
    /// table's when it goes to a table of another name (so two snapshot tables appended into
    /// one table never share a job).
    pub job_name: String,
    /// The prefix of its job ids (see [`Scope::job_base`]).
    pub job_base: String,
    /// The routing options it was planned with (recorded for `validate`).
    pub options: TargetOptions,
    /// What the load does to the destination, in words (set once the table is seen).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub effect: String,
    /// Append only: the job that would have loaded this run in truncate mode straight into the
    /// table. Such a load commits before its label is set, so append refuses the run when this
    /// job (or a retry of it) succeeded, labelled or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate_load_job_id: Option<String>,
    /// What the plan cannot know before it sees the destination table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// REQUIRED columns of the snapshot loaded into NULLABLE columns of the existing table,
    /// with the table's mode kept (set once the table is seen).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_nullable_columns: Vec<String>,
    /// Share of BigQuery's daily load-job quota for the destination table this plan uses.
    pub daily_quota_share: f64,
}

impl TableLoad {
    /// The fields of the table as pg2bq creates it: the snapshot's, without those left out.
    pub fn created_fields(&self) -> Vec<Field> {
        self.fields.iter().filter(|f| !self.options.excluded.contains(&f.name)).cloned().collect()
    }
}

/// Builds the plan; `run_uri` is the run directory the manifest was read from, which the
/// files' relative paths resolve against. Pure: no network.
///
/// # Errors
/// [`LoadPlanError`] when the files are not on GCS or an option names a missing table/column.
pub fn plan_load(manifest: &Manifest, run_uri: &str, target: &LoadTarget) -> Result<LoadPlan, LoadPlanError> {
    let named = target.partition_by.keys().chain(target.cluster_by.keys()).chain(target.names.map.keys());
    for name in named.chain(target.routing.tables.keys()).chain(target.merge_keys.keys()) {
        if !manifest.tables.iter().any(|t| t.is_named(name)) {
            return Err(LoadPlanError::UnknownTable { table: name.clone() });
        }
    }
    let mut plan = LoadPlan {
        run_id: manifest.run_id.clone(),
        run_uri: run_uri.trim_end_matches('/').to_string(),
        project: target.project.clone(),
        dataset: target.dataset.clone(),
        location: target.location.clone(),
        mode: target.mode,
        overwrite_existing: target.overwrite_existing,
        tables: Vec::new(),
        problems: Vec::new(),
    };
    let scope = Scope::of(&plan);
    let tables: Vec<TableLoad> = manifest.tables.iter().map(|t| plan_table(&scope, t, target, None)).collect::<Result<_, _>>()?;
    if target.mode != LoadMode::Append {
        for table in &tables {
            let sources: Vec<String> = tables.iter().filter(|t| t.table_id == table.table_id).map(|t| t.source.clone()).collect();
            if sources.len() > 1 {
                return Err(LoadPlanError::FanIn { table_id: table.table_id.clone(), sources, mode: target.mode });
            }
        }
    }
    plan.tables = tables;
    Ok(plan)
}

/// The table's plan for loading into the existing table with `columns`: staged, then fed by
/// DML through each column's route (truncate: one transaction deleting and inserting; append:
/// `INSERT`; merge: `MERGE`), so the table keeps its schema and layout.
///
/// # Errors
/// [`LoadPlanError::Routing`] with every column that cannot go in.
pub fn plan_into_existing(
    plan: &LoadPlan,
    table: &TableManifest,
    target: &LoadTarget,
    columns: &[TableColumn],
) -> Result<TableLoad, LoadPlanError> {
    plan_table(&Scope::of(plan), table, target, Some(columns))
}

fn option_for<'a, T>(options: &'a BTreeMap<String, T>, table: &TableManifest) -> Option<&'a T> {
    options.iter().find(|(name, _)| table.is_named(name)).map(|(_, v)| v)
}

/// Where the plan writes: the dataset, the run and the mode every job id and statement derives from.
struct Scope<'a> {
    project: &'a str,
    dataset: &'a str,
    run_id: &'a str,
    run_uri: &'a str,
    mode: LoadMode,
    overwrite_existing: bool,
}

impl<'a> Scope<'a> {
    fn of(plan: &'a LoadPlan) -> Self {
        Scope {
            project: &plan.project,
            dataset: &plan.dataset,
            run_id: &plan.run_id,
            run_uri: &plan.run_uri,
            mode: plan.mode,
            overwrite_existing: plan.overwrite_existing,
        }
    }

    /// The prefix of a table's job ids in `mode`: `pg2bq_<run>_<dataset>_<job name>_<way>`, where
    /// the way is the mode, `merge_overwrite`, or `<mode>_routed` into an existing table with
    /// other columns (a merge's ids do not depend on whether the table existed: a re-run
    /// attaches to them).
    fn job_base(&self, job_name: &str, mode: LoadMode, into_existing: bool) -> String {
        let way = match (mode, into_existing) {
            (LoadMode::Merge, _) if self.overwrite_existing => "merge_overwrite".to_string(),
            (LoadMode::Merge, _) | (_, false) => mode.as_str().to_string(),
            (_, true) => format!("{}_routed", mode.as_str()),
        };
        NameAlphabet::ID.sanitize(&format!("pg2bq_{}_{}_{job_name}_{way}", self.run_id, self.dataset), usize::MAX)
    }

    /// `project.dataset.table`, quoted.
    fn qualified(&self, table_id: &str) -> String {
        table_path(self.project, self.dataset, table_id)
    }
}

/// The snapshot's columns as BigQuery fields, without those left out of the load.
fn table_fields(table: &TableManifest, options: &TargetOptions) -> Vec<Field> {
    let fields = table.columns.iter().map(|c| &c.mapping).filter(|c| !options.excluded.contains(&c.bq_name));
    fields
        .map(|c| Field { name: c.bq_name.clone(), field_type: c.bq_type, mode: FieldMode::of(c), description: c.comment.clone() })
        .collect()
}

/// The table's `--partition-by` and `--cluster-by`, checked against the columns it is created with.
fn layout(table: &TableManifest, target: &LoadTarget, fields: &[Field]) -> Result<(Option<TimePartitioning>, Vec<String>), LoadPlanError> {
    Ok((time_partitioning(table, target, fields)?, clustering(table, target, fields)?))
}

/// The `--partition-by` of this table, checked against its columns.
fn time_partitioning(table: &TableManifest, target: &LoadTarget, fields: &[Field]) -> Result<Option<TimePartitioning>, LoadPlanError> {
    let Some((column, unit)) = option_for(&target.partition_by, table) else {
        return Ok(None);
    };
    let refused = |reason: String| LoadPlanError::Partition { table: table.name.clone(), column: column.clone(), reason };
    let field = fields.iter().find(|f| &f.name == column).ok_or_else(|| refused("it does not have".into()))?;
    let time_type = matches!(field.field_type, BigQueryType::Date | BigQueryType::Timestamp | BigQueryType::Datetime);
    if !time_type || field.mode == FieldMode::Repeated {
        return Err(refused(format!("is {} {}, not a DATE, TIMESTAMP or DATETIME", field.mode, field.field_type.sql_name())));
    }
    Ok(Some(TimePartitioning { field: column.clone(), unit: *unit }))
}

/// The `--cluster-by` columns of this table, checked against its columns.
fn clustering(table: &TableManifest, target: &LoadTarget, fields: &[Field]) -> Result<Vec<String>, LoadPlanError> {
    let clustering = option_for(&target.cluster_by, table).cloned().unwrap_or_default();
    match clustering.iter().find(|c| !fields.iter().any(|f| &f.name == *c)) {
        Some(missing) => Err(LoadPlanError::Cluster { table: table.name.clone(), column: missing.clone() }),
        None => Ok(clustering),
    }
}

/// The table's files in load jobs' batches, in order, each within BigQuery's per-job limits.
fn file_batches(table: &TableManifest) -> Vec<Vec<&FileManifest>> {
    let mut batches: Vec<Vec<&FileManifest>> = Vec::new();
    for file in &table.files {
        match batches.last_mut() {
            Some(batch)
                if batch.len() < MAX_URIS_PER_JOB && batch.iter().map(|f| f.bytes).sum::<u64>() + file.bytes <= MAX_BYTES_PER_JOB =>
            {
                batch.push(file)
            }
            _ => batches.push(vec![file]),
        }
    }
    batches
}

/// The table's plan: into a table with the snapshot's columns (created when missing), or,
/// with `existing`, into an existing table with those columns.
fn plan_table(
    scope: &Scope,
    table: &TableManifest,
    target: &LoadTarget,
    existing: Option<&[TableColumn]>,
) -> Result<TableLoad, LoadPlanError> {
    refuse_local_files(scope, table)?;
    let table_id = target.names.table_id(table);
    let job_name = job_name(table, target, &table_id);
    let options = target.routing.options_for(table);
    let fields = table_fields(table, &TargetOptions::default());
    let (time_partitioning, clustering) = layout(table, target, &table_fields(table, &options))?;
    let into_existing = existing.is_some();
    let routes = table_routes(table, &options, existing, &table_id)?;
    let merge_key = match scope.mode {
        LoadMode::Merge => merge_key(table, target, &routes)?,
        _ => Vec::new(),
    };
    let batches = file_batches(table);
    let converted = routes.iter().any(|r| r.measured_as.is_some()) || !options.excluded.is_empty();
    // No files (an empty table): no load job; truncate empties the table with one statement.
    let staged = !table.files.is_empty() && (converted || batches.len() > 1 || into_existing || scope.mode == LoadMode::Merge);
    let base = scope.job_base(&job_name, scope.mode, into_existing);
    let staging_table_id = staged.then(|| staging_table_id(&job_name, scope.run_id));
    let destination = staging_table_id.clone().unwrap_or_else(|| table_id.clone());
    let load_jobs = load_jobs(scope, &batches, &base, &destination, staged);
    let emptied = (scope.mode == LoadMode::Truncate && table.files.is_empty())
        .then(|| QueryJob::new(format!("{base}_finalize"), format!("DELETE FROM {} WHERE TRUE", scope.qualified(&table_id))));
    let truncate_load_job_id = (scope.mode == LoadMode::Append && !staged && !table.files.is_empty())
        .then(|| format!("{}_load0000", scope.job_base(&job_name, LoadMode::Truncate, false)));
    let mut planned = TableLoad {
        source: table.name.clone(),
        notes: plan_notes(&fields, &table_id, into_existing),
        rows: table.row_count,
        bytes: table.files.iter().map(|f| f.bytes).sum(),
        daily_quota_share: load_jobs.len() as f64 / DAILY_LOAD_JOBS_PER_TABLE as f64,
        table_id,
        job_name,
        job_base: base,
        options,
        effect: String::new(),
        fields,
        time_partitioning,
        clustering,
        table_resource: Value::Null,
        staging_table_id,
        routes,
        merge_key,
        into_existing,
        load_jobs,
        finalize: emptied,
        keep_keys: None,
        deletes: None,
        truncate_load_job_id,
        kept_nullable_columns: Vec::new(),
    };
    planned.deletes = table_deletes(scope, table, target, &planned)?;
    configure(scope, &mut planned);
    Ok(planned)
}

/// The table's deletes by key (`--apply-deletes`), when it carries deleted keys; refused when
/// the load would drop what it carries.
fn table_deletes(scope: &Scope, table: &TableManifest, target: &LoadTarget, planned: &TableLoad) -> Result<Option<Deletes>, LoadPlanError> {
    check_carried(table, scope.mode, scope.overwrite_existing, target.apply_deletes)?;
    let target = DeleteTarget {
        project: scope.project,
        dataset: scope.dataset,
        run_id: scope.run_id,
        run_uri: scope.run_uri,
        table_id: &planned.table_id,
        job_name: &planned.job_name,
        job_base: &planned.job_base,
        key: &planned.merge_key,
        routes: &planned.routes,
    };
    plan_deletes(&target, table)
}

/// BigQuery loads from gs:// only.
fn refuse_local_files(scope: &Scope, table: &TableManifest) -> Result<(), LoadPlanError> {
    match table.files.first().filter(|_| !scope.run_uri.starts_with("gs://")) {
        Some(file) => Err(LoadPlanError::NotOnGcs { table: table.name.clone(), uri: format!("{}/{}", scope.run_uri, file.path) }),
        None => Ok(()),
    }
}

/// The name a table's job ids and staging table derive from: the target's, and the snapshot
/// table's too when it goes to a table of another name.
fn job_name(table: &TableManifest, target: &LoadTarget, table_id: &str) -> String {
    match table_id == target.names.own_id(table) {
        true => table_id.to_string(),
        false => format!("{table_id}_from_{}", table.bq_table),
    }
}

/// How each of the table's columns is fed. Into a table with the snapshot's own columns every
/// column goes as is; only a manifest contradicting itself (NULLs counted in a NOT NULL
/// column) is refused there.
fn table_routes(
    table: &TableManifest,
    options: &TargetOptions,
    existing: Option<&[TableColumn]>,
    table_id: &str,
) -> Result<Vec<ColumnRoute>, LoadPlanError> {
    match existing {
        Some(columns) => route_columns(&table.name, &table.columns, columns, options),
        // A table pg2bq creates has the snapshot's columns: maps and constants have nothing to
        // go into (a missing target with them is refused when the destination is read).
        None => {
            let options = TargetOptions { column_map: Default::default(), set: Default::default(), ..options.clone() };
            route_columns(&table.name, &table.columns, &snapshot_columns(&table.columns, &options), &options)
        }
    }
    .map_err(|problems| LoadPlanError::Routing { table: table.name.clone(), table_id: table_id.into(), problems })
}

/// What the plan cannot show by itself: how an existing table is treated.
fn plan_notes(fields: &[Field], table_id: &str, into_existing: bool) -> Vec<String> {
    if into_existing {
        vec![format!(
            "into the existing table `{table_id}` by DML: its schema, partitioning, clustering, descriptions and constraints stay"
        )]
    } else if fields.iter().any(|f| f.mode == FieldMode::Required) {
        vec!["REQUIRED columns also load into NULLABLE columns of the same type in an existing table; the table keeps its modes".into()]
    } else {
        Vec::new()
    }
}

/// The load jobs of a table's file batches (configured later by [`configure`]): into staging
/// (the first truncates it) or straight into the table in the plan's mode.
fn load_jobs(scope: &Scope, batches: &[Vec<&FileManifest>], base: &str, destination: &str, staged: bool) -> Vec<LoadJob> {
    let jobs = batches.iter().enumerate().map(|(index, files)| LoadJob {
        job_id: format!("{base}_load{index:04}"),
        destination_table_id: destination.to_string(),
        write_disposition: match (staged, index, scope.mode) {
            (true, 0, _) | (false, _, LoadMode::Truncate) => WriteDisposition::WriteTruncate,
            _ => WriteDisposition::WriteAppend,
        },
        uris: files.iter().map(|f| format!("{}/{}", scope.run_uri, f.path)).collect(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        rows: files.iter().map(|f| f.rows).sum(),
        configuration: Value::Null,
    });
    jobs.collect()
}

/// The merge key as the table's column names: `--key`, else the manifest's primary key. Its
/// snapshot columns must hold no NULL (a NULL key never matches, so a re-run would insert the
/// row again) and be comparable (not JSON, not an array).
fn merge_key(table: &TableManifest, target: &LoadTarget, routes: &[ColumnRoute]) -> Result<Vec<String>, LoadPlanError> {
    let key = option_for(&target.merge_keys, table).cloned().unwrap_or_else(|| table.primary_key.clone());
    let refused = |reason: String| LoadPlanError::MergeKey { table: table.name.clone(), key: key.join(", "), reason };
    if key.is_empty() {
        return Err(LoadPlanError::MergeKey {
            table: table.name.clone(),
            key: "none".into(),
            reason: format!("the table has no primary key; name its key columns with --key {}.<column>[,<column>]", table.name),
        });
    }
    let mut target_key = Vec::new();
    for name in &key {
        let column = table.columns.iter().find(|c| &c.mapping.bq_name == name || &c.mapping.name == name);
        let column = column.ok_or_else(|| refused(format!("the snapshot has no column `{name}`")))?;
        let mapping = &column.mapping;
        if mapping.repeated || mapping.bq_type == BigQueryType::Json {
            return Err(refused(format!("column `{name}` is {}, which BigQuery cannot compare", mapping.bq_type.sql_name())));
        }
        if column.aggregates.null_count > 0 {
            return Err(refused(format!("column `{name}` holds {} NULL(s), and a NULL key never matches", column.aggregates.null_count)));
        }
        let route = routes.iter().find(|r| r.source.as_deref() == Some(mapping.bq_name.as_str()));
        let route = route.ok_or_else(|| refused(format!("column `{name}` is left out of the load (--exclude-column)")))?;
        target_key.push(route.target.clone());
    }
    Ok(target_key)
}

/// Fills in what derives from the table's fields: its resource, each load job's configuration
/// and, when staged, the final statement. The one place these are built, for the plan and for
/// [`keep_nullable_columns`].
fn configure(scope: &Scope, table: &mut TableLoad) {
    let (id, partitioning) = (&table.table_id, table.time_partitioning.as_ref());
    let mut resource = table_resource(scope.project, scope.dataset, id, &table.created_fields(), partitioning, &table.clustering);
    resource["labels"] = json!({ CREATED_LABEL.0: CREATED_LABEL.1 });
    table.table_resource = resource;
    let configurations: Vec<Value> = table.load_jobs.iter().map(|job| load_configuration(scope, table, job)).collect();
    for (job, configuration) in table.load_jobs.iter_mut().zip(configurations) {
        job.configuration = configuration;
    }
    if let Some(staging) = &table.staging_table_id {
        let sql = finalize_sql(scope, table, staging);
        let base = &table.job_base;
        table.finalize = Some(QueryJob::new(format!("{base}_finalize"), sql));
        if scope.mode == LoadMode::Merge {
            let keys: Vec<String> = table
                .routes
                .iter()
                .filter(|r| table.merge_key.contains(&r.target))
                .map(|r| format!("{} AS {}", r.expr, quote(&r.target)))
                .collect();
            let sql = format!(
                "CREATE OR REPLACE TABLE {} AS SELECT DISTINCT {} FROM {} s",
                scope.qualified(&keys_table_id(&table.table_id, scope.run_id)),
                keys.join(", "),
                scope.qualified(staging)
            );
            table.keep_keys = Some(QueryJob::new(format!("{base}_keys"), sql));
        }
    }
}

/// A load job's configuration: Parquet with list inference, into its destination with the
/// table's schema (JSON as STRING into staging), partitioning and clustering when direct.
fn load_configuration(scope: &Scope, table: &TableLoad, job: &LoadJob) -> Value {
    let staged = table.staging_table_id.is_some();
    let fields = if staged { staging_fields(&table.fields) } else { table.fields.clone() };
    let mut load = json!({
        "sourceUris": job.uris,
        "sourceFormat": "PARQUET",
        "destinationTable": table_reference(scope.project, scope.dataset, &job.destination_table_id),
        "writeDisposition": job.write_disposition,
        "createDisposition": "CREATE_IF_NEEDED",
        "schema": schema_json(&fields),
        "parquetOptions": { "enableListInference": true },
        "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC"],
    });
    if !staged {
        set_layout(&mut load, table.time_partitioning.as_ref(), &table.clustering);
    }
    json!({ "load": load })
}

/// The table's plan with `columns` (REQUIRED in the snapshot, NULLABLE in the existing table)
/// kept NULLABLE: in the load jobs' schema and the final statement, so that no job changes the
/// table's schema. Loading non-NULL values into a NULLABLE column loses nothing.
pub fn keep_nullable_columns(plan: &LoadPlan, table: &TableLoad, columns: &[String]) -> TableLoad {
    let mut kept = table.clone();
    for field in kept.fields.iter_mut().filter(|f| f.mode == FieldMode::Required && columns.contains(&f.name)) {
        field.mode = FieldMode::Nullable;
    }
    configure(&Scope::of(plan), &mut kept);
    kept.kept_nullable_columns = columns.to_vec();
    kept
}

/// Staging columns are the final ones with JSON as STRING.
pub fn staging_fields(fields: &[Field]) -> Vec<Field> {
    let staged = |t| if t == BigQueryType::Json { BigQueryType::String } else { t };
    fields.iter().map(|f| Field { field_type: staged(f.field_type), ..f.clone() }).collect()
}

/// The one statement that moves staged rows into the destination through the columns' routes:
/// `CREATE OR REPLACE TABLE … AS SELECT` (truncate of a table with the snapshot's columns: an
/// atomic replacement with the full schema), a transaction deleting and inserting (truncate of
/// an existing table with other columns: its schema and layout stay), `INSERT … SELECT`
/// (append) or `MERGE` (merge). JSON text becomes JSON with `PARSE_JSON`, which fails rather
/// than round a number.
fn finalize_sql(scope: &Scope, table: &TableLoad, staging: &str) -> String {
    let (target, staged) = (scope.qualified(&table.table_id), scope.qualified(staging));
    let fed: Vec<&ColumnRoute> = table.routes.iter().filter(|r| r.is_written()).collect();
    let select = fed.iter().map(|r| format!("{} AS {}", r.expr, quote(&r.target))).collect::<Vec<_>>().join(", ");
    let columns = fed.iter().map(|r| quote(&r.target)).collect::<Vec<_>>().join(", ");
    let from = format!("SELECT {select} FROM {staged} s");
    match (scope.mode, table.into_existing) {
        (LoadMode::Merge, _) => merge_sql(&MergeSpec {
            target: &target,
            staging: &staged,
            key: &table.merge_key,
            routes: &table.routes,
            overwrite_existing: scope.overwrite_existing,
        }),
        (LoadMode::Append, _) => format!("INSERT INTO {target} ({columns}) {from}"),
        (LoadMode::Truncate, true) => {
            format!("BEGIN TRANSACTION; DELETE FROM {target} WHERE TRUE; INSERT INTO {target} ({columns}) {from}; COMMIT TRANSACTION;")
        }
        (LoadMode::Truncate, false) => format!("{} AS {from}", create_or_replace(scope, table)),
    }
}

/// `CREATE OR REPLACE TABLE` with the table's columns, partitioning, clustering and run label.
fn create_or_replace(scope: &Scope, table: &TableLoad) -> String {
    let columns: Vec<String> = table
        .created_fields()
        .iter()
        .map(|f| {
            let name = f.field_type.sql_name();
            let data_type = if f.mode == FieldMode::Repeated { format!("ARRAY<{name}>") } else { name.to_string() };
            let not_null = if f.mode == FieldMode::Required { " NOT NULL" } else { "" };
            let description = f.description.as_deref().map(|d| format!(" OPTIONS(description={})", string_literal(d))).unwrap_or_default();
            format!("{} {data_type}{not_null}{description}", quote(&f.name))
        })
        .collect();
    let partition =
        table.time_partitioning.as_ref().map(|p| format!(" PARTITION BY {}", partition_expression(p, &table.fields))).unwrap_or_default();
    let cluster = match table.clustering.as_slice() {
        [] => String::new(),
        columns => format!(" CLUSTER BY {}", columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")),
    };
    let (label_key, label_value) = CREATED_LABEL;
    format!(
        "CREATE OR REPLACE TABLE {} ({}){partition}{cluster} OPTIONS(labels=[({}, {})])",
        scope.qualified(&table.table_id),
        columns.join(", "),
        string_literal(label_key),
        string_literal(label_value),
    )
}

fn partition_expression(partitioning: &TimePartitioning, fields: &[Field]) -> String {
    let column = quote(&partitioning.field);
    let unit = serde_json::to_value(partitioning.unit).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let field_type = fields.iter().find(|f| f.name == partitioning.field).map_or(BigQueryType::Timestamp, |f| f.field_type);
    match (field_type, partitioning.unit) {
        (BigQueryType::Date, PartitionUnit::Day) => column,
        (BigQueryType::Date, _) => format!("DATE_TRUNC({column}, {unit})"),
        (BigQueryType::Datetime, _) => format!("DATETIME_TRUNC({column}, {unit})"),
        _ => format!("TIMESTAMP_TRUNC({column}, {unit})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::aggregates::ColumnAggregates;
    use crate::model::manifest::{ColumnManifest, FileManifest};
    use crate::model::tail::Tail;
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    fn column(name: &str, type_name: &str, not_null: bool) -> ColumnManifest {
        let pg = PgColumn { not_null, comment: Some(format!("the {name}")), ..PgColumn::base(name, type_name, -1) };
        ColumnManifest {
            mapping: map_column(&pg, None, OutOfRange::Refuse).unwrap(),
            adjusted_rows: 0,
            aggregates: ColumnAggregates::default(),
        }
    }

    fn manifest(files: usize, with_json: bool) -> Manifest {
        let mut columns = vec![column("id", "int8", true), column("mentioned_at", "timestamptz", true)];
        if with_json {
            columns.push(column("metadata", "jsonb", false));
        }
        Manifest::of_run(
            "20261124T070000Z-abcd",
            vec![TableManifest {
                day_counts: Vec::new(),
                name: "public.events".into(),
                table: None,
                bq_table: "events".into(),
                source_query: String::new(),
                primary_key: vec!["id".into()],
                foreign_keys: vec![],
                columns,
                partitions: vec![],
                files: (0..files)
                    .map(|i| FileManifest {
                        path: format!("public.events/part-{i:05}.parquet"),
                        uri: format!("gs://b/p/r/public.events/part-{i:05}.parquet"),
                        partition: 0,
                        rows: 10,
                        bytes: 100,
                        crc32c: String::new(),
                        aggregates: vec![],
                        row_fingerprint: None,
                    })
                    .collect(),
                row_count: 10 * files as u64,
                tail: None,
                rejected: None,
                row_hashes: None,
                deleted_keys: None,
                row_fingerprint: None,
            }],
        )
    }

    /// Where the tests' manifest was read from: not where its files were written (`gs://b/p/r`).
    const RUN_URI: &str = "gs://copy/elsewhere/r";

    fn target(mode: LoadMode) -> LoadTarget {
        LoadTarget {
            project: "p".into(),
            dataset: "d".into(),
            location: None,
            mode,
            partition_by: [("events".to_string(), ("mentioned_at".to_string(), PartitionUnit::Day))].into(),
            ..LoadTarget::default()
        }
    }

    #[test]
    fn one_job_without_json_loads_straight_into_the_table() {
        let plan = plan_load(&manifest(3, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert!(t.staging_table_id.is_none() && t.finalize.is_none());
        assert_eq!(t.load_jobs.len(), 1);
        assert_eq!(t.load_jobs[0].write_disposition, WriteDisposition::WriteTruncate);
        assert_eq!(t.load_jobs[0].uris.len(), 3);
        assert_eq!(t.fields[0].mode, FieldMode::Required);
        assert_eq!(t.time_partitioning, Some(TimePartitioning { field: "mentioned_at".into(), unit: PartitionUnit::Day }));
    }

    #[test]
    fn job_ids_are_deterministic_and_distinct_per_dataset_and_mode() {
        let a = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let b = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let c = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Append)).unwrap();
        assert_eq!(a.tables[0].load_jobs[0].job_id, b.tables[0].load_jobs[0].job_id);
        assert_ne!(a.tables[0].load_jobs[0].job_id, c.tables[0].load_jobs[0].job_id);
        assert_eq!(a.tables[0].load_jobs[0].job_id, "pg2bq_20261124T070000Z-abcd_d_events_truncate_load0000");
    }

    #[test]
    fn json_goes_through_staging_and_one_atomic_statement() {
        let plan = plan_load(&manifest(2, true), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert_eq!(t.load_jobs[0].destination_table_id, "events__pg2bq_staging_20261124t070000z_abcd");
        let sql = &t.finalize.as_ref().unwrap().sql;
        assert!(sql.starts_with("CREATE OR REPLACE TABLE `p.d.events` (`id` INT64 NOT NULL OPTIONS(description='the id')"), "{sql}");
        assert!(
            sql.contains("PARSE_JSON(s.`metadata`) AS `metadata`")
                && sql.ends_with(" FROM `p.d.events__pg2bq_staging_20261124t070000z_abcd` s"),
            "{sql}"
        );
        assert!(sql.contains("PARTITION BY TIMESTAMP_TRUNC(`mentioned_at`, DAY)"), "{sql}");
        let append = plan_load(&manifest(2, true), RUN_URI, &target(LoadMode::Append)).unwrap();
        assert!(append.tables[0]
            .finalize
            .as_ref()
            .unwrap()
            .sql
            .starts_with("INSERT INTO `p.d.events` (`id`, `mentioned_at`, `metadata`) SELECT"));
    }

    #[test]
    fn uri_limit_splits_jobs_and_forces_staging() {
        let plan = plan_load(&manifest(MAX_URIS_PER_JOB + 1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert_eq!(t.load_jobs.iter().map(|j| j.uris.len()).collect::<Vec<_>>(), [MAX_URIS_PER_JOB, 1]);
        assert_eq!(
            (t.load_jobs[0].write_disposition, t.load_jobs[1].write_disposition),
            (WriteDisposition::WriteTruncate, WriteDisposition::WriteAppend)
        );
        assert!(t.finalize.is_some());
    }

    #[test]
    fn an_empty_table_is_emptied_by_one_statement_not_a_load_job() {
        let plan = plan_load(&manifest(0, true), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert!(t.load_jobs.is_empty() && t.staging_table_id.is_none());
        assert_eq!(t.finalize.as_ref().unwrap().sql, "DELETE FROM `p.d.events` WHERE TRUE");
        assert!(plan_load(&manifest(0, true), RUN_URI, &target(LoadMode::Append)).unwrap().tables[0].finalize.is_none());
    }

    #[test]
    fn local_snapshots_and_bad_options_are_refused() {
        let local = plan_load(&manifest(1, false), "file:///tmp/r", &target(LoadMode::Truncate));
        assert!(matches!(local, Err(LoadPlanError::NotOnGcs { uri, .. }) if uri == "file:///tmp/r/public.events/part-00000.parquet"));
        let mut bad = target(LoadMode::Truncate);
        bad.partition_by = [("events".to_string(), ("id".to_string(), PartitionUnit::Day))].into();
        assert!(matches!(plan_load(&manifest(1, false), RUN_URI, &bad), Err(LoadPlanError::Partition { .. })));
    }

    #[test]
    fn files_load_from_where_the_manifest_is_not_where_they_were_written() {
        let plan = plan_load(&manifest(2, false), "gs://copy/elsewhere/r/", &target(LoadMode::Truncate)).unwrap();
        assert_eq!(
            plan.tables[0].load_jobs[0].uris,
            ["gs://copy/elsewhere/r/public.events/part-00000.parquet", "gs://copy/elsewhere/r/public.events/part-00001.parquet"]
        );
    }

    #[test]
    fn append_knows_the_truncate_job_that_commits_without_a_label() {
        let append = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Append)).unwrap();
        assert_eq!(append.tables[0].truncate_load_job_id.as_deref(), Some("pg2bq_20261124T070000Z-abcd_d_events_truncate_load0000"));
        let truncate = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        assert_eq!(truncate.tables[0].truncate_load_job_id, None);
        // Staged truncate loads set the label in their one final statement.
        assert_eq!(plan_load(&manifest(1, true), RUN_URI, &target(LoadMode::Append)).unwrap().tables[0].truncate_load_job_id, None);
    }

    #[test]
    fn nullable_table_columns_are_kept_in_jobs_and_the_final_statement() {
        let plan = plan_load(&manifest(2, true), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        assert_eq!(plan.tables[0].notes.len(), 1, "the plan says REQUIRED columns may load into NULLABLE ones");
        let kept = keep_nullable_columns(&plan, &plan.tables[0], &["id".to_string()]);
        let modes: Vec<(&str, FieldMode)> = kept.fields.iter().map(|f| (f.name.as_str(), f.mode)).collect();
        assert_eq!(modes, [("id", FieldMode::Nullable), ("mentioned_at", FieldMode::Required), ("metadata", FieldMode::Nullable)]);
        let sql = &kept.finalize.as_ref().unwrap().sql;
        assert!(sql.contains("(`id` INT64 OPTIONS(description='the id'), `mentioned_at` TIMESTAMP NOT NULL"), "{sql}");
        assert_eq!(kept.kept_nullable_columns, ["id"]);
        let staged_schema = &kept.load_jobs[0].configuration["load"]["schema"]["fields"];
        assert_eq!(staged_schema[0]["mode"], "NULLABLE", "the load jobs take the kept modes too");
        assert_eq!(staged_schema[2]["type"], "STRING", "JSON is staged as text");
        assert_eq!(kept.table_resource["schema"]["fields"][0]["mode"], "NULLABLE");
    }

    #[test]
    fn job_configurations_and_the_table_resource_are_in_the_plan() {
        let mut clustered = target(LoadMode::Truncate);
        clustered.cluster_by = [("events".to_string(), vec!["id".to_string()])].into();
        let plan = plan_load(&manifest(2, false), RUN_URI, &clustered).unwrap();
        let t = &plan.tables[0];
        let partitioning = serde_json::json!({ "type": "DAY", "field": "mentioned_at" });
        assert_eq!(t.table_resource["timePartitioning"], partitioning);
        assert_eq!(t.table_resource["clustering"]["fields"], serde_json::json!(["id"]));
        let load = &t.load_jobs[0].configuration["load"];
        assert_eq!(load["writeDisposition"], "WRITE_TRUNCATE");
        assert_eq!(load["destinationTable"]["tableId"], "events");
        assert_eq!(load["sourceUris"].as_array().unwrap().len(), 2);
        assert_eq!(load["timePartitioning"], partitioning, "a direct load sets the table's partitioning");
        let dry_run = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            dry_run["tables"][0]["fields"][0],
            serde_json::json!({ "name": "id", "field_type": "INT64", "mode": "REQUIRED", "description": "the id" })
        );
        assert_eq!(dry_run["tables"][0]["load_jobs"][0]["write_disposition"], "WRITE_TRUNCATE");

        let staged = plan_load(&manifest(2, true), RUN_URI, &target(LoadMode::Append)).unwrap();
        let finalize = staged.tables[0].finalize.as_ref().unwrap();
        assert_eq!(finalize.configuration["query"]["query"], finalize.sql.as_str());
        assert!(staged.tables[0].load_jobs[0].configuration["load"].get("timePartitioning").is_none(), "staging is not partitioned");
    }

    /// The app's table: string ids, JSON, a column the snapshot lacks.
    fn app_columns() -> Vec<TableColumn> {
        let column = |name: &str, t: BigQueryType, mode: FieldMode| TableColumn { name: name.into(), field_type: Ok(t), mode: Ok(mode) };
        vec![
            column("id", BigQueryType::String, FieldMode::Required),
            column("mentioned_at", BigQueryType::Timestamp, FieldMode::Required),
            column("metadata", BigQueryType::Json, FieldMode::Nullable),
            column("ingested_by", BigQueryType::String, FieldMode::Nullable),
        ]
    }

    #[test]
    fn into_an_existing_table_rows_go_by_dml_through_the_conversions() {
        let manifest = manifest(1, true);
        let sql = |mode: LoadMode| {
            let plan = plan_load(&manifest, RUN_URI, &target(mode)).unwrap();
            let table = plan_into_existing(&plan, &manifest.tables[0], &target(mode), &app_columns()).unwrap();
            assert!(table.into_existing && table.load_jobs[0].job_id.ends_with(&format!("_{}_routed_load0000", mode.as_str())));
            table.finalize.unwrap().sql
        };
        let select = "SELECT CAST(s.`id` AS STRING) AS `id`, s.`mentioned_at` AS `mentioned_at`, PARSE_JSON(s.`metadata`) AS `metadata` \
                      FROM `p.d.events__pg2bq_staging_20261124t070000z_abcd` s";
        let columns = "(`id`, `mentioned_at`, `metadata`)";
        assert_eq!(sql(LoadMode::Append), format!("INSERT INTO `p.d.events` {columns} {select}"));
        assert_eq!(
            sql(LoadMode::Truncate),
            format!(
                "BEGIN TRANSACTION; DELETE FROM `p.d.events` WHERE TRUE; INSERT INTO `p.d.events` {columns} {select}; COMMIT TRANSACTION;"
            )
        );
    }

    #[test]
    fn merge_stages_every_table_and_needs_a_key_without_nulls() {
        let mut manifest = manifest(1, false);
        let plan = plan_load(&manifest, RUN_URI, &target(LoadMode::Merge)).unwrap();
        let table = &plan.tables[0];
        assert_eq!((table.merge_key.as_slice(), table.staging_table_id.is_some()), (["id".to_string()].as_slice(), true));
        assert!(table.finalize.as_ref().unwrap().sql.starts_with("MERGE `p.d.events` T USING"), "{:?}", table.finalize);
        let overwrite = LoadTarget { overwrite_existing: true, ..target(LoadMode::Merge) };
        assert!(plan_load(&manifest, RUN_URI, &overwrite).unwrap().tables[0].load_jobs[0].job_id.ends_with("_merge_overwrite_load0000"));

        manifest.tables[0].columns[0].mapping.nullable = true;
        manifest.tables[0].columns[0].aggregates.null_count = 2;
        let error = plan_load(&manifest, RUN_URI, &target(LoadMode::Merge)).unwrap_err().to_string();
        assert!(error.contains("cannot merge by key (id): column `id` holds 2 NULL(s)"), "{error}");
        manifest.tables[0].primary_key.clear();
        let error = plan_load(&manifest, RUN_URI, &target(LoadMode::Merge)).unwrap_err().to_string();
        assert!(error.contains("no primary key") && error.contains("--key public.events.<column>"), "{error}");
    }

    /// A tail that carried 2 updated rows and 3 deleted keys: only a merge with both flags takes
    /// it; then its keys are loaded, kept as the table holds them and deleted by key.
    #[test]
    fn carried_changes_need_a_merge_that_overwrites_and_applies_deletes() {
        let mut manifest = manifest(1, false);
        let table = &mut manifest.tables[0];
        let carried = crate::model::tail::Carried { keys: vec![r#"{"id" : 4}"#.into(), r#"{"id" : 9}"#.into()], updated: 2, deleted: 3 };
        table.tail = Some(Tail {
            parent_run: "backfill".into(),
            column: "mentioned_at".into(),
            pg_type: "timestamp with time zone".into(),
            after: Some("1".into()),
            rows_through: 30,
            key: vec!["id".into()],
            set_aside: vec![],
            carried: Some(carried),
        });
        table.deleted_keys = Some(FileManifest { path: "public.events/_deleted/keys.parquet".into(), rows: 3, ..table.files[0].clone() });
        let both = LoadTarget { overwrite_existing: true, apply_deletes: true, ..target(LoadMode::Merge) };
        let refused = |target: LoadTarget| plan_load(&manifest, RUN_URI, &target).unwrap_err().to_string();
        assert!(refused(target(LoadMode::Truncate)).contains("only a merge by key applies"), "{}", refused(target(LoadMode::Truncate)));
        assert!(refused(LoadTarget { overwrite_existing: false, ..both.clone() }).ends_with("add --overwrite-existing"));
        let error = refused(LoadTarget { apply_deletes: false, ..both.clone() });
        assert!(
            error.contains(
                "keys of 3 row(s) deleted in Postgres since run `backfill` (public.events/_deleted/keys.parquet): add --apply-deletes"
            ),
            "{error}"
        );

        let plan = plan_load(&manifest, RUN_URI, &both).unwrap();
        let deletes = plan.tables[0].deletes.as_ref().unwrap();
        assert_eq!(
            (deletes.keys, deletes.load_job.uris.as_slice()),
            (3, [format!("{RUN_URI}/public.events/_deleted/keys.parquet")].as_slice())
        );
        assert_eq!(
            deletes.keep_keys.sql,
            "CREATE OR REPLACE TABLE `p.d.events__pg2bq_deleted_20261124t070000z_abcd` AS SELECT DISTINCT s.`id` AS `id` \
             FROM (SELECT CAST(JSON_VALUE(k.`key`, '$.id') AS INT64) AS `id` FROM `p.d.events_deleted__pg2bq_staging_20261124t070000z_abcd` k) s"
        );
        assert_eq!(
            deletes.delete.sql,
            "DELETE FROM `p.d.events` T WHERE EXISTS (SELECT 1 FROM `p.d.events__pg2bq_deleted_20261124t070000z_abcd` K WHERE T.`id` = K.`id`)"
        );
    }

    #[test]
    fn each_refusal_is_rendered_once_with_its_way_out_and_a_plan_lists_them_as_text() {
        let held = RowsHeld { rows: "20".into(), buffered: Some("3".into()) };
        let replaces = Problem::ReplacesRows { dataset: "app".into(), table_id: "events".into(), held };
        assert_eq!(
            replaces.to_string(),
            "table `app.events` was not created by pg2bq and holds 20 row(s) and about 3 more in its streaming buffer: a truncate \
             load would delete them. Add the snapshot's rows by key with --mode merge (rows already there are left alone), or \
             replace every row with --mode truncate --replace-existing-rows"
        );
        let missing = |closest: Vec<String>| Problem::MissingTarget {
            snapshot_table: "public.entity_mentions".into(),
            table_id: "entity_mentionz".into(),
            dataset: "app".into(),
            closest,
            dataset_tables: 4,
        };
        let tail = "; correct the name, or pass --create-missing to create it";
        assert_eq!(
            missing(vec!["entity_mentions".into(), "mentions".into()]).to_string(),
            format!(
                "--table-map sends `public.entity_mentions` to table `entity_mentionz`, which is not in dataset `app` \
                 (closest: `entity_mentions`, `mentions`){tail}"
            )
        );
        assert_eq!(
            missing(Vec::new()).to_string(),
            format!(
                "--table-map sends `public.entity_mentions` to table `entity_mentionz`, which is not in dataset `app` \
                 (the dataset holds 4 table(s), none with a similar name){tail}"
            )
        );
        let route = Problem::Route(RouteProblem::UnknownSetColumn { table: "events".into(), column: "absent".into() });
        let text = "table `events`: --set names column `absent`, which the target table does not have";
        assert_eq!(route.to_string(), text);
        let plan = LoadPlan {
            run_id: "r".into(),
            run_uri: "gs://b/r".into(),
            project: "p".into(),
            dataset: "app".into(),
            location: None,
            mode: LoadMode::Truncate,
            overwrite_existing: false,
            tables: Vec::new(),
            problems: vec![route],
        };
        assert_eq!(serde_json::to_value(&plan).unwrap()["problems"], serde_json::json!([text]));
    }
}
