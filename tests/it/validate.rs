//! `pg2bq validate` and `pg2bq verify`: zero false positives on clean runs, and every kind of
//! corruption caught and pinned to its column (BigQuery) or file (snapshot).

use std::process::Command;

use crate::support::*;
use crate::{emulators, skip_unless};

impl Emulators {
    /// Exports `tables` in 2 partitions and loads them; returns the manifest URI.
    fn export_and_load(&self, tables: &[String], export_extra: &[&str]) -> String {
        let mut extra = vec!["--partitions", "2"];
        extra.extend_from_slice(export_extra);
        let manifest = self.export(tables, &extra);
        let out = self.load(&manifest, &[]);
        assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
        manifest
    }

    /// Runs SQL on the emulator (DML to corrupt a table).
    fn sql(&self, sql: &str) {
        self.python_rows(sql);
    }

    fn table(&self, name: &str) -> String {
        format!("`{}.{}.{name}`", self.project, self.dataset)
    }
}

#[tokio::test]
async fn clean_runs_pass_every_check_on_the_type_matrix_and_the_sample() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, include_str!("../fixtures/type_matrix.sql")).await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.02"]);
    // See load.rs: the emulator cannot hold these as BIGNUMERIC / JSON.
    let casts = [
        "--cast",
        "type_matrix.c_numeric=text",
        "--cast",
        "type_matrix.c_numeric_58_20=text",
        "--cast",
        "type_matrix.c_json=text",
        "--cast",
        "type_matrix.c_jsonb=text",
    ];
    let tables = [db.table("type_matrix"), db.table("entities"), db.table("events"), db.table("entity_mentions")];
    let manifest = s.export_and_load(&tables, &casts);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[[denormalized]]\ntable = '{0}.entity_mentions'\ncolumn = 'mentioned_at'\nvia = 'event_id'\nreferences = '{0}.events.mentioned_at'\n\n\
             [[probes]]\nname = 'recent events'\nsql = \"SELECT COUNT(*) FROM `{{project}}.{{dataset}}.{0}__events` WHERE mentioned_at > TIMESTAMP '2024-03-01'\"\nmax_seconds = 30\n",
            db.schema
        ),
    )
    .unwrap();
    let (code, report, stderr) =
        s.validate(&manifest, &["--source", &s.pg_url, "--sample", "5", "--config", config.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["passed"], true);
    let checks: Vec<&serde_json::Value> =
        report["tables"].as_array().unwrap().iter().flat_map(|t| t["checks"].as_array().unwrap()).collect();
    for kind in [
        "row_count",
        "null_count",
        "min",
        "max",
        "sum",
        "fingerprint_xor",
        "fingerprint_sum",
        "orphans",
        "denormalized",
        "required",
        "sample",
        "source_drift",
    ] {
        assert!(checks.iter().any(|c| c["check"] == kind), "no `{kind}` check ran:\n{stderr}");
    }
    assert_eq!(report["probes"][0]["passed"], true, "{stderr}");
    // Every type's canonical form agrees between Arrow and BigQuery SQL, row by row.
    for table in report["tables"].as_array().unwrap() {
        let rows: Vec<&serde_json::Value> =
            table["checks"].as_array().unwrap().iter().filter(|c| c["check"] == "row_fingerprint").collect();
        assert_eq!(rows.len(), 1, "{table:#}");
        assert_eq!(rows[0]["status"], "pass", "{table:#}");
    }
    db.drop().await;
}

/// A table with one column of each kind the corruptions touch. (No column may be named `s`:
/// the emulator's PARSE_JSON macro captures it; see docs/load.md.)
const CORRUPTIBLE: &str =
    "CREATE TABLE c (id int PRIMARY KEY, n numeric(12,3), label text, ts timestamptz, j jsonb, arr int[], b bytea, f float8);
    INSERT INTO c SELECT i, i * 1.125, 'value ' || i, '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 minute',
      jsonb_build_object('i', i), ARRAY[i, i + 1, i + 2], decode(md5(i::text), 'hex'), i / 3.0 FROM generate_series(1, 40) i;";

