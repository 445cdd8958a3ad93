//! The BigQuery REST calls pg2bq makes, through gcp-bigquery-client where its models fit
//! (datasets, job status, queries) and as raw JSON where they do not (jobs.insert needs
//! `parquetOptions`; table schemas must keep BigQuery's own type names).
//!
//! Jobs are inserted with caller-chosen ids. A 409 means the id exists: we attach to that job
//! and wait for it instead of loading twice. A DONE job is a success only without `errorResult`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::{QueryResponse, ResultSet};
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing::{debug, info};

use super::plan::{Field, TimePartitioning, JOB_ATTEMPTS};

const BIGQUERY_URL: &str = "https://bigquery.googleapis.com/bigquery/v2";

/// Where BigQuery is and how to authenticate.
#[derive(Debug, Clone, Default)]
pub struct BigQueryOptions {
    /// `http://host:port` of an emulator (BIGQUERY_EMULATOR_HOST): no credentials are sent.
    pub emulator_host: Option<String>,
    /// Service-account or ADC JSON (GOOGLE_APPLICATION_CREDENTIALS).
    pub application_credentials: Option<String>,
}

/// A failed BigQuery call, naming what we were doing.
#[derive(Debug, thiserror::Error)]
pub enum BigQueryError {
    #[error("cannot obtain Google credentials for BigQuery")]
    Credentials {
        #[source]
        source: object_store::Error,
    },
    #[error("BigQuery: failed to {action}")]
    Client {
        action: String,
        #[source]
        source: BQError,
    },
    #[error("BigQuery: failed to {action}")]
    Http {
        action: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("BigQuery: {action} answered HTTP {status}: {message}")]
    Status { action: String, status: StatusCode, message: String },
    #[error("BigQuery job `{job_id}` failed: {reasons}")]
    JobFailed { job_id: String, reasons: String },
    #[error("BigQuery job `{job_id}` failed in all {JOB_ATTEMPTS} attempts; the last: {reasons}")]
    AttemptsExhausted { job_id: String, reasons: String },
    #[error("dataset `{project}.{dataset}` does not exist; create it or pass --create-dataset")]
    NoDataset { project: String, dataset: String },
}

/// Tokens from object_store's Google credential chain (service account file, gcloud ADC,
/// metadata server), scope cloud-platform; none for an emulator.
#[derive(Clone)]
struct TokenSource(Option<GcpCredentialProvider>);

#[async_trait]
impl Authenticator for TokenSource {
    async fn access_token(&self) -> Result<String, BQError> {
        match &self.0 {
            None => Ok(String::new()),
            Some(provider) => provider.get_credential().await.map(|c| c.bearer.clone()).map_err(|_| BQError::NoToken),
        }
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
}

/// Rows loaded or affected, as the finished job reports them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinishedJob {
    pub job_id: String,
    pub output_rows: Option<u64>,
    pub dml_affected_rows: Option<u64>,
    /// The job already existed (an earlier run submitted it); we attached to it.
    pub reattached: bool,
}

impl BigQuery {
    /// # Errors
    /// [`BigQueryError::Credentials`] when no Google credentials can be found for real BigQuery.
    pub async fn connect(project: &str, location: Option<String>, options: &BigQueryOptions) -> Result<Self, BigQueryError> {
        let (base_url, auth) = match &options.emulator_host {
            Some(host) => (format!("{}/bigquery/v2", host.trim_end_matches('/')), TokenSource(None)),
            None => {
                // object_store's builder needs a bucket name; the credential chain does not use it.
                let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name("pg2bq-credentials");
                if let Some(path) = &options.application_credentials {
                    builder = builder.with_application_credentials(path);
                }
                let store = builder.build().map_err(|source| BigQueryError::Credentials { source })?;
                (BIGQUERY_URL.to_string(), TokenSource(Some(store.credentials().clone())))
            }
        };
        let http = reqwest::Client::new();
        let client = gcp_bigquery_client::client_builder::ClientBuilder::new()
            .with_v2_base_url(base_url.clone())
            .with_client(http.clone())
            .build_from_authenticator(Arc::new(auth.clone()))
            .await
            .map_err(|source| BigQueryError::Client { action: "build a client".into(), source })?;
        Ok(Self { client, http, auth, base_url, project: project.to_string(), location })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>, action: &str) -> Result<(StatusCode, Value), BigQueryError> {
        let token = self.auth.access_token().await.map_err(|source| BigQueryError::Client { action: action.into(), source })?;
        let mut request = self.http.request(method, format!("{}/projects/{}/{path}", self.base_url, self.project));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|source| BigQueryError::Http { action: action.into(), source })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn status_error(action: &str, status: StatusCode, body: &Value) -> BigQueryError {
        let message = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("(no message)").to_string();
        BigQueryError::Status { action: action.into(), status, message }
    }

