//! Naming the rows that differ, when a table with a primary key fails a check: its rows fall
//! into buckets by their key's fingerprint ([`crate::model::locate`]), per level one `GROUP BY`
//! query in BigQuery (through the load's routes, a merged table's snapshot keys only) and one
//! pass over the run's files; buckets that agree are dropped, the others split further, and the
//! rows of the last ones are fetched from both sides (their key, and a fingerprint per column)
//! and compared by key, column by column.
//!
//! Memory, either side: one level's bucket sums (at most 4,096) and at most 65,536 fetched rows;
//! the files are read one at a time. Past those bounds the counts are lower bounds, and say so.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::rows::{compared_columns, read_batches, RunFiles};
use super::{Loaded, NotANumber, ValidateError};
use crate::gcp::bigquery::{BigQuery, Row};
use crate::gcp::measures::{bucket_query, bucket_rows_query};
use crate::model::check::{Check, CheckKind};
use crate::model::locate::{
    bucket, diff_rows, differing_buckets, fetched_buckets, leaf_bits, Level, LocatedRow, SideRow, MAX_BUCKETS, MAX_FETCHED_ROWS,
};
use crate::model::manifest::{ColumnManifest, TableManifest};
use crate::model::row_fingerprint::{cell_encoding, cell_fingerprint, covers, FingerprintSums, RowAccumulator};

/// The rows of a table found to differ from its snapshot, and what finding them cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RowLocation {
    /// Whether the rows were located (else `note` says why not).
    pub ran: bool,
    /// The key columns rows are named by.
    pub key: Vec<String>,
    /// Rows of the snapshot not in BigQuery.
    pub missing: u64,
    /// Rows in BigQuery not in the snapshot (a merged table: of the snapshot's keys only).
    pub only_in_bigquery: u64,
    /// Rows under the same key with other values.
    pub differing: u64,
    /// False when a bound on buckets or fetched rows was reached: the counts are lower bounds.
    pub complete: bool,
    /// The first `--locate-limit` rows, by key.
    pub rows: Vec<LocatedRow>,
    /// The bytes BigQuery processed for the location's queries, as its jobs report them.
    pub bytes_processed: u64,
    /// `GROUP BY` levels run (0: the table's rows were few enough to compare at once).
    pub levels: u32,
    /// BigQuery queries run: one per level, one to fetch rows.
    pub queries: u32,
    /// Wall time waiting for BigQuery's answers.
    pub bigquery_seconds: f64,
    /// Wall time reading the run's files (the snapshot side).
    pub files_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RowLocation {
    /// Runs one of the location's queries, counting it, the bytes BigQuery processed and the
    /// time waited.
    async fn query(&mut self, bq: &BigQuery, sql: &str) -> Result<Vec<Row>, ValidateError> {
        let started = Instant::now();
        let (rows, bytes) = bq.query_rows_and_bytes(sql).await?;
        self.bigquery_seconds += started.elapsed().as_secs_f64();
        (self.queries, self.bytes_processed) = (self.queries + 1, self.bytes_processed + bytes.unwrap_or(0));
        Ok(rows)
    }
}

/// What rows are compared over: the key's and the compared columns, with their positions in
/// the table (and its files).
struct Compared {
    key_positions: Vec<usize>,
    key: Vec<ColumnManifest>,
    positions: Vec<usize>,
    columns: Vec<ColumnManifest>,
}

/// The key and columns to compare rows over; why not, when the rows cannot be named.
fn compared(table: &TableManifest, loaded: &Loaded) -> Result<Compared, String> {
    if table.primary_key.is_empty() {
        return Err("the table has no primary key to name rows by".into());
    }
    let covered: Vec<String> = match &table.row_fingerprint {
        Some(recorded) => recorded.columns.clone(),
        None => table.columns.iter().filter(|c| covers(&c.mapping)).map(|c| c.mapping.bq_name.clone()).collect(),
    };
    let (columns, _) = compared_columns(table, &covered, loaded);
    let mut key_positions = Vec::new();
    for name in &table.primary_key {
        match columns.iter().find(|(_, c)| &c.mapping.name == name) {
            Some((position, _)) => key_positions.push(*position),
            None => return Err(format!("key column `{name}` is not compared as the snapshot's values (left out, changed or JSON)")),
        }
    }
    let key = key_positions.iter().map(|p| table.columns[*p].clone()).collect();
    let (positions, columns) = columns.into_iter().unzip();
    Ok(Compared { key_positions, key, positions, columns })
}

