//! Sessions that ended before their access tokens expired (see `storage::sessions`): kept in
//! memory by every API process, so that a revoked token is refused on the same path as a
//! checked one — no database or Redis read per request.

use crate::{error::ApiError, jwt::ACCESS_TTL_S};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use storage::cache::Cache;
use uuid::Uuid;

/// How long an ended session is remembered: longer than any of its access tokens lives
/// (their lifetime, the clock skew allowed, a margin).
pub const REMEMBER: Duration = Duration::from_secs(ACCESS_TTL_S as u64 + 60);
/// How often every process reads what others revoked: "within seconds".
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The sessions this process knows to have ended.
#[derive(Debug, Default)]
pub struct RevokedSessions {
    ended: Mutex<HashMap<Uuid, Instant>>,
}

impl RevokedSessions {
    pub fn contains(&self, sid: Uuid) -> bool {
        self.ended
            .lock()
            .expect("revoked sessions lock")
            .contains_key(&sid)
    }

    pub fn insert(&self, sids: impl IntoIterator<Item = Uuid>) {
        let now = Instant::now();
        let mut ended = self.ended.lock().expect("revoked sessions lock");
        ended.extend(sids.into_iter().map(|sid| (sid, now)));
        ended.retain(|_, at| now.duration_since(*at) < REMEMBER);
    }
}

/// Ends sessions everywhere: this process refuses their tokens at once, every other within
/// [`SYNC_EVERY`] (told through `cache`). Their refresh tokens must already be revoked in
/// Postgres.
pub async fn end(revoked: &RevokedSessions, cache: &Cache, sids: &[Uuid]) -> Result<(), ApiError> {
    revoked.insert(sids.iter().copied());
    cache
        .revoke_sessions(sids, REMEMBER)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "ended sessions not announced to the other API processes");
            ApiError::Unavailable(poem_openapi::payload::Json(
                crate::envelope::ErrorEnvelope::new(
                    "revocation_unavailable",
                    "The session has ended on this server but could not be ended everywhere; try again.",
                ),
            ))
        })
}

/// Reads what other processes revoked, every [`SYNC_EVERY`], until aborted. While Redis is
/// unreachable the sessions already known stay refused and new ones wait (logged).
pub fn spawn_sync(revoked: Arc<RevokedSessions>, cache: Cache) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut cursor = storage::sessions::since(REMEMBER);
        let mut failing = false;
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            loop {
                match cache.sessions_revoked_after(&cursor, 1000).await {
                    Ok(entries) => {
                        if failing {
                            tracing::info!("revoked sessions readable again");
                            failing = false;
                        }
                        let more = entries.len() == 1000;
                        if let Some((last, _)) = entries.last() {
                            cursor = last.clone();
                        }
                        revoked.insert(entries.into_iter().map(|(_, sid)| sid));
                        if !more {
                            break;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "revoked sessions unreadable; retrying");
                            failing = true;
                        }
                        break;
                    }
                }
            }
        }
    })
}
