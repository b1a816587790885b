//! `crm_poll`: pulls new purchases and refunds from a partner's CRM into Postgres.
//!
//! The schedule enqueues a fan-out job (no business) that enqueues one job per business
//! with a CRM. Each polls the window from its cursor (minus an overlap, for records the
//! vendor files late) to now, stores it in one transaction together with the `bonus_calc`
//! jobs it calls for and the advanced cursor, then relays those jobs. A failed poll leaves
//! the cursor where it was, so the next one covers the same window; duplicates are ignored
//! by the (business, vendor id) key.

use crate::{
    client::RawJob,
    handlers::bonus::CalcBonus,
    outbox,
    queue::{Job, JobCtx, JobError, QueueName},
};
use adapters::{
    crm::{self, CrmKind, Window},
    http::VendorError,
};
use domain::PhoneNumber;
use serde::{Deserialize, Serialize};
use storage::{businesses, crm as crm_store};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Records a vendor files late are still picked up by the next poll.
pub const OVERLAP: Duration = Duration::minutes(10);
/// How far back the first poll of a newly connected CRM reaches.
pub const FIRST_POLL_LOOKBACK: Duration = Duration::days(1);
/// New transactions per `bonus_calc` job.
pub const BONUS_BATCH: usize = 500;

/// Poll one business's CRM, or (without a business) every business that has one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PollCrm {
    #[serde(default)]
    pub business_id: Option<Uuid>,
    /// Poll even if the integration is marked failing (an operator's "poll now").
    #[serde(default)]
    pub force: bool,
}

impl Job for PollCrm {
    const QUEUE: QueueName = QueueName::CrmPoll;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        match self.business_id {
            None => fan_out(&ctx).await,
            Some(id) => poll(&ctx, id, self.force).await,
        }
    }
}

async fn fan_out(ctx: &JobCtx) -> Result<(), JobError> {
    let env = &ctx.env;
    let due: Vec<Uuid> = businesses::list_active(&env.db)
        .await?
        .into_iter()
        .filter(|b| b.crm_type.is_some() && b.integration_status == "ok")
        .map(|b| b.id)
        .collect();
    // Ids derived from this job's: a retried fan-out does not poll anyone twice.
    let jobs: Vec<RawJob> = due
        .iter()
        .map(|business_id| RawJob {
            id: Uuid::new_v5(&ctx.job_id, business_id.as_bytes()),
            payload: serde_json::to_vec(&PollCrm {
                business_id: Some(*business_id),
                force: false,
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
    tracing::info!(businesses = jobs.len(), "CRM polls enqueued");
    Ok(())
}

async fn poll(ctx: &JobCtx, business_id: Uuid, force: bool) -> Result<(), JobError> {
    let env = &ctx.env;
    let Some(business) = businesses::get(&env.db, business_id).await? else {
        tracing::warn!(%business_id, "business gone; nothing to poll");
        return Ok(());
    };
    let (Some(crm_type), Some(base_url)) = (
        business.crm_type.as_deref(),
        business.crm_base_url.as_deref(),
    ) else {
        return Ok(());
    };
    if !business.is_active || (business.integration_status == "failing" && !force) {
        return Ok(());
    }
    let credentials = businesses::credentials(&env.db, &env.secrets, business.id)
        .await
        .map_err(JobError::Permanent)?
        .ok_or_else(|| JobError::permanent("the business has a CRM but no credentials"))?;
    let client = match crm::client(crm_type, base_url, &credentials) {
        Ok(client) => client,
        Err(e) => {
            businesses::set_integration_status(
                &env.db,
                business.id,
                "failing",
                Some(&e.to_string()),
            )
            .await?;
            return Err(JobError::Permanent(e.into()));
        }
    };
    let now = OffsetDateTime::now_utc();
    let cursor = crm_store::cursor(&env.db, business.id).await?;
    let from = cursor
        .as_ref()
        .map_or(now - FIRST_POLL_LOOKBACK, |c| c.polled_until - OVERLAP);
    let window = Window { from, to: now };

    let fetched = match client.fetch_transactions(window).await {
        Ok(fetched) => fetched,
        Err(e) => return Err(vendor_failure(ctx, &business, window, e).await),
    };
    let records: Vec<crm_store::Record> = fetched
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

    let mut tx = storage::begin_batch(&env.db).await?;
    let ingested = crm_store::ingest(&mut tx, &business, &records).await?;
    let mut follow_ups = Vec::new();
    for chunk in ingested.new_transaction_ids.chunks(BONUS_BATCH) {
        let job = CalcBonus {
            transaction_ids: chunk.to_vec(),
        };
        follow_ups.push(outbox::record(&mut tx, Uuid::now_v7(), &job, None).await?);
    }
    crm_store::advance(&mut *tx, business.id, window.to).await?;
    if business.integration_status != "ok" {
        businesses::set_integration_status(&mut *tx, business.id, "ok", None).await?;
    }
    tx.commit().await?;
    if let Err(e) = outbox::relay(&env.db, &env.queue, &follow_ups).await {
        // Stored and recorded: reconcile relays them.
        tracing::warn!(error = %e, "bonus_calc jobs recorded but not relayed");
    }
    tracing::info!(
        vendor = crm_type,
        fetched = records.len(),
        new = ingested.new_transaction_ids.len(),
        duplicates = ingested.duplicates,
        unattributed = ingested.unattributed,
        "CRM window stored"
    );
    Ok(())
}

/// Decides what a vendor failure means: bad credentials stop polling this business until an
/// operator acts; a bad payload fails the job with what came; the rest is retried.
async fn vendor_failure(
    ctx: &JobCtx,
    business: &businesses::Business,
    window: Window,
    error: VendorError,
) -> JobError {
    let db = &ctx.env.db;
    let message = error.to_string();
    let _ = crm_store::record_failure(db, business.id, window.from + OVERLAP, &message).await;
    match error {
        VendorError::Unauthorized { .. } => {
            if let Err(e) =
                businesses::set_integration_status(db, business.id, "failing", Some(&message)).await
            {
                return JobError::Retry(e.into());
            }
            tracing::warn!(business_id = %business.id, error = %message, "CRM refused our credentials; integration marked failing");
            JobError::permanent(message)
        }
        e if e.is_transient() => JobError::Retry(e.into()),
        e => JobError::Permanent(e.into()),
    }
}
