//! The ConnectorX stream against real Postgres: a producer's error reaches the caller instead
//! of ending the stream early.

use pg2bq::source::stream::{stream_query, StreamError};
use pg2bq::source::SourceError;

use crate::skip_unless;

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
        Err(StreamError::Source(SourceError::ConnectorX { table, message })) => {
            assert_eq!(table, "public.midway");
            assert!(message.contains("division by zero"), "{message}");
        }
        other => panic!("expected the producer's error, got {other:?} after {received} rows"),
    }
    assert!(received <= 50_000, "{received} rows passed the failing one");
}
