//! `validate` names the rows that differ: by key, how (missing in BigQuery, only in BigQuery,
//! other values) and in which columns, through the fault proxy, with what BigQuery processed.

use std::time::Instant;

use serde_json::{json, Value};

use crate::cutover::{app_table, insert_live_rows, merged, SOURCE};
use crate::faults::failing_bigquery;
use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

/// `title` is NULL where `id` is a multiple of 10.
const ROWS: &str = "CREATE TABLE r (id int PRIMARY KEY, title text, n int);
    INSERT INTO r SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE 'title ' || i END, i % 3 FROM generate_series(1, 20) i;";

/// The located rows as `(key, status, columns)`.
fn located_rows(report: &Value) -> Vec<(String, String, String)> {
    let rows = report["tables"][0]["located"]["rows"].as_array().unwrap_or_else(|| panic!("no located rows: {report:#}"));
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let columns = |r: &Value| r["columns"].as_array().unwrap().iter().map(text).collect::<Vec<_>>().join(",");
    rows.iter().map(|r| (text(&r["key"]), text(&r["status"]), columns(r))).collect()
}

/// `(missing, only_in_bigquery, differing, complete)` of the location.
fn counts(report: &Value) -> (u64, u64, u64, bool) {
    let l = &report["tables"][0]["located"];
    (l["missing"].as_u64().unwrap(), l["only_in_bigquery"].as_u64().unwrap(), l["differing"].as_u64().unwrap(), l["complete"] == true)
}

fn row(key: &str, status: &str, columns: &str) -> (String, String, String) {
    (key.into(), status.into(), columns.into())
}

/// Exports `sql`'s table `table` (2 partitions) and loads it; returns the manifest and the
/// BigQuery table as SQL names it.
async fn exported(s: &Emulators, db: &TestDb, table: &str) -> (String, String) {
    let manifest = s.export(&[db.table(table)], &["--partitions", "2"]);
    let out = s.load(&manifest, &[]);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    (manifest, format!("`{}.{}.{}__{table}`", s.project, s.dataset, db.schema))
}

#[tokio::test]
async fn a_swap_between_two_rows_names_both_keys_and_the_column() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, ROWS).await;
    let (manifest, table) = exported(&s, &db, "r").await;
    s.python_rows(&format!("UPDATE {table} SET title = IF(id = 5, 'title 9', 'title 5') WHERE id IN (5, 9)"));
    proxy.set(failing_bigquery(21)).await;
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &[]);
    assert_eq!((code, failed_checks(&report)), (Some(1), vec![("row_fingerprint".into(), "-".into())]), "{stderr}");
    assert_eq!(located_rows(&report), [row("id=5", "differs", "title"), row("id=9", "differs", "title")]);
    assert_eq!(counts(&report), (0, 0, 2, true));
    // 20 rows: compared at once, one query.
    let located = &report["tables"][0]["located"];
    assert_eq!((located["levels"].as_u64(), located["queries"].as_u64(), located["key"].clone()), (Some(0), Some(1), json!(["id"])));
    assert!(proxy.stats().await["injected"][0].as_u64().unwrap() > 0, "no fault was injected");
    // The text report lists the failing check first, then the rows.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2bq"))
        .args(["validate", "--manifest", &manifest, "--project", &s.project, "--dataset", &s.dataset, "--progress", "off"])
        .env("BIGQUERY_EMULATOR_HOST", &s.bq_host)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let table_lines: Vec<&str> = text.lines().skip_while(|l| !l.contains(" checks, 1 failed")).collect();
    assert!(table_lines[1].starts_with("  FAIL  row_fingerprint"), "{text}");
    assert!(
        text.contains("  rows that differ, by id (0 level(s), 1 queries, ") && text.contains(" bytes processed in BigQuery; "),
        "{text}"
    );
    assert!(text.contains("): 0 missing in BigQuery, 0 only in BigQuery, 2 with other values\n    differs          id=5  title\n    differs          id=9  title\n"), "{text}");
    db.drop().await;
}

#[tokio::test]
async fn a_deleted_row_and_an_extra_row_are_missing_and_only_in_bigquery() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, ROWS).await;
    let (manifest, table) = exported(&s, &db, "r").await;
    s.python_rows(&format!("DELETE FROM {table} WHERE id = 7"));
    s.python_rows(&format!("INSERT INTO {table} (id, title, n) VALUES (21, 'title 21', 0)"));
    proxy.set(failing_bigquery(22)).await;
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(located_rows(&report), [row("id=7", "missing", ""), row("id=21", "only_in_bigquery", "")]);
    assert_eq!(counts(&report), (1, 1, 0, true));
    // --locate-limit 0 turns location off.
    let (code, report, _) = s.validate_through(&proxy.bq_host, &manifest, &["--locate-limit", "0"]);
    assert_eq!((code, report["tables"][0].get("located")), (Some(1), None));
    db.drop().await;
}

