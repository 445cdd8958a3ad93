//! The run directory is safe: run ids cannot leave it, two exports of one run id never both
//! write, a killed export is taken over by its rerun, a committed run is never touched, and
//! huge values still make files other readers open. Ends with seeded kill -9 trials.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use pg2bq::model::manifest::Manifest;
use rand::{Rng, SeedableRng};

use crate::skip_unless;
use crate::support::*;

/// `rows` rows of ~330 bytes, ids 1..=rows.
fn wide_table(rows: u64) -> String {
    format!("CREATE TABLE w (id int8 PRIMARY KEY, v text); INSERT INTO w SELECT g, md5(g::text) || repeat('y', 300) FROM generate_series(1, {rows}) g;")
}

fn export_args(url: &str, dest: &str, table: &str, run_id: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["export", "--source", url, "--dest", dest, "--table", table, "--run-id", run_id, "--progress", "off"].map(String::from).to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn spawn_export(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(args).env("NO_COLOR", "1").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn run_export(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    if !dir.exists() {
        return BTreeMap::new();
    }
    walk(dir).into_iter().map(|p| (p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())).collect()
}

fn read_manifest(run_dir: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json")).unwrap()).unwrap()
}

/// Every `id` of the Parquet files the manifest lists, sorted.
fn manifest_ids(run_dir: &Path, manifest: &Manifest) -> Vec<i64> {
    let mut ids = Vec::new();
    for file in &manifest.tables[0].files {
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(run_dir.join(&file.path)).unwrap()).unwrap();
        let mask = ProjectionMask::columns(builder.parquet_schema(), ["id"]);
        for batch in builder.with_projection(mask).build().unwrap() {
            ids.extend(batch.unwrap().column(0).as_primitive::<Int64Type>().values().iter().copied());
        }
    }
    ids.sort_unstable();
    ids
}

/// The run directory holds the manifest and exactly the files it lists, each with the bytes
/// and CRC32C it records, and the ids are 1..=rows once each. Bookkeeping (the claim, unit
/// records) may stay when the kill came between the commit and its removal.
fn assert_committed_exactly(run_dir: &Path, rows: u64) {
    let manifest = read_manifest(run_dir);
    let files: Vec<_> = manifest.tables[0].files.iter().chain(manifest.tables[0].side_files()).collect();
    let mut expected: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    expected.push("manifest.json".into());
    expected.sort();
    let on_disk: Vec<String> = tree(run_dir).into_keys().filter(|path| !pg2bq::storage::run::is_bookkeeping_file(path)).collect();
    assert_eq!(on_disk, expected, "the run directory holds the manifest and its files, nothing else");
    for file in files {
        let data = std::fs::read(run_dir.join(&file.path)).unwrap();
        assert_eq!((data.len() as u64, pg2bq::storage::store::crc32c_base64(crc32c::crc32c(&data))), (file.bytes, file.crc32c.clone()));
    }
    assert_eq!(manifest.tables[0].row_count, rows);
    assert_eq!(manifest_ids(run_dir, &manifest), (1..=rows as i64).collect::<Vec<_>>(), "0 duplicated and 0 missing ids");
}

#[tokio::test]
async fn run_ids_dot_and_dot_dot_are_refused_and_touch_nothing() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(10)).await;
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("exports");
    std::fs::create_dir_all(root.path().join("sibling")).unwrap();
    std::fs::write(root.path().join("sibling/keep.txt"), b"beside the destination").unwrap();
    let committed = run_export(&export_args(&url, dest.to_str().unwrap(), &db.table("w"), "keep", &[]));
    assert!(committed.status.success(), "{}", stderr(&committed));
    let before = tree(root.path());
    assert!(before.contains_key("exports/keep/manifest.json"));

    for run_id in ["..", ".", "../sibling", "a/b"] {
        let out = run_export(&export_args(&url, dest.to_str().unwrap(), &db.table("w"), run_id, &[]));
        assert_eq!(out.status.code(), Some(2), "--run-id {run_id}: {}", stderr(&out));
        assert!(stderr(&out).contains(&format!("run id `{run_id}` is not allowed")), "{}", stderr(&out));
        assert_eq!(tree(root.path()), before, "--run-id {run_id} changed files");
    }
    db.drop().await;
}

