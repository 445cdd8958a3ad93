//! A tail's changes below its watermark: the parent run's row-hash file (`row_hashes.rs` wrote
//! it) compared with the rows of the snapshot, bucket by bucket, to name the keys updated,
//! deleted or inserted late.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;

use crate::model::locate::differing_buckets;
use crate::model::row_hash::{add_row, bucket_mask, Bucket, Changes, HashQuery};
use crate::source::postgres::SnapshotSession;
use crate::source::PgStep;

/// Differing buckets whose rows are read at once (about 256 rows each, per side).
const BUCKETS_AT_ONCE: usize = 256;

/// Why the row hashes could not be written or compared.
pub type HashError = Box<dyn std::error::Error + Send + Sync>;

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
    for row in session.text_rows(&query.buckets_sql(mask), PgStep::SumRowHashesPerBucket).await? {
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
        for row in session.text_rows(&query.bucket_rows_sql(mask, batch), PgStep::ReadBucketRowHashes).await? {
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
    for row in session.text_rows(&query.rows_sql(), PgStep::ReadUpdatedRowHashes).await? {
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
