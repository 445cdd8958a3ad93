//! `load`'s idempotency rules against an in-memory BigQuery: attaching to jobs an earlier run
//! submitted, retrying failed attempts under new ids, refusing to append a run twice, a merge
//! that crashed converging without merging twice; refusing, before any job, to delete rows of a
//! table pg2bq did not create or to create a mistyped target; what each load records.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::*;
use crate::gcp::bigquery::{BigQueryStep, InsertedJob, JobCounts, Row, JOB_ATTEMPTS};
use crate::model::manifest::{FileManifest, TableNames};
use crate::model::types::{map_column, OutOfRange, PgColumn};

/// Rows in each file of the tests' manifests.
const FILE_ROWS: u64 = 10;

/// How a job ended.
#[derive(Debug, Clone)]
enum FakeJob {
    Succeeded(JobCounts),
    Failed(String),
}

/// Tables (resource with labels, rows) and jobs by id. A new load job loads [`FILE_ROWS`] per
/// URI; a `MERGE` reports every staged row inserted; another query job is only recorded; a
/// job id in `failing` fails when submitted.
#[derive(Default)]
struct FakeBigQuery {
    tables: Mutex<BTreeMap<String, (Value, u64)>>,
    jobs: Mutex<BTreeMap<String, FakeJob>>,
    failing: BTreeSet<String>,
    /// Job ids refused as DML over rows in the streaming buffer when submitted.
    buffered: BTreeSet<String>,
    /// Job ids submitted (not attached to), in order.
    submitted: Mutex<Vec<String>>,
    /// Configurations of jobs by id (of those submitted here, or given).
    configurations: Mutex<BTreeMap<String, Value>>,
}

impl FakeBigQuery {
    fn with_table(self, table_id: &str, labels: Value, rows: u64) -> Self {
        let resource = json!({ "schema": { "fields": [
            { "name": "id", "type": "INTEGER", "mode": "REQUIRED" },
            { "name": "v", "type": "STRING" },
        ] }, "labels": labels, "numRows": rows.to_string() });
        self.tables.lock().unwrap().insert(table_id.into(), (resource, rows));
        self
    }

    fn with_job(self, job_id: &str, job: FakeJob) -> Self {
        self.jobs.lock().unwrap().insert(job_id.into(), job);
        self
    }

    fn submitted(&self) -> Vec<String> {
        self.submitted.lock().unwrap().clone()
    }

    fn labels(&self, table_id: &str) -> Value {
        self.tables.lock().unwrap()[table_id].0["labels"].clone()
    }

    /// The records written to `_pg2bq_runs`, in order (each job's record, as the statement holds it).
    fn records(&self) -> Vec<LoadRecord> {
        let configurations = self.configurations.lock().unwrap();
        let statements =
            self.submitted().into_iter().filter_map(|id| configurations.get(&id)?["query"]["query"].as_str().map(str::to_string));
        let records = statements.filter(|sql| sql.starts_with("MERGE `p.d._pg2bq_runs`"));
        records
            .map(|sql| {
                let text = sql.split(" AS jobs, '").nth(1).unwrap().split("' AS record)").next().unwrap();
                LoadRecord::parse(&text.replace("\\'", "'").replace("\\\\", "\\")).unwrap()
            })
            .collect()
    }

    /// A new load job's effect on its destination.
    fn load(&self, load: &Value) -> u64 {
        let rows = FILE_ROWS * load["sourceUris"].as_array().map_or(0, Vec::len) as u64;
        let destination = load["destinationTable"]["tableId"].as_str().unwrap().to_string();
        let mut tables = self.tables.lock().unwrap();
        let entry = tables.entry(destination).or_insert_with(|| (json!({}), 0));
        entry.1 = if load["writeDisposition"] == "WRITE_APPEND" { entry.1 + rows } else { rows };
        rows
    }
}

fn not_found(step: BigQueryStep) -> BigQueryError {
    BigQueryError::Status { step, status: reqwest::StatusCode::NOT_FOUND, attempts: 1, message: "missing".into() }
}

