//! Resolved settings: flags > environment > config file > defaults.
//!
//! The file says what moves (tables, options per table, destination); runtime knobs come from
//! flags and the environment. `resolve` is the only place the sources are combined.

pub mod env;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::cli::{BigQueryTargetArgs, ExportArgs, GcpArgs, LoadArgs, ValidateArgs};
use crate::load::bigquery::BigQueryOptions;
use crate::load::plan::PartitionUnit;
use crate::load::{LoadConfig, LoadTarget};
use crate::sink::gcs::GcsOptions;
use crate::sink::manifest::names_table;
use crate::sink::parquet::ParquetSettings;
use crate::sink::run::{InvalidRunId, RunId};
use crate::source::types::{CastOverride, OutOfRange};
use crate::validate::{Denormalized, Probe, ValidateConfig};

/// Rows per Arrow batch from Postgres unless told otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 16_384;
/// Most partitions used per table by default. Each partition keeps about two threads busy
/// (ConnectorX decoding, our conversion and encoding), so the default is half the cores.
pub const MAX_DEFAULT_PARTITIONS: usize = 4;

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
    #[error("no destination: pass --dest, set PG2BQ_DEST, or put `dest` in the config file")]
    MissingDestination,
    #[error("`{value}` for {flag} is not of the form {expected}")]
    Malformed { flag: &'static str, value: String, expected: &'static str },
    #[error("no BigQuery {what}: pass --{what}, set {env}, or put `{what}` in the config file")]
    MissingTarget { what: &'static str, env: &'static str },
    #[error("`{value}`: unknown partitioning unit `{unit}` (use DAY, HOUR, MONTH or YEAR)")]
    PartitionUnit { value: String, unit: String },
    #[error(transparent)]
    RunId(#[from] InvalidRunId),
    #[error("destination `{url}` is in memory and would vanish when pg2bq exits; pass gs://bucket/prefix, file:///abs/dir or a path")]
    MemoryDestination { url: String },
}

/// Everything `export` needs.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub source_url: String,
    pub destination: String,
    pub tables: Vec<TableSpec>,
    pub partitions: usize,
    pub out_of_range: OutOfRange,
    pub run_id: Option<RunId>,
    /// Take the run over from an earlier attempt even if pg2bq cannot tell that it is gone.
    pub take_over: bool,
    pub dry_run: bool,
    pub parquet: ParquetSettings,
    pub batch_rows: usize,
    pub gcs: GcsOptions,
}

/// One table or query and its options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// `schema.table`, or the name of a query.
    pub name: String,
    /// SQL to export instead of a table.
    pub query: Option<String>,
    #[serde(default, rename = "cast")]
    pub casts: BTreeMap<String, CastOverride>,
    pub partitions: Option<usize>,
    pub partition_on: Option<String>,
    pub out_of_range: Option<OutOfRange>,
    /// `load`: time partitioning, `column[:DAY|HOUR|MONTH|YEAR]`.
    pub partition_by: Option<String>,
    /// `load`: clustering columns.
    pub cluster_by: Option<Vec<String>>,
}

/// The config file: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub source: Option<String>,
    pub dest: Option<String>,
    pub out_of_range: Option<OutOfRange>,
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
}

