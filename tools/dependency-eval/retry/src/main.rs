//! Prototype: GCS `send` with (a) the shared helper over our Backoff, (b) backon with its own
//! ExponentialBuilder, (c) backon driving our Backoff as its iterator. Plus semantics checks.
mod retry;
mod shapes;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::StatusCode;
use retry::{retry_transient, Attempted, Backoff, RetryPolicy};

fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}
fn is_transient_error(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// A whole answer (status, body) and how many attempts it took.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Bytes,
    attempts: u32,
}

/// Why one attempt did not give a final answer.
#[derive(Debug)]
enum Failure {
    Status(StatusCode, Bytes),
    Request(reqwest::Error),
}
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, _) => write!(f, "HTTP {s}"),
            Failure::Request(e) => write!(f, "{e}"),
        }
    }
}
fn is_transient(failure: &Failure) -> bool {
    match failure {
        Failure::Status(status, _) => is_transient_status(*status),
        Failure::Request(error) => is_transient_error(error),
    }
}

async fn send_once(http: &reqwest::Client, url: &str) -> Result<(StatusCode, Bytes), Failure> {
    let response = http.get(url).send().await.map_err(Failure::Request)?;
    let status = response.status();
    let body = response.bytes().await.map_err(Failure::Request)?;
    match is_transient_status(status) {
        true => Err(Failure::Status(status, body)),
        false => Ok((status, body)),
    }
}

/// (a) GcsClient::send with the shared helper: a transient status that outlasts the policy is
/// still returned as an answer (callers turn it into GcsError::Status with its body).
async fn send_with_helper(http: &reqwest::Client, policy: RetryPolicy, url: &str) -> Result<Answer, Attempted<reqwest::Error>> {
    match retry_transient(policy, "read gs://b/o", |_| send_once(http, url), is_transient).await {
        Ok(Attempted { value: (status, body), attempts }) => Ok(Answer { status, body, attempts }),
        Err(Attempted { value: Failure::Status(status, body), attempts }) => Ok(Answer { status, body, attempts }),
        Err(Attempted { value: Failure::Request(error), attempts }) => Err(Attempted { value: error, attempts }),
    }
}

/// (b) the same with backon's own builder: jitter and total budget are backon's.
async fn send_with_backon(http: &reqwest::Client, url: &str, total: Duration) -> Result<Answer, Attempted<reqwest::Error>> {
    let attempts = AtomicU32::new(0);
    let builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(16))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(total));
    let result = (|| {
        attempts.fetch_add(1, Ordering::Relaxed);
        send_once(http, url)
    })
    .retry(builder)
    .sleep(tokio::time::sleep)
    .when(is_transient)
    .notify(|e, d| eprintln!("WARN backon: {e}; retrying in {d:?}"))
    .await;
    let attempts = attempts.into_inner();
    match result {
        Ok((status, body)) => Ok(Answer { status, body, attempts }),
        Err(Failure::Status(status, body)) => Ok(Answer { status, body, attempts }),
        Err(Failure::Request(error)) => Err(Attempted { value: error, attempts }),
    }
}

/// (c) backon driving our Backoff (exact semantics; backon only supplies the loop).
struct Ours(RetryPolicy);
struct OursIter(Backoff);
impl Iterator for OursIter {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.0.next_delay()
    }
}
impl BackoffBuilder for Ours {
    type Backoff = OursIter;
    fn build(self) -> OursIter {
        OursIter(Backoff::new(self.0))
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = &args[1];
    let http = reqwest::Client::new();
    let scaled = RetryPolicy { total: Duration::from_secs(3), ..RetryPolicy::REQUESTS };

    // 1. A server that answers 503 twice, then 200: every version must report 3 attempts.
    let _ = http.post(format!("{url}/__reset?fail=2")).send().await;
    let t = Instant::now();
    let a = send_with_helper(&http, scaled, &format!("{url}/o")).await.unwrap();
    println!("helper: status {} after {} attempts in {:?}", a.status, a.attempts, t.elapsed());
    let _ = http.post(format!("{url}/__reset?fail=2")).send().await;
    let t = Instant::now();
    let b = send_with_backon(&http, &format!("{url}/o"), Duration::from_secs(3)).await.unwrap();
    println!("backon: status {} after {} attempts in {:?}", b.status, b.attempts, t.elapsed());
    let _ = http.post(format!("{url}/__reset?fail=2")).send().await;
    let n = AtomicU32::new(0);
    let object_url = format!("{url}/o");
    let c = (|| {
        n.fetch_add(1, Ordering::Relaxed);
        send_once(&http, &object_url)
    })
    .retry(Ours(scaled))
    .sleep(tokio::time::sleep)
    .when(is_transient)
    .await;
    println!("backon+our Backoff: {:?} after {} attempts", c.map(|(s, _)| s), n.into_inner());

    // 1b. upload_chunk shape: two resets, resumed from the persisted range.
    let session = shapes::Session { persisted: std::cell::Cell::new(0), fail: std::cell::Cell::new(2) };
    match shapes::upload_chunk(&session, 0, 1 << 20).await {
        Ok(a) => println!("upload_chunk shape: persisted {} after {} attempts", a.value, a.attempts),
        Err(a) => println!("upload_chunk shape: failed {} after {} attempts", a.value, a.attempts),
    }
    // 2. Always 503, each answer slow (server sleeps 700 ms): budget 3 s.
    let _ = http.post(format!("{url}/__reset?fail=1000&delay_ms=700")).send().await;
    let t = Instant::now();
    let a = send_with_helper(&http, scaled, &format!("{url}/o")).await.unwrap();
    println!("slow 503s, helper (elapsed budget 3 s): final {} after {} attempts, {:.2} s", a.status, a.attempts, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let b = send_with_backon(&http, &format!("{url}/o"), Duration::from_secs(3)).await.unwrap();
    println!("slow 503s, backon (with_total_delay 3 s): final {} after {} attempts, {:.2} s", b.status, b.attempts, t.elapsed().as_secs_f64());

    // 3. Pause distributions: first pause and the 6th pause, 10,000 samples each.
    let sample = |nth: usize, ours: bool| -> (f64, f64) {
        let (mut lo, mut hi) = (f64::MAX, 0f64);
        for _ in 0..10_000 {
            let d = if ours {
                let mut b = Backoff::new(RetryPolicy { total: Duration::from_secs(3600), ..RetryPolicy::REQUESTS });
                (0..nth).map(|_| b.next_delay().unwrap()).last().unwrap()
            } else {
                let mut b = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(250))
                    .with_max_delay(Duration::from_secs(16))
                    .with_jitter()
                    .without_max_times()
                    .build();
                (0..nth).map(|_| b.next().unwrap()).last().unwrap()
            };
            lo = lo.min(d.as_secs_f64());
            hi = hi.max(d.as_secs_f64());
        }
        (lo, hi)
    };
    for nth in [1, 6, 9] {
        let (ol, oh) = sample(nth, true);
        let (bl, bh) = sample(nth, false);
        println!("pause #{nth}: ours [{ol:.3}, {oh:.3}] s, backon with_jitter [{bl:.3}, {bh:.3}] s");
    }
}
