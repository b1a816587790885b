//! Follow-up jobs that must not be lost.
//!
//! A write and the enqueue of the job it calls for cannot be one transaction (Postgres and
//! Redis), so the job is first recorded in `job_outbox` inside the write's transaction,
//! then pushed to Redis after the commit (`relay`). If the process dies in between, the
//! `reconcile` schedule finds the row and pushes it; if Redis loses a pushed job (a restart
//! without persistence), `reconcile` finds it unfinished and pushes it again. The push is
//! keyed by job id, so a job Redis still holds is never duplicated, and handlers are
//! idempotent for the rare case where Redis had already finished and forgotten it.

use crate::{
    client::{JobQueue, QueueError, RawJob},
    queue::{Job, QueueName},
};
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::BTreeMap;
use storage::outbox::{self, OutboxJob};
use time::OffsetDateTime;
use uuid::Uuid;

/// Records `job` in the caller's transaction and returns the outbox row to relay after commit.
pub async fn record<J: Job>(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    job: &J,
    run_at: Option<OffsetDateTime>,
) -> sqlx::Result<OutboxJob> {
    let row = row(id, job, run_at);
    outbox::insert(tx, std::slice::from_ref(&row)).await?;
    Ok(row)
}

/// The outbox row of `job`, for recording several in one statement ([`record_all`]).
pub fn row<J: Job>(id: Uuid, job: &J, run_at: Option<OffsetDateTime>) -> OutboxJob {
    OutboxJob {
        job_id: id,
        queue: J::QUEUE.as_str().to_owned(),
        payload: serde_json::to_value(job).expect("job payloads serialize"),
        max_attempts: J::QUEUE.max_attempts() as i32,
        run_at,
    }
}

/// Records these rows in the caller's transaction (relay them after commit).
pub async fn record_all(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[OutboxJob],
) -> sqlx::Result<()> {
    outbox::insert(tx, rows).await
}

/// Pushes recorded jobs to Redis. Rows are recorded as relayed (see
/// `storage::outbox::insert`); when the push fails their mark is cleared so that `reconcile`
/// relays them soon. Jobs of an unknown queue (a row written by a newer version) are left
/// for a process that knows them.
pub async fn relay(db: &PgPool, queue: &JobQueue, rows: &[OutboxJob]) -> Result<usize, RelayError> {
    let mut by_queue: BTreeMap<QueueName, Vec<RawJob>> = BTreeMap::new();
    for row in rows {
        let Ok(name) = row.queue.parse::<QueueName>() else {
            tracing::warn!(queue = %row.queue, job_id = %row.job_id, "outbox row for an unknown queue");
            continue;
        };
        by_queue.entry(name).or_default().push(RawJob {
            id: row.job_id,
            payload: serde_json::to_vec(&row.payload).expect("JSON values serialize"),
            max_attempts: row.max_attempts.max(1) as u32,
            run_at: row.run_at,
            idempotency_key: None,
            from_outbox: true,
        });
    }
    let mut relayed = 0;
    for (name, jobs) in &by_queue {
        if let Err(e) = queue.push_raw(*name, jobs).await {
            let ids: Vec<_> = by_queue.values().flatten().map(|j| j.id).collect();
            let _ = outbox::mark_unrelayed(db, &ids).await;
            return Err(e.into());
        }
        relayed += jobs.len();
    }
    Ok(relayed)
}

/// Pushes the `follow_ups` (named by `what` in the log) a committed transaction recorded.
/// A failed push is not the caller's failure: the rows stay in the outbox and `reconcile`
/// pushes them soon, so it is logged, not returned.
pub async fn relay_committed(db: &PgPool, queue: &JobQueue, follow_ups: &[OutboxJob], what: &str) {
    if let Err(e) = relay(db, queue, follow_ups).await {
        tracing::warn!(error = %e, follow_ups = what, "recorded but not pushed now; reconcile will");
    }
}

/// Re-pushes jobs `reconcile` found, and marks them relayed again.
pub async fn relay_again(
    db: &PgPool,
    queue: &JobQueue,
    rows: &[OutboxJob],
) -> Result<usize, RelayError> {
    let count = relay(db, queue, rows).await?;
    let ids: Vec<_> = rows.iter().map(|r| r.job_id).collect();
    outbox::mark_relayed(db, &ids).await?;
    Ok(count)
}

/// Relaying failed: the rows stay in the outbox for `reconcile`.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("failed to mark outbox rows relayed: {0}")]
    Db(#[from] sqlx::Error),
}
