//! Google Cloud Storage through its JSON API: resumable uploads for data files, a
//! create-only upload for the manifest, reads, listing and deletes.
//!
//! object_store's GCS backend writes through the XML API, which fake-gcs-server does not
//! implement; the JSON API works on both, so production and tests share this one write path.
//! Credentials come from object_store's GCP credential chain (ADC, service account file,
//! metadata server); against an emulator no token is sent.

use bytes::Bytes;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;

/// Resumable upload chunks must be multiples of 256 KiB.
pub const CHUNK_BYTES: usize = 32 * 256 * 1024;

/// A failed GCS request, with what we were doing and the object.
#[derive(Debug, thiserror::Error)]
pub enum GcsError {
    #[error("GCS {action} `gs://{bucket}/{object}` failed")]
    Request {
        action: &'static str,
        bucket: String,
        object: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GCS {action} `gs://{bucket}/{object}` answered HTTP {status}: {body}")]
    Status { action: &'static str, bucket: String, object: String, status: StatusCode, body: String },
    #[error("GCS credentials could not be obtained")]
    Credentials {
        #[source]
        source: object_store::Error,
    },
    #[error("GCS resumable upload of `gs://{bucket}/{object}` returned no session location")]
    NoSession { bucket: String, object: String },
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
    credentials: Option<GcpCredentialProvider>,
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

fn size_from_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl GcsClient {
    /// # Errors
    /// [`GcsError::Credentials`] when no credential chain can be built for real GCS.
    pub fn new(bucket: &str, options: &GcsOptions) -> Result<Self, GcsError> {
        let (base_url, credentials) = match &options.emulator_host {
            Some(host) => (host.trim_end_matches('/').to_string(), None),
            None => {
                let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
                if let Some(path) = &options.application_credentials {
                    builder = builder.with_application_credentials(path);
                }
                let store = builder.build().map_err(|source| GcsError::Credentials { source })?;
                ("https://storage.googleapis.com".to_string(), Some(store.credentials().clone()))
            }
        };
        Ok(Self { http: reqwest::Client::new(), base_url, bucket: bucket.to_string(), credentials })
    }

    async fn request(&self, method: Method, url: String) -> Result<RequestBuilder, GcsError> {
        let builder = self.http.request(method, url);
        match &self.credentials {
            None => Ok(builder),
            Some(provider) => {
                let token = provider.get_credential().await.map_err(|source| GcsError::Credentials { source })?;
                Ok(builder.bearer_auth(&token.bearer))
            }
        }
    }

    async fn send(&self, action: &'static str, object: &str, builder: RequestBuilder) -> Result<reqwest::Response, GcsError> {
        let response = builder.send().await.map_err(|source| self.request_error(action, object, source))?;
        Ok(response)
    }

    fn request_error(&self, action: &'static str, object: &str, source: reqwest::Error) -> GcsError {
        GcsError::Request { action, bucket: self.bucket.clone(), object: object.to_string(), source }
    }

    async fn status_error(&self, action: &'static str, object: &str, response: reqwest::Response) -> GcsError {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        GcsError::Status { action, bucket: self.bucket.clone(), object: object.to_string(), status, body: body.chars().take(500).collect() }
    }

    fn object_url(&self, object: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.base_url, self.bucket, encode(object))
    }

    /// Starts a create-only resumable upload (`ifGenerationMatch=0`: GCS refuses to replace an
    /// existing object; fake-gcs-server ignores the precondition here) and returns its session URL.
    pub async fn start_upload(&self, object: &str) -> Result<String, GcsError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&ifGenerationMatch=0&name={}",
            self.base_url,
            self.bucket,
            encode(object)
        );
        let builder =
            self.request(Method::POST, url).await?.header("X-Upload-Content-Type", "application/octet-stream").json(&serde_json::json!({}));
        let response = self.send("start upload of", object, builder).await?;
        if !response.status().is_success() {
            return Err(self.status_error("start upload of", object, response).await);
        }
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| GcsError::NoSession { bucket: self.bucket.clone(), object: object.to_string() })
    }

    /// Sends bytes `offset..offset+chunk.len()`; `total` is set on the last chunk only.
    pub async fn upload_chunk(
        &self,
        session: &str,
        object: &str,
        offset: u64,
        chunk: Bytes,
        total: Option<u64>,
    ) -> Result<Option<ObjectMeta>, GcsError> {
        let range = match (chunk.is_empty(), total) {
            (true, Some(total)) => format!("bytes */{total}"),
            (_, total) => {
                format!("bytes {offset}-{}/{}", offset + chunk.len() as u64 - 1, total.map_or("*".to_string(), |t| t.to_string()))
            }
        };
        let builder = self.request(Method::PUT, session.to_string()).await?.header(reqwest::header::CONTENT_RANGE, range).body(chunk);
        let response = self.send("upload", object, builder).await?;
        match response.status() {
            StatusCode::PERMANENT_REDIRECT if total.is_none() => Ok(None),
            status if status.is_success() && total.is_some() => {
                let meta = response.json::<ObjectMeta>().await.map_err(|source| self.request_error("upload", object, source))?;
                Ok(Some(meta))
            }
            _ => Err(self.status_error("upload", object, response).await),
        }
    }

    /// Uploads `data` only if no object of that name exists (`ifGenerationMatch=0`, sent with a
    /// multipart upload: fake-gcs-server enforces the precondition only there).
    /// Returns `false` when the object already existed.
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
        let builder = self
            .request(Method::POST, url)
            .await?
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/related; boundary={boundary}"))
            .body(body);
        let response = self.send("create", object, builder).await?;
        match response.status() {
            StatusCode::PRECONDITION_FAILED => Ok(false),
            status if status.is_success() => Ok(true),
            _ => Err(self.status_error("create", object, response).await),
        }
    }

    /// Object metadata, `None` when absent.
    pub async fn head(&self, object: &str) -> Result<Option<ObjectMeta>, GcsError> {
        let builder = self.request(Method::GET, self.object_url(object)).await?;
        let response = self.send("read metadata of", object, builder).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                Ok(Some(response.json().await.map_err(|source| self.request_error("read metadata of", object, source))?))
            }
            _ => Err(self.status_error("read metadata of", object, response).await),
        }
    }

    pub async fn get(&self, object: &str) -> Result<Bytes, GcsError> {
        let builder = self.request(Method::GET, format!("{}?alt=media", self.object_url(object))).await?;
        let response = self.send("read", object, builder).await?;
        if !response.status().is_success() {
            return Err(self.status_error("read", object, response).await);
        }
        response.bytes().await.map_err(|source| self.request_error("read", object, source))
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
            let builder = self.request(Method::GET, url).await?;
            let response = self.send("list", prefix, builder).await?;
            if !response.status().is_success() {
                return Err(self.status_error("list", prefix, response).await);
            }
            let page: ObjectList = response.json().await.map_err(|source| self.request_error("list", prefix, source))?;
            out.extend(page.items);
            match page.next_page_token {
                Some(token) => page_token = Some(token),
                None => return Ok(out),
            }
        }
    }

    pub async fn delete(&self, object: &str) -> Result<(), GcsError> {
        let builder = self.request(Method::DELETE, self.object_url(object)).await?;
        let response = self.send("delete", object, builder).await?;
        match response.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.status_error("delete", object, response).await),
        }
    }
}

/// Percent-encodes an object name for a URL path segment or query value.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}
