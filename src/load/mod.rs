//! `pg2bq load`: BigQuery load jobs (never streaming inserts) from the files a manifest lists.
//!
//! Input: a committed manifest. Output: one BigQuery table per snapshot table, equal to the
//! snapshot (truncate), extended by it (append) or by its rows whose key it lacks (merge,
//! optionally updating the rows that differ), and a [`LoadReport`]. An existing table with
//! other columns (an app's: string ids, JSON, extra columns) is fed through lossless
//! conversions by DML, which keeps its schema and layout. It never lists the bucket to find
//! files, never changes an existing table's schema, and never loads a run twice: job ids
//! derive from the run, dataset and table, so a re-run attaches to jobs already submitted, and
//! append refuses a run already recorded in the table's labels (in any mode).
//! It trusts no manifest it has not checked: its digest and its table totals must agree with
//! its files' figures, and files are read from where the manifest is, not where it was written.

pub mod deletes;
mod destination;
pub mod jobs;
pub mod merge;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tracing::{info, info_span, warn, Instrument};

use crate::gcp::bigquery::{job_attempt_ids, other_work, BigQuery, BigQueryApi, BigQueryError, BigQueryOptions, FinishedJob, JobCounts};
use crate::gcp::measures::{aggregate_query, aggregates_from_measures, column_encoding};
pub use crate::gcp::runs::MergeCounts;
use crate::gcp::runs::{
    keys_table_id, legacy_run_label, other_loads_sql, record_sql, runs_table_resource, DeletedRows, LoadRecord, CREATED_LABEL, RUNS_TABLE,
};
use crate::gcp::schema::{Field, FieldMode};
use crate::gcp::sql::{fingerprint_items, list_encoding, quote, table_path};
use crate::model::aggregates::ColumnAggregates;
use crate::model::error_kind::ErrorKind;
use crate::model::manifest::ColumnManifest;
use crate::model::manifest::{Manifest, TableManifest};
use crate::model::progress::{ProgressReporter, TableProgress};
use crate::model::run_record::{RecordedCommand, RecordedTable, RunRecord, Verdict};
use crate::model::types::BigQueryType;
use crate::storage::gcs::GcsOptions;
use crate::storage::manifest::{check_listed_files, read_manifest, FoundManifest, ManifestError};
use crate::storage::records::append_record;
use crate::storage::store::Store;
use deletes::Deletes;
pub use jobs::WriteDisposition;
use jobs::{LoadJob, LoadPlanError, QueryJob};
pub use plan::{plan_load, LoadMode, LoadPlan, LoadTarget, Problem, TableLoad};

/// Everything `load` needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `gs://bucket/prefix/<run-id>/manifest.json` (or a local path, for `--dry-run`).
    pub manifest_uri: String,
    pub target: LoadTarget,
    pub create_dataset: bool,
    pub dry_run: bool,
    pub bigquery: BigQueryOptions,
    pub gcs: GcsOptions,
}

/// The BigQuery call of a load step other than its jobs, for [`LoadError::Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStep {
    ReadTable,
    CreateTable,
    CheckEarlierJobs,
    CheckStagedJson,
    CheckKeys,
    CountRows,
    LabelTable,
    RecordRun,
    ListTables,
    DropStaging,
}

impl std::fmt::Display for LoadStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadStep::ReadTable => "read the destination table",
            LoadStep::CreateTable => "create the destination table",
            LoadStep::CheckEarlierJobs => "check the jobs of earlier runs",
            LoadStep::CheckStagedJson => "check the staged JSON",
            LoadStep::CheckKeys => "check the merge key is unique in the snapshot",
            LoadStep::CountRows => "count the loaded rows",
            LoadStep::LabelTable => "label the table as pg2bq's own",
            LoadStep::RecordRun => "record the run in the dataset's _pg2bq_runs table",
            LoadStep::ListTables => "list the dataset's tables",
            LoadStep::DropStaging => "drop the staging table",
        })
    }
}

