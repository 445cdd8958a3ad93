//! Reading Postgres: one snapshot session for the catalog, counts and checks
//! ([`postgres`]), ConnectorX streams for the rows ([`stream`]), and the type table ([`types`]).

pub mod postgres;
pub mod stream;
pub mod types;

/// A failed read from Postgres, naming what we were reading.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid Postgres URL `{url}`")]
    InvalidUrl {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to Postgres at `{url}`")]
    Connect {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up TLS for `{url}`")]
    Tls {
        url: String,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("failed to {action}")]
    Query {
        action: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("table `{table}` does not exist or is not readable; check the name (schema.table) and the role's privileges")]
    TableNotFound {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("table `{table}`: ConnectorX failed: {message}")]
    ConnectorX { table: String, message: String },
    #[error("table `{table}`, partition {partition}: Postgres has {expected} rows but the stream ended after {actual}; ConnectorX dropped an error, nothing was committed")]
    ShortStream { table: String, partition: usize, expected: u64, actual: u64 },
}

/// The URL with any password replaced by `***`, for logs, errors and the manifest.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable URL>".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let secret = k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
            (k.into_owned(), if secret { "***".into() } else { v.into_owned() })
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_survive_redaction() {
        let redacted = super::redact_url("postgresql://u:s3cret@h:5432/db?sslmode=require&password=other");
        assert!(!redacted.contains("s3cret") && !redacted.contains("other"), "{redacted}");
        assert!(redacted.contains("u:***@h:5432/db"), "{redacted}");
        assert_eq!(super::redact_url("not a url s3cret"), "<unparseable URL>");
    }
}
