//! When and how long to wait before repeating a request that failed transiently.
//!
//! Input: a [`RetryPolicy`]. Output: the pauses between attempts (exponential, with full
//! jitter) until the policy's total time is spent, and [`retry`], the one loop every repeated
//! request runs in. It never decides whether a request is safe to repeat: callers retry only
//! requests that are (GETs, inserts under our own ids, resumable uploads resumed from the range
//! the server persisted), and say after each attempt whether it is worth another.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use tracing::warn;

use crate::model::error_kind::ErrorKind;

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

/// What one attempt came to, as its caller judges it.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// The answer: no further attempt.
    Done(T),
    /// A failure another attempt may not meet (rate limit, 5xx, lost connection).
    Transient(E),
    /// A failure every attempt would meet.
    Permanent(E),
}

/// The last failure of an action and how many attempts were made (the first counts).
#[derive(Debug, PartialEq)]
pub struct Failed<E> {
    pub error: E,
    pub attempts: u32,
}

/// Runs `attempt` (given the attempt's number, from 1) until it is [`Attempt::Done`] or
/// [`Attempt::Permanent`], or a [`Attempt::Transient`] failure comes when the policy's time is
/// spent; between attempts it sleeps as [`Backoff`] says and logs the failure as a warning
/// naming `what`.
///
/// # Errors
/// [`Failed`] with the permanent failure, or the last transient one.
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, what: &str, mut attempt: F) -> Result<T, Failed<E>>
where
    E: Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    let mut backoff = Backoff::new(policy);
    loop {
        let attempts = backoff.attempts();
        match attempt(attempts).await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Transient(error) if backoff.wait().await => {
                warn!(action = what, %error, attempt = attempts, "Request failed transiently; retrying");
            }
            Attempt::Transient(error) | Attempt::Permanent(error) => return Err(Failed { error, attempts }),
        }
    }
}

/// The kind of an answer's HTTP status, `None` for a success ([`ErrorKind::from_http_status`]:
/// rate limits and server-side failures are [`ErrorKind::Transient`]).
pub fn status_kind(status: StatusCode) -> Option<ErrorKind> {
    (!status.is_success()).then(|| ErrorKind::from_http_status(status.as_u16()))
}

/// Whether a status means "try again later".
pub fn is_transient_status(status: StatusCode) -> bool {
    status_kind(status) == Some(ErrorKind::Transient)
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

    /// No pauses and an hour to spend: every transient failure is repeated.
    const AT_ONCE: RetryPolicy = RetryPolicy { first_delay: Duration::ZERO, max_delay: Duration::ZERO, total: Duration::from_secs(3600) };

    /// Runs [`retry`] over scripted attempts, returning its result and the attempt numbers seen.
    async fn scripted(
        policy: RetryPolicy,
        script: Vec<Attempt<&'static str, &'static str>>,
    ) -> (Result<&'static str, Failed<&'static str>>, Vec<u32>) {
        let mut script = script.into_iter();
        let mut seen = Vec::new();
        let result = retry(policy, "scripted", |attempt| {
            seen.push(attempt);
            let next = script.next().expect("no attempt after the last scripted one");
            async move { next }
        })
        .await;
        (result, seen)
    }

    #[tokio::test]
    async fn transient_failures_are_repeated_until_an_answer() {
        let script = vec![Attempt::Transient("503"), Attempt::Transient("reset"), Attempt::Done("answer")];
        assert_eq!(scripted(AT_ONCE, script).await, (Ok("answer"), vec![1, 2, 3]));
    }

    #[tokio::test]
    async fn a_permanent_failure_ends_at_once_with_its_attempt_count() {
        let script = vec![Attempt::Transient("503"), Attempt::Permanent("404"), Attempt::Done("never")];
        assert_eq!(scripted(AT_ONCE, script).await, (Err(Failed { error: "404", attempts: 2 }), vec![1, 2]));
    }

    #[tokio::test]
    async fn once_the_time_is_spent_the_last_transient_failure_is_returned() {
        // No time at all, and a jittered pause of up to an hour that is never zero in practice.
        let spent = RetryPolicy { first_delay: Duration::from_secs(3600), max_delay: Duration::from_secs(3600), total: Duration::ZERO };
        let script = vec![Attempt::Transient("503"), Attempt::Done("never")];
        assert_eq!(scripted(spent, script).await, (Err(Failed { error: "503", attempts: 1 }), vec![1]));
    }

    #[test]
    fn only_rate_limits_and_server_failures_are_transient() {
        let transient: Vec<u16> = (200..600).filter(|&s| is_transient_status(StatusCode::from_u16(s).unwrap())).collect();
        assert_eq!(transient, [408, 429, 500, 502, 503, 504]);
        assert_eq!(status_kind(StatusCode::CREATED), None);
        assert_eq!(status_kind(StatusCode::PRECONDITION_FAILED), Some(ErrorKind::Precondition));
    }
}