/// Locates the rows that differ, listing the first `limit`.
///
/// # Errors
/// [`ValidateError`] when BigQuery fails, answers something not a number, or a file cannot be
/// read.
pub(super) async fn locate_rows(
    bq: &BigQuery,
    files: &RunFiles,
    table: &TableManifest,
    loaded: &Loaded,
    limit: usize,
) -> Result<RowLocation, ValidateError> {
    let c = match compared(table, loaded) {
        Ok(c) => c,
        Err(reason) => return Ok(RowLocation { note: Some(format!("rows not located: {reason}")), ..RowLocation::default() }),
    };
    let mut found = RowLocation { ran: true, key: c.key.iter().map(|k| k.mapping.bq_name.clone()).collect(), ..RowLocation::default() };
    let (bits, buckets, complete) = match Level::first(table.row_count) {
        Some(first) => descend(bq, files, table, loaded, &c, first, &mut found).await?,
        None => (0, Vec::new(), true),
    };
    let (expected, actual, fetched_all) = match bits > 0 && buckets.is_empty() {
        true => (Vec::new(), Vec::new(), true),
        false => fetch_rows(bq, files, table, loaded, &c, (bits, &buckets), &mut found).await?,
    };
    let names: Vec<String> = c.columns.iter().map(|c| c.mapping.bq_name.clone()).collect();
    let diff = diff_rows(&found.key, &names, expected, actual, limit);
    found.complete = complete && fetched_all;
    (found.missing, found.only_in_bigquery, found.differing, found.rows) = (diff.missing, diff.only_in_bigquery, diff.differing, diff.rows);
    let mut notes = Vec::new();
    if !found.complete {
        notes.push(format!("more rows differ than one pass compares ({MAX_FETCHED_ROWS} a side): the counts are lower bounds"));
    }
    if found.missing + found.only_in_bigquery + found.differing == 0 {
        notes.push(
            "no row differs over the compared columns: what failed is in a column rows do not cover (JSON, or left out at load)".into(),
        );
    }
    if loaded.record.keys_table.is_some() {
        notes.push("merged: only the snapshot's keys are compared; the table's own rows are counted by outside_snapshot".into());
    }
    found.note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(found)
}

/// Runs levels until the differing buckets are small enough to fetch; returns their bits,
/// the buckets to fetch and whether none was left out.
async fn descend(
    bq: &BigQuery,
    files: &RunFiles,
    table: &TableManifest,
    loaded: &Loaded,
    c: &Compared,
    mut level: Level,
    found: &mut RowLocation,
) -> Result<(u32, Vec<u64>, bool), ValidateError> {
    let leaf = leaf_bits(table.row_count);
    let mut complete = true;
    loop {
        let actual = bigquery_buckets(bq, loaded, c, &level, found).await?;
        let read = Instant::now();
        let expected = file_buckets(files, table, c, &level).await?;
        found.files_seconds += read.elapsed().as_secs_f64();
        found.levels += 1;
        let differing = differing_buckets(&expected, &actual);
        match level.next(&differing, leaf) {
            Some((next, kept_all)) => (level, complete) = (next, complete && kept_all),
            None => {
                let (fetched, all) = fetched_buckets(&differing, &expected, &actual);
                return Ok((level.bits, fetched, complete && all));
            }
        }
    }
}

/// BigQuery's sums per bucket of a level: one `GROUP BY` query.
async fn bigquery_buckets(
    bq: &BigQuery,
    loaded: &Loaded,
    c: &Compared,
    level: &Level,
    found: &mut RowLocation,
) -> Result<BTreeMap<u64, FingerprintSums>, ValidateError> {
    let rows = found.query(bq, &bucket_query(&loaded.rows, &c.key, &c.columns, level)).await?;
    let mut sums = BTreeMap::new();
    for row in rows {
        let text = |i: usize| row.get(i).cloned().flatten();
        let number = |i: usize, what: &str| {
            text(i).and_then(|t| t.parse::<i128>().ok()).ok_or_else(|| NotANumber {
                table: loaded.table_id.clone(),
                what: format!("{what} of a bucket of key fingerprints"),
                text: text(i).unwrap_or_else(|| "NULL".into()),
            })
        };
        let bucket = number(0, "the bucket")? as u64;
        sums.insert(
            bucket,
            FingerprintSums { rows: number(1, "COUNT(*)")? as u64, xor: number(2, "BIT_XOR")? as i64 as u64, sum: number(3, "SUM")? },
        );
    }
    Ok(sums)
}

