//! The BigQuery REST calls pg2bq makes: through gcp-bigquery-client where its API and models
//! fit (datasets get/create, tables delete, jobs.get, jobs.getQueryResults, dry-run jobs.query),
//! as raw JSON over the same HTTP client where they do not: jobs.insert (its load configuration
//! has no `parquetOptions`), table create/get (our schemas keep BigQuery's own type names; its
//! `FieldType` enum lacks some) and label patches (its `Table` model always sends a schema).
//!
//! The client library reads an error answer only as BigQuery's JSON error; any other answer
//! (an HTML 502 from a front end, a body that does not fit its model) becomes a decode error
//! that hides the HTTP status. Every call made through it is safe to repeat (reads, a create
//! whose 409 means "there", a delete whose 404 means "gone"), so such an answer is retried like
//! a 5xx, and the final error says the status could not be read.
//!
//! Jobs are inserted with caller-chosen ids. A 409 means the id exists: we attach to that job
//! and wait for it instead of loading twice. A DONE job is a success only without `errorResult`.
//! These rules sit in [`BigQueryApi::run_job`], above the calls `load` makes, so they are tested
//! against an in-memory fake as well as the emulator.
//!
//! Every call is retried on 429/5xx and connection failures (see [`crate::gcp::retry`]); each is
//! safe to repeat: reads, inserts under our own job ids (a 409 after a retry is our own earlier
//! attempt), creates whose 409 means "already there", label patches, deletes. Queries run as
//! jobs under fresh ids and their results are read with `getQueryResults` until BigQuery says
//! `jobComplete`, page by page, and checked against `totalRows`: an unfinished or partial
//! answer is an error, never an empty or short result.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::get_query_results_response::GetQueryResultsResponse;
use gcp_bigquery_client::model::query_request::QueryRequest;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::gcp::credentials::{CredentialsError, TokenSource};
use crate::gcp::retry::{is_transient_error, is_transient_status, retry, status_kind, Attempt, Backoff, Failed, RetryPolicy};
use crate::gcp::schema::table_columns;
use crate::model::error_kind::ErrorKind;

/// BigQuery: at most 10,000 source URIs per load job.
pub const MAX_URIS_PER_JOB: usize = 10_000;
/// BigQuery: at most 15 TB per load job.
pub const MAX_BYTES_PER_JOB: u64 = 15_000_000_000_000;
/// BigQuery: load jobs per destination table per day (failed ones count).
pub const DAILY_LOAD_JOBS_PER_TABLE: usize = 1_500;
/// Retries of a job id whose earlier attempt finished with an error: `<id>`, `<id>-r2`, …
pub const JOB_ATTEMPTS: usize = 5;

const BIGQUERY_URL: &str = "https://bigquery.googleapis.com/bigquery/v2";

/// Polls of an unfinished query: 0.2 s doubling to 5 s, for at most an hour (the query keeps
/// running in BigQuery after we give up; the error names its job).
const QUERY_POLL: RetryPolicy =
    RetryPolicy { first_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5), total: Duration::from_secs(3600) };
/// Polls of a load or DML job: as queries, for at most 6 hours (BigQuery's own job time limit).
const JOB_POLL: RetryPolicy = RetryPolicy { total: Duration::from_secs(6 * 3600), ..QUERY_POLL };
/// How long one `getQueryResults` call may wait server-side for the query to finish.
const RESULTS_WAIT_MS: i32 = 10_000;
/// One HTTP request, including a `getQueryResults` that waits [`RESULTS_WAIT_MS`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where BigQuery is and how to authenticate.
#[derive(Debug, Clone, Default)]
pub struct BigQueryOptions {
    /// `http://host:port` of an emulator (BIGQUERY_EMULATOR_HOST): no credentials are sent.
    pub emulator_host: Option<String>,
    /// Service-account or ADC JSON (GOOGLE_APPLICATION_CREDENTIALS).
    pub application_credentials: Option<String>,
    /// The first wait before a statement refused over the streaming buffer is tried again
    /// (then doubling); `None`: [`STREAMING_BUFFER_WAIT`].
    pub streaming_buffer_wait: Option<Duration>,
}

/// The first wait after BigQuery refused a statement over rows in the streaming buffer: 2, 4,
/// 8 and 16 minutes follow, 30 minutes in all.
pub const STREAMING_BUFFER_WAIT: Duration = Duration::from_secs(120);

/// A BigQuery call, as errors and logs name it ("read table `d.t`").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BigQueryStep {
    BuildHttpClient,
    BuildClient,
    ReadDataset { dataset: String },
    CreateDataset { dataset: String },
    ReadTable { dataset: String, table: String },
    CreateTable { dataset: String, table: String },
    DeleteTable { dataset: String, table: String },
    ListTables { dataset: String },
    SetLabels { dataset: String, table: String },
    InsertJob { job_id: String },
    ReadJob { job_id: String },
    Query { sql: String },
    DryRun { sql: String },
}

impl std::fmt::Display for BigQueryStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BuildHttpClient => write!(f, "build an HTTP client"),
            Self::BuildClient => write!(f, "build a BigQuery client"),
            Self::ReadDataset { dataset } => write!(f, "read dataset `{dataset}`"),
            Self::CreateDataset { dataset } => write!(f, "create dataset `{dataset}`"),
            Self::ReadTable { dataset, table } => write!(f, "read table `{dataset}.{table}`"),
            Self::CreateTable { dataset, table } => write!(f, "create table `{dataset}.{table}`"),
            Self::DeleteTable { dataset, table } => write!(f, "delete table `{dataset}.{table}`"),
            Self::ListTables { dataset } => write!(f, "list the tables of dataset `{dataset}`"),
            Self::SetLabels { dataset, table } => write!(f, "label table `{dataset}.{table}`"),
            Self::InsertJob { job_id } => write!(f, "insert job `{job_id}`"),
            Self::ReadJob { job_id } => write!(f, "read job `{job_id}`"),
            Self::Query { sql } => write!(f, "run query `{sql}`"),
            Self::DryRun { sql } => write!(f, "dry-run query `{sql}`"),
        }
    }
}

