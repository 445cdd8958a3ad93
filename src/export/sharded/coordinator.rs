//! `export --coordinate`: the run's snapshot stays open in this process while workers on other
//! machines export its units. Once every unit is recorded, the records merge into the
//! manifest through the path a resumed run takes ([`RunAttempt::commit`]), so the manifest is
//! the one a single-process export writes; only then does the snapshot's transaction end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{ShardPlan, PLAN_FORMAT_VERSION};
use crate::export::config::Coordination;
use crate::export::{check_record, jobs_within_budget, ExportError, RunAttempt};
use crate::model::manifest::Manifest;
use crate::model::progress::{ProgressReporter, UnitReport};
use crate::model::unit_record::UnitRecord;
use crate::source::postgres::SnapshotSession;
use crate::storage::units::read_new_unit_records;

/// How often the coordinator looks for new unit records and checks its connection.
const POLL: Duration = Duration::from_secs(2);
/// How long the coordinator stays silent when no worker records a unit.
const QUIET: Duration = Duration::from_secs(60);

/// Refuses `workers` × `jobs` unit connections plus the coordinator's when the source cannot
/// hold them, before anything is written.
///
/// # Errors
/// [`ExportError::ConnectionBudget`] with the numbers and the way out.
pub async fn check_connection_budget(session: &SnapshotSession, workers: usize, jobs: usize) -> Result<(), ExportError> {
    let budget = session.connection_budget().await?;
    budget.check(workers, jobs_within_budget(jobs)).map_err(ExportError::ConnectionBudget)
}

/// Writes the plan, waits until the workers recorded every unit, and commits the manifest.
pub(in crate::export) async fn coordinate(
    attempt: &RunAttempt<'_>,
    coordination: &Coordination,
    progress: Option<&ProgressReporter>,
) -> Result<(Manifest, Vec<UnitReport>), ExportError> {
    let plan = shard_plan(attempt, coordination);
    let uri = plan.write(attempt.store).await?;
    announce(&plan, &uri);
    let records = wait_for_units(attempt, &plan, coordination.deadline).await?;
    info!(run_id = %plan.run_id, units = records.len(), "Every unit is recorded: merging the records into the manifest");
    attempt.commit(records, progress).await
}

fn shard_plan(attempt: &RunAttempt<'_>, coordination: &Coordination) -> ShardPlan {
    let now = chrono::Utc::now();
    let deadline = chrono::TimeDelta::from_std(coordination.deadline).ok().and_then(|d| now.checked_add_signed(d));
    let (config, claim) = (attempt.config, attempt.claim.record());
    ShardPlan {
        format_version: PLAN_FORMAT_VERSION,
        run_id: attempt.claim.run_id().clone(),
        snapshot_id: attempt.session.snapshot_id.clone(),
        workers: coordination.workers,
        jobs: jobs_within_budget(config.jobs),
        batch_rows: config.batch_rows,
        parquet: config.parquet,
        coordinator: format!("pid {} on {}", claim.pid, claim.host),
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        deadline_at: deadline.map_or_else(|| "never".into(), |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        plan: attempt.plan.clone(),
    }
}

fn announce(plan: &ShardPlan, uri: &str) {
    let workers = plan.workers;
    info!(plan = %uri, workers, jobs = plan.jobs, units = plan.units().len(), snapshot = %plan.snapshot_id, deadline = %plan.deadline_at, "Wrote the run's plan: start the workers");
    info!(
        "Worker command: pg2bq work --plan {uri} --workers {workers} --worker-index <0..{}> with the source URL in PG2BQ_SOURCE, \
         or one Cloud Run Jobs / Kubernetes Indexed Job of {workers} tasks running `pg2bq work --plan {uri}` (docs/distributed.md)",
        workers - 1
    );
    warn!(
        "This coordinator holds the run's snapshot open until every unit is in: run it where a connection can stay open for hours \
         (a VM or a Kubernetes pod, not a Cloud Run task), and keep it running"
    );
}

/// Polls the run's unit records until every unit of the plan is recorded, reporting each
/// worker's progress as it changes. Fails at the deadline, when the snapshot's connection
/// breaks, when the run's claim is taken over, or when a record is not this run's.
async fn wait_for_units(attempt: &RunAttempt<'_>, plan: &ShardPlan, deadline: Duration) -> Result<Vec<UnitRecord>, ExportError> {
    let owners = plan.owners();
    let give_up = Instant::now().checked_add(deadline);
    let (mut known, mut shown, mut said) = (BTreeMap::new(), Vec::new(), Instant::now());
    loop {
        // Each record is checked once, as it comes in.
        for path in read_new_unit_records(attempt.store, &plan.run_id, &mut known).await? {
            check_worker_record(attempt, plan, &known[&path])?;
        }
        let progress = worker_progress(plan.workers, &owners, known.values());
        if report_changes(&progress, &mut shown) {
            said = Instant::now();
        }
        if known.len() == owners.len() {
            return Ok(known.into_values().collect());
        }
        if give_up.is_some_and(|at| Instant::now() >= at) {
            return Err(ExportError::Deadline {
                run_id: plan.run_id.to_string(),
                deadline: humantime::format_duration(deadline).to_string(),
                recorded: known.len(),
                units: owners.len(),
                waiting: owing(&progress),
            });
        }
        if said.elapsed() >= QUIET {
            info!(recorded = known.len(), units = owners.len(), owing = %owing(&progress), "Waiting for workers");
            said = Instant::now();
        }
        attempt
            .session
            .ping()
            .await
            .map_err(|source| ExportError::SnapshotConnection { run_id: plan.run_id.to_string(), source: Box::new(source) })?;
        attempt.claim.ensure_held().await?;
        tokio::time::sleep(POLL).await;
    }
}

/// A worker's record must be a unit of this plan, read in this run's snapshot.
fn check_worker_record(attempt: &RunAttempt<'_>, plan: &ShardPlan, record: &UnitRecord) -> Result<(), ExportError> {
    check_record(attempt.plan, &plan.run_id, record).map_err(|error| match error {
        ExportError::ResumeMismatch { run_id, table, partition, difference } => {
            ExportError::WorkerMismatch { run_id, table, partition, difference }
        }
        other => other,
    })?;
    if record.snapshot.snapshot_id != plan.snapshot_id {
        return Err(ExportError::ForeignSnapshot {
            run_id: plan.run_id.to_string(),
            table: record.table.clone(),
            partition: record.partition,
            found: record.snapshot.snapshot_id.clone(),
            expected: plan.snapshot_id.clone(),
        });
    }
    Ok(())
}

/// One worker's part of the run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct WorkerProgress {
    units: usize,
    recorded: usize,
    rows: u64,
    bytes: u64,
}

