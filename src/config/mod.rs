//! Resolved settings: flags > environment > config file > defaults.
//!
//! The file says what moves (tables, options per table, destination); runtime knobs come from
//! flags and the environment. `resolve` is the only place the sources are combined.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::cli::env;
use crate::cli::{
    BigQueryTargetArgs, ExportArgs, GcpArgs, GcsArgs, LoadArgs, LoadModeArg, OnBadValueArg, OutOfRangeArg, RoutingArgs, ValidateArgs,
    WorkArgs,
};
use crate::export::config::{Coordination, ExportConfig, ExportTable, TableSource, WorkConfig};
use crate::export::parquet::ParquetSettings;
use crate::gcp::bigquery::BigQueryOptions;
use crate::gcp::routes::{Routing, TargetOptions};
use crate::gcp::schema::PartitionUnit;
use crate::load::{LoadConfig, LoadMode, LoadTarget};
use crate::model::manifest::TableNames;
use crate::model::run_id::{InvalidRunId, RunId};
use crate::model::shard::WorkerIdentity;
use crate::model::table_ref::{column_ref, name_parts, split_outside_quotes, table_key, ParseTableRefError, TableRef, MAX_DIRECTORY_BYTES};
use crate::model::types::{BigQueryType, CastOverride, NameAlphabet, OnBadValue, OutOfRange};
use crate::source::postgres::with_connection_defaults;
use crate::storage::gcs::GcsOptions;
use crate::validate::{Denormalized, Probe, ValidateConfig};

/// How long a sharded run's coordinator waits for its workers unless told otherwise.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// `--lock-timeout`: how long the snapshot's session waits to lock each exported table.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Rows per Arrow batch from Postgres unless told otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 16_384;

/// A bad setting, naming it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{path}`")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file `{path}` is invalid")]
    ParseFile {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("no source: pass --source, set PG2BQ_SOURCE or DATABASE_URL, or put `source` in the config file")]
    MissingSource,
    #[error("worker identity: {0}")]
    WorkerIdentity(String),
    #[error("no destination: pass --dest, set PG2BQ_DEST, or put `dest` in the config file")]
    MissingDestination,
    #[error("`{value}` for {flag} is not of the form {expected}")]
    Malformed { flag: &'static str, value: String, expected: &'static str },
    #[error("`{value}` for {flag} does not name a table (quote a part that holds a dot, as in `\"sales.eu\".orders`)")]
    TableName {
        flag: &'static str,
        value: String,
        #[source]
        source: ParseTableRefError,
    },
    #[error(
        "table `{table}`: its directory in the run, `{directory}`, would be {bytes} bytes, more than the {max} a store takes \
         in one path part; export it as a query instead: --query NAME=SELECT * FROM {quoted}",
        max = MAX_DIRECTORY_BYTES
    )]
    UnrepresentableTable { table: String, directory: String, bytes: usize, quoted: String },
    #[error("no BigQuery {what}: pass --{what}, set {env}, or put `{what}` in the config file")]
    MissingTarget { what: &'static str, env: &'static str },
    #[error("`{value}`: unknown partitioning unit `{unit}` (use DAY, HOUR, MONTH or YEAR)")]
    PartitionUnit { value: String, unit: String },
    #[error(transparent)]
    RunId(#[from] InvalidRunId),
    #[error("destination `{url}` is in memory and would vanish when pg2bq exits; pass gs://bucket/prefix, file:///abs/dir or a path")]
    MemoryDestination { url: String },
    #[error("`{first}` and `{second}` both name `{canonical}`; list each table or query once")]
    DuplicateTable { first: String, second: String, canonical: String },
    #[error("{flag} `{value}` names table `{table}`, {problem}")]
    UnknownTarget { flag: &'static str, value: String, table: String, problem: String },
    #[error("query name `{name}` may only hold letters, digits, `_` and `-`, {max} at most (it names the BigQuery table and the run's directory)", max = MAX_DIRECTORY_BYTES)]
    QueryName { name: String },
    #[error("query `{name}` is empty")]
    EmptyQuery { name: String },
    #[error("table `{table}`: `partitions = 0` in the config file; use 1 or more")]
    ZeroPartitions { table: String },
    #[error("`jobs = 0` in the config file; use 1 or more")]
    ZeroJobs,
    #[error("source `{shown}` is not a Postgres URL or a libpq `key=value` string: {problem}")]
    SourceConninfo { shown: String, problem: String },
}

/// One table or query and its options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// `[schema.]table` as SQL spells it (quote a part holding a dot, capitals or blanks), or
    /// the name of a query.
    pub name: String,
    /// SQL to export instead of a table.
    pub query: Option<String>,
    #[serde(default, rename = "cast")]
    pub casts: BTreeMap<String, CastOverride>,
    pub partitions: Option<usize>,
    pub partition_on: Option<String>,
    pub out_of_range: Option<OutOfRange>,
    pub on_bad_value: Option<OnBadValue>,
    /// `export --since`: the column a tail continues by.
    pub watermark: Option<String>,
    /// `export --since`: a column the app sets to the time of every insert and update.
    pub updated_at: Option<String>,
    /// `load`: time partitioning, `column[:DAY|HOUR|MONTH|YEAR]`.
    pub partition_by: Option<String>,
    /// `load`: clustering columns.
    pub cluster_by: Option<Vec<String>>,
    /// `load`/`validate`: the BigQuery table it goes to (an app's existing table).
    pub target: Option<String>,
    /// `load`: snapshot column → the existing table's column.
    #[serde(default)]
    pub column_map: BTreeMap<String, String>,
    /// `load`: snapshot columns left out.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// `load`: target column → the constant it is filled with.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// `load`: snapshot column → the value its NULLs become.
    #[serde(default)]
    pub default: BTreeMap<String, String>,
    /// `load`: snapshot column → the lossy type allowed (`FLOAT64`).
    #[serde(default)]
    pub allow_lossy: BTreeMap<String, String>,
    /// `load --mode merge`: the key columns (default: the primary key).
    pub merge_key: Option<Vec<String>>,
}

/// The config file: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub source: Option<String>,
    pub dest: Option<String>,
    pub out_of_range: Option<OutOfRange>,
    pub on_bad_value: Option<OnBadValue>,
    /// `export`: workers exporting units at once (`--jobs`).
    pub jobs: Option<usize>,
    /// `load`: BigQuery project, dataset and location.
    pub project: Option<String>,
    pub dataset: Option<String>,
    pub location: Option<String>,
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// `validate`: denormalized columns to check.
    #[serde(default)]
    pub denormalized: Vec<Denormalized>,
    /// `validate`: named queries with a time budget.
    #[serde(default)]
    pub probes: Vec<Probe>,
}

