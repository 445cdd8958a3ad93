//! The `row_fingerprint` check: the count, XOR and sum of the rows' fingerprints
//! ([`crate::model::row_fingerprint`]) of the table as loaded (a merged table: of the
//! snapshot's keys only), read back through the load's routes, against the manifest's. A
//! column whose values the table does not hold as the snapshot's (left out, given a
//! `--default`, lossy, JSON) is left out on both sides: the snapshot's side is then
//! recomputed from the run's files.

use arrow::array::ArrayRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Loaded, ValidateError};
use crate::gcp::bigquery::BigQuery;
use crate::gcp::measures::row_fingerprint_query;
use crate::model::check::{Check, CheckKind};
use crate::model::manifest::{ColumnManifest, TableManifest};
use crate::model::row_fingerprint::{RowAccumulator, RowFingerprint};
use crate::storage::store::Store;

/// Where the run's files are, to recompute a table's row fingerprints over fewer columns.
pub struct RunFiles {
    pub store: Store,
    pub run_dir: String,
}

/// The snapshot's file could not be read back to recompute row fingerprints.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `{uri}` to recompute the row fingerprints of table `{table}` from the run's files; check that the run is intact with `pg2bq verify`")]
pub struct FileReadError {
    pub table: String,
    pub uri: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The `row_fingerprint` check of one table, narrowed to partitions when it fails.
///
/// # Errors
/// [`ValidateError`] when BigQuery fails or a file cannot be read back.
pub(super) async fn row_fingerprint_check(
    bq: &BigQuery,
    files: &RunFiles,
    table: &TableManifest,
    loaded: &Loaded,
) -> Result<Check, ValidateError> {
    let Some(recorded) = &table.row_fingerprint else {
        let reason = "the manifest records no row fingerprints (written by an earlier pg2bq): re-export the table to compare its rows";
        return Ok(Check::skipped(CheckKind::RowFingerprint, None, "the rows' fingerprints", reason));
    };
    let (compared, left_out) = compared_columns(table, &recorded.columns, loaded);
    let positions: Vec<usize> = compared.iter().map(|(p, _)| *p).collect();
    let columns: Vec<ColumnManifest> = compared.into_iter().map(|(_, c)| c).collect();
    let expected = match left_out.is_empty() {
        true => recorded.total.clone(),
        false => recompute(files, table, &positions).await?,
    };
    let actual = read_fingerprint(bq, &row_fingerprint_query(&loaded.rows, &columns, None)).await?;
    let names: Vec<&str> = columns.iter().map(|c| c.mapping.bq_name.as_str()).collect();
    let mut detail = format!("over columns {}", names.join(", "));
    if !left_out.is_empty() {
        detail.push_str(&format!("; left out: {} (expected recomputed from the run's files)", left_out.join(", ")));
    }
    let uncovered: Vec<&str> =
        table.columns.iter().map(|c| c.mapping.bq_name.as_str()).filter(|n| !recorded.columns.iter().any(|r| r == n)).collect();
    if !uncovered.is_empty() {
        detail.push_str(&format!("; not covered: {} (JSON)", uncovered.join(", ")));
    }
    let passed = actual == expected;
    if !passed && left_out.is_empty() {
        let places = differing_partitions(bq, table, loaded, &columns).await?;
        if !places.is_empty() {
            detail.push_str(&format!("; differs in {}", places.join("; ")));
        }
    }
    Ok(Check::new(CheckKind::RowFingerprint, None, show(&expected), show(&actual), passed).with_detail(detail))
}

/// The `row_fingerprint` query of the table as loaded, for `--dry-run` to estimate; `None` for a
/// manifest without row fingerprints.
pub(super) fn row_fingerprint_sql(table: &TableManifest, loaded: &Loaded) -> Option<String> {
    let recorded = table.row_fingerprint.as_ref()?;
    let columns: Vec<ColumnManifest> = compared_columns(table, &recorded.columns, loaded).0.into_iter().map(|(_, c)| c).collect();
    Some(row_fingerprint_query(&loaded.rows, &columns, None))
}

/// The covered columns the table holds as the snapshot's values, with their positions, and
/// the others named with why.
pub(super) fn compared_columns(table: &TableManifest, covered: &[String], loaded: &Loaded) -> (Vec<(usize, ColumnManifest)>, Vec<String>) {
    let options = &loaded.record.options;
    let (mut compared, mut left_out) = (Vec::new(), Vec::new());
    for (position, column) in table.columns.iter().enumerate().filter(|(_, c)| covered.contains(&c.mapping.bq_name)) {
        let name = &column.mapping.bq_name;
        match loaded.route(column) {
            Some(route) if route.measured_as.is_none() => compared.push((position, column.clone())),
            None => left_out.push(format!("{name} (--exclude-column)")),
            Some(_) if options.defaults.contains_key(name) => left_out.push(format!("{name} (--default)")),
            Some(_) if options.lossy.contains_key(name) => left_out.push(format!("{name} (--allow-lossy)")),
            Some(_) => left_out.push(format!("{name} (held as JSON)")),
        }
    }
    (compared, left_out)
}

/// `rows N, xor X, sum S`.
fn show(fingerprint: &RowFingerprint) -> String {
    format!("rows {}, xor {}, sum {}", fingerprint.rows, fingerprint.xor, fingerprint.sum)
}

async fn read_fingerprint(bq: &BigQuery, sql: &str) -> Result<RowFingerprint, ValidateError> {
    let row = bq.query_one_row(sql).await?;
    let text = |i: usize| row.get(i).cloned().flatten();
    let rows = text(0).and_then(|t| t.parse().ok()).ok_or_else(|| super::NotANumber {
        table: sql.into(),
        what: "COUNT(*) of the row fingerprints".into(),
        text: text(0).unwrap_or_else(|| "NULL".into()),
    })?;
    // Over no row, BIT_XOR and SUM are NULL: the empty fingerprint, 0.
    Ok(RowFingerprint { rows, xor: text(1).unwrap_or_else(|| "0".into()), sum: text(2).unwrap_or_else(|| "0".into()) })
}

/// The partitions (key ranges, which BigQuery can select) whose rows' fingerprints differ
/// from their files': `partition 2 (<predicate>): <files>`.
async fn differing_partitions(
    bq: &BigQuery,
    table: &TableManifest,
    loaded: &Loaded,
    columns: &[ColumnManifest],
) -> Result<Vec<String>, ValidateError> {
    let key_partitions: Vec<_> = table.partitions.iter().filter_map(|p| Some((p, p.bigquery_predicate()?))).collect();
    if key_partitions.len() < 2 || key_partitions.len() != table.partitions.len() {
        return Ok(Vec::new());
    }
    let mut places = Vec::new();
    for (partition, filter) in key_partitions {
        let expected = table.merged_row_fingerprint(|f| f.partition == partition.index);
        let actual = read_fingerprint(bq, &row_fingerprint_query(&loaded.rows, columns, Some(&filter))).await?;
        if expected.as_ref() != Some(&actual) {
            let files: Vec<&str> = table.files.iter().filter(|f| f.partition == partition.index).map(|f| f.path.as_str()).collect();
            places.push(format!("partition {} ({}): {}", partition.index, partition.predicate, files.join(", ")));
        }
    }
    Ok(places)
}

/// The table's row fingerprints over the columns at `positions`, from its files.
async fn recompute(files: &RunFiles, table: &TableManifest, positions: &[usize]) -> Result<RowFingerprint, ValidateError> {
    let mut accumulator = RowAccumulator::new(positions.to_vec());
    read_batches(files, table, |columns| accumulator.update(columns)).await?;
    Ok(accumulator.finish())
}

/// Reads the table's files one at a time, handing each batch's columns (in the table's column
/// order) to `visit`.
///
/// # Errors
/// [`FileReadError`] when a file cannot be read or decoded.
pub(super) async fn read_batches(files: &RunFiles, table: &TableManifest, mut visit: impl FnMut(&[ArrayRef])) -> Result<(), FileReadError> {
    for file in &table.files {
        let path = format!("{}/{}", files.run_dir, file.path);
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| FileReadError {
            table: table.name.clone(),
            uri: files.store.uri(&path),
            source,
        };
        let data: Bytes = files.store.get(&path).await.map_err(|e| failed(Box::new(e)))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(data).and_then(|b| b.build()).map_err(|e| failed(Box::new(e)))?;
        for batch in reader {
            let batch = batch.map_err(|e| failed(Box::new(e)))?;
            visit(batch.columns());
        }
    }
    Ok(())
}