/// A failed load step, naming the table, job and files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Plan(#[from] LoadPlanError),
    #[error(transparent)]
    BigQuery(#[from] BigQueryError),
    #[error("table `{table}`: failed to {step}")]
    Step {
        table: String,
        step: LoadStep,
        #[source]
        source: BigQueryError,
    },
    #[error("run `{run_id}` was already loaded into table `{table}` ({how}); appending it again would duplicate its rows. Load it with --mode truncate to replace the table with the snapshot, or into another table")]
    AlreadyLoaded { run_id: String, table: String, how: String },
    #[error("nothing was loaded:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Refused { problems: Vec<Problem> },
    #[error("table `{table}` was created by someone else while this load started (another `pg2bq load` of this run?); nothing was loaded. Wait for the other load to finish, then re-run: a re-run attaches to its jobs and never loads a run twice")]
    CreatedConcurrently {
        table: String,
        #[source]
        source: BigQueryError,
    },
    #[error("table `{table}`: load job `{job_id}` failed (files: {files})")]
    Job {
        table: String,
        job_id: String,
        files: String,
        #[source]
        source: BigQueryError,
    },
    #[error("table `{table}`, column `{column}`: {rows} row(s) hold JSON that BigQuery's JSON type cannot store exactly (e.g. a number beyond 64-bit precision); the table was not touched. Re-export with `--cast {column}=text` to keep it as text")]
    JsonNotRepresentable { table: String, column: String, rows: u64 },
    #[error("table `{table}`, column `{column}`: the staged values differ from the snapshot's ({what}); the table was not touched")]
    StagingMismatch { table: String, column: String, what: String },
    #[error("table `{table}`: the merge key ({key}) is not unique in the snapshot: {rows} row(s) repeat a key; the table was not touched. Merge by a unique key with --key {snapshot_table}.<column>[,<column>]")]
    DuplicateKeys { table: String, snapshot_table: String, key: String, rows: u64 },
    #[error("table `{table}`: {what} reports {actual} rows, the manifest {expected}")]
    RowCount { table: String, what: String, expected: u64, actual: u64 },
    #[error("{} of {} tables failed to load: {}; loaded: {}", failed.0.len(), total, failed.names(), if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") })]
    TablesFailed {
        #[source]
        failed: TableFailures,
        total: usize,
        /// The tables that loaded before or after the failures.
        loaded: Vec<String>,
    },
}

/// The tables that failed to load, each with its error; shown one table a line, each with
/// its causes.
#[derive(Debug)]
pub struct TableFailures(pub Vec<(String, LoadError)>);