impl ConfigFile {
    /// # Errors
    /// [`ConfigError`] naming the file when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile { path: path.display().to_string(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::ParseFile { path: path.display().to_string(), source })
    }

    /// The file at `path`, or an empty one (every setting from flags, environment or defaults)
    /// when no file is named.
    ///
    /// # Errors
    /// As [`ConfigFile::load`].
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, ConfigError> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }
}

impl ExportConfig {
    /// Combines flags (clap already folded in `PG2BQ_*`), `DATABASE_URL`, the file and defaults.
    /// Per-table options follow the same order: a flag (or its variable) beats the file's
    /// per-table value, which beats the file's global value, which beats the default.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing source or destination, a malformed value, or two entries
    /// naming one table.
    pub fn resolve(args: &ExportArgs, file: ConfigFile, database_url: Option<String>) -> Result<Self, ConfigError> {
        let source = args.source.clone().or(database_url).or(file.source).ok_or(ConfigError::MissingSource)?;
        let source_url = postgres_url(&source)?;
        let destination = args.dest.clone().or(file.dest).ok_or(ConfigError::MissingDestination)?;
        let file_defaults = FileDefaults { out_of_range: file.out_of_range, on_bad_value: file.on_bad_value };
        let file_tables = keyed_specs(file.tables)?;
        let specs = match args.tables.is_empty() && args.queries.is_empty() {
            true => file_tables,
            false => specs_from_flags(args, &file_tables)?,
        };
        let mut tables =
            specs.into_iter().map(|(key, spec)| export_table(args, key, spec, &file_defaults)).collect::<Result<Vec<_>, _>>()?;
        apply_table_flags(args, &mut tables)?;
        let run_id = args.run_id.as_deref().map(RunId::parse).transpose()?;
        if destination.starts_with("memory://") {
            return Err(ConfigError::MemoryDestination { url: destination });
        }
        let jobs = match args.jobs.or(file.jobs) {
            Some(0) => return Err(ConfigError::ZeroJobs),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Self {
            source_url,
            destination,
            tables,
            run_id,
            take_over: args.take_over,
            resume: args.resume,
            jobs,
            since: args.since.clone(),
            carry_changes: args.carry_changes,
            dry_run: args.dry_run,
            parquet: parquet_settings(args),
            batch_rows: args.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS),
            gcs: args.gcs.options(),
            coordinate: args
                .workers
                .filter(|_| args.coordinate)
                .map(|workers| Coordination { workers, deadline: args.deadline.unwrap_or(DEFAULT_DEADLINE) }),
            lock_timeout: args.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
            lock_wait: args.lock_wait.duration.unwrap_or_default(),
        })
    }
}

impl WorkConfig {
    /// The worker's flags, else the batch engine's variables read through `env`, else
    /// `DATABASE_URL` for the source.
    ///
    /// # Errors
    /// [`ConfigError::MissingSource`], or [`ConfigError::WorkerIdentity`] naming the flag or
    /// variable that is missing or malformed.
    pub fn resolve(args: &WorkArgs, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let source = args.source.clone().or_else(|| env(env::DATABASE_URL)).ok_or(ConfigError::MissingSource)?;
        let identity = WorkerIdentity::resolve(args.worker_index, args.workers, env).map_err(ConfigError::WorkerIdentity)?;
        let lock_wait = args.lock_wait.duration.unwrap_or_default();
        Ok(Self { plan_uri: args.plan.clone(), source_url: postgres_url(&source)?, identity, gcs: args.gcs.options(), lock_wait })
    }
}

/// The file's global values of per-table export options.
struct FileDefaults {
    out_of_range: Option<OutOfRange>,
    on_bad_value: Option<OnBadValue>,
}

/// The file's tables under their [`spec_key`], refusing two entries for one table.
fn keyed_specs(specs: Vec<TableSpec>) -> Result<Vec<(String, TableSpec)>, ConfigError> {
    let mut keyed: Vec<(String, TableSpec)> = Vec::new();
    for spec in specs {
        add_spec(&mut keyed, spec_key(&spec)?, spec)?;
    }
    Ok(keyed)
}

/// Adds `spec` under `key` unless an earlier entry names the same table.
fn add_spec(specs: &mut Vec<(String, TableSpec)>, key: String, spec: TableSpec) -> Result<(), ConfigError> {
    if let Some((_, first)) = specs.iter().find(|(k, _)| *k == key) {
        return Err(ConfigError::DuplicateTable { first: first.name.clone(), second: spec.name, canonical: key });
    }
    specs.push((key, spec));
    Ok(())
}

/// `--table` and `--query` entries; a flagged table keeps the file's options for it.
fn specs_from_flags(args: &ExportArgs, file_tables: &[(String, TableSpec)]) -> Result<Vec<(String, TableSpec)>, ConfigError> {
    let mut specs = Vec::new();
    for name in &args.tables {
        let key = table_ref("--table", name)?.to_string();
        let from_file = file_tables.iter().find(|(k, t)| *k == key && t.query.is_none()).map(|(_, t)| t.clone());
        add_spec(&mut specs, key, TableSpec { name: name.clone(), query: None, ..from_file.unwrap_or_default() })?;
    }
    for query in &args.queries {
        let (name, sql) =
            query.split_once('=').ok_or_else(|| ConfigError::Malformed { flag: "--query", value: query.clone(), expected: "NAME=SQL" })?;
        let spec = TableSpec { name: name.trim().to_string(), query: Some(sql.to_string()), ..Default::default() };
        add_spec(&mut specs, spec_key(&spec)?, spec)?;
    }
    Ok(specs)
}

/// One table's settings: flags over the file's per-table values over its global ones over defaults.
fn export_table(args: &ExportArgs, key: String, spec: TableSpec, file: &FileDefaults) -> Result<ExportTable, ConfigError> {
    let partitions = match (args.partitions, spec.partitions) {
        (Some(n), _) => Some(n),
        (None, Some(0)) => return Err(ConfigError::ZeroPartitions { table: spec.name }),
        (None, file) => file,
    };
    let source = match spec.query {
        Some(sql) => TableSource::Query(query_sql(&spec.name, &sql)?),
        None => TableSource::Table(representable(table_ref("--table", &spec.name)?)?),
    };
    Ok(ExportTable {
        name: if matches!(source, TableSource::Query(_)) { spec.name } else { key },
        source,
        casts: spec.casts,
        partitions,
        partition_on: spec.partition_on,
        watermark: spec.watermark,
        updated_at: spec.updated_at,
        out_of_range: args.out_of_range.map(out_of_range).or(spec.out_of_range).or(file.out_of_range).unwrap_or_default(),
        on_bad_value: args.on_bad_value.map(on_bad_value).or(spec.on_bad_value).or(file.on_bad_value).unwrap_or_default(),
    })
}

