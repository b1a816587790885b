//! `reconcile`: re-enqueues work whose enqueue was lost (see `crate::outbox`).

use crate::{
    outbox,
    queue::{Job, JobCtx, JobError, QueueName},
};
use serde::{Deserialize, Serialize};

/// Relay what the outbox holds and Redis does not.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reconcile {}

/// Rows never relayed get this long for their own relay to happen first.
pub const UNRELAYED_GRACE_S: i64 = 10;
/// A relayed job that has not finished after this long is pushed again (a no-op if Redis
/// still holds it). Longer than any job should take.
pub const LOST_AFTER_S: i64 = 120;
const BATCH: i64 = 1000;

impl Job for Reconcile {
    const QUEUE: QueueName = QueueName::Reconcile;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let mut total = 0;
        loop {
            let due =
                storage::outbox::due_for_relay(&env.db, UNRELAYED_GRACE_S, LOST_AFTER_S, BATCH)
                    .await?;
            if due.is_empty() {
                break;
            }
            let count = outbox::relay(&env.db, &env.queue, &due)
                .await
                .map_err(|e| JobError::Retry(e.into()))?;
            total += count;
            if (due.len() as i64) < BATCH {
                break;
            }
        }
        if total > 0 {
            tracing::info!(relayed = total, "reconcile re-enqueued jobs");
        }
        Ok(())
    }
}
