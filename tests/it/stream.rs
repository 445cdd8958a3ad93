//! The ConnectorX stream against real Postgres: a producer's error reaches the caller instead
//! of ending the stream early, typed: its SQLSTATE or I/O kind decides its kind, not its text.

use std::time::Duration;

use pg2bq::model::error_kind::ErrorKind;
use pg2bq::source::postgres::unit_url;
use pg2bq::source::stream::{stream_query, StreamError};
use pg2bq::source::SourceError;

use crate::skip_unless;
use crate::support::TestDb;

/// Streams `query` after `setup`, counting rows; the source error it ends with.
fn stream_error(url: &str, query: &str, setup: &[String]) -> SourceError {
    match stream_query(url, "public.t", query, setup, 1000, |_| -> Result<(), ()> { Ok(()) }) {
        Err(StreamError::Source(error)) => error,
        other => panic!("expected a source error, got {other:?}"),
    }
}

/// Postgres fails the query after 50,000 of 100,000 rows. ConnectorX 0.4.5 dropped that error
/// and the stream just ended; the vendored copy hands it over, after the rows before it.
#[test]
fn an_error_in_the_middle_of_the_stream_reaches_the_caller() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let query = "SELECT g::int8 AS id, (CASE WHEN g <= 50000 THEN g ELSE 1 / (g - g) END)::int8 AS v \
                 FROM generate_series(1, 100000) AS g";
    let mut received = 0u64;
    let outcome = stream_query(&url, "public.midway", query, &[], 1000, |batch| -> Result<(), ()> {
        received += batch.num_rows() as u64;
        Ok(())
    });
    match outcome {
        Err(StreamError::Source(error @ SourceError::ConnectorX { .. })) => {
            assert_eq!(error.to_string(), "table `public.midway`: ConnectorX failed: db error: ERROR: division by zero");
            let SourceError::ConnectorX { cause, .. } = &error else { unreachable!() };
            assert_eq!(cause.sqlstate.as_deref(), Some("22012"));
            assert_eq!(error.kind(), ErrorKind::Invalid, "a refused query is not retried");
        }
        other => panic!("expected the producer's error, got {other:?} after {received} rows"),
    }
    assert!(received <= 50_000, "{received} rows passed the failing one");
}

/// A backend terminated mid-stream (as a failover or `pg_terminate_backend` does) ends the
/// stream with SQLSTATE 57P01 or, when the client reads the closed socket before the backend's
/// last message (two CI runs did), a closed connection: transient either way, by SQLSTATE or
/// by the closed connection (export used to find it by the message's words).
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_terminated_mid_stream_is_transient() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "").await;
    let name = format!("pg2bq-terminated-{:08x}", rand::random::<u32>());
    let setup = vec![format!("SET application_name = '{name}'")];
    let query = "SELECT g::int8 AS id, g::int8 AS v FROM generate_series(1, 100000) AS g WHERE pg_sleep(0.0001) IS NOT NULL";
    let stream = tokio::task::spawn_blocking(move || stream_error(&url, query, &setup));
    // Only once the COPY runs: terminated between the setup and the COPY, the backend's FATAL
    // reaches no pending query and the client sees only "connection closed" (a CI run did).
    let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND state = 'active' AND query LIKE 'COPY%'";
    while db.client.query(terminate, &[&name]).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = stream.await.unwrap();
    assert!(
        matches!(&error, SourceError::ConnectorX { cause, .. } if cause.sqlstate.as_deref() == Some("57P01") || (cause.closed && cause.sqlstate.is_none())),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::Transient);
    db.drop().await;
}

/// A lock another session holds past the unit's `lock_timeout` fails the stream with 55P03:
/// transient, and told apart from other failures by that SQLSTATE, not by "lock timeout".
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_not_granted_in_time_is_transient_by_its_sqlstate() {
    let url = skip_unless!("PG2BQ_TEST_PG_URL");
    let db = TestDb::new(&url, "CREATE TABLE held (id int8 PRIMARY KEY); INSERT INTO held VALUES (1);").await;
    db.client.batch_execute(&format!("BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", db.table("held"))).await.unwrap();
    let query = format!("SELECT id FROM {}", db.table("held"));
    // As export's units connect: `lock_timeout` set at connection start.
    let unit_url = unit_url(&url, "00000003-0000001B-1", Duration::from_millis(200));
    let error = tokio::task::spawn_blocking(move || stream_error(&unit_url, &query, &[])).await.unwrap();
    db.client.batch_execute("ROLLBACK").await.unwrap();
    assert!(error.is_lock_not_available(), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Transient);
    db.drop().await;
}

/// A source that refuses connections: ConnectorX's pool reports only text ("timed out waiting
/// for connection: error connecting to server", which named no cause export knew, so it was
/// not retried), the vendored copy keeps the client's error of its last attempt, so the
/// refusal is transient by its I/O kind. Takes the pool's 30 s connection timeout.
#[test]
fn a_source_refusing_connections_is_transient_by_its_io_kind() {
    let _ = skip_unless!("PG2BQ_TEST_PG_URL");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgresql://nobody@127.0.0.1:{port}/none?sslmode=disable");
    let error = stream_error(&url, "SELECT 1 AS one", &[]);
    assert_eq!(error.to_string(), "table `public.t`: ConnectorX failed: timed out waiting for connection: error connecting to server");
    assert!(
        matches!(&error, SourceError::ConnectorX { cause, .. } if cause.io == Some(std::io::ErrorKind::ConnectionRefused)),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::Transient);
}
