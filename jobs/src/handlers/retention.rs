//! `retention`: deletes what is kept only for a while.
//!
//! - Daily (schedule `retention`): expired login codes, refresh tokens of dead sessions,
//!   finished outbox rows and old scan requests, after the periods of `KRUG_RETAIN_*`
//!   (`storage::retention`).
//! - Once per business flagged medical (recorded by the API with the flag): the business's
//!   facts leave ClickHouse.

use crate::{
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use storage::outbox::OutboxJob;
use uuid::Uuid;

/// What to purge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "purge", rename_all = "snake_case")]
pub enum Purge {
    /// Everything past its retention period.
    #[default]
    Expired,
    /// Every analytics fact of a business that was just flagged medical.
    MedicalFacts { business_id: Uuid },
}

/// What follows a business's `is_medical` flag being set, in the transaction that sets it:
/// its recorded purchases count as medical from now on, and the purge of its analytics facts
/// is recorded (relay the returned row after the commit).
pub async fn business_became_medical(
    tx: &mut Transaction<'_, Postgres>,
    business_id: Uuid,
) -> sqlx::Result<OutboxJob> {
    storage::businesses::mark_history_medical(&mut **tx, business_id).await?;
    outbox::record(
        tx,
        Uuid::now_v7(),
        &Purge::MedicalFacts { business_id },
        None,
    )
    .await
}

impl Job for Purge {
    const QUEUE: QueueName = QueueName::Retention;
}

impl RunJob for Purge {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        match self {
            Purge::Expired => {
                let purged = storage::retention::purge(&env.db, &env.retention).await?;
                tracing::info!(
                    login_codes = purged.login_codes,
                    refresh_tokens = purged.refresh_tokens,
                    outbox = purged.outbox,
                    scan_requests = purged.scan_requests,
                    "retention purge done"
                );
            }
            Purge::MedicalFacts { business_id } => {
                storage::analytics::delete_business_facts(&env.clickhouse, business_id)
                    .await
                    .map_err(|e| JobError::Retry(e.into()))?;
                tracing::info!(%business_id, "a medical business's facts deleted from analytics");
            }
        }
        Ok(())
    }
}
