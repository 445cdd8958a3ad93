//! The config file: its TOML schema, every field optional, each value deserialized into the type
//! its flag parses into (one parser per value).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::gcp::schema::PartitionSpec;
use crate::model::settings::{Destination, LossyType};
use crate::model::types::{CastOverride, OnBadValue, OutOfRange};
use crate::validate::{Denormalized, Probe};

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
    pub partition_by: Option<PartitionSpec>,
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
    pub allow_lossy: BTreeMap<String, LossyType>,
    /// `load --mode merge`: the key columns (default: the primary key).
    pub merge_key: Option<Vec<String>>,
}

/// The config file: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Parsed where it is used, not here: a TOML error would quote the line, password and all.
    pub source: Option<String>,
    pub dest: Option<Destination>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::schema::PartitionUnit;

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<ConfigFile>("tabels = []").is_err());
    }

    #[test]
    fn file_values_parse_into_the_flags_types() {
        let file: ConfigFile =
            toml::from_str("[[tables]]\nname = 'events'\npartition_by = 'at:month'\nallow_lossy = { amount = 'float' }\n").unwrap();
        assert_eq!(file.tables[0].partition_by, Some(PartitionSpec { column: "at".into(), unit: PartitionUnit::Month }));
        assert_eq!(file.tables[0].allow_lossy["amount"], LossyType(crate::model::types::BigQueryType::Float64));
        let err = toml::from_str::<ConfigFile>("[[tables]]\nname = 'e'\npartition_by = 'at:WEEK'\n").unwrap_err().to_string();
        assert!(err.contains("unknown partitioning unit `WEEK` (use DAY, HOUR, MONTH or YEAR)"), "{err}");
        let err = toml::from_str::<ConfigFile>("[[tables]]\nname = 'e'\nallow_lossy = { a = 'INT64' }\n").unwrap_err().to_string();
        assert!(err.contains("`INT64` is not a lossy type pg2bq allows"), "{err}");
    }
}
