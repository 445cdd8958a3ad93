//! The audit record: the run's report opened in headless Chromium (no request, every count in
//! the DOM, one chart point per day, a deleted BigQuery row's day highlighted), the snapshot
//! queried in place (external tables' DDL, DuckDB views), and `pg2bq runs` over committed,
//! given-up and tail runs.

use std::path::Path;
use std::process::Command;

use crate::support::*;
use crate::{browser, emulators, skip_unless};

fn run(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(args).env("NO_COLOR", "1").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "pg2bq {args:?}: {stderr}");
    (stdout, stderr)
}

/// The value of attribute `name` in an element's opening tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// A chart point as the DOM holds it.
#[derive(Debug, PartialEq)]
struct Point {
    day: String,
    snapshot: u64,
    bigquery: Option<u64>,
    postgres: Option<u64>,
    differs: bool,
}

/// The chart points of `table`'s section.
fn chart_points(dom: &str, table: &str) -> Vec<Point> {
    let section = dom.split("<section class=\"table\"").find(|s| s.starts_with(&format!(" data-table=\"{table}\""))).expect(table);
    let section = &section[..section.find("</section>").unwrap()];
    section
        .split("<g class=\"day")
        .skip(1)
        .map(|tag| {
            let tag = &tag[..tag.find('>').unwrap()];
            let number = |name| attribute(tag, name).map(|v: &str| v.parse::<u64>().unwrap());
            Point {
                day: attribute(tag, "data-day").unwrap().to_string(),
                snapshot: number("data-snapshot").unwrap(),
                bigquery: number("data-bigquery"),
                postgres: number("data-postgres"),
                differs: tag.starts_with(" differs"),
            }
        })
        .collect()
}