#[tokio::test]
async fn dry_run_of_a_committed_run_id_is_refused() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(10)).await;
    let dest = tempfile::tempdir().unwrap();
    let args = export_args(&url, dest.path().to_str().unwrap(), &db.table("w"), "done", &[]);
    assert!(run_export(&args).status.success());
    let before = tree(dest.path());
    let out = run_export(&export_args(&url, dest.path().to_str().unwrap(), &db.table("w"), "done", &["--dry-run"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("run `done` is already committed"), "{}", stderr(&out));
    assert_eq!(tree(dest.path()), before);
    db.drop().await;
}

/// A kill between the manifest's creation and the claim's removal leaves the claim in a committed
/// run: verify still finds the snapshot intact, and a rerun still sees the run as committed.
#[tokio::test]
async fn a_claim_left_in_a_committed_run_is_not_an_extra_file() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(10)).await;
    let dest = tempfile::tempdir().unwrap();
    let args = export_args(&url, dest.path().to_str().unwrap(), &db.table("w"), "left", &[]);
    assert!(run_export(&args).status.success());
    std::fs::write(dest.path().join("left/claim-000001.json"), br#"{"attempt":"killed-after-commit"}"#).unwrap();
    let before = tree(dest.path());
    let manifest = dest.path().join("left/manifest.json");
    let verify = pg2bq(&["verify", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    let rerun = run_export(&args);
    assert_eq!(rerun.status.code(), Some(2), "{}", stderr(&rerun));
    assert!(stderr(&rerun).contains("run `left` is already committed"), "{}", stderr(&rerun));
    assert_eq!(tree(dest.path()), before, "the committed run is untouched");
    db.drop().await;
}

#[tokio::test]
async fn memory_destination_is_refused_by_the_binary() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(10)).await;
    let out = run_export(&export_args(&url, "memory://scratch", &db.table("w"), "m", &[]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("destination `memory://scratch` is in memory and would vanish"), "{}", stderr(&out));
    db.drop().await;
}

/// Rows of the raced table: enough that the first export is still writing when the second,
/// started at the first's claim, reaches its own (a fixed 1 s head start stopped overlapping
/// once exports got faster).
const RACE_ROWS: u64 = 1_000_000;

/// Two exports of one run id, the second started as soon as the first has claimed the run.
fn race_two_exports(args: &[String]) -> (Output, Output) {
    let mut first = spawn_export(args);
    let mut lines = BufReader::new(first.stderr.take().expect("stderr is piped")).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("Claimed run") {
            break;
        }
    }
    let second = spawn_export(args);
    let rest = std::thread::spawn(move || {
        for line in lines {
            log.push_str(&line.unwrap());
            log.push('\n');
        }
        log
    });
    let second = second.wait_with_output().unwrap();
    let status = first.wait().unwrap();
    (Output { status, stdout: Vec::new(), stderr: rest.join().unwrap().into_bytes() }, second)
}

fn assert_one_commits(first: &Output, second: &Output) {
    let codes = [first.status.code(), second.status.code()];
    assert!(codes == [Some(0), Some(2)] || codes == [Some(2), Some(0)], "exit codes {codes:?}: {}\n{}", stderr(first), stderr(second));
    let loser = if codes[0] == Some(2) { first } else { second };
    assert!(stderr(loser).contains("is being exported by pid"), "{}", stderr(loser));
}

#[tokio::test]
async fn two_local_exports_of_one_run_id_commit_once_and_verify() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(RACE_ROWS)).await;
    let dest = tempfile::tempdir().unwrap();
    let args = export_args(&url, dest.path().to_str().unwrap(), &db.table("w"), "twice", &["--partitions", "2", "--file-size", "1MiB"]);
    let (first, second) = race_two_exports(&args);
    assert_one_commits(&first, &second);
    let run_dir = dest.path().join("twice");
    assert_committed_exactly(&run_dir, RACE_ROWS);
    let verify = pg2bq(&["verify", "--manifest", run_dir.join("manifest.json").to_str().unwrap()]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    db.drop().await;
}