/// The snapshot's sums per bucket of a level: one pass over the run's files.
async fn file_buckets(
    files: &RunFiles,
    table: &TableManifest,
    c: &Compared,
    level: &Level,
) -> Result<BTreeMap<u64, FingerprintSums>, ValidateError> {
    let (mut keys, mut rows) = (RowAccumulator::new(c.key_positions.clone()), RowAccumulator::new(c.positions.clone()));
    let mut sums: BTreeMap<u64, FingerprintSums> = BTreeMap::new();
    read_batches(files, table, |columns| {
        for (key, row) in keys.fingerprints(columns).into_iter().zip(rows.fingerprints(columns)) {
            if level.contains(key) {
                sums.entry(bucket(key, level.bits)).or_default().add(row);
            }
        }
    })
    .await?;
    Ok(sums)
}

/// The rows of `buckets` (of `bits` bits; all rows with 0 bits) from the files and from
/// BigQuery, each side bounded; the third value is false when a bound was reached.
async fn fetch_rows(
    bq: &BigQuery,
    files: &RunFiles,
    table: &TableManifest,
    loaded: &Loaded,
    c: &Compared,
    (bits, buckets): (u32, &[u64]),
    found: &mut RowLocation,
) -> Result<(Vec<SideRow>, Vec<SideRow>, bool), ValidateError> {
    let sql = bucket_rows_query(&loaded.rows, &c.key, &c.columns, bits, buckets, MAX_FETCHED_ROWS);
    let rows = found.query(bq, &sql).await?;
    let read = Instant::now();
    let mut complete = (rows.len() as u64) < MAX_FETCHED_ROWS;
    let actual = rows.into_iter().map(|mut r| SideRow { values: r.split_off(c.key.len()), key: r }).collect();
    let mut keys = RowAccumulator::new(c.key_positions.clone());
    let mut expected = Vec::new();
    read_batches(files, table, |columns| {
        for (row, key) in keys.fingerprints(columns).into_iter().enumerate() {
            if bits > 0 && buckets.binary_search(&bucket(key, bits)).is_err() {
                continue;
            }
            if expected.len() as u64 == MAX_FETCHED_ROWS {
                complete = false;
                return;
            }
            let key = c.key_positions.iter().map(|p| cell_encoding(&columns[*p], row)).collect();
            expected.push(SideRow { key, values: c.positions.iter().map(|p| cell_fingerprint(&columns[*p], row)).collect() });
        }
    })
    .await?;
    found.files_seconds += read.elapsed().as_secs_f64();
    Ok((expected, actual, complete))
}

/// `--dry-run`: what locating rows would scan if a check failed, from BigQuery's dry run of
/// the first level's query; `None` when rows cannot be located (no key, few rows).
///
/// # Errors
/// [`ValidateError`] when the dry run fails.
pub(super) async fn estimate(bq: &BigQuery, table: &TableManifest, loaded: &Loaded) -> Result<Option<Check>, ValidateError> {
    let Ok(c) = compared(table, loaded) else { return Ok(None) };
    let leaf = leaf_bits(table.row_count);
    let levels = leaf.div_ceil(MAX_BUCKETS.ilog2()).max(1);
    let sql = match Level::first(table.row_count) {
        Some(first) => bucket_query(&loaded.rows, &c.key, &c.columns, &first),
        None => bucket_rows_query(&loaded.rows, &c.key, &c.columns, 0, &[], MAX_FETCHED_ROWS),
    };
    let Some(bytes) = bq.dry_run_bytes(&sql).await? else {
        return Ok(Some(Check::new(CheckKind::Estimate, None, "locating differing rows", "unknown", true)));
    };
    let (total, detail) = match leaf {
        0 => {
            (bytes, format!("if a check fails: one query fetching the table's rows, about {bytes} bytes; nothing when every check passes"))
        }
        _ => {
            let (queries, total) = (levels + 1, bytes * (u64::from(levels) + 1));
            (total, format!(
                "if a check fails: {levels} level(s) of one GROUP BY query by key bucket, then one query fetching the rows of the buckets that differ, each about {bytes} bytes: {queries} queries, about {total} bytes (more levels when many rows differ); nothing when every check passes"
            ))
        }
    };
    Ok(Some(Check::new(CheckKind::Estimate, None, "locating differing rows", format!("{total} bytes"), true).with_detail(detail)))
}
