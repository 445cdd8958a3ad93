//! A sharded export: one coordinator holds the snapshot and commits the run
//! ([`coordinator`]); workers on other machines run its units ([`worker`]), each its own
//! deterministic share. They meet only in the destination: the coordinator's
//! `<run-id>/plan.json` and the workers' unit records, which the coordinator merges into the
//! manifest a single-process export writes.

pub mod coordinator;
pub mod worker;

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::parquet::ParquetSettings;
use super::{ExportError, ExportPlan, ExportUnit};
use crate::model::manifest::UnitSnapshot;
use crate::model::run_id::RunId;
use crate::model::shard::{shares, UnitWeight, PLAN_FILE};
use crate::storage::gcs::GcsOptions;
use crate::storage::store::Store;

/// The format of `plan.json` this build writes and reads.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// `<run-id>/plan.json`: everything a worker needs besides the source's credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardPlan {
    pub format_version: u32,
    pub run_id: RunId,
    /// `pg_export_snapshot()` of the coordinator's transaction: every unit reads in it. The
    /// WAL position and transaction snapshot it stands for are in `plan.source`.
    pub snapshot_id: String,
    pub workers: usize,
    /// Units each worker runs at once.
    pub jobs: usize,
    pub batch_rows: usize,
    pub parquet: ParquetSettings,
    /// Host and pid of the coordinator, and when it wrote the plan.
    pub coordinator: String,
    pub created_at: String,
    /// When the coordinator gives the run up unless every unit is recorded.
    pub deadline_at: String,
    /// The tables, their columns and type routes, and their units with counted rows.
    pub plan: ExportPlan,
}

/// A unit of the plan with the number of units its table has.
pub type PlannedUnit = (ExportUnit, usize);

impl ShardPlan {
    /// Every unit of the run, table by table.
    pub fn units(&self) -> Vec<PlannedUnit> {
        let run_id = &self.run_id;
        self.plan
            .tables
            .iter()
            .flat_map(|table| table.partitions.iter().map(|p| (ExportUnit::new(table, p, run_id), table.partitions.len())))
            .collect()
    }

    /// Every unit, and the indices into it each worker runs: the same on every machine
    /// reading this plan.
    fn assignment(&self) -> (Vec<PlannedUnit>, Vec<Vec<usize>>) {
        let units = self.units();
        let weights: Vec<UnitWeight> =
            units.iter().map(|(u, _)| UnitWeight { table: u.table.clone(), partition: u.partition, rows: u.expected_rows }).collect();
        let shares = shares(&weights, self.workers);
        (units, shares)
    }

    /// The worker of each unit, by `(table, unit)`.
    pub fn owners(&self) -> BTreeMap<(String, usize), usize> {
        let (units, shares) = self.assignment();
        let mut owners = BTreeMap::new();
        for (worker, share) in shares.into_iter().enumerate() {
            for index in share {
                owners.insert((units[index].0.table.clone(), units[index].0.partition), worker);
            }
        }
        owners
    }

    /// The units worker `index` runs, in the plan's order.
    pub fn share(&self, index: usize) -> Vec<PlannedUnit> {
        let (units, mut shares) = self.assignment();
        let Some(share) = shares.get_mut(index) else { return Vec::new() };
        share.sort_unstable();
        share.iter().map(|&i| units[i].clone()).collect()
    }

    /// The snapshot every unit of the run is read in, as its record names it.
    pub fn unit_snapshot(&self) -> UnitSnapshot {
        UnitSnapshot {
            table: String::new(),
            partition: 0,
            snapshot_id: self.snapshot_id.clone(),
            txid_snapshot: self.plan.source.txid_snapshot.clone(),
            wal_lsn: self.plan.source.wal_lsn.clone(),
        }
    }

    /// Writes the plan create-only; returns its URI.
    async fn write(&self, store: &Store) -> Result<String, ExportError> {
        let path = format!("{}/{PLAN_FILE}", self.run_id);
        let body = serde_json::to_vec_pretty(self).map_err(ExportError::Manifest)?;
        if !store.put_if_absent(&path, Bytes::from(body)).await? {
            return Err(ExportError::PlanExists { run_id: self.run_id.to_string(), uri: store.uri(&path) });
        }
        Ok(store.uri(&path))
    }

    /// Reads the plan at `uri`; returns it with the store of its run (rooted at the run's
    /// destination).
    pub async fn read(uri: &str, gcs: &GcsOptions) -> Result<(Self, Store), ExportError> {
        let read_error = |source| ExportError::PlanRead { uri: uri.to_string(), source: Box::new(source) };
        let (store, run_dir, file) = Store::open_run_file(uri, gcs).map_err(read_error)?;
        let body = store.get(&format!("{run_dir}/{file}")).await.map_err(read_error)?;
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|source| ExportError::PlanParse { uri: uri.to_string(), source })?;
        let found = value.get("format_version").and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(PLAN_FORMAT_VERSION)) || value.get("snapshot_id").is_none() {
            return Err(ExportError::PlanFormat { uri: uri.to_string(), found, supported: PLAN_FORMAT_VERSION });
        }
        let plan: Self = serde_json::from_value(value).map_err(|source| ExportError::PlanParse { uri: uri.to_string(), source })?;
        if plan.run_id.as_str() != run_dir {
            return Err(ExportError::PlanMoved { uri: uri.to_string(), run_id: plan.run_id.to_string() });
        }
        Ok((plan, store))
    }
}
