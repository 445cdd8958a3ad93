//! `pg2bq export`: Postgres → Arrow → Parquet snapshot + manifest.
//!
//! Input: an [`ExportConfig`]. Output: `<dest>/<run-id>/<table>/part-pPPPP-sSSSSS.parquet`
//! and, last, `<dest>/<run-id>/manifest.json`. Every table is cut into units (its partitions),
//! which `--jobs` workers read in one exported snapshot ([`schedule`]); every unit's rows are
//! checked against the snapshot's count and recorded under the run as it finishes. Nothing is
//! written or deleted before the run is claimed (see [`crate::storage::run`]); a failed run
//! writes no manifest and removes what it uploaded, never a committed run. `--resume` keeps
//! the units an earlier attempt recorded and reads only the rest, in a new snapshot.

pub mod batches;
pub mod changes;
pub mod config;
pub mod dictionary;
pub mod memory;
pub mod parquet;
pub mod plan;
pub mod problem;
pub mod rejected;
pub mod row_hashes;
pub mod schedule;
pub mod sharded;
pub mod side_file;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, trace, warn};

use crate::export::batches::{normalize_batch, pinned_schema, BatchError};
use crate::export::memory::{estimated_row_bytes, WorkerMemory, DEFAULT_MEMORY_BUDGET_BYTES};
use crate::export::parquet::{ParquetSettings, ParquetSinkError, PartitionFiles, WrittenFile};
use crate::model::aggregates::ColumnAccumulator;
use crate::model::days::{DayCounter, DayCounts};
use crate::model::manifest::{
    ColumnManifest, FileManifest, Manifest, PartitionManifest, RowHashes, TableManifest, UnitSnapshot, FORMAT_VERSION, MANIFEST_FILE,
};
use crate::model::partition::PartitionBounds;
pub use crate::model::progress::{ProgressCounter, ProgressReporter};
use crate::model::progress::{TableProgress, UnitReport};
use crate::model::row_fingerprint::{covers, RowAccumulator, TableRowFingerprint};
use crate::model::run_id::RunId;
use crate::model::run_record::{GivenUp, GIVEN_UP_FILE};
use crate::model::table_ref::TableRef;
use crate::model::types::ColumnMapping;
use crate::model::unit_record::UnitRecord;
use crate::source::postgres::{unit_url, SnapshotSession};
use crate::source::stream::{stream_query, StreamError};
use crate::source::SourceError;
use crate::storage::manifest::{check_listed_files, read_manifest, ManifestError};
use crate::storage::run::{ClaimError, Cleanup, RunClaim};
use crate::storage::store::{Store, StoreError};
use crate::storage::units::{read_unit_records, UnitRecordError};
use config::ExportConfig;
pub use plan::{ExportPlan, PlanError, TablePlan};
use schedule::{queue_order, unit_report, QueuedUnit, Scheduler, TableAssembly, UnitOwner};

