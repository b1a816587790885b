//! What every route can reach.

use crate::{balances::BalanceCache, jwt::JwtKeys, limits::Limits, sessions::RevokedSessions};
use jobs::JobQueue;
use sqlx::PgPool;
use std::sync::Arc;
use storage::{cache::Cache, history::HistoryDb, secret::SecretBox};

pub struct AppState {
    pub db: PgPool,
    /// History reads that may lag the primary a little (`storage::history::MAX_LAG` at most):
    /// a member's ledger and transactions, a partner's dashboard (operators' views read
    /// `db`: they act on what they read). A streaming replica when `DATABASE_REPLICA_URL` is
    /// set, answers and has caught up, else `db`'s primary. Nothing read here is written
    /// back: a read that decides a write stays on `db`.
    pub history: HistoryDb,
    pub cache: Cache,
    pub queue: JobQueue,
    pub secrets: SecretBox,
    pub jwt: JwtKeys,
    pub clickhouse: clickhouse::Client,
    /// Media: presigned uploads, checks on completion, image URLs.
    pub objects: Arc<adapters::objects::ObjectStorage>,
    /// ЮKassa, for paid events (none when `YOOKASSA_*` is unset).
    pub payments: Option<Arc<dyn adapters::payments::PaymentGateway>>,
    /// `KRUG_PAYMENT_RETURN_URL`: where ЮKassa sends a member back after paying.
    pub payment_return_url: String,
    /// `KRUG_TIMEZONE`: schedules' next fire times.
    pub timezone: chrono_tz::Tz,
    /// What is due: the open settlement period, expiring lots.
    pub clock: domain::clock::Clock,
    /// `KRUG_BONUS_EXPIRY_DAYS` (0: never), for the balance's `expiring`.
    pub bonus_expiry_days: u32,
    /// `REDIS_URL`: the balance cache subscribes to the workers' announcements there.
    pub redis_url: String,
    pub balances: Arc<BalanceCache>,
    /// The abuse limits (DESIGN.md), with the proxies whose `X-Forwarded-For` is believed.
    pub limits: Limits,
    /// Sessions ended before their access tokens expire.
    pub revoked: Arc<RevokedSessions>,
    /// Where CRM URLs may point (`KRUG_CRM_ALLOWED_HOSTS`).
    pub egress: adapters::egress::Egress,
    /// Whether `/metrics` is served on the public bind (`false` when `KRUG_METRICS_BIND`
    /// gives `krug api` an internal one).
    pub public_metrics: bool,
}