/// A failed BigQuery call, naming what we were doing.
#[derive(Debug, thiserror::Error)]
pub enum BigQueryError {
    #[error("cannot obtain Google credentials for BigQuery")]
    Credentials {
        #[source]
        source: CredentialsError,
    },
    #[error("BigQuery: failed to {step} (gave up after {attempts} attempt(s))")]
    Http {
        step: BigQueryStep,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("BigQuery: failed to {step} (gave up after {attempts} attempt(s))")]
    Client {
        step: BigQueryStep,
        attempts: u32,
        #[source]
        source: Box<BQError>,
    },
    #[error(
        "BigQuery: {step} got an answer gcp-bigquery-client cannot read, which hides its HTTP status (gave up after {attempts} attempt(s))"
    )]
    UnreadableAnswer {
        step: BigQueryStep,
        attempts: u32,
        #[source]
        source: Box<BQError>,
    },
    #[error("BigQuery: {step} answered HTTP {status} (after {attempts} attempt(s)): {message}")]
    Status { step: BigQueryStep, status: StatusCode, attempts: u32, message: String },
    #[error("BigQuery: {step} answered HTTP {status} with a body that is not JSON")]
    Body {
        step: BigQueryStep,
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
    #[error("BigQuery job `{job_id}` failed: {reasons}")]
    JobFailed { job_id: String, reasons: String },
    #[error("BigQuery job `{job_id}` exists for other work ({difference}): another run with the same run id was loaded into this dataset. Nothing was attached to; load into another dataset, or re-export under another --run-id")]
    OtherRunsJob { job_id: String, difference: String },
    #[error("BigQuery job `{job_id}` was refused because rows of its table are still in BigQuery's streaming buffer (an app writing through the legacy streaming API; rows stay there up to about 90 minutes), after waiting {waited_s} s in all: {reasons}. Nothing was changed by it; re-run later (the load resumes where it stopped), or wait longer with --streaming-buffer-wait")]
    StreamingBuffer { job_id: String, waited_s: u64, reasons: String },
    #[error("BigQuery job `{job_id}` failed in all {JOB_ATTEMPTS} attempts; the last: {reasons}")]
    AttemptsExhausted { job_id: String, reasons: String },
    #[error("dataset `{project}.{dataset}` does not exist; create it or pass --create-dataset")]
    NoDataset { project: String, dataset: String },
    #[error("BigQuery job `{job_id}` was not done after {seconds} s; it may still be running (see `bq show -j {job_id}`): re-run when it is done")]
    NotDone { job_id: String, seconds: u64 },
    #[error("BigQuery query job `{job_id}` returned {read} row(s) in its pages but reports totalRows {total}: the result is incomplete")]
    IncompleteResult { job_id: String, read: usize, total: String },
    #[error("BigQuery query job `{job_id}`: row {row}, column {column} is {found}, not a scalar value")]
    NotScalar { job_id: String, row: usize, column: usize, found: String },
    #[error("BigQuery query `{sql}` returned {rows} row(s) where exactly one was expected")]
    NotOneRow { sql: String, rows: usize },
    #[error("BigQuery query `{sql}`: column {column} is `{value}`, not a count")]
    NotACount { sql: String, column: usize, value: String },
    #[error("BigQuery job `{job_id}` reports {statistic} `{value}`, not a count")]
    StatisticNotACount { job_id: String, statistic: &'static str, value: String },
}

impl BigQueryError {
    /// The kind of failure: an error status's kind, a call that failed transiently until its
    /// attempts were spent, a job that may yet finish or succeed later (not done, streaming
    /// buffer, its attempts spent) is transient, a job id taken by other work already exists.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Credentials { .. } => ErrorKind::Permission,
            Self::Http { source, .. } if is_transient_error(source) => ErrorKind::Transient,
            Self::Client { source, .. } if is_transient_client_error(source) => ErrorKind::Transient,
            Self::Status { status, .. } => status_kind(*status).unwrap_or(ErrorKind::Invalid),
            Self::UnreadableAnswer { .. } | Self::StreamingBuffer { .. } | Self::AttemptsExhausted { .. } | Self::NotDone { .. } => {
                ErrorKind::Transient
            }
            Self::OtherRunsJob { .. } => ErrorKind::AlreadyExists,
            Self::NoDataset { .. } => ErrorKind::NotFound,
            _ => ErrorKind::Invalid,
        }
    }
}

/// The BigQuery calls `load` makes, so that its idempotency rules (a 409 on insert attaches to
/// the job, a failed attempt retries under the next id) are written once, above the client, and
/// tested without BigQuery. [`BigQuery`] is the real one.
#[async_trait]
pub trait BigQueryApi: Send + Sync {
    /// A table's resource, `None` when it does not exist.
    async fn table(&self, dataset: &str, table: &str) -> Result<Option<Value>, BigQueryError>;
    /// Creates a table from its resource (BigQuery's JSON); [`BigQueryError::Status`] 409 when
    /// it exists.
    async fn create_table(&self, dataset: &str, table: &str, resource: &Value) -> Result<(), BigQueryError>;
    /// Deletes a table; one that does not exist is deleted.
    async fn delete_table(&self, dataset: &str, table: &str) -> Result<(), BigQueryError>;
    /// The ids of the dataset's tables, every page read.
    async fn list_tables(&self, dataset: &str) -> Result<Vec<String>, BigQueryError>;
    /// Adds labels to a table (labels already there are kept).
    async fn set_labels(&self, dataset: &str, table: &str, labels: &[(String, String)]) -> Result<(), BigQueryError>;
    /// Inserts a job under `job_id`; `existed` when a job with this id already was there (409).
    async fn insert_job(&self, job_id: &str, configuration: &Value) -> Result<InsertedJob, BigQueryError>;
    /// Waits until a job is DONE; its counts on success, [`BigQueryError::JobFailed`] on error.
    async fn wait_for_job(&self, job_id: &str, location: Option<&str>) -> Result<JobCounts, BigQueryError>;
    /// Whether a job with this id exists, is DONE and succeeded.
    async fn succeeded_job(&self, job_id: &str) -> Result<bool, BigQueryError>;
    /// The `configuration` a job with this id was submitted with, `None` when there is none.
    async fn job_configuration(&self, job_id: &str) -> Result<Option<Value>, BigQueryError>;
    /// The one row of a query that always returns exactly one (an aggregate without GROUP BY).
    async fn query_one_row(&self, sql: &str) -> Result<Row, BigQueryError>;
    /// How long to wait before the `attempt`-th retry (1, 2, …) of a statement BigQuery refused
    /// over rows in the table's streaming buffer.
    fn streaming_buffer_wait(&self, attempt: u32) -> Duration;

    /// The one row of a query of counts (`COUNT(*)`, `COUNTIF(…)`), as numbers.
    ///
    /// # Errors
    /// [`BigQueryError::NotACount`] for a NULL or non-integer value, and as [`Self::query_one_row`].
    async fn query_counts(&self, sql: &str) -> Result<Vec<u64>, BigQueryError> {
        counts(sql, self.query_one_row(sql).await?)
    }

