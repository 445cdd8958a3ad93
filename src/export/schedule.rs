//! One scheduler for a run: `jobs` workers pull units from one queue across all tables, retry
//! a unit that failed transiently, record each finished unit under the run, and merge a
//! table's manifest when its last unit is in.
//!
//! Queue order, fair by rows: the next unit is the largest one left of the table with the
//! fewest rows queued so far (ties: the larger table first). A small table's units so all come
//! before a big table's second unit, so it never waits for the big one, and tables of like
//! size alternate.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{table_manifest, ExportError, ExportUnit, TablePlan, UnitExporter};
use crate::export::parquet::{ParquetSinkError, WrittenFile};
use crate::gcp::retry::{Backoff, RetryPolicy};
use crate::model::error_kind::ErrorKind;
use crate::model::manifest::{TableManifest, UnitSnapshot};
use crate::model::progress::{ProgressCounter, UnitReport};
use crate::model::run_id::RunId;
use crate::model::unit_record::UnitRecord;
use crate::source::postgres::{noting_lock_waits, queued_behind_run, LOCK_NOTE_AFTER};
use crate::source::SourceError;
use crate::storage::run::{ClaimError, RunClaim, WorkerLease};
use crate::storage::units::record_unit;

/// Attempts a unit gets when its failures are transient (the first counts).
pub const MAX_UNIT_ATTEMPTS: u32 = 3;
/// Pauses between a unit's attempts.
const UNIT_RETRY: RetryPolicy =
    RetryPolicy { first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(10), total: Duration::from_secs(300) };

/// Whether another attempt of the unit in the same snapshot may succeed: an error of kind
/// [`ErrorKind::Transient`] from ConnectorX (a lost Postgres connection, a terminated backend,
/// a lock another session held briefly: see [`SourceError::kind`]; one queued behind the run's
/// own locks is [`ExportError::LockQueued`] instead) or from the store (GCS failing on its
/// side: 5xx, 429, reset, a lost upload session). Everything else, a refused value, a
/// permission, a type, is permanent.
///
/// A stream that still ends short with no error, cause unknown, is tried again unless its
/// previous attempt ended short after the same number of rows (`previous_short_rows`): a
/// refusal stops where it stopped before, a lost connection does not.
pub fn is_transient(error: &ExportError, previous_short_rows: Option<u64>) -> bool {
    match error {
        ExportError::Source(SourceError::ShortStream { actual, .. }) => previous_short_rows != Some(*actual),
        ExportError::Source(source @ SourceError::ConnectorX { .. }) => source.kind() == ErrorKind::Transient,
        ExportError::Write { source, .. } => {
            matches!(&**source, ParquetSinkError::Store(store) if store.kind() == ErrorKind::Transient)
        }
        _ => false,
    }
}

/// Whether a unit stopped because a lock was not granted within its `lock_timeout`.
fn is_lock_timeout(error: &ExportError) -> bool {
    matches!(error, ExportError::Source(source) if source.is_lock_not_available())
}

/// A unit waiting in the queue, with its table's counters.
pub struct QueuedUnit {
    pub unit: ExportUnit,
    pub units_in_table: usize,
    pub counter: ProgressCounter,
}

/// The queue of a run (see the module's doc for the order). `tables` gives each table's
/// planned rows and its units.
pub fn queue_order(tables: Vec<(u64, Vec<QueuedUnit>)>) -> VecDeque<QueuedUnit> {
    // (rows queued so far, the table's planned rows, its units largest last)
    let mut tables: Vec<(u64, u64, Vec<QueuedUnit>)> = tables
        .into_iter()
        .map(|(rows, mut units)| {
            units.sort_by(|a, b| a.unit.expected_rows.cmp(&b.unit.expected_rows).then(b.unit.partition.cmp(&a.unit.partition)));
            (0, rows, units)
        })
        .collect();
    let mut queue = VecDeque::new();
    while let Some(next) = tables.iter_mut().filter(|(_, _, units)| !units.is_empty()).min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1))) {
        let unit = next.2.pop().expect("the table has units left");
        next.0 += unit.unit.expected_rows;
        queue.push_back(unit);
    }
    queue
}