async fn corrupt_and_validate(s: &Emulators, corruption: impl Fn(&Emulators, &str)) -> (Vec<(String, String)>, serde_json::Value) {
    let db = TestDb::new(&s.pg_url, CORRUPTIBLE).await;
    let manifest = s.export_and_load(&[db.table("c")], &[]);
    let (code, _, stderr) = s.validate(&manifest, &[]);
    assert_eq!(code, Some(0), "clean before corruption: {stderr}");
    // Emulator corruptions that rebuild the table drop its labels; labels are not data, so
    // they are put back (validate reads JSON fingerprints from them).
    let bq = s.bigquery().await;
    let table = format!("{}__c", db.schema);
    let labels = bq.table(&s.dataset, &table).await.unwrap().unwrap()["labels"].clone();
    corruption(s, &s.table(&table));
    let labels: Vec<(String, String)> =
        labels.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
    bq.set_labels(&s.dataset, &table, &labels).await.unwrap();
    let (code, report, stderr) = s.validate(&manifest, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    db.drop().await;
    (failed_checks(&report), report)
}

fn columns(failures: &[(String, String)]) -> std::collections::BTreeSet<String> {
    failures.iter().map(|(_, column)| column.clone()).collect()
}

macro_rules! corruption_test {
    ($name:ident, $sql:expr, $columns:expr) => {
        #[tokio::test]
        async fn $name() {
            let s = emulators!();
            let (failed, report) = corrupt_and_validate(&s, |s, t| {
                for statement in $sql(t) {
                    s.sql(&statement);
                }
            })
            .await;
            let expected: std::collections::BTreeSet<String> = $columns.iter().map(|c: &&str| c.to_string()).collect();
            assert_eq!(columns(&failed), expected, "failed checks {failed:?}\n{report:#}");
        }
    };
}

corruption_test!(
    a_deleted_row_fails_the_row_count,
    |t| vec![format!("DELETE FROM {t} WHERE id = 7")],
    ["-", "id", "n", "label", "ts", "j", "arr", "b", "f"]
);
corruption_test!(
    a_duplicated_row_fails_the_row_count,
    |t| vec![format!("INSERT INTO {t} SELECT * FROM {t} WHERE id = 7")],
    ["-", "id", "n", "label", "ts", "j", "arr", "b", "f"]
);
corruption_test!(a_changed_cell_names_its_column, |t| vec![format!("UPDATE {t} SET label = 'changed' WHERE id = 3")], ["-", "label"]);
corruption_test!(a_nulled_value_names_its_column, |t| vec![format!("UPDATE {t} SET n = NULL WHERE id = 4")], ["-", "n"]);
corruption_test!(
    a_timestamp_shifted_by_an_hour_names_its_column,
    |t| vec![format!("UPDATE {t} SET ts = TIMESTAMP_ADD(ts, INTERVAL 1 HOUR) WHERE id = 5")],
    ["-", "ts"]
);
corruption_test!(
    a_numeric_rounded_in_its_last_digit_names_its_column,
    |t| vec![format!("UPDATE {t} SET n = ROUND(n, 2) WHERE id = 7")],
    ["-", "n"]
);
corruption_test!(
    a_string_truncated_by_one_character_names_its_column,
    |t| vec![format!("UPDATE {t} SET label = SUBSTR(label, 1, LENGTH(label) - 1) WHERE id = 8")],
    ["-", "label"]
);
corruption_test!(
    a_flipped_byte_names_its_column,
    |t| vec![format!("UPDATE {t} SET b = FROM_HEX(CONCAT('00', SUBSTR(TO_HEX(b), 3))) WHERE id = 11 AND SUBSTR(TO_HEX(b), 1, 2) != '00'")],
    ["-", "b"]
);
corruption_test!(
    a_changed_json_value_names_its_column,
    |t: &str| {
        let backup = format!("{}_backup`", t.trim_end_matches('`'));
        vec![
            format!("CREATE TABLE {backup} AS SELECT * FROM {t}"),
            format!("CREATE OR REPLACE TABLE {t} AS SELECT * REPLACE (IF(id = 9, JSON '{{\"i\": 900}}', j) AS j) FROM {backup}"),
        ]
    },
    ["j"]
);
corruption_test!(
    a_dropped_array_element_names_its_column,
    |t: &str| {
        let backup = format!("{}_backup`", t.trim_end_matches('`'));
        vec![
            format!("CREATE TABLE {backup} AS SELECT * FROM {t}"),
            format!("CREATE OR REPLACE TABLE {t} AS SELECT * REPLACE (IF(id = 10, ARRAY(SELECT e FROM UNNEST(arr) AS e WITH OFFSET AS o WHERE o > 0 ORDER BY o), arr) AS arr) FROM {backup}"),
        ]
    },
    ["-", "arr"]
);

#[tokio::test]
async fn mismatches_are_pinned_to_the_partition_and_its_files() {
    let s = emulators!();
    let (failed, report) = corrupt_and_validate(&s, |s, t| s.sql(&format!("UPDATE {t} SET label = 'changed' WHERE id = 3"))).await;
    assert!(!failed.is_empty());
    let details: Vec<String> = report["tables"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["detail"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(details.iter().all(|d| d.contains("partition 0") && d.contains("part-p0000-s")), "{details:?}");
}

#[tokio::test]
async fn orphans_and_a_broken_denormalized_column_are_counted() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "").await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.02"]);
    let tables = [db.table("entities"), db.table("events"), db.table("entity_mentions")];
    let manifest = s.export_and_load(&tables, &[]);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("[[denormalized]]\ntable = '{0}.entity_mentions'\ncolumn = 'mentioned_at'\nvia = 'event_id'\nreferences = '{0}.events.mentioned_at'\n", db.schema),
    )
    .unwrap();
    let orphaned: i64 =
        db.client.query_one(&format!("SELECT count(*) FROM {} WHERE event_id = 5", db.table("entity_mentions")), &[]).await.unwrap().get(0);
    assert!(orphaned > 0, "the fixture mentions event 5");
    s.sql(&format!("DELETE FROM {} WHERE id = 5", s.table(&format!("{}__events", db.schema))));
    s.sql(&format!(
        "UPDATE {} SET mentioned_at = TIMESTAMP_ADD(mentioned_at, INTERVAL 1 SECOND) WHERE id = 1",
        s.table(&format!("{}__entity_mentions", db.schema))
    ));
    let (code, report, stderr) = s.validate(&manifest, &["--config", config.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    let mentions = report["tables"].as_array().unwrap().iter().find(|t| t["table"].as_str().unwrap().ends_with("entity_mentions")).unwrap();
    let check = |kind: &str, column: &str| {
        mentions["checks"].as_array().unwrap().iter().find(|c| c["check"] == kind && c["column"] == column).unwrap().clone()
    };
    assert_eq!(check("orphans", "event_id")["actual"], orphaned.to_string(), "{stderr}");
    assert_eq!(check("orphans", "entity_id")["actual"], "0", "{stderr}");
    assert_eq!(check("denormalized", "mentioned_at")["actual"], "1", "{stderr}");
    db.drop().await;
}

#[tokio::test]
async fn verify_names_an_altered_a_missing_and_an_extra_file() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, CORRUPTIBLE).await;
    let dest = tempfile::tempdir().unwrap();
    let out = pg2bq(&[
        "export",
        "--source",
        &url,
        "--dest",
        dest.path().to_str().unwrap(),
        "--table",
        &db.table("c"),
        "--run-id",
        "r",
        "--partitions",
        "2",
        "--progress",
        "off",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = dest.path().join("r/manifest.json");
    let verify = || pg2bq(&["verify", "--manifest", manifest.to_str().unwrap(), "--json"]);
    assert_eq!(verify().status.code(), Some(0), "{}", String::from_utf8_lossy(&verify().stderr));

    let mut files: Vec<_> = walk(&dest.path().join("r")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    files.sort();
    let problems = |out: std::process::Output| -> Vec<(String, String)> {
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["check"].as_str().unwrap().to_string(),
                    format!("{} {}", p["detail"].as_str().unwrap_or(""), p["actual"].as_str().unwrap_or("")),
                )
            })
            .collect()
    };
    // One byte changed inside the data (not the footer): size stays, CRC and data change.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x01;
    std::fs::write(&files[0], &bytes).unwrap();
    let found = problems(verify());
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(found.iter().any(|(k, d)| k == "file_altered" && d.contains(&name)), "{found:?}");

    std::fs::remove_file(&files[1]).unwrap();
    std::fs::write(dest.path().join("r").join(db.table("c")).join("part-99999.parquet"), b"not ours").unwrap();
    let found = problems(verify());
    let missing = files[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(found.iter().any(|(k, d)| k == "file_missing" && d.contains(&missing)), "{found:?}");
    assert!(found.iter().any(|(k, d)| k == "file_extra" && d.contains("part-99999.parquet")), "{found:?}");
    db.drop().await;
}

/// Real GCP, opt-in only (never in CI): export the sample to a real bucket, load it into a real
/// project with ADC, and validate it. Set PG2BQ_TEST_REAL_GCS_BUCKET and
/// PG2BQ_TEST_REAL_BQ_PROJECT; the dataset `pg2bq_it_<random>` is left for inspection.
#[tokio::test]
async fn real_gcp_export_load_validate_when_opted_in() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let (Ok(bucket), Ok(project)) = (std::env::var("PG2BQ_TEST_REAL_GCS_BUCKET"), std::env::var("PG2BQ_TEST_REAL_BQ_PROJECT")) else {
        eprintln!("skipped: PG2BQ_TEST_REAL_GCS_BUCKET and PG2BQ_TEST_REAL_BQ_PROJECT are not set (real GCP is opt-in)");
        return;
    };
    let db = TestDb::new(&url, "").await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.02"]);
    let dest = format!("gs://{bucket}/pg2bq-it-{:08x}", rand::random::<u32>());
    let dataset = format!("pg2bq_it_{:08x}", rand::random::<u32>());
    let manifest = format!("{dest}/real/manifest.json");
    let real = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pg2bq"))
            .args(args)
            .env_remove("STORAGE_EMULATOR_HOST")
            .env_remove("BIGQUERY_EMULATOR_HOST")
            .output()
            .unwrap()
    };
    let tables = [db.table("entities"), db.table("events"), db.table("entity_mentions")];
    let mut export = vec!["export", "--source", &url, "--dest", &dest, "--run-id", "real", "--progress", "off"];
    for table in &tables {
        export.extend(["--table", table.as_str()]);
    }
    let out = real(&export);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let out = real(&["load", "--manifest", &manifest, "--project", &project, "--dataset", &dataset, "--create-dataset"]);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    let out = real(&["validate", "--manifest", &manifest, "--project", &project, "--dataset", &dataset, "--source", &url]);
    assert_eq!(out.status.code(), Some(0), "validate: {}", String::from_utf8_lossy(&out.stderr));
    db.drop().await;
}

