//! Tables with children, exported unit by unit: a hypertable-shaped inheritance tree, a
//! declaratively partitioned table (nested, with default partitions) and an inheritance parent
//! holding rows of its own. Rows are checked per unit against Postgres and read back by DuckDB.
//! Real TimescaleDB hypertables are in `timescaledb.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use pg2bq::model::manifest::{Manifest, TableManifest};

use crate::support::*;
use crate::{emulators, skip_unless};

/// An empty parent with 24 monthly inheritance children, each with a CHECK on `mentioned_at`
/// and the composite key `(id, mentioned_at)`, as TimescaleDB lays out a hypertable; 1M rows.
const HYPERTABLE_SHAPED: &str = "
CREATE TABLE mentions (id int8 NOT NULL, mentioned_at timestamptz NOT NULL, author text, score float8);
DO $$
DECLARE
    first timestamptz;
    low int8;
BEGIN
    FOR m IN 0..23 LOOP
        first := timestamptz '2024-01-01 00:00:00+00' + m * interval '1 month';
        low := m * 41667 + 1;
        EXECUTE format('CREATE TABLE %I (CONSTRAINT %I CHECK (mentioned_at >= %L AND mentioned_at < %L), PRIMARY KEY (id, mentioned_at)) INHERITS (mentions)',
            'mentions_' || to_char(first, 'YYYY_MM'), 'constraint_' || (m + 1), first, first + interval '1 month');
        EXECUTE format('INSERT INTO %I SELECT g, %L::timestamptz + (g %% 27) * interval ''1 day'' + (g %% 86400) * interval ''1 second'', ''author '' || (g %% 1000), (g %% 997) / 8.0 FROM generate_series(%s, %s) g',
            'mentions_' || to_char(first, 'YYYY_MM'), first, low, least(low + 41666, 1000000));
    END LOOP;
END $$;
ANALYZE mentions;
";

/// Range partitions by year, 2024 sub-partitioned by region (with its own default), and a
/// default partition holding the years outside every range; `{rows}` rows.
const DECLARATIVE: &str = "
CREATE TABLE orders (id int8 NOT NULL, region text NOT NULL, placed date NOT NULL, amount numeric(12,2)) PARTITION BY RANGE (placed);
CREATE TABLE orders_2023 PARTITION OF orders FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE orders_2024 PARTITION OF orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (region);
CREATE TABLE orders_2024_eu PARTITION OF orders_2024 FOR VALUES IN ('eu');
CREATE TABLE orders_2024_other PARTITION OF orders_2024 DEFAULT;
CREATE TABLE orders_default PARTITION OF orders DEFAULT;
INSERT INTO orders SELECT g, (ARRAY['eu', 'us', 'apac'])[1 + g % 3], DATE '2022-06-01' + (g % 1200), (g % 100000) / 100.0 FROM generate_series(1, {rows}) g;
";

fn declarative(rows: u32) -> String {
    DECLARATIVE.replace("{rows}", &rows.to_string())
}

/// A parent holding rows itself, a child with a column of its own, and a grandchild.
const INHERITED: &str = "
CREATE TABLE logs (id int8 PRIMARY KEY, body text NOT NULL);
CREATE TABLE logs_archive (archived_by text, CHECK (id < 0)) INHERITS (logs);
CREATE TABLE logs_archive_old () INHERITS (logs_archive);
INSERT INTO logs SELECT g, 'live ' || g FROM generate_series(1, 5000) g;
INSERT INTO logs_archive SELECT -g, 'archived ' || g, 'cron' FROM generate_series(1, 3000) g;
INSERT INTO logs_archive_old SELECT -g, 'old ' || g, NULL FROM generate_series(3001, 4000) g;
";

/// A fresh schema loaded with `fixture`, and its `table` exported to a fresh directory.
async fn exported(url: &str, fixture: &str, table: &str, extra: &[&str]) -> (TestDb, tempfile::TempDir, Manifest) {
    let db = TestDb::new(url, fixture).await;
    let dest = tempfile::tempdir().unwrap();
    let manifest = export(url, dest.path(), &db.table(table), extra);
    (db, dest, manifest)
}

fn export(url: &str, dest: &Path, table: &str, extra: &[&str]) -> Manifest {
    let dest_text = dest.to_str().unwrap();
    let mut args = vec!["export", "--source", url, "--dest", dest_text, "--table", table, "--run-id", "r", "--progress", "off"];
    args.extend_from_slice(extra);
    let out = pg2bq(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(dest.join("r/manifest.json")).unwrap()).unwrap()
}

async fn count(db: &TestDb, sql: &str) -> u64 {
    db.client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get::<_, i64>(0) as u64
}

