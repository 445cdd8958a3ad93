//! How the layers combine, for every stage: one table of every setting's precedence, and the
//! resolution rules around it (table names, column targets, refusals).

use super::*;
use crate::cli::{Cli, Command, ExportArgs};
use crate::export::config::{ExportConfig, ExportTable, TableSource};
use crate::gcp::schema::PartitionUnit;
use crate::load::LoadConfig;
use crate::model::manifest::TableManifest;
use crate::model::table_ref::TableRef;
use crate::model::types::OutOfRange;
use crate::validate::ValidateConfig;

/// Held while parsing, so a test that sets `PG2BQ_*` variables does not leak them into others.
static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn parse(argv: &[&str]) -> Command {
    let _environment = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    Cli::parse_test_argv([&["pg2bq"], argv].concat()).unwrap().command
}

fn args(argv: &[&str]) -> ExportArgs {
    match parse(&[&["export"], argv].concat()) {
        Command::Export(args) => args,
        _ => unreachable!("export arguments were parsed"),
    }
}

fn file(text: &str) -> ConfigFile {
    toml::from_str(text).unwrap()
}

/// One setting's layers: the flag, the file's entry for the table, the file's global value
/// (each with the value it resolves to; `None` where the setting has no such layer), and the
/// default (or the error without one). Each layer must beat all those below it.
struct Row<T> {
    setting: &'static str,
    flag: (&'static [&'static str], &'static str),
    table: Option<(&'static str, &'static str)>,
    global: Option<(&'static str, &'static str)>,
    default: &'static str,
    get: fn(&T) -> String,
}

/// Resolves each row with every layer, then without the highest each time, down to the default.
fn check_rows<T>(rows: &[Row<T>], resolve: impl Fn(&str, &[&str], &str) -> Result<T, ConfigError>) {
    for row in rows {
        let (table, global) = (row.table.unwrap_or(("", "")), row.global.unwrap_or(("", "")));
        let steps = [
            ("flag", Some(row.flag.1), row.flag.0, table.0, global.0),
            ("file table", row.table.map(|t| t.1), &[][..], table.0, global.0),
            ("file global", row.global.map(|g| g.1), &[][..], "", global.0),
            ("default", Some(row.default), &[][..], "", ""),
        ];
        for (layer, expected, flag, table, global) in steps {
            let Some(expected) = expected else { continue };
            let text = format!("{global}\n[[tables]]\nname = 'public.events'\n{table}\n");
            let got = resolve(row.setting, flag, &text).map_or_else(|e| e.to_string(), |resolved| (row.get)(&resolved));
            assert_eq!(got, expected, "{}: the {layer} should win", row.setting);
        }
    }
}

fn first_table(config: &ExportConfig) -> &ExportTable {
    &config.tables[0]
}

/// `jobs` as the number, or `cores` when it is the machine's.
fn jobs(config: &ExportConfig) -> String {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) == config.jobs {
        true => "cores".to_string(),
        false => config.jobs.to_string(),
    }
}

