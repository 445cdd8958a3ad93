//! The run directory `<dest>/<run-id>/`: the claim an export takes
//! before it writes or deletes anything, and the one delete, confined to a run it holds.
//!
//! A claim is `<run-id>/claim-NNNNNN.json`, created create-only. The highest number holds the
//! run; taking over a dead attempt means creating the next number, so two rerunners cannot both
//! win. Nothing here deletes outside `<run-id>/`, or anything beside the claim and the unit
//! records (bookkeeping, see [`is_bookkeeping_file`]) once the run's manifest exists.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::store::{Store, StoreError};
use crate::model::manifest::MANIFEST_FILE;
use crate::model::run_id::RunId;
use crate::model::shard::PLAN_FILE;
use crate::model::unit_record::{unit_file_prefix, UnitRecord};

/// Claim attempts before giving up when other exporters keep taking the next number.
const MAX_CLAIM_ROUNDS: usize = 5;

/// Who claimed a run, as stored in its claim object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// Random per export attempt.
    pub attempt: String,
    pub host: String,
    pub pid: u32,
    /// The process's start in clock ticks after boot (`/proc/<pid>/stat`), so a reused pid is
    /// not mistaken for the holder.
    pub process_start_ticks: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id`: after a reboot no earlier process lives.
    pub boot_id: Option<String>,
    pub started_at: String,
}

/// Why a run could not be claimed, or stopped being held.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("run `{run_id}` is being exported by pid {pid} on this host (`{host}`), claimed {age_s} s ago in `{uri}`; wait for it or pick another --run-id")]
    HeldHere { run_id: String, host: String, pid: u32, age_s: i64, uri: String },
    #[error("run `{run_id}` was claimed by pid {pid} on host `{host}` {age_s} s ago (`{uri}`) and pg2bq cannot tell from here whether it still runs; if it is gone, rerun with --take-over, else pick another --run-id")]
    HeldElsewhere { run_id: String, host: String, pid: u32, age_s: i64, uri: String },
    #[error("run `{run_id}`: claim `{uri}` is unreadable")]
    Unreadable {
        run_id: String,
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("run `{run_id}`: other exports kept claiming it ({MAX_CLAIM_ROUNDS} rounds); pick another --run-id")]
    Contested { run_id: String },
    #[error("run `{run_id}`: this export's claim `{uri}` was taken over by `{by}`; it deletes and commits nothing")]
    Lost { run_id: String, uri: String, by: String },
    #[error("run `{run_id}` is committed (`{uri}` exists): its files are never deleted")]
    Committed { run_id: String, uri: String },
    #[error("run `{run_id}`: its plan `{uri}` is gone, so its coordinator gave the run up; this worker stops (restart the run with a new coordinator)")]
    PlanGone { run_id: String, uri: String },
    #[error("run `{run_id}` was restarted: its plan `{uri}` now names snapshot {now}, not this worker's {ours}; this worker stops")]
    PlanReplaced { run_id: String, uri: String, now: String, ours: String },
    #[error("run `{run_id}`: table `{directory}`, unit {partition} is not in this worker's share; it deletes only its own units' files")]
    NotInShare { run_id: String, directory: String, partition: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`RunClaim::delete_run_objects`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Everything an earlier, dead attempt left; the claim stays (start clean).
    EarlierAttempts,
    /// Everything, the claim last (a failed run).
    Everything,
    /// Only the claim (when the run turned out to be committed by another export).
    ClaimOnly,
    /// The claim and the unit records: the bookkeeping a run no longer needs once this
    /// export committed it.
    Bookkeeping,
}

/// A run this process holds: proof required by the only function that deletes.
#[derive(Debug)]
pub struct RunClaim {
    store: Store,
    run_id: RunId,
    number: u32,
    record: ClaimRecord,
}

fn claim_path(run_id: &RunId, number: u32) -> String {
    format!("{run_id}/claim-{number:06}.json")
}

/// The number of a claim, from its file name inside the run directory (`claim-000002.json`).
fn claim_number(name: &str) -> Option<u32> {
    name.strip_prefix("claim-")?.strip_suffix(".json")?.parse().ok()
}

/// Whether `name` (an object's name inside a run directory) is a claim: commit bookkeeping, not
/// snapshot data. A kill between the manifest's creation and the claim's removal leaves one.
fn is_claim_file(name: &str) -> bool {
    claim_number(name).is_some()
}

/// Whether `name` (an object's name inside a run directory) is commit bookkeeping: a claim, a
/// unit record, or a sharded run's plan. A kill between the manifest's creation and their
/// removal leaves the first two; the plan stays as the record of how the run was sharded.
pub fn is_bookkeeping_file(name: &str) -> bool {
    is_claim_file(name) || UnitRecord::is_record(name) || name == PLAN_FILE
}

/// The claim numbers found among the run's objects.
fn claim_numbers<'a>(run_id: &RunId, paths: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let prefix = format!("{run_id}/");
    paths.filter_map(|p| claim_number(p.strip_prefix(&prefix)?)).collect()
}

impl RunClaim {
    /// Claims `run_id`, taking over an attempt whose process is gone (same host) or, with
    /// `take_over`, any earlier attempt.
    ///
    /// # Errors
    /// [`ClaimError`] naming the live (or unverifiable) holder and the way out.
    pub async fn take(store: &Store, run_id: &RunId, take_over: bool) -> Result<Self, ClaimError> {
        let record = ClaimRecord::for_this_process();
        for _ in 0..MAX_CLAIM_ROUNDS {
            let listed = store.list(run_id.as_str()).await?;
            let highest = claim_numbers(run_id, listed.iter().map(|o| o.path.as_str())).into_iter().max();
            if let Some(number) = highest {
                let path = claim_path(run_id, number);
                let holder = match store.get(&path).await {
                    Ok(body) => serde_json::from_slice::<ClaimRecord>(&body).map_err(|source| ClaimError::Unreadable {
                        run_id: run_id.to_string(),
                        uri: store.uri(&path),
                        source,
                    })?,
                    // Released meanwhile: look again.
                    Err(error) if error.is_not_found() => continue,
                    Err(error) => return Err(error.into()),
                };
                if !take_over {
                    holder.refuse_unless_gone(&record, run_id, &store.uri(&path))?;
                }
                tracing::warn!(run_id = %run_id, holder_host = %holder.host, holder_pid = holder.pid, "Taking over the run from an attempt that is gone");
            }
            let number = highest.map_or(1, |n| n + 1);
            let body = serde_json::to_vec_pretty(&record).expect("a claim record serialises");
            if store.put_if_absent(&claim_path(run_id, number), body.into()).await? {
                return Ok(Self { store: store.clone(), run_id: run_id.clone(), number, record });
            }
        }
        Err(ClaimError::Contested { run_id: run_id.to_string() })
    }

    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    pub fn uri(&self) -> String {
        self.store.uri(&claim_path(&self.run_id, self.number))
    }

    /// Fails unless this claim is still the run's highest.
    ///
    /// # Errors
    /// [`ClaimError::Lost`] naming the claim that replaced it.
    pub async fn ensure_held(&self) -> Result<(), ClaimError> {
        let listed = self.store.list(self.run_id.as_str()).await?;
        self.ensure_highest(listed.iter().map(|o| o.path.as_str()))
    }

    fn ensure_highest<'a>(&self, paths: impl Iterator<Item = &'a str>) -> Result<(), ClaimError> {
        match claim_numbers(&self.run_id, paths).into_iter().max() {
            Some(highest) if highest == self.number => Ok(()),
            other => Err(ClaimError::Lost {
                run_id: self.run_id.to_string(),
                uri: self.uri(),
                by: other.map_or("its removal".into(), |n| self.store.uri(&claim_path(&self.run_id, n))),
            }),
        }
    }

    /// The only delete of an export: objects under `<run-id>/` (local staging files included),
    /// only while this claim is the highest, and nothing but bookkeeping once the manifest
    /// exists. Returns how many objects went.
    ///
    /// # Errors
    /// [`ClaimError::Lost`] or [`ClaimError::Committed`] before anything is deleted;
    /// [`ClaimError::Store`] when a delete fails.
    pub async fn delete_run_objects(&self, cleanup: Cleanup) -> Result<usize, ClaimError> {
        let own = claim_path(&self.run_id, self.number);
        let prefix = format!("{}/", self.run_id);
        match cleanup {
            Cleanup::ClaimOnly => self.store.delete_in_run(&self.run_id, &own).await.map(|()| 1).map_err(Into::into),
            Cleanup::Bookkeeping => {
                let objects = self.store.list_run_with_staging(&self.run_id).await?;
                let records = objects.iter().filter(|p| p.strip_prefix(&prefix).is_some_and(UnitRecord::is_record));
                let deleted = self.delete_each(records).await?;
                self.store.delete_in_run(&self.run_id, &own).await?;
                Ok(deleted + 1)
            }
            Cleanup::EarlierAttempts => self.delete_uncommitted(|path| path != own).await,
            Cleanup::Everything => {
                // A sharded run's workers stop once its plan is gone: it goes first.
                let plan = format!("{prefix}{PLAN_FILE}");
                let deleted = self.delete_uncommitted(|path| path == plan).await?;
                let deleted = deleted + self.delete_uncommitted(|path| path != own).await?;
                self.store.delete_in_run(&self.run_id, &own).await?;
                Ok(deleted)
            }
        }
    }

    /// Deletes what an earlier attempt left except the unit records and the files they list
    /// (`keep`, paths relative to the root), for `export --resume`. Returns how many went.
    ///
    /// # Errors
    /// As [`Self::delete_run_objects`].
    pub async fn delete_unrecorded(&self, keep: &BTreeSet<String>) -> Result<usize, ClaimError> {
        let own = claim_path(&self.run_id, self.number);
        let prefix = format!("{}/", self.run_id);
        self.delete_uncommitted(|path| {
            path != own && !keep.contains(path) && !path.strip_prefix(&prefix).is_some_and(UnitRecord::is_record)
        })
        .await
    }

    /// Deletes the files one unit wrote in this run (`<directory>/part-pPPPP-…`, staging files
    /// included) before it is tried again. Returns how many went.
    ///
    /// # Errors
    /// As [`Self::delete_run_objects`].
    pub async fn delete_unit_files(&self, directory: &str, partition: usize) -> Result<usize, ClaimError> {
        let unit_prefix = unit_file_prefix(directory, partition);
        self.delete_uncommitted(|path| path.starts_with(&unit_prefix)).await
    }

    /// Deletes the run's objects `select` picks, while this claim holds and no manifest exists.
    async fn delete_uncommitted(&self, select: impl Fn(&str) -> bool) -> Result<usize, ClaimError> {
        let objects = self.store.list_run_with_staging(&self.run_id).await?;
        self.ensure_highest(objects.iter().map(String::as_str))?;
        let manifest = format!("{}/{MANIFEST_FILE}", self.run_id);
        if objects.contains(&manifest) {
            return Err(ClaimError::Committed { run_id: self.run_id.to_string(), uri: self.store.uri(&manifest) });
        }
        self.delete_each(objects.iter().filter(|p| select(p))).await
    }

    async fn delete_each<'a>(&self, paths: impl Iterator<Item = &'a String>) -> Result<usize, ClaimError> {
        let mut deleted = 0;
        for path in paths {
            self.store.delete_in_run(&self.run_id, path).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    pub fn record(&self) -> &ClaimRecord {
        &self.record
    }
}

/// What a worker of a sharded run may delete: the files of its own share's units, and only
/// while the run is neither committed nor given up by its coordinator (its plan gone or
/// replaced by a restarted run's). The coordinator holds the run's claim; a worker never
/// deletes anything else.
#[derive(Debug)]
pub struct WorkerLease {
    store: Store,
    run_id: RunId,
    /// The snapshot the plan this worker read names.
    snapshot_id: String,
    /// `(<run-id>/<table>, unit)` of every unit in the worker's share.
    share: BTreeSet<(String, usize)>,
}

impl WorkerLease {
    pub fn new(store: &Store, run_id: &RunId, snapshot_id: &str, share: BTreeSet<(String, usize)>) -> Self {
        Self { store: store.clone(), run_id: run_id.clone(), snapshot_id: snapshot_id.to_string(), share }
    }

    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// Fails once the run is committed, or its coordinator gave it up (the plan is gone) or
    /// restarted it (the plan names another snapshot).
    ///
    /// # Errors
    /// [`ClaimError::Committed`], [`ClaimError::PlanGone`], [`ClaimError::PlanReplaced`], or
    /// the store's error.
    pub async fn ensure_open(&self) -> Result<(), ClaimError> {
        let manifest = format!("{}/{MANIFEST_FILE}", self.run_id);
        if self.store.exists(&manifest).await? {
            return Err(ClaimError::Committed { run_id: self.run_id.to_string(), uri: self.store.uri(&manifest) });
        }
        let path = format!("{}/{PLAN_FILE}", self.run_id);
        let (run_id, uri) = (self.run_id.to_string(), self.store.uri(&path));
        let plan = match self.store.get(&path).await {
            Err(error) if error.is_not_found() => return Err(ClaimError::PlanGone { run_id, uri }),
            plan => plan?,
        };
        let now = serde_json::from_slice::<serde_json::Value>(&plan)
            .ok()
            .and_then(|plan| plan.get("snapshot_id").and_then(|s| s.as_str()).map(str::to_string))
            .unwrap_or_default();
        if now != self.snapshot_id {
            return Err(ClaimError::PlanReplaced { run_id, uri, now, ours: self.snapshot_id.clone() });
        }
        Ok(())
    }

    /// Deletes the files `units` of this worker's share wrote (an earlier attempt's, or a
    /// failed try's before the next), listing the run once. Returns how many went.
    ///
    /// # Errors
    /// [`ClaimError::NotInShare`] before anything is deleted, as [`Self::ensure_open`], or the
    /// store's error.
    pub async fn delete_unit_files(&self, units: &[(String, usize)]) -> Result<usize, ClaimError> {
        if let Some((directory, partition)) = units.iter().find(|unit| !self.share.contains(unit)) {
            return Err(ClaimError::NotInShare { run_id: self.run_id.to_string(), directory: directory.clone(), partition: *partition });
        }
        self.ensure_open().await?;
        let prefixes: Vec<String> = units.iter().map(|(directory, partition)| unit_file_prefix(directory, *partition)).collect();
        let mut deleted = 0;
        for path in self.store.list_run_with_staging(&self.run_id).await? {
            if prefixes.iter().any(|prefix| path.starts_with(prefix)) {
                self.store.delete_in_run(&self.run_id, &path).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl ClaimRecord {
    fn for_this_process() -> Self {
        let pid = std::process::id();
        Self {
            attempt: format!("{:016x}", rand::random::<u64>()),
            host: read_proc("sys/kernel/hostname").unwrap_or_else(|| "unknown".into()),
            pid,
            process_start_ticks: process_start_ticks(pid),
            boot_id: read_proc("sys/kernel/random/boot_id"),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }
    }

    /// Refuses unless this holder is provably gone: same host, and a reboot since, or its pid
    /// is dead, a zombie, or a different process now.
    fn refuse_unless_gone(&self, me: &ClaimRecord, run_id: &RunId, uri: &str) -> Result<(), ClaimError> {
        let age_s = chrono::DateTime::parse_from_rfc3339(&self.started_at)
            .map_or(0, |t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
        let (run_id, host, uri) = (run_id.to_string(), self.host.clone(), uri.to_string());
        if self.host != me.host {
            return Err(ClaimError::HeldElsewhere { run_id, host, pid: self.pid, age_s, uri });
        }
        let rebooted = self.boot_id.is_some() && me.boot_id.is_some() && self.boot_id != me.boot_id;
        let gone = rebooted
            || match (me.process_start_ticks, self.process_start_ticks) {
                // This host has /proc: the holder's entry tells.
                (Some(_), Some(started)) => process_start_ticks(self.pid) != Some(started),
                _ => false,
            };
        if gone {
            return Ok(());
        }
        if me.process_start_ticks.is_none() {
            return Err(ClaimError::HeldElsewhere { run_id, host, pid: self.pid, age_s, uri });
        }
        Err(ClaimError::HeldHere { run_id, host, pid: self.pid, age_s, uri })
    }
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{path}")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Start time of a live (not zombie) process, from field 22 of `/proc/<pid>/stat`.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = read_proc(&format!("{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::gcs::GcsOptions;
    use crate::storage::store::tests::memory_and_local;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_gone() {
        let me = ClaimRecord::for_this_process();
        let run = RunId::parse("r").unwrap();
        assert!(matches!(me.refuse_unless_gone(&me, &run, "u"), Err(ClaimError::HeldHere { .. })));
        let reused = ClaimRecord { process_start_ticks: me.process_start_ticks.map(|t| t + 1), ..me.clone() };
        assert!(reused.refuse_unless_gone(&me, &run, "u").is_ok(), "a reused pid is not the holder");
        let elsewhere = ClaimRecord { host: "other-host".into(), ..me.clone() };
        assert!(matches!(elsewhere.refuse_unless_gone(&me, &run, "u"), Err(ClaimError::HeldElsewhere { .. })));
    }

    /// Rerunners that all find a dead claim race for the next number: exactly one takes over.
    #[tokio::test]
    async fn concurrent_rerunners_take_over_once() {
        let dir = tempfile::tempdir().unwrap();
        for store in memory_and_local(dir.path()) {
            let run = RunId::parse("r").unwrap();
            let me = ClaimRecord::for_this_process();
            let dead = ClaimRecord { process_start_ticks: me.process_start_ticks.map(|t| t + 1), ..me };
            store.put_if_absent("r/claim-000001.json", serde_json::to_vec(&dead).unwrap().into()).await.unwrap();
            let rerunners: Vec<_> = (0..8)
                .map(|_| {
                    let (store, run) = (store.clone(), run.clone());
                    tokio::spawn(async move { RunClaim::take(&store, &run, false).await })
                })
                .collect();
            let mut held = Vec::new();
            for rerunner in rerunners {
                match rerunner.await.unwrap() {
                    Ok(claim) => held.push(claim.number),
                    Err(error) => assert!(matches!(error, ClaimError::HeldHere { .. }), "{error}"),
                }
            }
            assert_eq!(held, [2]);
        }
    }

    #[tokio::test]
    async fn the_highest_claim_holds_and_only_its_holder_deletes() {
        let store = Store::open("memory://", &GcsOptions::default()).unwrap();
        let run = RunId::parse("r").unwrap();
        store.put_if_absent("r/t/part-p0000-s00000.parquet", "x".into()).await.unwrap();
        store.put_if_absent("other/keep.parquet", "y".into()).await.unwrap();
        let first = RunClaim::take(&store, &run, false).await.unwrap();
        assert!(matches!(RunClaim::take(&store, &run, false).await, Err(ClaimError::HeldHere { .. })));
        let second = RunClaim::take(&store, &run, true).await.unwrap();
        assert_eq!((first.number, second.number), (1, 2));
        assert!(matches!(first.delete_run_objects(Cleanup::Everything).await, Err(ClaimError::Lost { .. })));
        assert_eq!(second.delete_run_objects(Cleanup::EarlierAttempts).await.unwrap(), 2);
        let left: Vec<String> = store.list("").await.unwrap().into_iter().map(|o| o.path).collect();
        assert_eq!(left, ["other/keep.parquet", "r/claim-000002.json"]);
        store.put_if_absent("r/manifest.json", "{}".into()).await.unwrap();
        assert!(matches!(second.delete_run_objects(Cleanup::Everything).await, Err(ClaimError::Committed { .. })));
        second.delete_run_objects(Cleanup::ClaimOnly).await.unwrap();
        assert!(!store.exists("r/claim-000002.json").await.unwrap());
        assert!(store.exists("r/manifest.json").await.unwrap());
    }
}
