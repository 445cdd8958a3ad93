//! Cutover into an app's live table: the app created it (string ids, JSON metadata, a column
//! Postgres lacks, partitioned and clustered) and already writes to it. `load --mode merge`
//! through the fault proxy adds exactly the snapshot's new rows, leaves the live ones alone,
//! changes nothing when run again, and with `--overwrite-existing` takes the snapshot's values
//! for the overlapping ids; the table keeps its schema and layout; `validate` compares exactly
//! the snapshot's rows; bad pairings and repeated keys are refused with nothing loaded.

use serde_json::{json, Value};

use crate::faults::failing_bigquery;
use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

/// Postgres: 300 mentions, ids 1–300.
pub(crate) const SOURCE: &str = "CREATE TABLE entity_mentions (id bigint PRIMARY KEY, entity_id int NOT NULL, metadata jsonb,
        mentioned_at timestamptz NOT NULL, note text);
    INSERT INTO entity_mentions SELECT i, i % 7, jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i)),
        timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'pg ' || i FROM generate_series(1, 300) i;";

/// The app's table, as its own schema file creates it.
pub(crate) fn app_table(project: &str, dataset: &str) -> Value {
    json!({
        "tableReference": { "projectId": project, "datasetId": dataset, "tableId": "mentions" },
        "schema": { "fields": [
            { "name": "id", "type": "STRING", "mode": "REQUIRED", "description": "the app's id" },
            { "name": "entity_id", "type": "INTEGER", "mode": "REQUIRED" },
            { "name": "metadata", "type": "JSON", "mode": "NULLABLE" },
            { "name": "mentioned_at", "type": "TIMESTAMP", "mode": "REQUIRED" },
            { "name": "note", "type": "STRING", "mode": "NULLABLE" },
            { "name": "ingested_by", "type": "STRING", "mode": "NULLABLE" },
        ]},
        "timePartitioning": { "type": "DAY", "field": "mentioned_at" },
        "clustering": { "fields": ["entity_id"] },
    })
}

/// The app's live rows: ids 251–350, 50 of them inside the snapshot, with the app's values.
pub(crate) fn insert_live_rows(s: &Emulators) {
    s.python_rows(&format!(
        "INSERT INTO `{}.{}.mentions` (id, entity_id, metadata, mentioned_at, note, ingested_by) \
         SELECT CAST(i AS STRING), 100 + i, PARSE_JSON(FORMAT('{{\"live\": %d}}', i)), \
         TIMESTAMP_ADD(TIMESTAMP '2025-01-01 00:00:00+00', INTERVAL i HOUR), CONCAT('live ', CAST(i AS STRING)), 'app' \
         FROM UNNEST(GENERATE_ARRAY(251, 350)) AS i",
        s.project, s.dataset
    ));
}

/// One row as text: id, entity_id, metadata (parsed), mentioned_at (epoch µs), note, ingested_by.
pub(crate) type Row = (String, String, Option<Value>, String, Option<String>, Option<String>);

pub(crate) fn pg_row(i: i64) -> Row {
    let micros = (1_704_067_200 + i * 3600) * 1_000_000;
    (i.to_string(), (i % 7).to_string(), Some(json!({ "i": i, "tags": ["a", i] })), micros.to_string(), Some(format!("pg {i}")), None)
}

pub(crate) fn live_row(i: i64) -> Row {
    let micros = (1_735_689_600 + i * 3600) * 1_000_000;
    (i.to_string(), (100 + i).to_string(), Some(json!({ "live": i })), micros.to_string(), Some(format!("live {i}")), Some("app".into()))
}

pub(crate) fn table_rows(s: &Emulators) -> Vec<Row> {
    let rows = s.python_rows(&format!(
        "SELECT id, CAST(entity_id AS STRING), TO_JSON_STRING(metadata), CAST(UNIX_MICROS(mentioned_at) AS STRING), note, ingested_by \
         FROM `{}.{}.mentions` ORDER BY CAST(id AS INT64)",
        s.project, s.dataset
    ));
    let json = |v: &Option<String>| v.as_deref().map(|t| serde_json::from_str::<Value>(t).unwrap()).filter(|v| !v.is_null());
    rows.iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), json(&r[2]), r[3].clone().unwrap(), r[4].clone(), r[5].clone()))
        .collect()
}