impl TableFailures {
    fn names(&self) -> String {
        self.0.iter().map(|(table, _)| table.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for TableFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> =
            self.0.iter().map(|(table, error)| format!("`{table}`: {}", crate::model::error_chain(error).join(": "))).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for TableFailures {}

/// What `load` did, per table.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub run_id: String,
    pub project: String,
    pub dataset: String,
    pub tables: Vec<TableReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table_id: String,
    pub rows: u64,
    pub bytes: u64,
    pub job_ids: Vec<String>,
    /// Jobs an earlier run had already submitted, attached to instead of resubmitted.
    pub reattached_jobs: usize,
    /// An earlier run had finished this table's load: it was only checked and labelled now
    /// (and a merge's counts are that run's).
    pub done_before: bool,
    /// Merge: what the `MERGE` did with the snapshot's rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<MergeCounts>,
    /// `--apply-deletes`: the keys deleted in Postgres and the rows deleted by them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedRows>,
    /// What the load did to the table, in words.
    pub effect: String,
    /// Snapshot columns left out (`--exclude-column`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded_columns: Vec<String>,
    /// Target columns filled with a constant (`--set`): column → value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub set_columns: BTreeMap<String, String>,
    /// Snapshot columns whose NULLs got a value (`--default`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<DefaultedColumn>,
    pub seconds: f64,
}

/// A `--default`: the snapshot column, the value its NULLs became, and how many NULLs the
/// staged snapshot held (in a merge, only the inserted or updated rows take it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefaultedColumn {
    pub column: String,
    pub value: String,
    pub replaced_nulls: u64,
}

/// `load`'s result.
#[derive(Debug)]
pub enum LoadOutcome {
    Planned(LoadPlan),
    Loaded(LoadReport),
}

/// Loads a snapshot (or plans it, with `dry_run`).
///
/// # Errors
/// [`LoadError`]; [`LoadError::Refused`] before any job when a destination would lose rows an
/// app wrote, or a mapped target is missing; when one table fails the others still load, then
/// [`LoadError::TablesFailed`] names the failed ones, each with its error, and the loaded ones.
pub async fn load(config: &LoadConfig, progress: Option<&ProgressReporter>) -> Result<LoadOutcome, LoadError> {
    let FoundManifest { store, run_dir, manifest, .. } = read_manifest(&config.manifest_uri, &config.gcs).await?;
    let plan = plan_load(&manifest, &store.uri(&run_dir), &config.target)?;
    check_listed_files(&store, &run_dir, &manifest).await?;
    if config.dry_run {
        return Ok(LoadOutcome::Planned(plan_with_destinations(plan, &manifest, config).await?));
    }
    let loaded = async {
        let bq = BigQuery::connect(&config.target.project, config.target.location.clone(), &config.bigquery).await?;
        bq.ensure_dataset(&config.target.dataset, config.create_dataset).await?;
        load_tables(&bq, &plan, &config.target, &manifest, progress).await
    };
    let tables = loaded.await;
    record_load(&store, &run_dir, &plan, &tables).await;
    Ok(LoadOutcome::Loaded(LoadReport {
        run_id: plan.run_id.clone(),
        project: plan.project.clone(),
        dataset: plan.dataset.clone(),
        tables: tables?,
    }))
}

/// Leaves the load's outcome beside the run (docs/audit.md), a failed one too; a record that
/// cannot be written is a warning: the load itself is done.
async fn record_load(store: &Store, run_dir: &str, plan: &LoadPlan, outcome: &Result<Vec<TableReport>, LoadError>) {
    let verdict = if outcome.is_ok() { Verdict::Loaded } else { Verdict::Error };
    let mut record = RunRecord::now(RecordedCommand::Load, &plan.project, &plan.dataset, verdict);
    record.mode = Some(plan.mode.as_str().to_string());
    match outcome {
        Ok(tables) => {
            record.tables = tables
                .iter()
                .map(|t| {
                    let planned = plan.tables.iter().find(|p| p.table_id == t.table_id);
                    RecordedTable {
                        table: planned.map_or(t.table_id.as_str(), |p| p.source.as_str()).to_string(),
                        bq_table: t.table_id.clone(),
                        rows: Some(t.rows),
                        effect: Some(t.effect.clone()),
                        column_map: planned.map(|p| p.options.column_map.clone()).unwrap_or_default(),
                        ..RecordedTable::default()
                    }
                })
                .collect();
        }
        Err(error) => record.error = Some(crate::model::error_chain(error).join(": ")),
    }
    if let Err(error) = append_record(store, run_dir, &record).await {
        warn!(error = %crate::model::error_chain(&error).join(": "), "The load is not recorded beside the run: its report will not show it");
    }
}

/// `--dry-run`: the plan as it will run against the destination tables as they are now (read
/// with `tables.get`, which runs no job): what it does to each table in words, the conversions
/// into existing tables with other columns, and every refusal. When BigQuery cannot be reached,
/// the plan says so and assumes new tables.
async fn plan_with_destinations(mut plan: LoadPlan, manifest: &Manifest, config: &LoadConfig) -> Result<LoadPlan, LoadError> {
    let bq = match BigQuery::connect(&config.target.project, config.target.location.clone(), &config.bigquery).await {
        Ok(bq) => bq,
        Err(error) => {
            let note = format!("destination not read ({error}): planned as if the table did not exist");
            plan.tables.iter_mut().for_each(|t| t.notes.push(note.clone()));
            return Ok(plan);
        }
    };
    let (destinations, problems) = destination::read_all(&bq, &plan, &config.target, manifest).await?;
    plan.tables = destinations.into_iter().map(|d| d.table).collect();
    plan.problems = problems;
    Ok(plan)
}

/// Reads every destination and refuses before any job when one would lose rows or is missing;
/// then loads each table of the plan, a failed table not stopping the others.
async fn load_tables(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    target: &LoadTarget,
    manifest: &Manifest,
    progress: Option<&ProgressReporter>,
) -> Result<Vec<TableReport>, LoadError> {
    let (destinations, problems) = destination::read_all(bq, plan, target, manifest).await?;
    if !problems.is_empty() {
        return Err(LoadError::Refused { problems });
    }
    ensure_runs_table(bq, plan).await?;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for destination in &destinations {
        let table = &destination.table;
        let span = info_span!("load", table = %table.table_id, run_id = %plan.run_id);
        let manifest_table = manifest.tables.iter().find(|t| t.name == table.source).expect("the plan is made from the manifest");
        let counter =
            Arc::new(TableProgress { planned_rows: table.rows, planned_jobs: table.load_jobs.len() as u64, ..TableProgress::default() });
        if let Some(report) = progress {
            report(&table.table_id, &counter);
        }
        match load_table(bq, plan, destination, manifest_table, &counter).instrument(span).await {
            Ok(report) => reports.push(report),
            Err(error) => {
                warn!(table = %table.table_id, error = %crate::model::error_chain(&error).join(": "), "Table failed to load");
                if plan.tables.len() == 1 {
                    return Err(error);
                }
                failed.push((table.table_id.clone(), error));
            }
        }
    }
    if !failed.is_empty() {
        let loaded = reports.iter().map(|r| r.table_id.clone()).collect();
        return Err(LoadError::TablesFailed { failed: TableFailures(failed), total: plan.tables.len(), loaded });
    }
    Ok(reports)
}

/// Creates the dataset's `_pg2bq_runs` table unless it is there.
async fn ensure_runs_table(bq: &dyn BigQueryApi, plan: &LoadPlan) -> Result<(), LoadError> {
    let step = |source| LoadError::Step { table: RUNS_TABLE.into(), step: LoadStep::CreateTable, source };
    if bq.table(&plan.dataset, RUNS_TABLE).await.map_err(step)?.is_some() {
        return Ok(());
    }
    match bq.create_table(&plan.dataset, RUNS_TABLE, &runs_table_resource(&plan.project, &plan.dataset)).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(step(error)),
    }
}

