//! Tails that see changes: an UPDATE, a DELETE and a late INSERT below the watermark keep the
//! count of the rows there, so a count alone passes them (exit 0, a tail that misses them).
//! Every run records its rows' hashes; a tail whose earlier rows differ is refused, naming the
//! keys updated, deleted and inserted late, for single and composite keys, along a chain. With
//! `--carry-changes` the tail carries them, `load --mode merge --overwrite-existing
//! --apply-deletes` applies them, and BigQuery's table equals Postgres' now.

use serde_json::Value;

use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

/// 100 events, ids 1–100, one hour apart from 2024-01-01.
const EVENTS: &str = "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, note text);
    INSERT INTO events SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'row ' || i
      FROM generate_series(1, 100) i;";

/// A run of `table` to a local directory: its exit code, stderr and (committed) manifest.
struct Runs {
    url: String,
    dest: tempfile::TempDir,
    table: String,
}

impl Runs {
    fn export(&self, run_id: &str, since: Option<&str>) -> (Option<i32>, String) {
        let dest = self.dest.path().to_str().unwrap();
        let mut args =
            vec!["export", "--source", &self.url, "--dest", dest, "--run-id", run_id, "--progress", "off", "--table", &self.table];
        let manifest = since.map(|run| format!("{dest}/{run}/manifest.json"));
        if let Some(manifest) = &manifest {
            args.extend(["--since", manifest, "--watermark", "created_at"]);
        }
        let out = pg2bq(&args);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn manifest(&self, run_id: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.dest.path().join(run_id).join("manifest.json")).unwrap()).unwrap()
    }

    /// A tail of `parent` that must be refused; its stderr.
    fn refused(&self, run_id: &str, parent: &str) -> String {
        let (code, stderr) = self.export(run_id, Some(parent));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(!self.dest.path().join(run_id).join("manifest.json").exists(), "nothing committed");
        stderr
    }

    fn accepted(&self, run_id: &str, parent: &str) -> Value {
        let (code, stderr) = self.export(run_id, Some(parent));
        assert_eq!(code, Some(0), "{stderr}");
        self.manifest(run_id)
    }
}

