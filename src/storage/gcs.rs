//! Google Cloud Storage through its JSON API: resumable uploads for data files, a
//! create-only upload for the manifest, reads, listing and deletes.
//!
//! object_store's GCS backend writes through the XML API, which fake-gcs-server does not
//! implement; the JSON API works on both, so production and tests share this one write path.
//! Tokens come from [`crate::gcp::credentials`] (service account file, ADC, metadata server);
//! against an emulator no token is sent.
//!
//! Requests are retried on 429/5xx and connection failures (see [`crate::gcp::retry`]) where that
//! is safe: reads, lists, deletes and starting an upload session are simply repeated; a
//! resumable chunk is resumed from the range the session says it persisted; a create-only
//! upload that answers 412 after a retry is read back to tell our own lost success from
//! another writer's object.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;

use crate::gcp::credentials::{CredentialsError, TokenSource};
use crate::gcp::retry::{is_transient_error, is_transient_status, retry, status_kind, Attempt, Failed, RetryPolicy};
use crate::model::error_kind::ErrorKind;

/// Resumable upload chunks must be multiples of 256 KiB.
pub const CHUNK_BYTES: usize = 32 * 256 * 1024;

/// A failed GCS request, with what we were doing and the object.
#[derive(Debug, thiserror::Error)]
pub enum GcsError {
    #[error("GCS {action} `gs://{bucket}/{object}` failed (gave up after {attempts} attempt(s))")]
    Request {
        action: &'static str,
        bucket: String,
        object: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("GCS {action} `gs://{bucket}/{object}` answered HTTP {status} (after {attempts} attempt(s)): {body}")]
    Status { action: &'static str, bucket: String, object: String, status: StatusCode, attempts: u32, body: String },
    #[error("GCS {action} `gs://{bucket}/{object}` answered with an unreadable body")]
    Decode {
        action: &'static str,
        bucket: String,
        object: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "GCS upload session of `gs://{bucket}/{object}` holds {persisted} bytes, fewer than the {sent} already sent: restart the export"
    )]
    UploadLost { bucket: String, object: String, persisted: u64, sent: u64 },
    #[error("GCS upload session of `gs://{bucket}/{object}` stays at {persisted} bytes after {attempts} attempt(s)")]
    UploadStalled { bucket: String, object: String, persisted: u64, attempts: u32 },
    #[error("GCS credentials could not be obtained")]
    Credentials {
        #[source]
        source: CredentialsError,
    },
    #[error("GCS resumable upload of `gs://{bucket}/{object}` returned no session location")]
    NoSession { bucket: String, object: String },
}

impl GcsError {
    /// The kind of failure: an error status's kind, a connection that failed or an upload
    /// session that lost or kept its bytes is transient, missing credentials are permission.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Request { source, .. } if is_transient_error(source) => ErrorKind::Transient,
            Self::Status { status, .. } => status_kind(*status).unwrap_or(ErrorKind::Invalid),
            Self::UploadLost { .. } | Self::UploadStalled { .. } => ErrorKind::Transient,
            Self::Credentials { .. } => ErrorKind::Permission,
            Self::Request { .. } | Self::Decode { .. } | Self::NoSession { .. } => ErrorKind::Invalid,
        }
    }
}

/// Where to reach GCS and how to authenticate.
#[derive(Debug, Clone, Default)]
pub struct GcsOptions {
    /// `http://host:port` of an emulator (STORAGE_EMULATOR_HOST); no credentials are used.
    pub emulator_host: Option<String>,
    /// A service-account or ADC JSON file (GOOGLE_APPLICATION_CREDENTIALS).
    pub application_credentials: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GcsClient {
    http: reqwest::Client,
    base_url: String,
    pub bucket: String,
    credentials: TokenSource,
}

#[derive(Debug, Deserialize)]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectMeta>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

/// The metadata fields we use.
#[derive(Debug, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, deserialize_with = "size_from_string")]
    pub size: u64,
    /// Base64 of the big-endian CRC32C, as GCS reports it.
    pub crc32c: Option<String>,
}

/// A whole answer: status, headers and body, read before deciding whether to retry (a
/// connection cut mid-body is a transient failure like any other).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    attempts: u32,
}