/// A hypertable-like composite key `(id, mentioned_at)`: the sample finds each row by its whole
/// key (ids repeat) and compares it; a table without a primary key cannot be sampled, which is
/// a SKIP with its reason, counted as `skipped` (not passed, not failed); `--strict` exits 1 on it.
#[tokio::test]
async fn a_composite_key_is_sampled_by_its_whole_value_and_a_sample_that_cannot_run_is_skipped() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE mentions (id bigint, mentioned_at timestamptz, note text, PRIMARY KEY (id, mentioned_at));
         INSERT INTO mentions SELECT i % 5, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'n ' || i
           FROM generate_series(1, 30) i;
         CREATE TABLE loose (id bigint, note text);
         INSERT INTO loose SELECT i, 'l ' || i FROM generate_series(1, 10) i;",
    )
    .await;
    let manifest = s.export_and_load(&[db.table("mentions"), db.table("loose")], &[]);
    let sample = |report: &serde_json::Value, table: usize| -> Vec<serde_json::Value> {
        let checks = report["tables"][table]["checks"].as_array().unwrap();
        checks.iter().filter(|c| c["check"] == "sample").cloned().collect()
    };
    let (code, report, stderr) = s.validate(&manifest, &["--source", &s.pg_url, "--sample", "30"]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_eq!((&report["passed"], &report["failed"], &report["skipped"]), (&true.into(), &0.into(), &1.into()));
    let composite = sample(&report, 0);
    assert_eq!(composite.len(), 1, "{composite:#?}");
    assert_eq!(
        (&composite[0]["expected"], &composite[0]["actual"], &composite[0]["status"], &composite[0]["passed"]),
        (&"30 rows equal".into(), &"30 rows compared".into(), &"pass".into(), &true.into())
    );
    assert_eq!(composite[0]["detail"], "random rows by (id, mentioned_at); missing in Postgres: 0");
    let loose = sample(&report, 1);
    assert_eq!(loose.len(), 1, "{loose:#?}");
    assert_eq!(
        (&loose[0]["status"], &loose[0]["passed"], &loose[0]["actual"], &loose[0]["detail"]),
        (&"skip".into(), &false.into(), &"not run".into(), &"no primary key: rows cannot be found on both sides".into())
    );
    assert_eq!((&report["tables"][1]["skipped"], &report["tables"][1]["passed"]), (&1.into(), &true.into()));

    // The human report says SKIP with the reason and counts it apart.
    let text = pg2bq(&[
        "validate",
        "--manifest",
        &manifest,
        "--project",
        &s.project,
        "--dataset",
        &s.dataset,
        "--progress",
        "off",
        "--source",
        &s.pg_url,
        "--sample",
        "30",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("{} → {}__loose: ", db.table("loose"), db.schema)) && text.contains(" failed, 1 skipped\n"), "{text}");
    assert!(text.contains("  SKIP  sample           -                    expected 30 random rows equal"), "{text}");
    assert!(text.contains("(no primary key: rows cannot be found on both sides)"), "{text}");
    assert!(text.ends_with("\nNo check failed. 1 check(s) could not run (SKIP above, with the reason).\n"), "{text}");

    // --strict: the same report, exit 1.
    let (code, report, stderr) = s.validate(&manifest, &["--source", &s.pg_url, "--sample", "30", "--strict"]);
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    assert_eq!((&report["passed"], &report["failed"], &report["skipped"]), (&false.into(), &0.into(), &1.into()));

    // One row of id 1 changes in the source: found by its whole key, the other five id-1 rows equal.
    db.client
        .batch_execute(&format!(
            "UPDATE {} SET note = 'changed' WHERE id = 1 AND mentioned_at = '2024-01-01 01:00:00+00'",
            db.table("mentions")
        ))
        .await
        .unwrap();
    let (code, report, stderr) = s.validate(&manifest, &["--source", &s.pg_url, "--sample", "30"]);
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    assert_eq!(failed_checks(&report), [("sample".to_string(), "note".to_string())]);
    let changed = sample(&report, 0).into_iter().find(|c| c["status"] == "fail").unwrap();
    assert_eq!((changed["expected"].as_str(), changed["actual"].as_str()), (Some("changed"), Some("n 1")));
    assert!(changed["detail"].as_str().unwrap().starts_with("(id, mentioned_at) = (1, 1704070800000000): "), "{changed}");
    db.drop().await;
}

