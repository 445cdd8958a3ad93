//! `pg2bq export`: Postgres → Arrow → Parquet snapshot + manifest.
//!
//! Input: an [`ExportConfig`]. Output: `<dest>/<run-id>/<table>/part-pPPPP-sSSSSS.parquet`
//! and, last, `<dest>/<run-id>/manifest.json`. Every table is read in one exported snapshot;
//! every partition's rows are checked against the snapshot's count before the manifest is
//! written. Nothing is written or deleted before the run is claimed (see [`crate::storage::run`]);
//! a failed run writes no manifest and removes what it uploaded, never a committed run.

pub mod batches;
pub mod config;
pub mod memory;
pub mod parquet;
pub mod plan;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, info_span, trace, warn, Instrument};

use crate::export::batches::{normalize_batch, pinned_schema, BatchError};
use crate::export::memory::{estimated_row_bytes, WorkerMemory, DEFAULT_MEMORY_BUDGET_BYTES};
use crate::export::parquet::{ParquetSettings, ParquetSinkError, PartitionFiles, WrittenFile};
use crate::model::aggregates::ColumnAccumulator;
use crate::model::manifest::{ColumnManifest, FileManifest, Manifest, PartitionManifest, TableManifest, FORMAT_VERSION, MANIFEST_FILE};
use crate::model::progress::TableProgress;
pub use crate::model::progress::{ProgressCounter, ProgressReporter};
use crate::model::run_id::RunId;
use crate::model::types::ColumnMapping;
use crate::source::postgres::SnapshotSession;
use crate::source::stream::{stream_query, StreamError};
use crate::source::SourceError;
use crate::storage::run::{ClaimError, Cleanup, RunClaim};
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
    Worker {
        table: String,
        partition: usize,
        #[source]
        source: tokio::task::JoinError,
    },
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
    crate::export::memory::map_large_buffers();
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

/// One partition's work, a plain value: the rows to read, what they must number, and where
/// their files go: all a worker needs besides the snapshot, the store and the encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportUnit {
    pub table: String,
    pub partition: usize,
    /// The table's SELECT narrowed by the partition's predicate.
    pub query: String,
    /// Rows the snapshot holds in this partition, counted when planning.
    pub expected_rows: u64,
    pub columns: Vec<ColumnMapping>,
    /// `<run-id>/<table>`: the table's directory under the run (its name, `schema.table` or
    /// the query name).
    pub directory: String,
}

impl ExportUnit {
    /// The work of `partition` of `table` in run `run_id`.
    pub fn new(table: &TablePlan, partition: &PartitionManifest, run_id: &RunId) -> Self {
        // The predicate was rendered from the partition's bounds when planning.
        let query = if partition.predicate.is_empty() {
            table.source_query.clone()
        } else {
            format!("{} WHERE {}", table.source_query, partition.predicate)
        };
        Self {
            table: table.name.clone(),
            partition: partition.index,
            query,
            expected_rows: partition.rows,
            columns: table.columns.clone(),
            directory: format!("{run_id}/{}", table.name),
        }
    }
}

/// How one partition's export ended.
#[derive(Debug)]
pub enum PartitionOutcome {
    /// Every row written and counted: the partition's files.
    Done(Vec<WrittenFile>),
    /// Stopped early because another partition of the table failed.
    Cancelled,
    Failed(ExportError),
}

/// Why a partition stopped before its last batch.
enum Interrupted {
    Cancelled,
    Failed(Box<ExportError>),
}

impl From<ExportError> for Interrupted {
    fn from(error: ExportError) -> Self {
        Interrupted::Failed(Box::new(error))
    }
}

/// What the partitions of one table share on this machine: the source snapshot, the store,
/// the encoding, progress, and the flag that stops them all once one fails.
struct PartitionExporter {
    source_url: String,
    /// Statements that put a partition's connection into the run's snapshot.
    setup: Vec<String>,
    store: Store,
    runtime: tokio::runtime::Handle,
    parquet: ParquetSettings,
    batch_rows: usize,
    counter: ProgressCounter,
    cancelled: AtomicBool,
}

impl PartitionExporter {
    /// Reads `unit`'s rows from the snapshot into Parquet files in the store. Blocks: run it
    /// on a blocking thread. A failure stops the table's other partitions at their next batch.
    fn export_partition(&self, unit: &ExportUnit) -> PartitionOutcome {
        match self.write_partition(unit) {
            Ok(files) => PartitionOutcome::Done(files),
            Err(Interrupted::Cancelled) => PartitionOutcome::Cancelled,
            Err(Interrupted::Failed(error)) => {
                self.cancelled.store(true, Ordering::Relaxed);
                PartitionOutcome::Failed(*error)
            }
        }
    }