    /// Runs a job to completion under id `base_id` (or `base_id-rN` when earlier attempts
    /// with the lower ids finished with errors). An id that already exists is attached to. A
    /// statement BigQuery refuses because rows of its table are in the streaming buffer (an
    /// app writing through the legacy streaming API; it clears within about 90 minutes) is submitted again under
    /// the next id after [`Self::streaming_buffer_wait`].
    ///
    /// # Errors
    /// [`BigQueryError::JobFailed`] with BigQuery's reasons when the job ends in error,
    /// [`BigQueryError::StreamingBuffer`] when the buffer did not clear over every attempt,
    /// [`BigQueryError::AttemptsExhausted`] when all [`JOB_ATTEMPTS`] ids are spent.
    async fn run_job(&self, base_id: &str, configuration: &Value) -> Result<FinishedJob, BigQueryError> {
        let mut last_failure = String::new();
        let mut buffer_waits = 0;
        for job_id in job_attempt_ids(base_id) {
            let inserted = self.insert_job(&job_id, configuration).await?;
            let reattached = inserted.existed;
            if reattached {
                // Job ids derive from the run id, which another run (from another destination)
                // may share: attach only to a job doing this run's work.
                if let Some(difference) = self.job_configuration(&job_id).await?.and_then(|theirs| other_work(&theirs, configuration)) {
                    return Err(BigQueryError::OtherRunsJob { job_id, difference });
                }
                info!(job_id, "Job already exists: attaching to it instead of submitting again");
            }
            match self.wait_for_job(&job_id, inserted.location.as_deref()).await {
                Ok(counts) => return Ok(FinishedJob { job_id, counts, reattached }),
                Err(BigQueryError::JobFailed { reasons, .. }) if reattached => {
                    // An earlier attempt failed; its id is spent. Try the next one.
                    info!(job_id, reasons, "Earlier attempt of this job failed; retrying under a new id");
                    last_failure = reasons;
                }
                Err(BigQueryError::JobFailed { reasons, .. })
                    if is_streaming_buffer(&reasons) && (buffer_waits as usize) < JOB_ATTEMPTS - 1 =>
                {
                    buffer_waits += 1;
                    let wait = self.streaming_buffer_wait(buffer_waits);
                    warn!(
                        job_id,
                        wait_s = wait.as_secs(),
                        "Rows of the table are in BigQuery's streaming buffer, which refuses DML; waiting, then trying again"
                    );
                    tokio::time::sleep(wait).await;
                    last_failure = reasons;
                }
                Err(BigQueryError::JobFailed { reasons, .. }) if is_streaming_buffer(&reasons) => {
                    let waited: u64 = (1..=buffer_waits).map(|n| self.streaming_buffer_wait(n).as_secs()).sum();
                    return Err(BigQueryError::StreamingBuffer { job_id, waited_s: waited, reasons });
                }
                Err(error) => return Err(error),
            }
        }
        Err(BigQueryError::AttemptsExhausted { job_id: base_id.into(), reasons: last_failure })
    }
}

/// How the work of an existing job (`theirs`, its configuration) differs from `ours`: other
/// files or destination for a load job, another statement for a query job; `None` when same.
pub fn other_work(theirs: &Value, ours: &Value) -> Option<String> {
    let field = |value: &Value, pointer: &str| value.pointer(pointer).cloned().unwrap_or(Value::Null);
    let compared =
        [("/load/sourceUris", "its files"), ("/load/destinationTable/tableId", "its destination"), ("/query/query", "its statement")];
    compared.iter().find(|(pointer, _)| field(theirs, pointer) != field(ours, pointer)).map(|(pointer, what)| {
        let theirs = field(theirs, pointer).to_string();
        format!("{what}: {}", theirs.chars().take(200).collect::<String>())
    })
}

/// The ids [`BigQueryApi::run_job`] gives the attempts of one job: `<id>`, `<id>-r2` … `<id>-r5`.
pub fn job_attempt_ids(base_id: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(base_id.to_string()).chain((2..=JOB_ATTEMPTS).map(move |attempt| format!("{base_id}-r{attempt}")))
}

/// Whether a job's failure is BigQuery refusing DML over rows in the table's streaming buffer.
pub fn is_streaming_buffer(reasons: &str) -> bool {
    reasons.contains("streaming buffer")
}

/// A query's one row as counts.
fn counts(sql: &str, row: Row) -> Result<Vec<u64>, BigQueryError> {
    row.into_iter()
        .enumerate()
        .map(|(column, value)| {
            let value = value.unwrap_or_else(|| "NULL".into());
            value.parse().map_err(|_| BigQueryError::NotACount { sql: sql.into(), column, value })
        })
        .collect()
}

/// The token source as gcp-bigquery-client asks for it. [`BigQuery::client_call`] fetches the
/// token first (object_store caches it), so a credential failure surfaces there with its cause.
#[async_trait]
impl Authenticator for TokenSource {
    async fn access_token(&self) -> Result<String, BQError> {
        self.bearer().await.map(Option::unwrap_or_default).map_err(|_| BQError::NoToken)
    }
}

/// A BigQuery project seen through one authenticated client.
pub struct BigQuery {
    client: gcp_bigquery_client::Client,
    http: reqwest::Client,
    auth: TokenSource,
    base_url: String,
    pub project: String,
    pub location: Option<String>,
    streaming_buffer_wait: Duration,
}

/// Rows loaded or affected, as a DONE job reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobCounts {
    pub output_rows: Option<u64>,
    pub dml_affected_rows: Option<u64>,
    /// A MERGE's `dmlStats`: rows it inserted and updated.
    pub inserted_rows: Option<u64>,
    pub updated_rows: Option<u64>,
}

/// A job run to success under `job_id` (the base id or a retry's).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinishedJob {
    pub job_id: String,
    pub counts: JobCounts,
    /// The job already existed (an earlier run submitted it); we attached to it.
    pub reattached: bool,
}

/// A job as inserted: whether it already existed, and where it runs (for later calls).
#[derive(Debug, Clone, Default)]
pub struct InsertedJob {
    pub existed: bool,
    pub location: Option<String>,
}

/// One query result row, every value as text (BigQuery's REST form), NULL as `None`.
pub type Row = Vec<Option<String>>;

/// A finished call: its status and JSON body (`Null` when empty; an error body that is not
/// JSON becomes a string).
struct Reply {
    status: StatusCode,
    body: Value,
    attempts: u32,
}

/// Why an attempt of a call gave no answer to return.
enum CallFailure {
    /// A transient HTTP status and its body.
    Status(StatusCode, bytes::Bytes),
    /// The request or its answer failed on the way.
    Http(reqwest::Error),
    /// gcp-bigquery-client's call failed.
    Client(BQError),
    /// A failure no repetition changes (credentials, a success that is not JSON).
    Fatal(BigQueryError),
}