/// Each of `workers`' units, and those of them recorded with their rows and bytes.
fn worker_progress<'a>(
    workers: usize,
    owners: &BTreeMap<(String, usize), usize>,
    records: impl Iterator<Item = &'a UnitRecord>,
) -> Vec<WorkerProgress> {
    let mut progress = vec![WorkerProgress::default(); workers];
    for &worker in owners.values() {
        progress[worker].units += 1;
    }
    for record in records {
        if let Some(&worker) = owners.get(&(record.table.clone(), record.partition)) {
            let figures = &mut progress[worker];
            figures.recorded += 1;
            figures.rows += record.rows;
            figures.bytes += record.files.iter().map(|f| f.bytes).sum::<u64>();
        }
    }
    progress
}

/// Logs each worker whose figures changed since `shown`; returns whether one did.
fn report_changes(progress: &[WorkerProgress], shown: &mut Vec<WorkerProgress>) -> bool {
    let mut changed = false;
    for (worker, now) in progress.iter().enumerate() {
        if shown.get(worker) != Some(now) {
            info!(worker, units = %format!("{}/{}", now.recorded, now.units), rows = now.rows, bytes = now.bytes, "Worker progress");
            changed = true;
        }
    }
    *shown = progress.to_vec();
    changed
}

/// The workers with units not yet recorded: `0, 3`.
fn owing(progress: &[WorkerProgress]) -> String {
    let workers: Vec<String> = progress.iter().enumerate().filter(|(_, p)| p.recorded < p.units).map(|(w, _)| w.to_string()).collect();
    workers.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::{FileManifest, UnitSnapshot};

    fn record(partition: usize, rows: u64, bytes: u64) -> UnitRecord {
        let file = FileManifest {
            path: format!("t/part-p{partition:04}-s00000.parquet"),
            uri: String::new(),
            partition,
            rows,
            bytes,
            crc32c: String::new(),
            aggregates: Vec::new(),
            row_fingerprint: None,
        };
        UnitRecord {
            day_counts: None,
            table: "t".into(),
            partition,
            units_in_table: 3,
            query: String::new(),
            columns: Vec::new(),
            rows,
            files: vec![file],
            snapshot: UnitSnapshot { table: "t".into(), partition, snapshot_id: "s".into(), txid_snapshot: String::new(), wal_lsn: None },
            attempts: 1,
            seconds: 0.0,
        }
    }

    #[test]
    fn progress_counts_each_workers_units_and_names_those_still_owing() {
        let owners: BTreeMap<(String, usize), usize> = [(0, 0), (1, 1), (2, 1)].map(|(p, w)| (("t".to_string(), p), w)).into();
        let records = [record(0, 10, 100), record(2, 5, 50)];
        let progress = worker_progress(3, &owners, records.iter());
        let expected = [
            WorkerProgress { units: 1, recorded: 1, rows: 10, bytes: 100 },
            WorkerProgress { units: 2, recorded: 1, rows: 5, bytes: 50 },
            WorkerProgress::default(),
        ];
        assert_eq!(progress, expected);
        assert_eq!(owing(&progress), "1", "worker 2 has no units, worker 0 recorded its one");
        let mut shown = Vec::new();
        assert!(report_changes(&progress, &mut shown));
        assert!(!report_changes(&progress, &mut shown), "nothing changed since");
    }
}
