//! Shared test plumbing: real services gated by env vars, a throwaway schema per test, and
//! canonical text forms of values (the same forms tests/read_parquet.py prints).

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pg2bq::gcp::bigquery::{BigQuery, BigQueryOptions};
use tokio_postgres::{Client, NoTls};

/// Returns the variable's value, or prints why the test is skipped and returns from it.
/// scripts/test.sh sets every variable and `PG2BQ_TEST_STRICT=1`, under which a missing
/// variable fails the test instead: in CI nothing skips silently.
#[macro_export]
macro_rules! skip_unless {
    ($var:expr) => {
        match std::env::var($var) {
            Ok(value) => value,
            Err(_) if std::env::var_os("PG2BQ_TEST_STRICT").is_some() => {
                panic!("{} is not set but PG2BQ_TEST_STRICT is: a service did not start", $var)
            }
            Err(_) => {
                eprintln!("skipped: {} is not set (scripts/test.sh starts the service and sets it)", $var);
                return;
            }
        }
    };
}

/// A schema of its own for one test, dropped on success.
pub struct TestDb {
    url: String,
    pub schema: String,
    pub client: Client,
}

impl TestDb {
    pub async fn new(url: &str, fixture_sql: &str) -> Self {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("test Postgres is reachable");
        tokio::spawn(connection);
        let schema = format!("t_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}; SET search_path = {schema}, public; {fixture_sql}"))
            .await
            .expect("fixture loads");
        Self { url: url.to_string(), schema, client }
    }

    /// Runs a psql script (with `-v` variables) into this schema.
    pub fn run_psql(&self, script: &str, variables: &[&str]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
        let mut command = std::process::Command::new("psql");
        command.args(["-q", "-v", "ON_ERROR_STOP=1"]).arg("-f").arg(path).arg(&self.url);
        for variable in variables {
            command.args(["-v", variable]);
        }
        let out = command.env("PGOPTIONS", format!("-c search_path={},public", self.schema)).output().expect("psql runs");
        assert!(out.status.success(), "psql {script}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    /// Text of every column named, per row ordered by `id`.
    pub async fn texts(&self, table: &str, expressions: &[(&str, String)]) -> Vec<Vec<Option<String>>> {
        self.client
            .batch_execute("SET intervalstyle = 'iso_8601'; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3")
            .await
            .unwrap();
        let select: Vec<String> = expressions.iter().map(|(_, e)| e.clone()).collect();
        let sql = format!("SELECT {} FROM {} ORDER BY id", select.join(", "), self.table(table));
        let rows = self.client.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(|r| (0..expressions.len()).map(|i| r.get::<_, Option<String>>(i)).collect()).collect()
    }

    pub async fn drop(self) {
        self.client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema)).await.unwrap();
    }
}

/// Every record batch of every Parquet file under `dir`, read with the Rust reader.
pub fn read_parquet_dir(dir: &Path) -> Vec<RecordBatch> {
    let mut files: Vec<PathBuf> = walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap()).unwrap().build().unwrap();
            reader.map(|b| b.unwrap()).collect::<Vec<_>>()
        })
        .collect()
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The canonical text of `array[row]`: see tests/read_parquet.py.
pub fn canonical(array: &ArrayRef, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float32 => float_bits(array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => float_bits(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, s) => scaled_text(&array.as_primitive::<Decimal128Type>().value(row).to_string(), *s),
        DataType::Decimal256(_, s) => scaled_text(&array.as_primitive::<Decimal256Type>().value(row).to_string(), *s),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::Binary => array.as_binary::<i32>().value(row).iter().map(|b| format!("{b:02x}")).collect(),
        DataType::Date32 => array.as_primitive::<Date32Type>().value(row).to_string(),
        DataType::Time64(TimeUnit::Microsecond) => array.as_primitive::<Time64MicrosecondType>().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array.as_primitive::<TimestampMicrosecondType>().value(row).to_string(),
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            serde_json::to_string(&(0..items.len()).map(|i| canonical(&items, i)).collect::<Vec<_>>()).unwrap()
        }
        other => panic!("no canonical form for {other}"),
    })
}

pub fn float_bits(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        v.to_bits().to_string()
    }
}

/// An unscaled integer's text at `scale`, minimal: `-12345`, 2 → `-123.45`.
fn scaled_text(digits: &str, scale: i8) -> String {
    let (sign, digits) = digits.strip_prefix('-').map_or(("", digits), |d| ("-", d));
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    minimal_decimal(&format!("{sign}{int}.{frac}"))
}

/// `1.500` → `1.5`, `2.000` → `2`, `-0.00` → `0`.
pub fn minimal_decimal(text: &str) -> String {
    let trimmed = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text };
    if trimmed == "-0" {
        "0".into()
    } else {
        trimmed.to_string()
    }
}

