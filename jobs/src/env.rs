//! What every job handler can reach: the database, Redis, the queues and the vendors.

use crate::client::JobQueue;
use adapters::{push::PushSender, sms::SmsSender};
use sqlx::PgPool;
use std::sync::Arc;
use storage::{cache::Cache, secret::SecretBox};

/// Shared by all handlers of a worker process (cheap to clone through its `Arc`).
pub struct Env {
    pub db: PgPool,
    pub cache: Cache,
    pub queue: JobQueue,
    pub secrets: SecretBox,
    pub sms: Arc<dyn SmsSender>,
    pub push: Arc<dyn PushSender>,
    pub clickhouse: clickhouse::Client,
    /// `KRUG_TIMEZONE`: what "today" means for daily jobs.
    pub timezone: chrono_tz::Tz,
    pub reconcile: ReconcilePolicy,
}

/// When `reconcile` steps in (seconds).
#[derive(Debug, Clone, Copy)]
pub struct ReconcilePolicy {
    /// A job never relayed gets this long for its own relay to happen first.
    pub unrelayed_grace_s: i64,
    /// A relayed job not finished after this long is pushed again (a no-op if Redis still
    /// holds it). Longer than any job should take.
    pub lost_after_s: i64,
}

impl Default for ReconcilePolicy {
    fn default() -> Self {
        Self {
            unrelayed_grace_s: 10,
            lost_after_s: 120,
        }
    }
}