/// `--cast` and `--partition-on`, applied to the tables they name.
fn apply_table_flags(args: &ExportArgs, tables: &mut [ExportTable]) -> Result<(), ConfigError> {
    for cast in &args.casts {
        let malformed = || ConfigError::Malformed { flag: "--cast", value: cast.clone(), expected: "[TABLE.]COLUMN=text" };
        let (target, kind) = split_outside_quotes(cast, '=').ok_or_else(malformed)?;
        if kind != "text" {
            return Err(malformed());
        }
        for (table, column) in targets(tables, "--cast", target)? {
            table.casts.insert(column, CastOverride::Text);
        }
    }
    for key in &args.partition_on {
        for (table, column) in targets(tables, "--partition-on", key)? {
            table.partition_on = Some(column);
        }
    }
    for key in &args.watermark {
        for (table, column) in targets(tables, "--watermark", key)? {
            table.watermark = Some(column);
        }
    }
    for key in &args.updated_at {
        for (table, column) in targets(tables, "--updated-at", key)? {
            table.updated_at = Some(column);
        }
    }
    Ok(())
}

/// Parquet file settings: flags over [`ParquetSettings::default`].
fn parquet_settings(args: &ExportArgs) -> ParquetSettings {
    let defaults = ParquetSettings::default();
    ParquetSettings {
        zstd_level: args.zstd_level.unwrap_or(defaults.zstd_level),
        row_group_bytes: args.row_group_size.map_or(defaults.row_group_bytes, |b| b as usize),
        file_bytes: args.file_size.unwrap_or(defaults.file_bytes),
        ..defaults
    }
}

/// The name one table or query goes by in a run: the [`TableRef`] displayed for a table, the
/// name itself for a query (which may hold only letters, digits, `_` and `-`, so never a dot).
fn spec_key(spec: &TableSpec) -> Result<String, ConfigError> {
    match spec.query {
        Some(_) if !NameAlphabet::ID.spells(&spec.name) || spec.name.len() > MAX_DIRECTORY_BYTES => {
            Err(ConfigError::QueryName { name: spec.name.clone() })
        }
        Some(_) => Ok(spec.name.clone()),
        None => Ok(table_ref("--table", &spec.name)?.to_string()),
    }
}

/// `[schema.]table` as the catalog spells it, by Postgres' rules (see [`TableRef::parse`]). An
/// unqualified name means `public.<name>`, whatever the server's search_path, so `events`,
/// `EVENTS` and `public.events` are one table.
///
/// # Errors
/// [`ConfigError::TableName`] naming `flag` for text that is not a table name.
pub fn table_ref(flag: &'static str, name: &str) -> Result<TableRef, ConfigError> {
    TableRef::parse(name).map_err(|source| ConfigError::TableName { flag, value: name.to_string(), source })
}

/// The table, if its run directory fits on every store; else the refusal with the way out.
fn representable(table: TableRef) -> Result<TableRef, ConfigError> {
    if table.directory_fits() {
        return Ok(table);
    }
    let directory = table.directory();
    Err(ConfigError::UnrepresentableTable { table: table.to_string(), bytes: directory.len(), directory, quoted: table.quoted() })
}

/// The query's SQL without trailing `;` and blanks (it is wrapped in a sub-select).
fn query_sql(name: &str, sql: &str) -> Result<String, ConfigError> {
    let sql = sql.trim_end_matches(|c: char| c == ';' || c.is_whitespace()).trim_start();
    if sql.is_empty() {
        return Err(ConfigError::EmptyQuery { name: name.to_string() });
    }
    Ok(sql.to_string())
}

/// A `postgresql://` URL with connection defaults, from a URL or a libpq `key=value` string
/// (`host=db port=5432 dbname=app user=me`). Values may be single-quoted, with `\'` and `\\`.
///
/// # Errors
/// [`ConfigError::SourceConninfo`] for a string that is neither (never echoing a password).
pub fn postgres_url(source: &str) -> Result<String, ConfigError> {
    let source = source.trim();
    if source.starts_with("postgres://") || source.starts_with("postgresql://") {
        return Ok(with_connection_defaults(source));
    }
    let shown = crate::source::redact_conninfo(source);
    let problem = |problem: String| ConfigError::SourceConninfo { shown: shown.clone(), problem };
    let pairs = conninfo_pairs(source).map_err(problem)?;
    if pairs.is_empty() {
        return Err(problem("it is empty".to_string()));
    }
    conninfo_url(pairs).map(|url| with_connection_defaults(&url)).map_err(problem)
}

/// The `key=value` pairs of a libpq string, or what is wrong with it.
fn conninfo_pairs(source: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = source.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no `=value` (use a postgresql:// URL or key=value pairs)"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the quoted value of `{key}` is not closed")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        }
        pairs.push((key, value));
    }
}

/// A `postgresql://` URL holding the pairs: host, port, user, password and dbname in their
/// places, every other key as a query parameter.
fn conninfo_url(pairs: Vec<(String, String)>) -> Result<String, String> {
    let mut url = url::Url::parse("postgresql://localhost").expect("a constant URL parses");
    let mut query = Vec::new();
    for (key, value) in pairs {
        let bad = |_| format!("`{key}` cannot go into a URL");
        match key.as_str() {
            "host" if !value.contains(['/', ',']) => url.set_host(Some(&value)).map_err(|_| "`host` is not a host name".to_string())?,
            "port" if !value.contains(',') => {
                url.set_port(Some(value.parse().map_err(|_| "`port` is not a number".to_string())?)).map_err(bad)?
            }
            "user" => url.set_username(&value).map_err(bad)?,
            "password" => url.set_password(Some(&value)).map_err(bad)?,
            "dbname" => url.set_path(&value),
            _ => query.push((key, value)),
        }
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url.into())
}

impl LoadConfig {
    /// Combines flags (with `GOOGLE_CLOUD_PROJECT`, `BIGQUERY_DATASET` folded in by clap), the
    /// export's config file (per-table partitioning and clustering) and defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing project or dataset or a malformed option.
    pub fn resolve(args: &LoadArgs, file: ConfigFile) -> Result<Self, ConfigError> {
        let (project, dataset) = project_and_dataset(&args.target, &file)?;
        let FileLoadOptions { mut partition_by, mut cluster_by, mut merge_keys } = FileLoadOptions::of(&file)?;
        // Flags come last, so they replace the file's value for the same table however it is spelt.
        for value in &args.partition_by {
            let (target, unit) = split_outside_quotes(value, ':').map_or((value.as_str(), None), |(t, u)| (t, Some(u)));
            let (table, column) = table_column("--partition-by", target, "TABLE.COLUMN[:UNIT]")?;
            partition_by.insert(table, (column, partition_unit(value, unit.unwrap_or("DAY"))?));
        }
        for value in &args.cluster_by {
            let (table, columns) = table_and_columns("--cluster-by", value)?;
            cluster_by.insert(table, columns);
        }
        for value in &args.merge_key {
            let (table, columns) = table_and_columns("--key", value)?;
            merge_keys.insert(table, columns);
        }
        let mode = load_mode(args)?;
        Ok(Self {
            manifest_uri: args.target.manifest.clone(),
            target: LoadTarget {
                project,
                dataset,
                location: args.target.location.clone().or(file.location.clone()),
                names: table_names(&args.target, &file)?,
                mode,
                partition_by,
                cluster_by,
                routing: routing(&args.routing, &file)?,
                merge_keys,
                overwrite_existing: args.overwrite_existing,
                apply_deletes: args.apply_deletes,
                replace_existing_rows: args.replace_existing_rows,
                create_missing: args.create_missing,
            },
            create_dataset: args.create_dataset,
            dry_run: args.dry_run,
            bigquery: BigQueryOptions { streaming_buffer_wait: args.streaming_buffer_wait, ..args.gcp.bigquery() },
            gcs: args.gcp.gcs(),
        })
    }
}

