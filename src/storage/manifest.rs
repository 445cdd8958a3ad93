//! Reading a committed run: its manifest (checked against its own digest and its files'
//! figures) and the rule that says whether a stored file is the one the manifest recorded.
//! `load` refuses a run that fails either; `verify` reports the same problems.

use std::collections::HashMap;

use tracing::warn;

use crate::model::manifest::{DigestCheck, FileManifest, Inconsistency, Manifest, FORMAT_VERSION, OLDEST_READABLE_VERSION};
use crate::storage::gcs::GcsOptions;
use crate::storage::store::{Store, StoreError};

/// A manifest that cannot be used, naming its URI.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the manifest `{uri}`")]
    Read {
        uri: String,
        #[source]
        source: StoreError,
    },
    #[error("`{uri}` is not a pg2bq manifest")]
    Parse {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest `{uri}` has format version {found}; this pg2bq reads versions {oldest} to {newest}: use the pg2bq that wrote it")]
    Version { uri: String, found: u32, oldest: u32, newest: u32 },
    #[error("manifest `{uri}` does not agree with itself or its files' figures; nothing was submitted. Re-export the run, or restore the manifest as written:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Inconsistent { uri: String, problems: Vec<String> },
    #[error("cannot list the snapshot's files under `{uri}`")]
    ListFiles {
        uri: String,
        #[source]
        source: StoreError,
    },
    #[error("the snapshot is not intact, nothing was submitted:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    FilesChanged { problems: Vec<String> },
}

/// A manifest as found: the store and run directory it lives in, and what is wrong with it.
pub struct FoundManifest {
    pub store: Store,
    /// The run directory, relative to the store's root; file paths are relative to it.
    pub run_dir: String,
    pub manifest: Manifest,
    /// A digest that does not match, and table totals that differ from the files' figures.
    pub problems: Vec<Inconsistency>,
}

/// Reads and parses a manifest from its URI and checks it against itself, without refusing:
/// `verify` reports the problems, everything else refuses them ([`read_manifest`]).
///
/// # Errors
/// [`ManifestError`] naming the URI when it cannot be read, parsed or has an unknown format
/// version.
pub async fn find_manifest(uri: &str, gcs: &GcsOptions) -> Result<FoundManifest, ManifestError> {
    let read_error = |source| ManifestError::Read { uri: uri.to_string(), source };
    let (store, run_dir, file) = Store::open_run_file(uri, gcs).map_err(read_error)?;
    let bytes = store.get(&format!("{run_dir}/{file}")).await.map_err(read_error)?;
    let (manifest, digest) = Manifest::from_json(&bytes).map_err(|source| ManifestError::Parse { uri: uri.to_string(), source })?;
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&manifest.format_version) {
        return Err(ManifestError::Version {
            uri: uri.into(),
            found: manifest.format_version,
            oldest: OLDEST_READABLE_VERSION,
            newest: FORMAT_VERSION,
        });
    }
    if digest == DigestCheck::Absent && manifest.format_version < FORMAT_VERSION {
        warn!(uri, version = manifest.format_version, "Manifest predates digests: only its totals can be checked");
    }
    let problems = manifest.integrity_problems(&digest);
    Ok(FoundManifest { store, run_dir: run_dir.to_string(), manifest, problems })
}

/// Reads a manifest and refuses it unless its digest and table totals check out.
///
/// # Errors
/// As [`find_manifest`], or [`ManifestError::Inconsistent`] listing every problem.
pub async fn read_manifest(uri: &str, gcs: &GcsOptions) -> Result<FoundManifest, ManifestError> {
    let found = find_manifest(uri, gcs).await?;
    if !found.problems.is_empty() {
        return Err(ManifestError::Inconsistent { uri: uri.into(), problems: found.problems.iter().map(ToString::to_string).collect() });
    }
    Ok(found)
}

/// How a stored file differs from the one the manifest recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDifference {
    Missing,
    Size { stored: u64, recorded: u64 },
    Crc32c { stored: String, recorded: String },
}

impl std::fmt::Display for FileDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(f, "is missing"),
            Self::Size { stored, recorded } => write!(f, "has {stored} bytes, the manifest says {recorded}"),
            Self::Crc32c { stored, recorded } => write!(f, "has CRC32C {stored}, the manifest says {recorded}"),
        }
    }
}

/// The one rule for "is this the file the manifest recorded": size first, then CRC32C where the
/// store (or a re-read) gives one.
pub fn file_difference(file: &FileManifest, stored: Option<(u64, Option<&str>)>) -> Option<FileDifference> {
    match stored {
        None => Some(FileDifference::Missing),
        Some((bytes, _)) if bytes != file.bytes => Some(FileDifference::Size { stored: bytes, recorded: file.bytes }),
        Some((_, Some(crc))) if crc != file.crc32c => {
            Some(FileDifference::Crc32c { stored: crc.to_string(), recorded: file.crc32c.clone() })
        }
        Some(_) => None,
    }
}

/// Checks every file the manifest lists exists with its recorded size (and CRC32C where the
/// store reports one). Lists the run directory once; never looks beyond it.
///
/// # Errors
/// [`ManifestError::ListFiles`] when the listing fails, [`ManifestError::FilesChanged`] naming
/// every file that differs.
pub async fn check_listed_files(store: &Store, run_dir: &str, manifest: &Manifest) -> Result<(), ManifestError> {
    let listed = store.list(run_dir).await.map_err(|source| ManifestError::ListFiles { uri: store.uri(run_dir), source })?;
    let stored: HashMap<String, (u64, Option<String>)> = listed.into_iter().map(|o| (o.path, (o.bytes, o.crc32c))).collect();
    let mut problems = Vec::new();
    for table in &manifest.tables {
        for file in &table.files {
            let path = format!("{run_dir}/{}", file.path);
            let listed = stored.get(&path).map(|(bytes, crc)| (*bytes, crc.as_deref()));
            if let Some(difference) = file_difference(file, listed) {
                problems.push(format!("`{}` (table {}) {difference}", store.uri(&path), table.name));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ManifestError::FilesChanged { problems })
    }
}