/// Per request: generous for an 8 MiB chunk on a slow link, finite for a server that hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn size_from_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl GcsClient {
    /// # Errors
    /// [`GcsError::Credentials`] when no credential chain can be built for real GCS.
    pub fn new(bucket: &str, options: &GcsOptions) -> Result<Self, GcsError> {
        let credentials = TokenSource::for_service(options.emulator_host.as_deref(), options.application_credentials.as_deref())
            .map_err(|source| GcsError::Credentials { source })?;
        let base_url = match &options.emulator_host {
            Some(host) => host.trim_end_matches('/').to_string(),
            None => "https://storage.googleapis.com".to_string(),
        };
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(CONNECT_TIMEOUT).build().map_err(|source| {
            GcsError::Request { action: "build an HTTP client for", bucket: bucket.to_string(), object: String::new(), attempts: 0, source }
        })?;
        Ok(Self { http, base_url, bucket: bucket.to_string(), credentials })
    }

    async fn request(&self, method: Method, url: String) -> Result<RequestBuilder, GcsError> {
        let builder = self.http.request(method, url);
        match self.credentials.bearer().await.map_err(|source| GcsError::Credentials { source })? {
            None => Ok(builder),
            Some(token) => Ok(builder.bearer_auth(token)),
        }
    }

    /// Sends `method url` as `build` completes it, once, and reads the whole answer.
    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        build: &impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Result<(StatusCode, HeaderMap, Bytes), reqwest::Error>, GcsError> {
        let response = match build(self.request(method.clone(), url.to_string()).await?).send().await {
            Ok(response) => response,
            Err(error) => return Ok(Err(error)),
        };
        let (status, headers) = (response.status(), response.headers().clone());
        Ok(response.bytes().await.map(|body| (status, headers, body)))
    }

    /// Sends a request that is safe to repeat, repeating it after transient failures (429,
    /// 5xx, connection errors) with jittered exponential backoff. A transient status that
    /// comes when the time is spent is returned as the answer, for the caller to report.
    async fn send(
        &self,
        action: &'static str,
        object: &str,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Answer, GcsError> {
        let (method, build) = (&method, &build);
        let what = format!("GCS {action} `gs://{}/{object}`", self.bucket);
        let attempt = |attempts| async move {
            match self.send_once(method, url, build).await {
                Err(error) => Attempt::Permanent(Failure::Gcs(error)),
                Ok(Ok((status, headers, body))) if is_transient_status(status) => {
                    Attempt::Transient(Failure::Status(Answer { status, headers, body, attempts }))
                }
                Ok(Ok((status, headers, body))) => Attempt::Done(Answer { status, headers, body, attempts }),
                Ok(Err(source)) => Failure::request(source),
            }
        };
        match retry(RetryPolicy::REQUESTS, &what, attempt).await {
            Ok(answer) | Err(Failed { error: Failure::Status(answer), .. }) => Ok(answer),
            Err(failed) => Err(self.failure_error(action, object, failed)),
        }
    }

    /// The error a request ends with after its last attempt.
    fn failure_error(&self, action: &'static str, object: &str, Failed { error, attempts }: Failed<Failure>) -> GcsError {
        match error {
            Failure::Status(answer) => self.status_error(action, object, &answer),
            Failure::Request(source) => self.request_error(action, object, attempts, source),
            Failure::Stalled(persisted) => {
                GcsError::UploadStalled { bucket: self.bucket.clone(), object: object.to_string(), persisted, attempts }
            }
            Failure::Gcs(error) => error,
        }
    }

    /// The error without its URL: a resumable session URL lets anyone holding it write the object.
    fn request_error(&self, action: &'static str, object: &str, attempts: u32, source: reqwest::Error) -> GcsError {
        GcsError::Request { action, bucket: self.bucket.clone(), object: object.to_string(), attempts, source: source.without_url() }
    }

    fn status_error(&self, action: &'static str, object: &str, answer: &Answer) -> GcsError {
        let body = String::from_utf8_lossy(&answer.body).chars().take(500).collect();
        GcsError::Status {
            action,
            bucket: self.bucket.clone(),
            object: object.to_string(),
            status: answer.status,
            attempts: answer.attempts,
            body,
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, action: &'static str, object: &str, answer: &Answer) -> Result<T, GcsError> {
        serde_json::from_slice(&answer.body).map_err(|source| GcsError::Decode {
            action,
            bucket: self.bucket.clone(),
            object: object.to_string(),
            source,
        })
    }

    fn object_url(&self, object: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.base_url, self.bucket, encode(object))
    }

    /// Starts a create-only resumable upload (`ifGenerationMatch=0`: GCS refuses to replace an
    /// existing object; fake-gcs-server ignores the precondition here) and returns its session URL.
    /// Repeating it is safe: a session whose answer was lost is never used and expires.
    pub async fn start_upload(&self, object: &str) -> Result<String, GcsError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&ifGenerationMatch=0&name={}",
            self.base_url,
            self.bucket,
            encode(object)
        );
        let answer = self
            .send("start upload of", object, Method::POST, &url, |b| {
                b.header("X-Upload-Content-Type", "application/octet-stream").json(&serde_json::json!({}))
            })
            .await?;
        if !answer.status.is_success() {
            return Err(self.status_error("start upload of", object, &answer));
        }
        answer
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| GcsError::NoSession { bucket: self.bucket.clone(), object: object.to_string() })
    }

    /// Sends bytes `offset..offset+chunk.len()`; `total` is set on the last chunk only.
    ///
    /// After a transient failure, and whenever the session persisted less than was sent, it asks
    /// the session how many bytes it holds and sends the rest from there, within the retry
    /// policy's time. Returns the object's metadata once the last chunk completes it.
    ///
    /// # Errors
    /// [`GcsError::UploadLost`] when the session holds fewer bytes than this chunk's start.
    pub async fn upload_chunk(
        &self,
        session: &str,
        object: &str,
        offset: u64,
        chunk: Bytes,
        total: Option<u64>,
    ) -> Result<Option<ObjectMeta>, GcsError> {
        let end = offset + chunk.len() as u64;
        let upload =
            ChunkUpload { session, object, offset, end, chunk, total, from: AtomicU64::new(offset), ask_first: AtomicBool::new(false) };
        let what = format!("GCS upload of a chunk of `gs://{}/{object}`", self.bucket);
        let upload = &upload;
        retry(RetryPolicy::REQUESTS, &what, |attempts| self.upload_attempt(upload, attempts))
            .await
            .map_err(|failed| self.failure_error("upload", object, failed))
    }

    /// One attempt of [`Self::upload_chunk`]: after a failure, asks the session what it holds;
    /// then sends the rest of the chunk for as long as the session keeps more of it.
    async fn upload_attempt(&self, upload: &ChunkUpload<'_>, attempts: u32) -> Attempt<Option<ObjectMeta>, Failure> {
        let mut state = None;
        if upload.ask_first.swap(false, Ordering::Relaxed) {
            match self.upload_status(upload.session, upload.object, upload.total).await {
                Ok(known) => state = Some(known),
                Err(error) => return Attempt::Permanent(Failure::Gcs(error)),
            }
        }
        loop {
            let state = match state.take() {
                Some(state) => state,
                None => match self.send_chunk(upload, attempts).await {
                    Ok(state) => state,
                    Err(failed) => return failed,
                },
            };
            if let ControlFlow::Break(outcome) = self.after_chunk(upload, state) {
                return outcome;
            }
        }
    }

    /// Sends the chunk from the first byte the session may lack; a transient failure makes the
    /// next attempt ask the session first.
    async fn send_chunk(&self, upload: &ChunkUpload<'_>, attempts: u32) -> Result<UploadState, Attempt<Option<ObjectMeta>, Failure>> {
        let from = upload.from.load(Ordering::Relaxed);
        let part = upload.chunk.slice((from - upload.offset) as usize..);
        let range = match (part.is_empty(), upload.total) {
            (true, Some(total)) => format!("bytes */{total}"),
            (_, total) => format!("bytes {from}-{}/{}", upload.end - 1, total.map_or("*".to_string(), |t| t.to_string())),
        };
        let build = |b: RequestBuilder| b.header(reqwest::header::CONTENT_RANGE, range.as_str()).body(part.clone());
        let failed = match self.send_once(&Method::PUT, upload.session, &build).await {
            Err(error) => Attempt::Permanent(Failure::Gcs(error)),
            Ok(Ok((status, headers, body))) => {
                let answer = Answer { status, headers, body, attempts };
                match upload_state(&answer) {
                    Some(state) => return Ok(state),
                    None if is_transient_status(status) => Attempt::Transient(Failure::Status(answer)),
                    None => Attempt::Permanent(Failure::Status(answer)),
                }
            }
            Ok(Err(source)) => Failure::request(source),
        };
        upload.ask_first.store(matches!(failed, Attempt::Transient(_)), Ordering::Relaxed);
        Err(failed)
    }

    /// What the session's state means for the chunk: finished, failed, stalled (no byte more
    /// than before: worth a pause), or sent on from where the session stands.
    fn after_chunk(&self, upload: &ChunkUpload<'_>, state: UploadState) -> ControlFlow<Attempt<Option<ObjectMeta>, Failure>> {
        let persisted = match state {
            UploadState::Complete(answer) if upload.total.is_some() => {
                return ControlFlow::Break(match self.decode("upload", upload.object, &answer) {
                    Ok(meta) => Attempt::Done(Some(meta)),
                    Err(error) => Attempt::Permanent(Failure::Gcs(error)),
                });
            }
            UploadState::Complete(answer) => {
                let error = self.status_error("upload (session already complete)", upload.object, &answer);
                return ControlFlow::Break(Attempt::Permanent(Failure::Gcs(error)));
            }
            UploadState::Persisted(persisted) => persisted,
        };
        if persisted < upload.offset {
            let lost =
                GcsError::UploadLost { bucket: self.bucket.clone(), object: upload.object.to_string(), persisted, sent: upload.offset };
            return ControlFlow::Break(Attempt::Permanent(Failure::Gcs(lost)));
        }
        if persisted >= upload.end && upload.total.is_none() {
            return ControlFlow::Break(Attempt::Done(None));
        }
        let from = upload.from.swap(persisted.min(upload.end), Ordering::Relaxed);
        // A session that keeps none of what we send would loop forever: that counts as a failure.
        match persisted <= from && from < upload.end {
            true => ControlFlow::Break(Attempt::Transient(Failure::Stalled(persisted))),
            false => ControlFlow::Continue(()),
        }
    }

    /// What an upload session holds: asks with `Content-Range: bytes */<total or *>` and no body
    /// (GCS answers 308 with the persisted `Range`, or the object once complete). Repeated after
    /// transient failures like any read.
    async fn upload_status(&self, session: &str, object: &str, total: Option<u64>) -> Result<UploadState, GcsError> {
        let range = format!("bytes */{}", total.map_or("*".to_string(), |t| t.to_string()));
        let answer = self
            .send("ask the upload session of", object, Method::PUT, session, |b| b.header(reqwest::header::CONTENT_RANGE, range.as_str()))
            .await?;
        upload_state(&answer).ok_or_else(|| self.status_error("ask the upload session of", object, &answer))
    }

    /// Uploads `data` only if no object of that name exists (`ifGenerationMatch=0`, sent with a
    /// multipart upload: fake-gcs-server enforces the precondition only there).
    /// Returns `false` when the object already existed.
    ///
    /// Retried after transient failures. A 412 after a retry may be our own earlier attempt,
    /// whose answer was lost: the object is read back, and counts as ours if its bytes equal
    /// `data`. So `data` must be unique to this writer (a manifest holds its run's times).
    pub async fn put_if_absent(&self, object: &str, data: Bytes) -> Result<bool, GcsError> {
        let url = format!("{}/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch=0", self.base_url, self.bucket);
        let boundary = "pg2bq-manifest-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n",
            serde_json::json!({ "name": object })
        )
        .into_bytes();
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = Bytes::from(body);
        let answer = self
            .send("create", object, Method::POST, &url, |b| {
                b.header(reqwest::header::CONTENT_TYPE, format!("multipart/related; boundary={boundary}")).body(body.clone())
            })
            .await?;
        match status_kind(answer.status) {
            Some(ErrorKind::Precondition) if answer.attempts > 1 => Ok(self.get(object).await? == data),
            Some(ErrorKind::Precondition) => Ok(false),
            None => Ok(true),
            Some(_) => Err(self.status_error("create", object, &answer)),
        }
    }

    /// Object metadata, `None` when absent.
    pub async fn head(&self, object: &str) -> Result<Option<ObjectMeta>, GcsError> {
        let answer = self.send("read metadata of", object, Method::GET, &self.object_url(object), |b| b).await?;
        match status_kind(answer.status) {
            Some(ErrorKind::NotFound) => Ok(None),
            None => self.decode("read metadata of", object, &answer).map(Some),
            Some(_) => Err(self.status_error("read metadata of", object, &answer)),
        }
    }

    pub async fn get(&self, object: &str) -> Result<Bytes, GcsError> {
        let answer = self.send("read", object, Method::GET, &format!("{}?alt=media", self.object_url(object)), |b| b).await?;
        if !answer.status.is_success() {
            return Err(self.status_error("read", object, &answer));
        }
        Ok(answer.body)
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, GcsError> {
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!("{}/storage/v1/b/{}/o?prefix={}", self.base_url, self.bucket, encode(prefix));
            if let Some(token) = &page_token {
                url.push_str(&format!("&pageToken={}", encode(token)));
            }
            let answer = self.send("list", prefix, Method::GET, &url, |b| b).await?;
            if !answer.status.is_success() {
                return Err(self.status_error("list", prefix, &answer));
            }
            let page: ObjectList = self.decode("list", prefix, &answer)?;
            out.extend(page.items);
            match page.next_page_token {
                Some(token) => page_token = Some(token),
                None => return Ok(out),
            }
        }
    }

    /// Deletes an object; one already gone (also after a retry whose first attempt worked) is fine.
    pub async fn delete(&self, object: &str) -> Result<(), GcsError> {
        let answer = self.send("delete", object, Method::DELETE, &self.object_url(object), |b| b).await?;
        match status_kind(answer.status) {
            None | Some(ErrorKind::NotFound) => Ok(()),
            Some(_) => Err(self.status_error("delete", object, &answer)),
        }
    }
}

