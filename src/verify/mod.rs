//! `pg2bq verify`: for audits long after a run. Checks the manifest against its digest and its
//! table totals against its files' figures, re-reads every file of a snapshot, checks its size
//! and CRC32C, recomputes the aggregates and row fingerprints from the Parquet data and compares them with the
//! manifest; reports missing, extra and altered files. Only an object the store reports as not
//! found is missing: any other read failure stops verification with its cause. Needs neither
//! BigQuery nor Postgres.

use std::collections::HashSet;

use arrow::error::ArrowError;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use serde::Serialize;

use crate::model::aggregates::{ColumnAccumulator, ColumnAggregates};
use crate::model::check::{Check, CheckKind};
use crate::model::manifest::{ColumnManifest, FileManifest, Manifest, MANIFEST_FILE};
use crate::model::row_fingerprint::{covers, RowAccumulator, RowFingerprint};
use crate::storage::gcs::GcsOptions;
use crate::storage::manifest::{file_difference, find_manifest, FoundManifest, ManifestError};
use crate::storage::store::{crc32c_base64, ListedObject, Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub run_id: String,
    pub passed: bool,
    pub files_checked: usize,
    /// Failed checks only (a passing snapshot has none).
    pub problems: Vec<Check>,
}

/// Why verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot list `{uri}`")]
    List {
        uri: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot read `{uri}` (a failure other than \"not found\": whether the file is intact is unknown)")]
    Read {
        uri: String,
        #[source]
        source: StoreError,
    },
}

/// Why a file's Parquet data could not be read back; reported as a `file_unreadable` check.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    #[error("cannot open it as Parquet")]
    Open(#[source] ParquetError),
    #[error("cannot decode a record batch")]
    Decode(#[source] ArrowError),
}

/// Everything `verify` needs.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The snapshot's manifest: `gs://`, `file://` or a path.
    pub manifest_uri: String,
    pub gcs: GcsOptions,
}

/// Verifies a snapshot against its manifest.
///
/// # Errors
/// [`VerifyError`] when the manifest, the listing or a file cannot be read (other than a file
/// that is not found); damaged files and an edited manifest are problems in the report, not
/// errors.
pub async fn verify(manifest_uri: &str, gcs: &GcsOptions) -> Result<VerifyReport, VerifyError> {
    let FoundManifest { store, run_dir, manifest, problems: inconsistencies } = find_manifest(manifest_uri, gcs).await?;
    let listed = store.list(&run_dir).await.map_err(|source| VerifyError::List { uri: store.uri(&run_dir), source })?;
    let mut problems: Vec<Check> = inconsistencies
        .into_iter()
        .map(|problem| {
            Check::new(CheckKind::ManifestInconsistent, None, problem.expected, problem.recorded, false).with_detail(problem.field)
        })
        .collect();
    let mut files_checked = 0;
    for table in &manifest.tables {
        for file in &table.files {
            files_checked += 1;
            problems.extend(verify_file(&store, &run_dir, &table.columns, file).await?);
        }
        // The rows set aside by quarantine and the row hashes: size, CRC32C and rows.
        for file in table.side_files() {
            files_checked += 1;
            problems.extend(verify_file(&store, &run_dir, &[], file).await?);
        }
    }
    problems.extend(extra_files(&store, &run_dir, &manifest, &listed));
    Ok(VerifyReport { run_id: manifest.run_id.clone(), passed: problems.is_empty(), files_checked, problems })
}