impl CallFailure {
    /// The error a call ends with after `attempts` attempts.
    fn into_error(self, step: &BigQueryStep, attempts: u32) -> BigQueryError {
        match self {
            Self::Status(status, bytes) => {
                let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
                BigQuery::status_error(step, status, attempts, &body)
            }
            Self::Http(source) => BigQueryError::Http { step: step.clone(), attempts, source },
            // A BigQuery error answer becomes `Status`, as from `call`, so callers match 404/409 alike.
            Self::Client(BQError::ResponseError { error }) => BigQueryError::Status {
                step: step.clone(),
                status: StatusCode::from_u16(u16::try_from(error.error.code).unwrap_or(0)).unwrap_or(StatusCode::BAD_GATEWAY),
                attempts,
                message: error.error.message,
            },
            Self::Client(BQError::RequestError(source)) if source.is_decode() => {
                BigQueryError::UnreadableAnswer { step: step.clone(), attempts, source: Box::new(BQError::RequestError(source)) }
            }
            Self::Client(source) => BigQueryError::Client { step: step.clone(), attempts, source: Box::new(source) },
            Self::Fatal(error) => error,
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(status, _) => write!(f, "HTTP {status}"),
            Self::Http(source) => write!(f, "{source}"),
            Self::Client(source) => write!(f, "{source}"),
            Self::Fatal(error) => write!(f, "{error}"),
        }
    }
}

/// Every row of a finished query and what it cost.
#[derive(Debug, PartialEq)]
struct QueryResults {
    rows: Vec<Row>,
    bytes_processed: Option<u64>,
}

impl BigQuery {
    /// # Errors
    /// [`BigQueryError::Credentials`] when no Google credentials can be found for real BigQuery.
    pub async fn connect(project: &str, location: Option<String>, options: &BigQueryOptions) -> Result<Self, BigQueryError> {
        let auth = TokenSource::for_service(options.emulator_host.as_deref(), options.application_credentials.as_deref())
            .map_err(|source| BigQueryError::Credentials { source })?;
        let base_url = match &options.emulator_host {
            Some(host) => format!("{}/bigquery/v2", host.trim_end_matches('/')),
            None => BIGQUERY_URL.to_string(),
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|source| BigQueryError::Http { step: BigQueryStep::BuildHttpClient, attempts: 0, source })?;
        let client = gcp_bigquery_client::client_builder::ClientBuilder::new()
            .with_v2_base_url(base_url.clone())
            .with_client(http.clone())
            .build_from_authenticator(Arc::new(auth.clone()))
            .await
            .map_err(|source| BigQueryError::Client { step: BigQueryStep::BuildClient, attempts: 0, source: Box::new(source) })?;
        let streaming_buffer_wait = options.streaming_buffer_wait.unwrap_or(STREAMING_BUFFER_WAIT);
        Ok(Self { client, http, auth, base_url, project: project.to_string(), location, streaming_buffer_wait })
    }

    /// Runs one gcp-bigquery-client call, repeating it after transient failures (see
    /// [`is_transient_client_error`]) with the backoff and deadline of [`Self::call`]. A
    /// BigQuery error answer becomes [`BigQueryError::Status`], so callers match 404/409 alike.
    async fn client_call<T, F, Fut>(&self, step: &BigQueryStep, mut request: F) -> Result<T, BigQueryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BQError>>,
    {
        let attempt = |_| {
            let request = request();
            async move {
                if let Err(source) = self.auth.bearer().await {
                    return Attempt::Permanent(CallFailure::Fatal(BigQueryError::Credentials { source }));
                }
                match request.await {
                    Ok(value) => Attempt::Done(value),
                    Err(error) if is_transient_client_error(&error) => Attempt::Transient(CallFailure::Client(error)),
                    Err(error) => Attempt::Permanent(CallFailure::Client(error)),
                }
            }
        };
        let what = format!("BigQuery: {}", brief(&step.to_string()));
        retry(RetryPolicy::REQUESTS, &what, attempt).await.map_err(|Failed { error, attempts }| error.into_error(step, attempts))
    }

