//! What `load` and `validate` share: the BigQuery project, dataset and location, where each
//! snapshot table goes (`--table-map` over the file's `target`), and the GCP endpoints.

use std::collections::BTreeMap;

use crate::cli::{env, BigQueryTargetArgs, GcpArgs, GcsArgs};
use crate::config::{Combine, ConfigError, ConfigFile};
use crate::gcp::bigquery::BigQueryOptions;
use crate::model::manifest::TableNames;
use crate::model::table_ref::{table_key, TableRef};
use crate::storage::gcs::GcsOptions;

/// The BigQuery side of a load or validate, resolved.
pub(super) struct Target {
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    pub names: TableNames,
}

impl Target {
    /// Flags (and their environment variables) over the config file.
    pub fn resolve(args: &BigQueryTargetArgs, file: &ConfigFile) -> Result<Self, ConfigError> {
        let missing = |what, env| ConfigError::MissingTarget { what, env };
        let project = args.project.clone().combine(file.project.clone()).ok_or_else(|| missing("project", env::GOOGLE_CLOUD_PROJECT))?;
        let dataset = args.dataset.clone().combine(file.dataset.clone()).ok_or_else(|| missing("dataset", env::BIGQUERY_DATASET))?;
        let mut file_map = BTreeMap::new();
        for table in &file.tables {
            if let Some(id) = &table.target {
                file_map.insert(file_key(&table.name)?, id.clone());
            }
        }
        let flag_map: BTreeMap<String, String> = args.table_map.iter().map(|m| (m.table.clone(), m.target.clone())).collect();
        Ok(Self {
            project,
            dataset,
            location: args.location.clone().combine(file.location.clone()),
            names: TableNames { prefix: args.table_prefix.clone(), map: flag_map.combine(file_map) },
        })
    }
}

/// The key of a file table's load options (see [`table_key`]).
pub(super) fn file_key(name: &str) -> Result<String, ConfigError> {
    let (schema, table) =
        TableRef::parse_partial(name).map_err(|source| ConfigError::TableName { flag: "tables.name", value: name.to_string(), source })?;
    Ok(table_key(schema.as_deref(), &table))
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
