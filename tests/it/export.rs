//! `pg2bq export` against a real Postgres: every type of the matrix read back by two Parquet
//! readers and compared value by value with Postgres; refusals; partitions; commit semantics.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int32Type;
use pg2bq::model::manifest::Manifest;

use crate::skip_unless;
use crate::support::*;

const TYPE_MATRIX: &str = include_str!("../fixtures/type_matrix.sql");

/// Postgres-side expression and post-processing giving each column's canonical text.
fn expectations() -> Vec<(&'static str, String, Post)> {
    let text = |c: &'static str| (c, format!("{c}::text"), Post::Text);
    let list = |c: &'static str, item: &'static Post| {
        (c, format!("CASE WHEN {c} IS NULL THEN NULL ELSE to_json(ARRAY(SELECT e::text FROM unnest({c}) WITH ORDINALITY u(e, o) ORDER BY o))::text END"), Post::List(item))
    };
    let timestamp = |c: &'static str, expr: &str| (c, format!("to_char({expr}, 'YYYY-MM-DD HH24:MI:SS.US')"), Post::Timestamp);
    vec![
        ("id", "id::text".into(), Post::Text),
        text("c_bool"),
        text("c_int2"),
        text("c_int4"),
        text("c_int8"),
        ("c_float4", "c_float4::text".into(), Post::Float4),
        ("c_float8", "c_float8::text".into(), Post::Float8),
        ("c_numeric_12_2", "c_numeric_12_2::text".into(), Post::Numeric),
        ("c_numeric_38_9", "c_numeric_38_9::text".into(), Post::Numeric),
        ("c_numeric_58_20", "c_numeric_58_20::text".into(), Post::Numeric),
        ("c_numeric", "c_numeric::text".into(), Post::Numeric),
        ("c_money", "c_money::numeric::text".into(), Post::Numeric),
        text("c_text"),
        text("c_varchar"),
        ("c_char", "c_char".into(), Post::Text), // padded, as Postgres prints char(n)
        text("c_name"),
        text("c_citext"),
        text("c_enum"),
        text("c_domain"),
        text("c_uuid"),
        text("c_json"),
        text("c_jsonb"),
        ("c_bytea", "encode(c_bytea, 'hex')".into(), Post::Text),
        ("c_date", "(c_date - DATE '1970-01-01')::text".into(), Post::Text),
        (
            "c_time",
            "(EXTRACT(HOUR FROM c_time)::int8 * 3600000000 + EXTRACT(MINUTE FROM c_time)::int8 * 60000000 + EXTRACT(MICROSECONDS FROM c_time)::int8)::text".into(),
            Post::Text,
        ),
        text("c_timetz"),
        timestamp("c_timestamp", "c_timestamp"),
        timestamp("c_timestamptz", "c_timestamptz AT TIME ZONE 'UTC'"),
        text("c_interval"),
        // As Postgres prints it (its output function), not `inet::text`, which adds `/32`.
        ("c_inet", "(SELECT format('%s', c_inet) WHERE c_inet IS NOT NULL)".into(), Post::Text),
        text("c_cidr"),
        text("c_macaddr"),
        text("c_bit"),
        text("c_varbit"),
        text("c_xml"),
        text("c_tsvector"),
        text("c_point"),
        text("c_int4range"),
        list("c_int4_arr", &Post::Text),
        list("c_int8_arr", &Post::Text),
        list("c_float8_arr", &Post::Float8),
        list("c_bool_arr", &Post::Text),
        list("c_text_arr", &Post::Text),
        list("c_numeric_arr", &Post::Numeric),
        list("c_uuid_arr", &Post::Text),
        list("c_jsonb_arr", &Post::Text),
    ]
}

fn export_args<'a>(db_url: &'a str, dest: &'a str, table: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["export", "--source", db_url, "--dest", dest, "--table", table, "--json", "--progress", "off"];
    args.extend_from_slice(extra);
    args
}

