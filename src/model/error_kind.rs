//! What kind of failure an error is, whichever layer raised it (object_store's `Error`
//! variants are the model): retry, "absent means empty" and "created meanwhile" ask for a
//! kind, never for a message's text or a raw status code.

/// The kind of a failure, as the shared layers (Postgres, BigQuery, GCS, object stores) tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object, table, dataset or job does not exist.
    NotFound,
    /// What was to be created exists already (HTTP 409).
    AlreadyExists,
    /// A condition of the request did not hold (HTTP 412: a create-only write found the object).
    Precondition,
    /// The service or the connection failed on its side; the same request may succeed later.
    Transient,
    /// The credentials are missing or not allowed to do this.
    Permission,
    /// Anything else: the same request gets the same answer.
    Invalid,
}

impl ErrorKind {
    /// The kind of an HTTP error status (GCS's and BigQuery's JSON APIs): 404, 409, 412, 401
    /// and 403 by name; rate limits and server-side failures (408, 429, 500, 502, 503, 504) are
    /// transient; every other status is invalid.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            404 => Self::NotFound,
            409 => Self::AlreadyExists,
            412 => Self::Precondition,
            401 | 403 => Self::Permission,
            408 | 429 | 500 | 502 | 503 | 504 => Self::Transient,
            _ => Self::Invalid,
        }
    }

    /// The kind of a Postgres error by its SQLSTATE: a lost or refused connection (class 08),
    /// a server shutting down, restarting or not yet accepting connections (57P01–57P03), a
    /// lock not granted within `lock_timeout` (55P03), a serialization failure or deadlock
    /// (40001, 40P01) and a lack of resources (class 53: too many connections, out of memory,
    /// disk full) are transient; missing objects (42P01 table, 42703 column, 3F000 schema,
    /// 42883 function) are not found; a denied privilege (42501) or login (class 28) is
    /// permission; everything else is invalid.
    pub fn from_sqlstate(code: &str) -> Self {
        match code {
            "57P01" | "57P02" | "57P03" | "55P03" | "40001" | "40P01" => Self::Transient,
            _ if code.starts_with("08") || code.starts_with("53") => Self::Transient,
            "42P01" | "42703" | "3F000" | "42883" => Self::NotFound,
            "42501" => Self::Permission,
            _ if code.starts_with("28") => Self::Permission,
            _ => Self::Invalid,
        }
    }

    /// The kind of an I/O error met while talking to a server: a connection refused, reset,
    /// aborted, cut (broken pipe, end of stream) or timed out is transient; anything else
    /// (an address that does not resolve, a bad certificate) is invalid.
    pub fn from_io(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind as Io;
        match kind {
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::TimedOut
            | Io::Interrupted => Self::Transient,
            _ => Self::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind::{self, *};

    #[test]
    fn http_statuses_map_to_kinds() {
        let kinds = [404, 409, 412, 401, 403, 400, 408, 429, 500, 502, 503, 504, 501].map(ErrorKind::from_http_status);
        let expected = [
            NotFound,
            AlreadyExists,
            Precondition,
            Permission,
            Permission,
            Invalid,
            Transient,
            Transient,
            Transient,
            Transient,
            Transient,
            Transient,
            Invalid,
        ];
        assert_eq!(kinds, expected);
        let transient: Vec<u16> = (400..600).filter(|&s| ErrorKind::from_http_status(s) == Transient).collect();
        assert_eq!(transient, [408, 429, 500, 502, 503, 504]);
    }

    #[test]
    fn sqlstates_map_to_kinds() {
        let cases = [
            ("57P01", Transient), // terminating connection due to administrator command
            ("57P02", Transient), // crash shutdown
            ("57P03", Transient), // the database system is starting up / shutting down
            ("08006", Transient), // connection failure
            ("08001", Transient), // unable to establish a connection
            ("55P03", Transient), // lock not available (lock_timeout)
            ("40001", Transient), // serialization failure
            ("40P01", Transient), // deadlock detected
            ("53300", Transient), // too many connections
            ("53200", Transient), // out of memory
            ("42P01", NotFound),  // undefined table
            ("42703", NotFound),  // undefined column
            ("42501", Permission),
            ("28P01", Permission), // password authentication failed
            ("22003", Invalid),    // numeric value out of range
            ("22012", Invalid),    // division by zero
            ("57014", Invalid),    // canceled by statement_timeout: the same statement times out again
            ("22023", Invalid),    // invalid snapshot identifier
        ];
        for (code, kind) in cases {
            assert_eq!(ErrorKind::from_sqlstate(code), kind, "{code}");
        }
    }

    #[test]
    fn lost_connections_are_transient_io_errors() {
        use std::io::ErrorKind as Io;
        for io in [Io::ConnectionRefused, Io::ConnectionReset, Io::ConnectionAborted, Io::BrokenPipe, Io::UnexpectedEof, Io::TimedOut] {
            assert_eq!(ErrorKind::from_io(io), Transient, "{io:?}");
        }
        for io in [Io::PermissionDenied, Io::InvalidData, Io::Other, Io::NotFound] {
            assert_eq!(ErrorKind::from_io(io), Invalid, "{io:?}");
        }
    }
}