/// Values only rearranged between rows leave every column's aggregates as they were: only the
/// row fingerprints see it. `title` is NULL where `id` is a multiple of 10.
const ROWS: &str = "CREATE TABLE r (id int PRIMARY KEY, title text, n int);
    INSERT INTO r SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE 'title ' || i END, i % 3 FROM generate_series(1, 20) i;";

/// Exports and loads `r` (2 partitions), runs `statements` on the loaded table and validates;
/// returns the failed checks and the `row_fingerprint` check.
async fn rearrange_and_validate(
    s: &Emulators,
    load_extra: &[&str],
    statements: &[&str],
) -> (Option<i32>, Vec<(String, String)>, serde_json::Value) {
    let db = TestDb::new(&s.pg_url, ROWS).await;
    let manifest = s.export(&[db.table("r")], &["--partitions", "2"]);
    let out = s.load(&manifest, load_extra);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    let (code, report, stderr) = s.validate(&manifest, &[]);
    assert_eq!((code, failed_checks(&report)), (Some(0), vec![]), "clean before: {stderr}");
    for statement in statements {
        s.sql(&statement.replace("{t}", &s.table(&format!("{}__r", db.schema))));
    }
    let (code, report, _) = s.validate(&manifest, &[]);
    db.drop().await;
    let checks = report["tables"][0]["checks"].as_array().unwrap();
    let row_check = checks.iter().find(|c| c["check"] == "row_fingerprint").unwrap().clone();
    (code, failed_checks(&report), row_check)
}

