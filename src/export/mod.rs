//! `pg2bq export`: Postgres → Arrow → Parquet snapshot + manifest.
//!
//! Input: an [`ExportConfig`]. Output: `<dest>/<run-id>/<table>/part-pPPPP-sSSSSS.parquet`
//! and, last, `<dest>/<run-id>/manifest.json`. Every table is read in one exported snapshot;
//! every partition's rows are checked against the snapshot's count before the manifest is
//! written. Nothing is written or deleted before the run is claimed (see [`crate::storage::run`]);
//! a failed run writes no manifest and removes what it uploaded, never a committed run.

pub mod batches;
pub mod config;
pub mod parquet;
pub mod plan;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, info_span, trace, warn, Instrument};

use crate::export::batches::{normalize_batch, pinned_schema, BatchError};
use crate::export::parquet::{ParquetSinkError, PartitionFiles};
use crate::model::aggregates::ColumnAccumulator;
use crate::model::manifest::{ColumnManifest, FileManifest, Manifest, TableManifest, FORMAT_VERSION, MANIFEST_FILE};
use crate::model::progress::TableProgress;
pub use crate::model::progress::{ProgressCounter, ProgressReporter};
use crate::source::postgres::SnapshotSession;
use crate::source::stream::{stream_query, StreamError};
use crate::source::SourceError;
use crate::storage::run::{ClaimError, Cleanup, RunClaim, RunId};
use crate::storage::store::{Store, StoreError};
use config::ExportConfig;
pub use plan::{ExportPlan, PlanError, TablePlan};

/// A failed export step, naming the table and object.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("table `{table}`, partition {partition}: a batch did not convert")]
    Batch {
        table: String,
        partition: usize,
        #[source]
        source: BatchError,
    },
    #[error("table `{table}`, partition {partition}: writing Parquet failed")]
    Write {
        table: String,
        partition: usize,
        #[source]
        source: ParquetSinkError,
    },
    #[error("run `{run_id}` is already committed (`{uri}` exists); pick another --run-id")]
    RunCommitted { run_id: String, uri: String },
    #[error("table `{table}`: the snapshot has {expected} rows but {actual} were written; nothing was committed")]
    RowCountMismatch { table: String, expected: u64, actual: u64 },
    #[error("table `{table}`, partition {partition}: its worker stopped unexpectedly")]
    Worker { table: String, partition: usize },
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("cannot serialise the manifest")]
    Manifest(#[source] serde_json::Error),
}

/// What `export` produced.
#[derive(Debug)]
pub enum ExportOutcome {
    /// `--dry-run`: the plan, nothing written.
    Planned(ExportPlan),
    /// The committed manifest and where it is.
    Committed { manifest: Box<Manifest>, manifest_uri: String },
}