pub(crate) fn merged(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "merge: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["tables"][0]["merged"].clone()
}

#[tokio::test]
async fn merge_into_the_apps_live_table_adds_only_new_keys_is_idempotent_and_overwrites_on_request() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, SOURCE).await;
    let manifest = s.export(&[db.table("entity_mentions")], &[]);
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    bq.create_table(&s.dataset, "mentions", &app_table(&s.project, &s.dataset)).await.unwrap();
    insert_live_rows(&s);
    let table_map = "entity_mentions=mentions";

    // The dry run shows the conversions into the app's columns and submits nothing.
    let out = s.load(&manifest, &["--mode", "merge", "--table-map", table_map, "--dry-run"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(plan.contains("id ← id: INT64 → STRING") && plan.contains("ingested_by: left NULL"), "{plan}");
    assert!(plan.contains("MERGE `"), "{plan}");
    assert_eq!(table_rows(&s).len(), 100);

    proxy.set(failing_bigquery(7)).await;
    let merge = |extra: &[&str]| {
        let mut args = vec!["--mode", "merge", "--table-map", table_map, "--json"];
        args.extend_from_slice(extra);
        s.load_command(&manifest, &args).env("BIGQUERY_EMULATOR_HOST", &proxy.bq_host).output().unwrap()
    };
    let counts = merged(&merge(&[]));
    assert_eq!(counts, json!({ "inserted": 250, "already_present": 50, "updated": 0 }));
    let expected: Vec<Row> = (1..=250).map(pg_row).chain((251..=350).map(live_row)).collect();
    assert_eq!(table_rows(&s), expected, "snapshot ∪ live rows, the live ones untouched");
    assert!(proxy.stats().await["injected"][0].as_u64().unwrap() > 0, "no fault was injected");

    // The 50 rows already there kept the app's values: validate says so and fails on them.
    let (code, report, _) = s.validate_through(&s.bq_host, &manifest, &["--table-map", table_map]);
    assert_eq!(code, Some(1), "{report:#}");
    let row_count = &report["tables"][0]["checks"][0];
    assert_eq!((row_count["check"].as_str(), row_count["passed"].as_bool()), (Some("row_count"), Some(true)));
    assert!(row_count["detail"].as_str().unwrap().contains("50 of them were already there and kept the table's values"), "{row_count}");

    // Run again: nothing changes; the report says so and gives the first merge's counts.
    let again = merge(&[]);
    assert_eq!(merged(&again), counts);
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["tables"][0]["done_before"], true);
    assert_eq!(table_rows(&s), expected);

    // Overwrite: the 50 overlapping ids take the snapshot's values; the app's own column stays.
    let counts = merged(&merge(&["--overwrite-existing"]));
    assert_eq!(counts, json!({ "inserted": 0, "already_present": 300, "updated": 50 }));
    let overwritten: Vec<Row> = (1..=300)
        .map(|i| {
            let mut row = pg_row(i);
            row.5 = (i > 250).then(|| "app".to_string());
            row
        })
        .chain((301..=350).map(live_row))
        .collect();
    assert_eq!(table_rows(&s), overwritten);

    // Subset validation: exactly the snapshot's rows, read back through the conversions; the
    // app's 50 own rows are counted apart. One changed cell in a snapshot row fails it, naming
    // the column; changes to the app's own rows do not.
    let validate = || s.validate_through(&proxy.bq_host, &manifest, &["--table-map", table_map, "--source", &s.pg_url]);
    let (code, report, stderr) = validate();
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let checks = report["tables"][0]["checks"].as_array().unwrap();
    let outside = checks.iter().find(|c| c["check"] == "outside_snapshot").unwrap();
    assert_eq!((outside["actual"].as_str(), outside["passed"].as_bool()), (Some("50 rows"), Some(true)));
    // The snapshot's rows, read back through the conversions, have the snapshot's row
    // fingerprints (JSON `metadata` is not covered); the app's own rows are not in them.
    let rows = checks.iter().find(|c| c["check"] == "row_fingerprint").unwrap();
    assert_eq!((rows["status"].as_str(), rows["expected"].as_str().unwrap().starts_with("rows 300, ")), (Some("pass"), true), "{rows}");
    assert_eq!(rows["detail"], "over columns id, entity_id, mentioned_at, note; not covered: metadata (JSON)", "{rows}");
    // The dry run estimates the same query (free dry runs) and compares nothing.
    let (code, report, stderr) = s.validate(&manifest, &["--table-map", table_map, "--dry-run"]);
    assert_eq!((code, report["dry_run"].as_bool()), (Some(0), Some(true)), "{stderr}");
    let estimate = &report["tables"][0]["checks"][0];
    assert_eq!((estimate["check"].as_str(), estimate["expected"].as_str()), (Some("estimate"), Some("the aggregate query")));
    assert!(estimate["actual"].as_str().unwrap().ends_with(" bytes") || estimate["actual"] == "unknown", "{estimate}");
    assert_eq!(report["tables"][0]["checks"][1]["expected"], "the row fingerprint query");
    s.python_rows(&format!("UPDATE `{}.{}.mentions` SET note = 'changed' WHERE id = '7'", s.project, s.dataset));
    s.python_rows(&format!("UPDATE `{}.{}.mentions` SET note = 'app edit' WHERE id = '340'", s.project, s.dataset));
    let (code, report, _) = validate();
    assert_eq!(code, Some(1), "{report:#}");
    let failed = failed_checks(&report);
    assert!(failed.contains(&("row_fingerprint".to_string(), "-".to_string())), "{failed:?}");
    assert!(failed.iter().all(|(check, column)| column == "note" || check == "row_fingerprint"), "{failed:?}");

    // The app's table kept its schema, descriptions and layout; no staging table is left.
    let table = bq.table(&s.dataset, "mentions").await.unwrap().unwrap();
    assert_eq!(table["schema"], app_table(&s.project, &s.dataset)["schema"], "schema kept");
    assert_eq!(
        (table["timePartitioning"]["field"].as_str(), table["clustering"]["fields"][0].as_str()),
        (Some("mentioned_at"), Some("entity_id"))
    );
    let staging =
        s.python_rows(&format!("SELECT table_name FROM `{}.{}.INFORMATION_SCHEMA.TABLES` ORDER BY table_name", s.project, s.dataset));
    assert_eq!(
        staging,
        [[Some("_pg2bq_runs".to_string())], [Some("mentions".to_string())], [Some("mentions__pg2bq_keys_run1".to_string())]],
        "only the app's table, the runs recorded for validate and the keys they name remain"
    );
    let labels = &table["labels"];
    assert!(labels.is_null() || labels.as_object().is_some_and(|l| l.is_empty()), "the app's table has no label: {labels}");
    db.drop().await;
}

