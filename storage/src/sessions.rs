//! Revoked sessions, for the access tokens still out there.
//!
//! An access token is checked without a database read (its RS256 signature, then memory),
//! and lives 15 minutes. When a session ends early — logout, a refresh token replayed, a
//! role taken away, an account blocked or deleted — its id (`sid`, the refresh-token
//! family) is appended to a Redis stream; every API process reads the stream every second
//! and refuses tokens of the sessions in it. Entries older than an access token's lifetime
//! are trimmed: by then every token of the session has expired by itself.

use crate::cache::Cache;
use redis::streams::StreamRangeReply;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The stream id from which entries younger than `keep` start.
pub fn since(keep: Duration) -> String {
    format!("{}-0", now_ms().saturating_sub(keep.as_millis() as u64))
}

impl Cache {
    fn revoked_sessions_key(&self) -> String {
        format!("{}:revoked-sessions", self.prefix())
    }

    /// Appends ended sessions to the stream, trimming what is older than `keep`.
    pub async fn revoke_sessions(&self, sids: &[Uuid], keep: Duration) -> redis::RedisResult<()> {
        if sids.is_empty() {
            return Ok(());
        }
        let key = self.revoked_sessions_key();
        let min_id = since(keep);
        let mut pipe = redis::pipe();
        for sid in sids {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MINID")
                .arg("~")
                .arg(&min_id)
                .arg("*")
                .arg("sid")
                .arg(sid.to_string())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.connection()).await
    }

    /// Sessions ended after stream id `after` (exclusive), oldest first, at most `count`:
    /// each with its stream id, the cursor of the next read.
    pub async fn sessions_revoked_after(
        &self,
        after: &str,
        count: usize,
    ) -> redis::RedisResult<Vec<(String, Uuid)>> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.revoked_sessions_key())
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.connection())
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| {
                let sid = entry
                    .get::<String>("sid")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default();
                (entry.id, sid)
            })
            .collect())
    }
}
