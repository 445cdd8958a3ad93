//! `pg2bq load`: BigQuery load jobs (never streaming inserts) from the files a manifest lists.
//!
//! Input: a committed manifest. Output: one BigQuery table per snapshot table, equal to the
//! snapshot (truncate) or extended by it (append), and a [`LoadReport`]. It never lists the
//! bucket to find files, never changes an existing table's schema, and never loads a run twice:
//! job ids derive from the run, dataset and table, so a re-run attaches to jobs already
//! submitted, and append refuses a run already recorded in the table's labels (in any mode).
//! It trusts no manifest it has not checked: its digest and its table totals must agree with
//! its files' figures, and files are read from where the manifest is, not where it was written.

pub mod plan;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};
use tracing::{info, info_span, warn, Instrument};

use crate::gcp::bigquery::{BigQuery, BigQueryError, BigQueryOptions, JOB_ATTEMPTS};
use crate::gcp::schema::{schema_differences, schema_json, Field};
use crate::gcp::sql::quote;
use crate::model::manifest::TableManifest;
use crate::model::progress::{ProgressReporter, TableProgress};
use crate::storage::gcs::GcsOptions;
use crate::storage::manifest::{check_listed_files, read_manifest, FoundManifest, ManifestError};
use plan::{keep_nullable_columns, staging_fields, LoadPlanError};
pub use plan::{plan_load, LoadMode, LoadPlan, LoadTarget, TableLoad};

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

/// A failed load step, naming the table, job and files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Plan(#[from] LoadPlanError),
    #[error(transparent)]
    BigQuery(#[from] BigQueryError),
    #[error("table `{table}` exists with a different schema; drop it, load into another dataset, or use --table-prefix:\n{}", differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n"))]
    SchemaMismatch { table: String, differences: Vec<String> },
    #[error("run `{run_id}` was already {} table `{table}` (label `{label}` = `{mode}`); appending it again would duplicate its rows. Load it with --mode truncate to replace the table with the snapshot, or into another table", if mode == "append" { "appended to" } else { "loaded into" })]
    AlreadyLoaded { run_id: String, table: String, label: String, mode: String },
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
    #[error(
        "table `{table}`, column `{column}`: the staged JSON text differs from the snapshot's (fingerprint); the table was not touched"
    )]
    StagingMismatch { table: String, column: String },
    #[error("table `{table}`: {what} reports {actual} rows, the manifest {expected}")]
    RowCount { table: String, what: String, expected: u64, actual: u64 },
    #[error("{} of {} tables failed to load: {}", failed.len(), total, failed.join(", "))]
    TablesFailed { failed: Vec<String>, total: usize },
}

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
    pub seconds: f64,
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
/// [`LoadError`]; when one table fails the others still load, then
/// [`LoadError::TablesFailed`] names the failed ones (each failure is logged with its cause).
pub async fn load(config: &LoadConfig, progress: Option<&ProgressReporter>) -> Result<LoadOutcome, LoadError> {
    let FoundManifest { store, run_dir, manifest, .. } = read_manifest(&config.manifest_uri, &config.gcs).await?;
    let plan = plan_load(&manifest, &store.uri(&run_dir), &config.target)?;
    check_listed_files(&store, &run_dir, &manifest).await?;
    if config.dry_run {
        return Ok(LoadOutcome::Planned(plan));
    }
    let bq = BigQuery::connect(&config.target.project, config.target.location.clone(), &config.bigquery).await?;
    bq.ensure_dataset(&config.target.dataset, config.create_dataset).await?;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for table in &plan.tables {
        let span = info_span!("load", table = %table.table_id, run_id = %plan.run_id);
        let manifest_table = manifest.tables.iter().find(|t| t.name == table.source).expect("the plan is made from the manifest");
        let counter =
            Arc::new(TableProgress { planned_rows: table.rows, planned_jobs: table.load_jobs.len() as u64, ..TableProgress::default() });
        if let Some(report) = progress {
            report(&table.table_id, &counter);
        }
        match load_table(&bq, &plan, table, manifest_table, &counter).instrument(span).await {
            Ok(report) => reports.push(report),
            Err(error) => {
                warn!(table = %table.table_id, error = %crate::error_chain(&error).join(": "), "Table failed to load");
                if plan.tables.len() == 1 {
                    return Err(error);
                }
                failed.push(table.table_id.clone());
            }
        }
    }
    if !failed.is_empty() {
        return Err(LoadError::TablesFailed { failed, total: plan.tables.len() });
    }
    Ok(LoadOutcome::Loaded(LoadReport {
        run_id: plan.run_id.clone(),
        project: plan.project.clone(),
        dataset: plan.dataset.clone(),
        tables: reports,
    }))
}