    fn write_partition(&self, unit: &ExportUnit) -> Result<Vec<WrittenFile>, Interrupted> {
        let (table, partition) = (&unit.table, unit.partition);
        let written = |source| Interrupted::from(ExportError::Write { table: table.clone(), partition, source });
        let schema = pinned_schema(&unit.columns);
        let accumulators = unit.columns.iter().map(ColumnAccumulator::for_column).collect();
        let mut files = PartitionFiles::new(
            self.store.clone(),
            self.runtime.clone(),
            schema.clone(),
            accumulators,
            self.parquet,
            unit.directory.clone(),
            partition,
        );
        let rows = stream_query(&self.source_url, table, &unit.query, &self.setup, self.batch_rows, |batch| {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(Interrupted::Cancelled);
            }
            let batch = normalize_batch(&batch, &unit.columns, &schema)
                .map_err(|source| Interrupted::from(ExportError::Batch { table: table.clone(), partition, source }))?;
            let bytes = files.write(&batch).map_err(written)?;
            self.counter.rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            self.counter.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            debug!(table = %table, partition, rows = batch.num_rows(), "Wrote batch");
            Ok(())
        })
        .map_err(|error| match error {
            StreamError::Source(source) => Interrupted::from(ExportError::Source(source)),
            StreamError::Sink(interrupted) => interrupted,
        })?;
        if rows != unit.expected_rows {
            let short = SourceError::ShortStream { table: table.clone(), partition, expected: unit.expected_rows, actual: rows };
            return Err(Interrupted::from(ExportError::Source(short)));
        }
        files.finish().map_err(written)
    }
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
    // Every partition of the table runs at once: each gets its share of the memory budget.
    let row_bytes = estimated_row_bytes(&pinned_schema(&table.columns));
    let memory = WorkerMemory::split(DEFAULT_MEMORY_BUDGET_BYTES, table.partitions.len(), row_bytes, &config.parquet, config.batch_rows);
    debug!(table = %table.name, ?memory, row_bytes, "Memory per partition");
    if table.partitions.len() > WorkerMemory::max_workers(DEFAULT_MEMORY_BUDGET_BYTES) {
        warn!(table = %table.name, partitions = table.partitions.len(), budget_mb = DEFAULT_MEMORY_BUDGET_BYTES >> 20, "More partitions at once than the memory budget holds: peak memory may exceed it");
    }
    let exporter = Arc::new(PartitionExporter {
        source_url: config.source_url.clone(),
        setup: setup.to_vec(),
        store: store.clone(),
        runtime: tokio::runtime::Handle::current(),
        parquet: memory.parquet(config.parquet),
        batch_rows: memory.batch_rows,
        counter,
        cancelled: AtomicBool::new(false),
    });
    let mut workers = Vec::new();
    for partition in &table.partitions {
        let unit = ExportUnit::new(table, partition, run_id);
        trace!(partition = unit.partition, query = %unit.query, "Streaming partition");
        let exporter = exporter.clone();
        workers.push((partition.index, tokio::task::spawn_blocking(move || exporter.export_partition(&unit))));
    }
    let written = join_partitions(&table.name, workers).await?;
    let manifest = table_manifest(table, written);
    if manifest.row_count != table.row_count {
        return Err(ExportError::RowCountMismatch { table: table.name.clone(), expected: table.row_count, actual: manifest.row_count });
    }
    let seconds = started.elapsed().as_secs_f64();
    info!(
        rows = manifest.row_count,
        files = manifest.files.len(),
        bytes = manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
        seconds = format!("{seconds:.2}"),
        rows_per_s = (manifest.row_count as f64 / seconds.max(1e-9)) as u64,
        "Exported table"
    );
    Ok(manifest)
}

