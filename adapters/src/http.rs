//! What every vendor client does the same way: retries with backoff, `Retry-After`,
//! client-side rate limits, replies read with a size cap, and mapping HTTP statuses to
//! errors that say what went wrong.
//!
//! Errors never carry a vendor's raw reply: it may hold a patient's name or a customer's
//! phone, and errors reach operators (an integration's `last_error`, a job's last error).
//! What stays is a short message the vendor gave, with digit runs, e-mail addresses and
//! token-like strings masked ([`reply_detail`]); callers of a medical business drop even
//! that ([`VendorError::redacted`]).

use crate::egress::EgressError;
use rand::Rng;
use std::{collections::VecDeque, sync::Mutex, time::Duration};
// Tokio's clock, so that tests can pause it.
use tokio::time::Instant;

/// The largest vendor reply we read (a page of records is far smaller).
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// Why a vendor call failed, after the retries it deserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VendorError {
    /// 401 (or a 403 the vendor uses for credentials): wrong, expired or revoked.
    #[error("the vendor refused our credentials (HTTP {status}){}", suffix(.detail))]
    Unauthorized { status: u16, detail: String },
    /// The vendor blocks requests from our address for now (AMO CRM answers abuse of its
    /// rate limit this way): not our credentials, and not worth hammering.
    #[error("the vendor blocks requests from our address for now (HTTP 403){}", suffix(.detail))]
    Blocked { detail: String },
    /// Still rate limited after waiting as told.
    #[error("rate limited by the vendor; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// 5xx, 408, timeouts, connection failures: worth a later retry (after `retry_after`
    /// when the vendor said so).
    #[error("the vendor is unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// A reply we cannot read.
    #[error("unexpected reply from the vendor: {detail}")]
    Malformed { detail: String },
    /// Another 4xx: our request is wrong (a bug or bad configuration).
    #[error("the vendor rejected the request (HTTP {status}){}", suffix(.detail))]
    Rejected { status: u16, detail: String },
    /// The integration's configuration has to change before this can work (a method not
    /// enabled for the key, a publication that refuses a filter); the message says what.
    #[error("configuration: {0}")]
    Configuration(String),
    /// The CRM address may not be reached (see [`crate::egress`]).
    #[error(transparent)]
    Egress(#[from] EgressError),
}

fn suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl VendorError {
    /// A reply that is not what the vendor documents, described by its shape only.
    pub fn malformed(body: &str) -> Self {
        let shape = match serde_json::from_str::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(_)) => "a JSON object of another shape",
            Ok(serde_json::Value::Array(_)) => "a JSON array of another shape",
            Ok(_) => "a JSON value of another shape",
            Err(_) if body.trim().is_empty() => "an empty body",
            Err(_) => "not JSON",
        };
        Self::Malformed {
            detail: format!("{shape} ({} bytes)", body.len()),
        }
    }

    /// A reply we could not use, in our own words (what was wrong, never the reply itself).
    pub fn unreadable(why: impl Into<String>) -> Self {
        Self::Malformed { detail: why.into() }
    }

    /// Worth retrying later (the job retries; the cursor stays where it is).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Blocked { .. }
        )
    }

    /// How long the vendor asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The message without anything the vendor wrote: for a medical business, whose
    /// replies may name a patient however carefully they are masked.
    pub fn redacted(&self) -> String {
        match self {
            Self::Unauthorized { status, .. } => {
                format!("the vendor refused our credentials (HTTP {status})")
            }
            Self::Blocked { .. } => {
                "the vendor blocks requests from our address for now (HTTP 403)".to_owned()
            }
            Self::Unavailable { .. } => "the vendor is unavailable".to_owned(),
            Self::Malformed { .. } => "unexpected reply from the vendor".to_owned(),
            Self::Rejected { status, .. } => {
                format!("the vendor rejected the request (HTTP {status})")
            }
            Self::RateLimited { .. } | Self::Configuration(_) | Self::Egress(_) => self.to_string(),
        }
    }
}