    /// Makes sure the dataset exists, creating it when `create` is set.
    pub async fn ensure_dataset(&self, dataset: &str, create: bool) -> Result<(), BigQueryError> {
        match self.client.dataset().get(&self.project, dataset).await {
            Ok(_) => Ok(()),
            Err(BQError::ResponseError { error }) if error.error.code == 404 => {
                if !create {
                    return Err(BigQueryError::NoDataset { project: self.project.clone(), dataset: dataset.into() });
                }
                let mut new = Dataset::new(&self.project, dataset);
                if let Some(location) = &self.location {
                    new = new.location(location);
                }
                self.client
                    .dataset()
                    .create(new)
                    .await
                    .map_err(|source| BigQueryError::Client { action: format!("create dataset `{dataset}`"), source })?;
                info!(dataset, "Created dataset");
                Ok(())
            }
            Err(source) => Err(BigQueryError::Client { action: format!("read dataset `{dataset}`"), source }),
        }
    }

    /// A table's resource, `None` when it does not exist.
    pub async fn table(&self, dataset: &str, table: &str) -> Result<Option<Value>, BigQueryError> {
        let action = format!("read table `{dataset}.{table}`");
        let (status, body) = self.call(Method::GET, &format!("datasets/{dataset}/tables/{table}"), None, &action).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(body)),
            s => Err(Self::status_error(&action, s, &body)),
        }
    }

    /// Creates a table with the given schema, partitioning and clustering.
    pub async fn create_table(
        &self,
        dataset: &str,
        table: &str,
        fields: &[Field],
        partitioning: Option<&TimePartitioning>,
        clustering: &[String],
    ) -> Result<(), BigQueryError> {
        let action = format!("create table `{dataset}.{table}`");
        let mut resource = json!({
            "tableReference": { "projectId": self.project, "datasetId": dataset, "tableId": table },
            "schema": schema_json(fields),
        });
        if let Some(p) = partitioning {
            resource["timePartitioning"] = json!({ "type": p.unit, "field": p.field });
        }
        if !clustering.is_empty() {
            resource["clustering"] = json!({ "fields": clustering });
        }
        let (status, body) = self.call(Method::POST, &format!("datasets/{dataset}/tables"), Some(resource), &action).await?;
        if !status.is_success() {
            return Err(Self::status_error(&action, status, &body));
        }
        Ok(())
    }

    pub async fn delete_table(&self, dataset: &str, table: &str) -> Result<(), BigQueryError> {
        match self.client.table().delete(&self.project, dataset, table).await {
            Ok(()) => Ok(()),
            Err(BQError::ResponseError { error }) if error.error.code == 404 => Ok(()),
            Err(source) => Err(BigQueryError::Client { action: format!("delete table `{dataset}.{table}`"), source }),
        }
    }

    /// Adds labels to a table in one request (labels already there are kept).
    pub async fn set_labels(&self, dataset: &str, table: &str, labels: &[(String, String)]) -> Result<(), BigQueryError> {
        let action = format!("label table `{dataset}.{table}`");
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let body = json!({ "labels": labels });
        let (status, body) = self.call(Method::PATCH, &format!("datasets/{dataset}/tables/{table}"), Some(body), &action).await?;
        if !status.is_success() {
            return Err(Self::status_error(&action, status, &body));
        }
        Ok(())
    }

    /// Runs a job to completion under id `base_id` (or `base_id-rN` when earlier attempts
    /// with the lower ids finished with errors). An id that already exists is attached to.
    ///
    /// # Errors
    /// [`BigQueryError::JobFailed`] with BigQuery's reasons when the job ends in error.
    pub async fn run_job(&self, base_id: &str, configuration: Value) -> Result<FinishedJob, BigQueryError> {
        let mut last_failure = String::new();
        for attempt in 1..=JOB_ATTEMPTS {
            let job_id = if attempt == 1 { base_id.to_string() } else { format!("{base_id}-r{attempt}") };
            let mut reference = json!({ "projectId": self.project, "jobId": job_id });
            if let Some(location) = &self.location {
                reference["location"] = json!(location);
            }
            let action = format!("insert job `{job_id}`");
            let body = json!({ "jobReference": reference, "configuration": configuration });
            let (status, response) = self.call(Method::POST, "jobs", Some(body), &action).await?;
            let reattached = status == StatusCode::CONFLICT;
            if !status.is_success() && !reattached {
                return Err(Self::status_error(&action, status, &response));
            }
            if reattached {
                info!(job_id, "Job already exists: attaching to it instead of submitting again");
            }
            match self.wait_for_job(&job_id).await {
                Ok(job) => {
                    let statistics = job.statistics.as_ref();
                    let parse = |v: Option<&String>| v.and_then(|v| v.parse().ok());
                    return Ok(FinishedJob {
                        output_rows: parse(statistics.and_then(|s| s.load.as_ref()).and_then(|l| l.output_rows.as_ref())),
                        dml_affected_rows: parse(statistics.and_then(|s| s.query.as_ref()).and_then(|q| q.num_dml_affected_rows.as_ref())),
                        job_id,
                        reattached,
                    });
                }
                Err(BigQueryError::JobFailed { reasons, .. }) if reattached => {
                    // An earlier run's attempt failed; its id is spent. Try the next one.
                    info!(job_id, reasons, "Earlier attempt of this job failed; retrying under a new id");
                    last_failure = reasons;
                }
                Err(error) => return Err(error),
            }
        }
        Err(BigQueryError::AttemptsExhausted { job_id: base_id.into(), reasons: last_failure })
    }

    /// Whether a job with this id exists, is DONE and succeeded.
    pub async fn succeeded_job(&self, job_id: &str) -> Result<bool, BigQueryError> {
        match self.client.job().get_job(&self.project, job_id, self.location.as_deref()).await {
            Ok(job) => {
                let status = job.status.as_ref();
                Ok(status.and_then(|s| s.state.as_deref()) == Some("DONE") && status.and_then(|s| s.error_result.as_ref()).is_none())
            }
            Err(BQError::ResponseError { error }) if error.error.code == 404 => Ok(false),
            Err(source) => Err(BigQueryError::Client { action: format!("read job `{job_id}`"), source }),
        }
    }

    /// Polls a job with backoff (0.2 s doubling to 5 s) until DONE.
    pub async fn wait_for_job(&self, job_id: &str) -> Result<Job, BigQueryError> {
        let mut delay = Duration::from_millis(200);
        loop {
            let job = self
                .client
                .job()
                .get_job(&self.project, job_id, self.location.as_deref())
                .await
                .map_err(|source| BigQueryError::Client { action: format!("read job `{job_id}`"), source })?;
            let status = job.status.as_ref();
            if status.and_then(|s| s.state.as_deref()) == Some("DONE") {
                if let Some(error) = status.and_then(|s| s.error_result.as_ref()) {
                    let mut reasons =
                        vec![format!("{}: {}", error.reason.as_deref().unwrap_or("error"), error.message.as_deref().unwrap_or(""))];
                    for detail in status.and_then(|s| s.errors.as_ref()).into_iter().flatten().take(5) {
                        reasons.push(format!(
                            "{} ({})",
                            detail.message.as_deref().unwrap_or(""),
                            detail.location.as_deref().unwrap_or("-")
                        ));
                    }
                    return Err(BigQueryError::JobFailed { job_id: job_id.into(), reasons: reasons.join("; ") });
                }
                return Ok(job);
            }
            debug!(job_id, delay_ms = delay.as_millis() as u64, "Job not done yet");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn query_response(&self, sql: &str, dry_run: bool) -> Result<QueryResponse, BigQueryError> {
        let mut request = QueryRequest::new(sql);
        request.location = self.location.clone();
        request.use_legacy_sql = false;
        request.dry_run = Some(dry_run);
        self.client
            .job()
            .query(&self.project, request)
            .await
            .map_err(|source| BigQueryError::Client { action: format!("run query `{sql}`"), source })
    }

    /// Runs a query and returns its rows (small results: counts, checks, samples), every
    /// value as text (BigQuery's REST form), NULL as `None`.
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, BigQueryError> {
        let mut result = ResultSet::new_from_query_response(self.query_response(sql, false).await?);
        let width = result.column_names().len();
        let mut rows = Vec::new();
        while result.next_row() {
            rows.push((0..width).map(|i| result.get_string(i).ok().flatten()).collect());
        }
        Ok(rows)
    }

    /// The first row of [`Self::query_rows`], `None` for an empty result.
    pub async fn query_first_row(&self, sql: &str) -> Result<Option<Vec<Option<String>>>, BigQueryError> {
        Ok(self.query_rows(sql).await?.into_iter().next())
    }

    /// Runs a query for its cost: the bytes it processed.
    pub async fn query_bytes(&self, sql: &str) -> Result<Option<u64>, BigQueryError> {
        Ok(self.query_response(sql, false).await?.total_bytes_processed.and_then(|b| b.parse().ok()))
    }

    /// The bytes a dry run estimates for a query.
    pub async fn dry_run_bytes(&self, sql: &str) -> Result<Option<u64>, BigQueryError> {
        Ok(self.query_response(sql, true).await?.total_bytes_processed.and_then(|b| b.parse().ok()))
    }
}

/// An identifier or path (`project.dataset.table`) back-quoted for BigQuery SQL.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "\\`"))
}

