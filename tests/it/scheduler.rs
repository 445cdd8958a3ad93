//! One scheduler for a run: `--jobs` workers over every table's units at once, a unit retried
//! after its backend was terminated, a killed run resumed with only its missing units read, and
//! a permanent failure that stops at once. Real Postgres and fake-gcs-server (through the fault
//! proxy where a GCS answer must fail).

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pg2bq::model::manifest::Manifest;
use serde_json::{json, Value};

use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

/// `CREATE TABLE name (id int8 PRIMARY KEY, v int4)` with ids 1..=rows.
fn narrow_table(name: &str, rows: u64) -> String {
    format!("CREATE TABLE {name} (id int8 PRIMARY KEY, v int4 NOT NULL); INSERT INTO {name} SELECT g, g % 1000 FROM generate_series(1, {rows}) g;")
}

/// `pg2bq export` of `tables` into `dest` as run `run_id`, JSON on stdout, logs on stderr.
fn export_command(s: &Emulators, dest: &str, run_id: &str, tables: &[String], extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pg2bq"));
    command.args(["export", "--source", &s.pg_url, "--dest", dest, "--run-id", run_id, "--progress", "off", "--json"]);
    for table in tables {
        command.args(["--table", table]);
    }
    command.args(extra).env("NO_COLOR", "1");
    command
}

