//! Tails that see changes: an UPDATE, a DELETE and a late INSERT below the watermark keep the
//! count of the rows there, so a count alone passes them (exit 0, a tail that misses them).
//! Every run records its rows' hashes; a tail whose earlier rows differ is refused, naming the
//! keys updated, deleted and inserted late, for single and composite keys, along a chain.

use serde_json::Value;

use crate::skip_unless;
use crate::support::*;

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
