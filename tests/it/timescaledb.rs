//! A real TimescaleDB: `PG2BQ_TEST_TIMESCALEDB_URL` names the second cluster scripts/test.sh
//! starts, preloading the extension built from vendor/timescaledb (the Apache-2.0 part). A
//! hypertable of 60 chunks and one with a space dimension export one unit per chunk, each
//! compared with its chunk in Postgres (rows, sums, time range from `timescaledb_information`)
//! after DuckDB reads the files back; retention (`drop_chunks`) and a new chunk during an
//! export, chunks changed before a `--resume`, and the sample app's hypertable through load
//! and validate on the BigQuery emulator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pg2bq::model::manifest::{Manifest, TableManifest};
use pg2bq::model::unit_record::UnitRecord;

use crate::support::*;
use crate::{emulators, skip_unless};

/// Created in `public`, so dropping a test's schema never drops the extension.
const EXTENSION: &str = "CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public;";

/// `ticks`: one row a minute from 2024-01-01 for `{days}` days, in daily chunks.
const TICKS: &str = "
CREATE TABLE ticks (id int8 NOT NULL, ts timestamptz NOT NULL, device int4 NOT NULL, price numeric(12,4), PRIMARY KEY (id, ts));
SELECT create_hypertable('ticks', 'ts', chunk_time_interval => interval '1 day');
INSERT INTO ticks SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g - 1) * interval '1 minute', g % 16,
    CASE WHEN g % 11 = 0 THEN NULL ELSE round((g % 100000) / 7.0, 4) END
  FROM generate_series(1, {days} * 1440) g;
ANALYZE ticks;
";

/// `readings`: weekly time slices, each cut into 4 chunks by the hash of `device` (16 devices).
const SPACE: &str = "
CREATE TABLE readings (id int8 NOT NULL, ts timestamptz NOT NULL, device int4 NOT NULL, value float8, PRIMARY KEY (id, ts, device));
SELECT create_hypertable('readings', 'ts', chunk_time_interval => interval '7 days');
SELECT add_dimension('readings', 'device', number_partitions => 4);
INSERT INTO readings SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g - 1) * interval '10 minutes', g % 16, (g % 997) / 8.0
  FROM generate_series(1, 8 * 1008) g;
ANALYZE readings;
";

/// A real hypertable of weekly chunks, the first compressed.
const COMPRESSED: &str = "
CREATE TABLE ticks (id int8 NOT NULL, at timestamptz NOT NULL, price float8, PRIMARY KEY (id, at));
SELECT create_hypertable('ticks', 'at', chunk_time_interval => interval '7 days');
INSERT INTO ticks SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', g / 3.0 FROM generate_series(1, 60000) g;
ALTER TABLE ticks SET (timescaledb.compress);
SELECT compress_chunk(c) FROM show_chunks('ticks') c ORDER BY c LIMIT 1;
";

fn ticks(days: u32) -> String {
    format!("{EXTENSION}{}", TICKS.replace("{days}", &days.to_string()))
}

/// One chunk as `timescaledb_information.chunks` lists it: `schema.name`, the same quoted as a
/// unit's query names it, and its time range (µs).
#[derive(Debug, Clone)]
struct Chunk {
    name: String,
    quoted: String,
    start_us: i64,
    end_us: i64,
}

/// What a chunk holds, or a unit's files: rows, `sum(id)`, `min(ts)` and `max(ts)` in µs, and
/// its distinct devices.
type Figures = (u64, i128, i64, i64, Vec<i32>);

async fn chunks(db: &TestDb, table: &str) -> Vec<Chunk> {
    let sql = "SELECT chunk_schema || '.' || chunk_name, '\"' || chunk_schema || '\".\"' || chunk_name || '\"', (extract(epoch FROM range_start) * 1000000)::int8, \
                 (extract(epoch FROM range_end) * 1000000)::int8 \
               FROM timescaledb_information.chunks WHERE hypertable_schema = $1 AND hypertable_name = $2 ORDER BY range_start, 1";
    let rows = db.client.query(sql, &[&db.schema, &table]).await.unwrap();
    rows.iter().map(|r| Chunk { name: r.get(0), quoted: r.get(1), start_us: r.get(2), end_us: r.get(3) }).collect()
}