/// Runs an export (or plans it, with `dry_run`).
///
/// # Errors
/// [`ExportError`] naming the table, column and object; nothing is committed on error.
pub async fn export(config: &ExportConfig, progress: Option<&ProgressReporter>) -> Result<ExportOutcome, ExportError> {
    let run_id = config.run_id.clone().unwrap_or_else(RunId::generate);
    let started_at = chrono::Utc::now();
    let store = Store::open(&config.destination, &config.gcs)?;
    let manifest_path = format!("{run_id}/{MANIFEST_FILE}");
    let manifest_uri = store.uri(&manifest_path);
    let committed = || ExportError::RunCommitted { run_id: run_id.to_string(), uri: manifest_uri.clone() };
    if store.exists(&manifest_path).await? {
        return Err(committed());
    }
    let session = SnapshotSession::open(&config.source_url).await?;
    let plan = plan::plan_export(config, &session, run_id.as_str()).await?;
    if config.dry_run {
        return Ok(ExportOutcome::Planned(plan));
    }
    let claim = RunClaim::take(&store, &run_id, config.take_over).await?;
    info!(run_id = %run_id, claim = %claim.uri(), attempt = %claim.record().attempt, "Claimed run");
    // Committed between the first look and the claim: leave it as it is.
    if store.exists(&manifest_path).await? {
        claim.delete_run_objects(Cleanup::ClaimOnly).await?;
        return Err(committed());
    }
    let leftovers = claim.delete_run_objects(Cleanup::EarlierAttempts).await?;
    if leftovers > 0 {
        warn!(run_id = %run_id, objects = leftovers, "Removed files of an earlier uncommitted attempt");
    }
    let committing = async {
        let manifest = export_tables(config, &store, &plan, &session, &run_id, progress, started_at).await?;
        let body = manifest.to_json().map_err(ExportError::Manifest)?;
        claim.ensure_held().await?;
        if !store.put_if_absent(&manifest_path, Bytes::from(body)).await? {
            return Err(committed());
        }
        Ok(manifest)
    };
    match committing.await {
        Ok(manifest) => {
            drop(session);
            info!(run_id = %manifest.run_id, uri = %manifest_uri, "Committed manifest");
            // The manifest commits the run; the claim has done its job.
            if let Err(error) = claim.delete_run_objects(Cleanup::ClaimOnly).await {
                warn!(run_id = %run_id, error = %error, "Could not remove the claim of the committed run");
            }
            Ok(ExportOutcome::Committed { manifest: Box::new(manifest), manifest_uri })
        }
        Err(error) => {
            // Only a run still held and not committed is cleaned; the claim checks both.
            if let Err(cleanup) = claim.delete_run_objects(Cleanup::Everything).await {
                warn!(run_id = %run_id, error = %cleanup, "Left the failed run's files in place");
            }
            Err(error)
        }
    }
}