/// A table being assembled: its plan, the files of its finished units, and how many are left.
pub struct TableAssembly {
    pub plan: TablePlan,
    pub files: Vec<WrittenFile>,
    pub pending: usize,
    /// The units of one worker's share of a sharded run, not the whole table.
    pub share: bool,
}

impl TableAssembly {
    /// The table's manifest once its last unit is in, its rows checked against the counts of
    /// the snapshots its units were read in.
    fn finish(&mut self) -> Result<TableManifest, ExportError> {
        let manifest = table_manifest(&self.plan, std::mem::take(&mut self.files));
        if manifest.row_count != self.plan.row_count {
            return Err(ExportError::RowCountMismatch {
                table: self.plan.name.clone(),
                expected: self.plan.row_count,
                actual: manifest.row_count,
            });
        }
        let what = if self.share { "Exported this worker's units of the table" } else { "Exported table" };
        info!(table = %manifest.name, rows = manifest.row_count, files = manifest.files.len(), "{what}");
        Ok(manifest)
    }
}

/// A unit done: its files and its report line.
struct FinishedUnit {
    table: String,
    files: Vec<WrittenFile>,
    report: UnitReport,
}

/// Who removes a unit's files before it is tried again, and may still record it: the run's
/// claim (a run on one machine), or a worker's lease on its share (a sharded run).
pub enum UnitOwner<'a> {
    Run(&'a RunClaim),
    Worker(&'a WorkerLease),
}

impl UnitOwner<'_> {
    async fn delete_unit_files(&self, directory: &str, partition: usize) -> Result<usize, ClaimError> {
        match self {
            Self::Run(claim) => claim.delete_unit_files(directory, partition).await,
            Self::Worker(lease) => lease.delete_unit_files(&[(directory.to_string(), partition)]).await,
        }
    }

    /// A worker records nothing once the run is committed or its coordinator gave it up.
    async fn before_record(&self) -> Result<(), ClaimError> {
        match self {
            Self::Run(_) => Ok(()),
            Self::Worker(lease) => lease.ensure_open().await,
        }
    }
}

/// What the workers of a run share.
pub struct Scheduler<'a> {
    pub exporter: Arc<UnitExporter>,
    pub owner: UnitOwner<'a>,
    pub run_id: &'a RunId,
    /// The snapshot this attempt reads in (`table` and `partition` are filled per unit).
    pub snapshot: UnitSnapshot,
    pub queue: Mutex<VecDeque<QueuedUnit>>,
}

