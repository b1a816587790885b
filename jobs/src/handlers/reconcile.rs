//! `reconcile` (every minute): makes Redis and ClickHouse agree with Postgres. It
//! re-enqueues work whose enqueue was lost (see `crate::outbox`) and exports the facts
//! ClickHouse does not have yet (see `storage::analytics`).

use crate::{
    client::RawJob,
    handlers::scan::ScanQr,
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use serde::{Deserialize, Serialize};

/// Relay what the outbox holds and Redis does not.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reconcile {}

const BATCH: i64 = 1000;

impl Job for Reconcile {
    const QUEUE: QueueName = QueueName::Reconcile;
}

impl RunJob for Reconcile {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let mut total = 0;
        loop {
            let due = storage::outbox::due_for_relay(
                &env.db,
                env.reconcile.unrelayed_grace_s,
                env.reconcile.lost_after_s,
                BATCH,
            )
            .await?;
            if due.is_empty() {
                break;
            }
            let count = outbox::relay_again(&env.db, &env.queue, &due)
                .await
                .map_err(|e| JobError::Retry(e.into()))?;
            total += count;
            if (due.len() as i64) < BATCH {
                break;
            }
        }
        // Scans are their own record (no outbox row): a stuck one is pushed again under its
        // own id, a no-op if Redis still holds it.
        let stuck = storage::scans::stuck(&env.db, env.reconcile.lost_after_s, BATCH).await?;
        if !stuck.is_empty() {
            let jobs: Vec<RawJob> = stuck
                .iter()
                .map(|scan_id| RawJob {
                    id: *scan_id,
                    payload: serde_json::to_vec(&ScanQr { scan_id: *scan_id })
                        .expect("job payloads serialize"),
                    max_attempts: QueueName::QrScan.max_attempts(),
                    run_at: None,
                    idempotency_key: None,
                    from_outbox: false,
                })
                .collect();
            env.queue
                .push_raw(QueueName::QrScan, &jobs)
                .await
                .map_err(|e| JobError::Retry(e.into()))?;
            total += jobs.len();
        }
        if total > 0 {
            tracing::info!(relayed = total, "reconcile re-enqueued jobs");
        }
        // ClickHouse too must agree with Postgres: facts not exported yet (ClickHouse was
        // down, or a crash came between insert and mark) go now.
        storage::analytics::export_facts(
            &env.db,
            &env.clickhouse,
            crate::handlers::analytics::EXPORT_BATCH,
        )
        .await
        .map_err(JobError::Retry)?;
        Ok(())
    }
}
