//! When and how long to wait before repeating a request that failed transiently.
//!
//! Input: a [`RetryPolicy`]. Output: the pauses between attempts (exponential, with full
//! jitter) until the policy's total time is spent. It never decides whether a request is safe
//! to repeat: callers retry only requests that are (GETs, inserts under our own ids, resumable
//! uploads resumed from the range the server persisted).

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;

/// How long to keep retrying, and how fast the pauses grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the first pause; each later ceiling doubles, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// No attempt starts after this much time since the first one.
    pub total: Duration,
}

impl RetryPolicy {
    /// HTTP calls to BigQuery and GCS: up to two minutes of pauses of 0.25 s doubling to 16 s.
    pub const REQUESTS: Self =
        Self { first_delay: Duration::from_millis(250), max_delay: Duration::from_secs(16), total: Duration::from_secs(120) };
}

/// The pauses of one retried action: call [`Backoff::next_delay`] after each failed attempt.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    started: Instant,
    ceiling: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, started: Instant::now(), ceiling: policy.first_delay, attempts: 1 }
    }

    /// Attempts made so far (the first counts).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The pause before the next attempt (uniform in `0..=ceiling`, "full jitter", so clients
    /// that failed together do not retry together), or `None` when the next attempt would
    /// start after the policy's total time.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let delay = self.ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
        if self.started.elapsed() + delay > self.policy.total {
            return None;
        }
        self.ceiling = (self.ceiling * 2).min(self.policy.max_delay);
        self.attempts += 1;
        Some(delay)
    }

    /// Sleeps before the next attempt; `false` when the time is spent.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }
}

/// Statuses that mean "try again later": rate limits and server-side failures.
pub fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Connection failures (refused, reset, timed out, cut mid-body), as opposed to requests
/// that cannot be built or answers that cannot be parsed.
pub fn is_transient_error(error: &reqwest::Error) -> bool {
    if error.is_connect() || error.is_timeout() || error.is_request() || error.is_body() {
        return true;
    }
    // A connection cut while the body is read surfaces as a decode error around an I/O one.
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if error.is::<std::io::Error>() || error.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_body) {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_ceiling_and_stop_at_the_total() {
        let policy = RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            total: Duration::from_secs(3600),
        };
        let mut backoff = Backoff::new(policy);
        let ceilings: Vec<Duration> = (0..5)
            .map(|_| {
                let ceiling = backoff.ceiling;
                assert!(backoff.next_delay().unwrap() <= ceiling);
                ceiling
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 400, 400].map(Duration::from_millis));
        assert_eq!(backoff.attempts(), 6);

        let mut spent = Backoff::new(RetryPolicy { total: Duration::ZERO, first_delay: Duration::from_secs(1), ..policy });
        // A zero pause would still fit; a jittered one of up to 1 s almost never does.
        while spent.next_delay() == Some(Duration::ZERO) {}
        assert_eq!(spent.next_delay(), None);
    }

    #[test]
    fn only_rate_limits_and_server_failures_are_transient() {
        let transient: Vec<u16> = (400..600).filter(|&s| is_transient_status(StatusCode::from_u16(s).unwrap())).collect();
        assert_eq!(transient, [408, 429, 500, 502, 503, 504]);
    }
}
