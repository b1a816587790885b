//! The job outbox: follow-up work recorded in Postgres in the same transaction as the write
//! that calls for it, then relayed to Redis (see `jobs::outbox`).

use serde_json::Value;
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct OutboxJob {
    pub job_id: Uuid,
    pub queue: String,
    pub payload: Value,
    pub max_attempts: i32,
    pub run_at: Option<OffsetDateTime>,
}

/// Records a job. It is marked relayed at once: the push follows the commit, and a failed
/// push clears the mark (`mark_unrelayed`); if the process dies in between, the job counts
/// as relayed-but-unfinished and `reconcile` pushes it after `lost_after_s`. This saves an
/// UPDATE per job on the normal path.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, jobs: &[OutboxJob]) -> sqlx::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO job_outbox (job_id, queue, payload, max_attempts, run_at, relayed_at)
         SELECT job_id, queue, payload, max_attempts, run_at, now()
         FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[])
              AS j(job_id, queue, payload, max_attempts, run_at)
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(jobs.iter().map(|j| j.job_id).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.payload.clone()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn mark_relayed(db: impl PgExecutor<'_>, job_ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query("UPDATE job_outbox SET relayed_at = now() WHERE job_id = ANY($1)")
        .bind(job_ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Clears the relayed mark of jobs whose push failed, so that `reconcile` relays them soon.
pub async fn mark_unrelayed(db: impl PgExecutor<'_>, job_ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE job_outbox SET relayed_at = NULL WHERE job_id = ANY($1) AND finished_at IS NULL",
    )
    .bind(job_ids)
    .execute(db)
    .await?;
    Ok(())
}

/// Removes a job that could not be relayed and whose caller gave up (the API answered 503).
pub async fn delete(db: impl PgExecutor<'_>, job_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM job_outbox WHERE job_id = $1")
        .bind(job_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Records that a job reached a final state; `reconcile` leaves it alone from then on.
pub async fn finish(db: impl PgExecutor<'_>, job_id: Uuid, outcome: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE job_outbox SET finished_at = now(), outcome = $2 WHERE job_id = $1 AND finished_at IS NULL")
        .bind(job_id)
        .bind(outcome)
        .execute(db)
        .await?;
    Ok(())
}

/// Jobs `reconcile` must (re-)relay: never relayed and older than `unrelayed_grace_s` seconds
/// (their relay was lost), or relayed more than `lost_after_s` seconds ago and still not finished
/// (Redis lost them). Re-relaying a job Redis still holds is a no-op: the push is keyed by job id.
pub async fn due_for_relay(
    db: &PgPool,
    unrelayed_grace_s: i64,
    lost_after_s: i64,
    limit: i64,
) -> sqlx::Result<Vec<OutboxJob>> {
    sqlx::query_as(
        "(SELECT job_id, queue, payload, max_attempts, run_at FROM job_outbox
           WHERE relayed_at IS NULL AND created_at < now() - make_interval(secs => $1)
           ORDER BY created_at LIMIT $3)
         UNION ALL
         (SELECT job_id, queue, payload, max_attempts, run_at FROM job_outbox
           WHERE finished_at IS NULL AND relayed_at < now() - make_interval(secs => $2)
             AND (run_at IS NULL OR run_at < now() - make_interval(secs => $2))
           ORDER BY relayed_at LIMIT $3)",
    )
    .bind(unrelayed_grace_s as f64)
    .bind(lost_after_s as f64)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The outbox record of one job, if it has one.
pub async fn get(db: impl PgExecutor<'_>, job_id: Uuid) -> sqlx::Result<Option<OutboxJob>> {
    sqlx::query_as(
        "SELECT job_id, queue, payload, max_attempts, run_at FROM job_outbox WHERE job_id = $1",
    )
    .bind(job_id)
    .fetch_optional(db)
    .await
}

/// Reopens the records of jobs an operator sent back to the queue, so that `reconcile`
/// watches them again.
pub async fn reopen(db: impl PgExecutor<'_>, job_ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE job_outbox SET finished_at = NULL, outcome = NULL, relayed_at = now() WHERE job_id = ANY($1)",
    )
    .bind(job_ids)
    .execute(db)
    .await?;
    Ok(())
}

/// Closes the records of jobs an operator took out, so that `reconcile` leaves them.
pub async fn finish_all(
    db: impl PgExecutor<'_>,
    job_ids: &[Uuid],
    outcome: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE job_outbox SET finished_at = now(), outcome = $2 WHERE job_id = ANY($1) AND finished_at IS NULL")
        .bind(job_ids)
        .bind(outcome)
        .execute(db)
        .await?;
    Ok(())
}

/// Records the outcomes of a batch of finished jobs in one transaction. The commit does not
/// wait for the WAL flush: a record lost in a crash is rewritten when `reconcile` pushes the
/// job again and its handler finds the work done.
pub async fn finish_batch(db: &PgPool, batch: &[(Uuid, &'static str)]) -> sqlx::Result<()> {
    let (ids, outcomes): (Vec<Uuid>, Vec<&str>) = batch.iter().copied().unzip();
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE job_outbox o SET finished_at = now(), outcome = f.outcome
         FROM UNNEST($1::uuid[], $2::text[]) AS f(id, outcome)
         WHERE o.job_id = f.id AND o.finished_at IS NULL",
    )
    .bind(&ids)
    .bind(&outcomes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