/// Waits for every partition of `table` and gathers their files, or returns the first
/// failure in partition order (a worker that panicked fails with its panic message).
async fn join_partitions(
    table: &str,
    workers: Vec<(usize, tokio::task::JoinHandle<PartitionOutcome>)>,
) -> Result<Vec<WrittenFile>, ExportError> {
    let mut first_error = None;
    let mut written = Vec::new();
    for (partition, worker) in workers {
        match worker.await {
            Ok(PartitionOutcome::Done(files)) => written.extend(files),
            Ok(PartitionOutcome::Cancelled) => {}
            Ok(PartitionOutcome::Failed(error)) => {
                first_error.get_or_insert(error);
            }
            Err(source) => {
                first_error.get_or_insert(ExportError::Worker { table: table.to_string(), partition, source });
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(written),
    }
}

/// The table's manifest from the files of all its partitions, their aggregates merged per
/// column (its rows are not checked here).
fn table_manifest(table: &TablePlan, mut written: Vec<WrittenFile>) -> TableManifest {
    written.sort_by(|a, b| a.manifest.path.cmp(&b.manifest.path));
    let mut totals: Vec<ColumnAccumulator> = table.columns.iter().map(ColumnAccumulator::for_column).collect();
    for file in &written {
        for (total, column) in totals.iter_mut().zip(&file.accumulators) {
            total.merge(column);
        }
    }
    let files: Vec<FileManifest> = written.into_iter().map(|file| file.manifest).collect();
    let row_count: u64 = files.iter().map(|f| f.rows).sum();
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
    TableManifest {
        name: table.name.clone(),
        bq_table: table.bq_table.clone(),
        source_query: table.source_query.clone(),
        primary_key: table.primary_key.clone(),
        foreign_keys: table.foreign_keys.clone(),
        columns,
        partitions: table.partitions.clone(),
        files,
        row_count,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};

    use super::*;
    use crate::model::partition::{KeyColumn, PartitionBounds};
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    fn table(rows: &[u64]) -> TablePlan {
        let key = KeyColumn { postgres: "id".into(), bigquery: "id".into() };
        let last = rows.len() - 1;
        let partitions = rows
            .iter()
            .enumerate()
            .map(|(index, &count)| {
                let (from, to) = ((index > 0).then_some(index as i64 * 10), (index < last).then_some((index as i64 + 1) * 10));
                PartitionManifest { rows: count, ..PartitionManifest::new(index, PartitionBounds::KeyRange { key: key.clone(), from, to }) }
            })
            .collect();
        TablePlan {
            name: "public.t".into(),
            bq_table: "t".into(),
            source_query: r#"SELECT "id" AS "id" FROM "public"."t""#.into(),
            columns: vec![map_column(&PgColumn::base("id", "int8", -1), None, OutOfRange::Refuse).unwrap()],
            primary_key: vec!["id".into()],
            foreign_keys: Vec::new(),
            partitions,
            row_count: rows.iter().sum(),
            adjusted_rows: Vec::new(),
            numeric_in_use: Vec::new(),
            min_files: rows.len(),
        }
    }

    /// A file of partition `partition` holding `values`, with its accumulators.
    fn file(table: &TablePlan, partition: usize, values: Vec<i64>) -> WrittenFile {
        let mut accumulators: Vec<ColumnAccumulator> = table.columns.iter().map(ColumnAccumulator::for_column).collect();
        accumulators[0].update(&(Arc::new(Int64Array::from(values.clone())) as ArrayRef));
        let manifest = FileManifest {
            path: format!("public.t/part-p{partition:04}-s00000.parquet"),
            uri: String::new(),
            partition,
            rows: values.len() as u64,
            bytes: 1,
            crc32c: String::new(),
            aggregates: accumulators.iter().map(ColumnAccumulator::finish).collect(),
        };
        WrittenFile { manifest, accumulators }
    }

    #[test]
    fn a_unit_reads_its_partition_and_travels_as_json() {
        let table = table(&[2, 1]);
        let run_id = RunId::parse("r1").unwrap();
        let unit = ExportUnit::new(&table, &table.partitions[1], &run_id);
        assert_eq!(unit.query, r#"SELECT "id" AS "id" FROM "public"."t" WHERE "id" >= 10"#);
        assert_eq!((unit.partition, unit.expected_rows, unit.directory.as_str()), (1, 1, "r1/public.t"));
        let json = serde_json::to_string(&unit).unwrap();
        assert_eq!(serde_json::from_str::<ExportUnit>(&json).unwrap(), unit);
    }

    #[tokio::test]
    async fn a_worker_that_panicked_fails_its_table_with_the_panic_message() {
        let table = table(&[2, 1]);
        let done = file(&table, 0, vec![1, 2]);
        let workers = vec![
            (0, tokio::task::spawn_blocking(move || PartitionOutcome::Done(vec![done]))),
            (1, tokio::task::spawn_blocking(|| -> PartitionOutcome { panic!("connection reset in the middle of a row") })),
        ];
        let error = join_partitions("public.t", workers).await.unwrap_err();
        assert!(matches!(error, ExportError::Worker { partition: 1, .. }), "{error:?}");
        let cause = std::error::Error::source(&error).expect("a cause").to_string();
        assert!(cause.contains("connection reset in the middle of a row"), "{cause}");
    }

    #[test]
    fn partitions_merge_into_the_table_in_file_order() {
        let table = table(&[2, 1]);
        let written = vec![file(&table, 1, vec![30]), file(&table, 0, vec![1, 2])];
        let manifest = table_manifest(&table, written);
        assert_eq!(manifest.files.iter().map(|f| f.partition).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(manifest.columns[0].aggregates.sum.as_deref(), Some("33"));
        assert_eq!(manifest.columns[0].aggregates.value_count, 3);
        assert_eq!(manifest.row_count, 3);
    }
}