/// Every unit's rows add up per child relation to `count(*) FROM ONLY` it, and to the table.
async fn assert_rows_per_child(db: &TestDb, table: &TableManifest) -> BTreeMap<String, u64> {
    let mut per_child: BTreeMap<String, u64> = BTreeMap::new();
    for unit in &table.partitions {
        let relation = unit.relation.clone().unwrap_or_else(|| panic!("unit without relation: {unit:?}"));
        *per_child.entry(relation).or_default() += unit.rows;
    }
    for (child, rows) in &per_child {
        assert_eq!(*rows, count(db, &format!("SELECT count(*) FROM ONLY {child}")).await, "{child}");
    }
    assert_eq!(table.row_count, count(db, &format!("SELECT count(*) FROM {}", table.name)).await);
    assert_eq!(per_child.values().sum::<u64>(), table.row_count);
    per_child
}

/// `count(*)`, `count(DISTINCT id)` and `sum(id)` of every Parquet file of the run, read by DuckDB
/// (the BigQuery emulator's environment has it: `PG2BQ_TEST_BQ_PYTHON`).
fn read_back(python: &str, run_dir: &Path) -> (u64, u64, i128) {
    let pattern = format!("{}/**/*.parquet", run_dir.display());
    let script = "import duckdb, sys\nrow = duckdb.sql(\"SELECT count(*), count(DISTINCT id), sum(id) FROM read_parquet(?)\", params=[sys.argv[1]]).fetchone()\nprint(*row)";
    let out = std::process::Command::new(python).args(["-c", script, &pattern]).output().unwrap();
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    (fields[0].parse().unwrap(), fields[1].parse().unwrap(), fields[2].parse().unwrap())
}

async fn postgres_ids(db: &TestDb, table: &str) -> (u64, i128) {
    let row = db.client.query_one(&format!("SELECT count(*), sum(id)::text FROM {table}"), &[]).await.unwrap();
    (row.get::<_, i64>(0) as u64, row.get::<_, String>(1).parse().unwrap())
}

#[tokio::test]
async fn hypertable_shaped_table_exports_chunk_by_chunk_with_exact_rows() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let (db, dest, manifest) = exported(&url, HYPERTABLE_SHAPED, "mentions", &[]).await;
    let table = &manifest.tables[0];
    assert_eq!(table.row_count, 1_000_000);
    let per_child = assert_rows_per_child(&db, table).await;
    let children: Vec<String> = (0..24).map(|m| format!("{}.mentions_{}_{:02}", db.schema, 2024 + m / 12, 1 + m % 12)).collect();
    assert_eq!(per_child.keys().cloned().collect::<Vec<_>>(), children, "every child, and not the empty parent");
    assert!(table.partitions.len() >= 24 && table.partitions.iter().all(|p| p.method.starts_with("child")), "{:?}", table.partitions);
    let (rows, distinct, sum) = read_back(&python, &dest.path().join("r"));
    let (pg_rows, pg_sum) = postgres_ids(&db, &db.table("mentions")).await;
    assert_eq!((rows, distinct, sum), (pg_rows, pg_rows, pg_sum));
    let score = table.columns.iter().find(|c| c.mapping.name == "score").unwrap();
    let pg_score: f64 = db.client.query_one(&format!("SELECT sum(score) FROM {}", db.table("mentions")), &[]).await.unwrap().get(0);
    let exported: f64 = score.aggregates.sum.as_deref().unwrap().parse().unwrap();
    assert!((exported - pg_score).abs() <= pg_score.abs() * 1e-12, "{exported} vs {pg_score}");
    db.drop().await;
}

#[tokio::test]
async fn declarative_partitions_nested_and_default_export_leaf_by_leaf() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let python = skip_unless!("PG2BQ_TEST_BQ_PYTHON");
    let db = TestDb::new(&url, &declarative(60_000)).await;
    let leaves = ["orders_2023", "orders_2024_eu", "orders_2024_other", "orders_default"].map(|l| format!("{}.{l}", db.schema));
    for (extra, method, units) in [(&[][..], "child", 4), (&["--partitions", "2"][..], "child_block_range", 8)] {
        let dest = tempfile::tempdir().unwrap();
        let manifest = export(&url, dest.path(), &db.table("orders"), extra);
        let table = &manifest.tables[0];
        assert_eq!(table.row_count, 60_000);
        assert_eq!(table.partitions.len(), units, "{:?}", table.partitions);
        assert!(table.partitions.iter().all(|p| p.method == method), "{:?}", table.partitions);
        let per_child = assert_rows_per_child(&db, table).await;
        assert_eq!(per_child.keys().cloned().collect::<Vec<_>>(), leaves);
        assert!(per_child.values().all(|&rows| rows > 0), "{per_child:?}");
        let (pg_rows, pg_sum) = postgres_ids(&db, &db.table("orders")).await;
        assert_eq!(read_back(&python, &dest.path().join("r")), (pg_rows, pg_rows, pg_sum));
        let amount = table.columns.iter().find(|c| c.mapping.name == "amount").unwrap();
        let pg_amount: String =
            db.client.query_one(&format!("SELECT sum(amount)::text FROM {}", db.table("orders")), &[]).await.unwrap().get(0);
        assert_eq!(amount.aggregates.sum.as_deref(), Some(minimal_decimal(&pg_amount).as_str()));
    }
    db.drop().await;
}

