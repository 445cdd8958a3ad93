//! `pg2bq validate` raises no false alarm on columns without a value: all NULL, all NaN, empty
//! tables, and a string column whose smallest value is the text `NULL`. Real Postgres,
//! fake-gcs-server and the BigQuery emulator.

use std::fmt::Write;
use std::process::Command;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::*;
use crate::{emulators, skip_unless};

/// Exports `tables` to fake-gcs, loads them, validates; returns the exit code, report, stderr.
fn export_load_validate(s: &Emulators, tables: &[String]) -> (Option<i32>, serde_json::Value, String) {
    let manifest = s.export(tables, &[]);
    let out = s.load(&manifest, &[]);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    s.validate(&manifest, &[])
}

/// `(expected, actual, passed)` of one check of the report.
fn check<'a>(report: &'a serde_json::Value, name: &str, column: &str) -> (&'a str, &'a str, bool) {
    let check = report["tables"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name && c["column"] == column)
        .unwrap_or_else(|| panic!("no `{name}` check of `{column}`"));
    (check["expected"].as_str().unwrap(), check["actual"].as_str().unwrap(), check["passed"].as_bool().unwrap())
}

/// Each column here made validate fail a clean load: LOGICAL_AND of no value became 'false',
/// TO_JSON_STRING(NULL) fingerprinted `null`, BigQuery's SUM of NaNs only (NULL) was not
/// taken for the manifest's 0, and the text "NULL" was read as SQL NULL.
#[tokio::test]
async fn all_null_bool_json_all_nan_float_and_null_text_validate_clean() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE edge (id int PRIMARY KEY, flag bool, doc jsonb, ratio float8, word text);
         INSERT INTO edge VALUES (1, NULL, NULL, 'NaN', 'NULL'), (2, NULL, NULL, 'NaN', 'b'), (3, NULL, NULL, NULL, NULL);",
    )
    .await;
    let (code, report, stderr) = export_load_validate(&s, &[db.table("edge")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["passed"], true);
    assert_eq!(check(&report, "min", "flag"), ("NULL", "NULL", true));
    assert_eq!(check(&report, "max", "flag"), ("NULL", "NULL", true));
    assert_eq!(check(&report, "null_count", "doc"), ("3", "3", true));
    assert_eq!(check(&report, "fingerprint_sum", "doc"), ("0", "NULL", true));
    assert_eq!(check(&report, "nan_count", "ratio"), ("2", "2", true));
    assert_eq!(check(&report, "sum", "ratio"), ("0", "NULL", true));
    assert_eq!(check(&report, "min", "word"), ("NULL", "NULL", true));
    assert_eq!(check(&report, "max", "word"), ("b", "b", true));
    db.drop().await;
}

/// A column type of the type matrix and a random non-NULL value of it, as a SQL literal.
struct ColumnType {
    sql: &'static str,
    value: fn(&mut StdRng) -> String,
    /// Can hold NaN (all-NaN columns are drawn for these).
    float: bool,
}

const WORDS: [&str; 7] = ["NULL", "", "a", "b c", "é🙂", "'quoted'", "null"];

fn column(sql: &'static str, value: fn(&mut StdRng) -> String) -> ColumnType {
    ColumnType { sql, value, float: false }
}