/// How a Postgres text becomes its canonical form.
#[derive(Debug, Clone, Copy)]
pub enum Post {
    Text,
    Float4,
    Float8,
    Numeric,
    /// `YYYY-MM-DD HH24:MI:SS.US` → microseconds since the epoch.
    Timestamp,
    /// A JSON array of element texts, each post-processed.
    List(&'static Post),
}

pub fn post(text: &str, how: Post) -> String {
    match how {
        Post::Text => text.to_string(),
        Post::Float4 => float_bits(parse_float(text) as f32 as f64),
        Post::Float8 => float_bits(parse_float(text)),
        Post::Numeric => minimal_decimal(text),
        Post::Timestamp => chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .and_utc()
            .timestamp_micros()
            .to_string(),
        Post::List(item) => {
            let items: Vec<Option<String>> = serde_json::from_str(text).unwrap();
            serde_json::to_string(&items.into_iter().map(|i| i.map(|t| post(&t, *item))).collect::<Vec<_>>()).unwrap()
        }
    }
}

fn parse_float(text: &str) -> f64 {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Canonical texts per column from tests/read_parquet.py.
pub fn read_with_pyarrow(python: &str, dir: &Path) -> serde_json::Map<String, serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_parquet.py");
    let output = std::process::Command::new(python).arg(script).arg(dir).output().expect("python runs");
    assert!(output.status.success(), "pyarrow reader failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs the pg2bq binary.
pub fn pg2bq(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(args).env("NO_COLOR", "1").output().unwrap()
}

/// The emulators (and Postgres) of scripts/test.sh, and a fresh dataset name for one test.
pub struct Emulators {
    pub pg_url: String,
    pub bucket: String,
    pub gcs_host: String,
    pub bq_host: String,
    pub project: String,
    pub dataset: String,
}

/// `Emulators` from the environment, or skip the test (see `skip_unless!`).
#[macro_export]
macro_rules! emulators {
    () => {
        $crate::support::Emulators {
            pg_url: skip_unless!("PG2BQ_TEST_PG_URL"),
            gcs_host: skip_unless!("STORAGE_EMULATOR_HOST"),
            bucket: skip_unless!("PG2BQ_TEST_GCS_BUCKET"),
            bq_host: skip_unless!("BIGQUERY_EMULATOR_HOST"),
            project: skip_unless!("PG2BQ_TEST_BQ_PROJECT"),
            dataset: format!("it_{:08x}", rand::random::<u32>()),
        }
    };
}

impl Emulators {
    pub async fn bigquery(&self) -> BigQuery {
        let options = BigQueryOptions { emulator_host: Some(self.bq_host.clone()), ..BigQueryOptions::default() };
        BigQuery::connect(&self.project, None, &options).await.unwrap()
    }

    /// Exports `tables` to a fresh prefix on fake-gcs; returns the manifest URI.
    pub fn export(&self, tables: &[String], extra: &[&str]) -> String {
        let dest = format!("gs://{}/load-{:08x}", self.bucket, rand::random::<u32>());
        let mut args = vec!["export", "--source", &self.pg_url, "--dest", &dest, "--run-id", "run1", "--progress", "off"];
        for table in tables {
            args.extend(["--table", table.as_str()]);
        }
        args.extend_from_slice(extra);
        let out = pg2bq(&args);
        assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
        format!("{dest}/run1/manifest.json")
    }

    pub fn load_command(&self, manifest: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pg2bq"));
        command
            .args([
                "load",
                "--manifest",
                manifest,
                "--project",
                &self.project,
                "--dataset",
                &self.dataset,
                "--create-dataset",
                "--progress",
                "off",
            ])
            .args(extra)
            .env("NO_COLOR", "1");
        command
    }

    pub fn load(&self, manifest: &str, extra: &[&str]) -> std::process::Output {
        self.load_command(manifest, extra).output().unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM `{}.{}.{table}`", self.project, self.dataset);
        self.bigquery().await.query_counts(&sql).await.unwrap()[0] as i64
    }

    /// Rows of a query through Google's Python client, values as text.
    pub fn python_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let python = std::env::var("PG2BQ_TEST_BQ_PYTHON").expect("PG2BQ_TEST_BQ_PYTHON");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bq_query.py");
        let out =
            Command::new(python).arg(script).arg(&self.project).arg(sql).env("BIGQUERY_EMULATOR_HOST", &self.bq_host).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// The fault-injecting proxy of scripts/faults-up.sh (scripts/fault_proxy.py), one host in
/// front of fake-gcs-server and one in front of the BigQuery emulator.
pub struct FaultProxy {
    pub gcs_host: String,
    pub bq_host: String,
}

/// `FaultProxy` from the environment, or skip the test (see `skip_unless!`).
#[macro_export]
macro_rules! fault_proxy {
    () => {
        $crate::support::FaultProxy {
            gcs_host: skip_unless!("PG2BQ_TEST_GCS_FAULT_HOST"),
            bq_host: skip_unless!("PG2BQ_TEST_BQ_FAULT_HOST"),
        }
    };
}

impl FaultProxy {
    /// Replaces the proxy's rules (see scripts/fault_proxy.py) and clears its counters;
    /// `json!({})` passes everything through. Returns the counters (all zero).
    pub async fn set(&self, config: serde_json::Value) -> serde_json::Value {
        let response = reqwest::Client::new().post(format!("{}/__faults", self.gcs_host)).json(&config).send().await.unwrap();
        assert!(response.status().is_success(), "fault proxy refused {config}");
        response.json().await.unwrap()
    }

    /// Requests seen and faults injected since the last [`Self::set`].
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/__faults", self.gcs_host)).await.unwrap().json().await.unwrap()
    }
}

/// Objects on fake-gcs through its JSON API (what a user's `gcloud storage` would do).
/// An object name as one URL path segment or query value (`/`, `+`, blanks… escaped).
fn encode_object_name(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Emulators {
    fn object_url(&self, name: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.gcs_host, self.bucket, encode_object_name(name))
    }

    /// Names of the objects under `prefix` (no leading `gs://bucket/`).
    pub async fn object_names(&self, prefix: &str) -> Vec<String> {
        self.objects(prefix).await.into_iter().map(|(name, _)| name).collect()
    }

    /// The objects under `prefix` with their sizes, in name order.
    pub async fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let url = format!("{}/storage/v1/b/{}/o?prefix={prefix}", self.gcs_host, self.bucket);
        let listing: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        let items = listing["items"].as_array().into_iter().flatten();
        let mut objects: Vec<(String, u64)> =
            items.map(|o| (o["name"].as_str().unwrap().to_string(), o["size"].as_str().unwrap().parse().unwrap())).collect();
        objects.sort();
        objects
    }

    pub async fn download(&self, name: &str) -> Vec<u8> {
        let response = reqwest::get(format!("{}?alt=media", self.object_url(name))).await.unwrap();
        assert!(response.status().is_success(), "download {name}: {}", response.status());
        response.bytes().await.unwrap().to_vec()
    }

    /// Creates or replaces an object.
    pub async fn upload(&self, name: &str, body: Vec<u8>) {
        let url = format!("{}/upload/storage/v1/b/{}/o?uploadType=media&name={}", self.gcs_host, self.bucket, encode_object_name(name));
        let response = reqwest::Client::new().post(url).body(body).send().await.unwrap();
        assert!(response.status().is_success(), "upload {name}: {}", response.status());
    }

    pub async fn delete_object(&self, name: &str) {
        let response = reqwest::Client::new().delete(self.object_url(name)).send().await.unwrap();
        assert!(response.status().is_success(), "delete {name}: {}", response.status());
    }

    /// The object name of a `gs://` URI in the test bucket.
    pub fn object_name<'a>(&self, uri: &'a str) -> &'a str {
        uri.strip_prefix(&format!("gs://{}/", self.bucket)).expect("a URI in the test bucket")
    }
}