/// `--mode` (default truncate), with the flags that only one mode takes.
fn load_mode(args: &LoadArgs) -> Result<LoadMode, ConfigError> {
    let mode = match args.mode.unwrap_or(LoadModeArg::Truncate) {
        LoadModeArg::Truncate => LoadMode::Truncate,
        LoadModeArg::Append => LoadMode::Append,
        LoadModeArg::Merge => LoadMode::Merge,
    };
    let only = |flag: &'static str, wanted: LoadMode, expected: &'static str| match mode == wanted {
        true => Ok(()),
        false => Err(ConfigError::Malformed { flag, value: "set".into(), expected }),
    };
    if args.overwrite_existing {
        only("--overwrite-existing", LoadMode::Merge, "--mode merge (truncate already replaces every row; append never updates)")?;
    }
    if args.apply_deletes {
        only("--apply-deletes", LoadMode::Merge, "--mode merge (truncate already replaces every row; append deletes none)")?;
    }
    if args.replace_existing_rows {
        only("--replace-existing-rows", LoadMode::Truncate, "--mode truncate (append and merge delete no row)")?;
    }
    Ok(mode)
}

/// The config file's per-table load options, by load key.
struct FileLoadOptions {
    partition_by: BTreeMap<String, (String, PartitionUnit)>,
    cluster_by: BTreeMap<String, Vec<String>>,
    merge_keys: BTreeMap<String, Vec<String>>,
}

impl FileLoadOptions {
    fn of(file: &ConfigFile) -> Result<Self, ConfigError> {
        let mut options = Self { partition_by: BTreeMap::new(), cluster_by: BTreeMap::new(), merge_keys: BTreeMap::new() };
        let mut seen: Vec<(String, &str)> = Vec::new();
        for table in &file.tables {
            let key = load_key("tables.name", &table.name)?;
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(ConfigError::DuplicateTable { first: first.to_string(), second: table.name.clone(), canonical: key });
            }
            seen.push((key.clone(), &table.name));
            if let Some(spec) = &table.partition_by {
                options.partition_by.insert(key.clone(), parse_partitioning(spec)?);
            }
            if let Some(columns) = &table.cluster_by {
                options.cluster_by.insert(key.clone(), columns.clone());
            }
            if let Some(columns) = &table.merge_key {
                options.merge_keys.insert(key, columns.clone());
            }
        }
        Ok(options)
    }
}

/// `TABLE.COLUMN[,COLUMN…]` (`--cluster-by`, `--key`): the table's load key and the columns.
fn table_and_columns(flag: &'static str, value: &str) -> Result<(String, Vec<String>), ConfigError> {
    let expected = "TABLE.COLUMN[,COLUMN]";
    let (first, rest) = split_outside_quotes(value, ',').unwrap_or((value, ""));
    let (table, column) =
        table_column(flag, first, expected).map_err(|_| ConfigError::Malformed { flag, value: value.into(), expected })?;
    let mut columns = vec![column];
    columns.extend(rest.split(',').filter(|c| !c.is_empty()).map(str::to_string));
    Ok((table, columns))
}

/// The key of a table's load options, as [`crate::model::manifest::TableManifest::is_named`]
/// matches it: the [`TableRef`] displayed, or only its table part for `public` and for an
/// unqualified name (`events` names `public.events`, `audit.events` and a query named `events`).
fn load_key(flag: &'static str, name: &str) -> Result<String, ConfigError> {
    let (schema, table) =
        TableRef::parse_partial(name).map_err(|source| ConfigError::TableName { flag, value: name.to_string(), source })?;
    Ok(table_key(schema.as_deref(), &table))
}

/// Where each snapshot table goes: `--table-map` over the file's `target`, else the prefix.
fn table_names(target: &BigQueryTargetArgs, file: &ConfigFile) -> Result<TableNames, ConfigError> {
    let mut map = BTreeMap::new();
    for table in &file.tables {
        if let Some(id) = &table.target {
            map.insert(load_key("tables.name", &table.name)?, id.clone());
        }
    }
    for value in &target.table_map {
        let (table, id) = split_outside_quotes(value, '=')
            .filter(|(t, id)| !t.is_empty() && !id.is_empty())
            .ok_or_else(|| ConfigError::Malformed { flag: "--table-map", value: value.clone(), expected: "TABLE=TARGET" })?;
        map.insert(load_key("--table-map", table)?, id.to_string());
    }
    Ok(TableNames { prefix: target.table_prefix.clone(), map })
}

/// How snapshot columns go into existing tables: each flag over the file's key for the same
/// table and column (`--column-map` over `column_map`, `--exclude-column` over
/// `exclude_columns`, `--set` over `set`, `--default` over `default`, `--allow-lossy` over
/// `allow_lossy`).
fn routing(args: &RoutingArgs, file: &ConfigFile) -> Result<Routing, ConfigError> {
    let mut tables: BTreeMap<String, TargetOptions> = BTreeMap::new();
    for spec in &file.tables {
        let options = tables.entry(load_key("tables.name", &spec.name)?).or_default();
        options.column_map.extend(spec.column_map.clone());
        options.excluded.extend(spec.exclude_columns.iter().cloned());
        options.set.extend(spec.set.clone());
        options.defaults.extend(spec.default.clone());
        for (column, lossy) in &spec.allow_lossy {
            options.lossy.insert(column.clone(), lossy_type("allow_lossy", &format!("{}.{column}={lossy}", spec.name), lossy)?);
        }
    }
    for value in &args.column_map {
        let (table, from, to) = column_assignment("--column-map", value, "TABLE.SOURCE=TARGET")?;
        tables.entry(table).or_default().column_map.insert(from, to);
    }
    for value in &args.exclude_column {
        let (table, column) = table_column("--exclude-column", value, "TABLE.COLUMN")?;
        tables.entry(table).or_default().excluded.insert(column);
    }
    for value in &args.set {
        let (table, column, constant) = column_assignment("--set", value, "TABLE.COLUMN=VALUE")?;
        tables.entry(table).or_default().set.insert(column, unquoted(&constant));
    }
    for value in &args.default {
        let (table, column, constant) = column_assignment("--default", value, "TABLE.COLUMN=VALUE")?;
        tables.entry(table).or_default().defaults.insert(column, unquoted(&constant));
    }
    for value in &args.allow_lossy {
        let (table, column, lossy) = column_assignment("--allow-lossy", value, "TABLE.COLUMN=FLOAT64")?;
        tables.entry(table).or_default().lossy.insert(column, lossy_type("--allow-lossy", value, &lossy)?);
    }
    tables.retain(|_, options| *options != TargetOptions::default());
    Ok(Routing { tables, date_to_timestamp: args.date_to_timestamp })
}