#[async_trait]
impl BigQueryApi for FakeBigQuery {
    async fn table(&self, _dataset: &str, table: &str) -> Result<Option<Value>, BigQueryError> {
        Ok(self.tables.lock().unwrap().get(table).map(|(resource, _)| resource.clone()))
    }
    async fn create_table(&self, _dataset: &str, table: &str, resource: &Value) -> Result<(), BigQueryError> {
        self.tables.lock().unwrap().insert(table.into(), (resource.clone(), 0));
        Ok(())
    }
    async fn delete_table(&self, _dataset: &str, table: &str) -> Result<(), BigQueryError> {
        self.tables.lock().unwrap().remove(table);
        Ok(())
    }
    async fn list_tables(&self, _dataset: &str) -> Result<Vec<String>, BigQueryError> {
        Ok(self.tables.lock().unwrap().keys().cloned().collect())
    }
    async fn set_labels(&self, dataset: &str, table: &str, labels: &[(String, String)]) -> Result<(), BigQueryError> {
        let mut tables = self.tables.lock().unwrap();
        let step = || BigQueryStep::SetLabels { dataset: dataset.into(), table: table.into() };
        let (resource, _) = tables.get_mut(table).ok_or_else(|| not_found(step()))?;
        for (key, value) in labels {
            resource["labels"][key] = json!(value);
        }
        Ok(())
    }
    async fn insert_job(&self, job_id: &str, configuration: &Value) -> Result<InsertedJob, BigQueryError> {
        if self.jobs.lock().unwrap().contains_key(job_id) {
            return Ok(InsertedJob { existed: true, location: None });
        }
        self.submitted.lock().unwrap().push(job_id.into());
        self.configurations.lock().unwrap().insert(job_id.into(), configuration.clone());
        let job = match configuration.get("load") {
            _ if self.failing.contains(job_id) => FakeJob::Failed("invalid: boom".into()),
            _ if self.buffered.contains(job_id) => FakeJob::Failed(format!(
                "invalidQuery: UPDATE or DELETE statement over table p.d.t would affect rows in the streaming buffer, which is not supported ({job_id})"
            )),
            Some(load) => {
                FakeJob::Succeeded(JobCounts { output_rows: Some(self.load(load)), dml_affected_rows: None, ..JobCounts::default() })
            }
            None if configuration["query"]["query"].as_str().is_some_and(|q| q.starts_with("MERGE")) => {
                let staged = self.tables.lock().unwrap().iter().filter(|(id, _)| id.contains("staging")).map(|(_, (_, rows))| *rows).sum();
                FakeJob::Succeeded(JobCounts { inserted_rows: Some(staged), updated_rows: Some(0), ..JobCounts::default() })
            }
            None => FakeJob::Succeeded(JobCounts::default()),
        };
        self.jobs.lock().unwrap().insert(job_id.into(), job);
        Ok(InsertedJob { existed: false, location: None })
    }
    async fn wait_for_job(&self, job_id: &str, _location: Option<&str>) -> Result<JobCounts, BigQueryError> {
        match self.jobs.lock().unwrap().get(job_id).cloned().ok_or_else(|| not_found(BigQueryStep::ReadJob { job_id: job_id.into() }))? {
            FakeJob::Succeeded(counts) => Ok(counts),
            FakeJob::Failed(reasons) => Err(BigQueryError::JobFailed { job_id: job_id.into(), reasons }),
        }
    }
    async fn job_configuration(&self, job_id: &str) -> Result<Option<Value>, BigQueryError> {
        Ok(self.configurations.lock().unwrap().get(job_id).cloned())
    }
    async fn succeeded_job(&self, job_id: &str) -> Result<bool, BigQueryError> {
        Ok(matches!(self.jobs.lock().unwrap().get(job_id), Some(FakeJob::Succeeded(_))))
    }
    fn streaming_buffer_wait(&self, _attempt: u32) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// `SELECT COUNT(*) FROM `p.d.<table>``: the table's rows; the duplicate-key check: none;
    /// the records of a run in `_pg2bq_runs`: those written.
    async fn query_one_row(&self, sql: &str) -> Result<Row, BigQueryError> {
        if sql.starts_with("SELECT COUNT(*) - COUNT(DISTINCT") {
            return Ok(vec![Some("0".into())]);
        }
        if sql.starts_with("SELECT COUNT(*) FROM `p.d._pg2bq_runs`") {
            let other = |r: &LoadRecord| !(r.mode == LoadMode::Append && sql.contains(&format!("jobs = '{}'", r.jobs)));
            let recorded = self
                .records()
                .iter()
                .filter(|r| sql.contains(&format!("run_id = '{}' AND table_id = '{}'", r.run_id, r.table_id)) && other(r))
                .count();
            return Ok(vec![Some(recorded.to_string())]);
        }
        let table = sql.trim_end_matches('`').rsplit('.').next().unwrap();
        let rows = self.tables.lock().unwrap().get(table).map_or(0, |(_, rows)| *rows);
        Ok(vec![Some(rows.to_string())])
    }
}

