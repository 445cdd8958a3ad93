//! Sharded export: a coordinator holds one snapshot and commits the manifest, workers started
//! as Cloud Run Jobs starts them (`CLOUD_RUN_TASK_*`) export its units. Against real Postgres
//! and fake-gcs-server: the manifest equals a single-process export's, writes made during the
//! run never appear, a killed worker's retry completes the run without a stray file, and a
//! worker after the coordinator ended is refused by name and writes nothing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use pg2bq::source::postgres::SnapshotSession;
use pg2bq::source::SourceError;
use pg2bq::storage::gcs::GcsOptions;
use pg2bq::storage::manifest::read_manifest;
use serde_json::{json, Value};

use crate::faults::failing_uploads;
use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

const WORKERS: usize = 4;

#[tokio::test]
async fn a_worker_joins_the_coordinators_snapshot_and_never_a_newer_one() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE w (id int PRIMARY KEY); INSERT INTO w SELECT generate_series(1, 100);").await;
    let table = db.table("w");
    let coordinator = SnapshotSession::open(&s.pg_url).await.unwrap();
    db.client
        .batch_execute(&format!("INSERT INTO {table} SELECT generate_series(101, 150); DELETE FROM {table} WHERE id <= 10"))
        .await
        .unwrap();

    let worker = SnapshotSession::import(&s.pg_url, &coordinator.snapshot_id).await.unwrap();
    let seen: (i64, i32, i32) = {
        let row = worker.query_one(&format!("SELECT count(*), min(id), max(id) FROM {table}"), &[]).await.unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(seen, (100, 1, 100), "the coordinator's snapshot, not the rows written since");
    // Its transaction holds the table until it ends.
    drop(worker);

    let snapshot_id = coordinator.snapshot_id.clone();
    drop(coordinator);
    let mut error = None;
    for _ in 0..50 {
        // The coordinator's backend ends its transaction when the connection closes.
        match SnapshotSession::import(&s.pg_url, &snapshot_id).await {
            Err(gone) => {
                error = Some(gone);
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let error = error.expect("the snapshot outlived its coordinator");
    assert!(matches!(error, SourceError::SnapshotGone { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("snapshot {snapshot_id} no longer exists (the coordinator's transaction ended): restart the run")
    );
    db.drop().await;
}

/// The coordinator's arguments: `export --coordinate` of `tables` to `dest` as run `run1`.
pub(crate) fn coordinator_args(s: &Emulators, dest: &str, tables: &[String], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["export", "--source", &s.pg_url, "--dest", dest, "--run-id", "run1", "--progress", "off"]
        .into_iter()
        .chain(["--coordinate", "--workers", "4", "--deadline", "5m"])
        .map(String::from)
        .collect();
    for table in tables {
        args.extend(["--table".to_string(), table.clone()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Starts a coordinator and returns once it wrote its plan, with a thread collecting its log.
pub(crate) fn start_coordinator(args: &[String], gcs_host: &str) -> (Child, JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg2bq"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("STORAGE_EMULATOR_HOST", gcs_host)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (planned, plan_written) = mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("Wrote the run's plan") {
                let _ = planned.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    if plan_written.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        panic!("the coordinator wrote no plan:\n{}", log.join().unwrap());
    }
    (child, log)
}

/// `pg2bq work` as Cloud Run Jobs runs task `index` of [`WORKERS`], attempt `attempt`.
pub(crate) fn worker(s: &Emulators, plan: &str, index: usize, attempt: u32, gcs_host: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pg2bq"));
    command
        .args(["work", "--plan", plan, "--progress", "off", "--json"])
        .env("CLOUD_RUN_TASK_INDEX", index.to_string())
        .env("CLOUD_RUN_TASK_COUNT", WORKERS.to_string())
        .env("CLOUD_RUN_TASK_ATTEMPT", attempt.to_string())
        .env("PG2BQ_SOURCE", &s.pg_url)
        .env("STORAGE_EMULATOR_HOST", gcs_host)
        .env("NO_COLOR", "1");
    command
}

fn succeeded(out: &Output, what: &str) -> Value {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The tables of a committed manifest, without the URIs (they name the destination).
async fn tables_of(s: &Emulators, manifest: &str) -> Value {
    let gcs = GcsOptions { emulator_host: Some(s.gcs_host.clone()), application_credentials: None };
    let mut tables = serde_json::to_value(read_manifest(manifest, &gcs).await.unwrap().manifest.tables).unwrap();
    for table in tables.as_array_mut().unwrap() {
        for file in table["files"].as_array_mut().unwrap() {
            file.as_object_mut().unwrap().remove("uri");
        }
        if let Some(hashes) = table.get_mut("row_hashes") {
            hashes["file"].as_object_mut().unwrap().remove("uri");
        }
    }
    tables
}

fn verify_passes(s: &Emulators, manifest: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_pg2bq"))
        .args(["verify", "--manifest", manifest, "--json"])
        .env("STORAGE_EMULATOR_HOST", &s.gcs_host)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "verify: {report:#}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Four workers through a proxy failing 10% of their uploads, while rows are inserted, updated
/// and deleted after the coordinator's snapshot: the committed manifest is the one a single
/// process wrote before those writes, file for file (rows, bytes, CRC32C, aggregates).
#[tokio::test]
async fn four_workers_commit_what_one_process_exports_and_none_of_the_writes_made_meanwhile() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE big (id int8 PRIMARY KEY, v text, t timestamptz, j jsonb, n numeric(12,2)); \
         INSERT INTO big SELECT g, md5(g::text), timestamptz '2024-01-01' + g * interval '1 minute', jsonb_build_object('g', g), g / 7.0 \
           FROM generate_series(1, 40000) g; \
         CREATE TABLE small (id int4 PRIMARY KEY, name text); INSERT INTO small SELECT g, 'n' || g FROM generate_series(1, 300) g;",
    )
    .await;
    let tables = [db.table("big"), db.table("small")];
    let shape = ["--partitions", "4", "--jobs", "1", "--file-size", "64KiB", "--row-group-size", "64KiB"];
    let single = s.export(&tables, &shape);
    let dest = format!("gs://{}/shard-{:08x}", s.bucket, rand::random::<u32>());

    proxy.set(failing_uploads(7, "^/upload/", 0.1)).await;
    let (mut coordinator, log) = start_coordinator(&coordinator_args(&s, &dest, &tables, &shape), &proxy.gcs_host);
    let (big, small) = (&tables[0], &tables[1]);
    db.client
        .batch_execute(&format!(
            "INSERT INTO {big} SELECT g, 'new', now(), '{{}}', 0 FROM generate_series(40001, 40500) g; \
             UPDATE {big} SET v = 'changed', n = -1 WHERE id <= 100; DELETE FROM {big} WHERE id > 39900; \
             UPDATE {small} SET name = 'changed'; DELETE FROM {small} WHERE id = 1"
        ))
        .await
        .unwrap();
    let plan = format!("{dest}/run1/plan.json");
    let workers: Vec<Child> = (0..WORKERS)
        .map(|i| worker(&s, &plan, i, 0, &proxy.gcs_host).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for (index, child) in workers.into_iter().enumerate() {
        let outcome = succeeded(&child.wait_with_output().unwrap(), &format!("worker {index}"));
        assert_eq!((outcome["worker"].as_u64(), outcome["share"].as_u64()), (Some(index as u64), Some(2)), "{outcome}");
    }
    let status = coordinator.wait().unwrap();
    let (log, stats) = (log.join().unwrap(), proxy.stats().await);
    proxy.set(json!({})).await;
    assert!(status.success(), "coordinator:\n{log}");
    assert!(stats["injected"][0].as_u64().unwrap() > 0, "no upload failed: {stats}");
    for index in 0..WORKERS {
        assert!(log.contains(&format!("Worker progress worker={index} units=2/2")), "{log}");
    }

    let sharded = format!("{dest}/run1/manifest.json");
    let (expected, found) = (tables_of(&s, &single).await, tables_of(&s, &sharded).await);
    assert_eq!(found, expected, "the sharded run's manifest differs from the single-process export's");
    let rows: Vec<u64> = found.as_array().unwrap().iter().map(|t| t["row_count"].as_u64().unwrap()).collect();
    assert_eq!(rows, [40000, 300], "the snapshot's rows, none written since");
    let listed = s.object_names(&format!("{}/run1/", s.object_name(&dest))).await;
    let mut wanted: Vec<String> = found
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["files"].as_array().unwrap().iter().chain([&t["row_hashes"]["file"]]).map(|f| f["path"].as_str().unwrap().to_string())
        })
        .chain(["manifest.json".into(), "plan.json".into()])
        .map(|path| format!("{}/run1/{path}", s.object_name(&dest)))
        .collect();
    wanted.sort();
    assert_eq!(listed, wanted, "the run holds its files, the manifest and the plan, nothing else");
    verify_passes(&s, &sharded);
    db.drop().await;
}

/// Partitions with Parquet files but no unit record under `run` (a killed unit's leftovers).
fn unrecorded_partitions(objects: &[(String, u64)]) -> Vec<String> {
    let recorded: Vec<String> =
        objects.iter().filter_map(|(name, _)| name.split("/_units/").nth(1)?.split("/unit-").nth(1)?.get(..5).map(String::from)).collect();
    let mut unrecorded: Vec<String> = objects
        .iter()
        .filter_map(|(name, _)| name.split("/part-p").nth(1)?.get(..4).map(String::from))
        .filter(|partition| !recorded.iter().any(|r| r.ends_with(partition.as_str())))
        .collect();
    unrecorded.dedup();
    unrecorded
}

/// kill -9 of worker 0 mid-unit, then its retry as attempt 1 beside the other three: the run
/// commits every row once, with no stray or missing file. A worker started after the
/// coordinator ended is refused by the snapshot's name and writes nothing.
#[tokio::test]
async fn a_killed_worker_retried_completes_the_run_and_a_worker_after_the_coordinator_writes_nothing() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE k (id int8 PRIMARY KEY, v text); \
         INSERT INTO k SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 240000) g;",
    )
    .await;
    let dest = format!("gs://{}/shard-{:08x}", s.bucket, rand::random::<u32>());
    let shape = ["--partitions", "8", "--jobs", "1", "--file-size", "128KiB", "--row-group-size", "128KiB", "--batch-rows", "2000"];
    let (mut coordinator, log) = start_coordinator(&coordinator_args(&s, &dest, &[db.table("k")], &shape), &s.gcs_host);
    let (plan, run_dir) = (format!("{dest}/run1/plan.json"), format!("{}/run1/", s.object_name(&dest)));

    let mut first = worker(&s, &plan, 0, 0, &s.gcs_host).stderr(Stdio::piped()).spawn().unwrap();
    let lines = BufReader::new(first.stderr.take().unwrap()).lines();
    for line in lines {
        if line.unwrap().contains("Wrote file") {
            break;
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = unrecorded_partitions(&s.objects(&run_dir).await);
    assert!(!killed.is_empty(), "worker 0 was killed after its unit finished; no leftover to remove");

    let retried = worker(&s, &plan, 0, 1, &s.gcs_host).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let others: Vec<Child> =
        (1..WORKERS).map(|i| worker(&s, &plan, i, 0, &s.gcs_host).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    let retry = succeeded(&retried.wait_with_output().unwrap(), "worker 0, attempt 1");
    assert!(retry["removed_files"].as_u64().unwrap() >= 1, "{retry}");
    assert_eq!(retry["attempt"].as_u64(), Some(1));
    let exported = retry["units"].as_array().unwrap().len() as u64;
    assert_eq!(exported + retry["recorded_before"].as_u64().unwrap(), retry["share"].as_u64().unwrap(), "{retry}");
    for (index, child) in others.into_iter().enumerate() {
        succeeded(&child.wait_with_output().unwrap(), &format!("worker {}", index + 1));
    }
    let status = coordinator.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "coordinator:\n{log}");

    let manifest = format!("{dest}/run1/manifest.json");
    let tables = tables_of(&s, &manifest).await;
    assert_eq!(tables[0]["row_count"].as_u64(), Some(240000));
    let files: Vec<String> =
        tables[0]["files"].as_array().unwrap().iter().map(|f| format!("{run_dir}{}", f["path"].as_str().unwrap())).collect();
    let after = s.objects(&run_dir).await;
    let parquet: Vec<String> = after.iter().map(|(name, _)| name.clone()).filter(|name| name.ends_with(".parquet")).collect();
    assert_eq!(parquet, files, "every file the manifest lists, once, and no other");
    verify_passes(&s, &manifest);

    let late = worker(&s, &plan, 2, 0, &s.gcs_host).output().unwrap();
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert_eq!(late.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no longer exists") && stderr.contains("restart the run"), "{stderr}");
    let miscounted = worker(&s, &plan, 0, 0, &s.gcs_host).env("CLOUD_RUN_TASK_COUNT", "3").output().unwrap();
    assert!(String::from_utf8_lossy(&miscounted.stderr).contains("shards the run across 4 workers"), "{miscounted:?}");
    assert_eq!(s.objects(&run_dir).await, after, "a worker after the coordinator wrote or removed something");
    db.drop().await;
}

/// A worker whose coordinator is killed mid-run stops at its next unit naming the ended
/// snapshot, with no panic trace before the message (ConnectorX's failed `SET TRANSACTION
/// SNAPSHOT` used to panic on an `unwrap`).
#[tokio::test]
async fn a_worker_whose_coordinator_died_mid_run_says_so_without_a_panic() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE c (id int8 PRIMARY KEY, v text); INSERT INTO c SELECT g, md5(g::text) FROM generate_series(1, 16000) g;",
    )
    .await;
    let held_uploads =
        json!({ "rules": [{ "upstream": "gcs", "method": "POST", "path": "part-p", "fraction": 1.0, "faults": [{ "delay_ms": 1000 }] }] });
    proxy.set(held_uploads).await;
    let dest = format!("gs://{}/shard-{:08x}", s.bucket, rand::random::<u32>());
    let shape = ["--partitions", "16", "--jobs", "1"];
    let (mut coordinator, log) = start_coordinator(&coordinator_args(&s, &dest, &[db.table("c")], &shape), &proxy.gcs_host);
    let plan = format!("{dest}/run1/plan.json");
    let mut child = worker(&s, &plan, 0, 0, &proxy.gcs_host).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let mut stderr: Vec<String> = lines.by_ref().take_while(|line| !line.contains("Wrote file")).collect();
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    log.join().unwrap();
    stderr.extend(lines);
    let (status, stderr) = (child.wait().unwrap(), stderr.join("\n"));
    proxy.set(json!({})).await;

    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no longer exists (the coordinator's transaction ended): restart the run"), "{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
    db.drop().await;
}

/// More worker connections than the source allows are refused before anything is written; a
/// run whose workers never come is given up at its deadline, its plan and claim removed.
#[tokio::test]
async fn a_coordinator_refuses_an_exhausting_plan_and_gives_up_at_its_deadline() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE d (id int8 PRIMARY KEY); INSERT INTO d SELECT generate_series(1, 1000);").await;
    let dest = format!("gs://{}/shard-{:08x}", s.bucket, rand::random::<u32>());
    let mut args = coordinator_args(&s, &dest, &[db.table("d")], &["--partitions", "2", "--jobs", "2"]);
    let budget = args.iter().position(|a| a == "--workers").unwrap() + 1;
    args[budget] = "400".into();
    let out = Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(&args).env("STORAGE_EMULATOR_HOST", &s.gcs_host).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("400 workers × 2 jobs + 1 coordinator need 801 connections") && stderr.contains("lower --workers"), "{stderr}");
    assert!(s.object_names(s.object_name(&dest)).await.is_empty(), "a refused plan wrote something");

    args[budget] = "2".into();
    let deadline = args.iter().position(|a| a == "--deadline").unwrap() + 1;
    args[deadline] = "3s".into();
    let out = Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(&args).env("STORAGE_EMULATOR_HOST", &s.gcs_host).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the deadline (3s) passed with 0 of 2 units recorded, worker(s) 0, 1 still owing units"), "{stderr}");
    let note = format!("{}/run1/given-up.json", s.object_name(&dest));
    assert_eq!(s.object_names(s.object_name(&dest)).await, [note], "the given-up run left only its note");
    db.drop().await;
}

/// A file a worker recorded that is gone by the commit (removed by hand, or by a second task
/// started with the same index) stops the commit, naming the file: no manifest lists a file
/// that is not there. Workers here take their identity from flags, as on a VM.
#[tokio::test]
async fn a_recorded_file_gone_before_the_commit_stops_it() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE f (id int8 PRIMARY KEY); INSERT INTO f SELECT generate_series(1, 1000);").await;
    let dest = format!("gs://{}/shard-{:08x}", s.bucket, rand::random::<u32>());
    let mut args = coordinator_args(&s, &dest, &[db.table("f")], &["--partitions", "2", "--jobs", "1"]);
    let workers = args.iter().position(|a| a == "--workers").unwrap() + 1;
    args[workers] = "2".into();
    let (mut coordinator, log) = start_coordinator(&args, &s.gcs_host);
    let (plan, run_dir) = (format!("{dest}/run1/plan.json"), format!("{}/run1/", s.object_name(&dest)));
    let by_flags = |index: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pg2bq"));
        command.args(["work", "--plan", &plan, "--worker-index", index, "--workers", "2"]);
        command.env("PG2BQ_SOURCE", &s.pg_url).env("STORAGE_EMULATOR_HOST", &s.gcs_host).output().unwrap()
    };
    let first = by_flags("0");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let recorded: Vec<String> = s.object_names(&run_dir).await.into_iter().filter(|n| n.ends_with(".parquet")).collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    s.delete_object(&recorded[0]).await;
    let second = by_flags("1");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let status = coordinator.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("not all in the store as recorded") && log.contains(&format!("{}` (table ", recorded[0])), "{log}");
    assert!(log.contains("is missing"), "{log}");
    assert_eq!(s.object_names(&run_dir).await, [format!("{run_dir}given-up.json")], "the stopped run left only its note");
    db.drop().await;
}
