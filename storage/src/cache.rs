//! Short-lived state in Redis: one-time QR codes and balance announcements (rate limits are
//! in `storage::limits`).
//! Every key starts with `KRUG_QUEUE_PREFIX`, so tests and deployments never collide.

use crate::redis_target::RedisConnection;
use redis::AsyncCommands;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// What a staff member's QR code stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrCode {
    pub business_id: Uuid,
    pub amount: Decimal,
    pub issued_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The Redis-backed cache.
#[derive(Clone)]
pub struct Cache {
    conn: RedisConnection,
    prefix: String,
}

impl Cache {
    pub fn new(conn: RedisConnection, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// `KRUG_QUEUE_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where workers announce, after their commit, whose balance, tier or purchases changed
    /// (the API's balance cache listens).
    pub fn balances_channel(&self) -> String {
        self.key(&["balances-changed"])
    }

    /// Announces that these members' balance views changed. Best effort: the API's cache
    /// keeps a view at most a few seconds without news.
    pub async fn balances_changed(&self, users: impl IntoIterator<Item = Uuid>) {
        let payload = users
            .into_iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if payload.is_empty() {
            return;
        }
        let mut conn = self.conn.clone();
        if let Err(e) = conn
            .publish::<_, _, ()>(self.balances_channel(), payload)
            .await
        {
            tracing::warn!(error = %e, "balance change not announced");
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Stores a new QR code; `false` if the code is already taken (a collision: pick another).
    /// The key outlives the code's validity by `grace`, so that a scan made in time but processed
    /// late still finds what it scanned.
    pub async fn put_qr(&self, code: &str, qr: &QrCode, ttl: Duration) -> redis::RedisResult<bool> {
        let value = serde_json::to_string(qr).expect("QrCode serializes");
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&["qr", code]))
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    pub async fn get_qr(&self, code: &str) -> redis::RedisResult<Option<QrCode>> {
        let raw: Option<String> = self.conn.clone().get(self.key(&["qr", code])).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The key of a phone's one-code-a-minute window (see `storage::limits`).
    pub fn otp_minute_key(&self, phone: &str) -> String {
        self.limit_key("otp-phone-minute", phone)
    }

    /// Lifts a phone's one-code-a-minute limit, so that a demo or a test may sign the same
    /// phone in again at once.
    pub async fn release_otp_send(&self, phone: &str) -> redis::RedisResult<()> {
        let _: () = self.conn.clone().del(self.otp_minute_key(phone)).await?;
        Ok(())
    }

    /// PING, for readiness.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