/// Why an attempt of a request gave no answer to return.
enum Failure {
    /// An HTTP status; a transient one that comes when the time is spent is the answer.
    Status(Answer),
    /// The request or its answer failed on the way (the error holds no URL: a session URL is
    /// a credential).
    Request(reqwest::Error),
    /// The upload session kept no byte more than it held before (it holds this many).
    Stalled(u64),
    /// A failure no repetition changes (credentials, an unreadable answer, a lost session).
    Gcs(GcsError),
}

impl Failure {
    /// A failed request: transient when the connection failed, not the request.
    fn request<T>(source: reqwest::Error) -> Attempt<T, Self> {
        match is_transient_error(&source) {
            true => Attempt::Transient(Self::Request(source.without_url())),
            false => Attempt::Permanent(Self::Request(source.without_url())),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(answer) => write!(f, "HTTP {}", answer.status),
            Self::Request(source) => write!(f, "{source}"),
            Self::Stalled(persisted) => write!(f, "the upload session stays at {persisted} bytes"),
            Self::Gcs(error) => write!(f, "{error}"),
        }
    }
}

/// One chunk of a resumable upload, and how far the session has it (atomics only so that the
/// upload's future is `Send`; one attempt runs at a time).
struct ChunkUpload<'a> {
    session: &'a str,
    object: &'a str,
    offset: u64,
    end: u64,
    chunk: Bytes,
    total: Option<u64>,
    /// The first byte the session may not hold.
    from: AtomicU64,
    /// The last attempt failed: ask the session what it holds before sending.
    ask_first: AtomicBool,
}

