//! The records `load` and `validate` leave beside a run ([`RunRecord`]): appended, one
//! create-only object per invocation, and read back in the order they were made.

use bytes::Bytes;

use crate::model::run_record::{RunRecord, RECORDS_DIR};
use crate::storage::store::{Store, StoreError};

/// A record that cannot be written or read, naming its object.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write the record `{uri}`")]
    Write {
        uri: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot list the records under `{uri}`")]
    List {
        uri: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot read the record `{uri}`")]
    Read {
        uri: String,
        #[source]
        source: StoreError,
    },
    #[error("`{uri}` is not a pg2bq run record")]
    Parse {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `record` beside the run in `run_dir`, never over another; returns its URI.
///
/// # Errors
/// [`RecordError::Write`] when the store refuses it.
pub async fn append_record(store: &Store, run_dir: &str, record: &RunRecord) -> Result<String, RecordError> {
    let data = Bytes::from(record.encode().expect("a record's plain fields encode"));
    loop {
        let path = format!("{run_dir}/{}", record.path(rand::random()));
        let write_error = |source| RecordError::Write { uri: store.uri(&path), source };
        if store.put_if_absent(&path, data.clone()).await.map_err(write_error)? {
            return Ok(store.uri(&path));
        }
    }
}

/// Every record of the run in `run_dir`, oldest first.
///
/// # Errors
/// [`RecordError`] naming the object that cannot be listed, read or parsed.
pub async fn read_records(store: &Store, run_dir: &str) -> Result<Vec<RunRecord>, RecordError> {
    let prefix = format!("{run_dir}/{RECORDS_DIR}");
    let mut listed = store.list(&prefix).await.map_err(|source| RecordError::List { uri: store.uri(&prefix), source })?;
    listed.retain(|object| object.path.strip_prefix(&format!("{run_dir}/")).is_some_and(RunRecord::is_record));
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    let mut records = Vec::with_capacity(listed.len());
    for object in listed {
        let uri = store.uri(&object.path);
        let bytes = store.get(&object.path).await.map_err(|source| RecordError::Read { uri: uri.clone(), source })?;
        records.push(RunRecord::parse(&bytes).map_err(|source| RecordError::Parse { uri, source })?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::run_record::{RecordedCommand, Verdict};

    /// Two records made in the same microsecond both land, and come back oldest first.
    #[tokio::test]
    async fn records_append_without_overwriting_and_read_back_in_order() {
        let store = Store::open("memory://", &crate::storage::gcs::GcsOptions::default()).unwrap();
        let mut first = RunRecord::now(RecordedCommand::Load, "p", "d", Verdict::Loaded);
        first.recorded_at = "2026-12-08T01:00:00Z".into();
        let mut second = RunRecord { command: RecordedCommand::Validate, verdict: Verdict::Passed, ..first.clone() };
        second.recorded_at = "2026-12-08T02:00:00Z".into();
        for record in [&second, &first, &first] {
            append_record(&store, "run-1", record).await.unwrap();
        }
        let read = read_records(&store, "run-1").await.unwrap();
        assert_eq!(read, vec![first.clone(), first, second]);
        assert!(read_records(&store, "run-2").await.unwrap().is_empty());
    }
}
