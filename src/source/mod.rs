//! Reading Postgres: one snapshot session for the catalog, counts and checks
//! ([`postgres`]) and ConnectorX streams for the rows ([`stream`]); the source as a user gives
//! it ([`conninfo`]).

pub mod conninfo;
pub mod postgres;
pub mod stream;

use connectorx::stream_error::StreamError as StreamFailure;
use tokio_postgres::error::SqlState;

use crate::model::error_kind::ErrorKind;

/// A failed read from Postgres, naming what we were reading.
/// The Postgres call a [`SourceError::Query`] failed in; `of` and `table` name what it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgStep {
    OpenTransaction,
    ExportSnapshot,
    NameSession,
    JoinSnapshot { snapshot_id: String },
    KeepAlive,
    SetLockTimeout,
    Savepoint,
    ReleaseSavepoint,
    RollBackToSavepoint,
    ReadLockHolders,
    ReadQueuedBehindRun,
    ReadRunLockWaits,
    ReadConnections,
    ReadEncoding,
    ReadColumns,
    ReadPrimaryKey,
    ReadForeignKeys,
    LookUpTable { table: String },
    CheckAgainstSnapshot { table: String },
    ReadPrivileges { table: String },
    ReadChildren { of: String },
    ReadChunks { of: String },
    CountRows { of: String },
    ReadKeyRange { of: String },
    FindInvalidText { of: String },
    DescribeQuery { name: String },
    DescribeQueryColumns,
    CountBelowWatermark { of: String },
    ReadRowHashes { table: String },
    SumRowHashesPerBucket,
    ReadBucketRowHashes,
    ReadUpdatedRowHashes,
    ReadRejectedRows { table: String },
    SetSessionSettings,
    CountSampledTable { table: String },
    FetchSampleRows { table: String },
}

