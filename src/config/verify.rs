//! `verify`'s settings: the manifest and the store's credentials, from flags only.

use crate::cli::VerifyArgs;
use crate::verify::VerifyConfig;

impl VerifyConfig {
    pub fn resolve(args: &VerifyArgs) -> Self {
        Self { manifest_uri: args.manifest.clone(), gcs: args.gcp.gcs() }
    }
}
