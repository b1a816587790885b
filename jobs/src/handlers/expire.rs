//! `expire` (daily): coupons past their date stop being usable.
//!
//! Bonus expiry is not done: DESIGN.md names it but fixes no rule (after how long, of what),
//! and inventing one would take members' money; see the README.

use crate::queue::{Job, JobCtx, JobError, QueueName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Expire {}

impl Job for Expire {
    const QUEUE: QueueName = QueueName::Expire;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let expired = sqlx::query(
            "UPDATE coupons SET expired_at = now()
             WHERE expires_at <= now() AND redeemed_at IS NULL AND expired_at IS NULL",
        )
        .execute(&ctx.env.db)
        .await?
        .rows_affected();
        tracing::info!(coupons_expired = expired, "expiry done");
        Ok(())
    }
}
