//! Every command-line flag. No other file knows a flag's name. Each value is parsed here into
//! its model type by the type's own `FromStr` (or serde name, for a choice), so a malformed flag
//! fails before anything runs, with clap's message naming the flag, the value and its shape.

pub mod env;

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::de::{DeserializeOwned, IntoDeserializer};

use crate::gcp::runs::LoadMode;
use crate::gcp::schema::TablePartition;
use crate::model::run_id::RunId;
use crate::model::settings::{
    ColumnCast, ColumnRef, ColumnValue, Destination, LossyColumn, QualifiedColumn, QuerySpec, TableColumns, TableMapping, TableName,
};
use crate::model::types::{OnBadValue, OutOfRange};
use crate::source::conninfo::PostgresSource;

#[derive(Debug, Parser)]
#[command(
    name = "pg2bq",
    version,
    args_override_self = true,
    about = "Move PostgreSQL tables into BigQuery through a verified Parquet snapshot"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Progress on stderr: auto shows it when stderr is a terminal.
    #[arg(long, value_enum, default_value_t = Progress::Auto, global = true)]
    pub progress: Progress,
}

impl Cli {
    /// `argv` (program name first) parsed, clap's error returned instead of printed: for tests
    /// outside this file, which may not name clap.
    ///
    /// # Errors
    /// clap's error for a malformed command line.
    #[cfg(test)]
    pub(crate) fn parse_test_argv<I: IntoIterator<Item = T>, T: Into<std::ffi::OsString> + Clone>(argv: I) -> Result<Self, clap::Error> {
        Self::try_parse_from(argv)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export Postgres tables or queries to a Parquet snapshot with a manifest.
    Export(ExportArgs),
    /// Load a snapshot into BigQuery with load jobs, from its manifest.
    Load(LoadArgs),
    /// Prove the BigQuery tables equal the snapshot (exit 1 on any mismatch).
    Validate(ValidateArgs),
    /// Prove the snapshot's files are intact: sizes, CRC32C and aggregates (exit 1 if not).
    Verify(VerifyArgs),
    /// Run one worker's share of a sharded export (`export --coordinate`), in its snapshot.
    Work(WorkArgs),
    /// Write the run's report: one self-contained HTML file (run, tables, rows per day, loads
    /// and validations), beside the manifest or at --out.
    Report(ReportArgs),
    /// Make the snapshot queryable in place: BigQuery external tables over its files, and/or
    /// DuckDB views (--duckdb FILE.sql).
    External(ExternalArgs),
    /// List the runs under a destination: state, tables, rows, tail chain, loads, validations.
    Runs(RunsArgs),
}

/// How a command prints its result on stdout (logs and progress go to stderr).
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print the result as JSON on stdout: the same as --format json.
    #[arg(long, overrides_with = "format")]
    pub json: bool,
    /// The result on stdout: text (the report) or json [default: text].
    #[arg(long, value_enum, value_name = "FORMAT", overrides_with = "json")]
    pub format: Option<Format>,
}