const EXPORT_ROWS: &[Row<ExportConfig>] = &[
    Row {
        setting: "source",
        flag: (&["--source", "postgresql://flag/db"], "postgresql://flag/db?connect_timeout=30&keepalives_idle=60"),
        table: None,
        global: Some(("source = 'host=file dbname=db'", "postgresql://file/db?connect_timeout=30&keepalives_idle=60")),
        default: "no source: pass --source, set PG2BQ_SOURCE or DATABASE_URL, or put `source` in the config file",
        get: |c| c.source_url.clone(),
    },
    Row {
        setting: "dest",
        flag: (&["--dest", "flag-dir"], "flag-dir"),
        table: None,
        global: Some(("dest = 'file-dir'", "file-dir")),
        default: "no destination: pass --dest, set PG2BQ_DEST, or put `dest` in the config file",
        get: |c| c.destination.clone(),
    },
    Row { setting: "jobs", flag: (&["--jobs", "93"], "93"), table: None, global: Some(("jobs = 97", "97")), default: "cores", get: jobs },
    Row {
        setting: "partitions",
        flag: (&["--partitions", "5"], "Some(5)"),
        table: Some(("partitions = 3", "Some(3)")),
        global: None,
        default: "None",
        get: |c| format!("{:?}", first_table(c).partitions),
    },
    Row {
        setting: "out_of_range",
        flag: (&["--out-of-range", "refuse"], "Refuse"),
        table: Some(("out_of_range = 'clamp'", "Clamp")),
        global: Some(("out_of_range = 'null'", "Null")),
        default: "Refuse",
        get: |c| format!("{:?}", first_table(c).out_of_range),
    },
    Row {
        setting: "on_bad_value",
        flag: (&["--on-bad-value", "quarantine"], "Quarantine"),
        table: Some(("on_bad_value = 'refuse'", "Refuse")),
        global: Some(("on_bad_value = 'quarantine'", "Quarantine")),
        default: "Refuse",
        get: |c| format!("{:?}", first_table(c).on_bad_value),
    },
    Row {
        setting: "partition_on",
        flag: (&["--partition-on", "events.other"], "Some(\"other\")"),
        table: Some(("partition_on = 'id'", "Some(\"id\")")),
        global: None,
        default: "None",
        get: |c| format!("{:?}", first_table(c).partition_on),
    },
    Row {
        setting: "watermark",
        flag: (&["--since", "m", "--watermark", "created_at"], "Some(\"created_at\")"),
        table: Some(("watermark = 'id'", "Some(\"id\")")),
        global: None,
        default: "None",
        get: |c| format!("{:?}", first_table(c).watermark),
    },
    Row {
        setting: "updated_at",
        flag: (&["--since", "m", "--updated-at", "public.events.changed_at"], "Some(\"changed_at\")"),
        table: Some(("updated_at = 'touched_at'", "Some(\"touched_at\")")),
        global: None,
        default: "None",
        get: |c| format!("{:?}", first_table(c).updated_at),
    },
    Row {
        setting: "cast (by column)",
        flag: (&["--cast", "events.a=text"], "[\"a\", \"b\"]"),
        table: Some(("cast = { b = 'text' }", "[\"b\"]")),
        global: None,
        default: "[]",
        get: |c| format!("{:?}", first_table(c).casts.keys().collect::<Vec<_>>()),
    },
    Row {
        setting: "batch_rows",
        flag: (&["--batch-rows", "100"], "100"),
        table: None,
        global: None,
        default: "16384",
        get: |c| c.batch_rows.to_string(),
    },
    Row {
        setting: "zstd_level",
        flag: (&["--zstd-level", "9"], "9"),
        table: None,
        global: None,
        default: "1",
        get: |c| c.parquet.zstd_level.to_string(),
    },
    Row {
        setting: "lock_timeout",
        flag: (&["--lock-timeout", "2m"], "120s"),
        table: None,
        global: None,
        default: "30s",
        get: |c| format!("{:?}", c.lock_timeout),
    },
    Row {
        setting: "lock_wait (the last flag)",
        flag: (&["--lock-wait", "1s", "--lock-wait", "5m"], "300s"),
        table: None,
        global: None,
        default: "0ns",
        get: |c| format!("{:?}", c.lock_wait),
    },
];

#[test]
fn every_export_setting_takes_the_flag_then_the_file_table_then_the_file_then_the_default() {
    check_rows(EXPORT_ROWS, |setting, flag, text| {
        let base: &[&str] = match setting {
            "source" => &["--dest", "d"],
            "dest" => &["--source", "postgresql://h/db"],
            _ => &["--source", "postgresql://h/db", "--dest", "d"],
        };
        ExportConfig::resolve(&args(&[base, flag].concat()), file(text), None)
    });
}