impl Scheduler<'_> {
    /// Runs the exporter's workers until the queue is empty or a unit failed, merging every table of
    /// `tables` as its last unit comes in. Returns the tables' manifests (in `tables` order)
    /// and a report line per unit exported now.
    ///
    /// # Errors
    /// The first unit's or table's failure; the other workers stop at their next batch.
    pub async fn run(&self, tables: &mut [TableAssembly]) -> Result<(Vec<TableManifest>, Vec<UnitReport>), ExportError> {
        let (sender, mut finished) = mpsc::unbounded_channel();
        let workers = futures::future::join_all((0..self.exporter.workers).map(|_| self.work(sender.clone())));
        drop(sender);
        let mut manifests: Vec<Option<TableManifest>> = tables.iter().map(|_| None).collect();
        for (table, slot) in tables.iter_mut().zip(&mut manifests) {
            if table.pending == 0 {
                *slot = Some(table.finish()?);
            }
        }
        let mut reports = Vec::new();
        let mut first_error = None;
        let collect = async {
            while let Some(result) = finished.recv().await {
                let merged = result.and_then(|unit: FinishedUnit| {
                    let position = tables.iter().position(|t| t.plan.name == unit.table).expect("a unit belongs to a planned table");
                    let table = &mut tables[position];
                    table.files.extend(unit.files);
                    table.pending -= 1;
                    reports.push(unit.report);
                    if table.pending == 0 {
                        manifests[position] = Some(table.finish()?);
                    }
                    Ok(())
                });
                if let Err(error) = merged {
                    self.exporter.cancelled.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(error);
                }
            }
        };
        // A unit's statement waits for a lock at most --lock-wait; a long one is reported.
        let (url, snapshot_id) = (&self.exporter.source_url, &self.snapshot.snapshot_id);
        if self.exporter.lock_wait >= LOCK_NOTE_AFTER {
            noting_lock_waits(url, snapshot_id, futures::future::join(workers, collect)).await;
        } else {
            futures::future::join(workers, collect).await;
        }
        match first_error {
            Some(error) if tables.len() > 1 => {
                let (done, not_done): (Vec<_>, Vec<_>) = tables.iter().zip(&manifests).partition(|(_, m)| m.is_some());
                let names = |tables: Vec<(&TableAssembly, _)>| tables.into_iter().map(|(t, _)| t.plan.name.clone()).collect();
                Err(ExportError::TablesUnfinished { finished: names(done), unfinished: names(not_done), source: Box::new(error) })
            }
            Some(error) => Err(error),
            None => Ok((manifests.into_iter().map(|m| m.expect("every table finished")).collect(), reports)),
        }
    }

    /// One worker: takes units until the queue is empty or the run is cancelled.
    async fn work(&self, finished: mpsc::UnboundedSender<Result<FinishedUnit, ExportError>>) {
        loop {
            if self.exporter.cancelled.load(Ordering::Relaxed) {
                return;
            }
            let Some(queued) = self.queue.lock().expect("queue lock").pop_front() else { return };
            let Some(result) = self.export_unit(queued).await else { return };
            if finished.send(result).is_err() {
                return;
            }
        }
    }

    /// Exports one unit, retrying transient failures after removing its partial files, and
    /// records it. `None` when the run was cancelled meanwhile.
    async fn export_unit(&self, queued: QueuedUnit) -> Option<Result<FinishedUnit, ExportError>> {
        let started = Instant::now();
        let mut backoff = Backoff::new(UNIT_RETRY);
        let mut short_rows = None;
        loop {
            let attempt = backoff.attempts();
            let (exporter, unit, counter) = (self.exporter.clone(), queued.unit.clone(), queued.counter.clone());
            queued.counter.running_units.fetch_add(1, Ordering::Relaxed);
            debug!(table = %unit.table, unit = unit.partition, attempt, "Started unit");
            let outcome = tokio::task::spawn_blocking(move || exporter.export_unit(&unit, &counter)).await;
            queued.counter.running_units.fetch_sub(1, Ordering::Relaxed);
            let error = match outcome {
                Ok(Ok(Some(files))) => return Some(self.record(&queued, files, attempt, started).await),
                Ok(Ok(None)) => return None,
                Ok(Err(error)) => error,
                Err(source) => ExportError::Worker { table: queued.unit.table.clone(), partition: queued.unit.partition, source },
            };
            let error = if is_lock_timeout(&error) { self.lock_queued(&queued.unit, error).await } else { error };
            if !is_transient(&error, short_rows) || attempt >= MAX_UNIT_ATTEMPTS || self.exporter.cancelled.load(Ordering::Relaxed) {
                return Some(Err(after_attempts(&queued.unit, attempt, error)));
            }
            if let ExportError::Source(SourceError::ShortStream { actual, .. }) = &error {
                short_rows = Some(*actual);
            }
            let unit = &queued.unit;
            warn!(table = %unit.table, unit = unit.partition, attempt, error = %crate::model::error_chain(&error).join(": "), "Unit failed, maybe transiently; retrying it in the same snapshot");
            if let Err(cleanup) = self.owner.delete_unit_files(&unit.directory, unit.partition).await {
                return Some(Err(cleanup.into()));
            }
            queued.counter.retries.fetch_add(1, Ordering::Relaxed);
            if !backoff.wait().await {
                return Some(Err(after_attempts(&queued.unit, attempt, error)));
            }
        }
    }

    /// A unit that could not lock its rows within `--lock-wait`: [`ExportError::LockQueued`]
    /// naming the statements queued behind the run's own locks (an `ALTER TABLE` or `VACUUM
    /// FULL` waiting for the snapshot, which no retry can get past). `error` as it is when none
    /// is queued (another session held the lock a moment; the unit is tried again).
    async fn lock_queued(&self, unit: &ExportUnit, error: ExportError) -> ExportError {
        let waiting = match queued_behind_run(&self.exporter.source_url, &self.snapshot.snapshot_id).await {
            Ok(found) if !found.is_empty() => found,
            Ok(_) => return error,
            Err(cause) => {
                warn!(table = %unit.table, unit = unit.partition, error = %cause, "Could not read which statements wait behind the run's locks");
                return error;
            }
        };
        ExportError::LockQueued {
            table: unit.table.clone(),
            partition: unit.partition,
            lock_wait: humantime::format_duration(self.exporter.lock_wait).to_string(),
            waiting,
            source: Box::new(error),
        }
    }

    /// Records a finished unit under the run and reports it.
    async fn record(
        &self,
        queued: &QueuedUnit,
        files: Vec<WrittenFile>,
        attempts: u32,
        started: Instant,
    ) -> Result<FinishedUnit, ExportError> {
        let unit = &queued.unit;
        let seconds = started.elapsed().as_secs_f64();
        let record = UnitRecord {
            table: unit.table.clone(),
            partition: unit.partition,
            units_in_table: queued.units_in_table,
            query: unit.query.clone(),
            columns: unit.columns.clone(),
            rows: unit.expected_rows,
            files: files.iter().map(|f| f.manifest.clone()).collect(),
            day_counts: Some(super::day_counts(&unit.columns, &files)),
            snapshot: UnitSnapshot { table: unit.table.clone(), partition: unit.partition, ..self.snapshot.clone() },
            attempts,
            seconds,
        };
        self.owner.before_record().await?;
        record_unit(&self.exporter.store, self.run_id, &record).await?;
        queued.counter.units.fetch_add(1, Ordering::Relaxed);
        let report = unit_report(&record, false);
        info!(
            table = %unit.table,
            unit = unit.partition,
            rows = report.rows,
            bytes = report.bytes,
            seconds = format!("{seconds:.2}"),
            rows_per_s = (report.rows as f64 / seconds.max(1e-9)) as u64,
            attempts,
            "Exported unit"
        );
        Ok(FinishedUnit { table: unit.table.clone(), files, report })
    }
}