fn manifest(tables: &[&str], files: usize) -> Manifest {
    let column = |name: &str, type_name: &str, not_null: bool| {
        let pg = PgColumn { not_null, ..PgColumn::base(name, type_name, -1) };
        let mapping = map_column(&pg, None, OutOfRange::Refuse).unwrap();
        ColumnManifest { mapping, adjusted_rows: 0, aggregates: ColumnAggregates::default() }
    };
    let table = |name: &&str| TableManifest {
        day_counts: Vec::new(),
        name: format!("public.{name}"),
        table: None,
        bq_table: name.to_string(),
        source_query: String::new(),
        primary_key: vec![],
        foreign_keys: vec![],
        columns: vec![column("id", "int8", true), column("v", "text", false)],
        partitions: vec![],
        files: (0..files)
            .map(|i| FileManifest {
                path: format!("public.{name}/part-{i:05}.parquet"),
                uri: String::new(),
                partition: 0,
                rows: FILE_ROWS,
                bytes: 100,
                crc32c: String::new(),
                aggregates: vec![],
                row_fingerprint: None,
            })
            .collect(),
        row_count: FILE_ROWS * files as u64,
        tail: None,
        rejected: None,
        row_hashes: None,
        deleted_keys: None,
        row_fingerprint: None,
    };
    Manifest::of_run("r1", tables.iter().map(table).collect())
}

fn target(mode: LoadMode) -> LoadTarget {
    LoadTarget { project: "p".into(), dataset: "d".into(), mode, ..LoadTarget::default() }
}

fn planned(tables: &[&str], mode: LoadMode) -> (Manifest, LoadPlan) {
    let manifest = manifest(tables, 2);
    let plan = plan_load(&manifest, "gs://b/p/r1", &target(mode)).unwrap();
    (manifest, plan)
}

async fn run(bq: &FakeBigQuery, tables: &[&str], mode: LoadMode) -> Result<Vec<TableReport>, LoadError> {
    let (manifest, plan) = planned(tables, mode);
    load_tables(bq, &plan, &target(mode), &manifest, None).await
}

const TRUNCATE_JOB: &str = "pg2bq_r1_d_t_truncate_load0000";
const APPEND_JOB: &str = "pg2bq_r1_d_t_append_load0000";

/// The label pg2bq puts on the tables it creates.
fn ours() -> Value {
    json!({ "pg2bq_created": "true" })
}

