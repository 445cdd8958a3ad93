//! Where a snapshot lives: a local directory, memory (tests), or a GCS bucket.
//!
//! Input: the destination URL. Output: a [`Store`] that uploads files from a stream of chunks,
//! creates the manifest only if absent, reads, lists and deletes. Local and memory go through
//! object_store; GCS goes through its JSON API (see [`super::gcs`]).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{local::LocalFileSystem, ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::sync::mpsc;
use url::Url;

use super::gcs::{GcsClient, GcsError, GcsOptions, CHUNK_BYTES};
use crate::model::error_kind::ErrorKind;
use crate::model::run_id::RunId;

/// A failed storage action, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("destination `{url}` is not a gs://, file:// or memory:// URL or a path")]
    UnsupportedUrl { url: String },
    #[error("cannot create or clean local directory `{path}`")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} `{uri}` failed")]
    Object {
        action: &'static str,
        uri: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Gcs(#[from] GcsError),
    #[error("upload of `{uri}` was abandoned before it finished")]
    Abandoned { uri: String },
    #[error("`{uri}` is not inside run `{run_id}`: refusing to delete it")]
    OutsideRun { run_id: String, uri: String },
    #[error("`{uri}` already exists: data files are written once")]
    Exists { uri: String },
    #[error("refusing to write `{uri}`: a local disk would store it as `{stored}`, so its name would differ between stores")]
    Unrepresentable { uri: String, stored: String },
    #[error("GCS stored `{uri}` with CRC32C {stored}, but we wrote {written}: the upload was corrupted")]
    ChecksumMismatch { uri: String, stored: String, written: String },
}

impl StoreError {
    /// The kind of failure: object_store's own kind, GCS's (see [`GcsError::kind`]), a data
    /// file written already is [`ErrorKind::AlreadyExists`], anything else invalid.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Object { source, .. } => object_kind(source),
            StoreError::Gcs(error) => error.kind(),
            StoreError::CreateDir { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => ErrorKind::Permission,
            StoreError::Exists { .. } => ErrorKind::AlreadyExists,
            StoreError::UnsupportedUrl { .. }
            | StoreError::CreateDir { .. }
            | StoreError::Abandoned { .. }
            | StoreError::OutsideRun { .. }
            | StoreError::Unrepresentable { .. }
            | StoreError::ChecksumMismatch { .. } => ErrorKind::Invalid,
        }
    }

    /// Whether the store said the object does not exist (as opposed to failing to answer).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

/// A part of a file being uploaded, or its end.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    Finish,
}

/// An object found by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Relative to the store's root.
    pub path: String,
    pub bytes: u64,
    /// Base64 big-endian CRC32C, when the store reports one (GCS).
    pub crc32c: Option<String>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: u64,
    /// Base64 of the big-endian CRC32C, the form GCS reports.
    pub crc32c: String,
}

#[derive(Debug, Clone)]
enum Backend {
    /// Memory, or a local directory (kept to clean up staging files object_store hides).
    Objects(Arc<dyn ObjectStore>, Option<std::path::PathBuf>),
    Gcs(Arc<GcsClient>),
}

/// A destination root: every path is relative to it.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Prefix inside the bucket or store, without leading or trailing `/`.
    root: String,
    /// The destination as the operator gave it, normalised, for URIs in the manifest.
    display_root: String,
}

/// The size and running CRC32C of what an upload has received so far.
#[derive(Debug, Default)]
struct Written {
    bytes: u64,
    crc: u32,
}

impl Written {
    fn add(&mut self, data: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.bytes += data.len() as u64;
    }

    fn stored(&self) -> StoredObject {
        StoredObject { bytes: self.bytes, crc32c: crc32c_base64(self.crc) }
    }
}

/// The kind of an object_store error (its variants are the model of [`ErrorKind`]).
fn object_kind(error: &object_store::Error) -> ErrorKind {
    match error {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => ErrorKind::Precondition,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => ErrorKind::Permission,
        _ => ErrorKind::Invalid,
    }
}

