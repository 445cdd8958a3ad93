//! `pg2bq verify`: for audits long after a run. Checks the manifest against its digest and its
//! table totals against its files' figures, re-reads every file of a snapshot, checks its size
//! and CRC32C, recomputes the aggregates from the Parquet data and compares them with the
//! manifest; reports missing, extra and altered files. Only an object the store reports as not
//! found is missing: any other read failure stops verification with its cause. Needs neither
//! BigQuery nor Postgres.

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::model::aggregates::ColumnAccumulator;
use crate::model::check::Check;
use crate::model::manifest::{ColumnManifest, MANIFEST_FILE};
use crate::storage::gcs::GcsOptions;
use crate::storage::manifest::{file_difference, find_manifest, FoundManifest, ManifestError};
use crate::storage::store::{crc32c_base64, StoreError};

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
            let mut check = Check::new("manifest_inconsistent", None, problem.expected, problem.recorded, false);
            check.detail = Some(problem.field);
            check
        })
        .collect();
    let mut files_checked = 0;
    for table in &manifest.tables {
        for file in &table.files {
            let path = format!("{run_dir}/{}", file.path);
            let uri = store.uri(&path);
            files_checked += 1;
            let data = match store.get(&path).await {
                Ok(data) => data,
                Err(error) if error.is_not_found() => {
                    let mut check = Check::new("file_missing", None, "present", "missing", false);
                    check.detail = Some(uri);
                    problems.push(check);
                    continue;
                }
                Err(source) => return Err(VerifyError::Read { uri, source }),
            };
            let crc = crc32c_base64(crc32c::crc32c(&data));
            if file_difference(file, Some((data.len() as u64, Some(&crc)))).is_some() {
                let mut check = Check::new(
                    "file_altered",
                    None,
                    format!("{} bytes, CRC32C {}", file.bytes, file.crc32c),
                    format!("{} bytes, CRC32C {crc}", data.len()),
                    false,
                );
                check.detail = Some(uri.clone());
                problems.push(check);
            }
            match recompute(data, &table.columns) {
                Ok((rows, accumulators)) => {
                    if rows != file.rows {
                        let mut check = Check::new("file_rows", None, file.rows, rows, false);
                        check.detail = Some(uri.clone());
                        problems.push(check);
                    }
                    for ((column, accumulator), recorded) in table.columns.iter().zip(&accumulators).zip(&file.aggregates) {
                        let actual = accumulator.finish();
                        if actual != *recorded {
                            let mut check = Check::new(
                                "file_aggregates",
                                Some(&column.mapping.bq_name),
                                format!(
                                    "fingerprint {}/{}, {} values",
                                    recorded.fingerprint_xor, recorded.fingerprint_sum, recorded.value_count
                                ),
                                format!("fingerprint {}/{}, {} values", actual.fingerprint_xor, actual.fingerprint_sum, actual.value_count),
                                false,
                            );
                            check.detail = Some(uri.clone());
                            problems.push(check);
                        }
                    }
                }
                Err(error) => {
                    let mut check = Check::new("file_unreadable", None, "a readable Parquet file", error, false);
                    check.detail = Some(uri.clone());
                    problems.push(check);
                }
            }
        }
    }
    let known: std::collections::HashSet<String> = manifest
        .tables
        .iter()
        .flat_map(|t| t.files.iter().map(|f| format!("{run_dir}/{}", f.path)))
        .chain([format!("{run_dir}/{MANIFEST_FILE}")])
        .collect();
    let is_claim = |path: &str| path.strip_prefix(&format!("{run_dir}/")).is_some_and(crate::storage::run::is_claim_file);
    for object in listed.iter().filter(|o| !known.contains(&o.path) && !is_claim(&o.path)) {
        problems.push(Check::new("file_extra", None, "not in the manifest", store.uri(&object.path), false));
    }
    Ok(VerifyReport { run_id: manifest.run_id.clone(), passed: problems.is_empty(), files_checked, problems })
}

/// Reads a Parquet file and recomputes its rows and per-column aggregates.
fn recompute(data: Bytes, columns: &[ColumnManifest]) -> Result<(u64, Vec<ColumnAccumulator>), String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| e.to_string())?.build().map_err(|e| e.to_string())?;
    let mut accumulators: Vec<ColumnAccumulator> = columns.iter().map(|c| ColumnAccumulator::for_column(&c.mapping)).collect();
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        rows += batch.num_rows() as u64;
        for (accumulator, array) in accumulators.iter_mut().zip(batch.columns()) {
            accumulator.update(array);
        }
    }
    Ok((rows, accumulators))
}
