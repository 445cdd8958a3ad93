//! Exports beside DDL. The snapshot's session locks every exported table (ACCESS SHARE, as
//! pg_dump does), so an `ALTER TABLE` or `VACUUM FULL` arriving mid-run waits for the run, and
//! the unit queued behind it stops at once naming it instead of hanging; DDL holding a lock when
//! the export starts is named after `--lock-timeout`; DDL committed between the snapshot and the
//! lock cannot make the snapshot read a rewritten table as empty; a sharded run's worker and a
//! resumed run do the same. Every run has a deadline: a hang fails the test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pg2bq::model::manifest::Manifest;
use serde_json::json;
use tokio_postgres::{Client, NoTls};

use crate::shard::{coordinator_args, start_coordinator, worker};
use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

const FIXTURE: &str = "CREATE TABLE d (id int8 PRIMARY KEY, n int4, v text); \
    INSERT INTO d SELECT g, g, md5(g::text) FROM generate_series(1, 4000) g;";

/// How long any run may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A pg2bq process whose stderr lines arrive as they are written.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    started: Instant,
}

impl Running {
    /// Starts pg2bq with `args`, through `gcs_host` when it writes to GCS.
    fn start(args: &[&str], gcs_host: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pg2bq"));
        command.args(args).env("NO_COLOR", "1").env_remove("PG2BQ_PARTITIONS");
        if let Some(host) = gcs_host {
            command.env("STORAGE_EMULATOR_HOST", host);
        }
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let (sender, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).try_for_each(|line| sender.send(line)));
        Self { child, lines, log: Vec::new(), started: Instant::now() }
    }

    /// Waits for a stderr line holding `needle`.
    fn wait_for_line(&mut self, needle: &str) {
        while self.started.elapsed() < HANG {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.log.push(line);
                if self.log.last().is_some_and(|l| l.contains(needle)) {
                    return;
                }
            }
        }
        let _ = self.child.kill();
        panic!("no line `{needle}` within {HANG:?}:\n{}", self.log.join("\n"));
    }

    /// Waits for the exit: its code, its whole stderr and how long it ran. A process still
    /// running after [`HANG`] is killed and fails the test.
    fn finish(mut self) -> (Option<i32>, String, Duration) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.log.extend(self.lines.iter());
                return (status.code(), self.log.join("\n"), self.started.elapsed());
            }
            if self.started.elapsed() > HANG {
                self.child.kill().unwrap();
                self.child.wait().unwrap();
                self.log.extend(self.lines.try_iter());
                panic!("the export hung for {HANG:?}:\n{}", self.log.join("\n"));
            }
            self.log.extend(self.lines.try_iter());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Each unit's upload held 1.5 s by the fault proxy, so units remain when the DDL comes.
fn held_uploads() -> serde_json::Value {
    json!({ "rules": [{ "upstream": "gcs", "method": "POST", "path": "part-p", "fraction": 1.0, "faults": [{ "delay_ms": 1500 }] }] })
}

/// `export` of `table` in 4 units, one at a time, as run `run1`.
fn export_args<'a>(url: &'a str, dest: &'a str, table: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["export", "--source", url, "--dest", dest, "--table", table, "--run-id", "run1", "--progress", "off"];
    args.extend(["--partitions", "4", "--jobs", "1"]);
    args.extend_from_slice(extra);
    args
}