    /// Sends one request under `projects/{project}/`, repeating it after transient failures
    /// (429, 5xx, connection errors) with jittered exponential backoff. Only for requests that
    /// are safe to repeat, which every caller in this module is.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>, step: &BigQueryStep) -> Result<Reply, BigQueryError> {
        let url = format!("{}/projects/{}/{path}", self.base_url, self.project);
        let (method, url) = (&method, url.as_str());
        let attempt = |attempts| async move {
            let token = match self.auth.bearer().await {
                Ok(token) => token,
                Err(source) => return Attempt::Permanent(CallFailure::Fatal(BigQueryError::Credentials { source })),
            };
            let mut request = self.http.request(method.clone(), url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let answer = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.map(|bytes| (status, bytes))
                }
                Err(error) => Err(error),
            };
            match answer {
                Ok((status, bytes)) if !is_transient_status(status) => match serde_json::from_slice(&bytes) {
                    _ if bytes.is_empty() => Attempt::Done(Reply { status, body: Value::Null, attempts }),
                    Ok(body) => Attempt::Done(Reply { status, body, attempts }),
                    Err(_) if !status.is_success() => {
                        let body = Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect());
                        Attempt::Done(Reply { status, body, attempts })
                    }
                    Err(source) => Attempt::Permanent(CallFailure::Fatal(BigQueryError::Body { step: step.clone(), status, source })),
                },
                Ok((status, bytes)) => Attempt::Transient(CallFailure::Status(status, bytes)),
                Err(source) if is_transient_error(&source) => Attempt::Transient(CallFailure::Http(source)),
                Err(source) => Attempt::Permanent(CallFailure::Http(source)),
            }
        };
        let what = format!("BigQuery: {}", brief(&step.to_string()));
        retry(RetryPolicy::REQUESTS, &what, attempt).await.map_err(|Failed { error, attempts }| error.into_error(step, attempts))
    }

    /// An error answer as [`BigQueryError::Status`]: BigQuery's `error.message`, else the
    /// answer as it came (text that is not JSON, or JSON of another shape).
    fn status_error(step: &BigQueryStep, status: StatusCode, attempts: u32, body: &Value) -> BigQueryError {
        let message = match body {
            Value::Null => "(empty answer)".to_string(),
            Value::String(text) => text.clone(),
            other => other.pointer("/error/message").and_then(Value::as_str).map_or_else(|| other.to_string(), str::to_string),
        };
        BigQueryError::Status { step: step.clone(), status, attempts, message }
    }

    /// The reply when it is a success, else its status as an error.
    fn success(step: &BigQueryStep, reply: Reply) -> Result<Value, BigQueryError> {
        match reply.status.is_success() {
            true => Ok(reply.body),
            false => Err(Self::status_error(step, reply.status, reply.attempts, &reply.body)),
        }
    }

    /// Makes sure the dataset exists, creating it when `create` is set.
    pub async fn ensure_dataset(&self, dataset: &str, create: bool) -> Result<(), BigQueryError> {
        let step = BigQueryStep::ReadDataset { dataset: dataset.into() };
        match self.client_call(&step, || self.client.dataset().get(&self.project, dataset)).await {
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            found => return found.map(drop),
        }
        if !create {
            return Err(BigQueryError::NoDataset { project: self.project.clone(), dataset: dataset.into() });
        }
        let step = BigQueryStep::CreateDataset { dataset: dataset.into() };
        let resource = Dataset::new(&self.project, dataset);
        let resource = match &self.location {
            Some(location) => resource.location(location),
            None => resource,
        };
        match self.client_call(&step, || self.client.dataset().create(resource.clone())).await {
            Ok(_) => info!(dataset, "Created dataset"),
            // 409: created meanwhile (by a concurrent run, or by our own attempt whose answer was lost).
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// A table's resource, `None` when it does not exist. Raw JSON: callers compare schemas by
    /// BigQuery's own type names, which the client's `FieldType` enum does not all hold.
    pub async fn table(&self, dataset: &str, table: &str) -> Result<Option<Value>, BigQueryError> {
        let step = BigQueryStep::ReadTable { dataset: dataset.into(), table: table.into() };
        let reply = self.call(Method::GET, &format!("datasets/{dataset}/tables/{table}"), None, &step).await?;
        match status_kind(reply.status) {
            Some(ErrorKind::NotFound) => Ok(None),
            _ => Self::success(&step, reply).map(Some),
        }
    }

    /// Creates a table from its resource (BigQuery's JSON, see
    /// [`crate::gcp::schema::table_resource`]).
    pub async fn create_table(&self, dataset: &str, table: &str, resource: &Value) -> Result<(), BigQueryError> {
        let step = BigQueryStep::CreateTable { dataset: dataset.into(), table: table.into() };
        // Raw JSON: our schema carries BigQuery's type names; the client's `FieldType` enum would
        // need a second type table.
        let reply = self.call(Method::POST, &format!("datasets/{dataset}/tables"), Some(resource), &step).await?;
        if status_kind(reply.status) == Some(ErrorKind::AlreadyExists) && reply.attempts > 1 {
            // Our earlier attempt may have created it and lost the answer: ours if the schema is.
            let existing = self.table(dataset, table).await?.unwrap_or_default();
            if table_columns(&existing) == table_columns(resource) {
                return Ok(());
            }
        }
        Self::success(&step, reply).map(drop)
    }

    /// Deletes a table; one that does not exist is deleted.
    pub async fn delete_table(&self, dataset: &str, table: &str) -> Result<(), BigQueryError> {
        let step = BigQueryStep::DeleteTable { dataset: dataset.into(), table: table.into() };
        match self.client_call(&step, || self.client.table().delete(&self.project, dataset, table)).await {
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            deleted => deleted,
        }
    }

    /// The ids of the dataset's tables (`tables.list`, every page read).
    pub async fn list_tables(&self, dataset: &str) -> Result<Vec<String>, BigQueryError> {
        let step = BigQueryStep::ListTables { dataset: dataset.into() };
        let mut ids = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let query = page_token
                .as_deref()
                .map(|t| format!("&pageToken={}", url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()));
            let path = format!("datasets/{dataset}/tables?maxResults=1000{}", query.unwrap_or_default());
            let page = Self::success(&step, self.call(Method::GET, &path, None, &step).await?)?;
            let tables = page.get("tables").and_then(Value::as_array).into_iter().flatten();
            ids.extend(tables.filter_map(|t| t.pointer("/tableReference/tableId").and_then(Value::as_str).map(str::to_string)));
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(token) if !token.is_empty() => page_token = Some(token.to_string()),
                _ => return Ok(ids),
            }
        }
    }

    /// Adds labels to a table in one request (labels already there are kept).
    pub async fn set_labels(&self, dataset: &str, table: &str, labels: &[(String, String)]) -> Result<(), BigQueryError> {
        let step = BigQueryStep::SetLabels { dataset: dataset.into(), table: table.into() };
        // Raw JSON: the client's `Table` model always sends a schema, which a labels patch must not.
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let body = json!({ "labels": labels });
        let reply = self.call(Method::PATCH, &format!("datasets/{dataset}/tables/{table}"), Some(&body), &step).await?;
        Self::success(&step, reply).map(drop)
    }

    /// Inserts a job under `job_id`. A 409 means it already existed: after a retried insert,
    /// our own first attempt; otherwise an earlier run's.
    pub async fn insert_job(&self, job_id: &str, configuration: &Value) -> Result<InsertedJob, BigQueryError> {
        let mut reference = json!({ "projectId": self.project, "jobId": job_id });
        if let Some(location) = &self.location {
            reference["location"] = json!(location);
        }
        let step = BigQueryStep::InsertJob { job_id: job_id.into() };
        // Raw JSON: the client's `JobConfigurationLoad` has no `parquetOptions`.
        let body = json!({ "jobReference": reference, "configuration": configuration });
        let reply = self.call(Method::POST, "jobs", Some(&body), &step).await?;
        let (existed, job) = match status_kind(reply.status) {
            Some(ErrorKind::AlreadyExists) => (true, Value::Null),
            _ => (false, Self::success(&step, reply)?),
        };
        let location = job.pointer("/jobReference/location").and_then(Value::as_str).map(str::to_string).or_else(|| self.location.clone());
        Ok(InsertedJob { existed, location })
    }

    /// A job's resource as BigQuery's JSON (the client's model drops `dmlStats`), `None` when
    /// no job has this id.
    async fn job(&self, job_id: &str, location: Option<&str>) -> Result<Option<Value>, BigQueryError> {
        let step = BigQueryStep::ReadJob { job_id: job_id.into() };
        let path = match location {
            Some(location) => format!("jobs/{job_id}?location={location}"),
            None => format!("jobs/{job_id}"),
        };
        let reply = self.call(Method::GET, &path, None, &step).await?;
        match status_kind(reply.status) {
            Some(ErrorKind::NotFound) => Ok(None),
            _ => Self::success(&step, reply).map(Some),
        }
    }

    /// The `configuration` of the job with this id, `None` when there is none.
    pub async fn job_configuration(&self, job_id: &str) -> Result<Option<Value>, BigQueryError> {
        Ok(self.job(job_id, self.location.as_deref()).await?.and_then(|job| job.get("configuration").cloned()))
    }

    /// Whether a job with this id exists, is DONE and succeeded.
    pub async fn succeeded_job(&self, job_id: &str) -> Result<bool, BigQueryError> {
        Ok(self
            .job(job_id, self.location.as_deref())
            .await?
            .is_some_and(|job| job_state(&job) == Some("DONE") && job_failure(&job).is_none()))
    }

    /// Polls a job (0.2 s doubling to 5 s, jittered) until DONE; its counts on success.
    ///
    /// # Errors
    /// [`BigQueryError::JobFailed`] when it ends in error, [`BigQueryError::NotDone`] after
    /// 6 hours, [`BigQueryError::StatisticNotACount`] for a count that is not a number.
    pub async fn wait_for_job(&self, job_id: &str, location: Option<&str>) -> Result<JobCounts, BigQueryError> {
        let mut backoff = Backoff::new(JOB_POLL);
        loop {
            let step = BigQueryStep::ReadJob { job_id: job_id.into() };
            let job = self
                .job(job_id, location)
                .await?
                .ok_or_else(|| Self::status_error(&step, StatusCode::NOT_FOUND, 1, &json!("no job has this id")))?;
            if job_state(&job) == Some("DONE") {
                return match job_failure(&job) {
                    Some(reasons) => Err(BigQueryError::JobFailed { job_id: job_id.into(), reasons }),
                    None => job_counts(job_id, &job),
                };
            }
            debug!(job_id, "Job not done yet");
            if !backoff.wait().await {
                return Err(BigQueryError::NotDone { job_id: job_id.into(), seconds: JOB_POLL.total.as_secs() });
            }
        }
    }

    /// Runs a query as a job under a fresh id and reads every row of its result (see
    /// [`read_results`]).
    async fn query(&self, sql: &str) -> Result<QueryResults, BigQueryError> {
        let job_id = format!("pg2bq_query_{:032x}", rand::random::<u128>());
        let step = BigQueryStep::Query { sql: sql.into() };
        let configuration = json!({ "query": { "query": sql, "useLegacySql": false } });
        let inserted = self.insert_job(&job_id, &configuration).await.map_err(|error| match error {
            BigQueryError::Status { status, attempts, message, .. } => {
                BigQueryError::Status { step: step.clone(), status, attempts, message }
            }
            other => other,
        })?;
        read_results(&job_id, QUERY_POLL, |page_token| {
            let parameters = GetQueryResultsParameters {
                location: inserted.location.clone(),
                page_token,
                timeout_ms: Some(RESULTS_WAIT_MS),
                ..Default::default()
            };
            let (step, job_id) = (&step, &job_id);
            async move { self.client_call(step, || self.client.job().get_query_results(&self.project, job_id, parameters.clone())).await }
        })
        .await
    }

    /// Runs a query and returns all its rows (small results: counts, checks, samples).
    ///
    /// # Errors
    /// [`BigQueryError`] when the query fails, is not done within an hour, or its pages do not
    /// add up to the row count BigQuery reports.
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Row>, BigQueryError> {
        Ok(self.query(sql).await?.rows)
    }

    /// The one row of a query that always returns exactly one (an aggregate without GROUP BY).
    ///
    /// # Errors
    /// [`BigQueryError::NotOneRow`] for any other number of rows, and as [`Self::query_rows`].
    pub async fn query_one_row(&self, sql: &str) -> Result<Row, BigQueryError> {
        let mut rows = self.query_rows(sql).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(BigQueryError::NotOneRow { sql: sql.into(), rows: n }),
        }
    }

    /// The one row of a query of counts (`COUNT(*)`, `COUNTIF(…)`), as numbers.
    ///
    /// # Errors
    /// [`BigQueryError::NotACount`] for a NULL or non-integer value, and as [`Self::query_one_row`].
    pub async fn query_counts(&self, sql: &str) -> Result<Vec<u64>, BigQueryError> {
        counts(sql, self.query_one_row(sql).await?)
    }

    /// Runs a query and returns all its rows and the bytes it processed (`None` when BigQuery
    /// does not say).
    ///
    /// # Errors
    /// As [`Self::query_rows`].
    pub async fn query_rows_and_bytes(&self, sql: &str) -> Result<(Vec<Row>, Option<u64>), BigQueryError> {
        let results = self.query(sql).await?;
        Ok((results.rows, results.bytes_processed))
    }

    /// Runs a query for its cost: the bytes it processed.
    pub async fn query_bytes(&self, sql: &str) -> Result<Option<u64>, BigQueryError> {
        Ok(self.query(sql).await?.bytes_processed)
    }

    /// The bytes a dry run estimates for a query (`jobs.query` with `dryRun`: no job is
    /// created, so repeating it is safe).
    pub async fn dry_run_bytes(&self, sql: &str) -> Result<Option<u64>, BigQueryError> {
        let step = BigQueryStep::DryRun { sql: sql.into() };
        let mut request = QueryRequest::new(sql);
        request.dry_run = Some(true);
        request.location = self.location.clone();
        let answer = self.client_call(&step, || self.client.job().query(&self.project, request.clone())).await?;
        Ok(answer.total_bytes_processed.and_then(|b| b.parse().ok()))
    }
}