/// A table's steps: prepare the destination, stage (or load) the files, check the staged rows
/// (JSON, the converted columns, a merge key's uniqueness), finalize, count, record the run for
/// validate, drop the staging table.
async fn load_table(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    destination: &destination::Destination,
    manifest_table: &TableManifest,
    progress: &TableProgress,
) -> Result<TableReport, LoadError> {
    let started = Instant::now();
    let table = &destination.table;
    prepare_destination(bq, plan, destination).await?;
    let finished_before = finished_before(bq, plan, table).await?;
    let staging = table.staging_table_id.as_deref().filter(|_| !finished_before);
    let (mut jobs, expected) = match finished_before {
        true => (Vec::new(), BTreeMap::new()),
        false => load_checked(bq, plan, table, manifest_table, progress).await?,
    };
    let (merged, deleted) = finalize_table(bq, plan, table, finished_before, &mut jobs).await?;
    if !finished_before {
        // Written before the staging table is dropped: a crash in between re-runs the checks
        // (attaching to the jobs) and records the same again.
        jobs.push(record_run(bq, plan, table, (merged, deleted.clone()), expected).await?);
    }
    if destination.pg2bq_owned() {
        let label = [(CREATED_LABEL.0.to_string(), CREATED_LABEL.1.to_string())];
        bq.set_labels(&plan.dataset, &table.table_id, &label).await.map_err(step_error(table, LoadStep::LabelTable))?;
    }
    if let Some(staging) = staging {
        bq.delete_table(&plan.dataset, staging).await.map_err(step_error(table, LoadStep::DropStaging))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    info!(rows = table.rows, jobs = jobs.len(), seconds = format!("{seconds:.2}"), "Loaded table");
    Ok(TableReport {
        table_id: table.table_id.clone(),
        rows: table.rows,
        bytes: table.bytes,
        reattached_jobs: jobs.iter().filter(|job| job.reattached).count(),
        job_ids: jobs.into_iter().map(|job| job.job_id).collect(),
        done_before: finished_before,
        merged,
        deleted,
        effect: table.effect.clone(),
        excluded_columns: table.options.excluded.iter().cloned().collect(),
        set_columns: table.options.set.clone(),
        defaults: defaulted_columns(table, manifest_table),
        seconds,
    })
}

/// Runs the load jobs and, into a staging table, checks the staged rows before the final
/// statement: every JSON value fits BigQuery's JSON type, the converted columns hold the
/// snapshot's values (measured as the table will hold them, for validate), a merge key is unique.
async fn load_checked(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    table: &TableLoad,
    manifest_table: &TableManifest,
    progress: &TableProgress,
) -> Result<(Vec<FinishedJob>, BTreeMap<String, ColumnAggregates>), LoadError> {
    let jobs = run_load_jobs(bq, table, progress).await?;
    let Some(staging) = table.staging_table_id.as_deref() else { return Ok((jobs, BTreeMap::new())) };
    check_json_representable(bq, plan, table, staging).await?;
    let expected = measure_staged_columns(bq, plan, table, manifest_table, staging).await?;
    check_unique_key(bq, plan, table, staging).await?;
    Ok((jobs, expected))
}

/// The final statement (after an earlier run finished, attached to: for a merge, its counts),
/// the merged keys kept for validate, `--apply-deletes`, and a truncate's row count. The jobs
/// run now are added to `jobs`.
async fn finalize_table(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    table: &TableLoad,
    finished_before: bool,
    jobs: &mut Vec<FinishedJob>,
) -> Result<(Option<MergeCounts>, Option<DeletedRows>), LoadError> {
    let finalized = finalize(bq, plan, table).await?;
    let merged = match finalized.as_ref().filter(|_| plan.mode == LoadMode::Merge) {
        None => None,
        Some(job) => Some(merge_counts(table, &job.counts).ok_or_else(|| LoadError::RowCount {
            table: table.table_id.clone(),
            what: format!("MERGE job `{}` (its dmlStats' inserted + updated rows)", job.job_id),
            expected: table.rows,
            actual: job.counts.inserted_rows.unwrap_or(0) + job.counts.updated_rows.unwrap_or(0),
        })?),
    };
    if !finished_before {
        jobs.extend(finalized);
        if let Some(keep_keys) = &table.keep_keys {
            jobs.push(run_statement(bq, table, keep_keys).await?);
        }
    }
    // Attached to after an earlier run finished them (its count).
    let deleted = match &table.deletes {
        Some(deletes) => Some(apply_deletes(bq, plan, table, deletes, jobs).await?),
        None => None,
    };
    if plan.mode == LoadMode::Truncate {
        count_rows(bq, plan, table).await?;
    }
    Ok((merged, deleted))
}

/// The `--default`s of a table with the NULLs the snapshot held in each column (the staged
/// rows were checked to hold exactly as many).
fn defaulted_columns(table: &TableLoad, manifest_table: &TableManifest) -> Vec<DefaultedColumn> {
    let nulls = |column: &str| manifest_table.columns.iter().find(|c| c.mapping.bq_name == column).map_or(0, |c| c.aggregates.null_count);
    let defaults = table.options.defaults.iter();
    defaults
        .map(|(column, value)| DefaultedColumn { column: column.clone(), value: value.clone(), replaced_nulls: nulls(column) })
        .collect()
}

/// Records what validate needs of this load in `_pg2bq_runs`, by a statement whose id derives
/// from the record: a re-run recording the same attaches to it.
async fn record_run(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    table: &TableLoad,
    (merged, deleted): (Option<MergeCounts>, Option<DeletedRows>),
    expected: BTreeMap<String, ColumnAggregates>,
) -> Result<FinishedJob, LoadError> {
    let record = LoadRecord {
        run_id: plan.run_id.clone(),
        source_table: table.source.clone(),
        table_id: table.table_id.clone(),
        mode: plan.mode,
        jobs: table.job_base.clone(),
        overwrite_existing: plan.overwrite_existing,
        routed: table.into_existing,
        options: table.options.clone(),
        merged,
        keys_table: table.keep_keys.as_ref().map(|_| keys_table_id(&table.table_id, &plan.run_id)),
        deleted,
        expected,
    };
    let job = QueryJob::new(format!("{}_record_{}", table.job_base, record.digest()), record_sql(&plan.project, &plan.dataset, &record));
    run_statement(bq, table, &job).await.map_err(|error| match error {
        LoadError::Job { source, .. } => step_error(table, LoadStep::RecordRun)(source),
        other => other,
    })
}

/// `--apply-deletes`: loads the deleted keys, keeps them as the table holds them, deletes their
/// rows and drops the keys' staging table; the rows deleted (those of the keys the table held).
async fn apply_deletes(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    table: &TableLoad,
    deletes: &Deletes,
    jobs: &mut Vec<FinishedJob>,
) -> Result<DeletedRows, LoadError> {
    jobs.push(run_load_job(bq, table, &deletes.load_job).await?);
    jobs.push(run_statement(bq, table, &deletes.keep_keys).await?);
    let finished = run_statement(bq, table, &deletes.delete).await?;
    let rows = finished.counts.dml_affected_rows.unwrap_or(0);
    info!(job_id = %finished.job_id, keys = deletes.keys, rows, "Deleted rows by key");
    jobs.push(finished);
    bq.delete_table(&plan.dataset, &deletes.staging_table_id).await.map_err(step_error(table, LoadStep::DropStaging))?;
    Ok(DeletedRows { keys_table: deletes.keys_table_id.clone(), keys: deletes.keys, rows })
}

/// A `MERGE` job's counts from its `dmlStats`; `None` when it reported none, or counts that do
/// not fit the snapshot's rows.
fn merge_counts(table: &TableLoad, counts: &JobCounts) -> Option<MergeCounts> {
    let inserted = counts.inserted_rows?;
    let updated = counts.updated_rows.unwrap_or(0);
    let already_present = table.rows.checked_sub(inserted).filter(|&present| updated <= present)?;
    Some(MergeCounts { inserted, already_present, updated })
}

/// Merge: refuses a snapshot whose key repeats (the `MERGE` would fail, or insert both rows).
async fn check_unique_key(bq: &dyn BigQueryApi, plan: &LoadPlan, table: &TableLoad, staging: &str) -> Result<(), LoadError> {
    if plan.mode != LoadMode::Merge {
        return Ok(());
    }
    let sources: Vec<String> =
        table.merge_key.iter().filter_map(|key| table.routes.iter().find(|r| &r.target == key).and_then(|r| r.source.clone())).collect();
    let sql = merge::duplicate_keys_sql(&table_path(&plan.project, &plan.dataset, staging), &sources);
    let repeated = bq.query_counts(&sql).await.map_err(step_error(table, LoadStep::CheckKeys))?[0];
    if repeated > 0 {
        return Err(LoadError::DuplicateKeys {
            table: table.table_id.clone(),
            snapshot_table: table.source.clone(),
            key: sources.join(", "),
            rows: repeated,
        });
    }
    Ok(())
}

fn step_error(table: &TableLoad, step: LoadStep) -> impl FnOnce(BigQueryError) -> LoadError + '_ {
    move |source| LoadError::Step { table: table.table_id.clone(), step, source }
}

