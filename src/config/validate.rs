//! `validate`'s settings: the BigQuery target as `load` resolves it, the source to sample, and
//! the file's `denormalized` and `probes`.

use crate::cli::ValidateArgs;
use crate::config::bigquery::Target;
use crate::config::{ConfigError, ConfigFile};
use crate::validate::ValidateConfig;

impl ValidateConfig {
    /// Combines flags, environment and the config file's `denormalized` and `probes`.
    ///
    /// # Errors
    /// [`ConfigError::MissingTarget`] without a project or dataset.
    pub fn resolve(args: &ValidateArgs, file: ConfigFile) -> Result<Self, ConfigError> {
        let Target { project, dataset, location, names } = Target::resolve(&args.target, &file)?;
        Ok(Self {
            manifest_uri: args.target.manifest.clone(),
            project,
            dataset,
            location,
            names,
            source_url: args.source.clone().map(String::from),
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