#[async_trait]
impl BigQueryApi for BigQuery {
    async fn table(&self, dataset: &str, table: &str) -> Result<Option<Value>, BigQueryError> {
        BigQuery::table(self, dataset, table).await
    }
    async fn create_table(&self, dataset: &str, table: &str, resource: &Value) -> Result<(), BigQueryError> {
        BigQuery::create_table(self, dataset, table, resource).await
    }
    async fn delete_table(&self, dataset: &str, table: &str) -> Result<(), BigQueryError> {
        BigQuery::delete_table(self, dataset, table).await
    }
    async fn list_tables(&self, dataset: &str) -> Result<Vec<String>, BigQueryError> {
        BigQuery::list_tables(self, dataset).await
    }
    async fn set_labels(&self, dataset: &str, table: &str, labels: &[(String, String)]) -> Result<(), BigQueryError> {
        BigQuery::set_labels(self, dataset, table, labels).await
    }
    async fn insert_job(&self, job_id: &str, configuration: &Value) -> Result<InsertedJob, BigQueryError> {
        BigQuery::insert_job(self, job_id, configuration).await
    }
    async fn wait_for_job(&self, job_id: &str, location: Option<&str>) -> Result<JobCounts, BigQueryError> {
        BigQuery::wait_for_job(self, job_id, location).await
    }
    async fn job_configuration(&self, job_id: &str) -> Result<Option<Value>, BigQueryError> {
        BigQuery::job_configuration(self, job_id).await
    }
    async fn succeeded_job(&self, job_id: &str) -> Result<bool, BigQueryError> {
        BigQuery::succeeded_job(self, job_id).await
    }
    async fn query_one_row(&self, sql: &str) -> Result<Row, BigQueryError> {
        BigQuery::query_one_row(self, sql).await
    }
    fn streaming_buffer_wait(&self, attempt: u32) -> Duration {
        self.streaming_buffer_wait * 2u32.pow(attempt.saturating_sub(1))
    }
}