fn read_manifest(dir: &std::path::Path, run_id: &str) -> Manifest {
    serde_json::from_slice(&std::fs::read(dir.join(run_id).join("manifest.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn type_matrix_round_trips_exactly_through_parquet() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let python = skip_unless!("PG2BQ_TEST_PYTHON");
    let db = TestDb::new(&url, TYPE_MATRIX).await;
    let dest = tempfile::tempdir().unwrap();
    let table = db.table("type_matrix");
    let out = pg2bq(&export_args(&url, dest.path().to_str().unwrap(), &table, &["--run-id", "matrix", "--partitions", "2"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let expectations = expectations();
    let exprs: Vec<(&str, String)> = expectations.iter().map(|(c, e, _)| (*c, e.clone())).collect();
    let rows = db.texts("type_matrix", &exprs).await;
    let expected: BTreeMap<&str, Vec<Option<String>>> = expectations
        .iter()
        .enumerate()
        .map(|(i, (column, _, how))| (*column, rows.iter().map(|r| r[i].as_deref().map(|t| post(t, *how))).collect()))
        .collect();

    // Reader 1: arrow-rs.
    let batches = read_parquet_dir(&dest.path().join("matrix"));
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let order = arrow::compute::sort_to_indices(batch.column_by_name("id").unwrap(), None, None).unwrap();
    let batch = arrow::compute::take_record_batch(&batch, &order).unwrap();
    assert_eq!(batch.column_by_name("id").unwrap().as_primitive::<Int32Type>().values().to_vec(), vec![1, 2, 3, 4, 5]);
    // Reader 2: pyarrow.
    let pyarrow = read_with_pyarrow(&python, &dest.path().join("matrix"));
    assert_eq!(batch.num_columns(), expectations.len(), "every fixture column is covered");

    let mut mismatches = Vec::new();
    for (column, want) in &expected {
        let array = batch.column_by_name(column).unwrap_or_else(|| panic!("column {column} missing"));
        let rust: Vec<Option<String>> = (0..batch.num_rows()).map(|r| canonical(array, r)).collect();
        let python: Vec<Option<String>> = serde_json::from_value(pyarrow[*column].clone()).unwrap();
        for row in 0..want.len() {
            let is_list = matches!(array.data_type(), arrow::datatypes::DataType::List(_));
            let same = |a: &Option<String>, b: &Option<String>| match (a, b, is_list) {
                (Some(a), Some(b), true) => {
                    serde_json::from_str::<serde_json::Value>(a).unwrap() == serde_json::from_str::<serde_json::Value>(b).unwrap()
                }
                _ => a == b,
            };
            if !same(&rust[row], &want[row]) || !same(&python[row], &want[row]) {
                let clip = |v: &Option<String>| v.as_ref().map(|s| s.chars().take(120).collect::<String>());
                mismatches.push(format!(
                    "{column} row {}: postgres {:?}, arrow-rs {:?}, pyarrow {:?}",
                    row + 1,
                    clip(&want[row]),
                    clip(&rust[row]),
                    clip(&python[row])
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));

    // The manifest's aggregates agree with Postgres on what Postgres can count.
    let manifest = read_manifest(dest.path(), "matrix");
    let table_manifest = &manifest.tables[0];
    assert_eq!(table_manifest.row_count, 5);
    for column in &table_manifest.columns {
        let nulls = expected[column.mapping.name.as_str()].iter().filter(|v| v.is_none()).count() as u64;
        assert_eq!(column.aggregates.null_count, nulls, "null count of {}", column.mapping.name);
    }
    let int8 = table_manifest.columns.iter().find(|c| c.mapping.name == "c_int8").unwrap();
    assert_eq!(int8.aggregates.sum.as_deref(), Some("-1"));
    assert_eq!(int8.aggregates.min.as_deref(), Some("-9223372036854775808"));
    assert_eq!(table_manifest.files.iter().map(|f| f.rows).sum::<u64>(), 5);
    assert!(!String::from_utf8_lossy(&std::fs::read(dest.path().join("matrix/manifest.json")).unwrap()).contains("pg2bq-secret"));
    db.drop().await;
}

#[tokio::test]
async fn refused_values_name_table_column_and_way_out_before_anything_is_written() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(
        &url,
        "CREATE TYPE pair AS (a int, b int);
         CREATE TABLE refused (id int PRIMARY KEY, p pair, d date[], n numeric, t timestamptz, a int[]);
         INSERT INTO refused VALUES (1, ROW(1, 2), '{2020-01-01}', 'NaN', 'infinity', '{1,NULL}'),
                                    (2, NULL, NULL, 1, '-infinity', '{{1,2},{3,4}}');",
    )
    .await;
    let dest = tempfile::tempdir().unwrap();
    let table = db.table("refused");
    let out = pg2bq(&export_args(&url, dest.path().to_str().unwrap(), &table, &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        format!("table `{table}`, column `p` ({}.pair)", db.schema),
        "--cast p=text".to_string(),
        format!("table `{table}`, column `d` (date[])"),
        "--cast d=text".to_string(),
    ] {
        assert!(stderr.contains(&needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(std::fs::read_dir(dest.path()).unwrap().next().is_none(), "nothing may be written");

    // With the types cast, the data checks speak: counts of offending rows and the way out.
    let out = pg2bq(&export_args(&url, dest.path().to_str().unwrap(), &table, &["--cast", "p=text", "--cast", "d=text"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "column `n` (numeric): 1 row(s) hold NaN",
        "column `t` (timestamp with time zone): 2 row(s) hold values outside BigQuery's range",
        "--out-of-range clamp",
        "column `a` (integer[]): 2 row(s) hold NULL elements or multi-dimensional arrays",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(!stderr.contains("pg2bq-secret"), "credentials leaked: {stderr}");
    assert!(std::fs::read_dir(dest.path()).unwrap().next().is_none(), "nothing may be written");

    // A dry run prints the plan and the same problems, and exits 2.
    let out = pg2bq(&export_args(&url, dest.path().to_str().unwrap(), &table, &["--cast", "p=text", "--cast", "d=text", "--dry-run"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["problems"].as_array().unwrap().len(), 3, "{plan}");
    assert!(stderr.contains("column `n` (numeric): 1 row(s) hold NaN"), "{stderr}");
    db.drop().await;
}

#[tokio::test]
async fn out_of_range_clamp_and_null_are_explicit_and_counted() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(
        &url,
        "CREATE TABLE far (id int PRIMARY KEY, t timestamptz, d date);
         INSERT INTO far VALUES (1, 'infinity', '-infinity'), (2, '2020-01-01 00:00:00+00', '10000-01-01'), (3, NULL, NULL);",
    )
    .await;
    let table = db.table("far");
    for (mode, t1, d1) in [("clamp", Some(253402300799999999i64), Some(-719162i32)), ("null", None, None)] {
        let dest = tempfile::tempdir().unwrap();
        let out = pg2bq(&export_args(&url, dest.path().to_str().unwrap(), &table, &["--out-of-range", mode, "--run-id", "r"]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let batches = read_parquet_dir(&dest.path().join("r"));
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let t = batch.column_by_name("t").unwrap().as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let d = batch.column_by_name("d").unwrap().as_primitive::<arrow::datatypes::Date32Type>();
        let row = |id: i32| (0..batch.num_rows()).find(|&r| batch.column(0).as_primitive::<Int32Type>().value(r) == id).unwrap();
        assert_eq!(t.is_valid(row(1)).then(|| t.value(row(1))), t1, "{mode}");
        assert_eq!(d.is_valid(row(1)).then(|| d.value(row(1))), d1, "{mode}");
        let manifest = read_manifest(dest.path(), "r");
        let adjusted: Vec<(String, u64)> = manifest.tables[0].columns.iter().map(|c| (c.mapping.name.clone(), c.adjusted_rows)).collect();
        assert_eq!(adjusted, [("id".into(), 0), ("t".into(), 1), ("d".into(), 2)], "{mode}");
    }
    db.drop().await;
}

#[tokio::test]
async fn partitions_cover_every_row_once_by_key_and_by_block() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(
        &url,
        "CREATE TABLE keyed (id int8 PRIMARY KEY, v text);
         INSERT INTO keyed SELECT g, md5(g::text) FROM generate_series(-500, 20000) g;
         CREATE TABLE heap (v int, w text);
         INSERT INTO heap SELECT g % 977, repeat('x', 200) FROM generate_series(1, 20000) g;
         INSERT INTO heap VALUES (NULL, NULL);",
    )
    .await;
    for (table, method) in [("keyed", "key_range"), ("heap", "block_range")] {
        let dest = tempfile::tempdir().unwrap();
        let qualified = db.table(table);
        let out = pg2bq(&export_args(&url, dest.path().to_str().unwrap(), &qualified, &["--partitions", "3", "--run-id", "p"]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let manifest = read_manifest(dest.path(), "p");
        let t = &manifest.tables[0];
        assert_eq!(t.partitions.len(), 3, "{table}");
        assert!(t.partitions.iter().all(|p| p.method == method), "{table}: {:?}", t.partitions);
        let counted: u64 = db.client.query_one(&format!("SELECT count(*) FROM {qualified}"), &[]).await.unwrap().get::<_, i64>(0) as u64;
        assert_eq!(t.row_count, counted, "{table}");
        assert_eq!(t.partitions.iter().map(|p| p.rows).sum::<u64>(), counted, "{table}");
        let batches = read_parquet_dir(&dest.path().join("p"));
        assert_eq!(batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(), counted, "{table}");
        // The first column's aggregates equal Postgres' own sum: no row was read twice.
        let first = &t.columns[0];
        let column = &first.mapping.name;
        let sum: String = db.client.query_one(&format!("SELECT sum({column})::text FROM {qualified}"), &[]).await.unwrap().get(0);
        assert_eq!(first.aggregates.sum.as_deref(), Some(sum.as_str()), "{table}");
    }
    db.drop().await;
}

#[tokio::test]
async fn sample_app_exports_in_one_snapshot_with_its_keys() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "").await;
    db.run_psql("tests/fixtures/sample.sql", &["scale=0.05"]);
    let dest = tempfile::tempdir().unwrap();
    let (events, mentions, entities) = (db.table("events"), db.table("entity_mentions"), db.table("entities"));
    let out = pg2bq(&[
        "export",
        "--source",
        &url,
        "--dest",
        dest.path().to_str().unwrap(),
        "--table",
        &events,
        "--table",
        &mentions,
        "--table",
        &entities,
        "--run-id",
        "sample",
        "--json",
        "--progress",
        "off",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["run_id"], "sample");
    let manifest = read_manifest(dest.path(), "sample");
    for t in &manifest.tables {
        let count: i64 = db.client.query_one(&format!("SELECT count(*) FROM {}", t.name), &[]).await.unwrap().get(0);
        assert_eq!(t.row_count, count as u64, "{}", t.name);
    }
    let m = manifest.tables.iter().find(|t| t.name == mentions).unwrap();
    let mut fks: Vec<(String, String)> = m.foreign_keys.iter().map(|f| (f.columns.join(","), f.references_table.clone())).collect();
    fks.sort();
    assert_eq!(fks, [("entity_id".to_string(), entities.clone()), ("event_id".to_string(), events.clone())]);
    assert_eq!(m.primary_key, ["id"]);
    let events_manifest = manifest.tables.iter().find(|t| t.name == events).unwrap();
    let metadata = events_manifest.columns.iter().find(|c| c.mapping.name == "metadata").unwrap();
    assert_eq!(metadata.mapping.bq_type, pg2bq::model::types::BigQueryType::Json);
    assert!(!events_manifest.columns.iter().find(|c| c.mapping.name == "title").unwrap().mapping.nullable);
    db.drop().await;
}

#[tokio::test]
async fn queries_export_under_their_name() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "CREATE TABLE q (id int, n numeric(6,2)); INSERT INTO q VALUES (1, 1.5), (2, NULL), (3, -2.25);").await;
    let dest = tempfile::tempdir().unwrap();
    let query = format!("recent=SELECT id, n * 2 AS doubled FROM {} WHERE id > 1", db.table("q"));
    let out = pg2bq(&[
        "export",
        "--source",
        &url,
        "--dest",
        dest.path().to_str().unwrap(),
        "--query",
        &query,
        "--run-id",
        "q",
        "--progress",
        "off",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = read_manifest(dest.path(), "q");
    assert_eq!((manifest.tables[0].name.as_str(), manifest.tables[0].row_count), ("recent", 2));
    let doubled = &manifest.tables[0].columns[1];
    assert_eq!((doubled.aggregates.sum.as_deref(), doubled.aggregates.null_count), (Some("-4.5"), 1));
    db.drop().await;
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, TYPE_MATRIX).await;
    let dest = tempfile::tempdir().unwrap();
    let out = pg2bq(&export_args(&url, dest.path().to_str().unwrap(), &db.table("type_matrix"), &["--dry-run", "--partitions", "2"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = &plan["tables"][0];
    assert_eq!(table["row_count"], 5);
    assert_eq!(table["partitions"].as_array().unwrap().len(), 2);
    let numeric = table["columns"].as_array().unwrap().iter().find(|c| c["name"] == "c_numeric").unwrap();
    assert_eq!((numeric["arrow_type"].as_str(), numeric["bq_type"].as_str()), (Some("Decimal256(76, 38)"), Some("BIGNUMERIC")));
    // The scale and integer digits its values use, found in the same counting scan.
    let in_use = table["numeric_in_use"].as_array().unwrap().iter().find(|n| n["column"] == "c_numeric").unwrap();
    assert_eq!((in_use["max_scale"].as_i64(), in_use["max_integer_digits"].as_i64()), (Some(38), Some(38)));
    assert!(std::fs::read_dir(dest.path()).unwrap().next().is_none(), "dry run wrote files");
    db.drop().await;
}

#[tokio::test]
async fn killed_export_leaves_no_manifest_and_the_same_run_id_starts_clean() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "CREATE TABLE big (id int8 PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) || repeat('y', 300) FROM generate_series(1, 400000) g;").await;
    let dest = tempfile::tempdir().unwrap();
    let table = db.table("big");
    let args = export_args(
        &url,
        dest.path().to_str().unwrap(),
        &table,
        &["--run-id", "k", "--partitions", "1", "--file-size", "1MiB", "--row-group-size", "1MiB", "--batch-rows", "4096"],
    );
    let mut child =
        std::process::Command::new(env!("CARGO_BIN_EXE_pg2bq")).args(&args).stderr(std::process::Stdio::null()).spawn().unwrap();
    let table_dir = dest.path().join("k").join(&table);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while walk_or_empty(&table_dir).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "export never wrote two files");
        assert!(child.try_wait().unwrap().is_none(), "export finished before it could be killed; make the table bigger");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dest.path().join("k/manifest.json").exists(), "a killed run must not commit");
    assert!(!walk_or_empty(&table_dir).is_empty(), "the killed run left files behind to clean");

    let out = pg2bq(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = read_manifest(dest.path(), "k");
    let mut listed: Vec<String> = manifest.tables[0].files.iter().chain(manifest.tables[0].side_files()).map(|f| f.path.clone()).collect();
    listed.sort();
    let mut on_disk: Vec<String> = walk_or_empty(&dest.path().join("k"))
        .iter()
        .map(|p| p.strip_prefix(dest.path().join("k")).unwrap().to_string_lossy().into_owned())
        .filter(|p| p != "manifest.json")
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk, "exactly the manifest's files remain");
    assert_eq!(manifest.tables[0].row_count, 400000);

    // A committed run id is never overwritten.
    let again = pg2bq(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already committed"));
    db.drop().await;
}

fn walk_or_empty(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    if dir.exists() {
        walk(dir)
    } else {
        Vec::new()
    }
}

#[tokio::test]
async fn gcs_destination_goes_through_the_json_api_and_verifies_checksums() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let emulator = skip_unless!("STORAGE_EMULATOR_HOST");
    let bucket = skip_unless!("PG2BQ_TEST_GCS_BUCKET");
    let options = pg2bq::storage::gcs::GcsOptions { emulator_host: Some(emulator), application_credentials: None };
    export_to_gcs_and_check(&url, &bucket, &options).await;
}

/// Real GCS, opt-in only (never in CI): a bucket the ADC identity may write to.
#[tokio::test]
async fn real_gcs_destination_when_opted_in() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let Ok(bucket) = std::env::var("PG2BQ_TEST_REAL_GCS_BUCKET") else {
        eprintln!("skipped: PG2BQ_TEST_REAL_GCS_BUCKET is not set (real GCP is opt-in)");
        return;
    };
    let options = pg2bq::storage::gcs::GcsOptions {
        emulator_host: None,
        application_credentials: std::env::var("GOOGLE_APPLICATION_CREDENTIALS").ok(),
    };
    export_to_gcs_and_check(&url, &bucket, &options).await;
}

async fn export_to_gcs_and_check(url: &str, bucket: &str, options: &pg2bq::storage::gcs::GcsOptions) {
    let db = TestDb::new(url, "CREATE TABLE g (id int PRIMARY KEY, v text); INSERT INTO g SELECT i, (SELECT string_agg(md5(i::text || '-' || k::text), '') FROM generate_series(1, 20) k) FROM generate_series(1, 30000) i;").await;
    let prefix = format!("gs://{bucket}/it-{:08x}", rand::random::<u32>());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pg2bq"));
    command.args(export_args(url, &prefix, &db.table("g"), &["--run-id", "gcs", "--file-size", "512KiB", "--row-group-size", "256KiB"]));
    if options.emulator_host.is_none() {
        command.env_remove("STORAGE_EMULATOR_HOST");
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = pg2bq::storage::store::Store::open(&prefix, options).unwrap();
    let manifest: Manifest = serde_json::from_slice(&store.get("gcs/manifest.json").await.unwrap()).unwrap();
    let files = &manifest.tables[0].files;
    assert!(files.len() > 1, "file rolling produced {} file(s)", files.len());
    for file in files {
        assert!(file.uri.starts_with(&format!("{prefix}/gcs/")), "{}", file.uri);
        let data = store.get(&format!("gcs/{}", file.path)).await.unwrap();
        assert_eq!(data.len() as u64, file.bytes);
        assert_eq!(pg2bq::storage::store::crc32c_base64(crc32c::crc32c(&data)), file.crc32c);
    }
    assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 30000);
    // The manifest is the commit point: a second run with the same id is refused.
    let again = pg2bq(&export_args(url, &prefix, &db.table("g"), &["--run-id", "gcs"]));
    assert_eq!(again.status.code(), Some(2));
    db.drop().await;
}