/// `{"fields": [...]}` in BigQuery's JSON form.
pub fn schema_json(fields: &[Field]) -> Value {
    let fields: Vec<Value> = fields
        .iter()
        .map(|f| {
            let mut field = json!({ "name": f.name, "type": f.field_type, "mode": f.mode });
            if let Some(description) = &f.description {
                field["description"] = json!(description);
            }
            field
        })
        .collect();
    json!({ "fields": fields })
}

/// How an existing table's schema compares with the one we would load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaComparison {
    /// One line per column that cannot take the snapshot; empty when compatible.
    pub differences: Vec<String>,
    /// Columns REQUIRED in the snapshot and NULLABLE in the table: safe (non-NULL values fit a
    /// NULLABLE column), loaded with the table's mode.
    pub nullable_in_table: Vec<String>,
}

/// Compares an existing table's schema with the one we would load. Legacy type names
/// (INTEGER, FLOAT, BOOLEAN) count as their standard ones; descriptions are not compared. A
/// NULLABLE table column takes a REQUIRED snapshot column; the other direction (the snapshot
/// may hold NULLs), REPEATED against not, another type or position is a difference.
pub fn schema_differences(existing: &Value, fields: &[Field]) -> SchemaComparison {
    let normalise = |t: &str| match t {
        "INTEGER" => "INT64".to_string(),
        "FLOAT" => "FLOAT64".to_string(),
        "BOOLEAN" => "BOOL".to_string(),
        other => other.to_string(),
    };
    let existing: Vec<(String, String, String)> = existing
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mode = text("mode");
            (text("name"), normalise(&text("type")), if mode.is_empty() { "NULLABLE".into() } else { mode })
        })
        .collect();
    let mut differences = Vec::new();
    let mut nullable_in_table = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        match existing.iter().position(|(name, _, _)| name.eq_ignore_ascii_case(&field.name)) {
            None => differences.push(format!("column `{}` {} {} is missing from the table", field.name, field.mode, field.field_type)),
            Some(j) => {
                let (_, ty, mode) = &existing[j];
                let relaxed = *ty == field.field_type && mode == "NULLABLE" && field.mode == "REQUIRED";
                if (*ty != field.field_type || *mode != field.mode) && !relaxed {
                    differences
                        .push(format!("column `{}`: table has {mode} {ty}, snapshot has {} {}", field.name, field.mode, field.field_type));
                } else if i != j {
                    differences.push(format!("column `{}` is at position {} in the table, {} in the snapshot", field.name, j + 1, i + 1));
                } else if relaxed {
                    nullable_in_table.push(field.name.clone());
                }
            }
        }
    }
    for (name, ty, mode) in &existing {
        if !fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            differences.push(format!("column `{name}` {mode} {ty} is in the table but not in the snapshot"));
        }
    }
    SchemaComparison { differences, nullable_in_table }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, field_type: &str, mode: &str) -> Field {
        Field { name: name.into(), field_type: field_type.into(), mode: mode.into(), description: None }
    }

    #[test]
    fn schema_differences_name_every_column_that_differs() {
        let existing = json!({"schema": {"fields": [
            {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "score", "type": "FLOAT"},
            {"name": "extra", "type": "STRING"}
        ]}});
        let ours = [field("id", "INT64", "REQUIRED"), field("score", "NUMERIC", "NULLABLE"), field("title", "STRING", "NULLABLE")];
        assert_eq!(
            schema_differences(&existing, &ours).differences,
            [
                "column `score`: table has NULLABLE FLOAT64, snapshot has NULLABLE NUMERIC",
                "column `title` NULLABLE STRING is missing from the table",
                "column `extra` NULLABLE STRING is in the table but not in the snapshot",
            ]
        );
        assert_eq!(
            schema_differences(
                &existing,
                &[field("id", "INT64", "REQUIRED"), field("score", "FLOAT64", "NULLABLE"), field("extra", "STRING", "NULLABLE")]
            ),
            SchemaComparison::default()
        );
    }

    #[test]
    fn a_nullable_table_column_takes_a_required_snapshot_column_but_not_the_reverse() {
        let existing = json!({"schema": {"fields": [
            {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "title", "type": "STRING"},
            {"name": "at", "type": "TIMESTAMP", "mode": "REQUIRED"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
            {"name": "score", "type": "FLOAT", "mode": "NULLABLE"}
        ]}});
        let ours = [
            field("id", "INT64", "REQUIRED"),
            field("title", "STRING", "REQUIRED"),
            field("at", "TIMESTAMP", "NULLABLE"),
            field("tags", "STRING", "NULLABLE"),
            field("score", "NUMERIC", "REQUIRED"),
        ];
        assert_eq!(
            schema_differences(&existing, &ours),
            SchemaComparison {
                differences: vec![
                    "column `at`: table has REQUIRED TIMESTAMP, snapshot has NULLABLE TIMESTAMP".into(),
                    "column `tags`: table has REPEATED STRING, snapshot has NULLABLE STRING".into(),
                    "column `score`: table has NULLABLE FLOAT64, snapshot has REQUIRED NUMERIC".into(),
                ],
                nullable_in_table: vec!["id".into(), "title".into()],
            }
        );
        let required = json!({"schema": {"fields": [{"name": "id", "type": "INT64", "mode": "REQUIRED"}]}});
        assert_eq!(schema_differences(&required, &[field("id", "INT64", "REQUIRED")]), SchemaComparison::default());
    }
}