/// The rows a DONE job loaded or changed, as its statistics report them.
fn job_counts(job_id: &str, job: &Value) -> Result<JobCounts, BigQueryError> {
    let count = |statistic: &'static str, pointer: &str| {
        job.pointer(pointer)
            .map(|value| {
                let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                text.parse().map_err(|_| BigQueryError::StatisticNotACount { job_id: job_id.into(), statistic, value: text.clone() })
            })
            .transpose()
    };
    Ok(JobCounts {
        output_rows: count("outputRows", "/statistics/load/outputRows")?,
        dml_affected_rows: count("numDmlAffectedRows", "/statistics/query/numDmlAffectedRows")?,
        inserted_rows: count("insertedRowCount", "/statistics/query/dmlStats/insertedRowCount")?,
        updated_rows: count("updatedRowCount", "/statistics/query/dmlStats/updatedRowCount")?,
    })
}

fn job_state(job: &Value) -> Option<&str> {
    job.pointer("/status/state")?.as_str()
}

/// BigQuery's reasons when a job ended in error (`status.errorResult` and the first errors).
fn job_failure(job: &Value) -> Option<String> {
    let error = job.pointer("/status/errorResult").filter(|e| !e.is_null())?;
    let text = |value: &Value, key: &str, default: &'static str| value.get(key).and_then(Value::as_str).unwrap_or(default).to_string();
    let mut reasons = vec![format!("{}: {}", text(error, "reason", "error"), text(error, "message", ""))];
    for detail in job.pointer("/status/errors").and_then(Value::as_array).into_iter().flatten().take(5) {
        reasons.push(format!("{} ({})", text(detail, "message", ""), text(detail, "location", "-")));
    }
    Some(reasons.join("; "))
}

/// Whether a gcp-bigquery-client failure is worth another attempt: a transient HTTP status
/// ([`is_transient_status`]), a connection failure ([`is_transient_error`]), an answer it could
/// not read (status hidden: a front end's HTML 502, a body cut mid-way), or a token fetch that
/// failed (the next attempt fetches it again and reports its cause). Everything else (auth
/// setup, gRPC, result-set accessors, serialising our request) is permanent.
fn is_transient_client_error(error: &BQError) -> bool {
    match error {
        BQError::ResponseError { error } => {
            u16::try_from(error.error.code).ok().and_then(|code| StatusCode::from_u16(code).ok()).is_some_and(is_transient_status)
        }
        BQError::RequestError(error) => is_transient_error(error) || error.is_decode(),
        BQError::NoToken => true,
        _ => false,
    }
}

/// Reads a query job's result through `fetch(page_token)` (one `getQueryResults` call):
/// polls with jittered backoff while `jobComplete` is false, follows `pageToken` to the last
/// page, and checks the rows read against `totalRows`.
///
/// # Errors
/// [`BigQueryError::NotDone`] when `poll.total` passes, [`BigQueryError::IncompleteResult`]
/// when the pages do not add up, [`BigQueryError::NotScalar`] for a REPEATED or RECORD value.
async fn read_results<F, Fut>(job_id: &str, poll: RetryPolicy, mut fetch: F) -> Result<QueryResults, BigQueryError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<GetQueryResultsResponse, BigQueryError>>,
{
    let mut backoff = Backoff::new(poll);
    let mut rows: Vec<Row> = Vec::new();
    let mut page_token: Option<String> = None;
    let mut bytes_processed = None;
    loop {
        let page = fetch(page_token.clone()).await?;
        if page.job_complete != Some(true) {
            debug!(job_id, "Query not complete yet");
            if !backoff.wait().await {
                return Err(BigQueryError::NotDone { job_id: job_id.into(), seconds: poll.total.as_secs() });
            }
            continue;
        }
        let width = page.schema.as_ref().map_or(0, |schema| schema.field_count());
        bytes_processed = bytes_processed.or_else(|| page.total_bytes_processed.as_ref().and_then(|b| b.parse().ok()));
        for row in page.rows.iter().flatten() {
            let cells = row.columns.as_deref().unwrap_or_default();
            let index = rows.len();
            let not_scalar = |column: usize, found: String| BigQueryError::NotScalar { job_id: job_id.into(), row: index, column, found };
            if cells.len() != width {
                return Err(not_scalar(cells.len(), format!("a row of {} cells for {width} columns", cells.len())));
            }
            let values = cells.iter().enumerate().map(|(column, cell)| match &cell.value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(other) => Err(not_scalar(column, other.to_string())),
            });
            rows.push(values.collect::<Result<_, _>>()?);
        }
        match page.page_token {
            Some(token) => page_token = Some(token),
            None => {
                let total = page.total_rows.as_deref();
                if total.and_then(|t| t.parse::<usize>().ok()) != Some(rows.len()) {
                    return Err(BigQueryError::IncompleteResult {
                        job_id: job_id.into(),
                        read: rows.len(),
                        total: total.unwrap_or("(missing)").into(),
                    });
                }
                return Ok(QueryResults { rows, bytes_processed });
            }
        }
    }
}