impl std::fmt::Display for PgStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OpenTransaction => write!(f, "open a REPEATABLE READ transaction"),
            Self::ExportSnapshot => write!(f, "export a snapshot"),
            Self::NameSession => write!(f, "name the snapshot's session"),
            Self::JoinSnapshot { snapshot_id } => write!(f, "join snapshot {snapshot_id}"),
            Self::KeepAlive => write!(f, "keep the snapshot's connection alive"),
            Self::SetLockTimeout => write!(f, "set lock_timeout"),
            Self::Savepoint => write!(f, "set a savepoint"),
            Self::ReleaseSavepoint => write!(f, "release a savepoint"),
            Self::RollBackToSavepoint => write!(f, "roll back to a savepoint"),
            Self::ReadLockHolders => write!(f, "read who holds a lock on the table"),
            Self::ReadQueuedBehindRun => write!(f, "read what waits behind the run's locks"),
            Self::ReadRunLockWaits => write!(f, "read the run's sessions waiting for a lock"),
            Self::ReadConnections => write!(f, "read max_connections and the connections in use"),
            Self::ReadEncoding => write!(f, "read the server's encoding"),
            Self::ReadColumns => write!(f, "read the column catalog"),
            Self::ReadPrimaryKey => write!(f, "read the primary key"),
            Self::ReadForeignKeys => write!(f, "read foreign keys"),
            Self::LookUpTable { table } => write!(f, "look up table `{table}`"),
            Self::CheckAgainstSnapshot { table } => write!(f, "check table `{table}` against the snapshot"),
            Self::ReadPrivileges { table } => write!(f, "read the privileges and row-level security of table `{table}`"),
            Self::ReadChildren { of } => write!(f, "read the partitions and children of {of}"),
            Self::ReadChunks { of } => write!(f, "read the TimescaleDB chunks of {of}"),
            Self::CountRows { of } => write!(f, "count rows and check values of {of}"),
            Self::ReadKeyRange { of } => write!(f, "read the key range of {of}"),
            Self::FindInvalidText { of } => write!(f, "look for text that is not UTF-8 in {of}"),
            Self::DescribeQuery { name } => write!(f, "describe query `{name}`"),
            Self::DescribeQueryColumns => write!(f, "describe the query's columns"),
            Self::CountBelowWatermark { of } => write!(f, "count the rows at or below the watermark of {of}"),
            Self::ReadRowHashes { table } => write!(f, "read the row hashes of table `{table}`"),
            Self::SumRowHashesPerBucket => write!(f, "sum the row hashes per bucket"),
            Self::ReadBucketRowHashes => write!(f, "read the row hashes of differing buckets"),
            Self::ReadUpdatedRowHashes => write!(f, "read the row hashes of the rows updated since the earlier run"),
            Self::ReadRejectedRows { table } => write!(f, "read the rejected rows of table `{table}`"),
            Self::SetSessionSettings => write!(f, "set session settings"),
            Self::CountSampledTable { table } => write!(f, "count rows of {table}"),
            Self::FetchSampleRows { table } => write!(f, "fetch sample rows of {table}"),
        }
    }
}

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
    #[error("Postgres at `{url}` did not complete a connection within {seconds} s; check the host and port (a server that accepts TCP but never answers), or raise `connect_timeout` in the URL")]
    ConnectTimeout { url: String, seconds: f64 },
    #[error("cannot set up TLS for `{url}`")]
    Tls {
        url: String,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("snapshot {snapshot_id} no longer exists (the coordinator's transaction ended): restart the run")]
    SnapshotGone {
        snapshot_id: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("failed to {step}")]
    Query {
        step: PgStep,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("query `{name}` cannot be described: it must be one SELECT statement whose columns have distinct names")]
    DescribeQuery {
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{what}: its SELECT fails for role `{role}`; {hint}")]
    Probe {
        what: String,
        role: String,
        hint: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("table `{table}` does not exist or is not readable; check the name (schema.table; an unqualified name means public.<name>; quote a part holding a dot, capitals or blanks, as in \"sales.eu\".\"Orders\") and the role's privileges")]
    TableNotFound {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("could not lock table `{table}` (ACCESS SHARE, as pg_dump does) within the lock timeout of {timeout}: {blockers}; retry when it has finished, end it, or raise --lock-timeout")]
    LockTimeout {
        table: String,
        timeout: String,
        /// Who holds or waits for a conflicting lock: pid, mode, how long, statement.
        blockers: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("table `{table}`: {relations} was rewritten, truncated or dropped (VACUUM FULL, CLUSTER, TRUNCATE, a rewriting ALTER TABLE, DROP) between the run's snapshot and its lock, and a snapshot older than a rewrite or truncation reads the table empty; nothing was exported: export again")]
    ChangedSinceSnapshot { table: String, relations: String },
    #[error("could not lock table `{table}` (ACCESS SHARE)")]
    Lock {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("table `{table}` is a {kind}, not a table, so it cannot be cut into units and counted per relation; export it as a query instead: --query {name}='SELECT * FROM {from}'{foreign}")]
    NotATable { table: String, kind: &'static str, name: String, from: String, foreign: &'static str },
    /// The cause is told in the message (one line, as ConnectorX gives it) and kept typed,
    /// SQLSTATE and I/O kind included, for [`SourceError::kind`].
    #[error("table `{table}`: ConnectorX failed: {cause}")]
    ConnectorX { table: String, cause: StreamFailure },
    #[error("table `{table}`, partition {partition}: Postgres has {expected} rows but the stream ended after {actual}; ConnectorX dropped an error, nothing was committed")]
    ShortStream { table: String, partition: usize, expected: u64, actual: u64 },
}

impl SourceError {
    /// The kind of failure: by Postgres's SQLSTATE, else by the I/O error or closed
    /// connection that broke it (see [`ErrorKind::from_sqlstate`], [`ErrorKind::from_io`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect { source, .. } => failure_kind(&StreamFailure::from_error(&**source)),
            Self::Query { source, .. }
            | Self::DescribeQuery { source, .. }
            | Self::Probe { source, .. }
            | Self::Lock { source, .. }
            | Self::InvalidUrl { source, .. } => failure_kind(&StreamFailure::from_error(source)),
            Self::ConnectorX { cause, .. } => failure_kind(cause),
            Self::ConnectTimeout { .. } | Self::LockTimeout { .. } | Self::ShortStream { .. } => ErrorKind::Transient,
            Self::SnapshotGone { .. } | Self::TableNotFound { .. } => ErrorKind::NotFound,
            Self::Tls { .. } | Self::ChangedSinceSnapshot { .. } | Self::NotATable { .. } => ErrorKind::Invalid,
        }
    }

    /// Whether a ConnectorX stream stopped because a lock was not granted within its
    /// `lock_timeout` (SQLSTATE 55P03).
    pub fn is_lock_not_available(&self) -> bool {
        matches!(self, Self::ConnectorX { cause, .. } if cause.sqlstate.as_deref() == Some(SqlState::LOCK_NOT_AVAILABLE.code()))
    }
}

