//! Table names end to end: a name is parsed once (quotes, dots, case) and carried typed, so the
//! table exported is the table named; its directory is the object's name on every store, so the
//! manifest's paths open in pyarrow and DuckDB and a run copied between local disk and GCS verifies.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::*;
use crate::{emulators, skip_unless};

/// Exports into a local directory as run `run1`.
fn export_local(pg_url: &str, dest: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["export", "--source", pg_url, "--dest", dest.to_str().unwrap(), "--run-id", "run1", "--progress", "off"];
    all.extend_from_slice(args);
    pg2bq(&all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The manifest's tables by name.
fn tables_of(manifest: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    manifest["tables"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap().to_string(), t.clone())).collect()
}

/// Every file's relative path and rows, as the manifest records them.
fn file_rows(manifest: &serde_json::Value) -> BTreeMap<String, u64> {
    let files = manifest["tables"].as_array().unwrap().iter().flat_map(|t| t["files"].as_array().unwrap().clone());
    files.map(|f| (f["path"].as_str().unwrap().to_string(), f["rows"].as_u64().unwrap())).collect()
}

/// Rows of every file, opened by pyarrow (or DuckDB) at the manifest's directory + the file's path.
fn opened_rows(python: &str, manifest: &str, reader: &str) -> BTreeMap<String, u64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/open_manifest.py");
    let out = std::process::Command::new(python).arg(script).arg(manifest).arg(reader).output().unwrap();
    assert!(out.status.success(), "{reader} could not open a path of {manifest}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn verify(manifest: &str) {
    let out = pg2bq(&["verify", "--manifest", manifest]);
    assert!(out.status.success(), "verify {manifest}: {}{}", text(&out.stdout), text(&out.stderr));
}

/// `"sales.eu".orders` was joined to `sales.eu.orders` and cut at the first dot: the export read
/// `sales."eu.orders"` (exit 0, the decoy's rows), and without a decoy named a missing table.
#[tokio::test]
async fn a_dot_inside_a_quoted_name_exports_the_table_it_quotes() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "").await;
    let s = db.schema.clone();
    db.client
        .batch_execute(&format!(
            r#"CREATE SCHEMA "{s}.eu"; CREATE TABLE "{s}.eu".orders (id int PRIMARY KEY, v text);
               INSERT INTO "{s}.eu".orders SELECT g, 'right' FROM generate_series(1, 10) g;
               CREATE TABLE {s}."eu.orders" (id int PRIMARY KEY, v text);
               INSERT INTO {s}."eu.orders" VALUES (1, 'decoy');
               CREATE SCHEMA "{s}.us"; CREATE TABLE "{s}.us"."Items" (id int, v text);
               INSERT INTO "{s}.us"."Items" VALUES (1, 'item'), (2, 'item');"#
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (eu, us) = (format!("\"{s}.eu\".orders"), format!("\"{s}.us\".\"Items\""));
    let partition_on = format!("{eu}.id");
    let out = export_local(&url, dir.path(), &["--table", &eu, "--table", &us, "--partition-on", &partition_on, "--partitions", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("run1/manifest.json")).unwrap()).unwrap();
    let tables = tables_of(&manifest);
    let summary = |name: &str| {
        let t = &tables[name];
        (
            t["table"].clone(),
            t["bq_table"].as_str().unwrap().to_string(),
            t["row_count"].as_u64().unwrap(),
            t["partitions"].as_array().unwrap().len(),
        )
    };
    assert_eq!(tables.keys().collect::<Vec<_>>(), [&eu, &us]);
    assert_eq!(summary(&eu), (serde_json::json!({"schema": format!("{s}.eu"), "name": "orders"}), format!("{s}_eu__orders"), 10, 2));
    assert_eq!(summary(&us), (serde_json::json!({"schema": format!("{s}.us"), "name": "Items"}), format!("{s}_us__Items"), 2, 1));
    let values: Vec<Option<String>> = read_parquet_dir(&dir.path().join(format!("run1/{s}+2Eeu.orders")))
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(|row| canonical(b.column_by_name("v").unwrap(), row)).collect::<Vec<_>>())
        .collect();
    assert_eq!(values, vec![Some("right".to_string()); 10]);

    // A table that does not exist is named as it was written, the quotes where they were.
    let missing = format!("\"{s}.nowhere\".orders");
    let out = export_local(&url, tempfile::tempdir().unwrap().path(), &["--table", &missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("table `{missing}` does not exist or is not readable")), "{}", text(&out.stderr));
    db.client.batch_execute(&format!(r#"DROP SCHEMA "{s}.eu", "{s}.us" CASCADE"#)).await.unwrap();
    db.drop().await;
}

/// The tables of the paths test: the name as the catalog spells it, its directory in the run, its
/// BigQuery name after the schema's `{s}__` (and rows: one more per table, to tell them apart).
const ODD: &[(&str, &str, &str)] = &[
    ("a/b", "a+2Fb", "a_b"),
    ("..", "+2E+2E", "__"),
    ("back\\slash", "back+5Cslash", "back_slash"),
    ("sp ace", "sp+20ace", "sp_ace"),
    ("ünï", "+C3+BCn+C3+AF", "_n_"),
    ("MixedCase", "MixedCase", "MixedCase"),
    ("q\"uote", "q+22uote", "q_uote"),
    ("100%", "100+25", "100_"),
    ("a+2Fb", "a+2B2Fb", "a_2Fb"),
];

/// For a table named `a/b` the manifest said `…a%2Fb/part-….parquet` while the local file was
/// `…a%252Fb/…`: verify passed, pyarrow could not open the manifest's path.
#[tokio::test]
async fn odd_table_names_have_one_path_on_every_store() {
    let e = emulators!();
    let python = skip_unless!("PG2BQ_TEST_PYTHON");
    let duckdb_python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let db = TestDb::new(&e.pg_url, "").await;
    let s = db.schema.clone();
    let mut tables = Vec::new();
    for (i, (name, _, _)) in ODD.iter().enumerate() {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let sql = format!(
            "CREATE TABLE {quoted} (id int PRIMARY KEY, v text); INSERT INTO {quoted} SELECT g, 'v' FROM generate_series(0, {i}) g;"
        );
        db.client.batch_execute(&sql).await.unwrap();
        tables.push(format!("{s}.{quoted}"));
    }
    let table_args: Vec<&str> = tables.iter().flat_map(|t| ["--table", t.as_str()]).collect();

    // Local: every manifest path is the file on disk, and pyarrow opens it.
    let dir = tempfile::tempdir().unwrap();
    let out = export_local(&e.pg_url, dir.path(), &table_args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let local_manifest = dir.path().join("run1/manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&local_manifest).unwrap()).unwrap();
    let rows = file_rows(&manifest);
    assert_eq!(rows.values().sum::<u64>(), (1..=ODD.len() as u64).sum::<u64>());
    for path in rows.keys() {
        assert!(dir.path().join("run1").join(path).is_file(), "the manifest names `{path}`, which is not on disk");
    }
    verify(local_manifest.to_str().unwrap());
    assert_eq!(opened_rows(&python, local_manifest.to_str().unwrap(), "pyarrow"), rows);
    assert_eq!(opened_rows(&duckdb_python, local_manifest.to_str().unwrap(), "duckdb"), rows);
    // Each table's directory and BigQuery name, and nothing else in the run directory.
    let mut named: Vec<(String, String)> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["files"][0]["path"].as_str().unwrap().split('/').next().unwrap().to_string(), t["bq_table"].as_str().unwrap().to_string())
        })
        .collect();
    let mut expected: Vec<(String, String)> = ODD.iter().map(|(_, dir, bq)| (format!("{s}.{dir}"), format!("{s}__{bq}"))).collect();
    expected.sort();
    named.sort();
    assert_eq!(named, expected);
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.path().join("run1"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&s))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, expected.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>());

    // GCS: the objects are named as the manifest's paths, verify passes, pyarrow opens them.
    let gcs_manifest = e.export(&tables, &[]);
    let prefix = e.object_name(&gcs_manifest).strip_suffix("manifest.json").unwrap().to_string();
    let from_gcs: serde_json::Value = serde_json::from_slice(&e.download(e.object_name(&gcs_manifest)).await).unwrap();
    assert_eq!(file_rows(&from_gcs), rows);
    let objects: Vec<String> =
        e.object_names(&prefix).await.into_iter().map(|n| n[prefix.len()..].to_string()).filter(|n| n.ends_with(".parquet")).collect();
    assert_eq!(objects, rows.keys().cloned().collect::<Vec<_>>());
    verify(&gcs_manifest);
    assert_eq!(opened_rows(&python, &gcs_manifest, "pyarrow"), rows);

    // The local run copied into GCS, object by object under the same names, verifies there.
    let copy = format!("copy-{:08x}/run1/", rand::random::<u32>());
    for file in walk(&dir.path().join("run1")) {
        let relative = file.strip_prefix(dir.path().join("run1")).unwrap().to_str().unwrap().to_string();
        e.upload(&format!("{copy}{relative}"), std::fs::read(&file).unwrap()).await;
    }
    let copied = format!("gs://{}/{copy}manifest.json", e.bucket);
    verify(&copied);
    assert_eq!(opened_rows(&python, &copied, "pyarrow"), rows);

    // And the GCS run copied onto local disk verifies there.
    let back = tempfile::tempdir().unwrap();
    for name in e.object_names(&prefix).await {
        let file = back.path().join("run1").join(&name[prefix.len()..]);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, e.download(&name).await).unwrap();
    }
    verify(back.path().join("run1/manifest.json").to_str().unwrap());

    // BigQuery reads the files from the manifest's paths under the names it gave.
    let out = e.load(&gcs_manifest, &[]);
    assert!(out.status.success(), "load: {}", text(&out.stderr));
    for (i, (_, _, bq)) in ODD.iter().enumerate() {
        assert_eq!(e.count(&format!("{s}__{bq}")).await, i as i64 + 1, "{bq}");
    }
    db.drop().await;
}

/// Names BigQuery would give one table (it ignores case; `"sp ace"` becomes `sp_ace`) are refused
/// before anything is written, naming both tables.
#[tokio::test]
async fn tables_that_collide_in_bigquery_are_refused_up_front() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(
        &url,
        r#"CREATE TABLE "Events" (id int); CREATE TABLE events (id int); CREATE TABLE "sp ace" (id int); CREATE TABLE sp_ace (id int);"#,
    )
    .await;
    let s = db.schema.clone();
    let dir = tempfile::tempdir().unwrap();
    let tables = [format!("{s}.\"Events\""), format!("{s}.events"), format!("{s}.\"sp ace\""), format!("{s}.SP_ACE")];
    let args: Vec<&str> = tables.iter().flat_map(|t| ["--table", t.as_str()]).collect();
    let out = export_local(&url, dir.path(), &args);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for (first, second, bq) in [("\"Events\"", "events", "events"), ("\"sp ace\"", "sp_ace", "sp_ace")] {
        let expected = format!("`{s}.{first}` and `{s}.{second}` both map to BigQuery table `{s}__{bq}`");
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    assert!(!dir.path().join("run1").exists(), "nothing is written");
    db.drop().await;
}