/// What a resumable session answered: the bytes it holds, or the finished object.
enum UploadState {
    Persisted(u64),
    Complete(Answer),
}

/// 308 → the bytes persisted (`Range: bytes=0-N` → N+1; none yet → 0); 200/201 → complete;
/// anything else → `None`.
fn upload_state(answer: &Answer) -> Option<UploadState> {
    match answer.status {
        StatusCode::PERMANENT_REDIRECT => {
            let range = answer.headers.get(reqwest::header::RANGE).and_then(|v| v.to_str().ok());
            let last = range.and_then(|r| r.rsplit_once('-')).and_then(|(_, last)| last.parse::<u64>().ok());
            Some(UploadState::Persisted(last.map_or(0, |last| last + 1)))
        }
        StatusCode::OK | StatusCode::CREATED => {
            Some(UploadState::Complete(Answer { body: answer.body.clone(), headers: answer.headers.clone(), ..*answer }))
        }
        _ => None,
    }
}

/// Percent-encodes an object name for a URL path segment or query value.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, range: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(range) = range {
            headers.insert(reqwest::header::RANGE, range.parse().unwrap());
        }
        Answer { status: StatusCode::from_u16(status).unwrap(), headers, body: Bytes::new(), attempts: 1 }
    }

    #[test]
    fn session_answers_say_how_many_bytes_it_holds() {
        let persisted = |a: &Answer| match upload_state(a) {
            Some(UploadState::Persisted(n)) => Some(n),
            _ => None,
        };
        assert_eq!(persisted(&answer(308, Some("bytes=0-262143"))), Some(262_144));
        assert_eq!(persisted(&answer(308, None)), Some(0));
        assert!(matches!(upload_state(&answer(200, None)), Some(UploadState::Complete(_))));
        assert!(matches!(upload_state(&answer(201, None)), Some(UploadState::Complete(_))));
        assert!(upload_state(&answer(503, None)).is_none());
        assert!(upload_state(&answer(404, None)).is_none());
    }
}
