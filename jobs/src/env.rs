//! What every job handler can reach: the database, Redis, the queues and the vendors.

use crate::client::JobQueue;
use adapters::{egress::Egress, objects::ObjectStorage, push::PushSender, sms::SmsSender};
use sqlx::PgPool;
use std::sync::Arc;
use storage::{cache::Cache, outbox::OutboxJob, secret::SecretBox};
use uuid::Uuid;

/// Shared by all handlers of a worker process (cheap to clone through its `Arc`).
pub struct Env {
    pub db: PgPool,
    pub cache: Cache,
    pub queue: JobQueue,
    pub secrets: SecretBox,
    pub sms: Arc<dyn SmsSender>,
    pub push: Arc<dyn PushSender>,
    /// Tickets, receipts and statements (`SMTP_URL`; printed without it).
    pub email: Arc<dyn adapters::email::EmailSender>,
    /// Where CRM calls may go (`KRUG_CRM_ALLOWED_HOSTS`).
    pub egress: Egress,
    pub clickhouse: clickhouse::Client,
    /// Media: uploaded files and their thumbnails.
    pub objects: Arc<ObjectStorage>,
    /// ЮKassa, for paid events (none when `YOOKASSA_*` is unset).
    pub payments: Option<Arc<dyn adapters::payments::PaymentGateway>>,
    /// `KRUG_TIMEZONE`: what "today" means for daily jobs.
    pub timezone: chrono_tz::Tz,
    /// What is due: held accruals, expiring lots, ended settlement periods.
    pub clock: domain::clock::Clock,
    /// `KRUG_BONUS_EXPIRY_DAYS`: a lot expires this long after it became spendable (0: never).
    pub bonus_expiry_days: u32,
    pub reconcile: ReconcilePolicy,
    /// How long `retention` keeps what is kept only for a while (`KRUG_RETAIN_*`).
    pub retention: storage::retention::RetentionPolicy,
    /// A QR purchase at or over this percent of its business's `max_check_amount` is listed
    /// for operators as an outlier (`KRUG_FRAUD_OUTLIER_PERCENT`, default 50).
    pub fraud_outlier_percent: rust_decimal::Decimal,
    /// The tier rules, read at most once a minute (every purchase needs them).
    pub tier_rules: RulesCache,
    /// Writes jobs' outcomes to the outbox in batches.
    pub finisher: crate::finisher::Finisher,
    /// Gathers `qr_scan` jobs into batches.
    pub scans: crate::scan_batcher::ScanBatcher,
    /// Jobs running now and finished per minute, for the board (`processes`).
    pub activity: Arc<crate::processes::Activity>,
}

impl Env {
    /// What a handler does once its transaction has committed: the API's balance caches
    /// hear of the members whose balances changed, and the follow-ups it recorded (named by
    /// `what` in the log) go to their queues (see [`crate::outbox::relay_committed`]).
    pub async fn committed(
        &self,
        balances_changed: impl IntoIterator<Item = Uuid>,
        follow_ups: &[OutboxJob],
        what: &str,
    ) {
        self.cache.balances_changed(balances_changed).await;
        crate::outbox::relay_committed(&self.db, &self.queue, follow_ups, what).await;
    }

    /// The tier rules as stored, at most a minute old.
    pub async fn tier_rules(&self) -> sqlx::Result<domain::TierRules> {
        {
            let cached = self.tier_rules.0.lock().expect("rules cache lock");
            if let Some((at, rules)) = cached.as_ref() {
                if at.elapsed() < RULES_TTL {
                    return Ok(rules.clone());
                }
            }
        }
        let rules = storage::tiers::rules(&self.db).await?;
        *self.tier_rules.0.lock().expect("rules cache lock") =
            Some((std::time::Instant::now(), rules.clone()));
        Ok(rules)
    }
}

/// Edits to `tier_rules` reach every worker within this long.
const RULES_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// See [`Env::tier_rules`].
#[derive(Debug, Default)]
pub struct RulesCache(std::sync::Mutex<Option<(std::time::Instant, domain::TierRules)>>);

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