#[tokio::test]
async fn a_composite_key_names_every_part() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let sql = "CREATE TABLE c (a int, b text, v text, PRIMARY KEY (a, b));
        INSERT INTO c SELECT i / 3, 'k' || (i % 3), 'v ' || i FROM generate_series(0, 599) i;";
    let db = TestDb::new(&s.pg_url, sql).await;
    let (manifest, table) = exported(&s, &db, "c").await;
    s.python_rows(&format!("UPDATE {table} SET v = 'changed' WHERE a = 100 AND b = 'k2'"));
    proxy.set(failing_bigquery(23)).await;
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(located_rows(&report), [row("a=100, b=k2", "differs", "v")]);
    assert_eq!(counts(&report), (0, 0, 1, true));
    // 600 rows: one level of 4 buckets, then the rows of the one that differs.
    let located = &report["tables"][0]["located"];
    assert_eq!((located["levels"].as_u64(), located["queries"].as_u64(), located["key"].clone()), (Some(1), Some(2), json!(["a", "b"])));
    // The dry run estimates it in words (the emulator's dry runs estimate 0 bytes).
    let (code, report, _) = s.validate(&manifest, &["--dry-run"]);
    let checks = report["tables"][0]["checks"].as_array().unwrap();
    let estimate = checks.iter().find(|c| c["expected"] == "locating differing rows").unwrap();
    assert_eq!((code, estimate["check"].as_str(), estimate["actual"].as_str()), (Some(0), Some("estimate"), Some("0 bytes")));
    assert_eq!(
        estimate["detail"],
        "if a check fails: 1 level(s) of one GROUP BY query by key bucket, then one query fetching the rows of the buckets that differ, each about 0 bytes: 2 queries, about 0 bytes (more levels when many rows differ); nothing when every check passes"
    );
    db.drop().await;
}

/// 1 changed cell in 200,000 rows: located to its key and column with the bytes BigQuery
/// processed. Faults through the proxy, whole pages (2 rows a page would be 500 pages a level).
#[tokio::test]
async fn one_changed_cell_in_200000_rows_is_located_to_its_key_and_column() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let sql = "CREATE TABLE big (id bigint PRIMARY KEY, title text, n int);
        INSERT INTO big SELECT i, 'title ' || i, i % 1000 FROM generate_series(1, 200000) i;";
    let db = TestDb::new(&s.pg_url, sql).await;
    let (manifest, table) = exported(&s, &db, "big").await;
    s.python_rows(&format!("UPDATE {table} SET n = 7 WHERE id = 123457"));
    proxy
        .set(json!({ "seed": 24, "rules": [{ "upstream": "bq", "fraction": 0.1, "faults": [{ "status": 503 }, { "reset": "after" }] }] }))
        .await;
    let started = Instant::now();
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &[]);
    eprintln!("validate of 200,000 rows with location: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(located_rows(&report), [row("id=123457", "differs", "n")]);
    assert_eq!(counts(&report), (0, 0, 1, true));
    let located = &report["tables"][0]["located"];
    assert_eq!((located["levels"].as_u64(), located["queries"].as_u64()), (Some(1), Some(2)), "{located:#}");
    // The emulator reports its tables' numBytes (its estimate of the rows, which counts an
    // updated row's versions too, × columns × 8) per query (scripts/bq_emulator.py): at least
    // 200,000 × 3 × 8 for each of the two queries.
    let bytes = located["bytes_processed"].as_u64().unwrap();
    assert!((9_600_000..9_700_000).contains(&bytes), "{located:#}");
    db.drop().await;
}

/// After an insert-only merge, the 50 ids the app already held keep the app's values: exactly
/// those are named; with `--overwrite-existing` the table then passes.
#[tokio::test]
async fn an_insert_only_merge_names_the_50_rows_that_kept_the_apps_values() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, SOURCE).await;
    let manifest = s.export(&[db.table("entity_mentions")], &[]);
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    bq.create_table(&s.dataset, "mentions", &app_table(&s.project, &s.dataset)).await.unwrap();
    insert_live_rows(&s);
    let map = ["--table-map", "entity_mentions=mentions"];
    let merge = |extra: &[&str]| merged(&s.load(&manifest, &[&["--mode", "merge", "--json"][..], &map, extra].concat()));
    assert_eq!(merge(&[]), json!({ "inserted": 250, "already_present": 50, "updated": 0 }));

    proxy.set(failing_bigquery(25)).await;
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &map);
    assert_eq!(code, Some(1), "{stderr}");
    let differing = |ids: std::ops::RangeInclusive<i64>| -> Vec<_> {
        ids.map(|i| row(&format!("id={i}"), "differs", "entity_id,mentioned_at,note")).collect()
    };
    assert_eq!(located_rows(&report), differing(251..=270));
    assert_eq!(counts(&report), (0, 0, 50, true));
    let note = report["tables"][0]["located"]["note"].as_str().unwrap();
    assert!(note.contains("merged: only the snapshot's keys are compared"), "{note}");
    let (code, report, _) = s.validate_through(&proxy.bq_host, &manifest, &[&map[..], &["--locate-limit", "5"]].concat());
    assert_eq!((code, located_rows(&report), counts(&report)), (Some(1), differing(251..=255), (0, 0, 50, true)));

    assert_eq!(merge(&["--overwrite-existing"]), json!({ "inserted": 0, "already_present": 300, "updated": 50 }));
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &map);
    assert_eq!((code, report["tables"][0].get("located")), (Some(0), None), "{stderr}\n{report:#}");
    db.drop().await;
}