/// The kind of a Postgres failure: its SQLSTATE decides; without one, a closed connection is
/// transient and an I/O error is judged by its kind.
fn failure_kind(failure: &StreamFailure) -> ErrorKind {
    match (&failure.sqlstate, failure.io) {
        (Some(code), _) => ErrorKind::from_sqlstate(code),
        _ if failure.closed => ErrorKind::Transient,
        (None, Some(io)) => ErrorKind::from_io(io),
        (None, None) => ErrorKind::Invalid,
    }
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

/// A libpq `key=value` string with the password's value replaced by `***`.
pub fn redact_conninfo(conninfo: &str) -> String {
    let mut out = String::new();
    let mut rest = conninfo;
    while let Some(at) = rest.find("password") {
        let (before, after) = rest.split_at(at + "password".len());
        out.push_str(before);
        let trimmed = after.trim_start();
        let Some(value) = trimmed.strip_prefix('=') else {
            rest = after;
            continue;
        };
        out.push_str("=***");
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            quoted.find('\'').map_or(value.len(), |i| i + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::io::{Error as IoError, ErrorKind as Io};

    use connectorx::sources::postgres::PostgresSourceError;
    use connectorx::transports::PostgresArrowStreamTransportError as Transport;

    use super::{ErrorKind, PgStep, SourceError, StreamFailure};

    #[test]
    fn an_io_error_inside_connectorxs_transparent_errors_is_found_by_its_kind() {
        // `transparent` passes `source()` through, so the I/O error is no link of the chain.
        let reset = Transport::Source(PostgresSourceError::IOError(IoError::from(Io::ConnectionReset)));
        let failure = StreamFailure::from_error(&reset);
        assert_eq!((failure.io, failure.sqlstate.as_deref(), failure.closed), (Some(Io::ConnectionReset), None, false));
        assert_eq!(failure.message, "connection reset");
        let error = SourceError::ConnectorX { table: "t".into(), cause: failure };
        assert_eq!(error.to_string(), "table `t`: ConnectorX failed: connection reset");
        assert_eq!(error.kind(), ErrorKind::Transient);
        let refused = SourceError::Connect { url: "u".into(), source: Box::new(IoError::from(Io::ConnectionRefused)) };
        assert_eq!(refused.kind(), ErrorKind::Transient);
        let panicked = SourceError::ConnectorX { table: "t".into(), cause: StreamFailure::message("not implemented: interval".into()) };
        assert_eq!(panicked.kind(), ErrorKind::Invalid, "a failure that says nothing typed is not retried");
    }

    #[test]
    fn each_step_reads_as_what_pg2bq_was_doing() {
        let of = || "table `public.events`".to_string();
        assert_eq!(PgStep::JoinSnapshot { snapshot_id: "00000003-1".into() }.to_string(), "join snapshot 00000003-1");
        assert_eq!(
            PgStep::CountBelowWatermark { of: of() }.to_string(),
            "count the rows at or below the watermark of table `public.events`"
        );
        assert_eq!(PgStep::ReadRowHashes { table: "public.events".into() }.to_string(), "read the row hashes of table `public.events`");
        assert_eq!(PgStep::ReadChildren { of: of() }.to_string(), "read the partitions and children of table `public.events`");
    }

    #[test]
    fn passwords_never_survive_redaction() {
        let redacted = super::redact_url("postgresql://u:s3cret@h:5432/db?sslmode=require&password=other");
        assert!(!redacted.contains("s3cret") && !redacted.contains("other"), "{redacted}");
        assert!(redacted.contains("u:***@h:5432/db"), "{redacted}");
        assert_eq!(super::redact_url("not a url s3cret"), "<unparseable URL>");
    }

    #[test]
    fn conninfo_passwords_never_survive_redaction() {
        assert_eq!(super::redact_conninfo("host=h password=s3cret user=u"), "host=h password=*** user=u");
        assert_eq!(super::redact_conninfo("password = 'a b' dbname=d"), "password=*** dbname=d");
    }
}