/// A failed export step, naming the table and object.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("table `{table}`: the rows set aside by --on-bad-value quarantine could not be written")]
    Rejected {
        table: String,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    #[error("table `{table}`: the row hashes (a later tail's check) could not be read or written")]
    RowHashes {
        table: String,
        #[source]
        source: changes::HashError,
    },
    #[error("--since: cannot read the earlier run's manifest")]
    Since(#[source] Box<ManifestError>),
    #[error("{} of {} tables had finished when the run stopped (nothing is committed: a run commits all its tables or none): finished: {}; not finished: {}", finished.len(), finished.len() + unfinished.len(), names(finished), names(unfinished))]
    TablesUnfinished {
        finished: Vec<String>,
        unfinished: Vec<String>,
        #[source]
        source: Box<ExportError>,
    },
    #[error("--since: cannot read the rows run `{run_id}` set aside from table `{table}` (`{uri}`)")]
    SinceRejected {
        run_id: String,
        table: String,
        uri: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
        source: Box<BatchError>,
    },
    #[error("table `{table}`, partition {partition}: writing Parquet failed")]
    Write {
        table: String,
        partition: usize,
        #[source]
        source: Box<ParquetSinkError>,
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
    #[error("table `{table}`, unit {partition}: failed in each of its {attempts} attempts")]
    Attempts {
        table: String,
        partition: usize,
        attempts: u32,
        #[source]
        source: Box<ExportError>,
    },
    #[error("table `{table}`, unit {partition}: its rows could not be locked within --lock-wait ({lock_wait}) because a statement waits for a lock the run holds: {waiting}; the run's snapshot holds ACCESS SHARE on every exported table until the run ends (as pg_dump does), so that statement waits for the run and the unit would wait behind it; nothing was committed: export again once that statement has run (or end it), or pass --lock-wait <duration> to let units wait for it to give up (its own lock_timeout)")]
    LockQueued {
        table: String,
        partition: usize,
        lock_wait: String,
        /// The statements queued behind the run's locks: pid, mode, relation, how long, statement.
        waiting: String,
        #[source]
        source: Box<ExportError>,
    },
    #[error(transparent)]
    UnitRecord(#[from] UnitRecordError),
    #[error("cannot resume run `{run_id}`: table `{table}`, unit {partition}: {difference}; the table or the options changed since it was recorded, so rerun without --resume (it starts clean) or under another --run-id")]
    ResumeMismatch { run_id: String, table: String, partition: usize, difference: String },
    #[error("table `{table}`, unit {partition}: its record lists aggregates of column `{column}` that cannot be read back; rerun without --resume")]
    RecordedAggregates { table: String, partition: usize, column: String },
    #[error("run `{run_id}`: the files its units recorded are not all in the store as recorded, so nothing was committed; restart the run (under another --run-id if another export writes this one)")]
    FilesNotAsRecorded {
        run_id: String,
        #[source]
        source: Box<ManifestError>,
    },
    #[error("--coordinate: {0}")]
    ConnectionBudget(String),
    #[error("run `{run_id}`: the deadline ({deadline}) passed with {recorded} of {units} units recorded, worker(s) {waiting} still owing units; nothing was committed and the run's files are removed: restart the run with a later --deadline or more workers")]
    Deadline { run_id: String, deadline: String, recorded: usize, units: usize, waiting: String },
    #[error("run `{run_id}`: the connection holding the run's snapshot broke, so no worker can join it any more; nothing was committed: restart the run")]
    SnapshotConnection {
        run_id: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("run `{run_id}`: a worker recorded table `{table}`, unit {partition} unlike the plan: {difference}; run the workers with the coordinator's pg2bq version and restart the run")]
    WorkerMismatch { run_id: String, table: String, partition: usize, difference: String },
    #[error("run `{run_id}`: table `{table}`, unit {partition} was recorded in snapshot {found}, not the coordinator's {expected}: another export wrote into this run; restart it under another --run-id")]
    ForeignSnapshot { run_id: String, table: String, partition: usize, found: String, expected: String },
    #[error("plan `{uri}` cannot be read; start the worker with the --plan the coordinator printed")]
    PlanRead {
        uri: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("plan `{uri}` is not a plan this pg2bq reads (format {found:?}, this one reads {supported}); run workers of the coordinator's version")]
    PlanFormat { uri: String, found: Option<u64>, supported: u32 },
    #[error("plan `{uri}` is unreadable")]
    PlanParse {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("plan `{uri}` is run `{run_id}`'s, but it is not in that run's directory; pass the plan where the coordinator wrote it")]
    PlanMoved { uri: String, run_id: String },
    #[error("run `{run_id}`: `{uri}` exists already, written by another coordinator; nothing more was written")]
    PlanExists { run_id: String, uri: String },
    #[error("plan `{uri}` shards the run across {planned} workers, but this task is worker {index} of {count}: run the job with {planned} tasks (or --workers {planned})")]
    WorkerCount { uri: String, planned: usize, index: usize, count: usize },
}

/// What `export` produced.
#[derive(Debug)]
pub enum ExportOutcome {
    /// `--dry-run`: the plan, nothing written.
    Planned(ExportPlan),
    /// The committed manifest, where it is, and how each unit went (recorded ones of a
    /// resumed run included).
    Committed { manifest: Box<Manifest>, manifest_uri: String, units: Vec<UnitReport> },
}

/// Runs an export (or plans it, with `dry_run`): [`plan_run`], then [`execute`].
///
/// # Errors
/// [`ExportError`] naming the table, column and object; nothing is committed on error.
pub async fn export(config: &ExportConfig, progress: Option<&ProgressReporter>) -> Result<ExportOutcome, ExportError> {
    let planned = plan_run(config).await?;
    if config.dry_run {
        return Ok(ExportOutcome::Planned(planned.plan));
    }
    execute(planned, progress).await
}

/// A run planned and ready to execute: the plan, and the snapshot session it was made in,
/// whose snapshot every unit reads (and whose locks hold the tables until the run ends).
pub struct PlannedRun<'a> {
    config: &'a ExportConfig,
    pub plan: ExportPlan,
    run_id: RunId,
    store: Store,
    session: SnapshotSession,
    started_at: chrono::DateTime<chrono::Utc>,
}

/// Plans a run: refuses a committed run id, opens the snapshot, locks its tables, reads the
/// `--since` run, and plans every table inside the snapshot ([`plan::plan_export`]: the
/// catalog, counts and value checks). Reads the store and Postgres; writes nothing, so
/// `--dry-run` runs only this.
///
/// # Errors
/// [`ExportError::RunCommitted`], a snapshot or lock failure, or the plan's refusal.
pub async fn plan_run(config: &ExportConfig) -> Result<PlannedRun<'_>, ExportError> {
    crate::export::memory::map_large_buffers();
    let run_id = config.run_id.clone().unwrap_or_else(RunId::generate);
    let started_at = chrono::Utc::now();
    let store = Store::open(&config.destination, &config.gcs)?;
    let manifest_path = format!("{run_id}/{MANIFEST_FILE}");
    if store.exists(&manifest_path).await? {
        return Err(ExportError::RunCommitted { run_id: run_id.to_string(), uri: store.uri(&manifest_path) });
    }
    let session = SnapshotSession::open(&config.source_url).await?;
    session.lock_tables(&locked_tables(config), config.lock_timeout).await?;
    let parent = since_manifest(config).await?;
    let plan = plan::plan_export(config, &session, run_id.as_str(), parent.as_ref()).await?;
    if let Some(coordination) = &config.coordinate {
        sharded::coordinator::check_connection_budget(&session, coordination.workers, config.jobs).await?;
    }
    Ok(PlannedRun { config, plan, run_id, store, session, started_at })
}

/// Executes a planned run: claims it, exports every unit in the plan's snapshot (or has
/// workers do it, with `--coordinate`) and commits the manifest, create-only.
///
/// # Errors
/// [`ExportError`] naming the table, column and object; nothing is committed on error.
pub async fn execute(planned: PlannedRun<'_>, progress: Option<&ProgressReporter>) -> Result<ExportOutcome, ExportError> {
    let PlannedRun { config, plan, run_id, store, session, started_at } = planned;
    let manifest_path = format!("{run_id}/{MANIFEST_FILE}");
    let manifest_uri = store.uri(&manifest_path);
    let claim = RunClaim::take(&store, &run_id, config.take_over).await?;
    info!(run_id = %run_id, claim = %claim.uri(), attempt = %claim.record().attempt, "Claimed run");
    // Committed between the first look and the claim: leave it as it is.
    if store.exists(&manifest_path).await? {
        claim.delete_run_objects(Cleanup::ClaimOnly).await?;
        return Err(ExportError::RunCommitted { run_id: run_id.to_string(), uri: manifest_uri });
    }
    let recorded = match prepare_attempt(config, &store, &claim, &plan).await {
        Ok(recorded) => recorded,
        Err(error) => {
            // Nothing of the earlier attempt is touched when its units cannot be kept.
            if let Err(release) = claim.delete_run_objects(Cleanup::ClaimOnly).await {
                warn!(run_id = %run_id, error = %release, "Could not release the claim");
            }
            return Err(error);
        }
    };
    let attempt = RunAttempt { config, store: &store, plan: &plan, session: &session, claim: &claim, started_at };
    let outcome = match &config.coordinate {
        Some(coordination) => sharded::coordinator::coordinate(&attempt, coordination, progress).await,
        None => attempt.commit(recorded, progress).await,
    };
    match outcome {
        Ok((manifest, units)) => {
            drop(session);
            info!(run_id = %manifest.run_id, uri = %manifest_uri, mixed_snapshot = manifest.mixed_snapshot, "Committed manifest");
            // The manifest commits the run; the claim and the unit records have done their job.
            if let Err(error) = claim.delete_run_objects(Cleanup::Bookkeeping).await {
                warn!(run_id = %run_id, error = %error, "Could not remove the claim and unit records of the committed run");
            }
            Ok(ExportOutcome::Committed { manifest: Box::new(manifest), manifest_uri, units })
        }
        Err(error) => {
            // A run another export took over is its to note, not ours.
            if clean_failed_run(&store, &claim, config.resume).await {
                note_given_up(&store, &run_id, &error, config.resume).await;
            }
            Err(error)
        }
    }
}

/// Leaves [`GIVEN_UP_FILE`] in the failed run's directory, so `pg2bq runs` lists it as given
/// up with its error; a note that cannot be written is a warning beside the run's error.
async fn note_given_up(store: &Store, run_id: &RunId, error: &ExportError, resumable: bool) {
    let note = GivenUp {
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        error: crate::model::error_chain(error).join(": "),
        resumable,
    };
    let data = Bytes::from(serde_json::to_vec_pretty(&note).expect("plain fields encode"));
    if let Err(failed) = store.put_if_absent(&format!("{run_id}/{GIVEN_UP_FILE}"), data).await {
        warn!(run_id = %run_id, error = %failed, "Could not note the run as given up");
    }
}

/// The tables of the run (not its queries), to lock in the snapshot.
fn locked_tables(config: &ExportConfig) -> Vec<TableRef> {
    let tables = config.tables.iter().filter_map(|spec| match &spec.source {
        config::TableSource::Table(table) => Some(table.clone()),
        config::TableSource::Query(_) => None,
    });
    tables.collect()
}

/// Tables named in an error, `a, b`, or `none`.
fn names(tables: &[String]) -> String {
    match tables {
        [] => "none".into(),
        tables => tables.join(", "),
    }
}

/// `--since`: the run this tail continues: its manifest and the keys of the rows it set aside,
/// read from its `_rejected` files beside the manifest (checked against their size and CRC32C).
async fn since_manifest(config: &ExportConfig) -> Result<Option<plan::Parent>, ExportError> {
    let Some(uri) = &config.since else { return Ok(None) };
    let found = read_manifest(uri, &config.gcs).await.map_err(|e| ExportError::Since(Box::new(e)))?;
    let mut set_aside = std::collections::BTreeMap::new();
    for table in &found.manifest.tables {
        let Some(rejected) = &table.rejected else { continue };
        let path = format!("{}/{}", found.run_dir, rejected.file.path);
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| ExportError::SinceRejected {
            run_id: found.manifest.run_id.clone(),
            table: table.name.clone(),
            uri: found.store.uri(&path),
            source,
        };
        let data = found.store.get(&path).await.map_err(|e| failed(Box::new(e)))?;
        let crc = crate::storage::store::crc32c_base64(crc32c::crc32c(&data));
        if let Some(difference) = crate::storage::manifest::file_difference(&rejected.file, Some((data.len() as u64, Some(&crc)))) {
            return Err(failed(format!("it differs from the manifest's record: {difference}").into()));
        }
        let keys = rejected::rejected_keys(data).map_err(|e| failed(Box::new(e)))?;
        set_aside.insert(table.name.clone(), keys.into_iter().flatten().collect::<Vec<_>>());
    }
    Ok(Some(plan::Parent { manifest: found.manifest, set_aside, store: std::sync::Arc::new(found.store), run_dir: found.run_dir }))
}

/// One attempt of a claimed run: everything it reads and writes through.
struct RunAttempt<'a> {
    config: &'a ExportConfig,
    store: &'a Store,
    plan: &'a ExportPlan,
    session: &'a SnapshotSession,
    claim: &'a RunClaim,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl RunAttempt<'_> {
    /// Exports the units not in `recorded` and commits the manifest, create-only.
    async fn commit(
        &self,
        recorded: Vec<UnitRecord>,
        progress: Option<&ProgressReporter>,
    ) -> Result<(Manifest, Vec<UnitReport>), ExportError> {
        // Units an earlier attempt read in another snapshot (`--resume`): this snapshot's row
        // hashes would not describe their table's rows, so none are recorded for it.
        let mixed: BTreeSet<String> =
            recorded.iter().filter(|r| r.snapshot.snapshot_id != self.session.snapshot_id).map(|r| r.table.clone()).collect();
        // The snapshot's session is idle while the units run: it reads the row hashes meanwhile.
        let ((mut tables, units, snapshots), mut hashes) =
            tokio::try_join!(self.export_tables(recorded, progress), self.row_hashes(&mixed))?;
        let (run_id, settings) = (self.claim.run_id().to_string(), &self.config.parquet);
        for manifest in &mut tables {
            let planned = self.plan.tables.iter().find(|t| t.name == manifest.name).expect("a manifest table is planned");
            if let Some(quarantine) = &planned.quarantine {
                manifest.rejected = Some(rejected::write_rejected(self.session, self.store, &run_id, planned, quarantine, settings).await?);
            }
            manifest.row_hashes = hashes.remove(&manifest.name);
            if !planned.deleted_keys.is_empty() {
                manifest.deleted_keys = Some(row_hashes::write_deleted_keys(self.store, &run_id, planned, settings).await?);
            }
        }
        let manifest = self.manifest(tables, snapshots);
        let body = manifest.to_json().map_err(ExportError::Manifest)?;
        // Files written elsewhere (a sharded run's workers, an earlier attempt) or removed since.
        check_listed_files(self.store, &run_id, &manifest)
            .await
            .map_err(|source| ExportError::FilesNotAsRecorded { run_id: run_id.clone(), source: Box::new(source) })?;
        self.claim.ensure_held().await?;
        let path = format!("{}/{MANIFEST_FILE}", self.claim.run_id());
        if !self.store.put_if_absent(&path, Bytes::from(body)).await? {
            return Err(ExportError::RunCommitted { run_id: self.claim.run_id().to_string(), uri: self.store.uri(&path) });
        }
        Ok((manifest, units))
    }

    /// The run's manifest. The units' snapshots are listed when one is not this attempt's (a
    /// resumed run), and make it mixed when they name more than one exported snapshot, even if
    /// no transaction committed between them.
    fn manifest(&self, tables: Vec<TableManifest>, unit_snapshots: Vec<UnitSnapshot>) -> Manifest {
        let ours = |s: &UnitSnapshot| s.snapshot_id == self.session.snapshot_id;
        let unit_snapshots = if unit_snapshots.iter().all(ours) { Vec::new() } else { unit_snapshots };
        let distinct: BTreeSet<&str> = unit_snapshots.iter().map(|s| s.snapshot_id.as_str()).collect();
        Manifest {
            format_version: FORMAT_VERSION,
            tool: "pg2bq".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            run_id: self.claim.run_id().to_string(),
            started_at: self.started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            completed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            source: self.plan.source.clone(),
            destination: self.store.uri("").trim_end_matches('/').to_string(),
            tables,
            mixed_snapshot: distinct.len() > 1,
            unit_snapshots,
        }
    }

    /// Writes the row hashes of every table with a primary key ([`row_hashes`]), by name,
    /// except the `mixed` ones (some of their units were read in another snapshot).
    async fn row_hashes(&self, mixed: &BTreeSet<String>) -> Result<BTreeMap<String, RowHashes>, ExportError> {
        let mut written = BTreeMap::new();
        for table in &self.plan.tables {
            let Some(query) = row_hashes::hash_query(table, self.session.hash_records()) else { continue };
            if mixed.contains(&table.name) {
                warn!(table = %table.name, "Row hashes not recorded: units kept from an earlier attempt were read in another snapshot; a tail of this run is checked by its count only");
                continue;
            }
            let hashes =
                row_hashes::write_row_hashes(self.session, self.store, self.claim.run_id().as_str(), table, &query, &self.config.parquet);
            written.insert(table.name.clone(), hashes.await?);
        }
        Ok(written)
    }

    /// Exports every unit of the plan not in `recorded`; returns the tables' manifests, a
    /// report line per unit and the snapshot each unit was read in.
    async fn export_tables(
        &self,
        recorded: Vec<UnitRecord>,
        progress: Option<&ProgressReporter>,
    ) -> Result<(Vec<TableManifest>, Vec<UnitReport>, Vec<UnitSnapshot>), ExportError> {
        let (config, store, plan, session, claim) = (self.config, self.store, self.plan, self.session, self.claim);
        let snapshot = UnitSnapshot {
            table: String::new(),
            partition: 0,
            snapshot_id: session.snapshot_id.clone(),
            txid_snapshot: session.info.txid_snapshot.clone(),
            wal_lsn: session.info.wal_lsn.clone(),
        };
        let mut records: BTreeMap<(String, usize), UnitRecord> =
            recorded.into_iter().map(|r| ((r.table.clone(), r.partition), r)).collect();
        let (mut assemblies, mut queues, mut reports, mut snapshots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for table in &plan.tables {
            let kept = take_records(table, &mut records);
            let resumed = resume_table(table, kept, claim.run_id(), &snapshot, config.coordinate.is_none())?;
            if let Some(report) = progress {
                report(&table.name, &resumed.counter);
            }
            let counter = resumed.counter;
            queues.push((
                resumed.assembly.plan.row_count,
                resumed
                    .queued
                    .into_iter()
                    .map(|(unit, units_in_table)| QueuedUnit { unit, units_in_table, counter: counter.clone() })
                    .collect(),
            ));
            assemblies.push(resumed.assembly);
            reports.extend(resumed.reports);
            snapshots.extend(resumed.snapshots);
        }
        let exporter = Arc::new(UnitExporter {
            source_url: config.source_url.clone(),
            unit_url: unit_url(&config.source_url, &session.snapshot_id, config.lock_wait),
            setup: session.partition_setup(),
            lock_wait: config.lock_wait,
            store: store.clone(),
            runtime: tokio::runtime::Handle::current(),
            parquet: config.parquet,
            batch_rows: config.batch_rows,
            workers: jobs_within_budget(config.jobs),
            cancelled: AtomicBool::new(false),
        });
        let scheduler =
            Scheduler { exporter, owner: UnitOwner::Run(claim), run_id: claim.run_id(), snapshot, queue: Mutex::new(queue_order(queues)) };
        let (tables, now) = scheduler.run(&mut assemblies).await?;
        reports.extend(now);
        Ok((tables, reports, snapshots))
    }
}

/// After a failure: removes everything the run wrote, or with `--resume` only what no unit
/// record keeps, so the run can be resumed again. Only a run still held and not committed is
/// cleaned; the claim checks both. Returns whether it was cleaned.
async fn clean_failed_run(store: &Store, claim: &RunClaim, resume: bool) -> bool {
    let cleaned = async {
        if resume {
            delete_unrecorded(claim, &read_unit_records(store, claim.run_id()).await?).await?;
            claim.delete_run_objects(Cleanup::ClaimOnly).await?;
        } else {
            claim.delete_run_objects(Cleanup::Everything).await?;
        }
        Ok::<(), ExportError>(())
    };
    match cleaned.await {
        Ok(()) => true,
        Err(cleanup) => {
            warn!(run_id = %claim.run_id(), error = %cleanup, "Left the failed run's files in place");
            false
        }
    }
}

/// Deletes what the run holds besides its unit `records`, the files they list and the claim.
async fn delete_unrecorded(claim: &RunClaim, records: &[UnitRecord]) -> Result<(), ExportError> {
    let run_id = claim.run_id();
    let keep: BTreeSet<String> = records.iter().flat_map(|r| r.files.iter().map(|f| format!("{run_id}/{}", f.path))).collect();
    let deleted = claim.delete_unrecorded(&keep).await?;
    if deleted > 0 {
        warn!(run_id = %run_id, objects = deleted, "Removed files no unit record lists");
    }
    Ok(())
}

/// Readies the claimed run: without `--resume` it starts clean; with it, the recorded units
/// are checked against `plan` and kept, and everything else goes. Returns the kept records.
async fn prepare_attempt(
    config: &ExportConfig,
    store: &Store,
    claim: &RunClaim,
    plan: &ExportPlan,
) -> Result<Vec<UnitRecord>, ExportError> {
    let run_id = claim.run_id();
    if !config.resume {
        let leftovers = claim.delete_run_objects(Cleanup::EarlierAttempts).await?;
        if leftovers > 0 {
            warn!(run_id = %run_id, objects = leftovers, "Removed files of an earlier uncommitted attempt");
        }
        return Ok(Vec::new());
    }
    let records = read_unit_records(store, run_id).await?;
    for record in &records {
        check_record(plan, run_id, record)?;
    }
    delete_unrecorded(claim, &records).await?;
    info!(run_id = %run_id, kept_units = records.len(), "Resuming run");
    Ok(records)
}

/// Refuses a recorded unit the new plan does not cut the same way: same table, unit count,
/// query (columns and bounds) and columns.
fn check_record(plan: &ExportPlan, run_id: &RunId, record: &UnitRecord) -> Result<(), ExportError> {
    let mismatch = |difference: String| ExportError::ResumeMismatch {
        run_id: run_id.to_string(),
        table: record.table.clone(),
        partition: record.partition,
        difference,
    };
    let table =
        plan.tables.iter().find(|t| t.name == record.table).ok_or_else(|| mismatch("the new plan does not export the table".into()))?;
    if table.partitions.len() != record.units_in_table {
        let (recorded, planned) = (record.units_in_table, table.partitions.len());
        return Err(mismatch(format!("recorded as one of {recorded} units, but the new plan cuts the table into {planned}")));
    }
    let partition =
        table.partitions.iter().find(|p| p.index == record.partition).ok_or_else(|| mismatch("the new plan has no such unit".into()))?;
    let unit = ExportUnit::new(table, partition, run_id);
    if unit.query != record.query {
        return Err(mismatch(format!("recorded with the query `{}`, but the new plan's is `{}`", record.query, unit.query)));
    }
    if unit.columns.len() != record.columns.len() || !unit.columns.iter().zip(&record.columns).all(|(a, b)| a.same_route(b)) {
        return Err(mismatch("its columns' types differ from the new plan's".into()));
    }
    Ok(())
}

/// The workers that run at once: `--jobs`, but no more than the memory budget holds (each
/// worker's share of it is set where a unit starts, see [`WorkerMemory::split`]).
fn jobs_within_budget(jobs: usize) -> usize {
    let most = WorkerMemory::max_workers(DEFAULT_MEMORY_BUDGET_BYTES);
    if jobs > most {
        warn!(
            jobs,
            running = most,
            budget_mb = DEFAULT_MEMORY_BUDGET_BYTES >> 20,
            "More --jobs than the memory budget holds: running fewer units at once"
        );
    }
    jobs.clamp(1, most)
}

/// The records of `table`'s units, taken out of `records`.
fn take_records(table: &TablePlan, records: &mut BTreeMap<(String, usize), UnitRecord>) -> Vec<UnitRecord> {
    table.partitions.iter().filter_map(|p| records.remove(&(table.name.clone(), p.index))).collect()
}

/// A table at the start of an attempt: its recorded units merged in, the rest to export.
struct ResumedTable {
    assembly: TableAssembly,
    /// Units to export, with the table's unit count.
    queued: Vec<(ExportUnit, usize)>,
    counter: ProgressCounter,
    reports: Vec<UnitReport>,
    snapshots: Vec<UnitSnapshot>,
}

/// `table` with the units of `kept` taken as recorded (their rows as counted in the snapshot
/// they were read in) and the others queued to be read in `snapshot`. `earlier_attempt`: the
/// records are an earlier attempt's (a resumed run), not this run's workers'.
fn resume_table(
    table: &TablePlan,
    kept: Vec<UnitRecord>,
    run_id: &RunId,
    snapshot: &UnitSnapshot,
    earlier_attempt: bool,
) -> Result<ResumedTable, ExportError> {
    let mut plan = table.clone();
    let (mut files, mut queued, mut reports, mut snapshots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for partition in &mut plan.partitions {
        match kept.iter().find(|r| r.partition == partition.index) {
            Some(record) => {
                partition.rows = record.rows;
                files.extend(recorded_files(&table.columns, record)?);
                reports.push(unit_report(record, earlier_attempt));
                snapshots.push(record.snapshot.clone());
            }
            None => {
                queued.push((ExportUnit::new(table, partition, run_id), table.partitions.len()));
                snapshots.push(UnitSnapshot { table: table.name.clone(), partition: partition.index, ..snapshot.clone() });
            }
        }
    }
    plan.row_count = plan.partitions.iter().map(|p| p.rows).sum();
    let counter = Arc::new(TableProgress {
        planned_rows: plan.row_count,
        planned_units: plan.partitions.len() as u64,
        rows: kept.iter().map(|r| r.rows).sum::<u64>().into(),
        units: (kept.len() as u64).into(),
        ..TableProgress::default()
    });
    let pending = queued.len();
    Ok(ResumedTable { assembly: TableAssembly { plan, files, pending, share: false }, queued, counter, reports, snapshots })
}

/// A recorded unit's files with their columns' accumulators rebuilt from the record.
fn recorded_files(columns: &[ColumnMapping], record: &UnitRecord) -> Result<Vec<WrittenFile>, ExportError> {
    record
        .files
        .iter()
        .map(|file| {
            let accumulators = columns
                .iter()
                .enumerate()
                .map(|(position, mapping)| {
                    file.aggregates.get(position).and_then(|recorded| ColumnAccumulator::from_recorded(mapping, recorded)).ok_or_else(
                        || ExportError::RecordedAggregates {
                            table: record.table.clone(),
                            partition: record.partition,
                            column: mapping.bq_name.clone(),
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(WrittenFile { manifest: file.clone(), accumulators })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|mut files| {
            attach_day_counts(&mut files, columns, record.day_counts.as_deref());
            files
        })
}

/// A recorded unit's rows per day joined to its files' accumulators (to the first file: the
/// table merges them all). Unknown when the record has none (an older pg2bq's).
fn attach_day_counts(files: &mut [WrittenFile], columns: &[ColumnMapping], recorded: Option<&[DayCounts]>) {
    let Some(recorded) = recorded else { return };
    for (index, file) in files.iter_mut().enumerate() {
        for (accumulator, mapping) in file.accumulators.iter_mut().zip(columns) {
            let counter = match index {
                0 => recorded.iter().find(|c| c.column == mapping.bq_name).and_then(DayCounter::from_record),
                _ => Some(DayCounter::default()),
            };
            accumulator.set_days(counter.unwrap_or_else(DayCounter::unknown));
        }
    }
}

/// Rows per day of each DATE and TIMESTAMP column over `files` (a unit's).
pub(in crate::export) fn day_counts(columns: &[ColumnMapping], files: &[WrittenFile]) -> Vec<DayCounts> {
    day_records(columns, &merged_accumulators(columns, files))
}

/// The recorded rows per day of the columns whose merged accumulators count days.
fn day_records(columns: &[ColumnMapping], totals: &[ColumnAccumulator]) -> Vec<DayCounts> {
    columns.iter().zip(totals).filter_map(|(mapping, total)| Some(total.days()?.to_record(&mapping.bq_name))).collect()
}

/// Each column's accumulators of `files`, merged.
fn merged_accumulators(columns: &[ColumnMapping], files: &[WrittenFile]) -> Vec<ColumnAccumulator> {
    let mut totals: Vec<ColumnAccumulator> = columns.iter().map(ColumnAccumulator::for_column).collect();
    for file in files {
        for (total, column) in totals.iter_mut().zip(&file.accumulators) {
            total.merge(column);
        }
    }
    totals
}

/// One partition's work, a plain value: the rows to read, what they must number, and where
/// their files go: all a worker needs besides the snapshot, the store and the encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportUnit {
    pub table: String,
    pub partition: usize,
    /// The table's SELECT (or its columns `FROM ONLY` the partition's child relation),
    /// narrowed by the partition's predicate.
    pub query: String,
    /// Rows the snapshot holds in this partition, counted when planning.
    pub expected_rows: u64,
    pub columns: Vec<ColumnMapping>,
    /// `<run-id>/<table>`: the table's directory under the run (see [`TablePlan::directory`]).
    pub directory: String,
}

impl ExportUnit {
    /// The work of `partition` of `table` in run `run_id`: the table's SELECT, or the same
    /// columns `FROM ONLY` the child relation the partition reads, narrowed by its predicate.
    pub fn new(table: &TablePlan, partition: &PartitionManifest, run_id: &RunId) -> Self {
        let select = match partition.bounds.as_ref().and_then(PartitionBounds::only_relation) {
            Some(relation) => format!("SELECT {} FROM ONLY {}", plan::select_list(&table.columns), relation.quoted()),
            None => table.source_query.clone(),
        };
        // The predicate was rendered from the partition's bounds when planning; a tail's and
        // a quarantine's filters narrow every unit.
        let mut filters = table.row_filters();
        filters.extend(Some(partition.predicate.clone()).filter(|p| !p.is_empty()));
        let query = match plan::and_all(&filters) {
            Some(filter) => format!("{select} WHERE {filter}"),
            None => select,
        };
        Self {
            table: table.name.clone(),
            partition: partition.index,
            query,
            expected_rows: partition.rows,
            columns: table.columns.clone(),
            directory: format!("{run_id}/{}", table.directory()),
        }
    }
}

/// Why a unit stopped before its last batch.
enum Interrupted {
    Cancelled,
    Failed(Box<ExportError>),
}

impl From<ExportError> for Interrupted {
    fn from(error: ExportError) -> Self {
        Interrupted::Failed(Box::new(error))
    }
}

/// What the workers of a run share on this machine: the source snapshot, the store, the
/// encoding, and the flag that stops them all once one unit fails.
pub struct UnitExporter {
    source_url: String,
    /// The URL of a unit's connections ([`unit_url`]).
    unit_url: String,
    /// Statements that put a worker's connection into the run's snapshot.
    setup: Vec<String>,
    /// How long a unit's statement may wait for a lock (`--lock-wait`).
    lock_wait: std::time::Duration,
    store: Store,
    runtime: tokio::runtime::Handle,
    /// The encoding's limits; each unit gets its worker's share of the memory budget.
    parquet: ParquetSettings,
    /// Rows per batch at most.
    batch_rows: usize,
    /// Workers running at once (at least 1), sharing the memory budget.
    workers: usize,
    cancelled: AtomicBool,
}

impl UnitExporter {
    /// Reads `unit`'s rows from the snapshot into Parquet files in the store, counting them in
    /// `counter` (and taking them back out if the attempt fails). Blocks: run it on a blocking
    /// thread. `None` when the run was cancelled meanwhile.
    ///
    /// # Errors
    /// The unit's [`ExportError`].
    fn export_unit(&self, unit: &ExportUnit, counter: &TableProgress) -> Result<Option<Vec<WrittenFile>>, ExportError> {
        let mut counted = (0, 0);
        trace!(table = %unit.table, partition = unit.partition, query = %unit.query, "Streaming partition");
        let outcome = self.write_unit(unit, counter, &mut counted);
        if outcome.is_err() {
            counter.rows.fetch_sub(counted.0, Ordering::Relaxed);
            counter.bytes.fetch_sub(counted.1, Ordering::Relaxed);
        }
        match outcome {
            Ok(files) => Ok(Some(files)),
            Err(Interrupted::Cancelled) => Ok(None),
            Err(Interrupted::Failed(error)) => Err(*error),
        }
    }

    fn write_unit(&self, unit: &ExportUnit, counter: &TableProgress, counted: &mut (u64, u64)) -> Result<Vec<WrittenFile>, Interrupted> {
        let (table, partition) = (&unit.table, unit.partition);
        let written = |source| Interrupted::from(ExportError::Write { table: table.clone(), partition, source: Box::new(source) });
        let schema = pinned_schema(&unit.columns);
        let row_bytes = estimated_row_bytes(&schema);
        let memory = WorkerMemory::split(DEFAULT_MEMORY_BUDGET_BYTES, self.workers, row_bytes, &self.parquet, self.batch_rows);
        trace!(table = %table, partition, ?memory, row_bytes, "Memory of the unit's worker");
        let accumulators = (unit.columns.iter().map(ColumnAccumulator::for_column).collect(), RowAccumulator::for_columns(&unit.columns));
        let mut files = PartitionFiles::new(
            self.store.clone(),
            self.runtime.clone(),
            schema.clone(),
            accumulators,
            memory.parquet(self.parquet),
            unit.directory.clone(),
            partition,
        );
        let rows = stream_query(&self.unit_url, table, &unit.query, &self.setup, memory.batch_rows, |batch| {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(Interrupted::Cancelled);
            }
            let batch = normalize_batch(&batch, &unit.columns, &schema)
                .map_err(|source| Interrupted::from(ExportError::Batch { table: table.clone(), partition, source: Box::new(source) }))?;
            let bytes = files.write(&batch).map_err(written)? as u64;
            let rows = batch.num_rows() as u64;
            counter.rows.fetch_add(rows, Ordering::Relaxed);
            counter.bytes.fetch_add(bytes, Ordering::Relaxed);
            *counted = (counted.0 + rows, counted.1 + bytes);
            debug!(table = %table, partition, rows, "Wrote batch");
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

/// The table's manifest from the files of all its partitions, their aggregates merged per
/// column (its rows are not checked here).
fn table_manifest(table: &TablePlan, mut written: Vec<WrittenFile>) -> TableManifest {
    written.sort_by(|a, b| a.manifest.path.cmp(&b.manifest.path));
    let totals = merged_accumulators(&table.columns, &written);
    let day_counts = day_records(&table.columns, &totals);
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
    let mut manifest = TableManifest {
        name: table.name.clone(),
        table: table.table.clone(),
        bq_table: table.bq_table.clone(),
        source_query: table.source_query.clone(),
        primary_key: table.primary_key.clone(),
        foreign_keys: table.foreign_keys.clone(),
        columns,
        partitions: table.partitions.clone(),
        files,
        row_count,
        tail: table.tail.clone(),
        rejected: None,
        row_hashes: None,
        deleted_keys: None,
        row_fingerprint: None,
        day_counts,
    };
    // Files recorded by an older pg2bq (a resumed run) have none: then the table has none.
    let covered = table.columns.iter().filter(|c| covers(c)).map(|c| c.bq_name.clone()).collect();
    manifest.row_fingerprint = manifest.merged_row_fingerprint(|_| true).map(|total| TableRowFingerprint { columns: covered, total });
    manifest
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};

    use super::*;
    use crate::model::manifest::SourceInfo;
    use crate::model::partition::{BlockSpan, KeyColumn, Relation};
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
            table: Some(TableRef::new("public", "t")),
            bq_table: "t".into(),
            source_query: r#"SELECT "id" AS "id" FROM "public"."t""#.into(),
            from: r#""public"."t""#.into(),
            columns: vec![map_column(&PgColumn::base("id", "int8", -1), None, OutOfRange::Refuse).unwrap()],
            primary_key: vec!["id".into()],
            foreign_keys: Vec::new(),
            partitions,
            row_count: rows.iter().sum(),
            tail: None,
            deleted_keys: Vec::new(),
            quarantine: None,
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
            row_fingerprint: None,
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

    #[test]
    fn a_child_unit_reads_only_its_relation() {
        let table = table(&[3]);
        let relation = Relation { schema: "public".into(), name: "t_2024".into() };
        let span = BlockSpan { from: Some(8), to: None };
        let partition = PartitionManifest::new(0, PartitionBounds::Child { relation: relation.clone(), blocks: Some(span) });
        let unit = ExportUnit::new(&table, &partition, &RunId::parse("r1").unwrap());
        assert_eq!(unit.query, r#"SELECT "id" AS "id" FROM ONLY "public"."t_2024" WHERE ctid >= '(8,0)'::tid"#);
        let chunk = PartitionManifest::new(1, PartitionBounds::ChunkRange { relation, predicate: "(id < 5)".into() });
        let unit = ExportUnit::new(&table, &chunk, &RunId::parse("r1").unwrap());
        assert_eq!(unit.query, r#"SELECT "id" AS "id" FROM "public"."t" WHERE (id < 5)"#);
    }

    /// A resumed table keeps its recorded unit (rows as its snapshot counted them, files and
    /// aggregates as recorded) and queues only the other.
    #[test]
    fn a_resumed_table_keeps_recorded_units_and_queues_the_rest() {
        let table = table(&[2, 1]);
        let run_id = RunId::parse("r1").unwrap();
        let kept = file(&table, 0, vec![1, 2, 5]);
        let unit = ExportUnit::new(&table, &table.partitions[0], &run_id);
        let record = UnitRecord {
            day_counts: None,
            table: unit.table.clone(),
            partition: 0,
            units_in_table: 2,
            query: unit.query.clone(),
            columns: unit.columns.clone(),
            rows: 3,
            files: vec![kept.manifest.clone()],
            snapshot: UnitSnapshot {
                table: unit.table,
                partition: 0,
                snapshot_id: "old".into(),
                txid_snapshot: "1:1:".into(),
                wal_lsn: None,
            },
            attempts: 1,
            seconds: 0.5,
        };
        let now = UnitSnapshot {
            table: String::new(),
            partition: 0,
            snapshot_id: "new".into(),
            txid_snapshot: "1:1:".into(),
            wal_lsn: Some("0/1".into()),
        };
        let resumed = resume_table(&table, vec![record], &run_id, &now, true).unwrap();
        assert_eq!(resumed.assembly.plan.row_count, 4, "3 recorded rows and the 1 planned now");
        assert_eq!(resumed.assembly.pending, 1);
        assert_eq!(resumed.queued.iter().map(|(u, n)| (u.partition, *n)).collect::<Vec<_>>(), [(1, 2)]);
        assert_eq!(resumed.snapshots.iter().map(|s| (s.partition, s.snapshot_id.as_str())).collect::<Vec<_>>(), [(0, "old"), (1, "new")]);
        assert_eq!(resumed.assembly.files[0].accumulators[0].finish().sum.as_deref(), Some("8"));
        assert!(resumed.reports[0].resumed);
        assert_eq!(resumed.counter.rows.load(Ordering::Relaxed), 3);
    }

    /// Run `r1`'s plan of `tables`, read in a snapshot described by `source`.
    fn plan_of(source: SourceInfo, tables: Vec<TablePlan>) -> ExportPlan {
        ExportPlan { run_id: "r1".into(), destination: String::new(), source, tables, problems: Vec::new() }
    }

    /// The record of `unit`, partition `partition` of `units_in_table`, having read `rows` rows.
    fn record_of(unit: &ExportUnit, partition: usize, units_in_table: usize, rows: u64) -> UnitRecord {
        let snapshot =
            UnitSnapshot { table: unit.table.clone(), partition, snapshot_id: "s".into(), txid_snapshot: String::new(), wal_lsn: None };
        UnitRecord {
            day_counts: None,
            table: unit.table.clone(),
            partition,
            units_in_table,
            query: unit.query.clone(),
            columns: unit.columns.clone(),
            rows,
            files: Vec::new(),
            snapshot,
            attempts: 1,
            seconds: 0.0,
        }
    }

    /// A record is kept only where the new plan cuts its table the same way.
    #[test]
    fn a_record_of_a_unit_cut_otherwise_is_refused() {
        let run_id = RunId::parse("r1").unwrap();
        let planned = table(&[2, 1]);
        let plan = plan_of(SourceInfo::default(), vec![planned.clone()]);
        let unit = ExportUnit::new(&planned, &planned.partitions[1], &run_id);
        let record = record_of(&unit, 1, 2, 1);
        assert!(check_record(&plan, &run_id, &record).is_ok());
        let moved = UnitRecord { query: format!("{} WHERE \"id\" >= 20", planned.source_query), ..record.clone() };
        let error = check_record(&plan, &run_id, &moved).unwrap_err().to_string();
        assert!(error.contains("unit 1: recorded with the query") && error.contains("rerun without --resume"), "{error}");
        let recut = UnitRecord { units_in_table: 3, ..record.clone() };
        assert!(check_record(&plan, &run_id, &recut)
            .unwrap_err()
            .to_string()
            .contains("one of 3 units, but the new plan cuts the table into 2"));
        let other = UnitRecord { table: "public.gone".into(), ..record };
        assert!(check_record(&plan, &run_id, &other).unwrap_err().to_string().contains("does not export the table"));
    }

    /// Unit records (and a sharded run's plan) are read from JSON, which does not keep a
    /// column's plan-time check: the unit is still the one planned.
    #[test]
    fn a_record_read_back_from_json_matches_a_plan_with_value_checks() {
        let run_id = RunId::parse("r1").unwrap();
        let mut planned = table(&[3]);
        let check = crate::model::types::ValueCheck { predicate: "\"id\" < 0".into(), problem: "negative".into(), range_adjustable: false };
        planned.columns[0] = planned.columns[0].clone().with_check(check);
        let plan = plan_of(SourceInfo::default(), vec![planned.clone()]);
        let unit = ExportUnit::new(&planned, &planned.partitions[0], &run_id);
        let record = record_of(&unit, 0, 1, 3);
        let read_back: UnitRecord = serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
        assert!(read_back.columns[0].check.is_none());
        assert!(check_record(&plan, &run_id, &read_back).is_ok());
        let retyped = UnitRecord { columns: vec![ColumnMapping { pg_type: "int4".into(), ..read_back.columns[0].clone() }], ..read_back };
        assert!(check_record(&plan, &run_id, &retyped).unwrap_err().to_string().contains("columns' types differ"));
    }

    /// Rows per day reach the table's manifest alike from files written now and from a unit
    /// recorded earlier (a resumed or a worker's unit), and an older record's absence of them
    /// makes the table's days unknown rather than short.
    #[test]
    fn day_counts_merge_from_written_files_and_recorded_units() {
        use arrow::array::Date32Array;
        let mut table = table(&[2, 1]);
        table.columns.push(map_column(&PgColumn::base("on", "date", -1), None, OutOfRange::Refuse).unwrap());
        let written = |partition: usize, days: Vec<i32>| {
            let mut file = file(&TablePlan { columns: table.columns[..1].to_vec(), ..table.clone() }, partition, vec![0; days.len()]);
            let mut on = ColumnAccumulator::for_column(&table.columns[1]);
            on.update(&(Arc::new(Date32Array::from(days)) as ArrayRef));
            file.manifest.aggregates.push(on.finish());
            file.accumulators.push(on);
            file
        };
        let direct = table_manifest(&table, vec![written(0, vec![19_000, 19_000]), written(1, vec![19_001])]);
        let expected = vec![DayCounts { column: "on".into(), days: Some([("2022-01-08".into(), 2), ("2022-01-09".into(), 1)].into()) }];
        assert_eq!(direct.day_counts, expected);
        let unit = written(0, vec![19_000, 19_000]);
        let mut record = record_of(&ExportUnit::new(&table, &table.partitions[0], &RunId::parse("r1").unwrap()), 0, 2, 2);
        record.files = vec![unit.manifest.clone()];
        record.day_counts = Some(day_counts(&table.columns, std::slice::from_ref(&unit)));
        let resumed = |record: &UnitRecord| {
            let mut files = recorded_files(&table.columns, record).unwrap();
            files.push(written(1, vec![19_001]));
            table_manifest(&table, files).day_counts
        };
        assert_eq!(resumed(&record), expected);
        record.day_counts = None;
        assert_eq!(resumed(&record), vec![DayCounts { column: "on".into(), days: None }]);
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

    /// `plan.json` read back gives every worker the same share, and the shares cover every
    /// unit once.
    #[test]
    fn a_shard_plan_read_back_splits_the_same_units_among_its_workers() {
        let source = SourceInfo {
            url: String::new(),
            server_version: String::new(),
            txid_snapshot: "1:1:".into(),
            wal_lsn: None,
            changes_since: None,
        };
        let tables = vec![table(&[10, 0, 5]), TablePlan { name: "public.u".into(), ..table(&[7, 7]) }];
        let plan = sharded::ShardPlan {
            format_version: sharded::PLAN_FORMAT_VERSION,
            run_id: RunId::parse("r1").unwrap(),
            snapshot_id: "00000003-0000000A-1".into(),
            workers: 2,
            jobs: 1,
            batch_rows: 100,
            parquet: ParquetSettings::default(),
            coordinator: "pid 1 on h".into(),
            created_at: String::new(),
            deadline_at: String::new(),
            plan: plan_of(source, tables),
        };
        let read: sharded::ShardPlan = serde_json::from_slice(&serde_json::to_vec(&plan).unwrap()).unwrap();
        let units =
            |p: &sharded::ShardPlan, worker| p.share(worker).into_iter().map(|(u, n)| (u.table, u.partition, n)).collect::<Vec<_>>();
        assert_eq!((units(&read, 0), units(&read, 1)), (units(&plan, 0), units(&plan, 1)));
        let mut all: Vec<_> = units(&read, 0).into_iter().chain(units(&read, 1)).collect();
        all.sort();
        let t = |table: &str, partition, n| (table.to_string(), partition, n);
        assert_eq!(all, [t("public.t", 0, 3), t("public.t", 1, 3), t("public.t", 2, 3), t("public.u", 0, 2), t("public.u", 1, 2)]);
        assert_eq!(read.unit_snapshot().snapshot_id, "00000003-0000000A-1");
        assert!(serde_json::from_str::<sharded::ShardPlan>(&serde_json::to_string(&plan).unwrap().replace("\"r1\"", "\"../x\"")).is_err());
    }

    /// Workers on other machines get the plan as a file: a table's plan (its units, their
    /// queries and counts) survives JSON unchanged, and so does every unit built from it.
    #[test]
    fn a_plan_travels_as_json_and_builds_the_same_units() {
        let planned = table(&[10, 0, 5]);
        let travelled: TablePlan = serde_json::from_str(&serde_json::to_string(&planned).unwrap()).unwrap();
        let run_id = RunId::parse("r1").unwrap();
        let units = |t: &TablePlan| {
            t.partitions.iter().map(|p| ExportUnit::new(t, p, &run_id)).map(|u| (u.query, u.expected_rows)).collect::<Vec<_>>()
        };
        assert_eq!(units(&travelled), units(&planned));
        assert_eq!(serde_json::to_value(&travelled).unwrap(), serde_json::to_value(&planned).unwrap());
    }
}