impl ExportConfig {
    /// Combines flags (clap already folded in `PG2BQ_*`), `DATABASE_URL`, the file and defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing source or destination or a malformed value.
    pub fn resolve(args: &ExportArgs, file: ConfigFile, database_url: Option<String>) -> Result<Self, ConfigError> {
        let source_url = args.source.clone().or(database_url).or(file.source).ok_or(ConfigError::MissingSource)?;
        let destination = args.dest.clone().or(file.dest).ok_or(ConfigError::MissingDestination)?;
        let mut tables: Vec<TableSpec> = if args.tables.is_empty() && args.queries.is_empty() {
            file.tables
        } else {
            let from_file = |name: &str| file.tables.iter().find(|t| t.name == name).cloned();
            let mut tables: Vec<TableSpec> =
                args.tables.iter().map(|name| from_file(name).unwrap_or(TableSpec { name: name.clone(), ..Default::default() })).collect();
            for query in &args.queries {
                let (name, sql) = query.split_once('=').ok_or_else(|| ConfigError::Malformed {
                    flag: "--query",
                    value: query.clone(),
                    expected: "NAME=SQL",
                })?;
                tables.push(TableSpec { name: name.trim().to_string(), query: Some(sql.to_string()), ..Default::default() });
            }
            tables
        };
        for cast in &args.casts {
            let (target, kind) = cast.split_once('=').ok_or_else(|| ConfigError::Malformed {
                flag: "--cast",
                value: cast.clone(),
                expected: "[TABLE.]COLUMN=text",
            })?;
            if kind != "text" {
                return Err(ConfigError::Malformed { flag: "--cast", value: cast.clone(), expected: "[TABLE.]COLUMN=text" });
            }
            for (table, column) in targets(&mut tables, target) {
                table.casts.insert(column, CastOverride::Text);
            }
        }
        for key in &args.partition_on {
            for (table, column) in targets(&mut tables, key) {
                table.partition_on = Some(column);
            }
        }
        let run_id = args.run_id.as_deref().map(RunId::parse).transpose()?;
        if destination.starts_with("memory://") {
            return Err(ConfigError::MemoryDestination { url: destination });
        }
        let defaults = ParquetSettings::default();
        let parallelism = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Ok(Self {
            source_url,
            destination,
            tables,
            partitions: args.partitions.unwrap_or((parallelism / 2).clamp(1, MAX_DEFAULT_PARTITIONS)),
            out_of_range: args.out_of_range.or(file.out_of_range).unwrap_or_default(),
            run_id,
            take_over: args.take_over,
            dry_run: args.dry_run,
            parquet: ParquetSettings {
                zstd_level: args.zstd_level.unwrap_or(defaults.zstd_level),
                row_group_bytes: args.row_group_size.map_or(defaults.row_group_bytes, |b| b as usize),
                file_bytes: args.file_size.unwrap_or(defaults.file_bytes),
            },
            batch_rows: args.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS),
            gcs: GcsOptions {
                emulator_host: args.storage_emulator_host.clone(),
                application_credentials: args.google_application_credentials.clone(),
            },
        })
    }
}

impl LoadConfig {
    /// Combines flags (with `GOOGLE_CLOUD_PROJECT`, `BIGQUERY_DATASET` folded in by clap), the
    /// export's config file (per-table partitioning and clustering) and defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing project or dataset or a malformed option.
    pub fn resolve(args: &LoadArgs, file: ConfigFile) -> Result<Self, ConfigError> {
        let (project, dataset) = project_and_dataset(&args.target, &file)?;
        let mut partition_by = BTreeMap::new();
        let mut cluster_by = BTreeMap::new();
        for table in &file.tables {
            if let Some(spec) = &table.partition_by {
                partition_by.insert(table.name.clone(), parse_partitioning(spec)?);
            }
            if let Some(columns) = &table.cluster_by {
                cluster_by.insert(table.name.clone(), columns.clone());
            }
        }
        for value in &args.partition_by {
            let (table, spec) = value.rsplit_once('.').filter(|(t, _)| !t.is_empty()).ok_or_else(|| ConfigError::Malformed {
                flag: "--partition-by",
                value: value.clone(),
                expected: "TABLE.COLUMN[:UNIT]",
            })?;
            partition_by.insert(table.to_string(), parse_partitioning(spec)?);
        }
        for value in &args.cluster_by {
            let (table, columns) =
                value.split_once(',').map_or(value.as_str(), |(first, _)| first).rsplit_once('.').ok_or_else(|| {
                    ConfigError::Malformed { flag: "--cluster-by", value: value.clone(), expected: "TABLE.COLUMN[,COLUMN]" }
                })?;
            let rest = value.split_once(',').map(|(_, rest)| rest).unwrap_or("");
            let mut list = vec![columns.to_string()];
            list.extend(rest.split(',').filter(|c| !c.is_empty()).map(str::to_string));
            cluster_by.insert(table.to_string(), list);
        }
        Ok(Self {
            manifest_uri: args.target.manifest.clone(),
            target: LoadTarget {
                project,
                dataset,
                location: args.target.location.clone().or(file.location),
                table_prefix: args.target.table_prefix.clone(),
                mode: args.mode,
                partition_by,
                cluster_by,
            },
            create_dataset: args.create_dataset,
            dry_run: args.dry_run,
            bigquery: args.gcp.bigquery(),
            gcs: args.gcp.gcs(),
        })
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
            application_credentials: self.google_application_credentials.clone(),
        }
    }

    pub fn gcs(&self) -> GcsOptions {
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
            location: args.target.location.clone().or(file.location),
            table_prefix: args.target.table_prefix.clone(),
            source_url: args.source.clone(),
            sample_rows: args.sample,
            denormalized: file.denormalized,
            probes: file.probes,
            bigquery: args.gcp.bigquery(),
            gcs: args.gcp.gcs(),
        })
    }
}