fn load_args(argv: &[&str]) -> crate::cli::LoadArgs {
    match parse(&[&["load", "--manifest", "gs://b/r/manifest.json"], argv].concat()) {
        Command::Load(args) => args,
        _ => unreachable!("load arguments were parsed"),
    }
}

/// A routing option of `events`, or `None` when it has none.
fn route(config: &LoadConfig, option: fn(&crate::gcp::routes::TargetOptions) -> String) -> String {
    config.target.routing.tables.get("events").map_or_else(|| "None".to_string(), option)
}

const LOAD_ROWS: &[Row<LoadConfig>] = &[
    Row {
        setting: "project",
        flag: (&["--project", "flag-p"], "flag-p"),
        table: None,
        global: Some(("project = 'file-p'", "file-p")),
        default: "no BigQuery project: pass --project, set GOOGLE_CLOUD_PROJECT, or put `project` in the config file",
        get: |c| c.target.project.clone(),
    },
    Row {
        setting: "dataset",
        flag: (&["--dataset", "flag-d"], "flag-d"),
        table: None,
        global: Some(("dataset = 'file-d'", "file-d")),
        default: "no BigQuery dataset: pass --dataset, set BIGQUERY_DATASET, or put `dataset` in the config file",
        get: |c| c.target.dataset.clone(),
    },
    Row {
        setting: "location",
        flag: (&["--location", "EU"], "Some(\"EU\")"),
        table: None,
        global: Some(("location = 'US'", "Some(\"US\")")),
        default: "None",
        get: |c| format!("{:?}", c.target.location),
    },
    Row {
        setting: "table-map / target",
        flag: (&["--table-map", "events=flag_t"], "{\"events\": \"flag_t\"}"),
        table: Some(("target = 'file_t'", "{\"events\": \"file_t\"}")),
        global: None,
        default: "{}",
        get: |c| format!("{:?}", c.target.names.map),
    },
    Row {
        setting: "partition-by",
        flag: (&["--partition-by", "events.a:MONTH"], "{\"events\": (\"a\", Month)}"),
        table: Some(("partition_by = 'b'", "{\"events\": (\"b\", Day)}")),
        global: None,
        default: "{}",
        get: |c| format!("{:?}", c.target.partition_by),
    },
    Row {
        setting: "cluster-by",
        flag: (&["--cluster-by", "public.events.a,c"], "{\"events\": [\"a\", \"c\"]}"),
        table: Some(("cluster_by = ['b']", "{\"events\": [\"b\"]}")),
        global: None,
        default: "{}",
        get: |c| format!("{:?}", c.target.cluster_by),
    },
    Row {
        setting: "key / merge_key",
        flag: (&["--key", "events.a"], "{\"events\": [\"a\"]}"),
        table: Some(("merge_key = ['b']", "{\"events\": [\"b\"]}")),
        global: None,
        default: "{}",
        get: |c| format!("{:?}", c.target.merge_keys),
    },
    Row {
        setting: "column-map (by column)",
        flag: (&["--column-map", "events.a=x"], "{\"a\": \"x\", \"b\": \"z\"}"),
        table: Some(("column_map = { a = 'y', b = 'z' }", "{\"a\": \"y\", \"b\": \"z\"}")),
        global: None,
        default: "None",
        get: |c| route(c, |t| format!("{:?}", &t.column_map)),
    },
    Row {
        setting: "exclude-column (the union)",
        flag: (&["--exclude-column", "events.a"], "{\"a\", \"b\"}"),
        table: Some(("exclude_columns = ['b']", "{\"b\"}")),
        global: None,
        default: "None",
        get: |c| route(c, |t| format!("{:?}", &t.excluded)),
    },
    Row {
        setting: "set (by column)",
        flag: (&["--set", "events.c='1'"], "{\"c\": \"1\"}"),
        table: Some(("set = { c = '2' }", "{\"c\": \"2\"}")),
        global: None,
        default: "None",
        get: |c| route(c, |t| format!("{:?}", &t.set)),
    },
    Row {
        setting: "default (by column)",
        flag: (&["--default", "events.c={}"], "{\"c\": \"{}\"}"),
        table: Some(("default = { c = '[]' }", "{\"c\": \"[]\"}")),
        global: None,
        default: "None",
        get: |c| route(c, |t| format!("{:?}", &t.defaults)),
    },
    Row {
        setting: "allow-lossy (by column)",
        flag: (&["--allow-lossy", "events.a=FLOAT64"], "[\"a\", \"b\"]"),
        table: Some(("allow_lossy = { b = 'FLOAT' }", "[\"b\"]")),
        global: None,
        default: "None",
        get: |c| route(c, |t| format!("{:?}", t.lossy.keys().collect::<Vec<_>>())),
    },
    Row {
        setting: "date-to-timestamp",
        flag: (&["--date-to-timestamp"], "true"),
        table: None,
        global: None,
        default: "false",
        get: |c| c.target.routing.date_to_timestamp.to_string(),
    },
    Row {
        setting: "mode",
        flag: (&["--mode", "merge"], "Merge"),
        table: None,
        global: None,
        default: "Truncate",
        get: |c| format!("{:?}", c.target.mode),
    },
    Row {
        setting: "streaming-buffer-wait",
        flag: (&["--streaming-buffer-wait", "1m"], "Some(60s)"),
        table: None,
        global: None,
        default: "None",
        get: |c| format!("{:?}", c.bigquery.streaming_buffer_wait),
    },
];