/// After the first unit's file, another session runs `ddl` on the table. The DDL waits for the
/// run's lock, and the next unit waits at most `lock_wait` behind it: the export then stops
/// naming the DDL, commits nothing, and the DDL completes. Returns the schema, the run's
/// destination and its stderr.
async fn ddl_mid_run(s: &Emulators, proxy: &FaultProxy, ddl: &str, lock_wait: &str, extra: &[&str]) -> (TestDb, String, String) {
    let db = TestDb::new(&s.pg_url, FIXTURE).await;
    proxy.set(held_uploads()).await;
    let dest = format!("gs://{}/ddl-{:08x}", s.bucket, rand::random::<u32>());
    let table = db.table("d");
    let args = [export_args(&s.pg_url, &dest, &table, extra), vec!["--lock-wait", lock_wait]].concat();
    let mut export = Running::start(&args, Some(&proxy.gcs_host));
    export.wait_for_line("Wrote file");
    let (client, statement) = (connect(&s.pg_url).await, ddl.replace("{t}", &table));
    let ddl_run = tokio::spawn(async move { client.batch_execute(&statement).await });
    let (code, stderr, _) = export.finish();
    proxy.set(json!({})).await;
    assert_eq!(code, Some(2), "{stderr}");
    let expected = format!("could not be locked within --lock-wait ({lock_wait}) because a statement waits for a lock the run holds: pid ");
    assert!(stderr.contains(&format!("table `{table}`, unit ")) && stderr.contains(&expected), "{stderr}");
    let waiting = format!("waits for ACCESS EXCLUSIVE on {table} (active, transaction open ");
    assert!(stderr.contains(&waiting) && stderr.contains(&ddl.replace("{t}", &table)), "{stderr}");
    assert!(stderr.contains("export again once that statement has run (or end it), or pass --lock-wait <duration>"), "{stderr}");
    let objects = s.object_names(&format!("{}/", s.object_name(&dest))).await;
    assert!(!objects.iter().any(|o| o.ends_with("manifest.json")), "nothing is committed: {objects:?}");
    let ran = tokio::time::timeout(Duration::from_secs(20), ddl_run).await.expect("the DDL completes once the export stopped");
    ran.unwrap().unwrap();
    (db, dest, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_mid_run_stops_the_export_naming_it_and_then_completes() {
    let (s, proxy) = (emulators!(), fault_proxy!());
    let (db, _, stderr) = ddl_mid_run(&s, &proxy, "ALTER TABLE {t} ADD COLUMN seven int DEFAULT 7", "0s", &[]).await;
    assert!(!stderr.contains("Waiting for a lock"), "a unit that does not wait has nothing to report: {stderr}");
    let row = db.client.query_one(&format!("SELECT count(*) FILTER (WHERE seven = 7) FROM {}", db.table("d")), &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 4000);
    db.drop().await;
}

/// A unit allowed to wait (`--lock-wait 10s`) says every few seconds what it waits for, then
/// stops at the end of its wait, naming the DDL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_allowed_to_wait_says_what_it_waits_for_then_stops() {
    let (s, proxy) = (emulators!(), fault_proxy!());
    let (db, _, stderr) = ddl_mid_run(&s, &proxy, "ALTER TABLE {t} ADD COLUMN seven int DEFAULT 7", "10s", &[]).await;
    let table = db.table("d");
    assert!(stderr.contains("Waiting for a lock held or requested by another session"), "{stderr}");
    let line = format!("relation={table} blocked_by=pid ");
    let blocker = format!(" (active): ALTER TABLE {table} ADD COLUMN seven int DEFAULT 7");
    assert!(stderr.contains(&line) && stderr.contains(&blocker), "{stderr}");
    db.drop().await;
}

/// With `--resume`, the units recorded before the DDL are kept, and the resumed run (which
/// locks the table again in its own snapshot) completes once the DDL has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_full_mid_run_stops_the_export_naming_it_and_resume_completes_it() {
    let (s, proxy) = (emulators!(), fault_proxy!());
    let (db, dest, _) = ddl_mid_run(&s, &proxy, "VACUUM FULL {t}", "0s", &["--resume"]).await;
    let table = db.table("d");
    let resumed = Running::start(&export_args(&s.pg_url, &dest, &table, &["--resume"]), Some(&s.gcs_host));
    let (code, stderr, _) = resumed.finish();
    assert_eq!(code, Some(0), "{stderr}");
    // Unit 0, and unit 1 when it started before the DDL queued.
    let kept = stderr.split("Resuming run run_id=run1 kept_units=").nth(1).and_then(|rest| rest.get(..1));
    assert!(matches!(kept, Some("1" | "2")), "{stderr}");
    let manifest: Manifest = serde_json::from_slice(&s.download(&format!("{}/run1/manifest.json", s.object_name(&dest))).await).unwrap();
    assert_eq!((manifest.tables[0].row_count, manifest.mixed_snapshot), (4000, true));
    db.drop().await;
}

/// A sharded run: the coordinator's snapshot session holds the locks while workers on other
/// machines read the units. DDL queued behind it stops a worker's next unit at once, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_naming_ddl_queued_behind_the_coordinators_locks() {
    let (s, proxy) = (emulators!(), fault_proxy!());
    let db = TestDb::new(&s.pg_url, FIXTURE).await;
    proxy.set(held_uploads()).await;
    let (dest, table) = (format!("gs://{}/ddl-{:08x}", s.bucket, rand::random::<u32>()), db.table("d"));
    let shape = ["--partitions", "16", "--jobs", "1"];
    let (mut coordinator, log) = start_coordinator(&coordinator_args(&s, &dest, std::slice::from_ref(&table), &shape), &proxy.gcs_host);
    let mut work = Running::spawn(worker(&s, &format!("{dest}/run1/plan.json"), 0, 0, &proxy.gcs_host));
    work.wait_for_line("Wrote file");
    let (client, statement) = (connect(&s.pg_url).await, format!("ALTER TABLE {table} ADD COLUMN seven int DEFAULT 7"));
    let ddl_run = tokio::spawn(async move { client.batch_execute(&statement).await });
    let (code, stderr, _) = work.finish();
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    log.join().unwrap();
    proxy.set(json!({})).await;

    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("could not be locked within --lock-wait (0s) because a statement waits for a lock the run holds"), "{stderr}");
    assert!(stderr.contains(&format!("ACCESS EXCLUSIVE on {table} (active, transaction open ")), "{stderr}");
    assert!(stderr.contains(&format!("ALTER TABLE {table} ADD COLUMN seven int DEFAULT 7; the run's snapshot holds")), "{stderr}");
    let ran = tokio::time::timeout(Duration::from_secs(20), ddl_run).await.expect("the DDL completes once the coordinator ended");
    ran.unwrap().unwrap();
    db.drop().await;
}