#[tokio::test]
async fn an_update_a_delete_and_a_late_insert_below_the_watermark_are_each_refused_by_key() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, EVENTS).await;
    let table = db.table("events");
    let runs = Runs { url, dest: tempfile::tempdir().unwrap(), table: table.clone() };
    let (code, stderr) = runs.export("backfill", None);
    assert_eq!(code, Some(0), "{stderr}");
    let hashes = &runs.manifest("backfill")["tables"][0]["row_hashes"];
    assert_eq!(
        (hashes["file"]["path"].as_str(), hashes["file"]["rows"].as_u64()),
        (Some(&*format!("{table}/_rowhash/rows.pq")), Some(100))
    );
    assert_eq!((&hashes["method"], &hashes["columns"]), (&serde_json::json!("record"), &serde_json::json!(["id", "created_at", "note"])));
    let sql = |statement: String| {
        let client = &db.client;
        async move { client.batch_execute(&statement).await.unwrap() }
    };

    // Each change alone keeps the 100 rows below the watermark, and is named.
    sql(format!("UPDATE {table} SET note = 'changed' WHERE id = 5")).await;
    let stderr = runs.refused("t1", "backfill");
    assert!(stderr.contains("100 rows are at or below the watermark `created_at` of run `backfill`"), "{stderr}");
    assert!(stderr.contains(r#"since run `backfill`, by key: 1 updated ({"id" : 5})."#), "{stderr}");
    assert!(stderr.contains("--mode merge --overwrite-existing"), "{stderr}");
    // Put back, the rows are those of the backfill again: nothing to refuse.
    sql(format!("UPDATE {table} SET note = 'row 5' WHERE id = 5")).await;
    assert_eq!(runs.accepted("t2", "backfill")["tables"][0]["row_count"], 0);

    sql(format!("DELETE FROM {table} WHERE id = 7; INSERT INTO {table} VALUES (1000, timestamptz '2024-01-01 00:30:00+00', 'late')")).await;
    let stderr = runs.refused("t3", "t2");
    assert!(stderr.contains(r#"by key: 1 deleted ({"id" : 7}); 1 inserted late ({"id" : 1000})."#), "{stderr}");
    sql(format!("DELETE FROM {table} WHERE id = 1000")).await;
    let stderr = runs.refused("t4", "t2");
    assert!(stderr.contains("99 rows are at or below") && stderr.contains(r#"by key: 1 deleted ({"id" : 7})."#), "{stderr}");
    sql(format!("INSERT INTO {table} VALUES (7, timestamptz '2024-01-01 07:00:00+00', 'row 7')")).await;

    // New rows go to a tail; a change to one of them is seen by the next tail (the chain's hashes).
    sql(format!(
        "INSERT INTO {table} SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'row ' || i FROM generate_series(101, 110) i"
    ))
    .await;
    let tail = runs.accepted("t5", "t2");
    assert_eq!((tail["tables"][0]["row_count"].as_u64(), tail["tables"][0]["row_hashes"]["file"]["rows"].as_u64()), (Some(10), Some(110)));
    sql(format!("UPDATE {table} SET note = NULL WHERE id IN (3, 105); UPDATE {table} SET created_at = created_at - interval '1 second' WHERE id = 50")).await;
    let stderr = runs.refused("t6", "t5");
    assert!(stderr.contains(r#"by key: 3 updated ({"id" : 105}, {"id" : 3}, {"id" : 50})."#), "{stderr}");
    db.drop().await;
}

#[tokio::test]
async fn changes_to_a_table_with_a_composite_text_key_are_named_by_their_whole_key() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(
        &url,
        "CREATE TABLE readings (site text, n int, created_at timestamptz NOT NULL, value double precision, PRIMARY KEY (site, n));
         INSERT INTO readings SELECT s, n, timestamptz '2024-01-01 00:00:00+00' + n * interval '1 minute', n / 3.0
           FROM unnest(ARRAY['north', 'south', 'o''hare']) s, generate_series(1, 400) n;",
    )
    .await;
    let table = db.table("readings");
    let runs = Runs { url, dest: tempfile::tempdir().unwrap(), table: table.clone() };
    let (code, stderr) = runs.export("backfill", None);
    assert_eq!(code, Some(0), "{stderr}");
    db.client
        .batch_execute(&format!(
            "UPDATE {table} SET value = 0 WHERE site = 'o''hare' AND n = 17;
             DELETE FROM {table} WHERE site = 'south' AND n IN (1, 2);
             INSERT INTO {table} VALUES ('east', 3, timestamptz '2024-01-01 00:00:00+00', 1)"
        ))
        .await
        .unwrap();
    let stderr = runs.refused("t1", "backfill");
    assert!(stderr.contains("1199 rows are at or below the watermark `created_at`") && stderr.contains("hold 1200"), "{stderr}");
    assert!(
        stderr.contains(
            r#"by key: 1 updated ({"site" : "o'hare", "n" : 17}); 2 deleted ({"site" : "south", "n" : 1}, {"site" : "south", "n" : 2}); 1 inserted late ({"site" : "east", "n" : 3})."#
        ),
        "{stderr}"
    );
    db.drop().await;
}

/// A chain of tails on fake-gcs, loaded into the BigQuery emulator.
struct Chain<'a> {
    s: &'a Emulators,
    dest: String,
    table: String,
    watermark: &'a str,
}

impl Chain<'_> {
    fn export(&self, run_id: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["export", "--source", &self.s.pg_url, "--dest", &self.dest, "--run-id", run_id, "--progress", "off"];
        args.extend(["--table", &self.table]);
        args.extend_from_slice(extra);
        pg2bq(&args)
    }

    fn manifest(&self, run_id: &str) -> String {
        format!("{}/{run_id}/manifest.json", self.dest)
    }

    /// A committed tail of `parent` carrying its changes: its manifest's table entry.
    async fn carried(&self, run_id: &str, parent: &str) -> Value {
        let since = self.manifest(parent);
        let out = self.export(run_id, &["--since", &since, "--watermark", self.watermark, "--carry-changes"]);
        assert!(out.status.success(), "export {run_id}: {}", String::from_utf8_lossy(&out.stderr));
        let body = self.s.download(self.s.object_name(&self.manifest(run_id))).await;
        serde_json::from_slice::<Value>(&body).unwrap()["tables"][0].clone()
    }

    /// `load --mode merge` of `run_id` with `extra` flags: exit code, stdout, stderr.
    fn merge(&self, run_id: &str, extra: &[&str], bq_host: &str) -> (Option<i32>, String, String) {
        let mut flags = vec!["--mode", "merge"];
        flags.extend_from_slice(extra);
        let out = self.s.load_command(&self.manifest(run_id), &flags).env("BIGQUERY_EMULATOR_HOST", bq_host).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The merge that applies a carried tail (through `bq_host`): its report's table.
    fn apply(&self, run_id: &str, bq_host: &str) -> Value {
        let (code, stdout, stderr) = self.merge(run_id, &["--overwrite-existing", "--apply-deletes", "--json"], bq_host);
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()["tables"][0].clone()
    }

    /// validate of `run_id` against Postgres now (`--source`, a sample as large as the table):
    /// it passes, and its `deleted_keys` check.
    fn validate_against_postgres(&self, run_id: &str) -> Option<Value> {
        let (code, report, stderr) = self.s.validate(&self.manifest(run_id), &["--source", &self.s.pg_url, "--sample", "10000"]);
        assert_eq!(code, Some(0), "{stderr}\n{report:#}");
        assert!(failed_checks(&report).is_empty(), "{report:#}");
        let checks = report["tables"][0]["checks"].as_array().unwrap();
        checks.iter().find(|c| c["check"] == "deleted_keys").cloned()
    }
}

/// `select` (BigQuery) of the table, ordered, equals `pg_select` of the Postgres table now.
async fn same_rows(s: &Emulators, db: &TestDb, bq_table: &str, (select, pg_select): (&str, &str), order: &str) {
    let bq = s.python_rows(&format!("SELECT {select} FROM `{}.{}.{bq_table}` ORDER BY {order}", s.project, s.dataset));
    let sql = format!("SELECT {pg_select} FROM {} ORDER BY {order}", db.table(bq_table.rsplit("__").next().unwrap()));
    let rows = db.client.query(&sql, &[]).await.unwrap();
    let pg: Vec<Vec<Option<String>>> = rows.iter().map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect()).collect();
    assert_eq!(bq, pg, "BigQuery's `{bq_table}` holds Postgres' rows now");
}

/// An UPDATE, a DELETE and a late INSERT below the watermark, and new rows above it: refused
/// by name, then carried (`--carry-changes`), merged through the fault proxy with
/// `--overwrite-existing --apply-deletes` (refused without either), and validated against
/// Postgres now; the next tail of the chain carries the next changes the same way.
#[tokio::test]
async fn changes_below_the_watermark_are_carried_merged_with_their_deletes_and_validate_against_postgres_now() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, EVENTS).await;
    let table = db.table("events");
    let chain = Chain {
        s: &s,
        dest: format!("gs://{}/carry-{:08x}", s.bucket, rand::random::<u32>()),
        table: table.clone(),
        watermark: "created_at",
    };
    assert!(chain.export("backfill", &[]).status.success());
    let bq_table = format!("{}__events", db.schema);
    let out = s.load(&chain.manifest("backfill"), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    db.client
        .batch_execute(&format!(
            "UPDATE {table} SET note = 'changed' WHERE id = 5; DELETE FROM {table} WHERE id = 7;
             INSERT INTO {table} VALUES (1000, timestamptz '2024-01-01 00:30:00+00', 'late');
             INSERT INTO {table} SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'row ' || i FROM generate_series(101, 110) i"
        ))
        .await
        .unwrap();
    let since = chain.manifest("backfill");
    let out = chain.export("t1", &["--since", &since, "--watermark", "created_at"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"by key: 1 updated ({"id" : 5}); 1 deleted ({"id" : 7}); 1 inserted late ({"id" : 1000})."#), "{stderr}");
    assert!(stderr.contains("carry them into the tail with --carry-changes"), "{stderr}");

    // Carried: the 10 new rows, the updated one and the late one; the deleted key in its file.
    let planned = chain.export("t1", &["--since", &since, "--watermark", "created_at", "--carry-changes", "--dry-run"]);
    let plan = String::from_utf8_lossy(&planned.stdout);
    assert!(
        plan.contains(r#"OR ('{"id" : ' || COALESCE(to_json("id")::text, 'null') || '}') = ANY(ARRAY['{"id" : 1000}', '{"id" : 5}']::text[]) (the 100 rows at or below it checked: carrying 1 updated and 1 inserted late by key, 1 deleted to _deleted/keys.parquet)"#),
        "{plan}"
    );
    let t1 = chain.carried("t1", "backfill").await;
    assert_eq!(t1["row_count"], 12);
    assert_eq!(t1["tail"]["carried"], serde_json::json!({ "keys": [r#"{"id" : 1000}"#, r#"{"id" : 5}"#], "updated": 1, "deleted": 1 }));
    assert_eq!((t1["tail"]["rows_through"].as_u64(), t1["row_hashes"]["file"]["rows"].as_u64()), (Some(100), Some(110)));
    let deleted = &t1["deleted_keys"];
    assert_eq!((deleted["path"].as_str(), deleted["rows"].as_u64()), (Some(&*format!("{table}/_deleted/keys.parquet")), Some(1)));
    let keys = s.download(&format!("{}/t1/{table}/_deleted/keys.parquet", s.object_name(&chain.dest))).await;
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(keys))
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(canonical(batches[0].column(0), 0).as_deref(), Some(r#"{"id" : 7}"#));
    let verify = pg2bq(&["verify", "--manifest", &chain.manifest("t1")]);
    assert!(verify.status.success(), "verify checks the deleted keys' file: {}", String::from_utf8_lossy(&verify.stdout));

    // Without either flag the merge is refused before any job; --dry-run says what it deletes.
    let (code, _, stderr) = chain.merge("t1", &["--overwrite-existing"], &s.bq_host);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "table `{table}` is a tail of run `backfill` that carried changes; nothing was loaded: it carries the keys of 1 row(s) \
             deleted in Postgres since run `backfill` ({table}/_deleted/keys.parquet): add --apply-deletes"
        )),
        "{stderr}"
    );
    let (code, _, stderr) = chain.merge("t1", &["--apply-deletes"], &s.bq_host);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("it carries 1 row(s) updated in Postgres since run `backfill`, which the table holds with their old values: add --overwrite-existing"), "{stderr}");
    assert_eq!(s.count(&bq_table).await, 100, "nothing was loaded");
    let (code, plan, stderr) = chain.merge("t1", &["--overwrite-existing", "--apply-deletes", "--dry-run"], &s.bq_host);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        plan.contains(&format!(
            "deletes 1 row(s) by key (id) from `{}.{bq_table}`, those deleted in Postgres since run `backfill` (--apply-deletes); then inserts",
            s.dataset
        )),
        "{plan}"
    );

    // Applied through failing, paged and unfinished BigQuery answers: exact counts.
    proxy.set(crate::faults::failing_bigquery(3)).await;
    let report = chain.apply("t1", &proxy.bq_host);
    proxy.set(serde_json::json!({})).await;
    assert_eq!(report["merged"], serde_json::json!({ "inserted": 11, "already_present": 1, "updated": 1 }));
    assert_eq!((report["deleted"]["keys"].as_u64(), report["deleted"]["rows"].as_u64()), (Some(1), Some(1)));
    let columns = (
        "CAST(id AS STRING), note, CAST(UNIX_MICROS(created_at) AS STRING)",
        "id::text, note, (extract(epoch FROM created_at) * 1000000)::int8::text",
    );
    same_rows(&s, &db, &bq_table, columns, "1").await;
    let check = chain.validate_against_postgres("t1").expect("a deleted_keys check");
    assert_eq!((check["status"].as_str(), check["expected"].as_str(), check["actual"].as_str()), (Some("pass"), Some("0"), Some("0")));

    // The next tail: a change to a carried row, to a tail row and to a backfill row; a delete of
    // a backfill row; new rows. Its parent's row hashes are the whole table after t1.
    db.client
        .batch_execute(&format!(
            "UPDATE {table} SET note = 'again' WHERE id IN (5, 105, 3); DELETE FROM {table} WHERE id = 8;
             INSERT INTO {table} SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'row ' || i FROM generate_series(111, 115) i"
        ))
        .await
        .unwrap();
    let t2 = chain.carried("t2", "t1").await;
    assert_eq!((t2["row_count"].as_u64(), t2["tail"]["rows_through"].as_u64()), (Some(8), Some(110)));
    assert_eq!(
        t2["tail"]["carried"],
        serde_json::json!({ "keys": [r#"{"id" : 105}"#, r#"{"id" : 3}"#, r#"{"id" : 5}"#], "updated": 3, "deleted": 1 })
    );
    let report = chain.apply("t2", &s.bq_host);
    assert_eq!(report["merged"], serde_json::json!({ "inserted": 5, "already_present": 3, "updated": 3 }));
    assert_eq!(report["deleted"]["rows"], 1);
    same_rows(&s, &db, &bq_table, columns, "1").await;
    assert!(chain.validate_against_postgres("t2").is_some());
    // Nothing changed since: the next tail is empty and carries nothing.
    let t3 = chain.carried("t3", "t2").await;
    assert_eq!((t3["row_count"].as_u64(), t3["tail"]["rows_through"].as_u64(), t3["tail"].get("carried")), (Some(0), Some(114), None));
    // A delete alone: a tail of no rows whose merge only deletes, and validates.
    db.client.batch_execute(&format!("DELETE FROM {table} WHERE id = 9")).await.unwrap();
    let t4 = chain.carried("t4", "t3").await;
    assert_eq!((t4["row_count"].as_u64(), t4["deleted_keys"]["rows"].as_u64()), (Some(0), Some(1)));
    let report = chain.apply("t4", &s.bq_host);
    assert_eq!((report.get("merged"), report["deleted"]["rows"].as_u64()), (None, Some(1)));
    same_rows(&s, &db, &bq_table, columns, "1").await;
    assert!(chain.validate_against_postgres("t4").is_some());
    db.drop().await;
}

/// A composite text key (with a quote): an update, two deletes and a late insert are carried,
/// merged and deleted by their whole key, and the table equals Postgres' after.
#[tokio::test]
async fn a_composite_key_is_carried_and_deleted_by_its_whole_key() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE readings (site text, n int, created_at timestamptz NOT NULL, value double precision, PRIMARY KEY (site, n));
         INSERT INTO readings SELECT s, n, timestamptz '2024-01-01 00:00:00+00' + n * interval '1 minute', n / 4.0
           FROM unnest(ARRAY['north', 'south', 'o''hare']) s, generate_series(1, 100) n;",
    )
    .await;
    let table = db.table("readings");
    let chain = Chain {
        s: &s,
        dest: format!("gs://{}/carry-{:08x}", s.bucket, rand::random::<u32>()),
        table: table.clone(),
        watermark: "created_at",
    };
    assert!(chain.export("backfill", &[]).status.success());
    let out = s.load(&chain.manifest("backfill"), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    db.client
        .batch_execute(&format!(
            "UPDATE {table} SET value = 0 WHERE site = 'o''hare' AND n = 17;
             DELETE FROM {table} WHERE site = 'south' AND n IN (1, 2);
             INSERT INTO {table} VALUES ('east', 3, timestamptz '2024-01-01 00:00:00+00', 1)"
        ))
        .await
        .unwrap();
    let t1 = chain.carried("t1", "backfill").await;
    assert_eq!((t1["row_count"].as_u64(), t1["deleted_keys"]["rows"].as_u64()), (Some(2), Some(2)));
    let report = chain.apply("t1", &s.bq_host);
    assert_eq!(report["merged"], serde_json::json!({ "inserted": 1, "already_present": 1, "updated": 1 }));
    assert_eq!((report["deleted"]["keys"].as_u64(), report["deleted"]["rows"].as_u64()), (Some(2), Some(2)));
    let bq_table = format!("{}__readings", db.schema);
    same_rows(
        &s,
        &db,
        &bq_table,
        ("site, CAST(n AS STRING), CAST(CAST(value * 4 AS INT64) AS STRING)", "site, n::text, (value * 4)::int8::text"),
        "1, 2",
    )
    .await;
    let check = chain.validate_against_postgres("t1").expect("a deleted_keys check");
    assert_eq!(check["status"], "pass");
    db.drop().await;
}

/// `--updated-at`: the check hashes only the rows the app stamped since the parent's snapshot
/// and counts the others. An UPDATE and a late INSERT (both stamped) are named as without it;
/// a DELETE shows in the count, and then every row is hashed to name it. An UPDATE the app did
/// not stamp is not seen: the column is the app's promise (without the flag it is refused).
#[tokio::test]
async fn updated_at_narrows_the_check_to_the_rows_stamped_since_the_parents_snapshot() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(
        &url,
        "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, note text, updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO events (id, created_at, note) SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'row ' || i
           FROM generate_series(1, 100) i;
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$;
         CREATE TRIGGER stamp BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION stamp();",
    )
    .await;
    let table = db.table("events");
    let runs = Runs { url, dest: tempfile::tempdir().unwrap(), table: table.clone() };
    assert_eq!(runs.export("backfill", None).0, Some(0));
    assert!(runs.manifest("backfill")["source"]["changes_since"].as_i64().is_some());
    let dest = runs.dest.path().to_str().unwrap().to_string();
    let narrowed = |run_id: &str, parent: &str| {
        let since = format!("{dest}/{parent}/manifest.json");
        let args = ["export", "--source", &runs.url, "--dest", &dest, "--run-id", run_id, "--progress", "off", "--table", &table];
        let out = pg2bq(&[&args[..], &["--since", &since, "--watermark", "created_at", "--updated-at", "updated_at"]].concat());
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let sql = |statement: String| {
        let client = &db.client;
        async move { client.batch_execute(&statement).await.unwrap() }
    };

    sql(format!("UPDATE {table} SET note = 'changed' WHERE id = 5; INSERT INTO {table} (id, created_at, note) VALUES (1000, timestamptz '2024-01-01 00:30:00+00', 'late')")).await;
    let (code, stderr) = narrowed("t1", "backfill");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(r#"by key: 1 updated ({"id" : 5}); 1 inserted late ({"id" : 1000})."#), "{stderr}");
    assert!(!stderr.contains("checking every row's hash"), "{stderr}");
    sql(format!("DELETE FROM {table} WHERE id IN (7, 1000)")).await;
    let (code, stderr) = narrowed("t2", "backfill");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("Rows deleted below the watermark: checking every row's hash"), "{stderr}");
    assert!(stderr.contains(r#"by key: 1 updated ({"id" : 5}); 1 deleted ({"id" : 7})."#), "{stderr}");

    // From a new backfill of the rows as they are, one change the app did not stamp.
    assert_eq!(runs.export("again", None).0, Some(0));
    sql(format!("ALTER TABLE {table} DISABLE TRIGGER stamp; UPDATE {table} SET note = 'unstamped' WHERE id = 9")).await;
    let (code, stderr) = narrowed("t3", "again");
    assert_eq!(code, Some(0), "the unstamped change is not seen: {stderr}");
    assert_eq!(runs.manifest("t3")["tables"][0]["row_count"], 0);
    let stderr = runs.refused("t4", "again");
    assert!(stderr.contains(r#"by key: 1 updated ({"id" : 9})."#), "without --updated-at every row is hashed: {stderr}");
    db.drop().await;
}

/// The key text that row hashes, set-aside rows and carried keys are matched by is, byte for
/// byte, what `json_build_object(..)::text` prints (what runs before it recorded), for keys of
/// every kind: odd names, NULLs, extreme and special values, text needing JSON escapes.
#[tokio::test]
async fn the_key_text_is_what_json_build_object_prints() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(
        &url,
        r#"CREATE TABLE keys (id bigint, "o'k ""q""" text, "a\b" numeric, at timestamptz, flag boolean, d date, u uuid,
             "tab	é" text, f float8, j jsonb, ts timestamp);
           INSERT INTO keys VALUES
             (1, 'plain', 1.50, '2024-01-01 00:00:00.123456+00', true, '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
              E'line\nbreak\ttab "q" \\ \u0001 \u007f é ''', 0.1, '{"b": [1, "x"]}', '1999-12-31 23:59:59'),
             (-9223372036854775808, NULL, 'NaN', 'infinity', false, '-infinity', NULL, '', 'NaN', 'null', NULL),
             (9223372036854775807, '', -0.000001, '0001-01-01 00:00:00+00', NULL, NULL, NULL, NULL, '-Infinity', NULL, NULL);"#,
    )
    .await;
    let columns: Vec<String> = ["id", "o'k \"q\"", "a\\b", "at", "flag", "d", "u", "tab\té", "f", "j", "ts"].map(String::from).to_vec();
    let ours = pg2bq::model::tail::key_json(&columns).unwrap();
    let pairs: Vec<String> =
        columns.iter().map(|c| format!("'{}', {}", c.replace('\'', "''"), pg2bq::model::types::quote_ident(c))).collect();
    let reference = format!("json_build_object({})::text", pairs.join(", "));
    let sql = format!("SELECT {ours}, {reference} FROM {} ORDER BY id", db.table("keys"));
    let rows = db.client.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(rows.len(), 3);
    for row in rows {
        let (ours, reference): (String, String) = (row.get(0), row.get(1));
        assert_eq!(ours, reference);
    }
    db.drop().await;
}