/// Each chunk's [`Figures`], read `FROM ONLY` it.
async fn chunk_figures(db: &TestDb, chunks: &[Chunk]) -> BTreeMap<String, Figures> {
    let mut figures = BTreeMap::new();
    for chunk in chunks {
        let sql = format!(
            "SELECT count(*), sum(id)::text, (extract(epoch FROM min(ts)) * 1000000)::int8, (extract(epoch FROM max(ts)) * 1000000)::int8, \
               array_agg(DISTINCT device ORDER BY device) FROM ONLY {}",
            chunk.name
        );
        let row = db.client.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let sum: String = row.get(1);
        figures.insert(chunk.name.clone(), (row.get::<_, i64>(0) as u64, sum.parse().unwrap(), row.get(2), row.get(3), row.get(4)));
    }
    figures
}

/// Each unit's [`Figures`] from its Parquet files as DuckDB reads them, by the unit's relation.
fn unit_figures(python: &str, run_dir: &Path, table: &TableManifest) -> BTreeMap<String, Figures> {
    let pattern = format!("{}/**/*.parquet", run_dir.display());
    let script = "import duckdb, json, sys\n\
        rows = duckdb.sql(\"SELECT regexp_extract(filename, 'part-p([0-9]+)-', 1)::int, count(*), sum(id)::varchar, \
        epoch_us(min(ts)), epoch_us(max(ts)), list_sort(list(DISTINCT device)) FROM read_parquet(?, filename=true) GROUP BY 1\", \
        params=[sys.argv[1]]).fetchall()\n\
        print(json.dumps(rows))";
    let out = Command::new(python).args(["-c", script, &pattern]).output().unwrap();
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<(usize, u64, String, i64, i64, Vec<i32>)> = serde_json::from_slice(&out.stdout).unwrap();
    let relation = |index: usize| table.partitions.iter().find(|p| p.index == index).and_then(|p| p.relation.clone()).unwrap();
    rows.into_iter()
        .map(|(index, rows, sum, min, max, devices)| (relation(index), (rows, sum.parse().unwrap(), min, max, devices)))
        .collect()
}

/// Every unit reads one whole chunk (`child`), every chunk is one unit, and the files of each
/// hold exactly what the chunk held (`expected`), inside the chunk's time range.
fn assert_unit_per_chunk(python: &str, run_dir: &Path, table: &TableManifest, chunks: &[Chunk], expected: &BTreeMap<String, Figures>) {
    assert!(table.partitions.iter().all(|p| p.method == "child"), "{:?}", table.partitions);
    let units: BTreeSet<String> = table.partitions.iter().filter_map(|p| p.relation.clone()).collect();
    let names: BTreeSet<String> = chunks.iter().map(|c| c.name.clone()).collect();
    assert_eq!((table.partitions.len(), &units), (chunks.len(), &names), "one unit per chunk");
    let read = unit_figures(python, run_dir, table);
    assert_eq!(&read, expected);
    for chunk in chunks {
        let (_, _, min, max, _) = &read[&chunk.name];
        assert!(chunk.start_us <= *min && *max < chunk.end_us, "{chunk:?}: rows from {min} to {max}");
    }
    let rows: u64 = expected.values().map(|f| f.0).sum();
    assert_eq!((table.row_count, table.partitions.iter().map(|p| p.rows).sum::<u64>()), (rows, rows));
}

fn export_args<'a>(url: &'a str, dest: &'a Path, table: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args =
        vec!["export", "--source", url, "--dest", dest.to_str().unwrap(), "--table", table, "--run-id", "r", "--progress", "off"];
    args.extend_from_slice(extra);
    args
}

fn read_manifest(dest: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(dest.join("r/manifest.json")).unwrap()).unwrap()
}