fn column_types() -> Vec<ColumnType> {
    vec![
        column("bool", |r| r.gen::<bool>().to_string()),
        column("int2", |r| r.gen::<i16>().to_string()),
        column("int4", |r| r.gen::<i32>().to_string()),
        column("int8", |r| r.gen::<i64>().to_string()),
        ColumnType { sql: "float4", value: |r| format!("'{}'", r.gen_range(-1e6f32..1e6)), float: true },
        ColumnType { sql: "float8", value: |r| format!("'{}'", r.gen_range(-1e12..1e12)), float: true },
        column("numeric(12,2)", |r| format!("{:.2}", r.gen_range(-1e9..1e9))),
        column("numeric(38,9)", |r| format!("{}.{:09}", r.gen::<i64>(), r.gen_range(0..1_000_000_000))),
        column("text", |r| format!("'{}'", WORDS[r.gen_range(0..WORDS.len())].replace('\'', "''"))),
        column("varchar(20)", |r| format!("'{}'", WORDS[r.gen_range(0..WORDS.len())].replace('\'', "''"))),
        column("char(3)", |r| format!("'{}'", ["a", "bc", "def"][r.gen_range(0..3)])),
        column("uuid", |r| format!("'{:032x}'", r.gen::<u128>())),
        column("bytea", |r| {
            let bytes = r.gen_range(1..=8usize);
            format!("'\\x{:0width$x}'", r.gen::<u64>() >> (64 - 8 * bytes), width = 2 * bytes)
        }),
        column("date", |r| format!("DATE '1970-01-01' + {}", r.gen_range(-700_000..2_900_000))),
        column("time", |r| format!("TIME '00:00' + {} * interval '1 microsecond'", r.gen_range(0..86_400_000_000i64))),
        column("timestamp", |r| {
            format!("TIMESTAMP '1970-01-01' + {} * interval '1 second'", r.gen_range(-2_000_000_000i64..4_000_000_000))
        }),
        column("timestamptz", |r| format!("TIMESTAMPTZ '1970-01-01 00:00+00' + {} * interval '1 microsecond'", r.gen::<i32>())),
        column("jsonb", |r| format!("'{{\"k\": {}, \"s\": \"{}\"}}'", r.gen::<i32>(), ["x", "", "é"][r.gen_range(0..3)])),
        column("json", |r| format!("'[{}, true, null]'", r.gen::<i16>())),
        column("int4[]", |r| {
            format!("ARRAY[{}]::int4[]", (0..r.gen_range(0..3)).map(|_| r.gen::<i32>().to_string()).collect::<Vec<_>>().join(","))
        }),
        column("text[]", |r| {
            format!(
                "ARRAY[{}]::text[]",
                (0..r.gen_range(0..3)).map(|_| format!("'{}'", WORDS[r.gen_range(0..3)])).collect::<Vec<_>>().join(",")
            )
        }),
        column("float8[]", |r| format!("ARRAY[{}]::float8[]", r.gen_range(-1e3..1e3))),
        column("bool[]", |r| format!("ARRAY[{}]", r.gen::<bool>())),
        column("uuid[]", |r| format!("ARRAY['{:032x}']::uuid[]", r.gen::<u128>())),
        column("numeric(10,3)[]", |r| format!("ARRAY[{:.3}]::numeric(10,3)[]", r.gen_range(-1e6..1e6))),
        column("jsonb[]", |r| format!("ARRAY['{{\"k\": {}}}']::jsonb[]", r.gen::<i16>())),
        column("name", |r| format!("'{}'", WORDS[r.gen_range(0..3)])),
        column("money", |r| format!("{:.2}", r.gen_range(-1e6..1e6))),
        column("interval", |r| format!("interval '{} seconds'", r.gen::<i32>())),
        column("inet", |r| format!("'10.{}.{}.{}'", r.gen::<u8>(), r.gen::<u8>(), r.gen::<u8>())),
        column("cidr", |r| format!("'10.{}.0.0/16'", r.gen::<u8>())),
        column("macaddr", |r| format!("'08:00:2b:01:02:{:02x}'", r.gen::<u8>())),
        column("bit(4)", |r| format!("B'{:04b}'", r.gen_range(0..16))),
        column("varbit", |r| format!("B'{:b}'", r.gen_range(1..64))),
        column("timetz", |r| format!("'{:02}:34:56+05:30'", r.gen_range(0..24))),
        column("xml", |r| format!("'<a>{}</a>'", r.gen::<u16>())),
        column("tsvector", |r| format!("'cat:{} fat'", r.gen_range(1..9))),
        column("point", |r| format!("'({},{})'", r.gen::<i16>(), r.gen::<i16>())),
        column("int4range", |r| format!("int4range({}, {})", r.gen_range(-100..0), r.gen_range(0..100))),
    ]
}

/// How a column is filled.
#[derive(Debug, Clone, Copy)]
enum Fill {
    AllNull,
    AllNan,
    Mixed,
    NoNull,
}