#[tokio::test]
async fn a_fresh_load_submits_its_job_counts_marks_the_table_as_pg2bqs_and_records_the_run() {
    let bq = FakeBigQuery::default();
    let reports = run(&bq, &["t"], LoadMode::Truncate).await.unwrap();
    let record = bq.records();
    assert_eq!(bq.submitted()[0], TRUNCATE_JOB);
    assert!(bq.submitted()[1].starts_with("pg2bq_r1_d_t_truncate_record_"), "{:?}", bq.submitted());
    assert_eq!((reports[0].rows, reports[0].reattached_jobs), (20, 0));
    assert_eq!(bq.labels("t"), ours(), "the creation label only; the run goes to _pg2bq_runs");
    assert_eq!((record.len(), record[0].run_id.as_str(), record[0].mode, record[0].routed), (1, "r1", LoadMode::Truncate, false));
    assert_eq!(reports[0].effect, "creates table `d.t` and loads 20 row(s)");
}

/// Issue 19: a load without --mode into the app's table deleted its rows.
#[tokio::test]
async fn a_truncate_into_a_table_pg2bq_did_not_create_is_refused_before_any_job_unless_asked_for() {
    let bq = FakeBigQuery::default().with_table("t", json!({ "team": "app" }), 100).with_table("u", ours(), 7);
    let error = run(&bq, &["t", "u"], LoadMode::Truncate).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("table `d.t` was not created by pg2bq and holds 100 row(s): a truncate load would delete them"), "{text}");
    assert!(text.contains("--mode merge") && text.contains("--mode truncate --replace-existing-rows"), "{text}");
    assert!(bq.submitted().is_empty(), "no job at all, not even for the table pg2bq owns: {:?}", bq.submitted());
    let (manifest, plan) = planned(&["t", "u"], LoadMode::Truncate);
    let replace = LoadTarget { replace_existing_rows: true, ..target(LoadMode::Truncate) };
    let reports = load_tables(&bq, &plan, &replace, &manifest, None).await.unwrap();
    assert_eq!(reports[0].effect, "deletes 100 row(s) existing in `d.t`, then loads 20 row(s)");
    assert_eq!(bq.labels("t"), json!({ "team": "app" }), "an app's table is not labelled");
    let bq = FakeBigQuery::default().with_table("t", json!({ "team": "app" }), 100);
    assert_eq!(run(&bq, &["t"], LoadMode::Append).await.unwrap()[0].effect, "inserts 20 row(s) into `d.t`; deletes nothing");
}

/// Issue 19: a typo in --table-map created a table beside the app's.
#[tokio::test]
async fn a_mapped_target_that_is_not_there_is_refused_with_the_closest_names_unless_create_missing() {
    let bq = FakeBigQuery::default().with_table("entity_mentions", json!({}), 3).with_table("events", json!({}), 3);
    let manifest = manifest(&["m"], 2);
    let mapped = |create_missing| LoadTarget {
        names: TableNames { prefix: String::new(), map: [("m".to_string(), "entity_mentionz".to_string())].into() },
        create_missing,
        ..target(LoadMode::Merge)
    };
    let keyed = |t: LoadTarget| LoadTarget { merge_keys: [("m".to_string(), vec!["id".to_string()])].into(), ..t };
    let plan = plan_load(&manifest, "gs://b/p/r1", &keyed(mapped(false))).unwrap();
    let error = load_tables(&bq, &plan, &keyed(mapped(false)), &manifest, None).await.unwrap_err().to_string();
    assert!(
        error.contains("--table-map sends `public.m` to table `entity_mentionz`, which is not in dataset `d` (closest: `entity_mentions`"),
        "{error}"
    );
    assert!(error.contains("--create-missing"), "{error}");
    assert!(bq.submitted().is_empty() && !bq.tables.lock().unwrap().contains_key("entity_mentionz"));
    load_tables(&bq, &plan, &keyed(mapped(true)), &manifest, None).await.unwrap();
    assert_eq!(bq.labels("entity_mentionz"), ours());
}

#[tokio::test]
async fn truncate_attaches_to_its_succeeded_job_instead_of_loading_again() {
    let counts = JobCounts { output_rows: Some(20), dml_affected_rows: None, ..JobCounts::default() };
    let bq = FakeBigQuery::default().with_table("t", ours(), 20).with_job(TRUNCATE_JOB, FakeJob::Succeeded(counts));
    let reports = run(&bq, &["t"], LoadMode::Truncate).await.unwrap();
    assert_eq!(bq.submitted().len(), 1, "only the record is written: {:?}", bq.submitted());
    assert_eq!((reports[0].job_ids[0].as_str(), reports[0].reattached_jobs), (TRUNCATE_JOB, 1));
}