#[tokio::test]
async fn two_gcs_exports_of_one_run_id_commit_once_and_verify() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let emulator = skip_unless!("STORAGE_EMULATOR_HOST");
    let bucket = skip_unless!("PG2BQ_TEST_GCS_BUCKET");
    let db = TestDb::new(&url, &wide_table(RACE_ROWS)).await;
    let prefix = format!("gs://{bucket}/runs-{:08x}", rand::random::<u32>());
    let args = export_args(&url, &prefix, &db.table("w"), "twice", &["--partitions", "2", "--file-size", "1MiB"]);
    let (first, second) = race_two_exports(&args);
    assert_one_commits(&first, &second);
    let options = pg2bq::storage::gcs::GcsOptions { emulator_host: Some(emulator), application_credentials: None };
    let store = pg2bq::storage::store::Store::open(&prefix, &options).unwrap();
    let manifest: Manifest = serde_json::from_slice(&store.get("twice/manifest.json").await.unwrap()).unwrap();
    let mut listed: Vec<String> = store.list("twice").await.unwrap().into_iter().map(|o| o.path).collect();
    listed.sort();
    let files: Vec<_> = manifest.tables[0].files.iter().chain(manifest.tables[0].side_files()).collect();
    let mut expected: Vec<String> = files.iter().map(|f| format!("twice/{}", f.path)).collect();
    expected.push("twice/manifest.json".into());
    expected.sort();
    assert_eq!(listed, expected);
    for file in files {
        let data = store.get(&format!("twice/{}", file.path)).await.unwrap();
        assert_eq!((data.len() as u64, pg2bq::storage::store::crc32c_base64(crc32c::crc32c(&data))), (file.bytes, file.crc32c.clone()));
    }
    assert_eq!(manifest.tables[0].row_count, RACE_ROWS);
    let verify = pg2bq(&["verify", "--manifest", &format!("{prefix}/twice/manifest.json")]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    db.drop().await;
}

/// Waits until `run_dir` holds a claim and a data file, then kills the export.
fn kill_once_writing(mut child: Child, run_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files: Vec<String> = tree(run_dir).into_keys().collect();
        if files.iter().any(|f| f.starts_with("claim-")) && files.iter().any(|f| f.ends_with(".parquet")) {
            break;
        }
        assert!(Instant::now() < deadline, "export never claimed the run and wrote a file");
        assert!(child.try_wait().unwrap().is_none(), "export finished before it could be killed; make the table bigger");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_killed_exports_claim_is_taken_over_by_the_rerun() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(200_000)).await;
    let dest = tempfile::tempdir().unwrap();
    let args = export_args(
        &url,
        dest.path().to_str().unwrap(),
        &db.table("w"),
        "stale",
        &["--partitions", "2", "--jobs", "1", "--file-size", "256KiB", "--row-group-size", "256KiB"],
    );
    let run_dir = dest.path().join("stale");
    kill_once_writing(spawn_export(&args), &run_dir);
    let left: Vec<String> = tree(&run_dir).into_keys().collect();
    assert!(left.contains(&"claim-000001.json".to_string()) && !left.contains(&"manifest.json".to_string()), "{left:?}");

    let out = run_export(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Taking over the run from an attempt that is gone"), "{}", stderr(&out));
    assert_committed_exactly(&run_dir, 200_000);
    db.drop().await;
}

#[tokio::test]
async fn another_hosts_claim_is_taken_over_only_when_asked() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(1000)).await;
    let dest = tempfile::tempdir().unwrap();
    let run_dir = dest.path().join("foreign");
    std::fs::create_dir_all(run_dir.join("left")).unwrap();
    let claim = serde_json::json!({
        "attempt": "0123456789abcdef", "host": "builder-7", "pid": 4242, "process_start_ticks": 99,
        "boot_id": "another-boot", "started_at": "2026-11-27T10:00:00Z"
    });
    std::fs::write(run_dir.join("claim-000001.json"), serde_json::to_vec(&claim).unwrap()).unwrap();
    std::fs::write(run_dir.join("left/part-p0000-s00000.parquet"), b"half a file").unwrap();
    let before = tree(dest.path());
    let args = export_args(&url, dest.path().to_str().unwrap(), &db.table("w"), "foreign", &[]);

    let refused = run_export(&args);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("was claimed by pid 4242 on host `builder-7`"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--take-over"), "{}", stderr(&refused));
    assert_eq!(tree(dest.path()), before, "a refused export touches nothing");

    let mut take_over = args.clone();
    take_over.push("--take-over".into());
    let out = run_export(&take_over);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_committed_exactly(&run_dir, 1000);
    db.drop().await;
}

