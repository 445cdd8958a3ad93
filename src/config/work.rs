//! `work`'s settings: one worker of a sharded run, from its flags and the batch engine's
//! variables.

use crate::cli::{env, WorkArgs};
use crate::config::{source, ConfigError};
use crate::export::config::WorkConfig;
use crate::model::shard::WorkerIdentity;

impl WorkConfig {
    /// The worker's flags, else the batch engine's variables read through `env`, else
    /// `DATABASE_URL` for the source.
    ///
    /// # Errors
    /// [`ConfigError::MissingSource`], or [`ConfigError::WorkerIdentity`] naming the flag or
    /// variable that is missing or malformed.
    pub fn resolve(args: &WorkArgs, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let source_url = source(args.source.clone(), env(env::DATABASE_URL))?.into();
        let identity = WorkerIdentity::resolve(args.worker_index, args.workers, env).map_err(ConfigError::WorkerIdentity)?;
        let lock_wait = args.lock_wait.duration.unwrap_or_default();
        Ok(Self { plan_uri: args.plan.clone(), source_url, identity, gcs: args.gcs.options(), lock_wait })
    }
}