/// Reads one file back: missing, altered (size or CRC32C), unreadable, or with other rows or
/// aggregates than the manifest records.
async fn verify_file(store: &Store, run_dir: &str, columns: &[ColumnManifest], file: &FileManifest) -> Result<Vec<Check>, VerifyError> {
    let path = format!("{run_dir}/{}", file.path);
    let uri = store.uri(&path);
    let data = match store.get(&path).await {
        Ok(data) => data,
        Err(error) if error.is_not_found() => {
            return Ok(vec![Check::new(CheckKind::FileMissing, None, "present", "missing", false).with_detail(uri)]);
        }
        Err(source) => return Err(VerifyError::Read { uri, source }),
    };
    let mut problems = Vec::new();
    let crc = crc32c_base64(crc32c::crc32c(&data));
    if file_difference(file, Some((data.len() as u64, Some(&crc)))).is_some() {
        let check = Check::new(
            CheckKind::FileAltered,
            None,
            format!("{} bytes, CRC32C {}", file.bytes, file.crc32c),
            format!("{} bytes, CRC32C {crc}", data.len()),
            false,
        );
        problems.push(check.with_detail(uri.clone()));
    }
    match recompute(data, columns) {
        Ok((rows, accumulators, row_fingerprint)) => {
            if rows != file.rows {
                problems.push(Check::new(CheckKind::FileRows, None, file.rows, rows, false).with_detail(uri.clone()));
            }
            problems.extend(aggregate_checks(columns, &accumulators, file, &uri));
            if let Some(recorded) = file.row_fingerprint.as_ref().filter(|r| **r != row_fingerprint) {
                let show = |r: &RowFingerprint| format!("rows {}, xor {}, sum {}", r.rows, r.xor, r.sum);
                let check = Check::new(CheckKind::RowFingerprint, None, show(recorded), show(&row_fingerprint), false);
                problems.push(check.with_detail(uri.clone()));
            }
        }
        Err(error) => {
            let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
            let check = Check::new(CheckKind::FileUnreadable, None, "a readable Parquet file", format!("{error}: {cause}"), false);
            problems.push(check.with_detail(uri));
        }
    }
    Ok(problems)
}

/// One `file_aggregates` check per column whose recomputed aggregates differ from the recorded.
fn aggregate_checks(columns: &[ColumnManifest], accumulators: &[ColumnAccumulator], file: &FileManifest, uri: &str) -> Vec<Check> {
    let summary = |a: &ColumnAggregates| format!("fingerprint {}/{}, {} values", a.fingerprint_xor, a.fingerprint_sum, a.value_count);
    let mut problems = Vec::new();
    for ((column, accumulator), recorded) in columns.iter().zip(accumulators).zip(&file.aggregates) {
        let actual = accumulator.finish();
        if actual != *recorded {
            let check = Check::new(CheckKind::FileAggregates, Some(&column.mapping.bq_name), summary(recorded), summary(&actual), false);
            problems.push(check.with_detail(uri));
        }
    }
    problems
}

/// A `file_extra` check per object of the run directory that is neither listed in the manifest,
/// nor the manifest, nor run bookkeeping (a claim or a unit record), nor its audit record.
fn extra_files(store: &Store, run_dir: &str, manifest: &Manifest, listed: &[ListedObject]) -> Vec<Check> {
    let known: HashSet<String> = manifest
        .tables
        .iter()
        .flat_map(|t| t.files.iter().chain(t.side_files()).map(|f| format!("{run_dir}/{}", f.path)))
        .chain([format!("{run_dir}/{MANIFEST_FILE}")])
        .collect();
    let is_claim = |path: &str| {
        let name = path.strip_prefix(&format!("{run_dir}/"));
        name.is_some_and(|name| crate::storage::run::is_bookkeeping_file(name) || crate::model::run_record::is_audit_file(name))
    };
    listed
        .iter()
        .filter(|o| !known.contains(&o.path) && !is_claim(&o.path))
        .map(|object| Check::new(CheckKind::FileExtra, None, "not in the manifest", store.uri(&object.path), false))
        .collect()
}

/// Reads a Parquet file and recomputes its rows, per-column aggregates and row fingerprints.
fn recompute(data: Bytes, columns: &[ColumnManifest]) -> Result<(u64, Vec<ColumnAccumulator>, RowFingerprint), ReadBackError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data).and_then(|builder| builder.build()).map_err(ReadBackError::Open)?;
    let mut accumulators: Vec<ColumnAccumulator> = columns.iter().map(|c| ColumnAccumulator::for_column(&c.mapping)).collect();
    let mut row_fingerprint = RowAccumulator::new(columns.iter().enumerate().filter(|(_, c)| covers(&c.mapping)).map(|(i, _)| i).collect());
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(ReadBackError::Decode)?;
        rows += batch.num_rows() as u64;
        for (accumulator, array) in accumulators.iter_mut().zip(batch.columns()) {
            accumulator.update(array);
        }
        row_fingerprint.update(batch.columns());
    }
    Ok((rows, accumulators, row_fingerprint.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn bytes_that_are_not_parquet_keep_the_parquet_error_as_cause() {
        let error = recompute(Bytes::from_static(b"not parquet"), &[]).unwrap_err();
        assert!(matches!(error, ReadBackError::Open(_)), "{error:?}");
        assert!(error.source().is_some_and(|cause| cause.is::<ParquetError>()));
    }
}