/// Checks an existing destination (append: the run is not in it yet) or creates it.
async fn prepare_destination(bq: &dyn BigQueryApi, plan: &LoadPlan, destination: &destination::Destination) -> Result<(), LoadError> {
    let table = &destination.table;
    match &destination.existing {
        Some(existing) if plan.mode == LoadMode::Append => refuse_loaded_run(bq, plan, table, existing).await,
        Some(_) => Ok(()),
        // Created by the final statement, with the full schema.
        None if table.staging_table_id.is_some() && plan.mode == LoadMode::Truncate => Ok(()),
        None => bq.create_table(&plan.dataset, &table.table_id, &table.table_resource).await.map_err(|source| match source.kind() {
            ErrorKind::AlreadyExists => LoadError::CreatedConcurrently { table: table.table_id.clone(), source },
            _ => step_error(table, LoadStep::CreateTable)(source),
        }),
    }
}

/// Refuses to append a run the table already holds by other jobs than this append's (a re-run
/// attaches to its own and loads nothing twice): `_pg2bq_runs` records it in another mode or
/// by other jobs, an older pg2bq's label says so, or a direct truncate load of it succeeded
/// (that commits before the run is recorded).
async fn refuse_loaded_run(bq: &dyn BigQueryApi, plan: &LoadPlan, table: &TableLoad, existing: &Value) -> Result<(), LoadError> {
    let already = |how: String| LoadError::AlreadyLoaded { run_id: plan.run_id.clone(), table: table.table_id.clone(), how };
    let sql = other_loads_sql(&plan.project, &plan.dataset, &plan.run_id, &table.table_id, &table.source, &table.job_base);
    if bq.query_counts(&sql).await.map_err(step_error(table, LoadStep::CheckEarlierJobs))?[0] > 0 {
        return Err(already(format!("recorded in `{}`", RUNS_TABLE)));
    }
    let legacy = legacy_run_label(&plan.run_id);
    if let Some(mode) = existing.pointer(&format!("/labels/{legacy}")).and_then(Value::as_str) {
        return Err(already(format!("label `{legacy}` = `{mode}`")));
    }
    for job_id in table.truncate_load_job_id.iter().flat_map(|base| job_attempt_ids(base)) {
        if bq.succeeded_job(&job_id).await.map_err(step_error(table, LoadStep::CheckEarlierJobs))? {
            return Err(already(format!("its truncate load job `{job_id}` succeeded")));
        }
    }
    Ok(())
}

