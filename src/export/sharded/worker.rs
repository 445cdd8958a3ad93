//! `pg2bq work`: one worker of a sharded run. It reads the coordinator's plan, joins its
//! snapshot (refusing at once, before anything is written, when the coordinator has ended),
//! and exports its deterministic share of the units with the single-process engine's
//! scheduler, recording each unit create-only. A retried task skips the units recorded
//! already and removes only the files of its own unrecorded units.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::{info, warn};

use super::{PlannedUnit, ShardPlan};
use crate::export::config::WorkConfig;
use crate::export::schedule::{queue_order, QueuedUnit, Scheduler, TableAssembly, UnitOwner};
use crate::export::{jobs_within_budget, ExportError, UnitExporter};
use crate::model::progress::{TableProgress, UnitReport};
use crate::source::postgres::{snapshot_setup, unit_url, SnapshotSession};
use crate::source::SourceError;
use crate::storage::run::WorkerLease;
use crate::storage::store::Store;
use crate::storage::units::read_unit_records;

/// What a worker did.
#[derive(Debug, Serialize)]
pub struct WorkOutcome {
    pub run_id: String,
    pub worker: usize,
    pub workers: usize,
    pub attempt: u32,
    /// Units in this worker's share.
    pub share: usize,
    /// Units of the share an earlier attempt of this task had recorded (skipped now).
    pub recorded_before: usize,
    /// Files an earlier attempt left for units it had not recorded, removed before starting.
    pub removed_files: usize,
    /// The units exported now.
    pub units: Vec<UnitReport>,
}

/// Runs this worker's share of the plan at `config.plan_uri`.
///
/// # Errors
/// [`ExportError`]: the snapshot is gone ("restart the run"), the plan is unreadable or for
/// another worker count, the run was committed or given up, or a unit failed.
pub async fn work(config: &WorkConfig) -> Result<WorkOutcome, ExportError> {
    crate::export::memory::map_large_buffers();
    let (plan, store) = ShardPlan::read(&config.plan_uri, &config.gcs).await?;
    let identity = config.identity;
    if identity.count != plan.workers {
        let (planned, index, count) = (plan.workers, identity.index, identity.count);
        return Err(ExportError::WorkerCount { uri: config.plan_uri.clone(), planned, index, count });
    }
    // Joined first, so a run whose coordinator has ended is refused before anything is written.
    drop(SnapshotSession::import(&config.source_url, &plan.snapshot_id).await?);
    let share = plan.share(identity.index);
    let units = share.iter().map(|(u, _)| (u.directory.clone(), u.partition)).collect();
    let lease = WorkerLease::new(&store, &plan.run_id, &plan.snapshot_id, units);
    lease.ensure_open().await?;
    let recorded: BTreeSet<(String, usize)> =
        read_unit_records(&store, &plan.run_id).await?.into_iter().map(|r| (r.table, r.partition)).collect();
    let (share_len, (done, pending)) =
        (share.len(), share.into_iter().partition::<Vec<_>, _>(|(u, _)| recorded.contains(&(u.table.clone(), u.partition))));
    let leftovers: Vec<(String, usize)> = pending.iter().map(|(u, _)| (u.directory.clone(), u.partition)).collect();
    let removed_files = lease.delete_unit_files(&leftovers).await?;
    if removed_files > 0 {
        warn!(
            worker = identity.index,
            attempt = identity.attempt,
            files = removed_files,
            "Removed files an earlier attempt left for units it had not recorded"
        );
    }
    info!(run_id = %plan.run_id, worker = identity.index, workers = plan.workers, attempt = identity.attempt, units = pending.len(), recorded_before = done.len(), "Running this worker's share");
    let units = match run_share(config, &plan, &store, &lease, pending).await {
        Ok(units) => units,
        Err(error) => return Err(snapshot_gone_or(config, &plan, error).await),
    };
    Ok(WorkOutcome {
        run_id: plan.run_id.to_string(),
        worker: identity.index,
        workers: plan.workers,
        attempt: identity.attempt,
        share: share_len,
        recorded_before: done.len(),
        removed_files,
        units,
    })
}

/// Exports `pending` with the engine's scheduler: `plan.jobs` at once, each unit retried on
/// transient failures and recorded create-only. Returns a report line per unit.
async fn run_share(
    config: &WorkConfig,
    plan: &ShardPlan,
    store: &Store,
    lease: &WorkerLease,
    pending: Vec<PlannedUnit>,
) -> Result<Vec<UnitReport>, ExportError> {
    let exporter = Arc::new(UnitExporter {
        source_url: config.source_url.clone(),
        unit_url: unit_url(&config.source_url, &plan.snapshot_id, config.lock_wait),
        setup: snapshot_setup(&plan.snapshot_id),
        lock_wait: config.lock_wait,
        store: store.clone(),
        runtime: tokio::runtime::Handle::current(),
        parquet: plan.parquet,
        batch_rows: plan.batch_rows,
        workers: jobs_within_budget(plan.jobs),
        cancelled: AtomicBool::new(false),
    });
    let (mut assemblies, mut queues) = (Vec::new(), Vec::new());
    for table in &plan.plan.tables {
        let units: Vec<PlannedUnit> = pending.iter().filter(|(u, _)| u.table == table.name).cloned().collect();
        if units.is_empty() {
            continue;
        }
        // The table as far as this worker's share goes: its rows are checked against those units'.
        let mut share = table.clone();
        share.partitions.retain(|p| units.iter().any(|(u, _)| u.partition == p.index));
        share.row_count = share.partitions.iter().map(|p| p.rows).sum();
        let counter =
            Arc::new(TableProgress { planned_rows: share.row_count, planned_units: units.len() as u64, ..TableProgress::default() });
        let pending = units.len();
        let queued = units.into_iter().map(|(unit, units_in_table)| QueuedUnit { unit, units_in_table, counter: counter.clone() });
        queues.push((share.row_count, queued.collect()));
        assemblies.push(TableAssembly { plan: share, files: Vec::new(), pending, share: true });
    }
    let scheduler = Scheduler {
        exporter,
        owner: UnitOwner::Worker(lease),
        run_id: &plan.run_id,
        snapshot: plan.unit_snapshot(),
        queue: Mutex::new(queue_order(queues)),
    };
    Ok(scheduler.run(&mut assemblies).await?.1)
}

/// A unit that failed because the coordinator ended meanwhile is reported as that: the
/// snapshot is gone and the run must restart.
async fn snapshot_gone_or(config: &WorkConfig, plan: &ShardPlan, error: ExportError) -> ExportError {
    match SnapshotSession::import(&config.source_url, &plan.snapshot_id).await {
        Err(gone @ SourceError::SnapshotGone { .. }) => gone.into(),
        _ => error,
    }
}
