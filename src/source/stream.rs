//! Rows from Postgres as Arrow batches, through ConnectorX's streaming iterator.
//!
//! ConnectorX uses the blocking Postgres client, so this runs on a plain thread (never on a
//! tokio worker, never on a rayon worker: the producer blocks while our batch is consumed).
//! The vendored ConnectorX (vendor/connectorx/PATCHES.md) hands batches over a bounded
//! channel, so memory stays bounded whatever the sink's speed, and reports the error that
//! stopped its producer, and returns (instead of unwrapping) the error of a connection or setup
//! statement that failed. A panic (unsupported type, writer failure) or such an error becomes
//! [`SourceError::ConnectorX`] naming the table; callers still compare the rows received with
//! the snapshot's count.

use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow::record_batch::RecordBatch;
use connectorx::prelude::*;
use connectorx::sql::CXQuery;
use connectorx::stream_error::StreamError as CxError;

use super::SourceError;

/// Streams `query` (with `setup` run first on the same connection), calling `on_batch` for
/// every batch. Returns the rows received.
///
/// # Errors
/// [`SourceError::ConnectorX`] when ConnectorX fails or panics; `E` when `on_batch` fails.
pub fn stream_query<E>(
    url: &str,
    table: &str,
    query: &str,
    setup: &[String],
    batch_rows: usize,
    mut on_batch: impl FnMut(RecordBatch) -> Result<(), E>,
) -> Result<u64, StreamError<E>> {
    let connectorx_error = |cause: CxError| StreamError::Source(SourceError::ConnectorX { table: table.to_string(), cause });
    let panicked = |message: String| connectorx_error(CxError::message(message));
    let (connectorx_error, panicked) = (&connectorx_error, &panicked);
    let source = SourceConn::try_from(url).map_err(|e| connectorx_error(CxError::message(format!("cannot use the source URL: {e}"))))?;
    let queries = [CXQuery::from(query)];
    let mut batches = guarded(|| {
        let mut batches = new_record_batch_iter(&source, None, &queries, batch_rows, Some(setup))?;
        batches.prepare();
        Ok(batches)
    })
    .map_err(panicked)?
    .map_err(connectorx_error)?;
    let mut rows = 0u64;
    loop {
        let next = guarded(|| batches.try_next_batch()).map_err(panicked)?.map_err(connectorx_error)?;
        let Some(batch) = next else { return Ok(rows) };
        rows += batch.num_rows() as u64;
        on_batch(batch).map_err(StreamError::Sink)?;
    }
}

/// Either side of a stream failed.
#[derive(Debug)]
pub enum StreamError<E> {
    Source(SourceError),
    Sink(E),
}

/// Runs ConnectorX code, turning a panic into its message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked without a message".to_string())
    })
}