#[tokio::test]
async fn a_job_id_whose_attempt_failed_retries_under_the_next_id() {
    let failed = || FakeJob::Failed("backendError: gone".into());
    let bq = FakeBigQuery::default().with_job(TRUNCATE_JOB, failed()).with_job(&format!("{TRUNCATE_JOB}-r2"), failed());
    let reports = run(&bq, &["t"], LoadMode::Truncate).await.unwrap();
    assert_eq!(bq.submitted()[0], format!("{TRUNCATE_JOB}-r3"));
    assert_eq!(reports[0].job_ids[0], format!("{TRUNCATE_JOB}-r3"));
}

#[tokio::test]
async fn after_every_attempt_failed_the_load_stops_with_the_last_reasons() {
    let mut bq = FakeBigQuery::default();
    for job_id in job_attempt_ids(TRUNCATE_JOB).take(JOB_ATTEMPTS - 1) {
        bq = bq.with_job(&job_id, FakeJob::Failed(format!("earlier: {job_id}")));
    }
    bq.failing.insert(format!("{TRUNCATE_JOB}-r{JOB_ATTEMPTS}"));
    let error = run(&bq, &["t"], LoadMode::Truncate).await.unwrap_err();
    assert!(
        matches!(&error, LoadError::Job { source: BigQueryError::JobFailed { job_id, .. }, .. } if job_id.ends_with("-r5")),
        "{error:?}"
    );
    assert_eq!(bq.submitted(), [format!("{TRUNCATE_JOB}-r5")]);
    let exhausted = FakeBigQuery::default().with_job(TRUNCATE_JOB, FakeJob::Failed("earlier".into()));
    let exhausted =
        (2..=JOB_ATTEMPTS).fold(exhausted, |bq, n| bq.with_job(&format!("{TRUNCATE_JOB}-r{n}"), FakeJob::Failed(format!("last {n}"))));
    let error = run(&exhausted, &["t"], LoadMode::Truncate).await.unwrap_err();
    assert!(
        matches!(&error, LoadError::Job { source: BigQueryError::AttemptsExhausted { reasons, .. }, .. } if reasons == "last 5"),
        "{error:?}"
    );
}

#[tokio::test]
async fn append_refuses_a_run_recorded_in_any_mode_or_labelled_by_an_older_pg2bq() {
    for mode in ["truncate", "append"] {
        let bq = FakeBigQuery::default().with_table("t", json!({ "pg2bq_run_r1": mode }), 20);
        let error = run(&bq, &["t"], LoadMode::Append).await.unwrap_err();
        assert!(matches!(&error, LoadError::AlreadyLoaded { how, .. } if how.ends_with(&format!("= `{mode}`"))), "{error:?}");
        assert!(bq.submitted().is_empty());
    }
    let bq = FakeBigQuery::default();
    run(&bq, &["t"], LoadMode::Truncate).await.unwrap();
    let error = run(&bq, &["t"], LoadMode::Append).await.unwrap_err();
    assert!(matches!(&error, LoadError::AlreadyLoaded { how, .. } if how == "recorded in `_pg2bq_runs`"), "{error:?}");
    // The same append again (e.g. after a crash once it was recorded) attaches to its own jobs.
    let bq = FakeBigQuery::default();
    run(&bq, &["t"], LoadMode::Append).await.unwrap();
    let submitted = bq.submitted().len();
    let again = run(&bq, &["t"], LoadMode::Append).await.unwrap();
    assert_eq!((bq.submitted().len(), again[0].reattached_jobs), (submitted, 2), "nothing submitted twice");
}