/// Exports every table of the plan and returns the manifest to commit.
async fn export_tables(
    config: &ExportConfig,
    store: &Store,
    plan: &ExportPlan,
    session: &SnapshotSession,
    run_id: &RunId,
    progress: Option<&ProgressReporter>,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<Manifest, ExportError> {
    let setup = session.partition_setup();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Some(table) = plan.tables.iter().find(|t| t.partitions.len() * 2 > cores.max(2)) {
        // Each partition keeps two threads busy; ConnectorX's workers then outrun the encoders
        // and its unbounded channel grows (docs/benchmarks.md).
        warn!(table = %table.name, partitions = table.partitions.len(), cores, "More partitions than half the cores: expect little speedup and memory that grows with the table");
    }
    let mut tables = Vec::new();
    for table in &plan.tables {
        let counter = Arc::new(TableProgress { planned_rows: table.row_count, ..TableProgress::default() });
        if let Some(report) = progress {
            report(&table.name, &counter);
        }
        let span = info_span!("export", table = %table.name, run_id = %run_id);
        tables.push(export_table(config, store, table, &setup, run_id, counter).instrument(span).await?);
    }
    Ok(Manifest {
        format_version: FORMAT_VERSION,
        tool: "pg2bq".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        run_id: run_id.to_string(),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        completed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        source: plan.source.clone(),
        destination: store.uri("").trim_end_matches('/').to_string(),
        tables,
    })
}

async fn export_table(
    config: &ExportConfig,
    store: &Store,
    table: &TablePlan,
    setup: &[String],
    run_id: &RunId,
    counter: ProgressCounter,
) -> Result<TableManifest, ExportError> {
    let started = Instant::now();
    let schema = pinned_schema(&table.columns);
    let fresh_accumulators: Vec<ColumnAccumulator> = table.columns.iter().map(ColumnAccumulator::for_column).collect();
    let cancelled = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let mut workers = Vec::new();
    for partition in &table.partitions {
        let query = if partition.predicate.is_empty() {
            table.source_query.clone()
        } else {
            format!("{} WHERE {}", table.source_query, partition.predicate)
        };
        let mut files = PartitionFiles::new(
            store.clone(),
            runtime.clone(),
            schema.clone(),
            fresh_accumulators.clone(),
            config.parquet,
            // The table's directory under the run is its name (`schema.table` or the query name).
            format!("{run_id}/{}", table.name),
            partition.index,
        );
        let (url, name, columns, schema, setup) =
            (config.source_url.clone(), table.name.clone(), table.columns.clone(), schema.clone(), setup.to_vec());
        let (index, expected, batch_rows) = (partition.index, partition.rows, config.batch_rows);
        let (cancelled, counter) = (cancelled.clone(), counter.clone());
        trace!(partition = index, query = %query, "Streaming partition");
        workers.push(tokio::task::spawn_blocking(move || {
            let result = (|| {
                let rows = stream_query(&url, &name, &query, &setup, batch_rows, |batch| {
                    if cancelled.load(Ordering::Relaxed) {
                        return Err(None);
                    }
                    let batch = normalize_batch(&batch, &columns, &schema)
                        .map_err(|source| Some(Box::new(ExportError::Batch { table: name.clone(), partition: index, source })))?;
                    let bytes = files
                        .write(&batch)
                        .map_err(|source| Some(Box::new(ExportError::Write { table: name.clone(), partition: index, source })))?;
                    counter.rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    counter.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    debug!(table = %name, partition = index, rows = batch.num_rows(), "Wrote batch");
                    Ok(())
                })
                .map_err(|e| match e {
                    StreamError::Source(source) => Some(Box::new(ExportError::Source(source))),
                    StreamError::Sink(sink) => sink,
                })?;
                if rows != expected {
                    return Err(Some(Box::new(ExportError::Source(SourceError::ShortStream {
                        table: name.clone(),
                        partition: index,
                        expected,
                        actual: rows,
                    }))));
                }
                files.finish().map_err(|source| Some(Box::new(ExportError::Write { table: name.clone(), partition: index, source })))
            })();
            if result.is_err() {
                cancelled.store(true, Ordering::Relaxed);
            }
            result
        }));
    }
    let mut first_error = None;
    let mut written: Vec<(FileManifest, Vec<ColumnAccumulator>)> = Vec::new();
    for (partition, worker) in table.partitions.iter().zip(workers) {
        match worker.await {
            Ok(Ok(files)) => written.extend(files),
            Ok(Err(Some(error))) => {
                first_error.get_or_insert(*error);
            }
            Ok(Err(None)) => {}
            Err(_) => {
                first_error.get_or_insert(ExportError::Worker { table: table.name.clone(), partition: partition.index });
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    written.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let mut totals = fresh_accumulators;
    for (_, accumulators) in &written {
        for (total, file) in totals.iter_mut().zip(accumulators) {
            total.merge(file);
        }
    }
    let files: Vec<FileManifest> = written.into_iter().map(|(file, _)| file).collect();
    let row_count: u64 = files.iter().map(|f| f.rows).sum();
    if row_count != table.row_count {
        return Err(ExportError::RowCountMismatch { table: table.name.clone(), expected: table.row_count, actual: row_count });
    }
    let seconds = started.elapsed().as_secs_f64();
    info!(
        rows = row_count,
        files = files.len(),
        bytes = files.iter().map(|f| f.bytes).sum::<u64>(),
        seconds = format!("{seconds:.2}"),
        rows_per_s = (row_count as f64 / seconds.max(1e-9)) as u64,
        "Exported table"
    );
    let columns = table
        .columns
        .iter()
        .zip(&totals)
        .map(|(mapping, total)| ColumnManifest {
            mapping: mapping.clone(),
            adjusted_rows: table.adjusted_rows.iter().find(|(c, _)| c == &mapping.name).map_or(0, |(_, n)| *n),
            aggregates: total.finish(),
        })
        .collect();
    Ok(TableManifest {
        name: table.name.clone(),
        bq_table: table.bq_table.clone(),
        source_query: table.source_query.clone(),
        primary_key: table.primary_key.clone(),
        foreign_keys: table.foreign_keys.clone(),
        columns,
        partitions: table.partitions.clone(),
        files,
        row_count,
    })
}
