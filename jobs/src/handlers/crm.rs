//! `crm_poll`: pulls new purchases and refunds from the partners' CRMs into Postgres, one
//! job per integration (a business may have several: Лисичкино runs iiko and 1C).
//!
//! The schedule enqueues a fan-out job that enqueues one job per integration due. Each polls
//! the window from its integration's cursor (minus an overlap, for records the vendor files
//! late) to now and stores it in batches, a transaction each: purchases with their bonuses
//! and what follows from them (cross-promo, tier notices), refunds with the `bonus_calc`
//! jobs that reverse what they take back; the last batch advances the cursor. A failed
//! poll leaves the cursor where it was, so the next one covers the same window; what was
//! stored is ignored then by the (integration, vendor id) key.
//!
//! What reaches operators (an integration's `last_error`, the job's error) never holds a
//! vendor's raw reply, and nothing the vendor wrote at all for a medical business.

use crate::{
    client::RawJob,
    handlers::bonus::{self, CalcBonus},
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use adapters::{
    crm::{self, ConfigError, CrmKind, Target, TokenLease, TokenStore, Window},
    egress::Egress,
    http::VendorError,
};
use async_trait::async_trait;
use domain::{PhoneNumber, crm::CrmType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use std::{collections::HashSet, sync::Arc};
use storage::{
    businesses, crm as crm_store,
    integrations::{self, CredentialsError, Integration, IntegrationStatus, LockedCredentials},
    ledger::BonusOutcome,
    secret::SecretBox,
};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// Records a vendor files late are still picked up by the next poll.
pub const OVERLAP: Duration = Duration::minutes(10);
/// How far back the first poll of a newly connected CRM reaches.
pub const FIRST_POLL_LOOKBACK: Duration = Duration::days(1);
/// Records stored (and their bonuses applied) per database transaction.
pub const STORE_BATCH: usize = 2_000;
/// Batches of purchases stored side by side (each holds a database connection).
const LANES: usize = 4;
/// New refunds per `bonus_calc` job.
pub const BONUS_BATCH: usize = 500;

/// Poll one integration; or, without one, every integration due (of one business, or of
/// all). Jobs queued before integrations existed carry only `business_id`: they fan out
/// to that business's integrations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PollCrm {
    #[serde(default)]
    pub integration_id: Option<Uuid>,
    #[serde(default)]
    pub business_id: Option<Uuid>,
    /// Poll even if the integration is marked failing (an operator's "poll now").
    #[serde(default)]
    pub force: bool,
}

impl Job for PollCrm {
    const QUEUE: QueueName = QueueName::CrmPoll;
}

impl RunJob for PollCrm {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        match self.integration_id {
            Some(id) => poll(&ctx.env, id, self.force).await,
            None => fan_out(&ctx, self.business_id, self.force).await,
        }
    }
}

async fn fan_out(ctx: &JobCtx, business_id: Option<Uuid>, force: bool) -> Result<(), JobError> {
    let env = &ctx.env;
    let due = integrations::due(&env.db, business_id, force).await?;
    // Ids derived from this job's: a retried fan-out does not poll anyone twice.
    let jobs: Vec<RawJob> = due
        .iter()
        .map(|integration_id| RawJob {
            id: Uuid::new_v5(&ctx.job_id, integration_id.as_bytes()),
            payload: serde_json::to_vec(&PollCrm {
                integration_id: Some(*integration_id),
                business_id: None,
                force,
            })
            .expect("job payloads serialize"),
            max_attempts: QueueName::CrmPoll.max_attempts(),
            run_at: None,
            idempotency_key: None,
            from_outbox: false,
        })
        .collect();
    env.queue
        .push_raw(QueueName::CrmPoll, &jobs)
        .await
        .map_err(|e| JobError::Retry(e.into()))?;
    tracing::info!(integrations = jobs.len(), "CRM polls enqueued");
    Ok(())
}