#[tokio::test]
async fn append_refuses_a_run_whose_unlabelled_truncate_load_succeeded() {
    let counts = JobCounts { output_rows: Some(20), dml_affected_rows: None, ..JobCounts::default() };
    let retried = format!("{TRUNCATE_JOB}-r3");
    let bq = FakeBigQuery::default().with_table("t", json!({}), 20).with_job(&retried, FakeJob::Succeeded(counts));
    let error = run(&bq, &["t"], LoadMode::Append).await.unwrap_err();
    assert!(matches!(&error, LoadError::AlreadyLoaded { how, .. } if how.contains("truncate load job")), "{error:?}");
    assert!(bq.submitted().is_empty());
    // Without that job, the run appends.
    let bq = FakeBigQuery::default().with_table("t", json!({}), 20);
    run(&bq, &["t"], LoadMode::Append).await.unwrap();
    assert_eq!(bq.submitted()[0], APPEND_JOB);
    assert_eq!(bq.records()[0].mode, LoadMode::Append);
}

#[tokio::test]
async fn each_failed_table_keeps_its_cause_and_the_others_load() {
    let mut bq = FakeBigQuery::default();
    bq.failing.insert("pg2bq_r1_d_bad_truncate_load0000".into());
    let error = run(&bq, &["t", "bad"], LoadMode::Truncate).await.unwrap_err();
    assert_eq!(error.to_string(), "1 of 2 tables failed to load: bad; loaded: t");
    let chain = crate::model::error_chain(&error);
    assert!(chain[1].starts_with("`bad`: table `bad`: load job `pg2bq_r1_d_bad_truncate_load0000` failed"), "{chain:?}");
    assert!(chain[1].ends_with("BigQuery job `pg2bq_r1_d_bad_truncate_load0000` failed: invalid: boom"), "{chain:?}");
    assert_eq!(bq.records().iter().map(|r| r.table_id.as_str()).collect::<Vec<_>>(), ["t"], "the other table loaded");
}

#[tokio::test]
async fn a_short_count_after_the_load_is_an_error_naming_both_counts() {
    // The earlier run's job reports 20 rows, but the table holds 5 (changed since).
    let counts = JobCounts { output_rows: Some(20), dml_affected_rows: None, ..JobCounts::default() };
    let bq = FakeBigQuery::default().with_table("t", ours(), 5).with_job(TRUNCATE_JOB, FakeJob::Succeeded(counts));
    let error = run(&bq, &["t"], LoadMode::Truncate).await.unwrap_err();
    assert!(matches!(error, LoadError::RowCount { expected: 20, actual: 5, .. }), "{error:?}");
    assert!(bq.records().is_empty(), "an unchecked load is not recorded");
}

#[tokio::test]
async fn a_merge_that_crashed_before_its_record_converges_on_rerun_without_merging_twice() {
    const LOAD: &str = "pg2bq_r1_d_t_merge_load0000";
    const MERGE: &str = "pg2bq_r1_d_t_merge_finalize";
    const KEYS: &str = "pg2bq_r1_d_t_merge_keys";
    let manifest = manifest(&["t"], 2);
    let target = LoadTarget { merge_keys: [("t".to_string(), vec!["id".to_string()])].into(), ..target(LoadMode::Merge) };
    let plan = plan_load(&manifest, "gs://b/p/r1", &target).unwrap();
    let (plan, target, manifest) = (&plan, &target, &manifest);
    let merge = |bq: FakeBigQuery| async move {
        let reports = load_tables(&bq, plan, target, manifest, None).await.unwrap();
        (bq, reports)
    };
    let (fresh, reports) = merge(FakeBigQuery::default().with_table("t", json!({}), 5)).await;
    assert_eq!(fresh.submitted()[..3], [LOAD, MERGE, KEYS]);
    assert_eq!(reports[0].merged, Some(MergeCounts { inserted: 20, already_present: 0, updated: 0 }));
    assert!(!fresh.tables.lock().unwrap().contains_key("t__pg2bq_staging_r1"), "staging dropped");
    let recorded = fresh.records();
    assert_eq!((recorded[0].mode, recorded[0].merged), (LoadMode::Merge, reports[0].merged));
    assert_eq!(recorded[0].keys_table.as_deref(), Some("t__pg2bq_keys_r1"));

    // Crashed after the MERGE, before the record: the staging table is still there.
    let merged = JobCounts { inserted_rows: Some(20), updated_rows: Some(0), ..JobCounts::default() };
    let crashed = FakeBigQuery::default()
        .with_table("t", json!({}), 25)
        .with_table("t__pg2bq_staging_r1", json!({}), 20)
        .with_job(LOAD, FakeJob::Succeeded(JobCounts { output_rows: Some(20), ..JobCounts::default() }))
        .with_job(MERGE, FakeJob::Succeeded(merged))
        .with_job(KEYS, FakeJob::Succeeded(JobCounts::default()));
    let (rerun, reports) = merge(crashed).await;
    assert_eq!(rerun.submitted().len(), 1, "nothing merged twice, only the record written: {:?}", rerun.submitted());
    assert_eq!(reports[0].merged, Some(MergeCounts { inserted: 20, already_present: 0, updated: 0 }));
    assert!(!rerun.tables.lock().unwrap().contains_key("t__pg2bq_staging_r1"), "staging dropped");
    assert_eq!(rerun.records(), recorded, "the same record as the uninterrupted run's");
}