#[test]
fn every_load_setting_takes_the_flag_then_the_file_table_then_the_file_then_the_default() {
    check_rows(LOAD_ROWS, |setting, flag, text| {
        let base: &[&str] = match setting {
            "project" => &["--dataset", "d"],
            "dataset" => &["--project", "p"],
            _ => &["--project", "p", "--dataset", "d"],
        };
        LoadConfig::resolve(&load_args(&[base, flag].concat()), file(text))
    });
}

const VALIDATE_ROWS: &[Row<ValidateConfig>] = &[
    Row {
        setting: "project",
        flag: (&["--project", "flag-p"], "flag-p"),
        table: None,
        global: Some(("project = 'file-p'", "file-p")),
        default: "no BigQuery project: pass --project, set GOOGLE_CLOUD_PROJECT, or put `project` in the config file",
        get: |c| c.project.clone(),
    },
    Row {
        setting: "table-map / target",
        flag: (&["--table-map", "public.events=flag_t"], "{\"events\": \"flag_t\"}"),
        table: Some(("target = 'file_t'", "{\"events\": \"file_t\"}")),
        global: None,
        default: "{}",
        get: |c| format!("{:?}", c.names.map),
    },
    Row {
        setting: "source",
        flag: (&["--source", "host=h dbname=db"], "Some(\"postgresql://h/db?connect_timeout=30&keepalives_idle=60\")"),
        table: None,
        global: None,
        default: "None",
        get: |c| format!("{:?}", c.source_url),
    },
    Row {
        setting: "sample",
        flag: (&["--sample", "3"], "3"),
        table: None,
        global: None,
        default: "10",
        get: |c| c.sample_rows.to_string(),
    },
];

#[test]
fn every_validate_setting_takes_the_flag_then_the_file_then_the_default() {
    check_rows(VALIDATE_ROWS, |setting, flag, text| {
        let base: &[&str] = if setting == "project" { &["--dataset", "d"] } else { &["--project", "p", "--dataset", "d"] };
        match parse(&[&["validate", "--manifest", "m"], base, flag].concat()) {
            Command::Validate(args) => ValidateConfig::resolve(&args, file(text)),
            _ => unreachable!("validate arguments were parsed"),
        }
    });
}

fn resolved(argv: &[&str], text: &str) -> ExportTable {
    let a = args(&[&["--source", "postgresql://h/db", "--dest", "d"], argv].concat());
    ExportConfig::resolve(&a, file(text), None).unwrap().tables.remove(0)
}