/// The error a unit stopped with, saying how many attempts it had when it had more than one.
fn after_attempts(unit: &ExportUnit, attempts: u32, error: ExportError) -> ExportError {
    match attempts {
        1 => error,
        _ => ExportError::Attempts { table: unit.table.clone(), partition: unit.partition, attempts, source: Box::new(error) },
    }
}

/// A recorded unit's report line.
pub fn unit_report(record: &UnitRecord, resumed: bool) -> UnitReport {
    UnitReport {
        table: record.table.clone(),
        unit: record.partition,
        rows: record.rows,
        bytes: record.files.iter().map(|f| f.bytes).sum(),
        seconds: record.seconds,
        attempts: record.attempts,
        snapshot: record.snapshot.snapshot_id.clone(),
        resumed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::batches::BatchError;
    use crate::storage::gcs::GcsError;
    use crate::storage::store::StoreError;

    fn queued(table: &str, partition: usize, rows: u64) -> QueuedUnit {
        let unit = ExportUnit {
            table: table.into(),
            partition,
            query: String::new(),
            expected_rows: rows,
            columns: Vec::new(),
            directory: format!("r/{table}"),
        };
        QueuedUnit { unit, units_in_table: 1, counter: ProgressCounter::default() }
    }

    #[test]
    fn the_queue_is_fair_by_rows_so_small_tables_go_early() {
        let big = (0..4).map(|p| queued("big", p, 100 + p as u64)).collect();
        let small = vec![queued("small", 0, 5), queued("small", 1, 5)];
        let middle = vec![queued("middle", 0, 50), queued("middle", 1, 60)];
        let queue = queue_order(vec![(10, small), (406, big), (110, middle)]);
        let order: Vec<(String, usize)> = queue.iter().map(|q| (q.unit.table.clone(), q.unit.partition)).collect();
        let expected = [("big", 3), ("middle", 1), ("small", 0), ("small", 1), ("middle", 0), ("big", 2), ("big", 1), ("big", 0)]
            .map(|(t, p)| (t.to_string(), p));
        assert_eq!(order, expected);
    }

    fn connectorx(sqlstate: Option<&str>, io: Option<std::io::ErrorKind>, closed: bool) -> ExportError {
        let message = "as ConnectorX tells it".to_string();
        let cause = connectorx::stream_error::StreamError { message, sqlstate: sqlstate.map(str::to_string), io, closed };
        ExportError::Source(SourceError::ConnectorX { table: "public.t".into(), cause })
    }

    #[test]
    fn lost_connections_are_transient_and_refusals_permanent() {
        use std::io::ErrorKind::{ConnectionRefused, ConnectionReset, UnexpectedEof};
        for (sqlstate, io, closed) in [
            (Some("57P01"), None, false), // terminating connection due to administrator command
            (Some("57P03"), None, false), // the database system is shutting down / starting up
            (Some("08006"), None, false), // connection failure
            (None, Some(ConnectionRefused), false),
            (None, Some(ConnectionReset), false),
            (None, Some(UnexpectedEof), false),
            (None, None, true),           // connection closed
            (Some("55P03"), None, false), // canceling statement due to lock timeout
        ] {
            assert!(is_transient(&connectorx(sqlstate, io, closed), None), "{sqlstate:?} {io:?} {closed}");
        }
        for sqlstate in [Some("42501"), Some("22003"), Some("22023"), None] {
            assert!(!is_transient(&connectorx(sqlstate, None, false), None), "{sqlstate:?}");
        }
        assert!(is_lock_timeout(&connectorx(Some("55P03"), None, false)));
        assert!(!is_lock_timeout(&connectorx(Some("57P01"), None, false)));
        let short = ExportError::Source(SourceError::ShortStream { table: "t".into(), partition: 0, expected: 9, actual: 4 });
        assert!(is_transient(&short, None), "the first short stream is tried again");
        assert!(is_transient(&short, Some(7)), "a lost connection ends elsewhere each time");
        assert!(!is_transient(&short, Some(4)), "a refusal ends where it ended before");
        let batch = ExportError::Batch {
            table: "t".into(),
            partition: 0,
            source: Box::new(BatchError::ColumnCount { column: "c".into(), expected: 1, actual: 2 }),
        };
        assert!(!is_transient(&batch, None));
    }

    #[test]
    fn gcs_failing_on_its_side_is_transient() {
        let status = |code: u16| ExportError::Write {
            table: "t".into(),
            partition: 0,
            source: Box::new(ParquetSinkError::Store(StoreError::Gcs(GcsError::Status {
                action: "upload",
                bucket: "b".into(),
                object: "o".into(),
                status: reqwest::StatusCode::from_u16(code).unwrap(),
                attempts: 5,
                body: String::new(),
            }))),
        };
        assert!(is_transient(&status(503), None));
        assert!(!is_transient(&status(403), None));
    }
}
