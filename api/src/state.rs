//! What every route can reach.

use crate::auth::JwtKeys;
use jobs::JobQueue;
use sqlx::PgPool;
use storage::{cache::Cache, secret::SecretBox};

pub struct AppState {
    pub db: PgPool,
    pub cache: Cache,
    pub queue: JobQueue,
    pub secrets: SecretBox,
    pub jwt: JwtKeys,
    pub clickhouse: clickhouse::Client,
    /// `KRUG_TIMEZONE`: schedules' next fire times.
    pub timezone: chrono_tz::Tz,
}