/// Base64 of the big-endian CRC32C of `bytes`.
pub fn crc32c_base64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

impl Store {
    /// Opens `gs://bucket/prefix`, `file:///abs/dir`, a plain path, or `memory://` (tests).
    ///
    /// # Errors
    /// [`StoreError`] for an unsupported URL, an uncreatable directory or missing GCS credentials.
    pub fn open(destination: &str, gcs: &GcsOptions) -> Result<Self, StoreError> {
        let unsupported = || StoreError::UnsupportedUrl { url: destination.to_string() };
        if let Some(rest) = destination.strip_prefix("gs://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(unsupported());
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(Self {
                backend: Backend::Gcs(Arc::new(GcsClient::new(bucket, gcs)?)),
                display_root: format!("gs://{bucket}/{prefix}").trim_end_matches('/').to_string(),
                root: prefix,
            });
        }
        if destination.starts_with("memory://") {
            return Ok(Self {
                backend: Backend::Objects(Arc::new(InMemory::new()), None),
                root: String::new(),
                display_root: "memory://".into(),
            });
        }
        let path = if destination.starts_with("file://") {
            Url::parse(destination).ok().and_then(|u| u.to_file_path().ok()).ok_or_else(unsupported)?
        } else if destination.contains("://") {
            return Err(unsupported());
        } else {
            std::path::PathBuf::from(destination)
        };
        std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateDir { path: path.display().to_string(), source })?;
        let path = path.canonicalize().map_err(|source| StoreError::CreateDir { path: path.display().to_string(), source })?;
        let local = LocalFileSystem::new_with_prefix(&path).map_err(|source| StoreError::Object {
            action: "open",
            uri: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            backend: Backend::Objects(Arc::new(local), Some(path.clone())),
            root: String::new(),
            display_root: Url::from_directory_path(&path).map(|u| u.to_string().trim_end_matches('/').to_string()).unwrap_or_default(),
        })
    }

    fn key(&self, path: &str) -> String {
        if self.root.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.root)
        }
    }

    /// Refuses a path that object_store would store under another name (it escapes a part
    /// that is `.` or `..`, or holds `%`, `"`, `\`, a non-ASCII character…), on every backend, so
    /// a path written is the object's name on every store. Table directories never need it
    /// (`TableRef::directory`); this keeps any other name from drifting.
    fn check_writable(&self, path: &str) -> Result<(), StoreError> {
        let stored = Path::from(path);
        match stored.as_ref() == path {
            true => Ok(()),
            false => Err(StoreError::Unrepresentable { uri: self.uri(path), stored: stored.to_string() }),
        }
    }

    /// Full URI of `path`, as recorded in the manifest.
    /// The store a run file's URI (`<dest>/<run-id>/<file>`) lives in, rooted at `<dest>`,
    /// with the run directory and the file's name.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_run_file(uri: &str, gcs: &GcsOptions) -> Result<(Self, String, String), StoreError> {
        let (directory, file) = uri.rsplit_once('/').unwrap_or((".", uri));
        let (root, run_dir) = directory.rsplit_once('/').unwrap_or((".", directory));
        Ok((Self::open(if root.is_empty() { "/" } else { root }, gcs)?, run_dir.to_string(), file.to_string()))
    }

    pub fn uri(&self, path: &str) -> String {
        format!("{}/{path}", self.display_root)
    }

    /// Uploads the chunks received until [`Chunk::Finish`]; if the channel closes first, the
    /// upload is abandoned and nothing becomes visible.
    ///
    /// # Errors
    /// [`StoreError`] naming the object when a write fails or GCS reports another checksum.
    pub async fn upload(&self, path: &str, chunks: mpsc::Receiver<Chunk>) -> Result<StoredObject, StoreError> {
        self.check_writable(path)?;
        match &self.backend {
            Backend::Objects(store, _) => self.upload_object(store.as_ref(), path, chunks).await,
            Backend::Gcs(gcs) => self.upload_to_gcs(gcs, path, chunks).await,
        }
    }

    /// Memory or a local directory: written under a name of its own, then moved into place
    /// only if nothing is there.
    async fn upload_object(
        &self,
        store: &dyn ObjectStore,
        path: &str,
        mut chunks: mpsc::Receiver<Chunk>,
    ) -> Result<StoredObject, StoreError> {
        let uri = self.uri(path);
        let failed = |action: &'static str| {
            let uri = uri.clone();
            move |source| StoreError::Object { action, uri, source }
        };
        let object = Path::from(self.key(path));
        let staging = Path::from(format!("{}.{:016x}.partial", self.key(path), rand::random::<u64>()));
        let upload = store.put_multipart(&staging).await.map_err(failed("start upload of"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK_BYTES);
        let mut written = Written::default();
        while let Some(chunk) = chunks.recv().await {
            let Chunk::Data(data) = chunk else {
                writer.finish().await.map_err(failed("finish upload of"))?;
                return match store.rename_if_not_exists(&staging, &object).await {
                    Ok(()) => Ok(written.stored()),
                    Err(error) if object_kind(&error) == ErrorKind::AlreadyExists => {
                        // Best effort: the refusal is the error worth reporting.
                        let _ = store.delete(&staging).await;
                        Err(StoreError::Exists { uri })
                    }
                    Err(source) => Err(StoreError::Object { action: "move into place", uri, source }),
                };
            };
            written.add(&data);
            writer.wait_for_capacity(2).await.map_err(failed("upload"))?;
            writer.put(data);
        }
        // Best effort: abandoning is the error worth reporting.
        let _ = writer.abort().await;
        Err(StoreError::Abandoned { uri })
    }

    /// GCS: a resumable upload whose last chunk says so, checked against the CRC32C GCS
    /// reports.
    async fn upload_to_gcs(&self, gcs: &GcsClient, path: &str, mut chunks: mpsc::Receiver<Chunk>) -> Result<StoredObject, StoreError> {
        let uri = self.uri(path);
        let object = self.key(path);
        let session = gcs.start_upload(&object).await?;
        // GCS needs to know which chunk is the last: hold one back.
        let mut pending: Option<Bytes> = None;
        let mut offset = 0u64;
        let mut written = Written::default();
        while let Some(chunk) = chunks.recv().await {
            let Chunk::Data(data) = chunk else {
                let last = pending.take().unwrap_or_default();
                let meta = gcs.upload_chunk(&session, &object, offset, last, Some(written.bytes)).await?;
                let stored = written.stored();
                if let Some(gcs_crc32c) = meta.and_then(|m| m.crc32c) {
                    if gcs_crc32c != stored.crc32c {
                        return Err(StoreError::ChecksumMismatch { uri, stored: gcs_crc32c, written: stored.crc32c });
                    }
                }
                return Ok(stored);
            };
            written.add(&data);
            if let Some(previous) = pending.replace(data) {
                let len = previous.len() as u64;
                gcs.upload_chunk(&session, &object, offset, previous, None).await?;
                offset += len;
            }
        }
        Err(StoreError::Abandoned { uri })
    }

    /// Writes `data` at `path`, replacing what was there (a derived file, such as a report).
    ///
    /// # Errors
    /// As [`Self::upload`].
    pub async fn put(&self, path: &str, data: Bytes) -> Result<StoredObject, StoreError> {
        let (sender, receiver) = mpsc::channel(2);
        sender.send(Chunk::Data(data)).await.expect("the receiver is held below");
        sender.send(Chunk::Finish).await.expect("the receiver is held below");
        self.upload(path, receiver).await
    }

    /// Writes `data` at `path` only if nothing is there. Returns `false` if something was.
    ///
    /// # Errors
    /// [`StoreError`] naming the object when the write fails for another reason.
    pub async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, StoreError> {
        self.check_writable(path)?;
        match &self.backend {
            Backend::Objects(store, _) => {
                let options = PutOptions { mode: PutMode::Create, ..Default::default() };
                match store.put_opts(&Path::from(self.key(path)), PutPayload::from(data), options).await {
                    Ok(_) => Ok(true),
                    Err(error) if object_kind(&error) == ErrorKind::AlreadyExists => Ok(false),
                    Err(source) => Err(StoreError::Object { action: "create", uri: self.uri(path), source }),
                }
            }
            Backend::Gcs(gcs) => Ok(gcs.put_if_absent(&self.key(path), data).await?),
        }
    }

    /// Whether `path` exists.
    pub async fn exists(&self, path: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Objects(store, _) => match store.head(&Path::from(self.key(path))).await {
                Ok(_) => Ok(true),
                Err(error) if object_kind(&error) == ErrorKind::NotFound => Ok(false),
                Err(source) => Err(StoreError::Object { action: "read metadata of", uri: self.uri(path), source }),
            },
            Backend::Gcs(gcs) => Ok(gcs.head(&self.key(path)).await?.is_some()),
        }
    }

    /// The whole object.
    pub async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        match &self.backend {
            Backend::Objects(store, _) => {
                let read = async { store.get(&Path::from(self.key(path))).await?.bytes().await };
                read.await.map_err(|source| StoreError::Object { action: "read", uri: self.uri(path), source })
            }
            Backend::Gcs(gcs) => Ok(gcs.get(&self.key(path)).await?),
        }
    }

    /// Every object under `prefix`, with paths relative to the root.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        let strip = |key: &str| key.strip_prefix(&format!("{}/", self.root)).unwrap_or(key).to_string();
        match &self.backend {
            Backend::Objects(store, _) => {
                use futures::TryStreamExt;
                let listed: Vec<_> = store
                    .list(Some(&Path::from(self.key(prefix))))
                    .try_collect()
                    .await
                    .map_err(|source| StoreError::Object { action: "list", uri: self.uri(prefix), source })?;
                // Runs written before table directories were escaped hold parts object_store
                // percent-encoded (quotes, non-ASCII): their paths are given back as written.
                let decoded = |m: &object_store::ObjectMeta| {
                    percent_encoding::percent_decode_str(m.location.as_ref()).decode_utf8_lossy().into_owned()
                };
                Ok(listed.iter().map(|m| ListedObject { path: strip(&decoded(m)), bytes: m.size as u64, crc32c: None }).collect())
            }
            Backend::Gcs(gcs) => {
                // The directory `prefix` names (the whole root when it is empty).
                let key = self.key(prefix);
                let key = if key.is_empty() || key.ends_with('/') { key } else { format!("{key}/") };
                Ok(gcs
                    .list(&key)
                    .await?
                    .into_iter()
                    .map(|m| ListedObject { path: strip(&m.name), bytes: m.size, crc32c: m.crc32c })
                    .collect())
            }
        }
    }

    /// Every object under `<run-id>/`, relative to the root. For a local directory this walks
    /// the files themselves, so it also finds the staging files object_store's listing hides.
    pub(super) async fn list_run_with_staging(&self, run_id: &RunId) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Objects(_, Some(directory)) => {
                let run_dir = directory.join(run_id.as_str());
                let walk = || -> std::io::Result<Vec<String>> {
                    let mut files = Vec::new();
                    let mut pending = vec![run_dir.clone()];
                    while let Some(dir) = pending.pop() {
                        let entries = match std::fs::read_dir(&dir) {
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            entries => entries?,
                        };
                        for entry in entries {
                            let path = entry?.path();
                            if path.is_dir() {
                                pending.push(path);
                            } else if let Ok(relative) = path.strip_prefix(directory) {
                                files.push(relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
                            }
                        }
                    }
                    Ok(files)
                };
                walk().map_err(|source| StoreError::CreateDir { path: run_dir.display().to_string(), source })
            }
            _ => Ok(self.list(run_id.as_str()).await?.into_iter().map(|o| o.path).collect()),
        }
    }

    /// Deletes one object of the run. Only [`super::run::RunClaim::delete_run_objects`] calls
    /// this; a path outside `<run-id>/` is refused. A local directory left empty goes too.
    pub(super) async fn delete_in_run(&self, run_id: &RunId, path: &str) -> Result<(), StoreError> {
        let inside = path.strip_prefix(run_id.as_str()).and_then(|rest| rest.strip_prefix('/'));
        if inside.is_none_or(|rest| rest.is_empty() || rest.split('/').any(|s| s.is_empty() || s == "." || s == "..")) {
            return Err(StoreError::OutsideRun { run_id: run_id.to_string(), uri: self.uri(path) });
        }
        match &self.backend {
            Backend::Objects(_, Some(directory)) => {
                let file = directory.join(path);
                match tokio::fs::remove_file(&file).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StoreError::CreateDir { path: file.display().to_string(), source: e })
                    }
                    _ => {}
                }
                // Empty directories up to and including the run's; a non-empty one stops it.
                let run_dir = directory.join(run_id.as_str());
                for parent in file.ancestors().skip(1).take_while(|p| p.starts_with(&run_dir)) {
                    if tokio::fs::remove_dir(parent).await.is_err() {
                        break;
                    }
                }
                Ok(())
            }
            Backend::Objects(store, None) => match store.delete(&Path::from(self.key(path))).await {
                Ok(()) => Ok(()),
                Err(error) if object_kind(&error) == ErrorKind::NotFound => Ok(()),
                Err(source) => Err(StoreError::Object { action: "delete", uri: self.uri(path), source }),
            },
            Backend::Gcs(gcs) => Ok(gcs.delete(&self.key(path)).await?),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::run::{ClaimError, Cleanup, RunClaim};

    /// An in-memory store and one on local disk under `dir`: the backends that enforce
    /// create-only writes without a service.
    pub(crate) fn memory_and_local(dir: &std::path::Path) -> [Store; 2] {
        [Store::open("memory://", &GcsOptions::default()).unwrap(), Store::open(dir.to_str().unwrap(), &GcsOptions::default()).unwrap()]
    }

    /// The same checks for every backend the tests can reach (GCS in tests/it).
    pub async fn store_conformance(store: &Store) {
        let (tx, rx) = mpsc::channel(4);
        let upload = tokio::spawn({
            let store = store.clone();
            async move { store.upload("run/t/part-p0000-s00000.parquet", rx).await }
        });
        let data = vec![7u8; CHUNK_BYTES + 10];
        tx.send(Chunk::Data(Bytes::copy_from_slice(&data[..CHUNK_BYTES]))).await.unwrap();
        tx.send(Chunk::Data(Bytes::copy_from_slice(&data[CHUNK_BYTES..]))).await.unwrap();
        tx.send(Chunk::Finish).await.unwrap();
        let stored = upload.await.unwrap().unwrap();
        assert_eq!(stored.bytes, data.len() as u64);
        assert_eq!(stored.crc32c, crc32c_base64(crc32c::crc32c(&data)));
        assert_eq!(store.get("run/t/part-p0000-s00000.parquet").await.unwrap().as_ref(), &data[..]);

        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"half"))).await.unwrap();
        drop(tx);
        assert!(matches!(store.upload("run/t/part-p0000-s00001.parquet", rx).await, Err(StoreError::Abandoned { .. })));
        assert!(!store.exists("run/t/part-p0000-s00001.parquet").await.unwrap());

        assert!(store.put_if_absent("run/manifest.json", Bytes::from_static(b"{}")).await.unwrap());
        assert_eq!(store.list("run").await.unwrap().len(), 2);
        // A committed run: a claim on it deletes nothing but itself.
        let claim = RunClaim::take(store, &RunId::parse("run").unwrap(), false).await.unwrap();
        assert!(matches!(claim.delete_run_objects(Cleanup::EarlierAttempts).await, Err(ClaimError::Committed { .. })));
        claim.delete_run_objects(Cleanup::ClaimOnly).await.unwrap();
        assert_eq!(store.list("run").await.unwrap().len(), 2);
        // An uncommitted run: its holder removes all of it, and nothing beside it.
        assert!(store.put_if_absent("rerun/t/part-p0000-s00000.parquet", Bytes::from_static(b"x")).await.unwrap());
        let claim = RunClaim::take(store, &RunId::parse("rerun").unwrap(), false).await.unwrap();
        assert_eq!(claim.delete_run_objects(Cleanup::Everything).await.unwrap(), 1);
        assert!(store.list("rerun").await.unwrap().is_empty());
        assert_eq!(store.list("run").await.unwrap().len(), 2);

        // An escaped table directory is the object's name; a name a store would rename is refused.
        let odd = "odd/public.a+2Fb+20+C3+BC/part-p0000-s00000.parquet";
        assert!(store.put_if_absent(odd, Bytes::from_static(b"y")).await.unwrap());
        let listed: Vec<String> = store.list("odd").await.unwrap().into_iter().map(|o| o.path).collect();
        assert_eq!(listed, [odd]);
        assert_eq!(store.get(&listed[0]).await.unwrap().as_ref(), b"y");
        for bad in ["odd/t.Tablé/x", "odd/100%/x", "odd/../x", "odd/a\\b/x"] {
            let error = store.put_if_absent(bad, Bytes::from_static(b"z")).await.unwrap_err();
            assert!(matches!(error, StoreError::Unrepresentable { .. }), "{bad}: {error}");
            assert!(matches!(upload_bytes(store, bad, b"z").await, Err(StoreError::Unrepresentable { .. })), "{bad}");
        }
    }

    async fn upload_bytes(store: &Store, path: &str, data: &'static [u8]) -> Result<StoredObject, StoreError> {
        let (tx, rx) = mpsc::channel(2);
        tx.send(Chunk::Data(Bytes::from_static(data))).await.unwrap();
        tx.send(Chunk::Finish).await.unwrap();
        store.upload(path, rx).await
    }

    /// Data files are create-only where the backend enforces it (fake-gcs ignores the
    /// precondition on resumable uploads; real GCS honours it).
    #[tokio::test]
    async fn data_files_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        for store in memory_and_local(dir.path()) {
            upload_bytes(&store, "r/t/f.parquet", b"first").await.unwrap();
            assert!(matches!(upload_bytes(&store, "r/t/f.parquet", b"second").await, Err(StoreError::Exists { .. })));
            assert_eq!(store.get("r/t/f.parquet").await.unwrap().as_ref(), b"first");
        }
    }

    #[tokio::test]
    async fn in_memory_store_conforms() {
        store_conformance(&Store::open("memory://", &GcsOptions::default()).unwrap()).await;
    }

    #[tokio::test]
    async fn local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        store_conformance(&Store::open(dir.path().to_str().unwrap(), &GcsOptions::default()).unwrap()).await;
    }

    #[tokio::test]
    async fn gcs_store_conforms() {
        let Ok(host) = std::env::var("STORAGE_EMULATOR_HOST") else {
            assert!(std::env::var_os("PG2BQ_TEST_STRICT").is_none(), "STORAGE_EMULATOR_HOST is not set but PG2BQ_TEST_STRICT is");
            eprintln!("skipped: STORAGE_EMULATOR_HOST is not set (scripts/test.sh starts fake-gcs-server)");
            return;
        };
        let bucket = std::env::var("PG2BQ_TEST_GCS_BUCKET").unwrap_or_else(|_| "pg2bq-test".into());
        let prefix = format!("gs://{bucket}/conformance-{}", std::process::id());
        let options = GcsOptions { emulator_host: Some(host), application_credentials: None };
        store_conformance(&Store::open(&prefix, &options).unwrap()).await;
    }

    /// The manifest is the commit point: a second create must not overwrite it.
    #[tokio::test]
    async fn manifest_is_created_once() {
        let store = Store::open("memory://", &GcsOptions::default()).unwrap();
        assert!(store.put_if_absent("r/manifest.json", Bytes::from_static(b"1")).await.unwrap());
        assert!(!store.put_if_absent("r/manifest.json", Bytes::from_static(b"2")).await.unwrap());
        assert_eq!(store.get("r/manifest.json").await.unwrap().as_ref(), b"1");
    }
}
