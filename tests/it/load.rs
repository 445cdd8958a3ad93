//! `pg2bq load` against the BigQuery emulator (local-bigquery) reading fake-gcs-server:
//! export → load → query, checked against Postgres through our client and Google's Python
//! client; crash and re-run; double append; a changed snapshot; an incompatible table.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::*;
use crate::{emulators, skip_unless};

#[tokio::test]
async fn sample_app_loads_and_matches_postgres_through_two_clients() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "").await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.02"]);
    let tables = [db.table("entities"), db.table("events"), db.table("entity_mentions")];
    let manifest = s.export(&tables, &["--file-size", "64KiB", "--row-group-size", "64KiB"]);
    let prefix = format!("{}__", db.schema);
    let out = s.load(&manifest, &["--partition-by", "events.mentioned_at:DAY", "--cluster-by", "entity_mentions.entity_id", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tables"].as_array().unwrap().len(), 3);

    for name in ["entities", "events", "entity_mentions"] {
        let expected: i64 = db.client.query_one(&format!("SELECT count(*) FROM {}", db.table(name)), &[]).await.unwrap().get(0);
        assert_eq!(s.count(&format!("{prefix}{name}")).await, expected, "{name}");
    }
    // Values: every event, field by field, from Postgres and from BigQuery (Google's client).
    let pg_rows = db
        .client
        .query(
            &format!(
                "SELECT id::text AS id_text, title, body, metadata::text, risk_score::text, array_to_string(tags, '|'), \
                 ((EXTRACT(EPOCH FROM mentioned_at) * 1000000)::int8)::text FROM {} ORDER BY id",
                db.table("events")
            ),
            &[],
        )
        .await
        .unwrap();
    let bq_rows = s.python_rows(&format!(
        "SELECT CAST(id AS STRING) AS id_text, title, body, IF(metadata IS NULL, NULL, TO_JSON_STRING(metadata)), CAST(risk_score AS STRING), ARRAY_TO_STRING(tags, '|'), \
         CAST(UNIX_MICROS(mentioned_at) AS STRING) FROM `{}.{}.{prefix}events` ORDER BY id",
        s.project, s.dataset
    ));
    assert_eq!(bq_rows.len(), pg_rows.len());
    for (pg, bq) in pg_rows.iter().zip(&bq_rows) {
        let pg: Vec<Option<String>> = (0..7).map(|i| pg.get(i)).collect();
        let json = |v: &Option<String>| v.as_deref().map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap());
        let float = |v: &Option<String>| v.as_deref().map(|t| t.parse::<f64>().unwrap());
        assert_eq!((&pg[0], &pg[1], &pg[2]), (&bq[0], &bq[1], &bq[2]), "id/title/body of event {:?}", pg[0]);
        assert_eq!(json(&pg[3]), json(&bq[3]), "metadata of event {:?}", pg[0]);
        assert_eq!(float(&pg[4]), float(&bq[4]), "risk_score of event {:?}", pg[0]);
        // A NULL array loads as an empty REPEATED field.
        assert_eq!(pg[5].clone().unwrap_or_default(), bq[5].clone().unwrap_or_default(), "tags of event {:?}", pg[0]);
        assert_eq!(pg[6], bq[6], "mentioned_at of event {:?}", pg[0]);
    }
    // The declared schema reached BigQuery: REQUIRED, JSON, partitioning, clustering.
    let bq = s.bigquery().await;
    let events = bq.table(&s.dataset, &format!("{prefix}events")).await.unwrap().unwrap();
    let field = |name: &str| events["schema"]["fields"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap().clone();
    assert_eq!((field("title")["mode"].as_str(), field("metadata")["type"].as_str()), (Some("REQUIRED"), Some("JSON")));
    assert_eq!(field("tags")["mode"], "REPEATED");
    assert_eq!(events["timePartitioning"]["field"], "mentioned_at");
    let mentions = bq.table(&s.dataset, &format!("{prefix}entity_mentions")).await.unwrap().unwrap();
    assert_eq!(mentions["clustering"]["fields"][0], "entity_id");
    db.drop().await;
}

#[tokio::test]
async fn type_matrix_loads_with_exact_values() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, include_str!("../fixtures/type_matrix.sql")).await;
    // The emulator stores BIGNUMERIC as DECIMAL(38,18) and rounds wider values (docs/load.md):
    // those two columns go as text here; real BigQuery takes them as BIGNUMERIC. The fixture's
    // JSON holds numbers no JSON column can keep (see the test below), so those go as text too.
    let casts = ["--cast", "c_numeric=text", "--cast", "c_numeric_58_20=text", "--cast", "c_json=text", "--cast", "c_jsonb=text"];
    let manifest = s.export(&[db.table("type_matrix")], &casts);
    let out = s.load(&manifest, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = format!("`{}.{}.{}__type_matrix`", s.project, s.dataset, db.schema);
    let checks: [(&str, &str, &str); 11] = [
        ("c_int8", "CAST(c_int8 AS STRING)", "c_int8::text"),
        ("c_numeric_38_9", "CAST(c_numeric_38_9 AS STRING)", "c_numeric_38_9::text"),
        ("c_text", "c_text", "c_text"),
        ("c_bytea", "TO_HEX(c_bytea)", "encode(c_bytea, 'hex')"),
        ("c_date", "CAST(UNIX_DATE(c_date) AS STRING)", "(c_date - DATE '1970-01-01')::text"),
        ("c_timestamptz", "CAST(UNIX_MICROS(c_timestamptz) AS STRING)", "((EXTRACT(EPOCH FROM c_timestamptz) * 1000000)::int8)::text"),
        ("c_timestamp", "CAST(UNIX_MICROS(TIMESTAMP(c_timestamp)) AS STRING)", "((EXTRACT(EPOCH FROM c_timestamp) * 1000000)::int8)::text"),
        (
            "c_time",
            "CAST(TIME_DIFF(c_time, TIME '00:00:00', MICROSECOND) AS STRING)",
            "((EXTRACT(EPOCH FROM c_time) * 1000000)::int8)::text",
        ),
        ("c_uuid", "c_uuid", "c_uuid::text"),
        (
            "c_int4_arr",
            "ARRAY_TO_STRING(ARRAY(SELECT CAST(e AS STRING) FROM UNNEST(c_int4_arr) e WITH OFFSET o ORDER BY o), ',')",
            "array_to_string(c_int4_arr, ',')",
        ),
        ("c_interval", "c_interval", "c_interval::text"),
    ];
    db.client.batch_execute("SET intervalstyle = 'iso_8601'").await.unwrap();
    for (column, bq_expr, pg_expr) in checks {
        let bq_rows = s.python_rows(&format!("SELECT {bq_expr} AS value FROM {table} ORDER BY id"));
        let pg_rows =
            db.client.query(&format!("SELECT {pg_expr} AS value FROM {} ORDER BY id", db.table("type_matrix")), &[]).await.unwrap();
        let pg: Vec<Option<String>> = pg_rows.iter().map(|r| r.get::<_, Option<String>>(0)).collect();
        let bq: Vec<Option<String>> = bq_rows.into_iter().map(|mut r| r.remove(0)).collect();
        let normalise = |v: &Option<String>| v.as_deref().map(minimal_decimal_if_numeric);
        let (pg, bq): (Vec<_>, Vec<_>) =
            if column == "c_numeric_38_9" { (pg.iter().map(normalise).collect(), bq.iter().map(normalise).collect()) } else { (pg, bq) };
        // An empty array and a NULL array both load as an empty REPEATED field.
        let (pg, bq): (Vec<_>, Vec<_>) = if column == "c_int4_arr" {
            (
                pg.into_iter().map(|v| v.unwrap_or_default()).map(Some).collect(),
                bq.into_iter().map(|v| v.unwrap_or_default()).map(Some).collect(),
            )
        } else {
            (pg, bq)
        };
        assert_eq!(bq, pg, "{column}");
    }
    db.drop().await;
}