/// For each JSON column of the staging table: checks the staged text's fingerprint equals the
/// manifest's (the staging table holds exactly the snapshot), and returns the fingerprint of the
/// same values as BigQuery will serialise them (`TO_JSON_STRING(PARSE_JSON(text))`), as labels
/// for `validate`: JSON serialisation differs between Postgres, BigQuery and emulators.
async fn fingerprint_staged_json(
    bq: &BigQuery,
    plan: &LoadPlan,
    table: &TableLoad,
    manifest_table: &TableManifest,
    staging: &str,
) -> Result<Vec<(String, String)>, LoadError> {
    use crate::gcp::sql::{encoding, fingerprint_items, json_fingerprint_label, list_encoding};
    let columns: Vec<_> = manifest_table.columns.iter().filter(|c| c.mapping.bq_type == crate::model::types::BigQueryType::Json).collect();
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let mut items = Vec::new();
    for column in &columns {
        let name = quote(&column.mapping.bq_name);
        let (text, canonical) = if column.mapping.repeated {
            (list_encoding(&name, "e"), list_encoding(&name, "TO_JSON_STRING(PARSE_JSON(e))"))
        } else {
            (name.clone(), encoding(crate::model::types::BigQueryType::Json, &format!("PARSE_JSON({name})")))
        };
        items.extend(fingerprint_items(&text));
        items.extend(fingerprint_items(&canonical));
    }
    let sql = format!("SELECT {} FROM {}", items.join(", "), quote(&format!("{}.{}.{staging}", plan.project, plan.dataset)));
    let row = bq.query_one_row(&sql).await?;
    // An aggregate over no values is NULL: the empty fingerprint, 0.
    let value = |i: usize| row.get(i).cloned().flatten().unwrap_or_else(|| "0".into());
    let mut labels = Vec::new();
    for (index, column) in columns.iter().enumerate() {
        let (text_xor, text_sum) = (value(4 * index), value(4 * index + 1));
        let aggregates = &column.aggregates;
        if text_xor != aggregates.fingerprint_xor || text_sum != aggregates.fingerprint_sum {
            return Err(LoadError::StagingMismatch { table: table.table_id.clone(), column: column.mapping.bq_name.clone() });
        }
        let canonical = format!("{}_{}", value(4 * index + 2), value(4 * index + 3));
        labels.push((json_fingerprint_label(&column.mapping.bq_name), canonical));
    }
    Ok(labels)
}

/// Counts, per JSON column of the staging table, the values `PARSE_JSON` would reject, and
/// refuses before the final statement runs (so the destination is never touched).
async fn check_json_representable(bq: &BigQuery, plan: &LoadPlan, table: &TableLoad, staging: &str) -> Result<(), LoadError> {
    let json_fields: Vec<&Field> = table.fields.iter().filter(|f| f.field_type == "JSON").collect();
    if json_fields.is_empty() {
        return Ok(());
    }
    let counts: Vec<String> = json_fields
        .iter()
        .map(|f| match f.mode.as_str() {
            "REPEATED" => format!("COUNTIF(EXISTS(SELECT 1 FROM UNNEST({0}) AS e WHERE SAFE.PARSE_JSON(e) IS NULL))", quote(&f.name)),
            _ => format!("COUNTIF({0} IS NOT NULL AND SAFE.PARSE_JSON({0}) IS NULL)", quote(&f.name)),
        })
        .collect();
    let sql = format!("SELECT {} FROM {}", counts.join(", "), quote(&format!("{}.{}.{staging}", plan.project, plan.dataset)));
    let counts = bq.query_counts(&sql).await?;
    for (field, &rows) in json_fields.iter().zip(&counts) {
        if rows > 0 {
            return Err(LoadError::JsonNotRepresentable { table: table.table_id.clone(), column: field.name.clone(), rows });
        }
    }
    Ok(())
}

