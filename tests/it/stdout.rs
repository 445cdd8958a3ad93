//! Results on stdout, logs on stderr: every command's report can be redirected to a file
//! (`pg2bq validate … > report.txt`), as gcloud's and bq's can; `--format json` is `--json`.
//! Exit codes: 0 all good, 1 a check found a difference, 2 an error.

use serde_json::{json, Value};

use crate::emulators;
use crate::skip_unless;
use crate::support::*;

/// Every line on stderr is a log line (with `--progress off`): nothing of the report.
fn only_logs(command: &str, out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            [" INFO ", " WARN ", " DEBUG "].iter().any(|level| line.contains(level)),
            "{command}: not a log line on stderr: {line}\n{stderr}"
        );
    }
}

/// Tables `a` (10 rows) and `b` (5 rows).
const TWO_TABLES: &str = "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, 'v' || i FROM generate_series(1, 10) i;
     CREATE TABLE b (id int PRIMARY KEY, v text); INSERT INTO b SELECT i, 'w' || i FROM generate_series(1, 5) i;";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn every_commands_report_is_on_stdout_and_only_logs_are_on_stderr() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, TWO_TABLES).await;
    let (a, b) = (db.table("a"), db.table("b"));
    let dest = format!("gs://{}/stdout-{:08x}", s.bucket, rand::random::<u32>());
    let export =
        pg2bq(&["export", "--source", &s.pg_url, "--dest", &dest, "--run-id", "r1", "--progress", "off", "--table", &a, "--table", &b]);
    assert_eq!(export.status.code(), Some(0), "{}", String::from_utf8_lossy(&export.stderr));
    let manifest = format!("{dest}/r1/manifest.json");
    assert!(stdout(&export).starts_with(&format!("Committed run r1 ({manifest})\n")), "{}", stdout(&export));
    only_logs("export", &export);

    let load = s.load(&manifest, &[]);
    assert_eq!(load.status.code(), Some(0), "{}", String::from_utf8_lossy(&load.stderr));
    assert!(stdout(&load).starts_with(&format!("Loaded run r1 into {}.{}\n", s.project, s.dataset)), "{}", stdout(&load));
    only_logs("load", &load);

    let validate = |extra: &[&str]| {
        let mut args = vec!["validate", "--manifest", &manifest, "--project", &s.project, "--dataset", &s.dataset, "--progress", "off"];
        args.extend_from_slice(extra);
        pg2bq(&args)
    };
    let text = validate(&[]);
    assert_eq!(text.status.code(), Some(0), "{}", String::from_utf8_lossy(&text.stderr));
    let report = stdout(&text);
    assert!(report.starts_with(&format!("Validation of run r1 in {}.{}\n", s.project, s.dataset)), "{report}");
    assert!(report.contains(&format!("\n{a} → {}__a: ", db.schema)) && report.contains("  PASS  row_count "), "{report}");
    assert!(report.ends_with("\nAll checks passed.\n"), "{report}");
    only_logs("validate", &text);
    let as_json: Value = serde_json::from_slice(&validate(&["--format", "json"]).stdout).unwrap();
    assert_eq!((&as_json["passed"], &as_json["failed"], &as_json["skipped"]), (&json!(true), &json!(0), &json!(0)));
    let json_flag: Value = serde_json::from_slice(&validate(&["--json"]).stdout).unwrap();
    assert_eq!(json_flag["tables"].as_array().unwrap().len(), as_json["tables"].as_array().unwrap().len());

    let verify = pg2bq(&["verify", "--manifest", &manifest]);
    assert_eq!(verify.status.code(), Some(0));
    assert_eq!(stdout(&verify), "Verification of run r1: 4 file(s) checked\nAll files intact.\n", "2 data files and 2 row-hash files");
    only_logs("verify", &verify);
    let verify_json: Value = serde_json::from_slice(&pg2bq(&["verify", "--manifest", &manifest, "--format", "json"]).stdout).unwrap();
    assert_eq!(verify_json, json!({ "run_id": "r1", "passed": true, "files_checked": 4, "problems": [] }));

    // An error: exit 2, nothing on stdout, the error on stderr.
    let missing = pg2bq(&["verify", "--manifest", &format!("{dest}/nope/manifest.json")]);
    assert_eq!((missing.status.code(), stdout(&missing).as_str()), (Some(2), ""));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("error: "), "{}", String::from_utf8_lossy(&missing.stderr));
    db.drop().await;
}

/// A load of two tables where one fails: the error names the failed table and the one loaded.
#[tokio::test]
async fn a_partial_load_failure_names_the_tables_loaded_and_the_failed_ones() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, TWO_TABLES).await;
    let manifest = s.export(&[db.table("a"), db.table("b")], &[]);
    // Table b already holds run run1, by its label: appending it again is refused; a loads.
    let bq = s.bigquery().await;
    bq.ensure_dataset(&s.dataset, true).await.unwrap();
    let b = format!("{}__b", db.schema);
    let resource = json!({
        "tableReference": { "projectId": s.project, "datasetId": s.dataset, "tableId": b },
        "schema": { "fields": [{ "name": "id", "type": "INTEGER", "mode": "REQUIRED" }, { "name": "v", "type": "STRING", "mode": "NULLABLE" }] },
        "labels": { "pg2bq_run_run1": "append" },
    });
    bq.create_table(&s.dataset, &b, &resource).await.unwrap();
    let out = s.load(&manifest, &["--mode", "append"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(2), ""), "{stderr}");
    let first = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert_eq!(first, format!("error: 1 of 2 tables failed to load: {b}; loaded: {}__a", db.schema), "{stderr}");
    assert_eq!(s.count(&format!("{}__a", db.schema)).await, 10);
    db.drop().await;
}

/// An export of two tables where one fails while reading (after the other finished): the error
/// names the table that finished and the one that did not, and says nothing was committed.
#[tokio::test]
async fn a_partial_export_failure_names_the_tables_finished_and_not() {
    let pg_url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&pg_url, "CREATE TABLE small (id int PRIMARY KEY); INSERT INTO small SELECT generate_series(1, 3);").await;
    let dest = tempfile::tempdir().unwrap();
    let small = db.table("small");
    // Its last row divides by zero, 2 s into the read: the small table is done by then.
    let bad = "bad=SELECT i, 1 / (i - 10) AS v FROM generate_series(1, 10) i WHERE i < 10 OR pg_sleep(2) IS NOT NULL";
    let out = pg2bq(&[
        "export",
        "--source",
        &pg_url,
        "--dest",
        dest.path().to_str().unwrap(),
        "--run-id",
        "r1",
        "--progress",
        "off",
        "--jobs",
        "2",
        "--table",
        &small,
        "--query",
        bad,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(2), ""), "{stderr}");
    let error: Vec<&str> = stderr.lines().skip_while(|l| !l.starts_with("error: ")).collect();
    assert_eq!(
        error,
        [
            format!("error: 1 of 2 tables had finished when the run stopped (nothing is committed: a run commits all its tables or none): finished: {small}; not finished: bad").as_str(),
            "  Caused by: table `bad`: ConnectorX failed: db error: ERROR: division by zero",
        ],
        "{stderr}"
    );
    db.drop().await;
}
