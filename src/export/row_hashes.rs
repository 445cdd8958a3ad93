//! Row hashes ([`crate::model::row_hash`]): written at export, create-only, to
//! `<run>/<table>/_rowhash/rows.pq` (zstd; `key`, `key_hash`, `row_hash`), read in the
//! snapshot with one binary COPY (a later tail compares them: `changes.rs`), and a tail's deleted
//! keys. Load never reads the row-hash file.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;

use crate::export::changes::{read_rows, HashError};
use crate::export::parquet::{data_file_properties, writer_properties, ParquetSettings};
use crate::export::plan::TablePlan;
use crate::export::side_file::store_side_file;
use crate::export::ExportError;
use crate::model::manifest::{FileManifest, HashMethod, RowHashes, DELETED_KEYS_FILE};
use crate::model::row_hash::{hashed_by_type, HashQuery, ROW_HASH_FILE};
use crate::source::postgres::SnapshotSession;
use crate::source::PgStep;
use crate::storage::store::Store;

/// Rows per row group of the file.
const CHUNK_ROWS: usize = 65_536;

/// The query of `table`'s row hashes over all its rows (by type where `by_record`, on
/// PostgreSQL 14+); `None` for a query or a table without a primary key.
pub fn hash_query(table: &TablePlan, by_record: bool) -> Option<HashQuery> {
    (table.table.is_some() && !table.primary_key.is_empty()).then(|| HashQuery {
        from: table.from.clone(),
        key: table.primary_key.clone(),
        method: if by_record { HashMethod::Record } else { HashMethod::Text },
        columns: table.columns.iter().map(|c| c.name.clone()).collect(),
        text_columns: table.columns.iter().filter(|c| by_record && !hashed_by_type(&c.pg_type)).map(|c| c.name.clone()).collect(),
        filter: None,
    })
}

/// Reads every row's hash in `session`'s snapshot and writes the file; one already there (an
/// earlier attempt's) is kept and described by its own rows.
///
/// # Errors
/// [`ExportError::RowHashes`] when the rows cannot be read or encoded; a store error.
pub async fn write_row_hashes(
    session: &SnapshotSession,
    store: &Store,
    run_id: &str,
    table: &TablePlan,
    query: &HashQuery,
    settings: &ParquetSettings,
) -> Result<RowHashes, ExportError> {
    let failed = |source: HashError| ExportError::RowHashes { table: table.name.clone(), source };
    let data = encode(session, query, settings, &table.name).await.map_err(failed)?;
    let stored = store_side_file(store, run_id, &table.directory(), ROW_HASH_FILE, data).await?;
    let (mut rows, mut sum) = (0u64, 0i128);
    read_rows(&stored.data, |_, _, row_hash| {
        rows += 1;
        sum += i128::from(row_hash);
    })
    .map_err(|e| failed(Box::new(e)))?;
    Ok(RowHashes {
        file: stored.manifest(rows),
        method: query.method,
        columns: query.columns.clone(),
        text_columns: query.text_columns.clone(),
        sum: sum.to_string(),
    })
}

/// Writes `table`'s deleted keys ([`TablePlan::deleted_keys`]), one `key` per row, create-only
/// (one already there, an earlier attempt's, is kept), to [`DELETED_KEYS_FILE`].
///
/// # Errors
/// [`ExportError::RowHashes`] when the file cannot be encoded; a store error.
pub async fn write_deleted_keys(
    store: &Store,
    run_id: &str,
    table: &TablePlan,
    settings: &ParquetSettings,
) -> Result<FileManifest, ExportError> {
    let failed = |source: HashError| ExportError::RowHashes { table: table.name.clone(), source };
    let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false)]));
    let encoded = || -> Result<Bytes, HashError> {
        let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(writer_properties(settings, &schema)?))?;
        let keys: StringArray = table.deleted_keys.iter().map(Some).collect();
        writer.write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(keys)])?)?;
        Ok(Bytes::from(writer.into_inner()?))
    };
    let stored = store_side_file(store, run_id, &table.directory(), DELETED_KEYS_FILE, encoded().map_err(failed)?).await?;
    Ok(stored.manifest(table.deleted_keys.len() as u64))
}

/// The file's bytes: the rows read with one COPY, one row group per chunk, no dictionary (keys
/// and hashes are unique).
async fn encode(session: &SnapshotSession, query: &HashQuery, settings: &ParquetSettings, name: &str) -> Result<Bytes, HashError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("key_hash", DataType::Int64, false),
        Field::new("row_hash", DataType::Int64, false),
    ]));
    let plain = schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(data_file_properties(settings, &schema, &plain)?))?;
    let mut failure: Option<HashError> = None;
    session
        .copy_key_hashes(&query.typed_rows_sql(), CHUNK_ROWS, PgStep::ReadRowHashes { table: name.to_string() }, |columns| {
            if failure.is_none() {
                failure = write_chunk(&mut writer, &schema, columns).err();
            }
        })
        .await?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(Bytes::from(writer.into_inner()?))
}

fn write_chunk(writer: &mut ArrowWriter<Vec<u8>>, schema: &Arc<Schema>, columns: [ArrayRef; 3]) -> Result<(), HashError> {
    writer.write(&RecordBatch::try_new(schema.clone(), columns.to_vec())?)?;
    writer.flush()?;
    Ok(())
}
