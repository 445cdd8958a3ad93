//! A table's side files (rejected rows, row hashes, deleted keys): small Parquet files beside
//! its data under `<run>/<table dir>/`, stored create-only, each in the manifest with its size
//! and CRC32C.

use bytes::Bytes;

use crate::model::manifest::FileManifest;
use crate::storage::store::{crc32c_base64, Store, StoreError};

/// A side file as stored: the bytes now there and whether they are the ones just written.
pub struct StoredSideFile {
    pub data: Bytes,
    /// False when an earlier attempt's file was there and is kept: describe it by its own bytes.
    pub fresh: bool,
    relative: String,
    uri: String,
}

impl StoredSideFile {
    /// Its manifest entry, holding `rows` rows.
    pub fn manifest(&self, rows: u64) -> FileManifest {
        FileManifest {
            path: self.relative.clone(),
            uri: self.uri.clone(),
            partition: 0,
            rows,
            bytes: self.data.len() as u64,
            crc32c: crc32c_base64(crc32c::crc32c(&self.data)),
            aggregates: Vec::new(),
            row_fingerprint: None,
        }
    }
}

/// Stores `data` as the side file `name` of the table in `directory` unless one is there.
///
/// # Errors
/// [`StoreError`] naming the object when it can be neither written nor read.
pub async fn store_side_file(store: &Store, run_id: &str, directory: &str, name: &str, data: Bytes) -> Result<StoredSideFile, StoreError> {
    let relative = format!("{directory}/{name}");
    let path = format!("{run_id}/{relative}");
    let (data, fresh) = match store.put_if_absent(&path, data.clone()).await? {
        true => (data, true),
        false => (store.get(&path).await?, false),
    };
    Ok(StoredSideFile { data, fresh, relative, uri: store.uri(&path) })
}