/// Whether an earlier run crashed after its final statement and its labels, while dropping the
/// staging table: then the run is complete and only the checks remain.
async fn finished_before(bq: &dyn BigQueryApi, plan: &LoadPlan, table: &TableLoad) -> Result<bool, LoadError> {
    let (Some(finalize), Some(staging)) = (&table.finalize, &table.staging_table_id) else {
        return Ok(false);
    };
    let done = match bq.table(&plan.dataset, staging).await.map_err(step_error(table, LoadStep::ReadTable))? {
        None => bq.succeeded_job(&finalize.job_id).await.map_err(step_error(table, LoadStep::CheckEarlierJobs))?,
        Some(_) => false,
    };
    if done {
        // The final statement's text does not name the files: its first load job's does.
        if let Some(first) = table.load_jobs.first() {
            let theirs = bq.job_configuration(&first.job_id).await.map_err(step_error(table, LoadStep::CheckEarlierJobs))?;
            if let Some(difference) = theirs.and_then(|theirs| other_work(&theirs, &first.configuration)) {
                let source = BigQueryError::OtherRunsJob { job_id: first.job_id.clone(), difference };
                return Err(LoadError::Job { table: table.table_id.clone(), job_id: first.job_id.clone(), files: first.files(), source });
            }
        }
        info!("Final statement already done by an earlier run; checking only");
    }
    Ok(done)
}