#[tokio::test]
async fn titles_swapped_between_two_rows_fail_only_the_row_fingerprint() {
    let s = emulators!();
    let swap = "UPDATE {t} SET title = IF(id = 5, 'title 9', 'title 5') WHERE id IN (5, 9)";
    let (code, failed, row_check) = rearrange_and_validate(&s, &[], &[swap]).await;
    assert_eq!((code, failed), (Some(1), vec![("row_fingerprint".to_string(), "-".to_string())]), "{row_check:#}");
    let detail = row_check["detail"].as_str().unwrap();
    assert!(detail.starts_with("over columns id, title, n; differs in partition 0 ("), "{detail}");
    assert!(detail.contains("/part-p0000-s00000.parquet") && !detail.contains("partition 1"), "{detail}");
    assert!(row_check["expected"].as_str().unwrap().starts_with("rows 20, xor "), "{row_check}");
}

#[tokio::test]
async fn a_value_moved_to_another_row_fails_only_the_row_fingerprint() {
    let s = emulators!();
    let moved = "UPDATE {t} SET title = IF(id = 5, NULL, 'title 5') WHERE id IN (5, 10)";
    let (code, failed, row_check) = rearrange_and_validate(&s, &[], &[moved]).await;
    assert_eq!((code, failed), (Some(1), vec![("row_fingerprint".to_string(), "-".to_string())]), "{row_check:#}");
}