/// `CREATE TABLE` and `INSERT` for a random table: 4–7 columns of random types, about half
/// of them all NULL, some rows or none.
fn random_table(rng: &mut StdRng, name: &str) -> (String, String) {
    let types = column_types();
    let rows = if rng.gen_bool(0.25) { 0 } else { rng.gen_range(1..=8) };
    let mut columns: Vec<(&ColumnType, Fill)> = Vec::new();
    for _ in 0..rng.gen_range(4..=7) {
        let column = &types[rng.gen_range(0..types.len())];
        let fill = match rng.gen_range(0..6) {
            0..=2 => Fill::AllNull,
            3 if column.float => Fill::AllNan,
            3 | 4 => Fill::Mixed,
            _ => Fill::NoNull,
        };
        columns.push((column, fill));
    }
    let mut sql = format!("CREATE TABLE {name} (id int PRIMARY KEY");
    for (i, (column, _)) in columns.iter().enumerate() {
        write!(sql, ", c{i} {}", column.sql).unwrap();
    }
    sql.push_str(");\n");
    for id in 1..=rows {
        let values: Vec<String> = columns
            .iter()
            .map(|(column, fill)| match fill {
                Fill::AllNull => "NULL".to_string(),
                Fill::AllNan => "'NaN'".to_string(),
                Fill::Mixed if rng.gen_bool(0.5) => "NULL".to_string(),
                Fill::Mixed | Fill::NoNull => (column.value)(rng),
            })
            .collect();
        writeln!(sql, "INSERT INTO {name} VALUES ({id}, {});", values.join(", ")).unwrap();
    }
    let layout = columns.iter().map(|(c, f)| format!("{} {f:?}", c.sql)).collect::<Vec<_>>().join(", ");
    (sql, format!("{name}: {rows} rows; {layout}"))
}

/// Property: validate is clean (exit 0, every check passed) on random tables with all-NULL,
/// all-NaN, mixed and full columns of the type matrix's types, some of them empty. Each case
/// prints its seed; `PG2BQ_TEST_SEED=<seed>` replays one case.
#[tokio::test]
async fn validate_is_clean_on_random_tables_with_all_null_columns() {
    let s = emulators!();
    let seeds: Vec<u64> = match std::env::var("PG2BQ_TEST_SEED") {
        Ok(seed) => vec![seed.parse().expect("PG2BQ_TEST_SEED is a u64")],
        Err(_) => (0..4).map(|_| rand::random()).collect(),
    };
    for seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let (first, first_layout) = random_table(&mut rng, "first");
        let (second, second_layout) = random_table(&mut rng, "second");
        eprintln!("case seed {seed}:\n  {first_layout}\n  {second_layout}");
        let db = TestDb::new(&s.pg_url, &format!("{first}{second}")).await;
        let (code, report, stderr) = export_load_validate(&s, &[db.table("first"), db.table("second")]);
        assert_eq!(code, Some(0), "seed {seed} (replay with PG2BQ_TEST_SEED={seed}):\n{stderr}");
        assert_eq!(report["passed"], true, "seed {seed}");
        db.drop().await;
    }
}

/// Runs the pg2bq binary with `args`, RUST_LOG set to `rust_log` or removed; returns stderr.
fn stderr_of(args: &[&str], rust_log: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pg2bq"));
    command.args(args).env("NO_COLOR", "1").env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pg2bq {args:?}: {stderr}");
    stderr
}

/// Log lines at `level` (`INFO`, `DEBUG`, `TRACE`) from pg2bq itself.
fn pg2bq_lines(stderr: &str, level: &str) -> usize {
    stderr.lines().filter(|l| l.split_whitespace().nth(1) == Some(level) && l.contains(" pg2bq::")).count()
}