/// `[schema.]table.column`: the table's load key and the column. Parts are read as SQL reads
/// them (`"sales.eu".orders.amount`); the column is taken as written (inside its quotes, if any).
fn table_column(flag: &'static str, value: &str, expected: &'static str) -> Result<(String, String), ConfigError> {
    let malformed = || ConfigError::Malformed { flag, value: value.to_string(), expected };
    match column_ref(value).map_err(|_| malformed())? {
        (Some(table), column) => Ok((table, column)),
        (None, _) => Err(malformed()),
    }
}

/// `TABLE.COLUMN=VALUE` (the value may be empty, and hold `=` and `.`).
fn column_assignment(flag: &'static str, value: &str, expected: &'static str) -> Result<(String, String, String), ConfigError> {
    let (column, assigned) =
        split_outside_quotes(value, '=').ok_or_else(|| ConfigError::Malformed { flag, value: value.to_string(), expected })?;
    let (table, column) =
        table_column(flag, column, expected).map_err(|_| ConfigError::Malformed { flag, value: value.into(), expected })?;
    Ok((table, column, assigned.to_string()))
}

/// A constant as the shell leaves it: `'postgres'` and `postgres` are one value.
fn unquoted(text: &str) -> String {
    text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')).unwrap_or(text).to_string()
}

/// The type an `--allow-lossy` allows: only FLOAT64.
fn lossy_type(flag: &'static str, value: &str, lossy: &str) -> Result<BigQueryType, ConfigError> {
    match lossy.to_ascii_uppercase().as_str() {
        "FLOAT64" | "FLOAT" => Ok(BigQueryType::Float64),
        _ => Err(ConfigError::Malformed {
            flag,
            value: value.to_string(),
            expected: "TABLE.COLUMN=FLOAT64 (the one lossy conversion pg2bq makes)",
        }),
    }
}

/// Project and dataset: flags (and their environment variables) over the config file.
fn project_and_dataset(target: &BigQueryTargetArgs, file: &ConfigFile) -> Result<(String, String), ConfigError> {
    let project = target
        .project
        .clone()
        .or(file.project.clone())
        .ok_or(ConfigError::MissingTarget { what: "project", env: env::GOOGLE_CLOUD_PROJECT })?;
    let dataset = target
        .dataset
        .clone()
        .or(file.dataset.clone())
        .ok_or(ConfigError::MissingTarget { what: "dataset", env: env::BIGQUERY_DATASET })?;
    Ok((project, dataset))
}

impl GcpArgs {
    pub fn bigquery(&self) -> BigQueryOptions {
        BigQueryOptions {
            emulator_host: self.bigquery_emulator_host.clone(),
            application_credentials: self.storage.google_application_credentials.clone(),
            streaming_buffer_wait: None,
        }
    }

    pub fn gcs(&self) -> GcsOptions {
        self.storage.options()
    }
}

impl GcsArgs {
    pub fn options(&self) -> GcsOptions {
        GcsOptions {
            emulator_host: self.storage_emulator_host.clone(),
            application_credentials: self.google_application_credentials.clone(),
        }
    }
}

impl ValidateConfig {
    /// Combines flags, environment and the config file's `denormalized` and `probes`.
    ///
    /// # Errors
    /// [`ConfigError::MissingTarget`] without a project or dataset.
    pub fn resolve(args: &ValidateArgs, file: ConfigFile) -> Result<Self, ConfigError> {
        let (project, dataset) = project_and_dataset(&args.target, &file)?;
        Ok(Self {
            manifest_uri: args.target.manifest.clone(),
            project,
            dataset,
            location: args.target.location.clone().or(file.location.clone()),
            names: table_names(&args.target, &file)?,
            source_url: args.source.as_deref().map(postgres_url).transpose()?,
            sample_rows: args.sample,
            locate_limit: args.locate_limit,
            dry_run: args.dry_run,
            denormalized: file.denormalized,
            probes: file.probes,
            bigquery: args.gcp.bigquery(),
            gcs: args.gcp.gcs(),
        })
    }
}

fn on_bad_value(arg: OnBadValueArg) -> OnBadValue {
    match arg {
        OnBadValueArg::Refuse => OnBadValue::Refuse,
        OnBadValueArg::Quarantine => OnBadValue::Quarantine,
    }
}

fn out_of_range(arg: OutOfRangeArg) -> OutOfRange {
    match arg {
        OutOfRangeArg::Refuse => OutOfRange::Refuse,
        OutOfRangeArg::Clamp => OutOfRange::Clamp,
        OutOfRangeArg::Null => OutOfRange::Null,
    }
}

/// `mentioned_at` or `mentioned_at:MONTH` (default DAY).
fn parse_partitioning(spec: &str) -> Result<(String, PartitionUnit), ConfigError> {
    let (column, unit) = spec.split_once(':').unwrap_or((spec, "DAY"));
    Ok((column.to_string(), partition_unit(spec, unit)?))
}

/// `DAY`, `HOUR`, `MONTH` or `YEAR` (any case), the unit of `value`.
fn partition_unit(value: &str, unit: &str) -> Result<PartitionUnit, ConfigError> {
    match unit.to_ascii_uppercase().as_str() {
        "DAY" => Ok(PartitionUnit::Day),
        "HOUR" => Ok(PartitionUnit::Hour),
        "MONTH" => Ok(PartitionUnit::Month),
        "YEAR" => Ok(PartitionUnit::Year),
        _ => Err(ConfigError::PartitionUnit { value: value.to_string(), unit: unit.to_string() }),
    }
}