/// Writes a summary line to stderr directly, not through `eprintln!`, so the test harness shows
/// it without `--nocapture` (the kill trials, the hostile inputs and the fault runs report here).
pub fn report_line(line: &str) {
    use std::io::Write;
    writeln!(std::io::stderr(), "{line}").expect("stderr is writable");
}

impl Emulators {
    /// `pg2bq validate --json` against the emulator, or against `bq_host` (the fault proxy):
    /// exit code, JSON report, stderr.
    pub fn validate_through(&self, bq_host: &str, manifest: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_pg2bq"))
            .args(["validate", "--manifest", manifest, "--project", &self.project, "--dataset", &self.dataset, "--json"])
            .args(["--progress", "off"])
            .args(extra)
            .env("BIGQUERY_EMULATOR_HOST", bq_host)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("no JSON report: {stderr}"));
        (out.status.code(), report, stderr)
    }

    /// [`Self::validate_through`] the emulator itself.
    pub fn validate(&self, manifest: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        self.validate_through(&self.bq_host, manifest, extra)
    }
}

/// `(check, column)` of every failed check of a validate report (a skipped one did not fail).
pub fn failed_checks(report: &serde_json::Value) -> Vec<(String, String)> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["checks"].as_array().unwrap().iter())
        .filter(|c| c["status"] == "fail")
        .map(|c| (c["check"].as_str().unwrap().to_string(), c["column"].as_str().unwrap_or("-").to_string()))
        .collect()
}
