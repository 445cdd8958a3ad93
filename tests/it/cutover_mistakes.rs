//! The ordinary mistakes of a cutover (issue 19), each against the emulators: a load without
//! `--mode` into the app's table, a mistyped `--table-map` target, a column map feeding one
//! column twice, two snapshot tables into one target, a column the app's table lacks, NOT NULL
//! columns the snapshot holds NULLs in; and validation state kept per run, so a tail merged into
//! the same table never changes the backfill's verdict. Every refusal comes before any job and
//! leaves the app's table as it was.

use serde_json::{json, Value};

use crate::cutover::{app_table, insert_live_rows, live_row, merged, table_rows, SOURCE};
use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The dataset's tables, by name.
fn dataset_tables(s: &Emulators) -> Vec<String> {
    let rows =
        s.python_rows(&format!("SELECT table_name FROM `{}.{}.INFORMATION_SCHEMA.TABLES` ORDER BY table_name", s.project, s.dataset));
    rows.into_iter().map(|r| r[0].clone().unwrap()).collect()
}

/// The app's `mentions` table with its 100 live rows, and the snapshot of `entity_mentions`.
async fn app_with_live_rows(s: &Emulators) -> (TestDb, String) {
    let db = TestDb::new(&s.pg_url, SOURCE).await;
    let manifest = s.export(&[db.table("entity_mentions")], &[]);
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    bq.create_table(&s.dataset, "mentions", &app_table(&s.project, &s.dataset)).await.unwrap();
    insert_live_rows(s);
    (db, manifest)
}