fn refused(argv: &[&str], text: &str) -> String {
    let a = args(&[&["--source", "postgresql://h/db", "--dest", "d"], argv].concat());
    ExportConfig::resolve(&a, file(text), None).unwrap_err().to_string()
}

#[test]
fn the_source_flag_beats_database_url_beats_the_file() {
    let a = args(&["--source", "postgresql://flag/db", "--dest", "/tmp/x"]);
    let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), Some("postgresql://env/db".into())).unwrap();
    assert_eq!(cfg.source_url, "postgresql://flag/db?connect_timeout=30&keepalives_idle=60");
    let a = args(&["--dest", "/tmp/x"]);
    let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), Some("postgresql://env/db".into())).unwrap();
    assert!(cfg.source_url.starts_with("postgresql://env/db?"), "{}", cfg.source_url);
    let err = ExportConfig::resolve(&a, file("source = 'host=h password=s3cret dbname'"), None).unwrap_err().to_string();
    assert!(err.starts_with("source `host=h password=*** dbname` is not a Postgres URL") && !err.contains("s3cret"), "{err}");
}

#[test]
fn variables_are_flags_and_beat_the_file() {
    let parsed = {
        let _environment = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var(crate::cli::env::PARTITIONS, "6");
        std::env::set_var(crate::cli::env::OUT_OF_RANGE, "refuse");
        std::env::set_var(crate::cli::env::JOBS, "5");
        let parsed = Cli::parse_test_argv(["pg2bq", "export", "--source", "postgresql://h/db", "--dest", "d"]);
        for name in [crate::cli::env::PARTITIONS, crate::cli::env::OUT_OF_RANGE, crate::cli::env::JOBS] {
            std::env::remove_var(name);
        }
        match parsed.unwrap().command {
            Command::Export(args) => args,
            _ => unreachable!(),
        }
    };
    let text = "jobs = 7\n[[tables]]\nname = 'public.events'\npartitions = 3\nout_of_range = 'clamp'\n";
    let cfg = ExportConfig::resolve(&parsed, file(text), None).unwrap();
    assert_eq!((cfg.jobs, cfg.tables[0].partitions, cfg.tables[0].out_of_range), (5, Some(6), OutOfRange::Refuse));
}

#[test]
fn a_repeated_flag_means_the_last() {
    assert_eq!(resolved(&["--partitions", "2", "--partitions", "7", "--table", "t"], "").partitions, Some(7));
    assert_eq!(resolved(&["--table", "t", "--out-of-range", "clamp", "--out-of-range", "null"], "").out_of_range, OutOfRange::Null);
    assert_eq!(resolved(&["--table", "t", "--partition-on", "a", "--partition-on", "t.b"], "").partition_on.as_deref(), Some("b"));
}

#[test]
fn zeros_in_the_file_are_refused() {
    assert_eq!(
        refused(&[], "[[tables]]\nname = 'Events'\npartitions = 0\n"),
        "table `Events`: `partitions = 0` in the config file; use 1 or more"
    );
    assert_eq!(refused(&["--table", "t"], "jobs = 0"), "`jobs = 0` in the config file; use 1 or more");
    assert_eq!(resolved(&["--partitions", "2"], "[[tables]]\nname = 'events'\npartitions = 0\n").partitions, Some(2));
}

#[test]
fn file_options_apply_to_a_table_however_it_is_spelt() {
    let t = resolved(&["--table", "EVENTS"], "[[tables]]\nname = 'public.events'\npartitions = 3\n");
    assert_eq!((t.name.as_str(), t.partitions), ("public.events", Some(3)));
    assert_eq!(t.source, TableSource::Table(TableRef::new("public", "events")));
}

