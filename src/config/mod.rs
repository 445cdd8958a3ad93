//! Resolved settings: flags > environment > config file (per table, then global) > defaults.
//!
//! clap has parsed every flag into its model type (`crate::cli`) and serde every file value
//! (`file`); here the layers are merged by one rule, [`Combine`], one file per stage. The file
//! says what moves (tables, options per table, destination); runtime knobs come from flags and
//! the environment.

mod audit;
mod bigquery;
mod export;
mod file;
mod load;
mod validate;
mod verify;
mod work;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::settings::SettingError;
use crate::model::table_ref::{ParseTableRefError, MAX_DIRECTORY_BYTES};
use crate::source::conninfo::{ConninfoError, PostgresSource};

pub use export::{DEFAULT_BATCH_ROWS, DEFAULT_DEADLINE, DEFAULT_LOCK_TIMEOUT};
pub use file::{ConfigFile, TableSpec};

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
    #[error(transparent)]
    Source(#[from] ConninfoError),
    #[error("worker identity: {0}")]
    WorkerIdentity(String),
    #[error("no destination: pass --dest, set PG2BQ_DEST, or put `dest` in the config file")]
    MissingDestination,
    #[error("`set` for {flag} is not of the form {expected}")]
    ModeOnly { flag: &'static str, expected: &'static str },
    #[error("`{value}` for {flag} does not name a table (quote a part that holds a dot, as in `\"sales.eu\".orders`)")]
    TableName {
        flag: &'static str,
        value: String,
        #[source]
        source: ParseTableRefError,
    },
    #[error("config file table `{name}`")]
    Setting {
        name: String,
        #[source]
        source: SettingError,
    },
    #[error(
        "table `{table}`: its directory in the run, `{directory}`, would be {bytes} bytes, more than the {max} a store takes \
         in one path part; export it as a query instead: --query NAME=SELECT * FROM {quoted}",
        max = MAX_DIRECTORY_BYTES
    )]
    UnrepresentableTable { table: String, directory: String, bytes: usize, quoted: String },
    #[error("no BigQuery {what}: pass --{what}, set {env}, or put `{what}` in the config file")]
    MissingTarget { what: &'static str, env: &'static str },
    #[error("`{first}` and `{second}` both name `{canonical}`; list each table or query once")]
    DuplicateTable { first: String, second: String, canonical: String },
    #[error("{flag} `{value}` names table `{table}`, {problem}")]
    UnknownTarget { flag: &'static str, value: String, table: String, problem: String },
    #[error("table `{table}`: `partitions = 0` in the config file; use 1 or more")]
    ZeroPartitions { table: String },
    #[error("`jobs = 0` in the config file; use 1 or more")]
    ZeroJobs,
}

/// Settings from two places merged, the higher priority first: `self` wins field by field
/// (after uv's `uv-settings` `Combine`). Every stage merges its layers with it:
/// `flag.combine(file_table).combine(file_global)`, then the default.
pub trait Combine {
    #[must_use]
    fn combine(self, lower: Self) -> Self;
}

impl<T> Combine for Option<T> {
    fn combine(self, lower: Self) -> Self {
        self.or(lower)
    }
}

/// Key by key: an entry of the higher layer replaces the lower one's for the same key.
impl<K: Ord, V> Combine for BTreeMap<K, V> {
    fn combine(self, mut lower: Self) -> Self {
        lower.extend(self);
        lower
    }
}

/// A set of names (columns left out) is the union of the layers.
impl<T: Ord> Combine for BTreeSet<T> {
    fn combine(self, mut lower: Self) -> Self {
        lower.extend(self);
        lower
    }
}

/// The source: the flag (parsed by clap) over the text of the layers below it, parsed here.
fn source(flag: Option<PostgresSource>, lower: Option<String>) -> Result<PostgresSource, ConfigError> {
    match flag {
        Some(source) => Ok(source),
        None => Ok(lower.ok_or(ConfigError::MissingSource)?.parse()?),
    }
}