impl OutputArgs {
    /// The format asked for: the last of `--json` and `--format` wins.
    pub fn format(&self) -> Format {
        match (self.format, self.json) {
            (Some(format), _) => format,
            (None, true) => Format::Json,
            (None, false) => Format::Text,
        }
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Where the loaded tables are (shared by `load` and `validate`).
#[derive(Debug, Args)]
pub struct BigQueryTargetArgs {
    /// The snapshot's manifest: gs://bucket/prefix/<run-id>/manifest.json.
    #[arg(long)]
    pub manifest: String,
    /// BigQuery project that runs the jobs and holds the dataset.
    #[arg(long, env = env::GOOGLE_CLOUD_PROJECT)]
    pub project: Option<String>,
    /// The dataset the snapshot is (or is to be) loaded into.
    #[arg(long, env = env::BIGQUERY_DATASET)]
    pub dataset: Option<String>,
    /// BigQuery location (needed for jobs outside US and EU).
    #[arg(long)]
    pub location: Option<String>,
    /// Prefix of every table name in the dataset.
    #[arg(long, default_value = "")]
    pub table_prefix: String,
    /// The BigQuery table a snapshot table goes to (an app's existing table): TABLE=TARGET
    /// (repeatable; TOML `target`). Without it: the recorded name after --table-prefix.
    #[arg(long = "table-map", value_name = "TABLE=TARGET")]
    pub table_map: Vec<TableMapping>,
}

/// How snapshot columns go into an existing table's columns (`load`; validate reads what the
/// load recorded).
#[derive(Debug, Args)]
pub struct RoutingArgs {
    /// A snapshot column's column in an existing table: TABLE.SOURCE=TARGET (repeatable;
    /// TOML `column_map`).
    #[arg(long = "column-map", value_name = "TABLE.SOURCE=TARGET")]
    pub column_map: Vec<ColumnValue>,
    /// Allow DATE columns into an existing table's TIMESTAMP/DATETIME columns (midnight).
    #[arg(long)]
    pub date_to_timestamp: bool,
    /// Leave a snapshot column out of the load: TABLE.COLUMN (repeatable; TOML `exclude_columns`).
    /// validate skips its checks and says so.
    #[arg(long = "exclude-column", value_name = "TABLE.COLUMN")]
    pub exclude_column: Vec<QualifiedColumn>,
    /// Fill a target column the snapshot lacks with a constant: TABLE.COLUMN=VALUE, e.g.
    /// events.migrated_from=postgres (repeatable; TOML `set`).
    #[arg(long = "set", value_name = "TABLE.COLUMN=VALUE")]
    pub set: Vec<ColumnValue>,
    /// Replace a snapshot column's NULLs with a value, e.g. events.metadata={} for a NOT NULL
    /// target (repeatable; TOML `default`). The report counts them; validate accounts for them.
    #[arg(long = "default", value_name = "TABLE.COLUMN=VALUE")]
    pub default: Vec<ColumnValue>,
    /// Allow a lossy conversion, one column at a time: TABLE.COLUMN=FLOAT64 (NUMERIC or INT64
    /// into FLOAT64; repeatable; TOML `allow_lossy`).
    #[arg(long = "allow-lossy", value_name = "TABLE.COLUMN=FLOAT64")]
    pub allow_lossy: Vec<LossyColumn>,
}

/// Emulator endpoints and credentials, from the variables Google's own tools read.
#[derive(Debug, Args)]
pub struct GcpArgs {
    /// BigQuery emulator endpoint.
    #[arg(long, env = env::BIGQUERY_EMULATOR_HOST, hide = true)]
    pub bigquery_emulator_host: Option<String>,
    #[command(flatten)]
    pub storage: GcsArgs,
}

/// `--lock-wait`, of `export` and `work`.
#[derive(Debug, Args)]
pub struct LockWaitArgs {
    /// How long a unit's statements may wait for a lock (e.g. 5m; default 0: not at all). DDL
    /// queued on an exported table waits for the whole run, which locks it, so a unit behind it
    /// stops at once naming the DDL; wait only for DDL that gives up on its own lock_timeout
    #[arg(long = "lock-wait", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
}

/// The GCS emulator endpoint and the credentials file (export, and GCP's share of the others).
#[derive(Debug, Args)]
pub struct GcsArgs {
    /// GCS emulator endpoint.
    #[arg(long, env = env::STORAGE_EMULATOR_HOST, hide = true)]
    pub storage_emulator_host: Option<String>,
    /// Credentials file for real GCP.
    #[arg(long, env = env::GOOGLE_APPLICATION_CREDENTIALS, hide = true)]
    pub google_application_credentials: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's manifest.
    #[arg(long)]
    pub manifest: String,
    /// Write the report to this local file instead of `<run>/report.html`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The column whose rows per day are charted: [TABLE.]COLUMN (repeatable); default: the
    /// first TIMESTAMPTZ, else TIMESTAMP, else DATE column.
    #[arg(long = "time-column", value_name = "[TABLE.]COLUMN")]
    pub time_column: Vec<ColumnRef>,
    /// Postgres URL: also count each day's rows in the source as it is now.
    #[arg(long, env = env::SOURCE, hide_env_values = true, value_parser = SourceParser)]
    pub source: Option<PostgresSource>,
    /// BigQuery project for the counting queries (default: the one the latest load recorded).
    #[arg(long, env = env::GOOGLE_CLOUD_PROJECT)]
    pub project: Option<String>,
    /// Count in this dataset instead of the one the latest load recorded.
    #[arg(long)]
    pub dataset: Option<String>,
    /// BigQuery location (needed for jobs outside US and EU).
    #[arg(long)]
    pub location: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

#[derive(Debug, Args)]
pub struct ExternalArgs {
    /// The run's manifest.
    #[arg(long)]
    pub manifest: String,
    /// BigQuery project of the external tables.
    #[arg(long, env = env::GOOGLE_CLOUD_PROJECT)]
    pub project: Option<String>,
    /// Dataset to create the external tables in (without it: only --duckdb).
    #[arg(long)]
    pub dataset: Option<String>,
    /// BigQuery location (needed for jobs outside US and EU).
    #[arg(long)]
    pub location: Option<String>,
    /// The start of every table's name [default: snapshot_<run id>_].
    #[arg(long)]
    pub prefix: Option<String>,
    /// Also write DuckDB views over the same files to this SQL file.
    #[arg(long, value_name = "FILE.sql")]
    pub duckdb: Option<PathBuf>,
    /// Print the DDL; create nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The destination the runs were exported to (gs://bucket/prefix or a directory).
    #[arg(long, env = env::DEST)]
    pub dest: Destination,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub gcs: GcsArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub target: BigQueryTargetArgs,
    /// Postgres URL: also compare random rows with the source and report its drift.
    #[arg(long, env = env::SOURCE, hide_env_values = true, value_parser = SourceParser)]
    pub source: Option<PostgresSource>,
    /// Random rows per table to compare with the source.
    #[arg(long, default_value_t = 10)]
    pub sample: usize,
    /// When a table with a primary key fails a check, locate the rows that differ (missing,
    /// only in BigQuery, other values) and list the first N; 0 turns location off.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub locate_limit: usize,
    /// Compare nothing: print the bytes BigQuery estimates each table's comparison query (and
    /// each probe) scans, from dry runs, which are free.
    #[arg(long)]
    pub dry_run: bool,
    /// Exit 1 when a check could not run (SKIP), as when one fails.
    #[arg(long)]
    pub strict: bool,
    /// TOML file with `[[denormalized]]` columns and `[[probes]]` (named SQL with a time budget).
    #[arg(long, env = env::CONFIG)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The snapshot's manifest (gs://, file:// or a path).
    #[arg(long)]
    pub manifest: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: BigQueryTargetArgs,
    /// Create the dataset if it does not exist.
    #[arg(long)]
    pub create_dataset: bool,
    #[command(flatten)]
    pub routing: RoutingArgs,
    /// truncate (default): the table ends equal to the snapshot; append: the snapshot's rows are
    /// added; merge: rows whose key the table lacks are added, the others left alone. A table
    /// pg2bq did not create is never truncated without --replace-existing-rows.
    #[arg(long, value_parser = one_of::<LoadMode>(["truncate", "append", "merge"]))]
    pub mode: Option<LoadMode>,
    /// Truncate also a table pg2bq did not create, deleting the rows a person or an app wrote.
    #[arg(long)]
    pub replace_existing_rows: bool,
    /// Create a --table-map target that is not in the dataset (else refused, as a likely typo).
    #[arg(long)]
    pub create_missing: bool,
    /// The first wait before a statement BigQuery refused over rows in the table's streaming
    /// buffer is tried again (then doubling, 4 retries; default 2m: 30 minutes in all).
    #[arg(long, env = env::STREAMING_BUFFER_WAIT, value_parser = humantime::parse_duration)]
    pub streaming_buffer_wait: Option<std::time::Duration>,
    /// Merge key: TABLE.COLUMN[,COLUMN…] (repeatable; TOML `merge_key`). Default: the
    /// primary key recorded in the manifest.
    #[arg(long = "key", value_name = "TABLE.COLUMN[,COLUMN]")]
    pub merge_key: Vec<TableColumns>,
    /// Merge: also update rows whose key exists and whose values differ from the snapshot's.
    #[arg(long)]
    pub overwrite_existing: bool,
    /// Merge: also delete, by key, the rows a tail exported with --carry-changes saw deleted in
    /// Postgres (its <table>/_deleted/keys.parquet); a run that carries deletes is refused without it.
    #[arg(long)]
    pub apply_deletes: bool,
    /// Time partitioning: TABLE.COLUMN[:DAY|HOUR|MONTH|YEAR] (repeatable).
    #[arg(long = "partition-by", value_name = "TABLE.COLUMN[:UNIT]")]
    pub partition_by: Vec<TablePartition>,
    /// Clustering: TABLE.COLUMN[,COLUMN…] (repeatable).
    #[arg(long = "cluster-by", value_name = "TABLE.COLUMN[,COLUMN]")]
    pub cluster_by: Vec<TableColumns>,
    /// The export's TOML file: per-table partition_by / cluster_by, project, dataset.
    #[arg(long, env = env::CONFIG)]
    pub config: Option<PathBuf>,
    /// Print the jobs that would run (ids, URIs, bytes, schema, quota share); submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Postgres URL, e.g. postgresql://user@host/db?sslmode=require.
    #[arg(long, env = env::SOURCE, hide_env_values = true, value_parser = SourceParser)]
    pub source: Option<PostgresSource>,
    /// gs://bucket/prefix, file:///abs/dir or a local path. The run goes to <dest>/<run-id>/.
    #[arg(long, env = env::DEST)]
    pub dest: Option<Destination>,
    /// A table to export, as schema.table (repeatable); quote a part holding a dot, capitals or blanks: '"sales.eu".orders'.
    #[arg(long = "table", value_name = "SCHEMA.TABLE")]
    pub tables: Vec<TableName>,
    /// A query to export under a name (repeatable): --query recent='SELECT …'.
    #[arg(long = "query", value_name = "NAME=SQL")]
    pub queries: Vec<QuerySpec>,
    /// TOML file listing tables and per-table options.
    #[arg(long, env = env::CONFIG)]
    pub config: Option<PathBuf>,
    /// Export a column as Postgres text: [schema.table.]column=text (repeatable).
    #[arg(long = "cast", value_name = "[TABLE.]COLUMN=text")]
    pub casts: Vec<ColumnCast>,
    /// Ranges per table, or per child of a partitioned table (integer key, else heap block ranges; default: by size).
    #[arg(long, env = env::PARTITIONS, value_parser = parse_at_least_one)]
    pub partitions: Option<usize>,
    /// Integer column to split partitions on: [schema.table.]column (default: the primary key).
    #[arg(long = "partition-on", value_name = "[TABLE.]COLUMN")]
    pub partition_on: Vec<ColumnRef>,
    /// Export only the rows added since an earlier run (a tail): its manifest URI, or `latest`
    /// (the newest committed run under --dest that exported the same tables). Each table's
    /// rows above that run's highest watermark value are read, after checking that the rows at
    /// or below it are still exactly those the earlier runs hold.
    #[arg(long, value_name = "MANIFEST")]
    pub since: Option<String>,
    /// The column a tail continues by, one that only grows (created_at): [TABLE.]COLUMN
    /// (repeatable; TOML `watermark`). Default: a single-column integer primary key.
    #[arg(long, value_name = "[TABLE.]COLUMN", requires = "since")]
    pub watermark: Vec<ColumnRef>,
    /// A tail whose earlier rows changed (found by the earlier run's row hashes) carries the rows
    /// updated or inserted late below the watermark and writes the keys of those deleted to
    /// <run>/<table>/_deleted/keys.parquet, instead of being refused; load it with --mode merge
    /// --overwrite-existing --apply-deletes.
    #[arg(long, requires = "since")]
    pub carry_changes: bool,
    /// A timestamp column the app sets on every insert and update: [TABLE.]COLUMN (repeatable;
    /// TOML `updated_at`). A tail's check then hashes only the rows changed since the earlier
    /// run's snapshot (and counts the rest), instead of every row below the watermark.
    #[arg(long, value_name = "[TABLE.]COLUMN", requires = "since")]
    pub updated_at: Vec<ColumnRef>,
    /// Dates and timestamps BigQuery cannot hold (±infinity, outside years 1–9999).
    #[arg(long, env = env::OUT_OF_RANGE, value_parser = one_of::<OutOfRange>([
        PossibleValue::new("refuse").help("Refuse the table before any data moves (default)"),
        PossibleValue::new("clamp").help("Clamp to the nearest value BigQuery can hold (`infinity` → 9999-12-31 23:59:59.999999)"),
        PossibleValue::new("null").help("Export NULL instead"),
    ]))]
    pub out_of_range: Option<OutOfRange>,
    /// Rows holding a value BigQuery cannot hold (beyond --out-of-range): refuse the table before
    /// any data moves (default), or quarantine them, as Postgres prints them with their key and
    /// reason, to <run>/<table>/_rejected/ and export the rest (TOML `on_bad_value`).
    #[arg(long, value_parser = one_of::<OnBadValue>(["refuse", "quarantine"]))]
    pub on_bad_value: Option<OnBadValue>,
    /// Run id (default: UTC time plus a random suffix). Re-using the id of a failed or killed run starts it clean (see --resume).
    #[arg(long, value_parser = RunId::parse)]
    pub run_id: Option<RunId>,
    /// Continue run --run-id after a crash: keep the units it recorded, export only the rest (in a new snapshot).
    #[arg(long, requires = "run_id")]
    pub resume: bool,
    /// Workers exporting units at once, across all tables (default: the number of cores).
    #[arg(long, env = env::JOBS, value_parser = parse_at_least_one)]
    pub jobs: Option<usize>,
    /// Take the run over from an earlier attempt pg2bq cannot prove gone (another host claimed it).
    #[arg(long)]
    pub take_over: bool,
    /// Roll Parquet files after this many compressed bytes (e.g. 256MiB).
    #[arg(long, value_parser = parse_nonzero_size)]
    pub file_size: Option<u64>,
    /// Uncompressed bytes per Parquet row group (BigQuery wants ≥ 16MiB).
    #[arg(long, value_parser = parse_nonzero_size)]
    pub row_group_size: Option<u64>,
    /// zstd level for Parquet pages (1–22).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: Option<i32>,
    /// Rows per Arrow batch from Postgres.
    #[arg(long, value_parser = parse_at_least_one)]
    pub batch_rows: Option<usize>,
    /// Plan only: read the catalog, counts and checks, print the plan, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Shard the run across machines: hold the snapshot, write <dest>/<run-id>/plan.json, wait
    /// while `pg2bq work` tasks export its units, then commit the manifest (docs/distributed.md).
    #[arg(long, requires = "workers", conflicts_with = "resume")]
    pub coordinate: bool,
    /// Workers of a sharded run; --jobs is then each worker's units at once.
    #[arg(long, requires = "coordinate", value_parser = parse_at_least_one)]
    pub workers: Option<usize>,
    /// Give a sharded run up, removing its files, when its units are not all in by then (e.g.
    /// 90m, 6h; default 24h).
    #[arg(long, requires = "coordinate", value_parser = humantime::parse_duration)]
    pub deadline: Option<std::time::Duration>,
    /// How long the snapshot's session waits to lock each table (ACCESS SHARE, as pg_dump
    /// does) before the run stops naming the session holding it (default 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lock_timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub lock_wait: LockWaitArgs,
    #[command(flatten)]
    pub gcs: GcsArgs,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    /// The run's plan, written by `export --coordinate`: gs://bucket/prefix/<run-id>/plan.json.
    #[arg(long)]
    pub plan: String,
    /// Postgres URL (the plan holds none, credentials least of all).
    #[arg(long, env = env::SOURCE, hide_env_values = true, value_parser = SourceParser)]
    pub source: Option<PostgresSource>,
    /// This worker's index from 0 (default: CLOUD_RUN_TASK_INDEX, JOB_COMPLETION_INDEX or
    /// BATCH_TASK_INDEX, as the engine sets it).
    #[arg(long)]
    pub worker_index: Option<usize>,
    /// Workers in the run (default: CLOUD_RUN_TASK_COUNT or BATCH_TASK_COUNT; Kubernetes
    /// Indexed Jobs set none, so pass it there).
    #[arg(long, value_parser = parse_at_least_one)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub lock_wait: LockWaitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub gcs: GcsArgs,
}

