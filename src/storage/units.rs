//! The records of finished export units under their run (`<run-id>/_units/…`): written
//! create-only as each unit finishes, read back by `export --resume`. Deleting them is the
//! run claim's business ([`super::run`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::store::{Store, StoreError};
use crate::model::run_id::RunId;
use crate::model::unit_record::{UnitRecord, UNITS_DIR};

/// A unit record that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum UnitRecordError {
    #[error("table `{table}`, unit {partition}: its record `{uri}` already exists; another export wrote this run")]
    Exists { table: String, partition: usize, uri: String },
    #[error("unit record `{uri}` is unreadable; remove the run (or rerun without --resume) to start it clean")]
    Unreadable {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot serialise the record of table `{table}`, unit {partition}")]
    Serialise {
        table: String,
        partition: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records a finished unit, create-only.
///
/// # Errors
/// [`UnitRecordError::Exists`] when the unit is recorded already; [`UnitRecordError::Store`].
pub async fn record_unit(store: &Store, run_id: &RunId, record: &UnitRecord) -> Result<(), UnitRecordError> {
    let (table, partition) = (record.table.clone(), record.partition);
    let path = UnitRecord::path(run_id.as_str(), &record.table, record.partition);
    let body =
        serde_json::to_vec_pretty(record).map_err(|source| UnitRecordError::Serialise { table: table.clone(), partition, source })?;
    if !store.put_if_absent(&path, Bytes::from(body)).await? {
        return Err(UnitRecordError::Exists { table, partition, uri: store.uri(&path) });
    }
    Ok(())
}

/// Every unit recorded under the run, in path order (table, then unit).
///
/// # Errors
/// [`UnitRecordError::Unreadable`] naming the record; [`UnitRecordError::Store`].
pub async fn read_unit_records(store: &Store, run_id: &RunId) -> Result<Vec<UnitRecord>, UnitRecordError> {
    let mut records = BTreeMap::new();
    read_new_unit_records(store, run_id, &mut records).await?;
    Ok(records.into_values().collect())
}

/// Adds to `known` (by path) the units recorded under the run since it was last read: one
/// listing, and a read of each new record only (a coordinator polls this for hours). Returns
/// the new records' paths.
///
/// # Errors
/// As [`read_unit_records`].
pub async fn read_new_unit_records(
    store: &Store,
    run_id: &RunId,
    known: &mut BTreeMap<String, UnitRecord>,
) -> Result<Vec<String>, UnitRecordError> {
    let listed = store.list(&format!("{run_id}/{UNITS_DIR}")).await?;
    let prefix = format!("{run_id}/");
    let mut new = Vec::new();
    for path in listed.into_iter().map(|o| o.path).filter(|p| p.strip_prefix(&prefix).is_some_and(UnitRecord::is_record)) {
        if known.contains_key(&path) {
            continue;
        }
        let body = store.get(&path).await?;
        let record = serde_json::from_slice(&body).map_err(|source| UnitRecordError::Unreadable { uri: store.uri(&path), source })?;
        known.insert(path.clone(), record);
        new.push(path);
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::UnitSnapshot;
    use crate::storage::store::tests::memory_and_local;

    fn record(table: &str, partition: usize) -> UnitRecord {
        UnitRecord {
            day_counts: None,
            table: table.into(),
            partition,
            units_in_table: 2,
            query: "SELECT 1".into(),
            columns: Vec::new(),
            rows: 0,
            files: Vec::new(),
            snapshot: UnitSnapshot { table: table.into(), partition, snapshot_id: "s".into(), txid_snapshot: "1:1:".into(), wal_lsn: None },
            attempts: 1,
            seconds: 0.0,
        }
    }

    #[tokio::test]
    async fn records_are_written_once_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for store in memory_and_local(dir.path()) {
            let run = RunId::parse("r").unwrap();
            for (table, partition) in [("public.b", 0), ("public.a", 1), ("public.a", 0)] {
                record_unit(&store, &run, &record(table, partition)).await.unwrap();
            }
            let again = record_unit(&store, &run, &record("public.a", 1)).await.unwrap_err();
            assert!(matches!(again, UnitRecordError::Exists { partition: 1, .. }), "{again}");
            let read = read_unit_records(&store, &run).await.unwrap();
            let keys: Vec<(&str, usize)> = read.iter().map(|r| (r.table.as_str(), r.partition)).collect();
            assert_eq!(keys, [("public.a", 0), ("public.a", 1), ("public.b", 0)]);
        }
    }
}