#[test]
fn two_names_of_one_table_are_refused_naming_both() {
    let both = "both name `public.events`; list each table or query once";
    assert_eq!(refused(&["--table", "events", "--table", "public.events"], ""), format!("`events` and `public.events` {both}"));
    assert_eq!(refused(&["--table", "\"events\"", "--table", "Public.Events"], ""), format!("`\"events\"` and `Public.Events` {both}"));
    assert_eq!(
        refused(&[], "[[tables]]\nname = 'public.events'\n[[tables]]\nname = 'events'\n"),
        format!("`public.events` and `events` {both}")
    );
    assert_eq!(
        refused(&["--query", "q=SELECT 1", "--query", "q=SELECT 2"], ""),
        "`q` and `q` both name `q`; list each table or query once"
    );
}

/// `"sales.eu".orders` was joined to `sales.eu.orders` and cut at the first dot, so the
/// export read `sales."eu.orders"`.
#[test]
fn a_dot_inside_a_quoted_schema_stays_in_the_schema() {
    let t = resolved(&["--table", "\"sales.eu\".orders"], "");
    assert_eq!((t.source, t.name.as_str()), (TableSource::Table(TableRef::new("sales.eu", "orders")), "\"sales.eu\".orders"));
    let t = resolved(&["--table", "sales.\"eu.orders\""], "");
    assert_eq!((t.source, t.name.as_str()), (TableSource::Table(TableRef::new("sales", "eu.orders")), "sales.\"eu.orders\""));
}

#[test]
fn a_table_whose_directory_no_store_takes_is_refused_with_the_way_out() {
    let long = format!("\"{}\".\"{}\"", "é".repeat(31), "é".repeat(31));
    let err = refused(&["--table", &long], "");
    assert!(err.starts_with(&format!("table `{long}`: its directory in the run, `")), "{err}");
    assert!(err.contains("would be 373 bytes, more than the 255 a store takes in one path part"), "{err}");
    assert!(err.ends_with(&format!("export it as a query instead: --query NAME=SELECT * FROM {long}")), "{err}");
}

#[test]
fn queries_come_from_flags_and_the_file_by_one_rule() {
    assert_eq!(resolved(&["--query", "recent=SELECT 1 ;; \n"], "").source, TableSource::Query("SELECT 1".into()));
    let t = resolved(&[], "[[tables]]\nname = 'recent'\nquery = 'SELECT 2;'\n");
    assert_eq!((t.name.as_str(), t.source), ("recent", TableSource::Query("SELECT 2".into())));
    assert_eq!(refused(&[], "[[tables]]\nname = 'r'\nquery = ' ; '\n"), "config file table `r`");
    let err = ExportConfig::resolve(
        &args(&["--source", "postgresql://h/db", "--dest", "d"]),
        file("[[tables]]\nname = 'a.b'\nquery = 'SELECT 1'\n"),
        None,
    )
    .unwrap_err();
    assert!(std::error::Error::source(&err).unwrap().to_string().starts_with("query name `a.b` may only hold"), "{err}");
}

#[test]
fn column_flags_name_a_table_of_the_run_by_its_quoted_parts() {
    let tables = ["--table", "\"sales.eu\".orders", "--table", "sales.\"eu.orders\""];
    let casts = |cast: &str| {
        let a = args(&[&["--source", "postgresql://h/db", "--dest", "d"], &tables[..], &["--cast", cast]].concat());
        ExportConfig::resolve(&a, file(""), None)
            .map(|c| c.tables.iter().map(|t| t.casts.keys().cloned().collect::<Vec<_>>()).collect::<Vec<_>>())
    };
    assert_eq!(casts("\"sales.eu\".orders.amount=text").unwrap(), [vec!["amount".to_string()], vec![]]);
    assert_eq!(casts("sales.\"eu.orders\".\"Amount.x\"=text").unwrap(), [vec![], vec!["Amount.x".to_string()]]);
    assert!(casts("\"Sales.US\".Orders.amount=text")
        .unwrap_err()
        .to_string()
        .starts_with("--cast `\"Sales.US\".Orders.amount` names table `\"Sales.US\".orders`, which is not in this run"));
}