async fn scalar(db: &TestDb, sql: &str) -> String {
    db.client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

#[tokio::test]
async fn a_hypertable_of_60_chunks_exports_one_unit_per_chunk_with_exact_rows() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let db = TestDb::new(&url, &ticks(60)).await;
    let chunks = chunks(&db, "ticks").await;
    assert_eq!(chunks.len(), 60);
    let dest = tempfile::tempdir().unwrap();
    let table_name = db.table("ticks");
    let out = pg2bq(&export_args(&url, dest.path(), &table_name, &[]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = read_manifest(dest.path());
    let table = &manifest.tables[0];
    assert_eq!(table.row_count, 86_400);
    assert_unit_per_chunk(&python, &dest.path().join("r"), table, &chunks, &chunk_figures(&db, &chunks).await);
    let aggregates = |column: &str| &table.columns.iter().find(|c| c.mapping.name == column).unwrap().aggregates;
    let sums = format!("SELECT sum(id)::text || ' ' || sum(price)::text || ' ' || count(price) FROM {table_name}");
    let sums = scalar(&db, &sums).await;
    let sums: Vec<&str> = sums.split(' ').collect();
    assert_eq!(aggregates("id").sum.as_deref(), Some(sums[0]));
    assert_eq!(aggregates("price").sum.as_deref(), Some(minimal_decimal(sums[1]).as_str()));
    assert_eq!((aggregates("price").value_count, aggregates("price").null_count), (sums[2].parse().unwrap(), 86_400 / 11));
    db.drop().await;
}

#[tokio::test]
async fn a_hypertable_with_a_space_dimension_exports_each_chunk_of_each_slice() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let db = TestDb::new(&url, &format!("{EXTENSION}{SPACE}")).await;
    let dimensions = "SELECT string_agg(column_name || ':' || dimension_type || ':' || coalesce(num_partitions::text, '-'), ' ' ORDER BY dimension_number) \
                      FROM timescaledb_information.dimensions WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'";
    assert_eq!(scalar(&db, dimensions).await, "ts:Time:- device:Space:4");
    let chunks = chunks(&db, "readings").await;
    let expected = chunk_figures(&db, &chunks).await;
    // Each weekly slice is cut by device: its chunks hold disjoint devices, all 16 together.
    let mut slices: BTreeMap<i64, Vec<i32>> = BTreeMap::new();
    for chunk in &chunks {
        slices.entry(chunk.start_us).or_default().extend(&expected[&chunk.name].4);
    }
    assert_eq!(slices.len(), 9, "8 weeks from a Monday span 9 slices: TimescaleDB starts them on Thursdays, as 1970-01-01");
    for devices in slices.values_mut() {
        devices.sort();
        assert_eq!(*devices, (0..16).collect::<Vec<i32>>());
    }
    assert!(chunks.len() > 2 * slices.len(), "{} chunks in {} slices", chunks.len(), slices.len());
    let dest = tempfile::tempdir().unwrap();
    let out = pg2bq(&export_args(&url, dest.path(), &db.table("readings"), &[]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = read_manifest(dest.path());
    assert_eq!(manifest.tables[0].row_count, 8 * 1008);
    assert_unit_per_chunk(&python, &dest.path().join("r"), &manifest.tables[0], &chunks, &expected);
    db.drop().await;
}

/// An export of `table` with one worker, its stderr in `dest`/stderr.log, returned once it has
/// recorded `units` units (still running, or the test fails: make the table bigger).
fn export_under_way(args: &[&str], dest: &Path, table: &str, units: usize) -> Child {
    let log = std::fs::File::create(dest.join("stderr.log")).unwrap();
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(args).args(["--jobs", "1"]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let records = records_dir(dest, table);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&records).map_or(0, |d| d.count()) < units {
        assert!(Instant::now() < deadline, "no {units} unit records after 60 s");
        assert!(child.try_wait().unwrap().is_none(), "export ended before {units} units were recorded: {}", stderr_of(dest));
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn stderr_of(dest: &Path) -> String {
    std::fs::read_to_string(dest.join("stderr.log")).unwrap_or_default()
}

/// The child's exit code, or `None` when it still ran at `deadline` (then it is killed).
fn wait_until(child: &mut Child, deadline: Instant) -> Option<i32> {
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// `ticks` over 60 days in daily chunks, each chunk's figures, and a directory for the run.
struct Ticks {
    db: TestDb,
    chunks: Vec<Chunk>,
    expected: BTreeMap<String, Figures>,
    dest: tempfile::TempDir,
    table: String,
}

async fn sixty_days(url: &str) -> Ticks {
    let db = TestDb::new(url, &ticks(60)).await;
    let chunks = chunks(&db, "ticks").await;
    let expected = chunk_figures(&db, &chunks).await;
    let table = db.table("ticks");
    Ticks { db, chunks, expected, dest: tempfile::tempdir().unwrap(), table }
}

/// `drop_chunks` (what a retention policy runs) of a chunk the export has not read yet, started
/// while the export runs. The run's snapshot session holds ACCESS SHARE on every chunk, so the
/// drop waits for the export, and the unit reading that chunk would queue behind the drop for
/// ever; with `--lock-wait` 0 it stops at once naming the drop. The export must either finish
/// with exactly the snapshot's rows (it read the chunk before the drop queued) or stop naming
/// the table and the waiting `drop_chunks`, never losing the chunk's rows silently.
#[tokio::test]
async fn drop_chunks_during_an_export_never_loses_rows_silently_nor_hangs() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let Ticks { db, chunks, expected, dest, table } = sixty_days(&url).await;
    let mut export = export_under_way(&export_args(&url, dest.path(), &table, &[]), dest.path(), &table, 1);
    // Units run in tree order (by name): the last chunk no record names is read last.
    let read: String = unit_records(dest.path(), &table).iter().map(|r| std::fs::read_to_string(r).unwrap()).collect();
    let target = chunks.iter().filter(|c| !read.contains(&c.quoted)).max_by_key(|c| &c.name).unwrap();
    let retention = format!(
        "SELECT count(*) FROM drop_chunks('{table}', older_than => timestamptz 'epoch' + {} * interval '1 microsecond', \
           newer_than => timestamptz 'epoch' + {} * interval '1 microsecond')",
        target.end_us, target.start_us
    );
    let psql = ["-XAtq", "-v", "ON_ERROR_STOP=1", &url, "-c", &retention];
    let drop = Command::new("psql").args(psql).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let exported = wait_until(&mut export, Instant::now() + Duration::from_secs(90));
    let dropped = drop.wait_with_output().unwrap();
    let stderr = stderr_of(dest.path());
    assert!(dropped.status.success(), "drop_chunks: {}", String::from_utf8_lossy(&dropped.stderr));
    assert_eq!(String::from_utf8_lossy(&dropped.stdout).trim(), "1", "the drop ran once the export let go");
    match exported {
        None => panic!("the export hung behind drop_chunks: {stderr}"),
        Some(0) => {
            let manifest = read_manifest(dest.path());
            assert_unit_per_chunk(&python, &dest.path().join("r"), &manifest.tables[0], &chunks, &expected);
        }
        Some(code) => {
            assert_eq!(code, 2, "{stderr}");
            assert!(stderr.contains(&format!("table `{table}`")) && stderr.contains("drop_chunks"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert!(!dest.path().join("r/manifest.json").exists(), "a failed run must not commit");
        }
    }
    let outcome = if exported == Some(0) { "the export finished, then the drop" } else { "the export stopped on the lock" };
    report_line(&format!("drop_chunks of a chunk not read yet during an export: {outcome}"));
    db.drop().await;
}

/// `drop_chunks` committed after the export took its snapshot but before it locked the
/// hypertable: the snapshot's catalog still lists the dropped chunks, the server no longer has them.
/// The export is held on the hypertable's lock while the drop commits, then must refuse by the
/// chunks' names (never read them as empty, never panic).
#[tokio::test]
async fn chunks_dropped_between_the_snapshot_and_the_plan_are_refused_by_name() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let db = TestDb::new(&url, &ticks(10)).await;
    let (table, dest) = (db.table("ticks"), tempfile::tempdir().unwrap());
    let dropped: Vec<String> = chunks(&db, "ticks").await.into_iter().take(2).map(|c| c.name).collect();
    let (retention, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    retention.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await.unwrap();
    let log = std::fs::File::create(dest.path().join("stderr.log")).unwrap();
    let mut export = Command::new(env!("CARGO_BIN_EXE_pg2bq"))
        .args(export_args(&url, dest.path(), &table, &[]))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let waiting = format!("SELECT count(*)::text FROM pg_locks WHERE relation = '{table}'::regclass AND NOT granted");
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&db, &waiting).await == "0" {
        assert!(Instant::now() < deadline && export.try_wait().unwrap().is_none(), "the export never waited: {}", stderr_of(dest.path()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drop = format!("SELECT drop_chunks('{table}', older_than => timestamptz '2024-01-03 00:00:00+00'); COMMIT");
    retention.batch_execute(&drop).await.unwrap();
    let code = wait_until(&mut export, Instant::now() + Duration::from_secs(60));
    let stderr = stderr_of(dest.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for chunk in &dropped {
        assert!(stderr.contains(chunk.as_str()) && stderr.contains("dropped"), "{chunk}: {stderr}");
    }
    assert!(!dest.path().join("r/manifest.json").exists(), "nothing committed");
    db.drop().await;
}

/// Rows inserted during an export, beyond the last chunk (TimescaleDB creates a chunk for them)
/// and into a chunk not read yet, are not in the snapshot: every unit holds exactly what its
/// chunk held when the export started, and the new chunk is no unit.
#[tokio::test]
async fn a_chunk_created_during_an_export_is_not_in_its_snapshot() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let Ticks { db, chunks, expected, dest, table } = sixty_days(&url).await;
    let mut export = export_under_way(&export_args(&url, dest.path(), &table, &[]), dest.path(), &table, 1);
    let later = format!(
        "INSERT INTO {table} SELECT 100000 + g, timestamptz '2024-03-01 00:00:00+00' + g * interval '1 minute', 99, 1 FROM generate_series(1, 1000) g; \
         INSERT INTO {table} SELECT 200000 + g, timestamptz '2024-02-20 12:00:30+00' + g * interval '1 second', 99, 1 FROM generate_series(1, 1000) g;"
    );
    db.client.batch_execute(&later).await.unwrap();
    assert!(export.try_wait().unwrap().is_none(), "the export ended before the rows were inserted; make the table bigger");
    let after = self::chunks(&db, "ticks").await;
    assert_eq!(after.len(), chunks.len() + 1, "the insert created a chunk");
    assert_eq!(wait_until(&mut export, Instant::now() + Duration::from_secs(90)), Some(0), "{}", stderr_of(dest.path()));
    let manifest = read_manifest(dest.path());
    assert_eq!(manifest.tables[0].row_count, 86_400);
    assert_unit_per_chunk(&python, &dest.path().join("r"), &manifest.tables[0], &chunks, &expected);
    db.drop().await;
}

/// Where run `r` in `dest` keeps `table`'s unit records.
fn records_dir(dest: &Path, table: &str) -> PathBuf {
    dest.join(Path::new(&UnitRecord::path("r", table, 0)).parent().unwrap())
}

fn unit_records(dest: &Path, table: &str) -> BTreeSet<PathBuf> {
    std::fs::read_dir(records_dir(dest, table)).unwrap().map(|e| e.unwrap().path()).collect()
}

/// A killed export's chunks change before `--resume`: a chunk added changes the unit count, and
/// is refused with the way out, touching no record; a chunk dropped as well (the count back to
/// 60) is refused where a recorded unit's chunk moved, else resumed with every current chunk
/// exactly once. Either way a rerun without `--resume` exports the chunks as they are.
#[tokio::test]
async fn resume_after_chunks_changed_is_refused_or_exact() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let db = TestDb::new(&url, &ticks(60)).await;
    let (dest, table) = (tempfile::tempdir().unwrap(), db.table("ticks"));
    let args = export_args(&url, dest.path(), &table, &[]);
    let mut killed = export_under_way(&args, dest.path(), &table, 3);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let records = unit_records(dest.path(), &table);
    assert!(!dest.path().join("r/manifest.json").exists());

    let add = format!("INSERT INTO {table} SELECT 100000 + g, timestamptz '2024-03-01 00:00:00+00' + g * interval '1 minute', 99, 1 FROM generate_series(1, 1000) g");
    db.client.batch_execute(&add).await.unwrap();
    let resume: Vec<&str> = [&args[..], &["--resume"]].concat();
    let refused = pg2bq(&resume);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot resume run `r`: table `{table}`, unit ")), "{stderr}");
    assert!(stderr.contains("recorded as one of 60 units, but the new plan cuts the table into 61"), "{stderr}");
    assert!(stderr.contains("rerun without --resume"), "{stderr}");
    assert_eq!(unit_records(dest.path(), &table), records, "a refused resume keeps every record");

    let retention = format!("SELECT drop_chunks('{table}', older_than => timestamptz '2024-01-02 00:00:00+00')");
    db.client.batch_execute(&retention).await.unwrap();
    let chunks = chunks(&db, "ticks").await;
    assert_eq!(chunks.len(), 60);
    let expected = chunk_figures(&db, &chunks).await;
    let resumed = pg2bq(&resume);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    if resumed.status.success() {
        let manifest = read_manifest(dest.path());
        assert!(manifest.mixed_snapshot, "units of two snapshots");
        assert_unit_per_chunk(&python, &dest.path().join("r"), &manifest.tables[0], &chunks, &expected);
        report_line("resume after a chunk was dropped and one added: resumed (no recorded unit moved)");
        return db.drop().await;
    }
    assert_eq!(resumed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("recorded with the query") && stderr.contains("rerun without --resume"), "{stderr}");
    assert_eq!(unit_records(dest.path(), &table), records);
    report_line("resume after a chunk was dropped and one added: refused (a recorded unit's chunk moved)");
    let rerun = pg2bq(&args);
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    let manifest = read_manifest(dest.path());
    assert!(!manifest.mixed_snapshot);
    assert_unit_per_chunk(&python, &dest.path().join("r"), &manifest.tables[0], &chunks, &expected);
    db.drop().await;
}

/// The sample app with `events` as a hypertable, as the demo runs it: exported chunk by chunk
/// to fake-gcs, loaded and validated on the BigQuery emulator, every check run (none skipped).
#[tokio::test]
async fn the_sample_s_events_hypertable_loads_and_validates_clean() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let s = crate::support::Emulators { pg_url: url, ..emulators!() };
    let db = TestDb::new(&s.pg_url, EXTENSION).await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.1"]);
    let chunks = chunks(&db, "events").await;
    assert!(chunks.len() >= 3, "2,000 events 13 minutes apart: 18 days in weekly chunks, {chunks:?}");
    let manifest_uri = s.export(&[db.table("entities"), db.table("events"), db.table("entity_mentions")], &[]);
    let out = s.load(&manifest_uri, &[]);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.count(&format!("{}__events", db.schema)).await, 2_000);
    let (code, report, stderr) = s.validate(&manifest_uri, &["--source", &s.pg_url]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert!(failed_checks(&report).is_empty(), "{report:#}");
    // The foreign key to the hypertable is one orphan check against events, not one per chunk
    // (TimescaleDB copies it onto every chunk) skipped as "not in this run".
    assert_eq!(report["skipped"], 0, "{report:#}");
    let orphans: Vec<&serde_json::Value> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["checks"].as_array().unwrap())
        .filter(|c| c["check"] == "orphans")
        .collect();
    assert_eq!(orphans.len(), 2, "entity_id and (event_id, mentioned_at): {orphans:#?}");
    assert!(orphans.iter().all(|c| c["status"] == "pass"), "{orphans:#?}");
    db.drop().await;
}

/// A compressed chunk's heap holds only part of its rows: it is read through the hypertable by
/// its range. Compression is not in the Apache-2.0 part scripts/test.sh builds
/// (`timescaledb.license = 'apache'`), so this runs only against a server with the Timescale
/// License build, and is skipped otherwise (also under `PG2BQ_TEST_STRICT`: nothing failed to start).
#[tokio::test]
async fn compressed_chunks_are_read_through_the_hypertable() {
    let url = skip_unless!("PG2BQ_TEST_TIMESCALEDB_URL");
    let db = TestDb::new(&url, EXTENSION).await;
    if scalar(&db, "SELECT current_setting('timescaledb.license')").await == "apache" {
        eprintln!("skipped: compression needs TimescaleDB's Timescale License build; this server runs the Apache-2.0 part");
        return db.drop().await;
    }
    db.client.batch_execute(COMPRESSED).await.unwrap();
    let dest = tempfile::tempdir().unwrap();
    let out = pg2bq(&export_args(&url, dest.path(), &db.table("ticks"), &[]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = &read_manifest(dest.path()).tables[0];
    assert_eq!(table.row_count, 60_000);
    let methods: Vec<&str> = table.partitions.iter().map(|p| p.method.as_str()).collect();
    assert_eq!(methods.iter().filter(|m| **m == "chunk_range").count(), 1, "{methods:?}");
    assert!(methods.iter().filter(|m| **m == "child").count() >= 1, "{methods:?}");
    assert_eq!(table.partitions.iter().map(|p| p.rows).sum::<u64>(), 60_000);
    let pg_sum = scalar(&db, &format!("SELECT sum(id)::text FROM {}", db.table("ticks"))).await;
    assert_eq!(table.columns[0].aggregates.sum.as_deref(), Some(pg_sum.as_str()));
    db.drop().await;
}
