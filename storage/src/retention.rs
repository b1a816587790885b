//! Retention: what the `retention` job deletes, and after how long.
//!
//! Rows that only ever mattered for a while — login codes, dead refresh tokens, finished
//! outbox rows, old scan requests — are deleted in batches, so that a purge never holds a
//! long lock on a table the API writes.

use sqlx::PgPool;

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// How long each kind of row is kept once it is of no more use (days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Login codes, counted from their expiry.
    pub login_codes_days: u32,
    /// Refresh tokens, counted from when their whole session was revoked or expired. A
    /// rotated token is kept as long as its session lives: presenting it again is how a
    /// stolen token is recognised.
    pub refresh_tokens_days: u32,
    /// Outbox rows, counted from when their job finished.
    pub outbox_days: u32,
    /// Scan requests, counted from the scan (done or failed ones only).
    pub scan_requests_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            login_codes_days: 7,
            refresh_tokens_days: 30,
            outbox_days: 14,
            scan_requests_days: 180,
        }
    }
}

/// How many rows a purge deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub login_codes: u64,
    pub refresh_tokens: u64,
    pub outbox: u64,
    pub scan_requests: u64,
}

/// Deletes everything the policy says is no longer kept.
pub async fn purge(db: &PgPool, policy: &RetentionPolicy) -> sqlx::Result<Purged> {
    Ok(Purged {
        login_codes: in_batches(
            db,
            "DELETE FROM otp_codes WHERE id IN (
                 SELECT id FROM otp_codes WHERE expires_at < now() - make_interval(days => $1)
                 LIMIT $2)",
            policy.login_codes_days,
        )
        .await?,
        refresh_tokens: in_batches(
            db,
            "DELETE FROM refresh_tokens WHERE family_id IN (
                 SELECT family_id FROM refresh_tokens GROUP BY family_id
                 HAVING bool_and(COALESCE(revoked_at, expires_at) < now() - make_interval(days => $1))
                 LIMIT $2)",
            policy.refresh_tokens_days,
        )
        .await?,
        outbox: in_batches(
            db,
            "DELETE FROM job_outbox WHERE job_id IN (
                 SELECT job_id FROM job_outbox WHERE finished_at < now() - make_interval(days => $1)
                 LIMIT $2)",
            policy.outbox_days,
        )
        .await?,
        scan_requests: in_batches(
            db,
            "DELETE FROM scan_requests WHERE id IN (
                 SELECT id FROM scan_requests
                 WHERE created_at < now() - make_interval(days => $1) AND state IN ('done', 'failed')
                 LIMIT $2)",
            policy.scan_requests_days,
        )
        .await?,
    })
}

/// Runs a `DELETE … LIMIT $2` (older than `$1` days) until it deletes nothing more.
async fn in_batches(db: &PgPool, statement: &'static str, days: u32) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(statement)
            .bind(days as i32)
            .bind(BATCH)
            .execute(db)
            .await?
            .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