#[tokio::test]
async fn a_load_without_mode_into_the_apps_table_is_refused_and_the_dry_run_says_what_it_would_delete() {
    let s = emulators!();
    let (db, manifest) = app_with_live_rows(&s).await;
    let live: Vec<_> = (251..=350).map(live_row).collect();
    let map = "entity_mentions=mentions";

    // The dry run says it in words, then refuses.
    let out = s.load(&manifest, &["--table-map", map, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(plan.contains(&format!("deletes 100 row(s) existing in `{}.mentions`", s.dataset)), "{plan}");
    assert!(plan.contains(&format!("refused: table `{}.mentions` was not created by pg2bq and holds 100 row(s)", s.dataset)), "{plan}");

    // The load: refused before any job, naming the table, its rows and both ways out.
    let out = s.load(&manifest, &["--table-map", map]);
    let error = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{error}");
    assert!(error.contains("holds 100 row(s): a truncate load would delete them"), "{error}");
    assert!(error.contains("--mode merge") && error.contains("--mode truncate --replace-existing-rows"), "{error}");
    assert_eq!(table_rows(&s), live, "the app's rows are untouched");
    assert_eq!(dataset_tables(&s), ["mentions"], "no job ran: no staging table, no record");

    // Merge says what it does and deletes nothing.
    let out = s.load(&manifest, &["--table-map", map, "--mode", "merge", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("inserts only the snapshot's rows whose key (id)"), "{}", stdout(&out));

    // Asked for in the command, the rows are replaced.
    let out = s.load(&manifest, &["--table-map", map, "--mode", "truncate", "--replace-existing-rows", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["tables"][0]["effect"].as_str().unwrap().starts_with("deletes 100 row(s)"), "{report}");
    assert_eq!(table_rows(&s).len(), 300);
    db.drop().await;
}

#[tokio::test]
async fn a_mistyped_table_map_target_is_refused_with_the_closest_names_and_created_only_when_asked() {
    let s = emulators!();
    let (db, manifest) = app_with_live_rows(&s).await;
    let typo = ["--mode", "merge", "--table-map", "entity_mentions=mentionz"];
    for dry_run in [false, true] {
        let args = if dry_run { [&typo[..], &["--dry-run"]].concat() } else { typo.to_vec() };
        let out = s.load(&manifest, &args);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(
            text.contains(&format!("sends `{}` to table `mentionz`, which is not in dataset `{}`", db.table("entity_mentions"), s.dataset)),
            "{text}"
        );
        assert!(text.contains("(closest: `mentions`)") && text.contains("--create-missing"), "{text}");
    }
    assert_eq!(dataset_tables(&s), ["mentions"], "nothing created");
    let out = s.load(&manifest, &[&typo[..], &["--create-missing", "--dry-run"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("creates table `{}.mentionz` and loads 300 row(s)", s.dataset)), "{}", stdout(&out));
    db.drop().await;
}

#[tokio::test]
async fn column_maps_are_checked_as_a_whole_and_a_column_the_app_lacks_can_be_left_out() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE posts (id bigint PRIMARY KEY, title text NOT NULL, subtitle text, legacy_flags int);
         INSERT INTO posts SELECT i, 'title ' || i, 'sub ' || i, i % 3 FROM generate_series(1, 40) i;",
    )
    .await;
    let manifest = s.export(&[db.table("posts")], &[]);
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    let app = json!({
        "tableReference": { "projectId": s.project, "datasetId": s.dataset, "tableId": "app_posts" },
        "schema": { "fields": [
            { "name": "id", "type": "INTEGER", "mode": "REQUIRED" },
            { "name": "title", "type": "STRING", "mode": "REQUIRED" },
            { "name": "subtitle", "type": "STRING", "mode": "NULLABLE" },
        ]},
    });
    bq.create_table(&s.dataset, "app_posts", &app).await.unwrap();
    let base = ["--mode", "merge", "--table-map", "posts=app_posts"];

    // subtitle → title while the snapshot has a title too: both listed, nothing loaded.
    let out = s.load(&manifest, &[&base[..], &["--column-map", "posts.subtitle=title", "--column-map", "posts.headline=title"]].concat());
    let error = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{error}");
    assert!(error.contains("target column `title` would be fed by 2 snapshot columns (`title`, `subtitle`)"), "{error}");
    assert!(error.contains("--column-map names column `headline`, which the snapshot does not have"), "{error}");
    assert!(error.contains("snapshot column `legacy_flags` has no column `legacy_flags` in the target"), "{error}");
    assert!(error.contains(&format!("--exclude-column {}.legacy_flags", db.table("posts"))), "{error}");
    assert_eq!(s.count("app_posts").await, 0, "nothing loaded");

    // The way out: leave the column out. The report says so, validate skips it and says so.
    let out = s.load(&manifest, &[&base[..], &["--exclude-column", "posts.legacy_flags", "--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tables"][0]["excluded_columns"], json!(["legacy_flags"]));
    assert_eq!(s.count("app_posts").await, 40);
    let (code, report, error) = s.validate(&manifest, &["--table-map", "posts=app_posts"]);
    assert_eq!(code, Some(0), "{error}\n{report:#}");
    let checks = report["tables"][0]["checks"].as_array().unwrap();
    let excluded = checks.iter().find(|c| c["check"] == "excluded").unwrap();
    assert_eq!((excluded["column"].as_str(), excluded["status"].as_str()), (Some("legacy_flags"), Some("skip")));
    assert_eq!(report["tables"][0]["skipped"], 1);
    assert!(!checks.iter().any(|c| c["column"] == "legacy_flags" && c["check"] != "excluded"), "{checks:#?}");
    db.drop().await;
}

#[tokio::test]
async fn two_snapshot_tables_into_one_target_are_refused_unless_appended_and_then_never_share_a_job() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE a (id bigint PRIMARY KEY, v text); INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 30) i;
         CREATE TABLE b (id bigint PRIMARY KEY, v text); INSERT INTO b SELECT i, 'b' || i FROM generate_series(101, 120) i;",
    )
    .await;
    let manifest = s.export(&[db.table("a"), db.table("b")], &[]);
    let maps = ["--table-map", "a=ab", "--table-map", "b=ab", "--create-missing"];
    let out = s.load(&manifest, &[&maps[..], &["--mode", "merge"]].concat());
    let error = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{error}");
    assert!(error.contains(&format!("snapshot tables `{}`, `{}` would all go to table `ab`", db.table("a"), db.table("b"))), "{error}");
    let out = s.load(&manifest, &[&maps[..], &["--mode", "append", "--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs: Vec<&str> =
        report["tables"].as_array().unwrap().iter().flat_map(|t| t["job_ids"].as_array().unwrap()).map(|j| j.as_str().unwrap()).collect();
    let distinct: std::collections::BTreeSet<&&str> = jobs.iter().collect();
    assert_eq!(distinct.len(), jobs.len(), "{jobs:?}");
    assert!(jobs.iter().any(|j| j.contains("_ab_from_") && j.contains("__a_")), "{jobs:?}");
    assert_eq!(s.count("ab").await, 50);
    db.drop().await;
}

#[tokio::test]
async fn defaults_constants_and_a_lossy_column_fill_an_apps_not_null_columns_and_validate_accounts_for_them() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE events (id bigint PRIMARY KEY, metadata jsonb, context text, amount numeric(12, 2) NOT NULL);
         INSERT INTO events SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('i', i) END,
           CASE WHEN i % 5 = 0 THEN NULL ELSE 'ctx ' || i END, i * 1.25 FROM generate_series(1, 60) i;",
    )
    .await;
    let manifest = s.export(&[db.table("events")], &[]);
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    let app = json!({
        "tableReference": { "projectId": s.project, "datasetId": s.dataset, "tableId": "app_events" },
        "schema": { "fields": [
            { "name": "id", "type": "STRING", "mode": "REQUIRED" },
            { "name": "metadata", "type": "JSON", "mode": "REQUIRED" },
            { "name": "context", "type": "STRING", "mode": "REQUIRED" },
            { "name": "amount", "type": "FLOAT64", "mode": "NULLABLE" },
            { "name": "migrated_from", "type": "STRING", "mode": "NULLABLE" },
        ]},
    });
    bq.create_table(&s.dataset, "app_events", &app).await.unwrap();
    let base = ["--mode", "merge", "--table-map", "events=app_events"];

    let out = s.load(&manifest, &base);
    let error = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{error}");
    let events = db.table("events");
    assert!(error.contains(&format!("holds 15 NULL(s) in it; give them a value with --default {events}.metadata=<value>")), "{error}");
    assert!(error.contains("holds 12 NULL(s)") && error.contains(&format!("--allow-lossy {events}.amount=FLOAT64")), "{error}");

    let options = [
        "--default",
        "events.metadata={}",
        "--default",
        "events.context=''",
        "--set",
        "events.migrated_from='postgres'",
        "--allow-lossy",
        "events.amount=FLOAT64",
        "--json",
    ];
    let out = s.load(&manifest, &[&base[..], &options].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["tables"][0]["defaults"],
        json!([{ "column": "context", "value": "", "replaced_nulls": 12 }, { "column": "metadata", "value": "{}", "replaced_nulls": 15 }])
    );
    assert_eq!(report["tables"][0]["set_columns"], json!({ "migrated_from": "postgres" }));
    let rows = s.python_rows(&format!(
        "SELECT COUNTIF(TO_JSON_STRING(metadata) = '{{}}'), COUNTIF(context = ''), COUNTIF(migrated_from = 'postgres'), SUM(amount) FROM `{}.{}.app_events`",
        s.project, s.dataset
    ));
    assert_eq!(rows[0][..3], [Some("15".to_string()), Some("12".to_string()), Some("60".to_string())]);
    assert_eq!(rows[0][3].as_deref().map(|v| v.parse::<f64>().unwrap()), Some(2287.5));

    let (code, report, error) = s.validate(&manifest, &["--table-map", "events=app_events"]);
    assert_eq!(code, Some(0), "{error}\n{report:#}");
    let checks = report["tables"][0]["checks"].as_array().unwrap();
    let set = checks.iter().find(|c| c["check"] == "set_value").unwrap();
    assert_eq!((set["column"].as_str(), set["actual"].as_str(), set["passed"].as_bool()), (Some("migrated_from"), Some("60"), Some(true)));
    let nulls = checks.iter().find(|c| c["check"] == "null_count" && c["column"] == "metadata").unwrap();
    assert!(nulls["detail"].as_str().unwrap().contains("15 NULL(s) of the snapshot replaced by {} (--default)"), "{nulls}");
    // The defaulted and the lossy column are left out of the row fingerprints on both sides.
    let rows = checks.iter().find(|c| c["check"] == "row_fingerprint").unwrap();
    assert_eq!(
        (rows["status"].as_str(), rows["detail"].as_str()),
        (
            Some("pass"),
            Some("over columns id; left out: context (--default), amount (--allow-lossy) (expected recomputed from the run's files); not covered: metadata (JSON)")
        ),
        "{rows}"
    );

    // A defaulted value changed afterwards, and a lossy one: both named.
    s.python_rows(&format!("UPDATE `{}.{}.app_events` SET context = 'x', amount = amount + 1 WHERE id = '5'", s.project, s.dataset));
    let (code, report, _) = s.validate(&manifest, &["--table-map", "events=app_events"]);
    assert_eq!(code, Some(1), "{report:#}");
    let failed: std::collections::BTreeSet<String> = failed_checks(&report).into_iter().map(|(_, column)| column).collect();
    assert_eq!(failed, ["amount".to_string(), "context".to_string()].into(), "{report:#}");
    db.drop().await;
}

/// Issue 19: the JSON fingerprint validate compares was one table label per column, so a tail
/// merged into the same table overwrote the backfill's, and re-validating the backfill failed.
#[tokio::test]
async fn each_runs_validation_state_survives_later_runs_merged_into_the_same_table() {
    let s = emulators!();
    let (db, backfill) = app_with_live_rows(&s).await;
    let table = db.table("entity_mentions");
    let map = ["--table-map", "entity_mentions=mentions"];
    let merge = |manifest: &str| merged(&s.load(manifest, &[&["--mode", "merge", "--overwrite-existing", "--json"][..], &map].concat()));
    assert_eq!(merge(&backfill), json!({ "inserted": 250, "already_present": 50, "updated": 50 }));
    db.client
        .batch_execute(&format!(
            "INSERT INTO {table} SELECT i, i % 7, jsonb_build_object('tail', i), timestamptz '2024-06-01 00:00:00+00' + i * interval '1 hour', \
             'pg ' || i FROM generate_series(501, 530) i"
        ))
        .await
        .unwrap();
    let dest = backfill.trim_end_matches("/run1/manifest.json");
    let out = pg2bq(&[
        "export",
        "--source",
        &s.pg_url,
        "--dest",
        dest,
        "--run-id",
        "tail1",
        "--progress",
        "off",
        "--table",
        &table,
        "--since",
        &backfill,
        "--watermark",
        "mentioned_at",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tail = format!("{dest}/tail1/manifest.json");
    assert_eq!(merge(&tail), json!({ "inserted": 30, "already_present": 0, "updated": 0 }));
    for manifest in [&backfill, &tail, &backfill] {
        let (code, report, error) = s.validate(manifest, &map);
        assert_eq!(code, Some(0), "{manifest}: {error}\n{report:#}");
    }
    let bq = s.bigquery().await;
    let labels = bq.table(&s.dataset, "mentions").await.unwrap().unwrap()["labels"].clone();
    assert!(labels.is_null() || labels.as_object().is_some_and(|l| l.is_empty()), "the app's table has no label: {labels}");
    let recorded = s.python_rows(&format!("SELECT run_id, mode FROM `{}.{}._pg2bq_runs` ORDER BY run_id", s.project, s.dataset));
    assert_eq!(recorded, [[Some("run1".to_string()), Some("merge".to_string())], [Some("tail1".to_string()), Some("merge".to_string())]]);
    db.drop().await;
}

/// The app streams rows into its table with `insertAll`: BigQuery refuses DML over them for up
/// to ~90 minutes. The dry run says so when the table has a buffer; the merge (played through
/// the fault proxy, which fails the `MERGE` as BigQuery does) waits and tries again, and a buffer
/// that does not clear is named, with nothing changed.
#[tokio::test]
async fn a_merge_refused_over_the_apps_streaming_buffer_waits_and_is_named_when_it_stays() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let (db, manifest) = app_with_live_rows(&s).await;
    let refuse = |limit: u32| {
        json!({ "rules": [{ "upstream": "bq", "method": "POST", "path": "/jobs$", "body": "MERGE `[^`]*\\.mentions` T", "limit": limit,
            "faults": [{ "job_error": { "reason": "invalidQuery", "message":
                "UPDATE or DELETE statement over table app.mentions would affect rows in the streaming buffer, which is not supported" } }] }] })
    };
    let merge = || {
        s.load_command(&manifest, &["--mode", "merge", "--table-map", "entity_mentions=mentions", "--json"])
            .env("BIGQUERY_EMULATOR_HOST", &proxy.bq_host)
            .env("PG2BQ_STREAMING_BUFFER_WAIT", "200ms")
            .output()
            .unwrap()
    };
    proxy.set(refuse(5)).await;
    let out = merge();
    let error = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{error}");
    assert!(error.contains("still in BigQuery's streaming buffer") && error.contains("--streaming-buffer-wait"), "{error}");
    assert_eq!(proxy.stats().await["injected"][0], 5);
    assert_eq!(table_rows(&s), (251..=350).map(live_row).collect::<Vec<_>>(), "the app's rows are untouched");

    proxy.set(refuse(2)).await;
    let out = merge();
    assert_eq!(merged(&out), json!({ "inserted": 250, "already_present": 50, "updated": 0 }));
    assert!(stderr(&out).contains("streaming buffer"), "the waits are logged: {}", stderr(&out));
    assert_eq!(proxy.stats().await["injected"][0], 2);
    assert_eq!(table_rows(&s).len(), 350);
    db.drop().await;
}

/// The runbook end to end: a backfill with one quarantined row merged into the app's table
/// holding live rows, two tails merged after it, each of the three runs validated (exit 0);
/// then one changed cell in the backfill's rows fails the backfill's validate, naming the
/// column, while the tails' still pass.
#[tokio::test]
async fn backfill_with_a_quarantined_row_then_two_tails_each_validate_and_a_changed_cell_fails_only_the_backfill() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, SOURCE).await;
    let table = db.table("entity_mentions");
    db.client.batch_execute(&format!("UPDATE {table} SET mentioned_at = '12000-01-01 00:00:00+00' WHERE id = 7")).await.unwrap();
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    bq.create_table(&s.dataset, "mentions", &app_table(&s.project, &s.dataset)).await.unwrap();
    insert_live_rows(&s);
    let dest = format!("gs://{}/sequence-{:08x}", s.bucket, rand::random::<u32>());
    let export = |run_id: &str, extra: &[&str]| {
        let mut args = vec!["export", "--source", &s.pg_url, "--dest", &dest, "--run-id", run_id, "--progress", "off", "--table", &table];
        args.extend_from_slice(extra);
        let out = pg2bq(&args);
        assert!(out.status.success(), "export {run_id}: {}", stderr(&out));
        format!("{dest}/{run_id}/manifest.json")
    };
    let map = ["--table-map", "entity_mentions=mentions"];
    let merge = |manifest: &str| merged(&s.load(manifest, &[&["--mode", "merge", "--overwrite-existing", "--json"][..], &map].concat()));
    let insert = |from: i64, to: i64| {
        format!(
            "INSERT INTO {table} SELECT i, i % 7, jsonb_build_object('i', i), timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', \
             'pg ' || i FROM generate_series({from}, {to}) i"
        )
    };

    let backfill = export("backfill", &["--on-bad-value", "quarantine"]);
    assert_eq!(merge(&backfill), json!({ "inserted": 249, "already_present": 50, "updated": 50 }));
    db.client.batch_execute(&insert(501, 520)).await.unwrap();
    let tail1 = export("tail1", &["--since", &backfill, "--watermark", "mentioned_at"]);
    assert_eq!(merge(&tail1), json!({ "inserted": 20, "already_present": 0, "updated": 0 }));
    db.client.batch_execute(&insert(521, 530)).await.unwrap();
    let tail2 = export("tail2", &["--since", &tail1, "--watermark", "mentioned_at"]);
    assert_eq!(merge(&tail2), json!({ "inserted": 10, "already_present": 0, "updated": 0 }));
    let count = s.python_rows(&format!("SELECT COUNT(*), COUNTIF(id = '7') FROM `{}.{}.mentions`", s.project, s.dataset));
    assert_eq!(count, [[Some("379".to_string()), Some("0".to_string())]], "299 + 50 app rows + 30, the quarantined row left out");

    for manifest in [&backfill, &tail1, &tail2] {
        let (code, report, error) = s.validate(manifest, &map);
        assert_eq!(code, Some(0), "{manifest}: {error}\n{report:#}");
    }
    s.python_rows(&format!("UPDATE `{}.{}.mentions` SET note = 'changed' WHERE id = '10'", s.project, s.dataset));
    let (code, report, _) = s.validate(&backfill, &map);
    assert_eq!(code, Some(1), "{report:#}");
    let failed: std::collections::BTreeSet<String> = failed_checks(&report).into_iter().map(|(_, column)| column).collect();
    // `note`'s checks and the row fingerprints (table-level: `-`).
    assert_eq!(failed, ["-".to_string(), "note".to_string()].into(), "{report:#}");
    for manifest in [&tail1, &tail2] {
        assert_eq!(s.validate(manifest, &map).0, Some(0), "{manifest}");
    }
    db.drop().await;
}