#[tokio::test]
async fn a_job_of_another_run_with_the_same_id_is_never_attached_to() {
    let counts = JobCounts { output_rows: Some(20), ..JobCounts::default() };
    let other_files = json!({ "load": { "sourceUris": ["gs://elsewhere/r1/public.t/part-00000.parquet"] } });
    let bq = FakeBigQuery::default().with_job(TRUNCATE_JOB, FakeJob::Succeeded(counts));
    bq.configurations.lock().unwrap().insert(TRUNCATE_JOB.into(), other_files);
    let error = run(&bq, &["t"], LoadMode::Truncate).await.unwrap_err();
    let chain = crate::model::error_chain(&error).join(": ");
    assert!(chain.contains("exists for other work (its files: [\"gs://elsewhere/r1/public.t/part-00000.parquet\"])"), "{chain}");
    assert!(chain.contains("another run with the same run id"), "{chain}");
    assert!(bq.submitted().is_empty(), "nothing submitted, nothing recorded");
}

/// BigQuery refuses DML over rows an app streamed in the last ~90 minutes: the merge waits and
/// tries again under the next id, and says so when the buffer does not clear.
#[tokio::test]
async fn a_merge_refused_over_the_streaming_buffer_is_tried_again_and_named_when_it_stays() {
    const MERGE: &str = "pg2bq_r1_d_t_merge_finalize";
    let manifest = manifest(&["t"], 2);
    let target = LoadTarget { merge_keys: [("t".to_string(), vec!["id".to_string()])].into(), ..target(LoadMode::Merge) };
    let plan = plan_load(&manifest, "gs://b/p/r1", &target).unwrap();
    let mut bq = FakeBigQuery::default().with_table("t", json!({}), 5);
    bq.buffered = [MERGE.to_string(), format!("{MERGE}-r2")].into();
    let reports = load_tables(&bq, &plan, &target, &manifest, None).await.unwrap();
    assert!(reports[0].job_ids.contains(&format!("{MERGE}-r3")), "{:?}", reports[0].job_ids);
    assert_eq!(reports[0].merged, Some(MergeCounts { inserted: 20, already_present: 0, updated: 0 }));

    let mut bq = FakeBigQuery::default().with_table("t", json!({}), 5);
    bq.buffered = job_attempt_ids(MERGE).collect();
    let error = load_tables(&bq, &plan, &target, &manifest, None).await.unwrap_err();
    let chain = crate::model::error_chain(&error).join(": ");
    assert!(chain.contains("still in BigQuery's streaming buffer") && chain.contains("--streaming-buffer-wait"), "{chain}");
    assert!(bq.records().is_empty(), "nothing recorded");
}