#[tokio::test]
async fn a_duplicated_row_with_another_deleted_fails_the_row_fingerprint_with_the_count_equal() {
    let s = emulators!();
    let statements = ["DELETE FROM {t} WHERE id = 7", "INSERT INTO {t} SELECT * FROM {t} WHERE id = 6"];
    let (code, failed, row_check) = rearrange_and_validate(&s, &[], &statements).await;
    assert_eq!(code, Some(1));
    assert!(failed.contains(&("row_fingerprint".to_string(), "-".to_string())), "{failed:?}");
    assert!(!failed.iter().any(|(check, _)| check == "row_count"), "{failed:?}");
    assert!(row_check["actual"].as_str().unwrap().starts_with("rows 20, xor "), "{row_check}");
}

/// A column left out of the load is left out of both sides: the snapshot's row fingerprints
/// are recomputed from the run's files without it, and a swap in another column still fails.
#[tokio::test]
async fn a_column_left_out_at_load_is_left_out_of_the_row_fingerprint_on_both_sides() {
    let s = emulators!();
    let swap = "UPDATE {t} SET n = IF(id = 4, 2, 1) WHERE id IN (4, 5)";
    let (code, failed, row_check) = rearrange_and_validate(&s, &["--exclude-column", "r.title"], &[swap]).await;
    assert_eq!((code, failed), (Some(1), vec![("row_fingerprint".to_string(), "-".to_string())]), "{row_check:#}");
    assert_eq!(
        row_check["detail"].as_str().unwrap(),
        "over columns id, n; left out: title (--exclude-column) (expected recomputed from the run's files)"
    );
}

/// A manifest written before row fingerprints were recorded still validates: the check is
/// skipped with the reason, not passed.
#[tokio::test]
async fn a_manifest_without_row_fingerprints_skips_the_check() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, ROWS).await;
    let manifest = s.export_and_load(&[db.table("r")], &[]);
    let name = s.object_name(&manifest).to_string();
    let (mut old, _) = pg2bq::model::manifest::Manifest::from_json(&s.download(&name).await).unwrap();
    for table in &mut old.tables {
        table.row_fingerprint = None;
        table.files.iter_mut().for_each(|f| f.row_fingerprint = None);
    }
    s.upload(&name, old.to_json().unwrap()).await;
    let (code, report, stderr) = s.validate(&manifest, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let checks = report["tables"][0]["checks"].as_array().unwrap();
    let row_check = checks.iter().find(|c| c["check"] == "row_fingerprint").unwrap();
    assert_eq!(row_check["status"], "skip");
    assert_eq!(
        row_check["detail"],
        "the manifest records no row fingerprints (written by an earlier pg2bq): re-export the table to compare its rows"
    );
    db.drop().await;
}