/// A choice among `values`, read by the type's serde name (the config file's spelling), so the
/// flag and the file have one parser.
fn one_of<T: DeserializeOwned + Clone + Send + Sync + 'static>(
    values: impl IntoIterator<Item = impl Into<PossibleValue>>,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(values).try_map(|name| T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(name)))
}

/// `--source`: a [`PostgresSource`]. A malformed one is refused without echoing the value as
/// clap would, for it may hold a password (the error shows it redacted).
#[derive(Debug, Clone, Copy)]
struct SourceParser;

impl TypedValueParser for SourceParser {
    type Value = PostgresSource;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &std::ffi::OsStr) -> Result<PostgresSource, clap::Error> {
        let flag = arg.map_or_else(|| "--source".to_string(), ToString::to_string);
        value.to_string_lossy().parse().map_err(|error| {
            let message = format!("invalid value for '{flag}': {error}\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        })
    }
}

/// `256MiB`, `1GiB`, `64MB`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a size like 256MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("`{text}` is too large"))
}

/// A size above zero (see [`parse_size`]).
pub fn parse_nonzero_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err(format!("`{text}` is zero; give a size of at least 1 byte, e.g. 256MiB")),
        size => Ok(size),
    }
}

/// A count of 1 or more.
pub fn parse_at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 is not in 1.. (use 1 or more)".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number of 1 or more")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_nonzero_size("0MiB").unwrap_err().contains("zero"));
    }

    #[test]
    fn counts_and_levels_outside_their_range_are_refused_with_the_range() {
        use clap::Parser;
        for (flag, value, range) in [
            ("--partitions", "0", "1.."),
            ("--jobs", "0", "1.."),
            ("--batch-rows", "0", "1.."),
            ("--zstd-level", "30", "1..=22"),
            ("--zstd-level", "0", "1..=22"),
        ] {
            let err = Cli::try_parse_from(["pg2bq", "export", flag, value]).unwrap_err().to_string();
            assert!(err.contains(range) && err.contains(flag), "{flag} {value}: {err}");
        }
        for flag in ["--file-size", "--row-group-size"] {
            let err = Cli::try_parse_from(["pg2bq", "export", flag, "0"]).unwrap_err().to_string();
            assert!(err.contains("zero"), "{flag}: {err}");
        }
    }

    #[test]
    fn resume_needs_the_run_id_it_resumes() {
        use clap::Parser;
        let err = Cli::try_parse_from(["pg2bq", "export", "--resume"]).unwrap_err().to_string();
        assert!(err.contains("--run-id"), "{err}");
        assert!(Cli::try_parse_from(["pg2bq", "export", "--resume", "--run-id", "r1"]).is_ok());
    }

    #[test]
    fn json_is_format_json_and_the_last_of_the_two_wins() {
        use clap::Parser;
        let format =
            |argv: &[&str]| match Cli::try_parse_from([&["pg2bq", "verify", "--manifest", "m"][..], argv].concat()).unwrap().command {
                Command::Verify(args) => args.output.format(),
                other => panic!("{other:?}"),
            };
        assert_eq!(format(&[]), Format::Text);
        assert_eq!(format(&["--json"]), Format::Json);
        assert_eq!(format(&["--format", "json"]), Format::Json);
        assert_eq!(format(&["--format", "text"]), Format::Text);
        assert_eq!(format(&["--json", "--format", "text"]), Format::Text);
        assert_eq!(format(&["--format", "text", "--json"]), Format::Json);
        assert!(Cli::try_parse_from(["pg2bq", "verify", "--manifest", "m", "--format", "yaml"]).is_err());
    }

    /// A malformed value fails at the edge: clap's message names the flag, the value and why.
    #[test]
    fn malformed_values_are_refused_naming_the_flag_the_value_and_the_shape() {
        use clap::Parser;
        let cases: &[(&[&str], &str)] = &[
            (
                &["export", "--table", "a.b.c"],
                "invalid value 'a.b.c' for '--table <SCHEMA.TABLE>': `a.b.c` is not a table name: more than two parts",
            ),
            (&["export", "--query", "recent"], "invalid value 'recent' for '--query <NAME=SQL>': `recent` is not of the form NAME=SQL"),
            (
                &["export", "--cast", "a=int"],
                "invalid value 'a=int' for '--cast <[TABLE.]COLUMN=text>': `a=int` is not of the form [TABLE.]COLUMN=text",
            ),
            (
                &["export", "--partition-on", "a.b.c.d"],
                "for '--partition-on <[TABLE.]COLUMN>': `a.b.c.d` is not of the form [[SCHEMA.]TABLE.]COLUMN",
            ),
            (&["export", "--dest", "memory://x"], "for '--dest <DEST>': destination `memory://x` is in memory and would vanish"),
            (&["export", "--run-id", ".."], "invalid value '..' for '--run-id <RUN_ID>': run id `..` is not allowed"),
            (&["export", "--out-of-range", "wrap"], "invalid value 'wrap' for '--out-of-range <OUT_OF_RANGE>'"),
            (&["export", "--on-bad-value", "skip"], "invalid value 'skip' for '--on-bad-value <ON_BAD_VALUE>'"),
            (&["load", "--manifest", "m", "--mode", "upsert"], "invalid value 'upsert' for '--mode <MODE>'"),
            (
                &["load", "--manifest", "m", "--table-map", "events"],
                "for '--table-map <TABLE=TARGET>': `events` is not of the form TABLE=TARGET",
            ),
            (
                &["load", "--manifest", "m", "--column-map", "a=b"],
                "for '--column-map <TABLE.SOURCE=TARGET>': `a=b` is not of the form TABLE.COLUMN=VALUE",
            ),
            (
                &["load", "--manifest", "m", "--exclude-column", "id"],
                "for '--exclude-column <TABLE.COLUMN>': `id` is not of the form TABLE.COLUMN",
            ),
            (&["load", "--manifest", "m", "--set", "t.c"], "for '--set <TABLE.COLUMN=VALUE>': `t.c` is not of the form TABLE.COLUMN=VALUE"),
            (
                &["load", "--manifest", "m", "--default", "c=1"],
                "for '--default <TABLE.COLUMN=VALUE>': `c=1` is not of the form TABLE.COLUMN=VALUE",
            ),
            (
                &["load", "--manifest", "m", "--allow-lossy", "t.c=INT64"],
                "for '--allow-lossy <TABLE.COLUMN=FLOAT64>': `INT64` is not a lossy type",
            ),
            (
                &["load", "--manifest", "m", "--key", "id"],
                "for '--key <TABLE.COLUMN[,COLUMN]>': `id` is not of the form TABLE.COLUMN[,COLUMN]",
            ),
            (&["load", "--manifest", "m", "--cluster-by", "id,x"], "for '--cluster-by <TABLE.COLUMN[,COLUMN]>': `id,x` is not of the form"),
            (
                &["load", "--manifest", "m", "--partition-by", "t.at:WEEK"],
                "for '--partition-by <TABLE.COLUMN[:UNIT]>': unknown partitioning unit `WEEK`",
            ),
        ];
        for (argv, expected) in cases {
            let err = Cli::try_parse_from([&["pg2bq"], *argv].concat()).unwrap_err().to_string();
            assert!(err.contains(expected), "{argv:?}: {err}");
        }
    }

    /// clap quotes a bad value in its message; a source may hold a password, so it is shown redacted.
    #[test]
    fn a_malformed_source_is_refused_without_its_password() {
        use clap::Parser;
        for command in [&["export"][..], &["work", "--plan", "p"], &["validate", "--manifest", "m"]] {
            let argv = [&["pg2bq"], command, &["--source", "host=h password=s3cret dbname"]].concat();
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
            assert_eq!(
                err.to_string().lines().next().unwrap(),
                "error: invalid value for '--source <SOURCE>': source `host=h password=*** dbname` is not a Postgres URL or a \
                 libpq `key=value` string: `dbname` has no `=value` (use a postgresql:// URL or key=value pairs)"
            );
        }
    }

    /// Every choice a flag offers is a value of its model type.
    #[test]
    fn every_offered_choice_parses() {
        use clap::Parser;
        for (flag, value) in [
            ("--out-of-range", "refuse"),
            ("--out-of-range", "clamp"),
            ("--out-of-range", "null"),
            ("--on-bad-value", "refuse"),
            ("--on-bad-value", "quarantine"),
        ] {
            assert!(Cli::try_parse_from(["pg2bq", "export", flag, value]).is_ok(), "{flag} {value}");
        }
        for mode in ["truncate", "append", "merge"] {
            let Command::Load(args) = Cli::try_parse_from(["pg2bq", "load", "--manifest", "m", "--mode", mode]).unwrap().command else {
                unreachable!()
            };
            assert_eq!(args.mode.unwrap().as_str(), mode);
        }
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