/// `-v` adds pg2bq's DEBUG lines (one per batch), `-vv` its TRACE lines, and RUST_LOG still
/// overrides both.
#[tokio::test]
async fn verbose_flags_add_debug_and_trace_lines_and_rust_log_overrides_them() {
    let pg_url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&pg_url, "CREATE TABLE v (id int PRIMARY KEY); INSERT INTO v SELECT generate_series(1, 30);").await;
    let dest = tempfile::tempdir().unwrap();
    let table = db.table("v");
    let export = |flags: &[&str], rust_log: Option<&str>| {
        let mut args = vec!["export", "--source", &pg_url, "--dest", dest.path().to_str().unwrap(), "--table", &table];
        args.extend(["--batch-rows", "10", "--progress", "off"]);
        args.extend(flags);
        stderr_of(&args, rust_log)
    };
    let quiet = export(&[], None);
    assert_eq!((pg2bq_lines(&quiet, "DEBUG"), pg2bq_lines(&quiet, "TRACE")), (0, 0), "{quiet}");
    assert!(pg2bq_lines(&quiet, "INFO") >= 2, "{quiet}");
    let verbose = export(&["-v"], None);
    // One DEBUG line per batch: 30 rows in batches of 10 (and ConnectorX's empty last batch).
    let batch_rows = |stderr: &str| -> u64 {
        let batches = stderr.lines().filter(|l| l.contains(" DEBUG pg2bq::export: Wrote batch") && l.contains(&table));
        batches.map(|l| l.rsplit_once("rows=").expect("a batch line names its rows").1.parse::<u64>().unwrap()).sum()
    };
    assert_eq!((batch_rows(&verbose), pg2bq_lines(&verbose, "TRACE")), (30, 0), "{verbose}");
    let very_verbose = export(&["-vv"], None);
    assert_eq!(batch_rows(&very_verbose), 30, "{very_verbose}");
    assert!(very_verbose.lines().any(|l| l.contains(" TRACE ") && l.contains("pg2bq::export: Streaming partition")), "{very_verbose}");
    let overridden = export(&["-vv"], Some("pg2bq=warn"));
    assert_eq!(overridden.lines().filter(|l| l.starts_with("20")).count(), 0, "{overridden}");
    db.drop().await;
}

/// `--progress on` with stderr not a terminal: plain lines, each on its own line (no `\r`
/// drawn over a log line), ending with each table's final state, for export, load and validate.
#[tokio::test]
async fn progress_on_prints_each_tables_final_state_on_its_own_lines() {
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE p (id int PRIMARY KEY, t text); INSERT INTO p SELECT i, md5(i::text) FROM generate_series(1, 3000) i;",
    )
    .await;
    let table = db.table("p");
    let bq_table = format!("{}__p", db.schema);
    let dest = format!("gs://{}/progress-{:08x}", s.bucket, rand::random::<u32>());
    let manifest = format!("{dest}/run1/manifest.json");
    let (project, dataset) = (s.project.as_str(), s.dataset.as_str());
    let stages = [
        (
            vec!["export", "--source", &s.pg_url, "--dest", &dest, "--run-id", "run1", "--table", &table, "--batch-rows", "500"],
            format!("{table}: 3000/3000 rows, "),
        ),
        (
            vec!["load", "--manifest", &manifest, "--project", project, "--dataset", dataset, "--create-dataset"],
            format!("{bq_table}: 3000/3000 rows, 1/1 job(s), "),
        ),
        (vec!["validate", "--manifest", &manifest, "--project", project, "--dataset", dataset], format!("{table}: ")),
    ];
    for (mut args, final_state) in stages {
        args.extend(["--progress", "on"]);
        let stderr = stderr_of(&args, None);
        assert!(!stderr.contains('\r'), "{stderr}");
        let done: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&final_state) && l.contains(", done in ")).collect();
        assert_eq!(done.len(), 1, "{args:?}: one final state `{final_state}… done in …`:\n{stderr}");
        if args[0] == "validate" {
            // row_count, 7 checks of `id` (counts, min, max, sum, fingerprints), 6 of `t` (no
            // sum), `row_fingerprint` and `required` for the key.
            assert!(done[0].starts_with(&format!("{table}: 16 checks, 0 failed, done in ")), "{}", done[0]);
        }
        // Every line is a log line (timestamp first), a progress line or the validation table.
        let log_lines = stderr.lines().filter(|l| l.starts_with("20")).count();
        assert!(log_lines >= 1, "{stderr}");
        for line in stderr.lines().filter(|l| l.starts_with("20")) {
            assert_eq!(line.matches(" INFO ").count() + line.matches(" WARN ").count(), 1, "two log lines on one: {line}");
            assert!(!line.contains(&final_state), "progress glued to a log line: {line}");
        }
    }
    db.drop().await;
}