fn minimal_decimal_if_numeric(text: &str) -> String {
    minimal_decimal(text)
}

/// JSON whose numbers BigQuery's JSON type cannot hold exactly fails the load (PARSE_JSON in
/// its exact mode) and leaves the destination as it was: no rounding, no partial table.
#[tokio::test]
async fn json_numbers_bigquery_cannot_hold_fail_the_load_atomically() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE j (id int PRIMARY KEY, doc jsonb); INSERT INTO j VALUES (1, '{\"n\": 1}'), (2, '{\"n\": 12345678901234567890123}');",
    )
    .await;
    let manifest = s.export(&[db.table("j")], &[]);
    let out = s.load(&manifest, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("column `doc`: 1 row(s) hold JSON that BigQuery's JSON type cannot store exactly")
            && stderr.contains("--cast doc=text"),
        "{stderr}"
    );
    assert!(s.bigquery().await.table(&s.dataset, &format!("{}__j", db.schema)).await.unwrap().is_none(), "no partial table");
    db.drop().await;
}

#[tokio::test]
async fn killed_load_reruns_to_exactly_the_snapshot() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE k (id int PRIMARY KEY, doc jsonb); INSERT INTO k SELECT i, jsonb_build_object('i', i) FROM generate_series(1, 5000) i;").await;
    let manifest = s.export(&[db.table("k")], &["--file-size", "16KiB", "--row-group-size", "16KiB"]);
    let table = format!("{}__k", db.schema);
    // Kill the first attempt as soon as its load job is done: the rows are staged, nothing is
    // committed, and its next requests (checks, then the final statement) are cut off.
    let mut child = s.load_command(&manifest, &[]).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("Load job done") {
            break;
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "the first load finished before it could be killed");
    child.kill().unwrap();
    child.wait().unwrap();
    // The emulator runs a query job inside its insert call and registers it only when done, so a
    // statement the killed run managed to send may still be running there (BigQuery would answer
    // the re-run with 409 at once). Re-run once it has finished, or after 15 s if it never began.
    let finalize = format!("pg2bq_run1_{}_{table}_truncate_finalize", s.dataset);
    let bq = s.bigquery().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !bq.succeeded_job(&finalize).await.unwrap() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    let out = s.load(&manifest, &["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["tables"][0]["reattached_jobs"].as_u64().unwrap() >= 1, "the re-run attached to the killed run's job: {report}");
    assert_eq!(s.count(&table).await, 5000);
    let distinct = s.python_rows(&format!("SELECT COUNT(DISTINCT id) FROM `{}.{}.{table}`", s.project, s.dataset));
    assert_eq!(distinct[0][0].as_deref(), Some("5000"));
    db.drop().await;
}

#[tokio::test]
async fn appending_the_same_run_twice_loads_it_once() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, md5(i::text) FROM generate_series(1, 300) i;",
    )
    .await;
    let manifest = s.export(&[db.table("a")], &[]);
    let table = format!("{}__a", db.schema);
    let first = s.load(&manifest, &["--mode", "append"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // The same command again (an operator's re-run, or after a crash): it attaches to its own
    // jobs and adds nothing.
    let second = s.load(&manifest, &["--mode", "append", "--json"]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(report["tables"][0]["reattached_jobs"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(s.count(&table).await, 300);
    db.drop().await;
}

#[tokio::test]
async fn a_changed_snapshot_or_table_is_refused_before_any_job() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE c (id int PRIMARY KEY, v text); INSERT INTO c SELECT i, md5(i::text) FROM generate_series(1, 100) i;",
    )
    .await;
    let manifest = s.export(&[db.table("c")], &[]);
    let table = format!("{}__c", db.schema);

    // An existing table with other columns: what cannot go in is shown, nothing changes.
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    use pg2bq::gcp::schema::{table_resource, Field, FieldMode};
    let other =
        [Field { name: "id".into(), field_type: pg2bq::model::types::BigQueryType::String, mode: FieldMode::Nullable, description: None }];
    bq.create_table(&s.dataset, &table, &table_resource(&s.project, &s.dataset, &table, &other, None, &[])).await.unwrap();
    let out = s.load(&manifest, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing was loaded:"), "{stderr}");
    assert!(stderr.contains("snapshot column `v` has no column `v` in the target; map it with --column-map"), "{stderr}");
    assert!(stderr.contains(&format!("table `{}.{table}` was not created by pg2bq", s.dataset)), "{stderr}");
    assert_eq!(s.count(&table).await, 0);

    // A file of the snapshot deleted: named, nothing submitted.
    let run_dir = manifest.trim_end_matches("/manifest.json");
    let listing: serde_json::Value = reqwest::get(format!(
        "{}/storage/v1/b/{}/o?prefix={}/",
        s.gcs_host,
        s.bucket,
        run_dir.trim_start_matches(&format!("gs://{}/", s.bucket))
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let parquet = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .find(|n| n.ends_with(".parquet"))
        .unwrap();
    let url = format!("{}/storage/v1/b/{}/o/{}", s.gcs_host, s.bucket, parquet.replace('/', "%2F"));
    reqwest::Client::new().delete(url).send().await.unwrap();
    let out = s.load(&manifest, &["--table-prefix", "fresh_"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("gs://{}/{parquet}` (table {}) is missing", s.bucket, db.table("c"))), "{stderr}");
    assert!(bq.table(&s.dataset, &format!("fresh_{table}")).await.unwrap().is_none(), "nothing may be created");
    db.drop().await;
}

#[tokio::test]
async fn dry_run_shows_jobs_and_quota_without_submitting() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE d (id int PRIMARY KEY, doc json); INSERT INTO d VALUES (1, '{}');").await;
    let manifest = s.export(&[db.table("d")], &[]);
    let out = s.load(&manifest, &["--dry-run", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = &plan["tables"][0];
    assert_eq!(table["load_jobs"][0]["job_id"], format!("pg2bq_run1_{}_{}__d_truncate_load0000", s.dataset, db.schema));
    assert!(table["finalize"]["sql"].as_str().unwrap().contains("PARSE_JSON(s.`doc`)"));
    assert!((table["daily_quota_share"].as_f64().unwrap() - 1.0 / 1500.0).abs() < 1e-12);
    assert!(s.bigquery().await.table(&s.dataset, &format!("{}__d", db.schema)).await.unwrap().is_none());
    db.drop().await;
}

/// Load jobs only: no code path may use streaming inserts (tabledata.insertAll or the
/// Storage Write API).
#[test]
fn no_code_path_uses_streaming_inserts() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in walk(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        for forbidden in ["insertAll", "tabledata()", "storage()", "append_rows", "insert_all"] {
            assert!(!text.contains(forbidden), "{} uses `{forbidden}`", file.display());
        }
    }
}

/// An empty table exports with no files, loads as an empty table with its schema (no load job
/// has zero URIs), and validates.
#[tokio::test]
async fn an_empty_table_round_trips() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE e (id int PRIMARY KEY, doc jsonb, at timestamptz NOT NULL);").await;
    let manifest = s.export(&[db.table("e")], &[]);
    let out = s.load(&manifest, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = format!("{}__e", db.schema);
    assert_eq!(s.count(&table).await, 0);
    let schema = s.bigquery().await.table(&s.dataset, &table).await.unwrap().unwrap()["schema"]["fields"].clone();
    assert_eq!(schema.as_array().unwrap().len(), 3, "{schema}");
    let out = pg2bq(&["validate", "--manifest", &manifest, "--project", &s.project, "--dataset", &s.dataset]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    db.drop().await;
}
