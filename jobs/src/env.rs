//! What every job handler can reach: the database, Redis, the queues and the vendors.

use crate::client::JobQueue;
use adapters::sms::SmsSender;
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
}
