//! Compile-checks of the other loops' shapes on `retry_transient` (simulated session, no I/O).
use std::cell::Cell;
use std::time::Duration;

use crate::retry::{retry_transient, Attempted, RetryPolicy};

#[derive(Debug)]
pub enum ChunkFailure {
    Transient(&'static str),
    Stalled { persisted: u64 },
    Lost { persisted: u64 },
}
impl std::fmt::Display for ChunkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A session that fails the first `fail` PUTs after persisting half of them.
pub struct Session {
    pub persisted: Cell<u64>,
    pub fail: Cell<u32>,
}
impl Session {
    async fn put(&self, from: u64, end: u64) -> Result<u64, ChunkFailure> {
        if self.fail.get() > 0 {
            self.fail.set(self.fail.get() - 1);
            self.persisted.set(from + (end - from) / 2);
            return Err(ChunkFailure::Transient("connection reset"));
        }
        self.persisted.set(end);
        Ok(end)
    }
    async fn status(&self) -> Result<u64, ChunkFailure> {
        Ok(self.persisted.get())
    }
}

/// upload_chunk as an attempt: from the 2nd attempt on, ask what the session holds and resume.
pub async fn upload_chunk(session: &Session, offset: u64, end: u64) -> Result<Attempted<u64>, Attempted<ChunkFailure>> {
    let from = Cell::new(offset);
    let policy = RetryPolicy { total: Duration::from_secs(5), ..RetryPolicy::REQUESTS };
    retry_transient(
        policy,
        "upload gs://b/o",
        |attempt| {
            let from = &from;
            async move {
                if attempt > 1 {
                    let persisted = session.status().await?;
                    if persisted < offset {
                        return Err(ChunkFailure::Lost { persisted });
                    }
                    if persisted <= from.get() {
                        return Err(ChunkFailure::Stalled { persisted });
                    }
                    from.set(persisted.min(end));
                }
                session.put(from.get(), end).await
            }
        },
        |failure| matches!(failure, ChunkFailure::Transient(_) | ChunkFailure::Stalled { .. }),
    )
    .await
}