/// Byte-array statistics are truncated in the file (else a 50 MB value makes a footer and
/// page header readers refuse), while the manifest keeps the exact min and max.
#[tokio::test]
async fn a_50_mb_text_value_reads_back_byte_exact_in_pyarrow_and_duckdb() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let python = skip_unless!("PG2BQ_TEST_PYTHON");
    let duckdb_python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let db = TestDb::new(
        &url,
        "CREATE TABLE huge (id int8 PRIMARY KEY, v text);
         INSERT INTO huge VALUES (1, 'a'), (2, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 1638400) g));",
    )
    .await;
    let expected = db
        .client
        .query("SELECT id, length(v)::int8, encode(sha256(convert_to(v, 'UTF8')), 'hex') FROM huge ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, String>(2)))
        .collect::<Vec<_>>();
    assert_eq!(&expected[1][..10], "2 52428800", "the fixture value is 50 MiB");
    let dest = tempfile::tempdir().unwrap();
    let out = run_export(&export_args(&url, dest.path().to_str().unwrap(), &db.table("huge"), "huge", &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = dest.path().join("huge");
    let manifest = read_manifest(&run_dir);
    let file = run_dir.join(&manifest.tables[0].files[0].path);

    let digest = "import hashlib, sys\nfor i, v in rows: print(i, len(v.encode()), hashlib.sha256(v.encode()).hexdigest())";
    let pyarrow = format!(
        "import pyarrow.parquet as pq\nt = pq.read_table(sys.argv[1]).sort_by('id')\nrows = zip(t['id'].to_pylist(), t['v'].to_pylist())\n{digest}"
    );
    let duckdb = format!(
        "import duckdb\nrows = duckdb.sql(\"SELECT id, v FROM read_parquet('\" + sys.argv[1] + \"') ORDER BY id\").fetchall()\n{digest}"
    );
    for (reader, script) in [(&python, pyarrow), (&duckdb_python, duckdb)] {
        let out = Command::new(reader).arg("-c").arg(format!("import sys\n{script}")).arg(&file).output().unwrap();
        assert!(out.status.success(), "{reader}: {}", stderr(&out));
        assert_eq!(String::from_utf8(out.stdout).unwrap().lines().collect::<Vec<_>>(), expected, "{reader}");
    }
    let v = manifest.tables[0].columns.iter().find(|c| c.mapping.name == "v").unwrap();
    let huge: String = db.client.query_one("SELECT v FROM huge WHERE id = 2", &[]).await.unwrap().get(0);
    assert_eq!(v.aggregates.min.as_deref(), Some("a"));
    assert!(v.aggregates.max.as_deref() == Some(huge.as_str()), "the manifest's max is the exact 50 MiB value");
    db.drop().await;
}

/// kill -9 of export at seeded random points over its measured duration, then a rerun with the
/// same run id: every run converges to exactly the snapshot, and a committed one stays intact.
#[tokio::test]
async fn export_kill_trials_converge() {
    const TRIALS: usize = 20;
    const ROWS: u64 = 40_000;
    const SEED: u64 = 0x5eed_0001;
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &wide_table(ROWS)).await;
    let dest = tempfile::tempdir().unwrap();
    let extra = ["--partitions", "3", "--file-size", "512KiB", "--row-group-size", "512KiB", "--batch-rows", "4096"];
    let args = |run_id: &str| export_args(&url, dest.path().to_str().unwrap(), &db.table("w"), run_id, &extra);
    let started = Instant::now();
    let measured = run_export(&args("measure"));
    assert!(measured.status.success(), "{}", stderr(&measured));
    let duration = started.elapsed();

    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let (mut before_claim, mut mid_write, mut after_commit) = (0, 0, 0);
    for trial in 0..TRIALS {
        let run_id = format!("trial-{trial:02}");
        let run_dir = dest.path().join(&run_id);
        let mut child = spawn_export(&args(&run_id));
        std::thread::sleep(duration.mul_f64(rng.gen_range(0.0..1.1)));
        child.kill().unwrap();
        child.wait().unwrap();
        let left = tree(&run_dir);
        let rerun = run_export(&args(&run_id));
        if let Some(manifest) = left.get("manifest.json") {
            after_commit += 1;
            assert_eq!(rerun.status.code(), Some(2), "trial {trial}: {}", stderr(&rerun));
            assert!(stderr(&rerun).contains("already committed"), "trial {trial}: {}", stderr(&rerun));
            assert_eq!(&std::fs::read(run_dir.join("manifest.json")).unwrap(), manifest, "trial {trial}: the committed manifest changed");
        } else {
            if left.keys().any(|k| k.starts_with("claim-")) {
                mid_write += 1;
            } else {
                before_claim += 1;
            }
            assert!(rerun.status.success(), "trial {trial}: {}", stderr(&rerun));
        }
        assert_committed_exactly(&run_dir, ROWS);
    }
    crate::support::report_line(&format!(
        "export kill trials: {TRIALS}/{TRIALS} converged ({before_claim} killed before claim, {mid_write} mid-write, {after_commit} after commit; export takes {:.2} s, seed {SEED:#x})",
        duration.as_secs_f64()
    ));
    db.drop().await;
}