#[tokio::test]
async fn an_inheritance_parent_s_own_rows_and_its_children_are_each_exported_once() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let (db, dest, manifest) = exported(&url, INHERITED, "logs", &[]).await;
    let table = &manifest.tables[0];
    assert_eq!(table.row_count, 9_000);
    let per_child = assert_rows_per_child(&db, table).await;
    let expected: BTreeMap<String, u64> =
        [("logs", 5000), ("logs_archive", 3000), ("logs_archive_old", 1000)].map(|(t, n)| (format!("{}.{t}", db.schema), n)).into();
    assert_eq!(per_child, expected);
    assert_eq!(table.columns.len(), 2, "the parent's columns only");
    let id = &table.columns[0];
    let (_, pg_sum) = postgres_ids(&db, &db.table("logs")).await;
    assert_eq!(id.aggregates.sum.as_deref(), Some(pg_sum.to_string().as_str()));
    let batches = read_parquet_dir(&dest.path().join("r"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 9_000);
    db.drop().await;
}

#[tokio::test]
async fn partitioned_runs_load_and_validate_clean() {
    let s = emulators!();
    // Few rows: the emulator's fingerprints take about a millisecond a row.
    let db = TestDb::new(&s.pg_url, &declarative(3_000)).await;
    let manifest = s.export(&[db.table("orders")], &["--partitions", "2"]);
    let out = s.load(&manifest, &[]);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.count(&format!("{}__orders", db.schema)).await, 3_000);
    let (code, report, stderr) = s.validate(&manifest, &["--source", &s.pg_url]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert!(failed_checks(&report).is_empty(), "{report:#}");
    db.drop().await;
}

#[tokio::test]
async fn a_child_the_role_may_not_read_is_refused_by_name_with_the_ways_out() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, &declarative(3_000)).await;
    let s = db.schema.clone();
    let role = format!("{s}_reader");
    // Partitions do not inherit the parent's grants: through the parent this role reads everything.
    let grants = format!("CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA {s} TO {role}; GRANT SELECT ON {s}.orders TO {role};");
    db.client.batch_execute(&grants).await.unwrap();
    let mut role_url = url::Url::parse(&url).unwrap();
    role_url.set_username(&role).unwrap();
    role_url.set_password(None).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let args = ["export", "--source", role_url.as_str(), "--dest", dest.path().to_str().unwrap(), "--table", &db.table("orders")];
    let refused = pg2bq(&args);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    for leaf in ["orders_2023", "orders_2024_eu", "orders_2024_other", "orders_default"] {
        assert!(stderr.contains(&format!("GRANT SELECT ON {s}.{leaf} TO {role}")), "{leaf}: {stderr}");
    }
    assert!(stderr.contains("--partition-on"), "{stderr}");
    let through_parent = pg2bq(&[&args[..], &["--partition-on", "id", "--run-id", "p"]].concat());
    assert!(through_parent.status.success(), "{}", String::from_utf8_lossy(&through_parent.stderr));
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dest.path().join("p/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.tables[0].row_count, 3_000);
    assert!(manifest.tables[0].partitions.iter().all(|p| p.method.starts_with("key_")), "{:?}", manifest.tables[0].partitions);
    db.client.batch_execute(&format!("DROP SCHEMA {s} CASCADE; DROP ROLE {role}")).await.unwrap();
}

#[tokio::test]
async fn a_foreign_partition_is_refused_by_name_before_anything_is_read() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "CREATE TABLE p (id int8 NOT NULL, v text) PARTITION BY RANGE (id);").await;
    let s = db.schema.clone();
    // A server nothing listens on: reading the foreign partition would fail with its error.
    db.client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS postgres_fdw;
             CREATE SERVER {s}_nowhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '1', dbname 'x');
             CREATE TABLE {s}.p_local PARTITION OF {s}.p FOR VALUES FROM (0) TO (100);
             CREATE FOREIGN TABLE {s}.p_remote PARTITION OF {s}.p FOR VALUES FROM (100) TO (200) SERVER {s}_nowhere;"
        ))
        .await
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let out = pg2bq(&["export", "--source", &url, "--dest", dest.path().to_str().unwrap(), "--table", &db.table("p")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("table `{s}.p`: child `{s}.p_remote` is a foreign table")), "{stderr}");
    assert!(stderr.contains("DETACH PARTITION") && !stderr.contains("could not connect"), "{stderr}");
    assert!(walk(dest.path()).is_empty(), "nothing written");
    db.client.batch_execute(&format!("DROP SERVER {s}_nowhere CASCADE; DROP SCHEMA {s} CASCADE")).await.unwrap();
}
