//! The audit commands' settings (`report`, `external`), from flags and the environment only:
//! they read a run, they move nothing.

use crate::audit::external::ExternalConfig;
use crate::audit::report::ReportConfig;
use crate::cli::{ExternalArgs, ReportArgs};

impl ReportConfig {
    pub fn resolve(args: &ReportArgs) -> Self {
        Self {
            manifest_uri: args.manifest.clone(),
            out: args.out.clone(),
            time_columns: args.time_column.clone(),
            source_url: args.source.clone().map(String::from),
            project: args.project.clone(),
            dataset: args.dataset.clone(),
            location: args.location.clone(),
            bigquery: args.gcp.bigquery(),
            gcs: args.gcp.gcs(),
        }
    }
}

impl ExternalConfig {
    /// # Errors
    /// [`crate::config::ConfigError::MissingTarget`] for `--dataset` without a project.
    pub fn resolve(args: &ExternalArgs) -> Result<Self, crate::config::ConfigError> {
        let target = match (&args.dataset, &args.project) {
            (Some(dataset), Some(project)) => Some((project.clone(), dataset.clone())),
            (Some(_), None) => {
                return Err(crate::config::ConfigError::MissingTarget { what: "project", env: crate::cli::env::GOOGLE_CLOUD_PROJECT })
            }
            (None, _) => None,
        };
        Ok(Self {
            manifest_uri: args.manifest.clone(),
            target,
            location: args.location.clone(),
            prefix: args.prefix.clone(),
            duckdb: args.duckdb.clone(),
            dry_run: args.dry_run,
            bigquery: args.gcp.bigquery(),
            gcs: args.gcp.gcs(),
        })
    }
}