/// Runs the table's load jobs in order (into the table, or into staging) and checks each job's
/// row count against the manifest's.
async fn run_load_jobs(bq: &dyn BigQueryApi, table: &TableLoad, progress: &TableProgress) -> Result<Vec<FinishedJob>, LoadError> {
    let mut finished_jobs = Vec::new();
    for job in &table.load_jobs {
        let finished = run_load_job(bq, table, job).await?;
        let loaded = finished.counts.output_rows.unwrap_or(0);
        info!(job_id = %finished.job_id, rows = loaded, reattached = finished.reattached, "Load job done");
        progress.rows.fetch_add(loaded, Ordering::Relaxed);
        progress.bytes.fetch_add(job.bytes, Ordering::Relaxed);
        progress.jobs.fetch_add(1, Ordering::Relaxed);
        finished_jobs.push(finished);
    }
    Ok(finished_jobs)
}

/// One load job, run to success (attached to when an earlier run submitted it), with the rows
/// it loaded checked against the manifest's.
async fn run_load_job(bq: &dyn BigQueryApi, table: &TableLoad, job: &LoadJob) -> Result<FinishedJob, LoadError> {
    let finished = bq.run_job(&job.job_id, &job.configuration).await.map_err(|source| LoadError::Job {
        table: table.table_id.clone(),
        job_id: job.job_id.clone(),
        files: job.files(),
        source,
    })?;
    let loaded = finished.counts.output_rows.unwrap_or(0);
    if loaded != job.rows {
        return Err(LoadError::RowCount {
            table: table.table_id.clone(),
            what: format!("load job `{}` ({})", finished.job_id, job.files()),
            expected: job.rows,
            actual: loaded,
        });
    }
    Ok(finished)
}

/// Runs the final statement, if any: moves staged rows into the table (append: checking the
/// rows it inserted), or empties the table of an empty snapshot.
async fn finalize(bq: &dyn BigQueryApi, plan: &LoadPlan, table: &TableLoad) -> Result<Option<FinishedJob>, LoadError> {
    let Some(finalize) = &table.finalize else {
        return Ok(None);
    };
    let finished = run_statement(bq, table, finalize).await?;
    if plan.mode == LoadMode::Append && table.staging_table_id.is_some() {
        let affected = finished.counts.dml_affected_rows.unwrap_or(0);
        if affected != table.rows {
            return Err(LoadError::RowCount {
                table: table.table_id.clone(),
                what: format!("INSERT job `{}`", finished.job_id),
                expected: table.rows,
                actual: affected,
            });
        }
    }
    Ok(Some(finished))
}

/// Runs one of the table's statements (the final one, keeping the keys) to success, attached
/// to when an earlier run submitted it; a failure names the staging table it reads.
async fn run_statement(bq: &dyn BigQueryApi, table: &TableLoad, job: &QueryJob) -> Result<FinishedJob, LoadError> {
    bq.run_job(&job.job_id, &job.configuration).await.map_err(|source| LoadError::Job {
        table: table.table_id.clone(),
        job_id: job.job_id.clone(),
        files: table.staging_table_id.as_deref().map_or_else(|| "none".to_string(), |s| format!("staging table {s}")),
        source,
    })
}

/// Truncate: the table holds exactly the manifest's rows.
async fn count_rows(bq: &dyn BigQueryApi, plan: &LoadPlan, table: &TableLoad) -> Result<(), LoadError> {
    let sql = format!("SELECT COUNT(*) FROM {}", table_path(&plan.project, &plan.dataset, &table.table_id));
    let count = bq.query_counts(&sql).await.map_err(step_error(table, LoadStep::CountRows))?[0];
    if count != table.rows {
        return Err(LoadError::RowCount {
            table: table.table_id.clone(),
            what: "COUNT(*) after the load".into(),
            expected: table.rows,
            actual: count,
        });
    }
    Ok(())
}

