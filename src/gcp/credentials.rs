//! Google access tokens for BigQuery and GCS, from one credential chain.
//!
//! Input: an optional credentials file (GOOGLE_APPLICATION_CREDENTIALS). Output: bearer tokens
//! from object_store's Google chain (that file, else gcloud's application default credentials,
//! else the metadata server), scope cloud-platform, cached and refreshed by object_store.
//! Against an emulator there is no token. Tokens never appear in logs or errors: the
//! [`TokenSource`]'s `Debug` shows only whether it holds a chain.

use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};

/// object_store builds its credential chain only as part of a bucket's client; the chain does
/// not depend on the bucket, so this name is never sent anywhere.
const CHAIN_BUCKET: &str = "pg2bq-credentials";

/// Google credentials that could not be found or used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot set up Google credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud ADC or the metadata server)")]
    Chain {
        #[source]
        source: object_store::Error,
    },
    #[error("cannot obtain a Google access token")]
    Token {
        #[source]
        source: object_store::Error,
    },
}

/// Where bearer tokens come from: Google's credential chain, or nowhere (emulators).
#[derive(Clone)]
pub struct TokenSource(Option<GcpCredentialProvider>);

impl TokenSource {
    /// No tokens: requests to an emulator go unauthenticated.
    pub fn none() -> Self {
        Self(None)
    }

    /// What a client of a Google service uses: no tokens when it talks to an emulator at
    /// `emulator_host`, else Google's chain ([`Self::google`]).
    ///
    /// # Errors
    /// As [`Self::google`].
    pub fn for_service(emulator_host: Option<&str>, application_credentials: Option<&str>) -> Result<Self, CredentialsError> {
        match emulator_host {
            Some(_) => Ok(Self::none()),
            None => Self::google(application_credentials),
        }
    }

    /// Google's chain, starting with `application_credentials` when given.
    ///
    /// # Errors
    /// [`CredentialsError::Chain`] when the file cannot be read or holds no usable credentials.
    pub fn google(application_credentials: Option<&str>) -> Result<Self, CredentialsError> {
        let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(CHAIN_BUCKET);
        if let Some(path) = application_credentials {
            builder = builder.with_application_credentials(path);
        }
        let store = builder.build().map_err(|source| CredentialsError::Chain { source })?;
        Ok(Self(Some(store.credentials().clone())))
    }

    /// The current bearer token, `None` without credentials.
    ///
    /// # Errors
    /// [`CredentialsError::Token`] when the chain cannot produce a token.
    pub async fn bearer(&self) -> Result<Option<String>, CredentialsError> {
        let Some(provider) = &self.0 else { return Ok(None) };
        let credential = provider.get_credential().await.map_err(|source| CredentialsError::Token { source })?;
        Ok(Some(credential.bearer.clone()))
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "TokenSource(google)" } else { "TokenSource(none)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_credentials_no_token_is_sent() {
        assert_eq!(TokenSource::none().bearer().await.unwrap(), None);
        assert_eq!(format!("{:?}", TokenSource::none()), "TokenSource(none)");
        // An emulator gets no token, even with a credentials file named (it is not read).
        let emulator = TokenSource::for_service(Some("http://127.0.0.1:1"), Some("/nonexistent/pg2bq-credentials.json")).unwrap();
        assert_eq!(format!("{emulator:?}"), "TokenSource(none)");
    }

    #[test]
    fn an_unreadable_credentials_file_is_an_error_naming_the_chain() {
        let error = TokenSource::google(Some("/nonexistent/pg2bq-credentials.json")).unwrap_err();
        assert!(matches!(error, CredentialsError::Chain { .. }), "{error:?}");
    }
}