fn finished(command: &mut Command) -> (Output, String) {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// The JSON report of a successful export.
fn report(out: &Output, stderr: &str) -> Value {
    assert!(out.status.success(), "export failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("no JSON report: {stderr}"))
}

fn fresh_dest(s: &Emulators) -> String {
    format!("gs://{}/sched-{:08x}", s.bucket, rand::random::<u32>())
}

async fn manifest_at(s: &Emulators, dest: &str, run_id: &str) -> Manifest {
    let body = s.download(&format!("{}/{run_id}/manifest.json", s.object_name(dest))).await;
    serde_json::from_slice(&body).unwrap()
}

/// The position of the first stderr line holding every one of `parts`.
fn line_of(stderr: &str, parts: &[&str]) -> usize {
    stderr.lines().position(|l| parts.iter().all(|p| l.contains(p))).unwrap_or_else(|| panic!("no line with {parts:?} in:\n{stderr}"))
}

fn verify(manifest: &str) {
    let out = pg2bq(&["verify", "--manifest", manifest]);
    assert_eq!(out.status.code(), Some(0), "verify: {}", String::from_utf8_lossy(&out.stderr));
}

/// `(table, unit, attempts, resumed)` of every unit line of a report, sorted.
fn unit_lines(report: &Value) -> Vec<(String, u64, u64, bool)> {
    let mut lines: Vec<_> = report["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (u["table"].as_str().unwrap().to_string(), u["unit"].as_u64().unwrap(), u["attempts"].as_u64().unwrap(), u["resumed"] == true)
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn tables_run_concurrently_and_a_small_one_finishes_before_a_big_one() {
    let s = emulators!();
    let fixture = [narrow_table("big", 900_000), narrow_table("mid", 30_000), narrow_table("small", 900)].concat();
    let db = TestDb::new(&s.pg_url, &fixture).await;
    let dest = fresh_dest(&s);
    let tables: Vec<String> = ["big", "mid", "small"].iter().map(|t| db.table(t)).collect();
    let (out, stderr) = finished(&mut export_command(&s, &dest, "run1", &tables, &["--jobs", "2", "--partitions", "3"]));
    let report = report(&out, &stderr);

    // The small table was done before the big one finished its first unit.
    let small_done = line_of(&stderr, &["Exported table", &format!("table={}", db.table("small"))]);
    let big_first_unit = line_of(&stderr, &["Exported unit", &format!("table={}", db.table("big"))]);
    assert!(small_done < big_first_unit, "the small table waited for the big one:\n{stderr}");
    let manifest = manifest_at(&s, &dest, "run1").await;
    let rows: Vec<(String, u64)> = manifest.tables.iter().map(|t| (t.name.clone(), t.row_count)).collect();
    assert_eq!(rows, [(db.table("big"), 900_000), (db.table("mid"), 30_000), (db.table("small"), 900)]);
    let units = unit_lines(&report);
    assert_eq!(units.len(), 9, "three units per table: {units:?}");
    assert!(units.iter().all(|(_, _, attempts, resumed)| *attempts == 1 && !resumed), "{units:?}");
    let snapshots: std::collections::BTreeSet<&str> =
        report["units"].as_array().unwrap().iter().map(|u| u["snapshot"].as_str().unwrap()).collect();
    assert_eq!(snapshots.len(), 1, "every unit read in the one snapshot");
    assert!(!manifest.mixed_snapshot && manifest.unit_snapshots.is_empty());
    verify(&format!("{dest}/run1/manifest.json"));
    db.drop().await;
}

/// Units of `log` (a `-v` export's stderr) running at once when the first one finished: how
/// many workers the scheduler started, since every worker takes its first unit at once.
fn started_before_first_finished(log: &str) -> usize {
    log.lines().take_while(|l| !l.contains("Exported unit")).filter(|l| l.contains("Started unit")).count()
}

#[tokio::test]
async fn jobs_start_that_many_workers_up_to_what_the_memory_budget_holds() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, &narrow_table("t", 80_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().to_str().unwrap();
    let mut started = Vec::new();
    for (run, jobs) in [("two", "2"), ("eight", "8")] {
        let mut command = export_command(&s, dest, run, &[db.table("t")], &["--jobs", jobs, "--partitions", "8", "-v"]);
        let (out, stderr) = finished(command.env_remove("RUST_LOG"));
        let report = report(&out, &stderr);
        assert_eq!(unit_lines(&report).len(), 8, "{stderr}");
        let capped = stderr.contains("More --jobs than the memory budget holds");
        started.push((jobs, started_before_first_finished(&stderr), capped));
    }
    // The 256 MB budget holds 4 workers (export::memory): --jobs 8 starts 4, and says so.
    assert_eq!(started, [("2", 2, false), ("8", 4, true)]);
    db.drop().await;
}

/// The backend of a worker's query, once it has streamed for a while, or `None` if the export
/// ended first. Not the snapshot's own session, which reads the row hashes with a COPY too.
async fn streaming_backend(db: &TestDb, export: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let sql = format!(
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY%{}%' \
         AND query NOT LIKE '%hashtextextended%' AND pid <> pg_backend_pid()",
        db.schema
    );
    while Instant::now() < deadline && export.try_wait().unwrap().is_none() {
        if let Some(row) = db.client.query(&sql, &[]).await.unwrap().first() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Some(row.get(0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn a_unit_whose_backend_is_terminated_is_retried_in_the_same_snapshot() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, &narrow_table("t", 1_000_000)).await;
    let dest = fresh_dest(&s);
    let mut command = export_command(&s, &dest, "run1", &[db.table("t")], &["--jobs", "1", "--partitions", "2"]);
    let mut export = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = streaming_backend(&db, &mut export).await.expect("a worker streamed");
    let terminated: bool = db.client.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(terminated);
    let out = export.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = report(&out, &stderr);

    assert!(stderr.contains("retrying it in the same snapshot"), "{stderr}");
    let attempts: Vec<u64> = unit_lines(&report).iter().map(|(_, _, attempts, _)| *attempts).collect();
    assert_eq!(attempts.iter().max(), Some(&2), "one unit took a second attempt: {attempts:?}");
    assert_eq!(attempts.iter().sum::<u64>(), 3, "{attempts:?}");
    let manifest = manifest_at(&s, &dest, "run1").await;
    assert_eq!(manifest.tables[0].row_count, 1_000_000);
    assert_eq!(manifest.tables[0].files.len(), 2, "the terminated attempt's files are gone: {:?}", manifest.tables[0].files);
    verify(&format!("{dest}/run1/manifest.json"));
    db.drop().await;
}

/// Every `id` in the files the manifest lists, sorted.
async fn manifest_ids(s: &Emulators, dest: &str, run_id: &str, manifest: &Manifest) -> Vec<i64> {
    let mut ids = Vec::new();
    for file in &manifest.tables[0].files {
        let data = s.download(&format!("{}/{run_id}/{}", s.object_name(dest), file.path)).await;
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(data)).unwrap().build().unwrap() {
            ids.extend(batch.unwrap().column(0).as_primitive::<Int64Type>().values().iter().copied());
        }
    }
    ids.sort_unstable();
    ids
}

/// Unit records of a run, by unit index: (the files they list with their CRC32C).
async fn unit_records(s: &Emulators, dest: &str, run_id: &str) -> Vec<(u64, Vec<(String, String)>)> {
    let mut records = Vec::new();
    for name in s.object_names(&format!("{}/{run_id}/_units/", s.object_name(dest))).await {
        let record: Value = serde_json::from_slice(&s.download(&name).await).unwrap();
        let files = record["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["path"].as_str().unwrap().to_string(), f["crc32c"].as_str().unwrap().to_string()));
        records.push((record["partition"].as_u64().unwrap(), files.collect()));
    }
    records.sort();
    records
}

#[tokio::test]
async fn a_killed_export_resumes_reading_only_its_missing_units() {
    let s = emulators!();
    let rows = 2_000_000u64;
    let db = TestDb::new(&s.pg_url, &narrow_table("t", rows)).await;
    let dest = fresh_dest(&s);
    let tables = [db.table("t")];
    let args = ["--jobs", "1", "--partitions", "5"];
    let mut export = export_command(&s, &dest, "run1", &tables, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let units_dir = format!("{}/run1/_units/", s.object_name(&dest));
    let deadline = Instant::now() + Duration::from_secs(300);
    while s.object_names(&units_dir).await.len() < 3 {
        assert!(export.try_wait().unwrap().is_none() && Instant::now() < deadline, "the export ended before 3 units were recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    export.kill().unwrap();
    export.wait().unwrap();
    let recorded = unit_records(&s, &dest, "run1").await;
    assert!((3..5).contains(&recorded.len()), "killed at ~60% of the units: {recorded:?}");

    let (out, stderr) = finished(&mut export_command(&s, &dest, "run1", &tables, &[&args[..], &["--resume"]].concat()));
    let report = report(&out, &stderr);
    let units = unit_lines(&report);
    let resumed: Vec<u64> = units.iter().filter(|u| u.3).map(|u| u.1).collect();
    assert_eq!(resumed, recorded.iter().map(|(unit, _)| *unit).collect::<Vec<_>>(), "exactly the recorded units were kept");
    assert_eq!(units.len(), 5);
    assert_eq!(report["mixed_snapshot"], true);

    let manifest = manifest_at(&s, &dest, "run1").await;
    assert!(manifest.mixed_snapshot);
    let snapshot_ids: std::collections::BTreeSet<&str> = manifest.unit_snapshots.iter().map(|u| u.snapshot_id.as_str()).collect();
    assert_eq!((manifest.unit_snapshots.len(), snapshot_ids.len()), (5, 2), "{:?}", manifest.unit_snapshots);
    // Row hashes read now would not describe the kept units' rows: none are recorded, and it is said.
    assert!(manifest.tables[0].row_hashes.is_none(), "{:?}", manifest.tables[0].row_hashes);
    assert!(stderr.contains("Row hashes not recorded: units kept from an earlier attempt were read in another snapshot"), "{stderr}");
    for (unit, files) in &recorded {
        for (path, crc32c) in files {
            let listed =
                manifest.tables[0].files.iter().find(|f| &f.path == path).unwrap_or_else(|| panic!("unit {unit}'s {path} is kept"));
            assert_eq!(&listed.crc32c, crc32c, "unit {unit}'s file was not rewritten");
        }
    }
    assert_eq!(manifest.tables[0].row_count, rows);
    assert_eq!(manifest_ids(&s, &dest, "run1", &manifest).await, (1..=rows as i64).collect::<Vec<_>>(), "0 duplicated and 0 missing ids");
    assert!(s.object_names(&units_dir).await.is_empty(), "the committed run drops its unit records");
    verify(&format!("{dest}/run1/manifest.json"));
    db.drop().await;
}

#[tokio::test]
async fn a_permanent_failure_stops_the_unit_at_its_first_attempt() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, &narrow_table("t", 20_000)).await;
    let dest = fresh_dest(&s);
    proxy.set(json!({ "rules": [{ "upstream": "gcs", "method": "POST", "path": "part-p", "faults": [{ "status": 403 }] }] })).await;
    let mut command = export_command(&s, &dest, "run1", &[db.table("t")], &["--jobs", "1", "--partitions", "2"]);
    let (out, stderr) = finished(command.env("STORAGE_EMULATOR_HOST", &proxy.gcs_host));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(!stderr.contains("retrying it in the same snapshot"), "a 403 is not retried: {stderr}");
    assert_eq!(proxy.stats().await["injected"][0], 1, "one upload was tried, once");
    proxy.set(json!({})).await;
    let run_dir = format!("{}/run1/", s.object_name(&dest));
    assert_eq!(s.object_names(&run_dir).await, [format!("{run_dir}given-up.json")], "the failed run left only its note");
    db.drop().await;
}

/// A value the server refuses fails its unit at the first attempt with the server's message, a
/// `--resume` run keeps the unit recorded before it, and once the value is fixed the resumed
/// run commits a mixed snapshot that validate reports as a warning.
#[tokio::test]
async fn a_resumed_run_is_a_mixed_snapshot_that_validate_reports() {
    let s = emulators!();
    let fixture = "CREATE TABLE m (id int8 PRIMARY KEY, v int4 NOT NULL); \
                   INSERT INTO m SELECT g, CASE WHEN g = 150 THEN 0 ELSE 1 END FROM generate_series(1, 200) g;";
    let db = TestDb::new(&s.pg_url, fixture).await;
    let dest = fresh_dest(&s);
    let query = format!("q=SELECT id, v, 10 / v AS x FROM {}", db.table("m"));
    let args = ["--query", query.as_str(), "--partition-on", "id", "--partitions", "2", "--jobs", "1", "--resume"];
    let (out, stderr) = finished(&mut export_command(&s, &dest, "mixed", &[], &args));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("division by zero"), "the server's refusal is reported: {stderr}");
    assert!(!stderr.contains("retrying it in the same snapshot"), "a refused value is not retried: {stderr}");
    assert_eq!(unit_records(&s, &dest, "mixed").await.iter().map(|(unit, _)| *unit).collect::<Vec<_>>(), [0], "unit 0 stays recorded");

    let recut: Vec<&str> = args.iter().map(|a| if *a == "2" { "3" } else { a }).collect();
    let (out, stderr) = finished(&mut export_command(&s, &dest, "mixed", &[], &recut));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot resume run `mixed`: table `q`, unit 0: recorded as one of 3 units, but the new plan cuts the table into 4"),
        "a plan cut otherwise is refused: {stderr}"
    );
    assert_eq!(unit_records(&s, &dest, "mixed").await.len(), 1, "the refusal touched nothing");

    db.client.batch_execute(&format!("UPDATE {} SET v = 1 WHERE id = 150", db.table("m"))).await.unwrap();
    let (out, stderr) = finished(&mut export_command(&s, &dest, "mixed", &[], &args));
    let report = report(&out, &stderr);
    // Units 0 and 1 split the ids; unit 2 holds NULL ids (a query declares no key).
    let expected = [(0, true), (1, false), (2, false)].map(|(unit, resumed)| ("q".to_string(), unit, 1, resumed));
    assert_eq!(unit_lines(&report), expected);
    let manifest = format!("{dest}/mixed/manifest.json");
    let load = s.load(&manifest, &[]);
    assert!(load.status.success(), "load: {}", String::from_utf8_lossy(&load.stderr));
    let (code, validation, stderr) = s.validate(&manifest, &[]);
    assert_eq!(code, Some(0), "a mixed snapshot is a warning, not a failure: {stderr}\n{validation:#}");
    assert_eq!(validation["mixed_snapshot"], true);
    // The human report (on stdout) says it too.
    let text = pg2bq(&["validate", "--manifest", &manifest, "--project", &s.project, "--dataset", &s.dataset, "--progress", "off"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("\nwarning: mixed snapshot"), "{text}");
    db.drop().await;
}