/// For each column whose values the table does not hold as the snapshot's (JSON as BigQuery
/// serialises it, NULLs given a `--default`, a lossy type): checks the staged values are the
/// snapshot's (fingerprints and NULLs as the manifest's), then measures them through the route
/// and back, as validate will read them from the table. Returns snapshot column → what validate
/// is to expect.
async fn measure_staged_columns(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    table: &TableLoad,
    manifest_table: &TableManifest,
    staging: &str,
) -> Result<BTreeMap<String, ColumnAggregates>, LoadError> {
    let measured: Vec<(&ColumnManifest, &crate::gcp::routes::ColumnRoute)> = table
        .routes
        .iter()
        .filter(|r| r.measured_as.is_some())
        .filter_map(|r| Some((manifest_table.columns.iter().find(|c| Some(&c.mapping.bq_name) == r.source.as_ref())?, r)))
        .collect();
    if measured.is_empty() {
        return Ok(BTreeMap::new());
    }
    let staged = table_path(&plan.project, &plan.dataset, staging);
    check_staged_values(bq, table, &measured, &staged).await?;
    let forward: Vec<String> = measured.iter().map(|(_, r)| format!("{} AS {}", r.expr, quote(&r.target))).collect();
    let back: Vec<String> = measured.iter().map(|(c, r)| format!("{} AS {}", r.inverse, quote(&c.mapping.bq_name))).collect();
    let relation = format!("(SELECT {} FROM (SELECT {} FROM {staged} s) t)", back.join(", "), forward.join(", "));
    let columns: Vec<ColumnManifest> = measured.iter().map(|(c, r)| r.measured_column(c)).collect();
    let (sql, layout) = aggregate_query(&relation, &columns.iter().collect::<Vec<_>>(), None);
    let row = bq.query_one_row(&sql).await.map_err(step_error(table, LoadStep::CheckStagedJson))?;
    let aggregates = aggregates_from_measures(columns.len(), &layout, row.get(1..).unwrap_or_default()).ok_or_else(|| {
        step_error(table, LoadStep::CheckStagedJson)(BigQueryError::NotACount { sql: sql.clone(), column: 0, value: format!("{row:?}") })
    })?;
    Ok(columns.iter().map(|c| c.mapping.bq_name.clone()).zip(aggregates).collect())
}

/// The staged values of the measured columns are the snapshot's: their fingerprints (of the
/// Postgres text for JSON, staged as text) and NULL counts equal the manifest's.
async fn check_staged_values(
    bq: &dyn BigQueryApi,
    table: &TableLoad,
    measured: &[(&ColumnManifest, &crate::gcp::routes::ColumnRoute)],
    staged: &str,
) -> Result<(), LoadError> {
    let mut items = Vec::new();
    for (column, _) in measured {
        let name = quote(&column.mapping.bq_name);
        let encoding = match (column.mapping.bq_type, column.mapping.repeated) {
            (BigQueryType::Json, true) => list_encoding(&name, "e"),
            (BigQueryType::Json, false) => name.clone(),
            _ => column_encoding(column),
        };
        items.extend(fingerprint_items(&encoding));
        items.push(format!("CAST(COUNTIF({name} IS NULL) AS STRING)"));
    }
    let sql = format!("SELECT {} FROM {staged}", items.join(", "));
    let row = bq.query_one_row(&sql).await.map_err(step_error(table, LoadStep::CheckStagedJson))?;
    // An aggregate over no values is NULL: the empty fingerprint, 0.
    let value = |i: usize| row.get(i).cloned().flatten().unwrap_or_else(|| "0".into());
    for (index, (column, _)) in measured.iter().enumerate() {
        let aggregates = &column.aggregates;
        let mismatch = |what: &str| LoadError::StagingMismatch {
            table: table.table_id.clone(),
            column: column.mapping.bq_name.clone(),
            what: what.to_string(),
        };
        if value(3 * index) != aggregates.fingerprint_xor || value(3 * index + 1) != aggregates.fingerprint_sum {
            return Err(mismatch("fingerprint"));
        }
        // BigQuery loads a NULL array as empty: only scalar NULLs are counted.
        if !column.mapping.repeated && value(3 * index + 2) != aggregates.null_count.to_string() {
            return Err(mismatch("NULL count"));
        }
    }
    Ok(())
}

/// Counts, per JSON column of the staging table, the values `PARSE_JSON` would reject, and
/// refuses before the final statement runs (so the destination is never touched).
async fn check_json_representable(bq: &dyn BigQueryApi, plan: &LoadPlan, table: &TableLoad, staging: &str) -> Result<(), LoadError> {
    let json_fields: Vec<&Field> = table.fields.iter().filter(|f| f.field_type == BigQueryType::Json).collect();
    if json_fields.is_empty() {
        return Ok(());
    }
    let counts: Vec<String> = json_fields
        .iter()
        .map(|f| match f.mode {
            FieldMode::Repeated => {
                format!("COUNTIF(EXISTS(SELECT 1 FROM UNNEST({0}) AS e WHERE SAFE.PARSE_JSON(e) IS NULL))", quote(&f.name))
            }
            _ => format!("COUNTIF({0} IS NOT NULL AND SAFE.PARSE_JSON({0}) IS NULL)", quote(&f.name)),
        })
        .collect();
    let sql = format!("SELECT {} FROM {}", counts.join(", "), table_path(&plan.project, &plan.dataset, staging));
    let counts = bq.query_counts(&sql).await.map_err(step_error(table, LoadStep::CheckStagedJson))?;
    for (field, &rows) in json_fields.iter().zip(&counts) {
        if rows > 0 {
            return Err(LoadError::JsonNotRepresentable { table: table.table_id.clone(), column: field.name.clone(), rows });
        }
    }
    Ok(())
}
