//! pg2bq's src/retry.rs Backoff (copied verbatim in substance) plus the proposed shared helper.
use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub total: Duration,
}

impl RetryPolicy {
    pub const REQUESTS: Self =
        Self { first_delay: Duration::from_millis(250), max_delay: Duration::from_secs(16), total: Duration::from_secs(120) };
}

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
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    pub fn next_delay(&mut self) -> Option<Duration> {
        let delay = self.ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
        if self.started.elapsed() + delay > self.policy.total {
            return None;
        }
        self.ceiling = (self.ceiling * 2).min(self.policy.max_delay);
        self.attempts += 1;
        Some(delay)
    }
}

/// What the last attempt gave (success or the error that ended the retries), and how many
/// attempts were made, so callers can put the count in their error.
#[derive(Debug)]
pub struct Attempted<T> {
    pub value: T,
    pub attempts: u32,
}

/// Runs `attempt` (given the attempt number, from 1) until it succeeds, fails with an error
/// `is_transient` rejects, or the policy's total time would be exceeded by the next pause.
/// Pauses are full-jitter exponential ([`Backoff`]); each retry is logged with `action`.
pub async fn retry_transient<T, E, F, Fut>(
    policy: RetryPolicy,
    action: &str,
    mut attempt: F,
    is_transient: impl Fn(&E) -> bool,
) -> Result<Attempted<T>, Attempted<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut backoff = Backoff::new(policy);
    loop {
        let attempts = backoff.attempts();
        let error = match attempt(attempts).await {
            Ok(value) => return Ok(Attempted { value, attempts }),
            Err(error) => error,
        };
        let delay = match is_transient(&error) { true => backoff.next_delay(), false => None };
        let Some(delay) = delay else { return Err(Attempted { value: error, attempts }) };
        eprintln!("WARN {action}: attempt {attempts} failed ({error}); retrying in {delay:?}"); // tracing::warn! in pg2bq
        tokio::time::sleep(delay).await;
    }
}
