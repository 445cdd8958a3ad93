//! pg2bq patch: why a record-batch stream could not start or stopped, typed. Its text is the
//! error with its causes (`outer: inner: …`) or a panic's message; beside it, what a Postgres
//! failure said: the SQLSTATE, the kind of the I/O error that broke the connection, or that the
//! connection was closed. A caller decides what to do by these, never by the text.

use std::error::Error;

/// Why a stream could not start or stopped.
#[derive(Debug, Clone, Default)]
pub struct StreamError {
    /// The error and its causes, `outer: inner: …`, or a panic's message.
    pub message: String,
    /// The SQLSTATE (`57P01`, `55P03` …) when Postgres answered with an error.
    pub sqlstate: Option<String>,
    /// The kind of the I/O error when the connection to Postgres failed (refused, reset …).
    pub io: Option<std::io::ErrorKind>,
    /// Whether the Postgres client found its connection closed.
    pub closed: bool,
}

impl StreamError {
    /// An error with what its causes say: the first SQLSTATE and I/O kind found along its
    /// chain, and whether the connection was found closed.
    pub fn from_error(error: &(dyn Error + 'static)) -> Self {
        let mut found = Self { message: error_chain(error), ..Self::default() };
        for link in chain(error) {
            found.note(link);
            #[cfg(feature = "src_postgres")]
            if let Some(wrapped) = wrapped_error(link) {
                chain(wrapped).for_each(|inner| found.note(inner));
            }
        }
        found
    }

    /// A failure that carries nothing but its text (a panic's message).
    pub fn message(message: String) -> Self {
        Self { message, ..Self::default() }
    }

    /// Keeps what one error of the chain says.
    fn note(&mut self, link: &(dyn Error + 'static)) {
        #[cfg(feature = "src_postgres")]
        {
            if let Some(postgres) = link.downcast_ref::<postgres::Error>() {
                self.closed |= postgres.is_closed();
            }
            if let Some(db) = link.downcast_ref::<postgres::error::DbError>() {
                self.sqlstate.get_or_insert_with(|| db.code().code().to_string());
            }
        }
        if let Some(io) = link.downcast_ref::<std::io::Error>() {
            self.io.get_or_insert(io_kind(io));
        }
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for StreamError {}

/// An error and its sources, outermost first.
fn chain<'e>(error: &'e (dyn Error + 'static)) -> impl Iterator<Item = &'e (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// The client's error inside one of ConnectorX's own, which pass it on `transparent`ly (so it
/// is not a link of their chain) or beside its text ([`PostgresSourceError::Connect`]).
#[cfg(feature = "src_postgres")]
fn wrapped_error<'e>(error: &'e (dyn Error + 'static)) -> Option<&'e (dyn Error + 'static)> {
    use crate::sources::postgres::PostgresSourceError;
    use crate::transports::PostgresArrowStreamTransportError as Transport;
    let source = match error.downcast_ref::<Transport>() {
        Some(Transport::Source(source)) => Some(source),
        _ => error.downcast_ref::<PostgresSourceError>(),
    };
    match source? {
        PostgresSourceError::PostgresError(postgres) => Some(postgres),
        PostgresSourceError::Connect { last, .. } => Some(last),
        PostgresSourceError::IOError(io) => Some(io),
        _ => None,
    }
}

/// An I/O error's kind. OpenSSL 3 reports a connection closed without TLS's `close_notify` (a
/// server process killed) as an SSL error with the reason "unexpected eof while reading"
/// inside an `Other` I/O error: that is the end of the stream.
fn io_kind(io: &std::io::Error) -> std::io::ErrorKind {
    #[cfg(feature = "src_postgres")]
    {
        const SSL_R_UNEXPECTED_EOF_WHILE_READING: std::os::raw::c_int = 294;
        let ssl = io.get_ref().and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>());
        let stack = ssl.and_then(openssl::ssl::Error::ssl_error);
        if stack.is_some_and(|stack| stack.errors().iter().any(|e| e.reason_code() == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            return std::io::ErrorKind::UnexpectedEof;
        }
    }
    io.kind()
}

/// An error with its causes, `outer: inner: …` (a Postgres error's text is in its source).
fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.ends_with(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        cause = inner.source();
    }
    text
}