/// The demo's tables (tests/fixtures/sample.sql) exported, loaded and validated; the report,
/// opened offline in Chromium, shows every table's rows and each day's rows in the snapshot
/// and in BigQuery alike; after one BigQuery row is deleted, exactly that day is highlighted
/// and the failed validation is recorded in it. The screenshot is kept beside the test binary.
#[tokio::test]
async fn the_report_opens_offline_with_every_count_and_highlights_a_day_bigquery_lost() {
    let s = emulators!();
    let Some(_) = browser::chromium() else { return };
    let db = TestDb::new(&s.pg_url, "").await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.02", "hypertable=off"]);
    let names = ["entities", "events", "entity_mentions"];
    let manifest = s.export(&names.map(|n| db.table(n)), &[]);
    let loaded = s.load(&manifest, &[]);
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    assert_eq!(s.validate(&manifest, &[]).0, Some(0));
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let report = ["report", "--manifest", &manifest, "--project", &s.project, "--progress", "off", "--json"];
    let (stdout, _) = run(&[&report[..], &["--out", html.to_str().unwrap(), "--source", &s.pg_url]].concat());
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (outcome["records"].as_u64(), outcome["differing_days"].as_u64(), outcome["files_intact"].as_bool()),
        (Some(2), Some(0), Some(true))
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let page = browser::render(&html, &shot);
    assert_eq!(page.requests, Vec::<String>::new(), "the report asked for something outside itself");
    for name in names {
        let table = format!("{}.{name}", db.schema);
        let rows: i64 = db.client.query_one(&format!("SELECT count(*) FROM {}", db.table(name)), &[]).await.unwrap().get(0);
        assert!(page.dom.contains(&format!("<tr data-table=\"{table}\" data-rows=\"{rows}\">")), "{table}: {rows} rows");
    }
    let events = format!("{}.events", db.schema);
    let days: Vec<(String, i64)> = db
        .client
        .query(
            &format!(
                "SELECT to_char((mentioned_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD'), count(*) FROM {} GROUP BY 1 ORDER BY 1",
                db.table("events")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let points = chart_points(&page.dom, &events);
    let point = |day: &str, n: u64| Point { day: day.to_string(), snapshot: n, bigquery: Some(n), postgres: Some(n), differs: false };
    let expected: Vec<Point> = days.iter().map(|(d, n)| point(d, *n as u64)).collect();
    assert_eq!(points, expected, "one point per day, snapshot = BigQuery = Postgres's count");
    report_line(&format!("report screenshot: {}", page.screenshot.display()));

    // One row gone from BigQuery: its day, and only it, is highlighted; the failed validation shows.
    let (lost_day, lost_rows) = days[days.len() / 2].clone();
    let bq_events = format!("`{}.{}.{}__events`", s.project, s.dataset, db.schema);
    let sql = format!("DELETE FROM {bq_events} WHERE id = (SELECT MIN(id) FROM {bq_events} WHERE DATE(mentioned_at) = '{lost_day}')");
    s.bigquery().await.query_rows(&sql).await.unwrap();
    assert_eq!(s.validate(&manifest, &[]).0, Some(1));
    run(&[&report[..], &["--out", html.to_str().unwrap()]].concat());
    let page = browser::render(&html, &dir.path().join("after.png"));
    let differing: Vec<Point> = chart_points(&page.dom, &events).into_iter().filter(|p| p.differs).collect();
    let lost = Point { bigquery: Some(lost_rows as u64 - 1), postgres: None, differs: true, ..point(&lost_day, lost_rows as u64) };
    assert_eq!(differing, [lost]);
    assert!(page.dom.contains("data-command=\"validate\" data-verdict=\"failed\""));
    assert!(page.requests.is_empty(), "{:?}", page.requests);

    // Written beside the manifest by default; verify counts the report and records as the run's own.
    let (stdout, _) = run(&report);
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["report"].as_str().unwrap(), manifest.replace("manifest.json", "report.html"));
    run(&["verify", "--manifest", &manifest, "--progress", "off"]);
    let dest = manifest.trim_end_matches("/run1/manifest.json");
    let (listed, _) = run(&["runs", "--dest", dest, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let verdicts =
        |kind: &str| listed[0][kind].as_array().unwrap().iter().map(|r| r["verdict"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!((listed[0]["run_id"].as_str(), listed[0]["state"].as_str()), (Some("run1"), Some("committed")), "{listed}");
    assert_eq!(
        (verdicts("loads"), verdicts("validations")),
        (vec!["loaded".to_string()], vec!["passed".to_string(), "failed".to_string()])
    );
    db.drop().await;
}

/// External tables list exactly the snapshot's files (the emulator ignores external tables'
/// files, so their DDL is checked), and the DuckDB views over the same files answer each
/// table's row count.
#[tokio::test]
async fn the_snapshot_is_queryable_in_place() {
    let s = emulators!();
    let python = skip_unless!("PG2BQ_TEST_PYTHON");
    let db = TestDb::new(&s.pg_url, "").await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.02", "hypertable=off"]);
    let manifest = s.export(&[db.table("events"), db.table("entity_mentions")], &["--file-size", "64KiB", "--row-group-size", "64KiB"]);
    let (ddl, _) =
        run(&["external", "--manifest", &manifest, "--project", &s.project, "--dataset", &s.dataset, "--dry-run", "--progress", "off"]);
    let recorded: pg2bq::model::manifest::Manifest = {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().to_str().unwrap();
        let out = pg2bq(&[
            "export",
            "--source",
            &s.pg_url,
            "--dest",
            dest,
            "--run-id",
            "local",
            "--table",
            &db.table("events"),
            "--table",
            &db.table("entity_mentions"),
            "--file-size",
            "64KiB",
            "--row-group-size",
            "64KiB",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let local_manifest = format!("{dest}/local/manifest.json");
        let views = dir.path().join("views.sql");
        run(&["external", "--manifest", &local_manifest, "--duckdb", views.to_str().unwrap(), "--prefix", "snap_", "--progress", "off"]);
        let refused = pg2bq(&["external", "--manifest", &local_manifest, "--project", "p", "--dataset", "d"]);
        assert!(String::from_utf8_lossy(&refused.stderr).contains("not in a gs:// bucket"), "a local snapshot has no external tables");
        let script = "import duckdb, sys\ncon = duckdb.connect()\ncon.execute(open(sys.argv[1]).read())\nfor t in sys.argv[2:]:\n    print(t, con.execute(f'SELECT COUNT(*) FROM \"snap_{t}\"').fetchone()[0])";
        let manifest: pg2bq::model::manifest::Manifest = serde_json::from_slice(&std::fs::read(local_manifest).unwrap()).unwrap();
        let out =
            Command::new(&python).arg("-c").arg(script).arg(&views).args(manifest.tables.iter().map(|t| &t.bq_table)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let counted = String::from_utf8_lossy(&out.stdout).into_owned();
        for table in &manifest.tables {
            assert!(counted.contains(&format!("{} {}\n", table.bq_table, table.row_count)), "{counted}");
        }
        manifest
    };
    assert_eq!(recorded.tables.len(), 2);
    let gcs: serde_json::Value = {
        let (json, _) =
            run(&["external", "--manifest", &manifest, "--project", &s.project, "--dataset", &s.dataset, "--dry-run", "--json"]);
        serde_json::from_str(&json).unwrap()
    };
    let statements: Vec<&str> = gcs["ddl"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    let options = pg2bq::storage::gcs::GcsOptions { emulator_host: Some(s.gcs_host.clone()), application_credentials: None };
    let committed = pg2bq::storage::manifest::read_manifest(&manifest, &options).await.unwrap().manifest;
    let uris: Vec<Vec<String>> = committed.tables.iter().map(|t| t.files.iter().map(|f| f.uri.clone()).collect()).collect();
    assert_eq!(ddl_uris(&statements), uris, "each external table lists exactly its table's files, as BigQuery's grammar reads them");
    for statement in statements {
        assert!(
            statement.starts_with(&format!("CREATE OR REPLACE EXTERNAL TABLE `{}.{}.snapshot_run1_", s.project, s.dataset)),
            "{statement}"
        );
        assert!(statement.contains("format = 'PARQUET'") && statement.contains("labels = [('pg2bq_run', 'run1')]"), "{statement}");
    }
    assert!(ddl.contains("nothing was written"), "{ddl}");
    db.drop().await;
}

/// The `uris` of each `CREATE EXTERNAL TABLE` statement, as sqlglot's BigQuery grammar (in the
/// emulator's venv, an independent parser) reads them; the emulator itself has no external tables.
fn ddl_uris(statements: &[&str]) -> Vec<Vec<String>> {
    let python = std::env::var("PG2BQ_TEST_BQ_PYTHON").expect("PG2BQ_TEST_BQ_PYTHON");
    let script = "import json, sys, sqlglot\nfrom sqlglot import exp\nout = []\nfor ddl in json.load(sys.stdin):\n    tree = sqlglot.parse_one(ddl, read='bigquery')\n    uris = [p.args['value'] for p in tree.find_all(exp.Property) if p.name == 'uris']\n    out.append([e.this for e in uris[0].expressions])\nprint(json.dumps(out))";
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), statements).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A destination holding a committed run, its tail (made with `--since latest`), a given-up
/// run and a run being exported: `pg2bq runs` lists each with its state, rows and chain.
#[tokio::test]
async fn runs_lists_committed_given_up_and_tail_runs() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "CREATE TABLE t (id int8 PRIMARY KEY, at timestamptz NOT NULL); INSERT INTO t SELECT g, '2024-03-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 100) g;").await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().to_str().unwrap();
    let export = |run_id: &str, extra: &[&str]| {
        pg2bq(
            &[&["export", "--source", &url, "--dest", dest, "--table", &db.table("t"), "--run-id", run_id, "--progress", "off"][..], extra]
                .concat(),
        )
    };
    assert!(export("a-first", &[]).status.success());
    db.client.batch_execute(&format!("INSERT INTO {} SELECT g, now() FROM generate_series(101, 130) g", db.table("t"))).await.unwrap();
    let tail = export("b-tail", &["--since", "latest"]);
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
    // Fails while its units run (a division by zero in every row), after the run was claimed.
    let broken = format!("broken=SELECT id, 1/(id-id) AS x FROM {}", db.table("t"));
    let failed = export("c-failed", &["--query", &broken]);
    assert_eq!(failed.status.code(), Some(2));
    std::fs::create_dir_all(dir.path().join("d-running")).unwrap();
    let claim =
        r#"{"attempt":"x","host":"worker-7","pid":4242,"process_start_ticks":null,"boot_id":null,"started_at":"2026-12-08T01:00:00Z"}"#;
    std::fs::write(dir.path().join("d-running/claim-000001.json"), claim).unwrap();

    let (json, _) = run(&["runs", "--dest", dest, "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&json).unwrap();
    let by_id = |id: &str| runs.as_array().unwrap().iter().find(|r| r["run_id"] == id).cloned().unwrap_or_else(|| panic!("{id}: {runs}"));
    let table = format!("{}.t", db.schema);
    let (first, tail, failed, running) = (by_id("a-first"), by_id("b-tail"), by_id("c-failed"), by_id("d-running"));
    assert_eq!(
        (first["state"].as_str(), first["rows"].as_u64(), first["tables"].clone()),
        (Some("committed"), Some(100), serde_json::json!([table]))
    );
    assert_eq!(first["children"], serde_json::json!(["b-tail"]));
    assert_eq!((tail["state"].as_str(), tail["rows"].as_u64(), tail["parent"].as_str()), (Some("committed"), Some(30), Some("a-first")));
    assert_eq!(failed["state"], "given_up");
    assert!(failed["given_up"].as_str().unwrap().contains("division by zero"), "{failed}");
    assert_eq!(
        (running["state"].as_str(), running["claimed_by"].as_str()),
        (Some("in_progress"), Some("pid 4242 on worker-7 since 2026-12-08T01:00:00Z"))
    );
    assert_eq!(runs.as_array().unwrap().len(), 4, "{runs}");
    let (text, _) = run(&["runs", "--dest", dest]);
    assert!(text.contains("b-tail  committed") && text.contains("tail of: a-first") && text.contains("c-failed  given up"), "{text}");
    db.drop().await;
}
