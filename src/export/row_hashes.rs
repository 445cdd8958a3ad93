//! Row hashes ([`crate::model::row_hash`]): written at export, create-only, to
//! `<run>/<table>/_rowhash/rows.pq` (zstd; `key`, `key_hash`, `row_hash`), read in the
//! snapshot through a cursor; and, in a later tail whose check fails, compared bucket by
//! bucket with the snapshot's rows to name the keys that changed. Load never reads the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;

use crate::export::parquet::{writer_properties, ParquetSettings};
use crate::export::plan::TablePlan;
use crate::export::side_file::store_side_file;
use crate::export::ExportError;
use crate::model::locate::differing_buckets;
use crate::model::manifest::{FileManifest, HashMethod, RowHashes, DELETED_KEYS_FILE};
use crate::model::row_hash::{add_row, bucket_mask, hashed_by_type, Bucket, Changes, HashQuery, ROW_HASH_FILE};
use crate::source::postgres::SnapshotSession;
use crate::storage::store::Store;

/// Rows fetched from the cursor at a time (one row group each).
const CHUNK_ROWS: usize = 65_536;

/// Differing buckets whose rows are read at once (about 256 rows each, per side).
const BUCKETS_AT_ONCE: usize = 256;

/// Why the row hashes could not be written or compared.
pub type HashError = Box<dyn std::error::Error + Send + Sync>;

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
    let stored = store_side_file(store, run_id, table, ROW_HASH_FILE, data).await?;
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
    let stored = store_side_file(store, run_id, table, DELETED_KEYS_FILE, encoded().map_err(failed)?).await?;
    Ok(stored.manifest(table.deleted_keys.len() as u64))
}

/// The file's bytes: the rows read through a cursor, one row group per chunk.
async fn encode(session: &SnapshotSession, query: &HashQuery, settings: &ParquetSettings, name: &str) -> Result<Bytes, HashError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("key_hash", DataType::Int64, false),
        Field::new("row_hash", DataType::Int64, false),
    ]));
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(writer_properties(settings, &schema)?))?;
    let mut failure: Option<HashError> = None;
    let what = format!("read the row hashes of table `{name}`");
    session
        .text_rows_in_chunks(&query.rows_sql(), CHUNK_ROWS, &what, |rows| {
            if failure.is_none() {
                failure = write_chunk(&mut writer, &schema, &rows).err();
            }
        })
        .await?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(Bytes::from(writer.into_inner()?))
}

fn write_chunk(writer: &mut ArrowWriter<Vec<u8>>, schema: &Arc<Schema>, rows: &[Vec<Option<String>>]) -> Result<(), HashError> {
    let keys: StringArray = rows.iter().map(|r| r[0].clone()).collect();
    let number = |i: usize| -> Result<ArrayRef, HashError> {
        let values: Result<Vec<i64>, _> = rows.iter().map(|r| r[i].as_deref().unwrap_or_default().parse::<i64>()).collect();
        Ok(Arc::new(Int64Array::from(values?)))
    };
    writer.write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), number(1)?, number(2)?])?)?;
    writer.flush()?;
    Ok(())
}

/// Hands `each` every row of a row-hash file, `(key, key_hash, row_hash)`, batch by batch.
///
/// # Errors
/// The file is not such a Parquet file.
pub fn read_rows(data: &Bytes, mut each: impl FnMut(&str, i64, i64)) -> Result<(), ParquetError> {
    let not_ours = |what: &str| ParquetError::General(format!("not a row-hash file: {what}"));
    for batch in ParquetRecordBatchReaderBuilder::try_new(data.clone())?.build()? {
        let batch = batch?;
        let column = |name: &str| batch.column_by_name(name).cloned().ok_or_else(|| not_ours(name));
        let keys = column("key")?;
        let keys = keys.as_string_opt::<i32>().ok_or_else(|| not_ours("`key` is not text"))?;
        let (key_hashes, row_hashes) = (column("key_hash")?, column("row_hash")?);
        let key_hashes = key_hashes.as_primitive_opt::<Int64Type>().ok_or_else(|| not_ours("`key_hash` is not int64"))?;
        let row_hashes = row_hashes.as_primitive_opt::<Int64Type>().ok_or_else(|| not_ours("`row_hash` is not int64"))?;
        for i in 0..batch.num_rows() {
            each(keys.value(i), key_hashes.value(i), row_hashes.value(i));
        }
    }
    Ok(())
}

/// The keys whose rows differ between the parent's row-hash file (`parent`, of `parent_rows`
/// rows) and the rows `query` selects in `session`'s snapshot: bucket totals on both sides,
/// then the rows of the differing buckets, [`BUCKETS_AT_ONCE`] at a time.
///
/// # Errors
/// The file cannot be read, or a query fails.
pub async fn locate_changes(session: &SnapshotSession, parent: &Bytes, parent_rows: u64, query: &HashQuery) -> Result<Changes, HashError> {
    let mask = bucket_mask(parent_rows);
    let mut before = BTreeMap::new();
    read_rows(parent, |_, key_hash, row_hash| add_row(&mut before, key_hash, mask, row_hash))?;
    let mut now = BTreeMap::new();
    for row in session.text_rows(&query.buckets_sql(mask), "sum the row hashes per bucket").await? {
        let bucket = Bucket { rows: number(&row[1])?, sum: number(&row[2])? };
        now.insert(number(&row[0])?, bucket);
    }
    let mut changes = Changes::default();
    for batch in differing_buckets(&before, &now).chunks(BUCKETS_AT_ONCE) {
        let wanted: HashSet<i64> = batch.iter().copied().collect();
        let mut before = HashMap::new();
        read_rows(parent, |key, key_hash, row_hash| {
            if wanted.contains(&(key_hash & mask)) {
                before.insert(key.to_string(), row_hash);
            }
        })?;
        let mut now = HashMap::new();
        for row in session.text_rows(&query.bucket_rows_sql(mask, batch), "read the row hashes of differing buckets").await? {
            now.insert(row[0].clone().unwrap_or_default(), number(&row[1])?);
        }
        changes.compare(&before, &now);
    }
    Ok(changes)
}

/// `--updated-at`: the rows `query` selects (those updated since the parent's snapshot),
/// compared by key with the parent's file (one pass, keeping only their keys): updated, or
/// inserted late. Deleted rows are not among them; the caller counts them.
///
/// # Errors
/// The file cannot be read, or the query fails.
pub async fn changes_among(session: &SnapshotSession, parent: &Bytes, query: &HashQuery) -> Result<Changes, HashError> {
    let mut now = HashMap::new();
    for row in session.text_rows(&query.rows_sql(), "read the row hashes of the rows updated since the earlier run").await? {
        now.insert(row[0].clone().unwrap_or_default(), number(&row[2])?);
    }
    let mut before = HashMap::new();
    read_rows(parent, |key, _, row_hash| {
        if now.contains_key(key) {
            before.insert(key.to_string(), row_hash);
        }
    })?;
    let mut changes = Changes::default();
    changes.compare(&before, &now);
    Ok(changes)
}

/// A number our own SQL printed as text.
fn number<T: std::str::FromStr>(value: &Option<String>) -> Result<T, HashError> {
    let text = value.as_deref().unwrap_or("0");
    text.parse().map_err(|_| format!("`{text}` is not a number").into())
}