fn table_reference(project: &str, dataset: &str, table: &str) -> Value {
    json!({ "projectId": project, "datasetId": dataset, "tableId": table })
}

/// Refuses to append a run the table already holds: its label says so (set by any mode), or
/// a direct truncate load of it succeeded (that commits before its label is set).
async fn refuse_loaded_run(bq: &BigQuery, plan: &LoadPlan, table: &TableLoad, existing: &Value) -> Result<(), LoadError> {
    let label_key = &table.run_label.0;
    let already = |mode: &str| LoadError::AlreadyLoaded {
        run_id: plan.run_id.clone(),
        table: table.table_id.clone(),
        label: label_key.clone(),
        mode: mode.into(),
    };
    if let Some(mode) = existing.pointer(&format!("/labels/{label_key}")).and_then(Value::as_str) {
        return Err(already(mode));
    }
    if let Some(base) = &table.truncate_load_job_id {
        // The ids `run_job` gives the attempts of one job.
        for job_id in std::iter::once(base.clone()).chain((2..=JOB_ATTEMPTS).map(|attempt| format!("{base}-r{attempt}"))) {
            if bq.succeeded_job(&job_id).await? {
                return Err(already("truncate"));
            }
        }
    }
    Ok(())
}

async fn load_table(
    bq: &BigQuery,
    plan: &LoadPlan,
    table: &TableLoad,
    manifest_table: &TableManifest,
    progress: &TableProgress,
) -> Result<TableReport, LoadError> {
    let started = Instant::now();
    let dataset = &plan.dataset;
    let kept;
    let table = match bq.table(dataset, &table.table_id).await? {
        Some(existing) => {
            let comparison = schema_differences(&existing, &table.fields);
            if !comparison.differences.is_empty() {
                return Err(LoadError::SchemaMismatch { table: table.table_id.clone(), differences: comparison.differences });
            }
            if plan.mode == LoadMode::Append {
                refuse_loaded_run(bq, plan, table, &existing).await?;
            }
            if comparison.nullable_in_table.is_empty() {
                table
            } else {
                info!(
                    columns = comparison.nullable_in_table.join(","),
                    "REQUIRED in the snapshot, NULLABLE in the table: loading with the table's modes"
                );
                kept = keep_nullable_columns(plan, table, &comparison.nullable_in_table);
                &kept
            }
        }
        None if table.staging_table_id.is_none() || plan.mode == LoadMode::Append => {
            bq.create_table(dataset, &table.table_id, &table.fields, table.time_partitioning.as_ref(), &table.clustering).await.map_err(
                |source| match source {
                    BigQueryError::Status { status: reqwest::StatusCode::CONFLICT, .. } => {
                        LoadError::CreatedConcurrently { table: table.table_id.clone(), source }
                    }
                    other => other.into(),
                },
            )?;
            table
        }
        None => table,
    };
    let (label_key, label_value) = &table.run_label;

    let mut job_ids = Vec::new();
    let mut labels = Vec::new();
    let mut reattached_jobs = 0;
    // A run that crashed after its final statement and its labels, while dropping the staging
    // table, is complete: only the checks below remain.
    let finished_before = match (&table.finalize, &table.staging_table_id) {
        (Some(finalize), Some(staging)) if bq.table(dataset, staging).await?.is_none() => bq.succeeded_job(&finalize.job_id).await?,
        _ => false,
    };
    if finished_before {
        info!("Final statement already done by an earlier run; checking only");
    }
    for job in table.load_jobs.iter().filter(|_| !finished_before) {
        let staged = table.staging_table_id.is_some();
        let fields = if staged { staging_fields(&table.fields) } else { table.fields.clone() };
        let mut load = json!({
            "sourceUris": job.uris,
            "sourceFormat": "PARQUET",
            "destinationTable": table_reference(&plan.project, dataset, &job.destination_table_id),
            "writeDisposition": job.write_disposition,
            "createDisposition": "CREATE_IF_NEEDED",
            "schema": schema_json(&fields),
            "parquetOptions": { "enableListInference": true },
            "decimalTargetTypes": ["NUMERIC", "BIGNUMERIC"],
        });
        if !staged {
            if let Some(p) = &table.time_partitioning {
                load["timePartitioning"] = json!({ "type": p.unit, "field": p.field });
            }
            if !table.clustering.is_empty() {
                load["clustering"] = json!({ "fields": table.clustering });
            }
        }
        let files = match job.uris.as_slice() {
            [one] => one.clone(),
            many => format!("{} … {} ({} files)", many[0], many[many.len() - 1], many.len()),
        };
        let finished = bq.run_job(&job.job_id, json!({ "load": load })).await.map_err(|source| LoadError::Job {
            table: table.table_id.clone(),
            job_id: job.job_id.clone(),
            files: files.clone(),
            source,
        })?;
        let loaded = finished.output_rows.unwrap_or(0);
        if loaded != job.rows {
            return Err(LoadError::RowCount {
                table: table.table_id.clone(),
                what: format!("load job `{}` ({files})", finished.job_id),
                expected: job.rows,
                actual: loaded,
            });
        }
        info!(job_id = %finished.job_id, rows = loaded, reattached = finished.reattached, "Load job done");
        progress.rows.fetch_add(loaded, Ordering::Relaxed);
        progress.bytes.fetch_add(job.bytes, Ordering::Relaxed);
        progress.jobs.fetch_add(1, Ordering::Relaxed);
        reattached_jobs += usize::from(finished.reattached);
        job_ids.push(finished.job_id);
    }

    let staging = table.staging_table_id.as_ref().filter(|_| !finished_before);
    if let Some(staging) = staging {
        check_json_representable(bq, plan, table, staging).await?;
        labels = fingerprint_staged_json(bq, plan, table, manifest_table, staging).await?;
    }
    if let Some(finalize) = table.finalize.as_ref().filter(|_| !finished_before) {
        let query = json!({ "query": { "query": finalize.sql, "useLegacySql": false } });
        let finished = bq.run_job(&finalize.job_id, query).await.map_err(|source| LoadError::Job {
            table: table.table_id.clone(),
            job_id: finalize.job_id.clone(),
            files: staging.map_or_else(|| "none".to_string(), |s| format!("staging table {s}")),
            source,
        })?;
        if plan.mode == LoadMode::Append && staging.is_some() {
            let affected = finished.dml_affected_rows.unwrap_or(0);
            if affected != table.rows {
                return Err(LoadError::RowCount {
                    table: table.table_id.clone(),
                    what: format!("INSERT job `{}`", finished.job_id),
                    expected: table.rows,
                    actual: affected,
                });
            }
        }
        reattached_jobs += usize::from(finished.reattached);
        job_ids.push(finished.job_id);
    }
    if plan.mode == LoadMode::Truncate {
        let sql = format!("SELECT COUNT(*) FROM {}", quote(&format!("{}.{dataset}.{}", plan.project, table.table_id)));
        let count = bq.query_counts(&sql).await?[0];
        if count != table.rows {
            return Err(LoadError::RowCount {
                table: table.table_id.clone(),
                what: "COUNT(*) after the load".into(),
                expected: table.rows,
                actual: count,
            });
        }
    }
    labels.push((label_key.clone(), label_value.clone()));
    bq.set_labels(dataset, &table.table_id, &labels).await?;
    // Dropped last: until the labels are set, a re-run needs the staged rows.
    if let Some(staging) = staging {
        bq.delete_table(dataset, staging).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    info!(rows = table.rows, jobs = job_ids.len(), seconds = format!("{seconds:.2}"), "Loaded table");
    Ok(TableReport { table_id: table.table_id.clone(), rows: table.rows, bytes: table.bytes, job_ids, reattached_jobs, seconds })
}