/// The first 120 characters of an action (a query's SQL can be pages long) for log lines.
fn brief(action: &str) -> &str {
    action.char_indices().nth(120).map_or(action, |(end, _)| &action[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read_results` over scripted `getQueryResults` answers; returns what it made of them and
    /// the page tokens it asked for.
    async fn read_scripted(answers: Vec<Value>, poll: RetryPolicy) -> (Result<QueryResults, BigQueryError>, Vec<Option<String>>) {
        let mut answers = answers.into_iter();
        let mut asked = Vec::new();
        let result = read_results("job", poll, |token| {
            asked.push(token);
            let answer = answers.next().expect("no more answers scripted");
            async move { Ok(serde_json::from_value(answer).expect("a getQueryResults answer")) }
        })
        .await;
        (result, asked)
    }

    const NO_PAUSE: RetryPolicy = RetryPolicy { first_delay: Duration::ZERO, max_delay: Duration::ZERO, total: Duration::from_secs(3600) };

    fn page(values: &[Option<&str>], total: usize, token: Option<&str>) -> Value {
        let rows: Vec<Value> = values.iter().map(|v| json!({ "f": [{ "v": v }] })).collect();
        let mut page = json!({ "jobComplete": true, "schema": { "fields": [{ "name": "x", "type": "STRING" }] }, "rows": rows, "totalRows": total.to_string() });
        if let Some(token) = token {
            page["pageToken"] = json!(token);
        }
        page
    }

    #[tokio::test]
    async fn unfinished_and_paged_results_are_read_to_the_last_row() {
        let not_complete = json!({ "jobComplete": false });
        let answers = vec![not_complete.clone(), not_complete, page(&[Some("1"), None], 3, Some("p2")), page(&[Some("3")], 3, None)];
        let (result, asked) = read_scripted(answers, NO_PAUSE).await;
        assert_eq!(result.unwrap().rows, [vec![Some("1".to_string())], vec![None], vec![Some("3".to_string())]]);
        assert_eq!(asked, [None, None, None, Some("p2".to_string())]);
    }

    #[tokio::test]
    async fn short_unfinished_or_nested_results_fail_closed() {
        let (short, _) = read_scripted(vec![page(&[Some("1")], 2, None)], NO_PAUSE).await;
        assert!(matches!(short, Err(BigQueryError::IncompleteResult { read: 1, ref total, .. }) if total == "2"), "{short:?}");

        let spent = RetryPolicy { total: Duration::ZERO, ..NO_PAUSE };
        let (unfinished, asked) = read_scripted(vec![json!({ "jobComplete": false })], spent).await;
        assert!(matches!(unfinished, Err(BigQueryError::NotDone { .. })), "{unfinished:?}");
        assert_eq!(asked.len(), 1);

        let nested = json!({ "jobComplete": true, "schema": { "fields": [{ "name": "x", "type": "STRING" }] }, "rows": [{ "f": [{ "v": [{ "v": "1" }] }] }], "totalRows": "1" });
        let (nested, _) = read_scripted(vec![nested], NO_PAUSE).await;
        assert!(matches!(nested, Err(BigQueryError::NotScalar { row: 0, column: 0, .. })), "{nested:?}");
    }

    #[test]
    fn client_errors_are_transient_only_for_rate_limits_server_failures_and_unreadable_answers() {
        let answered = |code: u16| BQError::ResponseError {
            error: serde_json::from_value(json!({ "error": { "code": code, "message": "m", "errors": [] } })).unwrap(),
        };
        let transient: Vec<u16> = (400..600).filter(|&code| is_transient_client_error(&answered(code))).collect();
        assert_eq!(transient, [408, 429, 500, 502, 503, 504]);
        assert!(is_transient_client_error(&BQError::NoToken));
        let unserialisable = serde_json::from_str::<Value>("{").unwrap_err();
        assert!(!is_transient_client_error(&BQError::SerializationError(unserialisable)));
        assert!(!is_transient_client_error(&BQError::InvalidColumnIndex { col_index: 0 }));
    }

    #[test]
    fn an_error_answer_keeps_its_text_when_it_is_not_bigquerys_json_error() {
        let step = BigQueryStep::ReadTable { dataset: "d".into(), table: "t".into() };
        let message = |body: Value| match BigQuery::status_error(&step, StatusCode::BAD_GATEWAY, 3, &body) {
            BigQueryError::Status { message, .. } => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(message(json!({ "error": { "code": 502, "message": "backend down" } })), "backend down");
        assert_eq!(message(json!("<html>502 Bad Gateway</html>")), "<html>502 Bad Gateway</html>");
        assert_eq!(message(json!({ "status": "unavailable" })), r#"{"status":"unavailable"}"#);
        assert_eq!(message(Value::Null), "(empty answer)");
    }

    #[test]
    fn steps_are_named_as_before_and_errors_tell_their_kind() {
        let (dataset, table, job_id, sql) = ("d".to_string(), "t".to_string(), "j".to_string(), "SELECT 1".to_string());
        let named = [
            (BigQueryStep::CreateTable { dataset: dataset.clone(), table: table.clone() }, "create table `d.t`"),
            (BigQueryStep::SetLabels { dataset: dataset.clone(), table }, "label table `d.t`"),
            (BigQueryStep::ListTables { dataset }, "list the tables of dataset `d`"),
            (BigQueryStep::InsertJob { job_id }, "insert job `j`"),
            (BigQueryStep::Query { sql }, "run query `SELECT 1`"),
        ];
        for (step, text) in named {
            assert_eq!(step.to_string(), text);
        }
        let status = |code: u16| BigQueryError::Status {
            step: BigQueryStep::ReadJob { job_id: "j".into() },
            status: StatusCode::from_u16(code).unwrap(),
            attempts: 1,
            message: "m".into(),
        };
        assert_eq!(status(404).to_string(), "BigQuery: read job `j` answered HTTP 404 Not Found (after 1 attempt(s)): m");
        let kinds = [404, 409, 403, 503, 400].map(|code| status(code).kind());
        assert_eq!(kinds, [ErrorKind::NotFound, ErrorKind::AlreadyExists, ErrorKind::Permission, ErrorKind::Transient, ErrorKind::Invalid]);
        let no_dataset = BigQueryError::NoDataset { project: "p".into(), dataset: "d".into() };
        assert_eq!(no_dataset.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn job_statistics_that_are_not_counts_are_errors_not_zero() {
        let job = |statistics: Value| json!({ "statistics": statistics });
        let counted = job_counts("j", &job(json!({ "load": { "outputRows": "12" }, "query": { "numDmlAffectedRows": "3" } })));
        assert_eq!(counted.unwrap(), JobCounts { output_rows: Some(12), dml_affected_rows: Some(3), ..JobCounts::default() });
        let merged = job_counts("j", &job(json!({ "query": { "dmlStats": { "insertedRowCount": "5", "updatedRowCount": "2" } } })));
        assert_eq!((merged.as_ref().unwrap().inserted_rows, merged.unwrap().updated_rows), (Some(5), Some(2)));
        assert_eq!(job_counts("j", &job(json!({}))).unwrap(), JobCounts::default());
        let garbled = job_counts("j", &job(json!({ "load": { "outputRows": "twelve" } })));
        assert!(
            matches!(&garbled, Err(BigQueryError::StatisticNotACount { job_id, statistic: "outputRows", value }) if job_id == "j" && value == "twelve"),
            "{garbled:?}"
        );
        assert!(matches!(counts("SELECT 1", vec![Some("x".into())]), Err(BigQueryError::NotACount { column: 0, .. })));
    }

    #[test]
    fn attempts_of_a_job_have_the_retry_suffixes() {
        assert_eq!(job_attempt_ids("j").collect::<Vec<_>>(), ["j", "j-r2", "j-r3", "j-r4", "j-r5"]);
    }
}