/// `mentioned_at` or `mentioned_at:MONTH` (default DAY).
fn parse_partitioning(spec: &str) -> Result<(String, PartitionUnit), ConfigError> {
    let (column, unit) = spec.split_once(':').unwrap_or((spec, "DAY"));
    let unit = match unit.to_ascii_uppercase().as_str() {
        "DAY" => PartitionUnit::Day,
        "HOUR" => PartitionUnit::Hour,
        "MONTH" => PartitionUnit::Month,
        "YEAR" => PartitionUnit::Year,
        _ => return Err(ConfigError::PartitionUnit { value: spec.to_string(), unit: unit.to_string() }),
    };
    Ok((column.to_string(), unit))
}

/// The tables a `[table.]column` target applies to, with the column name: `schema.table.col`
/// or `table.col` names one table, a bare `col` applies to all.
fn targets<'a>(tables: &'a mut [TableSpec], target: &str) -> Vec<(&'a mut TableSpec, String)> {
    match target.rsplit_once('.') {
        Some((table, column)) => tables.iter_mut().filter(|t| names_table(&t.name, table)).map(|t| (t, column.to_string())).collect(),
        None => tables.iter_mut().map(|t| (t, target.to_string())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(argv: &[&str]) -> ExportArgs {
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

    #[test]
    fn flag_beats_environment_beats_file() {
        let a = args(&["--source", "postgresql://flag/db", "--dest", "/tmp/x"]);
        let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), Some("postgresql://env/db".into())).unwrap();
        assert_eq!(cfg.source_url, "postgresql://flag/db");
        let a = args(&["--dest", "/tmp/x"]);
        let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), Some("postgresql://env/db".into())).unwrap();
        assert_eq!(cfg.source_url, "postgresql://env/db");
        let cfg = ExportConfig::resolve(&a, file("source = 'postgresql://file/db'"), None).unwrap();
        assert_eq!(cfg.source_url, "postgresql://file/db");
    }

    #[test]
    fn repeated_flag_last_wins() {
        let a = args(&["--partitions", "2", "--partitions", "7", "--source", "s", "--dest", "d"]);
        assert_eq!(ExportConfig::resolve(&a, ConfigFile::default(), None).unwrap().partitions, 7);
    }

    #[test]
    fn file_tables_keep_their_options_when_named_by_flag() {
        let f =
            file("[[tables]]\nname = 'public.events'\npartitions = 3\ncast = { payload = 'text' }\n[[tables]]\nname = 'public.other'\n");
        let a = args(&["--source", "s", "--dest", "d", "--table", "public.events", "--cast", "events.note=text"]);
        let cfg = ExportConfig::resolve(&a, f, None).unwrap();
        assert_eq!(cfg.tables.len(), 1);
        assert_eq!(cfg.tables[0].partitions, Some(3));
        assert_eq!(cfg.tables[0].casts.keys().collect::<Vec<_>>(), ["note", "payload"]);
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
        assert_eq!(cfg.target.partition_by["public.events"], ("mentioned_at".to_string(), PartitionUnit::Day));
        assert_eq!(cfg.target.cluster_by["events"], ["entity_id", "event_id"]);
        assert_eq!(cfg.target.cluster_by["public.events"], ["id"]);
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
