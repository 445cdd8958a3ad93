//! The source as a user gives it (`--source`, `PG2BQ_SOURCE`, `DATABASE_URL`, the config file's
//! `source`): a `postgresql://` URL or a libpq `key=value` string, parsed once into a
//! [`PostgresSource`], a URL with connection defaults. Neither its `Debug` nor any error shows
//! a password.

use std::str::FromStr;

use crate::source::postgres::with_connection_defaults;
use crate::source::{redact_conninfo, redact_url};

/// A Postgres source: a `postgresql://` URL with connection defaults (see
/// [`with_connection_defaults`]).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSource(String);

/// A source that is neither a Postgres URL nor a libpq string, shown with its password hidden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source `{shown}` is not a Postgres URL or a libpq `key=value` string: {problem}")]
pub struct ConninfoError {
    pub shown: String,
    pub problem: String,
}

impl PostgresSource {
    /// The URL, credentials included: only for connecting.
    pub fn url(&self) -> &str {
        &self.0
    }
}

impl From<PostgresSource> for String {
    fn from(source: PostgresSource) -> String {
        source.0
    }
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PostgresSource").field(&redact_url(&self.0)).finish()
    }
}

impl FromStr for PostgresSource {
    type Err = ConninfoError;

    /// A URL as given, or a libpq string (`host=db port=5432 dbname=app user=me`; values may be
    /// single-quoted, with `\'` and `\\`) as a URL, with connection defaults added.
    fn from_str(source: &str) -> Result<Self, ConninfoError> {
        let source = source.trim();
        if source.starts_with("postgres://") || source.starts_with("postgresql://") {
            return Ok(Self(with_connection_defaults(source)));
        }
        let problem = |problem: String| ConninfoError { shown: redact_conninfo(source), problem };
        let pairs = conninfo_pairs(source).map_err(problem)?;
        if pairs.is_empty() {
            return Err(problem("it is empty".to_string()));
        }
        conninfo_url(pairs).map(|url| Self(with_connection_defaults(&url))).map_err(problem)
    }
}

/// The `key=value` pairs of a libpq string, or what is wrong with it.
fn conninfo_pairs(source: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = source.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no `=value` (use a postgresql:// URL or key=value pairs)"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the quoted value of `{key}` is not closed")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        }
        pairs.push((key, value));
    }
}

/// A `postgresql://` URL holding the pairs: host, port, user, password and dbname in their
/// places, every other key as a query parameter.
fn conninfo_url(pairs: Vec<(String, String)>) -> Result<String, String> {
    let mut url = url::Url::parse("postgresql://localhost").expect("a constant URL parses");
    let mut query = Vec::new();
    for (key, value) in pairs {
        let bad = |_| format!("`{key}` cannot go into a URL");
        match key.as_str() {
            "host" if !value.contains(['/', ',']) => url.set_host(Some(&value)).map_err(|_| "`host` is not a host name".to_string())?,
            "port" if !value.contains(',') => {
                url.set_port(Some(value.parse().map_err(|_| "`port` is not a number".to_string())?)).map_err(bad)?
            }
            "user" => url.set_username(&value).map_err(bad)?,
            "password" => url.set_password(Some(&value)).map_err(bad)?,
            "dbname" => url.set_path(&value),
            _ => query.push((key, value)),
        }
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> String {
        text.parse::<PostgresSource>().unwrap().url().to_string()
    }

    #[test]
    fn libpq_key_value_sources_become_urls() {
        let url_of = url("host=db.internal port=5433 dbname=app user=me password='p w' sslmode=require");
        assert_eq!(url_of, "postgresql://me:p%20w@db.internal:5433/app?sslmode=require&connect_timeout=30&keepalives_idle=60");
        let url_of = url("host=/var/run/postgresql dbname=app connect_timeout=2");
        assert_eq!(url_of, "postgresql://localhost/app?host=%2Fvar%2Frun%2Fpostgresql&connect_timeout=2&keepalives_idle=60");
        assert_eq!(url("postgresql://u@h/db?keepalives_idle=5"), "postgresql://u@h/db?keepalives_idle=5&connect_timeout=30");
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let err = "host=h password=s3cret dbname".parse::<PostgresSource>().unwrap_err().to_string();
        assert_eq!(
            err,
            "source `host=h password=*** dbname` is not a Postgres URL or a libpq `key=value` string: \
             `dbname` has no `=value` (use a postgresql:// URL or key=value pairs)"
        );
        assert_eq!("  ".parse::<PostgresSource>().unwrap_err().problem, "it is empty");
        assert_eq!("password='open".parse::<PostgresSource>().unwrap_err().problem, "the quoted value of `password` is not closed");
        let source: PostgresSource = "postgresql://u:s3cret@h/db".parse().unwrap();
        let debug = format!("{source:?}");
        assert!(debug.contains("u:***@h/db") && !debug.contains("s3cret"), "{debug}");
    }
}