#[test]
fn qualified_targets_must_name_a_table_of_the_run() {
    let err = refused(&["--table", "a", "--cast", "b.c=text"], "");
    assert_eq!(err, "--cast `b.c` names table `b`, which is not in this run (tables: public.a)");
    let err = refused(&["--table", "a.t", "--table", "b.t", "--watermark", "t.c", "--since", "m"], "");
    assert_eq!(err, "--watermark `t.c` names table `t`, which is ambiguous (tables: a.t, b.t); qualify it as schema.table.c");
    let a = args(&["--source", "postgresql://h/db", "--dest", "d", "--table", "a.t", "--table", "b.u", "--cast", "t.c=text"]);
    let tables = ExportConfig::resolve(&a, file(""), None).unwrap().tables;
    assert_eq!((tables[0].casts.len(), tables[1].casts.len()), (1, 0));
    let t = resolved(&["--query", "Recent=SELECT 1 AS c", "--cast", "Recent.c=text"], "");
    assert_eq!(t.casts.keys().collect::<Vec<_>>(), ["c"]);
}

/// Load flags naming a table whose parts hold `.`, `=`, `,` or `:` inside quotes.
#[test]
fn load_flags_read_quoted_table_names() {
    let args = load_args(&[
        "--project",
        "p",
        "--dataset",
        "d",
        "--table-map",
        "\"sales.eu\".orders=eu_orders",
        "--table-map",
        "s.\"a=b\"=ab",
        "--column-map",
        "\"sales.eu\".orders.\"Amount.x\"=amount",
        "--partition-by",
        "\"sales.eu\".orders.\"at:x\":MONTH",
        "--cluster-by",
        "s.\"a,b\".c,d",
    ]);
    let target = LoadConfig::resolve(&args, file("[[tables]]\nname = 'public.events'\ncluster_by = ['id']\n")).unwrap().target;
    let key = "\"sales.eu\".orders".to_string();
    assert_eq!(target.names.map, [(key.clone(), "eu_orders".to_string()), ("s.\"a=b\"".to_string(), "ab".to_string())].into());
    assert_eq!(target.routing.tables[&key].column_map, [("Amount.x".to_string(), "amount".to_string())].into());
    assert_eq!(target.partition_by[&key], ("at:x".to_string(), PartitionUnit::Month));
    assert_eq!(target.cluster_by["s.\"a,b\""], ["c", "d"]);
    assert_eq!(target.cluster_by["events"], ["id"]);
    let entry = |schema: &str, name: &str| {
        TableManifest {
        name: TableRef::new(schema, name).to_string(),
        table: Some(TableRef::new(schema, name)),
        bq_table: TableRef::new(schema, name).bigquery_name(),
        ..serde_json::from_str(
            r#"{"name":"","bq_table":"","source_query":"","primary_key":[],"columns":[],"row_count":0,"files":[],"partitions":[],"foreign_keys":[]}"#,
        )
        .unwrap()
    }
    };
    assert_eq!(target.names.table_id(&entry("sales.eu", "orders")), "eu_orders");
    assert_eq!(target.names.table_id(&entry("sales", "eu.orders")), "sales__eu_orders");
}

#[test]
fn load_refuses_two_file_entries_for_a_table_and_flags_their_mode_does_not_take() {
    let err = LoadConfig::resolve(
        &load_args(&["--project", "p", "--dataset", "d"]),
        file("[[tables]]\nname = 'events'\n[[tables]]\nname = 'public.Events'\n"),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "`events` and `public.Events` both name `events`; list each table or query once");
    let err = LoadConfig::resolve(&load_args(&["--project", "p", "--dataset", "d", "--overwrite-existing"]), file("")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`set` for --overwrite-existing is not of the form --mode merge (truncate already replaces every row; append never updates)"
    );
    let err =
        LoadConfig::resolve(&load_args(&["--project", "p", "--dataset", "d", "--mode", "append", "--replace-existing-rows"]), file(""))
            .unwrap_err();
    assert!(err.to_string().starts_with("`set` for --replace-existing-rows"), "{err}");
}