#[tokio::test]
async fn pairings_that_lose_data_and_repeated_keys_are_refused_before_the_table_changes() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE m (id bigint, entity_id int NOT NULL, metadata jsonb, mentioned_at timestamptz NOT NULL, note text);
         INSERT INTO m VALUES (1, 1, NULL, now(), 'a'), (1, 2, NULL, now(), 'b'), (2, 3, NULL, now(), NULL);",
    )
    .await;
    let manifest = s.export(&[db.table("m")], &[]);
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    bq.create_table(&s.dataset, "mentions", &app_table(&s.project, &s.dataset)).await.unwrap();
    insert_live_rows(&s);

    // No primary key: the merge needs --key.
    let out = s.load(&manifest, &["--mode", "merge", "--table-map", "m=mentions"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("has no primary key") && stderr.contains("--key"), "{stderr}");
    // The key repeats in the snapshot: refused after staging, before the MERGE.
    let out = s.load(&manifest, &["--mode", "merge", "--table-map", "m=mentions", "--key", "m.id"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("merge key (id) is not unique") && stderr.contains("1 row(s)"), "{stderr}");
    // A text column into the app's INT64: refused with table, column and both types.
    let column_map = ["--column-map", "m.note=entity_id", "--column-map", "m.entity_id=ingested_by", "--column-map", "m.mentioned_at=note"];
    let out = s.load(&manifest, &[&["--mode", "append", "--table-map", "m=mentions"][..], &column_map].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("column `note` (STRING, Postgres text) cannot go into target column `entity_id` (REQUIRED INT64)"), "{stderr}");
    assert!(
        stderr.contains("column `mentioned_at` (TIMESTAMP, Postgres timestamp with time zone) cannot go into target column `note`"),
        "{stderr}"
    );
    assert!(stderr.contains("target column `mentioned_at` is REQUIRED and no snapshot column feeds it"), "{stderr}");
    assert_eq!(table_rows(&s), (251..=350).map(live_row).collect::<Vec<_>>(), "the live table is untouched");
    db.drop().await;
}

#[tokio::test]
async fn a_tail_export_after_200_inserts_merges_to_the_right_total_and_refuses_rows_added_below_its_watermark() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, SOURCE).await;
    let table = db.table("entity_mentions");
    let dest = format!("gs://{}/tail-{:08x}", s.bucket, rand::random::<u32>());
    let export = |run_id: &str, extra: &[&str]| {
        let mut args = vec!["export", "--source", &s.pg_url, "--dest", &dest, "--run-id", run_id, "--progress", "off", "--table", &table];
        args.extend_from_slice(extra);
        pg2bq(&args)
    };
    let exported = |out: std::process::Output, run_id: &str| {
        assert!(out.status.success(), "export {run_id}: {}", String::from_utf8_lossy(&out.stderr));
        format!("{dest}/{run_id}/manifest.json")
    };
    let backfill = exported(export("backfill", &[]), "backfill");
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    bq.create_table(&s.dataset, "mentions", &app_table(&s.project, &s.dataset)).await.unwrap();
    insert_live_rows(&s);
    let merge = |manifest: &str| merged(&s.load(manifest, &["--mode", "merge", "--table-map", "entity_mentions=mentions", "--json"]));
    assert_eq!(merge(&backfill), json!({ "inserted": 250, "already_present": 50, "updated": 0 }));

    // 200 more rows in Postgres (ids 301–500; the app already wrote 301–350 to BigQuery).
    db.client
        .batch_execute(&format!(
            "INSERT INTO {table} SELECT i, i % 7, jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i)), \
             timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'pg ' || i FROM generate_series(301, 500) i"
        ))
        .await
        .unwrap();
    let tail = exported(export("tail1", &["--since", &backfill, "--watermark", "mentioned_at"]), "tail1");
    let manifest: Value = serde_json::from_slice(&s.download(s.object_name(&tail)).await).unwrap();
    let recorded = &manifest["tables"][0];
    assert_eq!(recorded["row_count"], 200);
    assert_eq!((recorded["tail"]["parent_run"].as_str(), recorded["tail"]["rows_through"].as_u64()), (Some("backfill"), Some(300)));
    assert_eq!(merge(&tail), json!({ "inserted": 150, "already_present": 50, "updated": 0 }));
    let rows = s.python_rows(&format!("SELECT COUNT(*), COUNT(DISTINCT id) FROM `{}.{}.mentions`", s.project, s.dataset));
    assert_eq!(rows, [[Some("500".to_string()), Some("500".to_string())]], "ids 1–500 once each");

    // A tail of the tail with nothing new is empty; a row deleted below the watermark is refused.
    let empty = exported(export("tail2", &["--since", &tail, "--watermark", "mentioned_at"]), "tail2");
    let manifest: Value = serde_json::from_slice(&s.download(s.object_name(&empty)).await).unwrap();
    assert_eq!((manifest["tables"][0]["row_count"].as_u64(), manifest["tables"][0]["tail"]["rows_through"].as_u64()), (Some(0), Some(500)));
    db.client.batch_execute(&format!("DELETE FROM {table} WHERE id = 5")).await.unwrap();
    let out = export("tail3", &["--since", &empty, "--watermark", "mentioned_at"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("499 rows are at or below the watermark `mentioned_at` of run `tail2`") && stderr.contains("hold 500"),
        "{stderr}"
    );
    assert!(stderr.contains(r#"by key: 1 deleted ({"id" : 5})."#), "{stderr}");
    assert!(stderr.contains("--mode merge"), "{stderr}");
    db.drop().await;
}

#[tokio::test]
async fn rows_bigquery_cannot_hold_are_quarantined_counted_skipped_by_load_and_listed_by_validate() {
    let s = emulators!();
    let python = skip_unless!("PG2BQ_TEST_PYTHON");
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE q (id bigint PRIMARY KEY, happened_at timestamptz NOT NULL, note text, doc jsonb);
         INSERT INTO q SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 day', 'row ' || i, jsonb_build_object('i', i)
           FROM generate_series(1, 20) i;
         UPDATE q SET happened_at = timestamptz '12000-01-01 00:00:00+00' WHERE id = 7;
         UPDATE q SET happened_at = 'infinity' WHERE id = 9;
         -- JSON numbers: beyond every BigQuery number (id 12), and two it holds exactly (13, 14).
         UPDATE q SET doc = '{\"n\": [1, {\"deep\": 12345678901234567890123}]}' WHERE id = 12;
         UPDATE q SET doc = '{\"f\": 0.30000000000000004, \"u\": 18446744073709551615}' WHERE id = 13;
         UPDATE q SET doc = '{\"big\": 9007199254740993, \"g\": -2.5e-5}' WHERE id = 14;",
    )
    .await;
    let table = db.table("q");

    // The default refuses before any data moves and names the way out.
    let dest = format!("gs://{}/quarantine-{:08x}", s.bucket, rand::random::<u32>());
    let refused = pg2bq(&["export", "--source", &s.pg_url, "--dest", &dest, "--table", &table, "--progress", "off"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("column `happened_at`") && stderr.contains("2 row(s)") && stderr.contains("--on-bad-value quarantine"),
        "{stderr}"
    );

    let manifest_uri = s.export(std::slice::from_ref(&table), &["--on-bad-value", "quarantine"]);
    let manifest: Value = serde_json::from_slice(&s.download(s.object_name(&manifest_uri)).await).unwrap();
    let recorded = &manifest["tables"][0];
    assert_eq!(recorded["row_count"], 17);
    let rejected = &recorded["rejected"];
    assert_eq!(rejected["file"]["rows"], 3);
    let reasons: Vec<(&str, u64)> =
        rejected["reasons"].as_object().unwrap().iter().map(|(reason, rows)| (reason.as_str(), rows.as_u64().unwrap())).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0], ("doc: JSON numbers BigQuery's JSON type cannot hold exactly", 1));
    assert!(reasons[1].0.starts_with("happened_at: ") && reasons[1].1 == 2, "{reasons:?}");

    // An independent reader sees the two rows as Postgres prints them, with key and reason.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = manifest_uri.trim_end_matches("manifest.json");
    let object = s.object_name(&format!("{run_dir}{}", rejected["file"]["path"].as_str().unwrap())).to_string();
    std::fs::write(dir.path().join("rows.parquet"), s.download(&object).await).unwrap();
    let read = read_with_pyarrow(&python, dir.path());
    let keys: Vec<&str> = read["key"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(keys, [r#"{"id" : 12}"#, r#"{"id" : 7}"#, r#"{"id" : 9}"#]);
    let rows: Vec<String> = read["row"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(rows[0].contains("12345678901234567890123"), "{rows:?}");
    let rows: Vec<Value> = rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
    assert_eq!((rows[1]["happened_at"].as_str(), rows[2]["happened_at"].as_str()), (Some("12000-01-01T00:00:00+00:00"), Some("infinity")));
    let reasons: Vec<&str> = read["reason"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reasons[0].starts_with("doc: ") && reasons[1..].iter().all(|r| r.starts_with("happened_at: ")), "{reasons:?}");

    // Load skips them; verify checks the file; validate lists them and passes.
    let out = s.load(&manifest_uri, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.count(&format!("{}__q", db.schema)).await, 17);
    let verify = pg2bq(&["verify", "--manifest", &manifest_uri]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let (code, report, stderr) = s.validate(&manifest_uri, &["--source", &s.pg_url]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let checks = report["tables"][0]["checks"].as_array().unwrap();
    let listed = checks.iter().find(|c| c["check"] == "rejected").unwrap();
    assert_eq!(listed["actual"], "3 rows");
    assert!(listed["detail"].as_str().unwrap().starts_with("snapshot rows = 17 loaded + 3 rejected"), "{listed}");
    let drift = checks.iter().find(|c| c["check"] == "source_drift").unwrap();
    assert_eq!((drift["expected"].as_str(), drift["actual"].as_str()), (Some("20"), Some("20")));
    db.drop().await;
}

#[tokio::test]
async fn a_second_run_under_the_same_run_id_is_refused_not_mistaken_for_the_first() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE plain (id int PRIMARY KEY, v text); INSERT INTO plain SELECT i, 'v' || i FROM generate_series(1, 10) i;
         CREATE TABLE doc (id int PRIMARY KEY, d jsonb); INSERT INTO doc SELECT i, jsonb_build_object('i', i) FROM generate_series(1, 10) i;",
    )
    .await;
    let tables = [db.table("plain"), db.table("doc")];
    // Two destinations, one run id each time ("run1"): their job ids and staging names coincide.
    let first = s.export(&tables, &[]);
    let out = s.load(&first, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    db.client.batch_execute("INSERT INTO plain VALUES (11, 'new'); INSERT INTO doc VALUES (11, '{}')").await.unwrap();
    let second = s.export(&tables, &[]);
    let out = s.load(&second, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("2 of 2 tables failed to load"), "{stderr}");
    for name in ["plain", "doc"] {
        let named = format!("exists for other work (its files: [\"{}", first.trim_end_matches("manifest.json"));
        assert!(stderr.contains(&format!("__{name}_truncate_load0000` {named}")), "{name}: {stderr}");
    }
    assert!(stderr.contains("another run with the same run id was loaded into this dataset"), "{stderr}");
    for name in ["plain", "doc"] {
        assert_eq!(s.count(&format!("{}__{name}", db.schema)).await, 10, "{name}: the first run's rows stay");
    }
    db.drop().await;
}

/// Exports `table` under `run_id` to `dest` with `extra`; the output.
fn export_run(s: &Emulators, dest: &str, table: &str, run_id: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["export", "--source", &s.pg_url, "--dest", dest, "--run-id", run_id, "--progress", "off", "--table", table];
    args.extend_from_slice(extra);
    pg2bq(&args)
}

/// The manifest of a committed export, and its first table as JSON.
async fn committed(s: &Emulators, out: std::process::Output, dest: &str, run_id: &str) -> (String, Value) {
    assert!(out.status.success(), "export {run_id}: {}", String::from_utf8_lossy(&out.stderr));
    let uri = format!("{dest}/{run_id}/manifest.json");
    let manifest: Value = serde_json::from_slice(&s.download(s.object_name(&uri)).await).unwrap();
    (uri, manifest["tables"][0].clone())
}

/// The ids BigQuery holds in `table`, in order.
fn bq_ids(s: &Emulators, table: &str) -> Vec<i64> {
    let rows = s.python_rows(&format!("SELECT id FROM `{}.{}.{table}` ORDER BY id", s.project, s.dataset));
    rows.iter().map(|r| r[0].as_deref().unwrap().parse().unwrap()).collect()
}

/// Quarantine and tails together: a backfill sets aside ids 7 (its watermark `happened_at` is
/// the year 12000, above every other row's) and 9 (`infinity`) and 4 (a JSON number BigQuery
/// cannot hold, its watermark inside the kept range); a tail after it reads exactly the new rows,
/// sets aside its own bad one (id 23, year 10000), and a tail of that tail reads exactly the
/// rows added since: no refusal, no row read twice, none missed. Merge and validate agree.
#[tokio::test]
async fn tails_after_a_quarantine_read_exactly_the_new_rows_along_a_chain() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE q (id bigint PRIMARY KEY, happened_at timestamptz NOT NULL, doc jsonb);
         INSERT INTO q SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 day', jsonb_build_object('i', i)
           FROM generate_series(1, 20) i;
         UPDATE q SET happened_at = timestamptz '12000-01-01 00:00:00+00' WHERE id = 7;
         UPDATE q SET happened_at = 'infinity' WHERE id = 9;
         UPDATE q SET doc = '{\"n\": 12345678901234567890123}' WHERE id = 4;",
    )
    .await;
    let table = db.table("q");
    let dest = format!("gs://{}/tailq-{:08x}", s.bucket, rand::random::<u32>());
    let quarantine = ["--on-bad-value", "quarantine"];
    let (backfill, recorded) = committed(&s, export_run(&s, &dest, &table, "backfill", &quarantine), &dest, "backfill").await;
    assert_eq!((recorded["row_count"].as_u64(), recorded["rejected"]["file"]["rows"].as_u64()), (Some(17), Some(3)));

    // 5 new rows, one of them (23) with a timestamp BigQuery cannot hold.
    db.client
        .batch_execute(&format!(
            "INSERT INTO {table} SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 day', jsonb_build_object('i', i)
               FROM generate_series(21, 25) i;
             UPDATE {table} SET happened_at = timestamptz '10000-01-01 00:00:00+00' WHERE id = 23"
        ))
        .await
        .unwrap();
    let since = |manifest: &str| ["--since", manifest, "--watermark", "happened_at", "--on-bad-value", "quarantine"].map(str::to_string);
    let args = since(&backfill);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (tail1, recorded) = committed(&s, export_run(&s, &dest, &table, "tail1", &args), &dest, "tail1").await;
    assert_eq!((recorded["row_count"].as_u64(), recorded["rejected"]["file"]["rows"].as_u64()), (Some(4), Some(1)));
    assert_eq!(recorded["tail"]["rows_through"], 20, "17 kept and 3 set aside");
    assert_eq!(recorded["tail"]["set_aside"], json!([r#"{"id" : 4}"#, r#"{"id" : 7}"#, r#"{"id" : 9}"#]));

    // Two more rows; the tail of the tail holds exactly them.
    db.client
        .batch_execute(&format!(
            "INSERT INTO {table} SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 day', NULL FROM generate_series(26, 27) i"
        ))
        .await
        .unwrap();
    let args = since(&tail1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (tail2, recorded) = committed(&s, export_run(&s, &dest, &table, "tail2", &args), &dest, "tail2").await;
    assert_eq!((recorded["row_count"].as_u64(), recorded["rejected"].is_null()), (Some(2), true));
    assert_eq!(recorded["tail"]["rows_through"], 25, "20, then 4 kept and 1 set aside");
    assert_eq!(recorded["tail"]["set_aside"].as_array().unwrap().len(), 4);
    // Nothing new: a third tail is empty, and is not refused.
    let args = since(&tail2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, recorded) = committed(&s, export_run(&s, &dest, &table, "tail3", &args), &dest, "tail3").await;
    assert_eq!((recorded["row_count"].as_u64(), recorded["tail"]["rows_through"].as_u64()), (Some(0), Some(27)));

    // Loaded by merge, the three runs hold every id but the four set aside, once each.
    let bq_table = format!("{}__q", db.schema);
    for (manifest, mode) in [(&backfill, "truncate"), (&tail1, "merge"), (&tail2, "merge")] {
        let out = s.load(manifest, &["--mode", mode]);
        assert!(out.status.success(), "merge {manifest}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let expected: Vec<i64> = (1..=27).filter(|i| ![4, 7, 9, 23].contains(i)).collect();
    assert_eq!(bq_ids(&s, &bq_table), expected);
    let (code, report, stderr) = s.validate(&tail2, &["--source", &s.pg_url]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let drift = report["tables"][0]["checks"].as_array().unwrap().iter().find(|c| c["check"] == "source_drift").unwrap().clone();
    assert_eq!((drift["expected"].as_str(), drift["actual"].as_str()), (Some("27"), Some("27")));

    // A set-aside row deleted since is a change the check still sees.
    db.client.batch_execute(&format!("DELETE FROM {table} WHERE id = 7")).await.unwrap();
    let args = since(&tail2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = export_run(&s, &dest, &table, "tail4", &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("26 rows are at or below the watermark `happened_at` of run `tail2`") && stderr.contains("hold 27"),
        "{stderr}"
    );
    assert!(stderr.contains(r#"by key: 1 deleted ({"id" : 7})."#), "{stderr}");
    db.drop().await;
}

/// The watermark is the column holding the bad value: the one row set aside has the highest
/// watermark there is (year 12000). The tail reads exactly the 3 rows inserted since (below it),
/// and its id-watermarked twin (the default, an integer key) likewise.
#[tokio::test]
async fn a_tail_whose_watermark_is_the_quarantined_value_reads_exactly_the_new_rows() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO w SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour' FROM generate_series(1, 10) i;
         UPDATE w SET at = timestamptz '12000-01-01 00:00:00+00' WHERE id = 10;",
    )
    .await;
    let table = db.table("w");
    let dest = format!("gs://{}/tailw-{:08x}", s.bucket, rand::random::<u32>());
    let (backfill, recorded) =
        committed(&s, export_run(&s, &dest, &table, "backfill", &["--on-bad-value", "quarantine"]), &dest, "backfill").await;
    assert_eq!((recorded["row_count"].as_u64(), recorded["rejected"]["file"]["rows"].as_u64()), (Some(9), Some(1)));
    db.client
        .batch_execute(&format!(
            "INSERT INTO {table} SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour' FROM generate_series(11, 13) i"
        ))
        .await
        .unwrap();
    for (run_id, watermark, prefix) in [("by-at", "at", "by_at_"), ("by-id", "id", "by_id_")] {
        let args = ["--since", &backfill, "--watermark", watermark, "--on-bad-value", "quarantine", "--json"];
        let (manifest, recorded) = committed(&s, export_run(&s, &dest, &table, run_id, &args), &dest, run_id).await;
        assert_eq!((recorded["row_count"].as_u64(), recorded["rejected"].is_null()), (Some(3), true), "{run_id}");
        assert_eq!((recorded["tail"]["rows_through"].as_u64(), &recorded["tail"]["set_aside"]), (Some(10), &json!([r#"{"id" : 10}"#])));
        let out = s.load(&manifest, &["--table-prefix", prefix]);
        assert!(out.status.success(), "{run_id}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(bq_ids(&s, &format!("{prefix}{}__w", db.schema)), [11, 12, 13], "{run_id}");
    }
    db.drop().await;
}

/// A merged table's foreign keys are checked over the snapshot's rows: the app's own rows,
/// whose parents the snapshot need not hold, are no orphans of the run (they were counted as
/// 50 orphans, failing a merge whose snapshot rows all had their parents).
#[tokio::test]
async fn orphans_of_a_merged_table_are_counted_over_the_snapshots_rows_only() {
    let s = emulators!();
    let parents = "CREATE TABLE entities (id int PRIMARY KEY); INSERT INTO entities SELECT generate_series(0, 6);";
    let child = "ALTER TABLE entity_mentions ADD FOREIGN KEY (entity_id) REFERENCES entities;";
    let db = TestDb::new(&s.pg_url, &format!("{parents} {SOURCE} {child}")).await;
    let manifest = s.export(&[db.table("entities"), db.table("entity_mentions")], &[]);
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    bq.create_table(&s.dataset, "mentions", &app_table(&s.project, &s.dataset)).await.unwrap();
    insert_live_rows(&s);
    let map = ["--table-map", "entity_mentions=mentions"];
    let out = s.load(&manifest, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.load(&manifest, &[&["--mode", "merge", "--overwrite-existing"][..], &map].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (code, report, stderr) = s.validate_through(&s.bq_host, &manifest, &map);
    let mentions = report["tables"].as_array().unwrap().iter().find(|t| t["table"].as_str().unwrap().ends_with("entity_mentions")).unwrap();
    let orphans = mentions["checks"].as_array().unwrap().iter().find(|c| c["check"] == "orphans").unwrap();
    assert_eq!((orphans["actual"].as_str(), orphans["passed"].as_bool()), (Some("0"), Some(true)), "{orphans}");
    let outside = mentions["checks"].as_array().unwrap().iter().find(|c| c["check"] == "outside_snapshot").unwrap();
    assert_eq!(outside["actual"], "50 rows", "{outside}");
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    db.drop().await;
}
