//! Balances served from memory.
//!
//! `GET /loyalty/balance` is the app's most frequent read. Each API process keeps the
//! members' balance views for [`FRESH_FOR`] and forgets a member's the moment a worker
//! announces, after its commit, that her balance, tier or purchases changed (Redis pub/sub,
//! `storage::cache::Cache::balances_changed`). While the subscription is down nothing is
//! served from memory, and after each (re)subscription everything is forgotten, so a lost
//! announcement can only come from a worker dying between its commit and its publish; then
//! the view is at most [`FRESH_FOR`] old. A member's own finished scan forgets her view at
//! once in the process that reports it.

use crate::wire::Amount;
use futures::StreamExt;
use poem_openapi::Object;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use storage::redis_target::RedisTarget;
use time::OffsetDateTime;
use uuid::Uuid;

/// The tier a member can reach next, and what it takes (`GET /loyalty/balance`).
#[derive(Debug, Clone, Object)]
pub struct NextTierView {
    /// `VIP` or `Elite`.
    pub name: String,
    /// Roubles still to spend within the rolling 365 days.
    pub spend_needed: Amount,
    /// Categories still to visit.
    pub categories_needed: u32,
}

/// The next lot of bonuses to expire.
#[derive(Debug, Clone, Object)]
pub struct ExpiringView {
    /// What is left of it (it expires unless spent first: spending takes the oldest lots).
    pub amount: Amount,
    /// When it expires (`KRUG_BONUS_EXPIRY_DAYS` after it became spendable).
    pub at: OffsetDateTime,
}

/// What `GET /loyalty/balance` answers, and what this cache keeps.
#[derive(Debug, Clone, Object)]
pub struct BalanceView {
    /// Spendable: the sum of the ledger.
    pub balance: Amount,
    /// Accrued at businesses that hold cashback a while, not spendable yet.
    pub pending: Amount,
    /// The next lot to expire; absent when nothing will (nothing left, or
    /// `KRUG_BONUS_EXPIRY_DAYS` is 0).
    #[oai(nullable)]
    pub expiring: Option<ExpiringView>,
    pub lifetime_earned: Amount,
    pub lifetime_spent: Amount,
    pub status_tier: String,
    /// Absent at Elite and in the Inner Circle (no spend leads further: the Inner Circle is
    /// by invitation).
    #[oai(nullable)]
    pub next_tier: Option<NextTierView>,
}

/// How long a view is served without an announcement.
pub const FRESH_FOR: Duration = Duration::from_secs(10);
/// Views kept at most (then the oldest half of the work is simply redone).
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct BalanceCache {
    inner: Mutex<Inner>,
    /// Whether announcements are being received.
    listening: AtomicBool,
}

#[derive(Default)]
struct Inner {
    views: HashMap<Uuid, (Instant, BalanceView)>,
    /// Counts announcements: a view read while one arrived may predate the change it
    /// announced, and is not kept.
    epoch: u64,
}

impl BalanceCache {
    /// The member's view, if fresh; and the epoch to hand back to [`Self::keep`].
    pub fn get(&self, user_id: Uuid) -> (Option<BalanceView>, u64) {
        let inner = self.inner.lock().expect("balance cache lock");
        let view = self
            .listening
            .load(Ordering::Acquire)
            .then(|| inner.views.get(&user_id))
            .flatten()
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, view)| view.clone());
        (view, inner.epoch)
    }

    /// Keeps a view read from Postgres, unless a change was announced since `epoch`.
    pub fn keep(&self, user_id: Uuid, view: BalanceView, epoch: u64) {
        let mut inner = self.inner.lock().expect("balance cache lock");
        if inner.epoch != epoch || !self.listening.load(Ordering::Acquire) {
            return;
        }
        if inner.views.len() >= CAPACITY {
            inner.views.clear();
        }
        inner.views.insert(user_id, (Instant::now(), view));
    }

    /// Forgets these members' views.
    pub fn forget(&self, users: impl IntoIterator<Item = Uuid>) {
        let mut inner = self.inner.lock().expect("balance cache lock");
        inner.epoch += 1;
        for user in users {
            inner.views.remove(&user);
        }
    }

    fn forget_all(&self) {
        let mut inner = self.inner.lock().expect("balance cache lock");
        inner.epoch += 1;
        inner.views.clear();
    }
}

/// Receives the workers' announcements until the process ends, resubscribing after errors.
pub fn spawn_listener(
    cache: Arc<BalanceCache>,
    redis_url: String,
    channel: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            let outcome = listen(&cache, &redis_url, &channel).await;
            cache.listening.store(false, Ordering::Release);
            match outcome {
                Ok(()) => tracing::warn!("balance announcements ended; resubscribing"),
                Err(e) => {
                    tracing::warn!(error = %e, "balance announcements unavailable; balances read from Postgres meanwhile")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    })
}

async fn listen(cache: &BalanceCache, redis_url: &str, channel: &str) -> redis::RedisResult<()> {
    let mut pubsub = RedisTarget::parse(redis_url)?.subscribe().await?;
    pubsub.subscribe(channel).await?;
    // What changed while nobody listened is unknown: start afresh.
    cache.forget_all();
    cache.listening.store(true, Ordering::Release);
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload().unwrap_or_default();
        cache.forget(payload.split(',').filter_map(|id| id.parse().ok()));
    }
    Ok(())
}