/// A migration holding ACCESS EXCLUSIVE (an open `ALTER TABLE`) when the export starts: after
/// a few seconds a line says what the run waits for, then, at `--lock-timeout`, the run stops
/// naming the table and the blocking session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_holding_a_lock_at_the_start_is_named_at_the_lock_timeout() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, FIXTURE).await;
    let table = db.table("d");
    let holder = connect(&url).await;
    let pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    holder.batch_execute(&format!("BEGIN; ALTER TABLE {table} ADD COLUMN held int")).await.unwrap();
    let dest = tempfile::tempdir().unwrap();
    let export = Running::start(&export_args(&url, dest.path().to_str().unwrap(), &table, &["--lock-timeout", "6s"]), None);
    let (code, stderr, took) = export.finish();
    holder.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(code, Some(2), "{stderr}");
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    assert!(stderr.contains("Waiting for a lock held or requested by another session"), "no line while waiting: {stderr}");
    assert!(stderr.contains(&format!("relation={table} blocked_by=pid {pid} (idle in transaction)")), "{stderr}");
    let message = format!(
        "could not lock table `{table}` (ACCESS SHARE, as pg_dump does) within the lock timeout of 6s: \
         pid {pid} holds ACCESS EXCLUSIVE on {table} (idle in transaction, transaction open "
    );
    assert!(stderr.contains(&message), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "BEGIN; ALTER TABLE {table} ADD COLUMN held int; retry when it has finished, end it, or raise --lock-timeout"
        )),
        "{stderr}"
    );
    assert!(!dest.path().join("run1/manifest.json").exists());
    db.drop().await;
}

/// `ddl` queued behind a reader when the export starts, so it commits after the run's snapshot
/// but before the run's lock. Returns the run's exit code and stderr.
async fn ddl_between_snapshot_and_lock(url: &str, db: &TestDb, dest: &str, ddl: &str) -> (Option<i32>, String) {
    let table = db.table("d");
    let reader = connect(url).await;
    reader.batch_execute(&format!("BEGIN; SELECT count(*) FROM {table}")).await.unwrap();
    let (client, statement) = (connect(url).await, ddl.replace("{t}", &table));
    let ddl_run = tokio::spawn(async move { client.batch_execute(&statement).await });
    let queued = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()";
    // Asked outside the reader's transaction, which sees pg_stat_activity as it was at its start.
    let observer = connect(url).await;
    let waiting = |n: i64| {
        let observer = &observer;
        async move {
            let deadline = Instant::now() + HANG;
            while observer.query_one(queued, &[]).await.unwrap().get::<_, i64>(0) < n {
                assert!(Instant::now() < deadline, "{n} sessions never waited for a lock");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    waiting(1).await;
    let export = Running::start(&export_args(url, dest, &table, &[]), None);
    waiting(2).await;
    reader.batch_execute("COMMIT").await.unwrap();
    let (code, stderr, _) = export.finish();
    ddl_run.await.unwrap().unwrap();
    (code, stderr)
}

/// DDL that commits between the run's snapshot and its lock: a rewrite (the snapshot would read
/// the new heap as empty) is refused by name; a column added without a rewrite is left out and
/// every row of the snapshot is exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_committed_between_the_snapshot_and_the_lock_leaves_the_snapshot_consistent() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, FIXTURE).await;
    let table = db.table("d");
    let (rewritten, added) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let (code, stderr) =
        ddl_between_snapshot_and_lock(&url, &db, rewritten.path().to_str().unwrap(), "ALTER TABLE {t} ALTER COLUMN n TYPE int8").await;
    assert_eq!(code, Some(2), "a rewritten table must not be read as empty: {stderr}");
    let message = format!("table `{table}`: {table} was rewritten, truncated or dropped (VACUUM FULL, CLUSTER, TRUNCATE, a rewriting ALTER TABLE, DROP) between the run's snapshot and its lock");
    assert!(stderr.contains(&message) && stderr.contains("nothing was exported: export again"), "{stderr}");
    assert!(!rewritten.path().join("run1/manifest.json").exists());

    let (code, stderr) =
        ddl_between_snapshot_and_lock(&url, &db, added.path().to_str().unwrap(), "ALTER TABLE {t} ADD COLUMN seven int DEFAULT 7").await;
    assert_eq!(code, Some(0), "{stderr}");
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(added.path().join("run1/manifest.json")).unwrap()).unwrap();
    let columns: Vec<&str> = manifest.tables[0].columns.iter().map(|c| c.mapping.name.as_str()).collect();
    assert_eq!((manifest.tables[0].row_count, columns), (4000, vec!["id", "n", "v"]), "the snapshot's rows and columns");
    db.drop().await;
}