/// The tables a `[[schema.]table.]column` target applies to, with the column name: a bare
/// `column` applies to every table; otherwise the target names one table of the run: a query
/// by its name, a table as `schema.table`, or as `table` when one table of the run has that name.
fn targets<'a>(tables: &'a mut [ExportTable], flag: &'static str, target: &str) -> Result<Vec<(&'a mut ExportTable, String)>, ConfigError> {
    let malformed = || ConfigError::Malformed { flag, value: target.to_string(), expected: "[[SCHEMA.]TABLE.]COLUMN" };
    let mut parts = name_parts(target).map_err(|_| malformed())?;
    let column = parts.pop().expect("name_parts gives one part or more").text;
    let (target_schema, target_table, table) = match parts.as_slice() {
        [] => return Ok(tables.iter_mut().map(|t| (t, column.clone())).collect()),
        [table] => (None, table.folded(), table.text.clone()),
        [schema, table] => (Some(schema.folded()), table.folded(), TableRef::new(schema.folded(), table.folded()).to_string()),
        _ => return Err(malformed()),
    };
    let named = |t: &ExportTable| match &t.source {
        TableSource::Query(_) => t.name == table,
        TableSource::Table(source) => target_schema.as_ref().is_none_or(|s| *s == source.schema) && target_table == source.name,
    };
    let matching: Vec<&str> = tables.iter().filter(|t| named(t)).map(|t| t.name.as_str()).collect();
    if matching.len() != 1 {
        let tables = if matching.is_empty() {
            format!("which is not in this run (tables: {})", tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "))
        } else {
            format!("which is ambiguous (tables: {}); qualify it as schema.table.{column}", matching.join(", "))
        };
        return Err(ConfigError::UnknownTarget { flag, value: target.to_string(), table: table.to_string(), problem: tables });
    }
    Ok(tables.iter_mut().filter(|t| named(t)).map(|t| (t, column.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::model::manifest::TableManifest;
    use clap::Parser;

    /// Held while parsing, so a test that sets `PG2BQ_*` variables does not leak them into others.
    static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn args(argv: &[&str]) -> ExportArgs {
        let _environment = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        parse_export(argv)
    }

    fn parse_export(argv: &[&str]) -> ExportArgs {
        let mut full = vec!["pg2bq", "export"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Export(args) => args,
            _ => unreachable!("export arguments were parsed"),
        }
    }

    fn file(text: &str) -> ConfigFile {
        toml::from_str(text).unwrap()
    }

    /// The snapshot's locks wait 30 s and units not at all unless told; the last flag wins.
    #[test]
    fn lock_waits_default_to_30_s_and_none_and_take_durations() {
        let cfg = ExportConfig::resolve(&args(&["--source", "postgresql://h/db", "--dest", "/tmp/x"]), file(""), None).unwrap();
        assert_eq!((cfg.lock_timeout, cfg.lock_wait), (DEFAULT_LOCK_TIMEOUT, std::time::Duration::ZERO));
        let a =
            args(&["--source", "postgresql://h/db", "--dest", "/tmp/x", "--lock-timeout", "2m", "--lock-wait", "1s", "--lock-wait", "5m"]);
        let cfg = ExportConfig::resolve(&a, file(""), None).unwrap();
        assert_eq!((cfg.lock_timeout.as_secs(), cfg.lock_wait.as_secs()), (120, 300));
    }

    #[test]
    fn flag_beats_environment_beats_file() {
        let a = args(&["--source", "postgresql://flag/db", "--dest", "/tmp/x"]);
        let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), Some("postgresql://env/db".into())).unwrap();
        assert_eq!(cfg.source_url, "postgresql://flag/db?connect_timeout=30&keepalives_idle=60");
        let a = args(&["--dest", "/tmp/x"]);
        let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), Some("postgresql://env/db".into())).unwrap();
        assert!(cfg.source_url.starts_with("postgresql://env/db?"), "{}", cfg.source_url);
        let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), None).unwrap();
        assert!(cfg.source_url.starts_with("postgresql://file/db?"), "{}", cfg.source_url);
    }

    #[test]
    fn repeated_flag_last_wins() {
        let a = args(&["--partitions", "2", "--partitions", "7", "--source", "postgresql://h/db", "--dest", "d", "--table", "t"]);
        assert_eq!(ExportConfig::resolve(&a, ConfigFile::default(), None).unwrap().tables[0].partitions, Some(7));
        let a =
            args(&["--source", "postgresql://h/db", "--dest", "d", "--table", "t", "--out-of-range", "clamp", "--out-of-range", "null"]);
        assert_eq!(ExportConfig::resolve(&a, ConfigFile::default(), None).unwrap().tables[0].out_of_range, OutOfRange::Null);
    }

    #[test]
    fn jobs_come_from_the_flag_then_the_environment_then_the_file() {
        let jobs = |flag: &[&str], environment: Option<&str>, text: &str| {
            let parsed = {
                let _environment = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(value) = environment {
                    std::env::set_var(env::JOBS, value);
                }
                let parsed = parse_export(&[&["--source", "postgresql://h/db", "--dest", "d", "--table", "t"], flag].concat());
                std::env::remove_var(env::JOBS);
                parsed
            };
            ExportConfig::resolve(&parsed, file(text), None).map(|c| c.jobs)
        };
        assert_eq!(jobs(&["--jobs", "3"], Some("5"), "jobs = 7").unwrap(), 3);
        assert_eq!(jobs(&[], Some("5"), "jobs = 7").unwrap(), 5);
        assert_eq!(jobs(&[], None, "jobs = 7").unwrap(), 7);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(jobs(&[], None, "").unwrap(), cores);
        assert!(matches!(jobs(&[], None, "jobs = 0"), Err(ConfigError::ZeroJobs)));
    }

    fn resolved(argv: &[&str], text: &str) -> ExportTable {
        let mut full = vec!["--source", "postgresql://h/db", "--dest", "d"];
        full.extend_from_slice(argv);
        ExportConfig::resolve(&args(&full), file(text), None).unwrap().tables.remove(0)
    }

    const PER_TABLE: &str =
        "out_of_range = 'null'\n[[tables]]\nname = 'public.events'\npartitions = 3\nout_of_range = 'clamp'\npartition_on = 'id'\n";

    #[test]
    fn per_table_flag_beats_file_value() {
        let t = resolved(&["--partitions", "5", "--out-of-range", "refuse", "--partition-on", "events.other"], PER_TABLE);
        assert_eq!((t.partitions, t.out_of_range, t.partition_on.as_deref()), (Some(5), OutOfRange::Refuse, Some("other")));
    }

    #[test]
    fn per_table_environment_beats_file_value() {
        // clap folds the variables into the flags, as in main.
        let parsed = {
            let _environment = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
            std::env::set_var(env::PARTITIONS, "6");
            std::env::set_var(env::OUT_OF_RANGE, "refuse");
            let parsed = parse_export(&["--source", "postgresql://h/db", "--dest", "d"]);
            std::env::remove_var(env::PARTITIONS);
            std::env::remove_var(env::OUT_OF_RANGE);
            parsed
        };
        let t = ExportConfig::resolve(&parsed, file(PER_TABLE), None).unwrap().tables.remove(0);
        assert_eq!((t.partitions, t.out_of_range), (Some(6), OutOfRange::Refuse));
    }

    /// `--updated-at` needs `--since`; the flag beats the file's per-table `updated_at`.
    #[test]
    fn updated_at_flag_beats_the_files_and_carry_changes_is_read() {
        let text = "[[tables]]\nname = 'public.events'\nupdated_at = 'touched_at'\n";
        assert_eq!(resolved(&["--since", "m.json"], text).updated_at.as_deref(), Some("touched_at"));
        let t = resolved(&["--since", "m.json", "--updated-at", "events.changed_at"], text);
        assert_eq!(t.updated_at.as_deref(), Some("changed_at"));
        let parsed = args(&["--source", "postgresql://h/db", "--dest", "d", "--table", "t", "--since", "m", "--carry-changes"]);
        assert!(ExportConfig::resolve(&parsed, file(""), None).unwrap().carry_changes);
    }

    #[test]
    fn per_table_file_value_beats_file_global_beats_default() {
        let t = resolved(&[], PER_TABLE);
        assert_eq!((t.partitions, t.out_of_range, t.partition_on.as_deref()), (Some(3), OutOfRange::Clamp, Some("id")));
        let t = resolved(&[], "out_of_range = 'null'\n[[tables]]\nname = 'events'\n");
        assert_eq!((t.partitions, t.out_of_range), (None, OutOfRange::Null));
        let t = resolved(&["--table", "x"], "");
        assert_eq!((t.partitions, t.out_of_range, t.partition_on), (None, OutOfRange::Refuse, None));
    }

    #[test]
    fn file_options_apply_to_a_table_however_it_is_spelt() {
        let t = resolved(&["--table", "EVENTS"], PER_TABLE);
        assert_eq!((t.name.as_str(), t.partitions), ("public.events", Some(3)));
        assert_eq!(t.source, TableSource::Table(TableRef::new("public", "events")));
    }

    #[test]
    fn two_names_of_one_table_are_refused_naming_both() {
        for (argv, text) in [
            (vec!["--table", "events", "--table", "public.events"], ""),
            (vec!["--table", "\"events\"", "--table", "Public.Events"], ""),
            (vec![], "[[tables]]\nname = 'public.events'\n[[tables]]\nname = 'events'\n"),
        ] {
            let mut full = vec!["--source", "postgresql://h/db", "--dest", "d"];
            full.extend_from_slice(&argv);
            let err = ExportConfig::resolve(&args(&full), file(text), None).unwrap_err();
            assert!(matches!(&err, ConfigError::DuplicateTable { canonical, .. } if canonical == "public.events"), "{err}");
        }
        let err = ExportConfig::resolve(
            &args(&["--source", "postgresql://h/db", "--dest", "d", "--query", "q=SELECT 1", "--query", "q=SELECT 2"]),
            file(""),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`q` and `q`"), "{err}");
    }

    #[test]
    fn table_names_follow_postgres_quoting() {
        assert_eq!(table_ref("--table", "Audit.Events").unwrap(), TableRef::new("audit", "events"));
        assert_eq!(table_ref("--table", "\"My\"\"Schema\".\"t.1\"").unwrap(), TableRef::new("My\"Schema", "t.1"));
        assert_eq!(table_ref("--table", "t-1").unwrap(), TableRef::new("public", "t-1"));
        for bad in ["a.b.c", "\"open", "a.", ""] {
            assert!(table_ref("--table", bad).is_err(), "{bad}");
        }
    }

    /// `"sales.eu".orders` was joined to `sales.eu.orders` and cut at the first dot, so the
    /// export read `sales."eu.orders"`.
    #[test]
    fn a_dot_inside_a_quoted_schema_stays_in_the_schema() {
        let t = resolved(&["--table", "\"sales.eu\".orders"], "");
        assert_eq!(t.source, TableSource::Table(TableRef::new("sales.eu", "orders")));
        assert_eq!(t.name, "\"sales.eu\".orders");
        let t = resolved(&["--table", "sales.\"eu.orders\""], "");
        assert_eq!(t.source, TableSource::Table(TableRef::new("sales", "eu.orders")));
        assert_eq!(t.name, "sales.\"eu.orders\"");
    }

    #[test]
    fn a_table_whose_directory_no_store_takes_is_refused_with_the_way_out() {
        let long = format!("\"{}\".\"{}\"", "é".repeat(31), "é".repeat(31));
        let a = args(&["--source", "postgresql://h/db", "--dest", "d", "--table", &long]);
        let err = ExportConfig::resolve(&a, file(""), None).unwrap_err().to_string();
        assert!(err.starts_with(&format!("table `{long}`: its directory in the run, `")), "{err}");
        assert!(err.contains("would be 373 bytes, more than the 255 a store takes in one path part"), "{err}");
        assert!(err.ends_with(&format!("export it as a query instead: --query NAME=SELECT * FROM {long}")), "{err}");
    }

    #[test]
    fn column_flags_read_quoted_table_parts() {
        let mut tables = vec![
            resolved(&["--table", "\"sales.eu\".orders"], ""),
            ExportTable {
                name: "sales.\"eu.orders\"".into(),
                source: TableSource::Table(TableRef::new("sales", "eu.orders")),
                ..resolved(&["--table", "x"], "")
            },
        ];
        let hit = targets(&mut tables, "--cast", "\"sales.eu\".orders.amount").unwrap();
        assert_eq!(hit.iter().map(|(t, c)| (t.name.as_str(), c.as_str())).collect::<Vec<_>>(), [("\"sales.eu\".orders", "amount")]);
        let hit = targets(&mut tables, "--cast", "sales.\"eu.orders\".\"Amount.x\"").unwrap();
        assert_eq!(hit.iter().map(|(t, c)| (t.name.as_str(), c.as_str())).collect::<Vec<_>>(), [("sales.\"eu.orders\"", "Amount.x")]);
        assert!(targets(&mut tables, "--cast", "sales.eu.orders.amount").is_err());
        let unknown = targets(&mut tables, "--cast", "\"Sales.US\".Orders.amount").map(|_| ()).unwrap_err().to_string();
        assert!(
            unknown.starts_with("--cast `\"Sales.US\".Orders.amount` names table `\"Sales.US\".orders`, which is not in this run"),
            "{unknown}"
        );
        assert_eq!(
            table_column("--exclude-column", "\"sales.eu\".orders.amount", "TABLE.COLUMN").unwrap(),
            ("\"sales.eu\".orders".to_string(), "amount".to_string())
        );
        assert_eq!(
            table_column("--exclude-column", "public.\"Events\".id", "TABLE.COLUMN").unwrap(),
            ("\"Events\"".to_string(), "id".to_string())
        );
        assert_eq!(table_column("--exclude-column", "events.id", "TABLE.COLUMN").unwrap(), ("events".to_string(), "id".to_string()));
        assert!(table_column("--exclude-column", "id", "TABLE.COLUMN").is_err());
    }

    #[test]
    fn queries_lose_trailing_semicolons_and_need_a_plain_name() {
        let t = resolved(&["--query", "recent=SELECT 1 ;; \n"], "");
        assert_eq!(t.source, TableSource::Query("SELECT 1".into()));
        let long = format!("{}=SELECT 1", "q".repeat(256));
        for bad in ["../x=SELECT 1", "a.b=SELECT 1", "q= ; ", "\"Recent\"=SELECT 1", &long] {
            let a = args(&["--source", "postgresql://h/db", "--dest", "d", "--query", bad]);
            assert!(ExportConfig::resolve(&a, ConfigFile::default(), None).is_err(), "{bad}");
        }
        let a = args(&["--source", "postgresql://h/db", "--dest", "d", "--query", &long]);
        let error = ExportConfig::resolve(&a, ConfigFile::default(), None).unwrap_err().to_string();
        assert!(
            error
                .ends_with("may only hold letters, digits, `_` and `-`, 255 at most (it names the BigQuery table and the run's directory)"),
            "{error}"
        );
    }

    #[test]
    fn qualified_targets_must_name_a_table_of_the_run() {
        let err = ExportConfig::resolve(
            &args(&["--source", "postgresql://h/db", "--dest", "d", "--table", "a", "--cast", "b.c=text"]),
            file(""),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("names table `b`, which is not in this run (tables: public.a)"), "{err}");
        let a = args(&["--source", "postgresql://h/db", "--dest", "d", "--table", "a.t", "--table", "b.t", "--cast", "t.c=text"]);
        let err = ExportConfig::resolve(&a, file(""), None).unwrap_err();
        assert!(err.to_string().contains("ambiguous (tables: a.t, b.t); qualify it as schema.table.c"), "{err}");
        let a = args(&["--source", "postgresql://h/db", "--dest", "d", "--table", "a.t", "--table", "b.u", "--cast", "t.c=text"]);
        let tables = ExportConfig::resolve(&a, file(""), None).unwrap().tables;
        assert_eq!((tables[0].casts.len(), tables[1].casts.len()), (1, 0));
        let t = resolved(&["--query", "recent=SELECT 1 AS c", "--cast", "recent.c=text"], "");
        assert_eq!(t.casts.keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn libpq_key_value_sources_become_urls() {
        let url = postgres_url("host=db.internal port=5433 dbname=app user=me password='p w' sslmode=require").unwrap();
        assert_eq!(url, "postgresql://me:p%20w@db.internal:5433/app?sslmode=require&connect_timeout=30&keepalives_idle=60");
        let url = postgres_url("host=/var/run/postgresql dbname=app connect_timeout=2").unwrap();
        assert_eq!(url, "postgresql://localhost/app?host=%2Fvar%2Frun%2Fpostgresql&connect_timeout=2&keepalives_idle=60");
        let err = postgres_url("host=h password=s3cret dbname").unwrap_err().to_string();
        assert!(err.contains("`dbname` has no `=value`") && !err.contains("s3cret"), "{err}");
        assert_eq!(
            postgres_url("postgresql://u@h/db?keepalives_idle=5").unwrap(),
            "postgresql://u@h/db?keepalives_idle=5&connect_timeout=30"
        );
    }

    #[test]
    fn zero_partitions_in_the_file_are_refused() {
        let a = args(&["--source", "postgresql://h/db", "--dest", "d"]);
        let err = ExportConfig::resolve(&a, file("[[tables]]\nname = 'events'\npartitions = 0\n"), None).unwrap_err();
        assert!(matches!(err, ConfigError::ZeroPartitions { .. }), "{err}");
    }

    #[test]
    fn load_options_come_from_flags_over_the_file() {
        let f = file("project = 'file-p'\ndataset = 'd'\n[[tables]]\nname = 'public.events'\npartition_by = 'created_at:MONTH'\ncluster_by = ['id']\n");
        let cli = Cli::try_parse_from([
            "pg2bq",
            "load",
            "--manifest",
            "gs://b/r/manifest.json",
            "--project",
            "flag-p",
            "--partition-by",
            "public.events.mentioned_at",
            "--cluster-by",
            "events.entity_id,event_id",
        ])
        .unwrap();
        let Command::Load(args) = cli.command else { unreachable!() };
        let cfg = LoadConfig::resolve(&args, f).unwrap();
        assert_eq!((cfg.target.project.as_str(), cfg.target.dataset.as_str()), ("flag-p", "d"));
        assert_eq!(cfg.target.partition_by["events"], ("mentioned_at".to_string(), PartitionUnit::Day));
        // The flag's `events` and the file's `public.events` are one table: the flag wins.
        assert_eq!(cfg.target.cluster_by["events"], ["entity_id", "event_id"]);
        assert_eq!(cfg.target.cluster_by.len(), 1);
    }

    /// Load flags naming a table whose parts hold `.`, `=`, `,` or `:` inside quotes.
    #[test]
    fn load_flags_read_quoted_table_names() {
        let cli = Cli::try_parse_from([
            "pg2bq",
            "load",
            "--manifest",
            "gs://b/r/manifest.json",
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
        ])
        .unwrap();
        let Command::Load(args) = cli.command else { unreachable!() };
        let target = LoadConfig::resolve(&args, file("")).unwrap().target;
        let key = "\"sales.eu\".orders".to_string();
        assert_eq!(target.names.map, [(key.clone(), "eu_orders".to_string()), ("s.\"a=b\"".to_string(), "ab".to_string())].into());
        assert_eq!(target.routing.tables[&key].column_map, [("Amount.x".to_string(), "amount".to_string())].into());
        assert_eq!(target.partition_by[&key], ("at:x".to_string(), PartitionUnit::Month));
        assert_eq!(target.cluster_by["s.\"a,b\""], ["c", "d"]);
        let entry = |schema: &str, name: &str| {
            TableManifest {
            name: TableRef::new(schema, name).to_string(),
            table: Some(TableRef::new(schema, name)),
            bq_table: TableRef::new(schema, name).bigquery_name(),
            ..serde_json::from_str(r#"{"name":"","bq_table":"","source_query":"","primary_key":[],"columns":[],"row_count":0,"files":[],"partitions":[],"foreign_keys":[]}"#).unwrap()
        }
        };
        assert_eq!(target.names.table_id(&entry("sales.eu", "orders")), "eu_orders");
        assert_eq!(target.names.table_id(&entry("sales", "eu.orders")), "sales__eu_orders");
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<ConfigFile>("tabels = []").is_err());
    }

    #[test]
    fn missing_source_says_where_to_put_it() {
        let err = ExportConfig::resolve(&args(&["--dest", "d"]), ConfigFile::default(), None).unwrap_err();
        assert!(err.to_string().contains("PG2BQ_SOURCE"), "{err}");
    }
}
