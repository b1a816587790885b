//! What every vendor client does the same way: retries with backoff, `Retry-After`,
//! client-side rate limits, and mapping HTTP statuses to errors that say what went wrong.

use rand::Rng;
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Why a vendor call failed, after the retries it deserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VendorError {
    /// 401/403: the credentials are wrong or revoked. Retrying will not help.
    #[error("the vendor refused our credentials (HTTP {status}): {excerpt}")]
    Unauthorized { status: u16, excerpt: String },
    /// Still rate limited after waiting as told.
    #[error("rate limited by the vendor; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// 5xx, timeouts, connection failures: worth a later retry.
    #[error("the vendor is unavailable: {0}")]
    Unavailable(String),
    /// A reply we cannot read: the excerpt shows what came.
    #[error("unexpected reply from the vendor: {excerpt}")]
    Malformed { excerpt: String },
    /// Another 4xx: our request is wrong (a bug or bad configuration).
    #[error("the vendor rejected the request (HTTP {status}): {excerpt}")]
    Rejected { status: u16, excerpt: String },
}

impl VendorError {
    pub fn malformed(body: &str) -> Self {
        Self::Malformed {
            excerpt: crate::excerpt(body, 300),
        }
    }

    /// Worth retrying later (the job retries; the cursor stays where it is).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable(_))
    }
}

/// How hard to try before giving up on one call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubled each time, with ±50 % jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out in-process: the job retries later.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        let jitter = rand::rng().random_range(0.5..1.5);
        capped.mul_f64(jitter)
    }
}

/// Spaces requests at least `1 / per_second` apart (YCLIENTS: 5/s, AMO CRM: 7/s).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn per_second(requests: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / requests.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let wait = {
            let mut next = self.next.lock().expect("rate limiter lock");
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A successful reply: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Sends the request `build` makes, retrying 5xx, timeouts and 429 (honouring `Retry-After`)
/// with backoff; 401/403 and other 4xx come back as errors at once.
pub async fn send(
    policy: &RetryPolicy,
    limiter: Option<&RateLimiter>,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply, VendorError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(limiter) = limiter {
            limiter.acquire().await;
        }
        let last = attempt >= policy.attempts;
        let outcome = match build().send().await {
            Err(e) => Err(VendorError::Unavailable(e.without_url().to_string())),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response
                    .text()
                    .await
                    .map_err(|e| VendorError::Unavailable(e.without_url().to_string()));
                match (status, body) {
                    (_, Err(e)) => Err(e),
                    (200..=299, Ok(body)) => return Ok(Reply { status, body }),
                    (401 | 403, Ok(body)) => {
                        return Err(VendorError::Unauthorized {
                            status,
                            excerpt: crate::excerpt(&body, 200),
                        });
                    }
                    (429, Ok(_)) => {
                        let wait = retry_after.unwrap_or_else(|| policy.backoff(attempt));
                        if last || wait > policy.max_retry_after {
                            return Err(VendorError::RateLimited { retry_after: wait });
                        }
                        tracing::info!(
                            wait_ms = wait.as_millis() as u64,
                            "vendor rate limit: waiting as told"
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    (500..=599, Ok(body)) => Err(VendorError::Unavailable(format!(
                        "HTTP {status}: {}",
                        crate::excerpt(&body, 200)
                    ))),
                    (_, Ok(body)) => {
                        return Err(VendorError::Rejected {
                            status,
                            excerpt: crate::excerpt(&body, 200),
                        });
                    }
                }
            }
        };
        match outcome {
            Err(e) if !last => {
                let wait = policy.backoff(attempt);
                tracing::info!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "vendor call failed; retrying");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let policy = RetryPolicy::default();
        for attempt in 1..=8 {
            let d = policy.backoff(attempt);
            let nominal = policy
                .base_delay
                .saturating_mul(1 << (attempt - 1))
                .min(policy.max_delay);
            assert!(
                d >= nominal.mul_f64(0.5) && d <= nominal.mul_f64(1.5),
                "attempt {attempt}: {d:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_rate_limiter_spaces_requests() {
        let limiter = RateLimiter::per_second(20);
        let started = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
    }
}