/// A short message from a vendor's error reply, safe to show an operator: the first of the
/// usual message fields of a JSON reply (or a short plain-text reply), with runs of digits,
/// e-mail addresses and token-like strings masked. Empty when there is nothing to show.
pub fn reply_detail(body: &str) -> String {
    const FIELDS: [&[&str]; 12] = [
        &["errorDescription"],
        &["error_description"],
        &["odata.error", "message", "value"],
        &["error", "message"],
        &["data", "desc"],
        &["meta", "message"],
        &["message"],
        &["detail"],
        &["desc"],
        &["hint"],
        &["title"],
        &["error"],
    ];
    let text = match serde_json::from_str::<serde_json::Value>(body.trim_start_matches('\u{feff}'))
    {
        Ok(value) => FIELDS
            .iter()
            .find_map(|path| {
                path.iter()
                    .try_fold(&value, |v, key| v.get(*key))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
        Err(_) if body.len() <= 200 && !body.contains('<') => body.to_owned(),
        Err(_) => String::new(),
    };
    let masked = mask(text.trim());
    let mut out: String = masked.chars().take(160).collect();
    if masked.chars().count() > 160 {
        out.push('…');
    }
    out
}

/// Masks what could identify a person or open an account: e-mail addresses, long
/// letter-and-digit strings (tokens), and the digits of any number written with four or more
/// of them, spaces, `+`, `-`, `(`, `)` included (phones, cards, documents).
fn mask(text: &str) -> String {
    let words: Vec<String> = text
        .split(' ')
        .map(|word| {
            let digits = word.chars().filter(char::is_ascii_digit).count();
            let alnum = word.chars().filter(char::is_ascii_alphanumeric).count();
            if word.contains('@') || (alnum >= 20 && digits > 0) {
                "•••".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    let text: Vec<char> = words.join(" ").chars().collect();
    let numeric = |c: char| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() && text[i] != '+' && text[i] != '(' {
            out.push(text[i]);
            i += 1;
            continue;
        }
        let end = (i..text.len())
            .find(|&j| !numeric(text[j]))
            .unwrap_or(text.len());
        let run = &text[i..end];
        let masked = run.iter().filter(|c| c.is_ascii_digit()).count() >= 4;
        out.extend(run.iter().map(|&c| {
            if masked && c.is_ascii_digit() {
                '•'
            } else {
                c
            }
        }));
        i = end;
    }
    out
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

/// Keeps requests within a vendor's limits: at most `n` in any `period`, for each limit
/// (YCLIENTS: 5 a second and 200 a minute; AMO CRM: 7 a second).
#[derive(Debug)]
pub struct RateLimiter {
    limits: Vec<(usize, Duration)>,
    /// When the latest requests were (or will be) sent, oldest first; as many as the
    /// largest `n`.
    sent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    pub fn per_second(requests: u32) -> Self {
        Self::new(&[(requests, Duration::from_secs(1))])
    }

    /// Every `(n, period)` applies at once.
    pub fn new(limits: &[(u32, Duration)]) -> Self {
        Self {
            limits: limits
                .iter()
                .map(|(n, period)| ((*n).max(1) as usize, *period))
                .collect(),
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = self.reserve();
        tokio::time::sleep_until(slot).await;
    }

    /// Takes the earliest slot every limit allows and returns it.
    fn reserve(&self) -> Instant {
        {
            let mut sent = self.sent.lock().expect("rate limiter lock");
            let now = Instant::now();
            // The earliest moment every limit allows one more request.
            let slot = self
                .limits
                .iter()
                .filter_map(|(n, period)| {
                    sent.len()
                        .checked_sub(*n)
                        .and_then(|i| sent.get(i))
                        .map(|t| *t + *period)
                })
                .fold(now, Instant::max);
            let slot = sent.back().map_or(slot, |last| slot.max(*last));
            sent.push_back(slot);
            let keep = self.limits.iter().map(|(n, _)| *n).max().unwrap_or(1);
            while sent.len() > keep {
                sent.pop_front();
            }
            slot
        }
    }
}

/// A successful reply: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Sends the request `build` makes, retrying 5xx, 408, timeouts and 429 with backoff (and
/// waiting out a `Retry-After` when the vendor gives one); 401/403 and other 4xx come back
/// as errors at once.
pub async fn send(
    policy: &RetryPolicy,
    limiter: Option<&RateLimiter>,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply, VendorError> {
    send_classified(policy, limiter, |_, _| Verdict::Generic, build).await
}

/// What a vendor makes of a reply that is not 2xx, before the generic rules.
#[derive(Debug)]
pub enum Verdict {
    /// The generic rules decide (retry 5xx, refuse 401, …).
    Generic,
    /// A reply the caller reads as a result (YCLIENTS' «Не найдено» is an empty list).
    Accept,
    /// This error, at once.
    Fail(VendorError),
}

/// [`send`], with the vendor's own reading of an error reply first: `classify` sees the
/// status and body of every reply that is not 2xx.
pub async fn send_classified(
    policy: &RetryPolicy,
    limiter: Option<&RateLimiter>,
    classify: impl Fn(u16, &str) -> Verdict,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply, VendorError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(limiter) = limiter {
            limiter.acquire().await;
        }
        let last = attempt >= policy.attempts;
        let mut told_to_wait = None;
        let outcome = match build().send().await {
            Err(e) => Err(transport_error(e)),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = match read_capped(response).await {
                    Ok(body) => body,
                    Err(e @ VendorError::Malformed { .. }) => return Err(e),
                    Err(e) => {
                        if last {
                            return Err(e);
                        }
                        tokio::time::sleep(policy.backoff(attempt)).await;
                        continue;
                    }
                };
                if (200..=299).contains(&status) {
                    return Ok(Reply { status, body });
                }
                match classify(status, &body) {
                    Verdict::Generic => {}
                    Verdict::Accept => return Ok(Reply { status, body }),
                    Verdict::Fail(error) => return Err(error),
                }
                match status {
                    401 | 403 => {
                        return Err(VendorError::Unauthorized {
                            status,
                            detail: reply_detail(&body),
                        });
                    }
                    429 => {
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
                    408 | 500..=599 => {
                        told_to_wait = retry_after;
                        let detail = reply_detail(&body);
                        Err(VendorError::Unavailable {
                            detail: if detail.is_empty() {
                                format!("HTTP {status}")
                            } else {
                                format!("HTTP {status}: {detail}")
                            },
                            retry_after,
                        })
                    }
                    _ => {
                        return Err(VendorError::Rejected {
                            status,
                            detail: reply_detail(&body),
                        });
                    }
                }
            }
        };
        match outcome {
            Err(VendorError::Egress(e)) => return Err(VendorError::Egress(e)),
            Err(e) if !last => {
                let wait = told_to_wait.unwrap_or_else(|| policy.backoff(attempt));
                if wait > policy.max_retry_after {
                    // Told to come back later than we wait in-process: the job retries.
                    return Err(e);
                }
                tracing::info!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "vendor call failed; retrying");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// A failure to talk to the vendor at all; a refusal of our egress rule says so.
fn transport_error(error: reqwest::Error) -> VendorError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<EgressError>() {
            return VendorError::Egress(refused.clone());
        }
        source = e.source();
    }
    VendorError::Unavailable {
        detail: error.without_url().to_string(),
        retry_after: None,
    }
}

/// The body, up to [`MAX_REPLY_BYTES`]; a larger one is refused, never read whole.
async fn read_capped(mut response: reqwest::Response) -> Result<String, VendorError> {
    let too_large =
        || VendorError::unreadable(format!("a reply larger than {} MiB", MAX_REPLY_BYTES >> 20));
    if response
        .content_length()
        .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
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

    #[test]
    fn reply_details_keep_the_message_and_mask_what_identifies_someone() {
        assert_eq!(
            reply_detail(
                r#"{"errorDescription":"There is no user with phone 79161234567","error":"x"}"#
            ),
            "There is no user with phone •••••••••••"
        );
        assert_eq!(
            reply_detail(
                r#"{"odata.error":{"code":"-1","message":{"lang":"ru","value":"Операция не разрешена в предложении \"ГДЕ\""}}}"#
            ),
            "Операция не разрешена в предложении \"ГДЕ\""
        );
        assert_eq!(
            reply_detail(r#"{"error":1,"data":{"code":403,"desc":"No access to method"}}"#),
            "No access to method"
        );
        assert_eq!(
            reply_detail("write to anna@example.ru now"),
            "write to ••• now"
        );
        assert_eq!(
            reply_detail("token eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9 expired"),
            "token ••• expired"
        );
        assert_eq!(reply_detail("<html><body>Пациент Иванов</body></html>"), "");
        assert_eq!(reply_detail(r#"{"patients":[{"name":"Иванов"}]}"#), "");
    }

    #[test]
    fn a_malformed_reply_is_described_by_its_shape_only() {
        let error = VendorError::malformed(r#"{"patient":"Иванов Иван","mobile":"+79161234567"}"#);
        let shown = error.to_string();
        assert!(
            !shown.contains("Иванов") && !shown.contains("7916"),
            "{shown}"
        );
        assert!(shown.contains("JSON object"), "{shown}");
    }

    /// Four a second: a fifth request waits until the first has left the second.
    #[tokio::test]
    async fn the_rate_limiter_holds_requests_beyond_the_limit() {
        let limiter = RateLimiter::per_second(4);
        for _ in 0..4 {
            limiter.acquire().await;
        }
        let started = Instant::now();
        limiter.acquire().await;
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }

    /// With 3 a second and 5 per 2 s, the 6th request waits for the 1st to leave the 2 s
    /// window, although the per-second limit alone would let it go at the first second.
    #[tokio::test]
    async fn every_limit_of_the_rate_limiter_holds_at_once() {
        let limiter = RateLimiter::new(&[(3, Duration::from_secs(1)), (5, Duration::from_secs(2))]);
        let slots: Vec<Instant> = (0..7).map(|_| limiter.reserve()).collect();
        // In tenths of a second after the first slot (reserving takes microseconds).
        let at: Vec<u128> = slots
            .iter()
            .map(|s| (*s - slots[0]).as_millis() / 100)
            .collect();
        assert_eq!(at, [0, 0, 0, 10, 10, 20, 20]);
    }
}