/// Polls one integration now. Two polls of the same integration may run at once (a
/// schedule tick and an operator's "poll now"): the (integration, vendor id) key and the
/// integration's credentials lock keep them from doing anything twice.
pub async fn poll(env: &crate::Env, id: Uuid, force: bool) -> Result<(), JobError> {
    let Some(integration) = integrations::get(&env.db, id).await? else {
        tracing::warn!(integration_id = %id, "integration gone; nothing to poll");
        return Ok(());
    };
    let Some(business) = businesses::get(&env.db, integration.business_id).await? else {
        return Ok(());
    };
    if !business.is_active
        || integration.status == IntegrationStatus::Disabled
        || (integration.status == IntegrationStatus::Failing && !force)
    {
        return Ok(());
    }
    let credentials = match integrations::credentials(&env.db, &env.secrets, id).await {
        Ok(Some(credentials)) => credentials,
        Ok(None) => return Ok(()),
        Err(CredentialsError::Database(e)) => return Err(e.into()),
        Err(e) => {
            let message = e.to_string();
            integrations::record_failure(&env.db, id, &message, true).await?;
            return Err(JobError::permanent(message));
        }
    };
    let tokens: Arc<dyn TokenStore> = Arc::new(StoredTokens {
        db: env.db.clone(),
        secrets: env.secrets.clone(),
        id,
    });
    let target = Target::new(&integration.base_url, &credentials, &env.egress)
        .with_settings(&integration.settings)
        .with_tokens(tokens);
    let client = match crm::client(integration.crm_type, &target) {
        Ok(client) => client,
        Err(e) => {
            let message = e.to_string();
            integrations::record_failure(&env.db, id, &message, true).await?;
            return Err(JobError::permanent(message));
        }
    };
    let now = OffsetDateTime::now_utc();
    let mut from = integration
        .polled_until
        .map_or(now - FIRST_POLL_LOOKBACK, |p| p - OVERLAP);
    if let Some(kept) = client.keeps_records_for() {
        // A minute of margin: the vendor's clock and ours are not the same clock.
        let oldest = now - kept + Duration::minutes(1);
        if from < oldest {
            let warning = format!(
                "incomplete catch-up: {} keeps records for {} days, so records from {} to {} could not be read",
                integration.crm_type,
                kept.whole_days(),
                from.format(&Rfc3339).unwrap_or_default(),
                oldest.format(&Rfc3339).unwrap_or_default(),
            );
            tracing::warn!(integration_id = %id, %warning);
            integrations::set_warning(&env.db, id, Some(&warning)).await?;
            from = oldest;
        }
    }
    let window = Window { from, to: now };

    let fetched_records = match client.fetch_transactions(window).await {
        Ok(fetched) => fetched,
        Err(e) => return Err(vendor_failure(env, &integration, business.is_medical, e).await),
    };
    let fetched = fetched_records.len();
    let records: Vec<crm_store::Record> = fetched_records
        .into_iter()
        .map(|t| crm_store::Record {
            refund_of: match t.kind {
                CrmKind::Purchase => None,
                CrmKind::Refund {
                    original_external_id,
                } => Some(original_external_id),
            },
            external_id: t.external_id,
            amount: t.amount,
            occurred_at: t.occurred_at,
            phone: t
                .customer_phone
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok()),
            is_medical: t.is_medical,
        })
        .collect();

    // Purchases before refunds (a refund needs its purchase recorded), a batch per
    // transaction: a crash keeps the batches stored so far (the next poll finds them
    // delivered before), and no member's balance stays locked for a whole backfill.
    // Purchases are stored in lanes that run side by side, each member in one lane only,
    // so that lanes never wait for each other's balance locks.
    let mut total = Ingested::default();
    let mut seen = HashSet::new();
    let mut lanes: Vec<Vec<crm_store::Record>> = vec![Vec::new(); LANES];
    let mut refunds = Vec::new();
    for record in records {
        if !seen.insert(record.external_id.clone()) {
            // Delivered twice in this window: kept out before lanes could race for it.
            total.duplicates += 1;
        } else if record.refund_of.is_some() {
            refunds.push(record);
        } else {
            lanes[lane_of(record.phone.as_ref())].push(record);
        }
    }
    let rules = env.tier_rules().await?;
    let stored = futures::future::try_join_all(lanes.iter().map(|lane| async {
        let mut stored = Ingested::default();
        for batch in lane.chunks(STORE_BATCH) {
            stored.add(store_batch(env, &business, id, batch, &rules).await?.into());
        }
        Ok::<_, JobError>(stored)
    }))
    .await?;
    for lane in stored {
        total.add(lane);
    }
    for batch in refunds.chunks(STORE_BATCH) {
        total.add(store_batch(env, &business, id, batch, &rules).await?.into());
    }
    integrations::advance(&env.db, id, window.to).await?;
    tracing::info!(
        vendor = %integration.crm_type,
        integration_id = %id,
        fetched,
        purchases = total.purchases,
        refunds = total.refunds,
        duplicates = total.duplicates,
        unattributed = total.unattributed,
        orphan_refunds = total.orphan_refunds,
        "CRM window stored"
    );
    Ok(())
}

/// Stores one batch of a poll in a transaction of its own: its records, the bonuses of its
/// purchases and what follows from them, the `bonus_calc` jobs of its refunds.
async fn store_batch(
    env: &crate::Env,
    business: &businesses::Business,
    integration_id: Uuid,
    batch: &[crm_store::Record],
    rules: &domain::TierRules,
) -> Result<crm_store::Ingested, JobError> {
    let mut tx = storage::begin_batch(&env.db).await?;
    let ingested = crm_store::ingest(&mut tx, business, integration_id, batch, rules).await?;
    let settled: Vec<&BonusOutcome> = ingested.purchases.iter().collect();
    let mut follow_ups = bonus::record_follow_ups(&mut tx, Uuid::now_v7(), &settled).await?;
    for chunk in ingested.new_refund_ids.chunks(BONUS_BATCH) {
        let job = CalcBonus {
            transaction_ids: chunk.to_vec(),
        };
        follow_ups.push(outbox::record(&mut tx, Uuid::now_v7(), &job, None).await?);
    }
    tx.commit().await?;
    bonus::announce(env, &settled, &follow_ups).await;
    Ok(ingested)
}

/// The lane of a purchase's member (purchases without a phone touch no member).
fn lane_of(phone: Option<&PhoneNumber>) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    phone.map(|p| p.as_ref()).hash(&mut hasher);
    (hasher.finish() % LANES as u64) as usize
}

/// What a poll stored, counted over its batches.
#[derive(Debug, Default)]
struct Ingested {
    purchases: usize,
    refunds: usize,
    duplicates: usize,
    unattributed: usize,
    orphan_refunds: usize,
}

impl Ingested {
    fn add(&mut self, other: Ingested) {
        self.purchases += other.purchases;
        self.refunds += other.refunds;
        self.duplicates += other.duplicates;
        self.unattributed += other.unattributed;
        self.orphan_refunds += other.orphan_refunds;
    }
}

impl From<crm_store::Ingested> for Ingested {
    fn from(batch: crm_store::Ingested) -> Self {
        Self {
            purchases: batch.purchases.len(),
            refunds: batch.new_refund_ids.len(),
            duplicates: batch.duplicates,
            unattributed: batch.unattributed,
            orphan_refunds: batch.orphan_refunds,
        }
    }
}

/// Decides what a vendor failure means: refused credentials, a configuration to change and
/// an address we may not reach stop polling this integration until an operator acts; a bad
/// payload fails the job with what was wrong; the rest is retried.
async fn vendor_failure(
    env: &crate::Env,
    integration: &Integration,
    medical: bool,
    error: VendorError,
) -> JobError {
    let message = if medical {
        error.redacted()
    } else {
        error.to_string()
    };
    let needs_operator = matches!(
        error,
        VendorError::Unauthorized { .. } | VendorError::Configuration(_) | VendorError::Egress(_)
    );
    if let Err(e) =
        integrations::record_failure(&env.db, integration.id, &message, needs_operator).await
    {
        return JobError::Retry(e.into());
    }
    if needs_operator {
        tracing::warn!(integration_id = %integration.id, error = %message, "CRM integration needs an operator; marked failing");
        JobError::permanent(message)
    } else if error.is_transient() {
        JobError::Retry(anyhow::anyhow!(message))
    } else {
        JobError::permanent(message)
    }
}

/// Builds the client an integration would get, without a network call: how the API checks
/// a CRM type, URL, credentials and settings before storing them.
pub fn check_connection(
    crm_type: CrmType,
    base_url: &str,
    credentials: &Value,
    settings: &Value,
    egress: &Egress,
) -> Result<(), ConfigError> {
    let target = Target::new(base_url, credentials, egress)
        .with_settings(settings)
        .with_tokens(Arc::new(NoTokens));
    crm::client(crm_type, &target).map(|_| ())
}

/// An integration's credentials as the AMO client renews them: under the row's lock.
struct StoredTokens {
    db: PgPool,
    secrets: SecretBox,
    id: Uuid,
}

#[async_trait]
impl TokenStore for StoredTokens {
    async fn lease(&self) -> Result<Box<dyn TokenLease>, VendorError> {
        match integrations::lock_credentials(&self.db, &self.secrets, self.id).await {
            Ok(locked) => Ok(Box::new(StoredLease {
                locked,
                secrets: self.secrets.clone(),
            })),
            Err(CredentialsError::Database(e)) => Err(VendorError::Unavailable {
                detail: format!("the credentials store is unavailable: {e}"),
                retry_after: None,
            }),
            Err(e) => Err(VendorError::Configuration(e.to_string())),
        }
    }
}

struct StoredLease {
    locked: LockedCredentials,
    secrets: SecretBox,
}

#[async_trait]
impl TokenLease for StoredLease {
    fn credentials(&self) -> &Value {
        &self.locked.value
    }

    async fn save(self: Box<Self>, credentials: Value) -> Result<(), VendorError> {
        self.locked
            .save(&self.secrets, &credentials)
            .await
            .map_err(|e| VendorError::Unavailable {
                detail: format!("the rotated tokens could not be stored: {e}"),
                retry_after: None,
            })
    }
}

/// For checks that never reach the vendor.
struct NoTokens;

#[async_trait]
impl TokenStore for NoTokens {
    async fn lease(&self) -> Result<Box<dyn TokenLease>, VendorError> {
        Err(VendorError::Configuration(
            "tokens are not stored while checking a configuration".to_owned(),
        ))
    }
}
