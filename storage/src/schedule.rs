//! `schedule_runs`: which tick of each cron schedule has been fired, and with which job. The
//! scheduler records a run per tick, reads the last one to catch up a missed tick, and
//! operators read it in the schedule list.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// Records that `schedule`'s tick at `tick_at` was fired as `job_id`; a tick already recorded
/// keeps its first job.
pub async fn record_run(
    db: impl PgExecutor<'_>,
    schedule: &str,
    tick_at: OffsetDateTime,
    job_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO schedule_runs (schedule, tick_at, job_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(schedule)
    .bind(tick_at)
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(())
}

/// The latest recorded run of `schedule`: its tick and its job.
pub async fn last_run(
    db: impl PgExecutor<'_>,
    schedule: &str,
) -> sqlx::Result<Option<(OffsetDateTime, Uuid)>> {
    sqlx::query_as(
        "SELECT tick_at, job_id FROM schedule_runs WHERE schedule = $1
         ORDER BY tick_at DESC LIMIT 1",
    )
    .bind(schedule)
    .fetch_optional(db)
    .await
}

/// The latest tick recorded for `schedule`, if any.
pub async fn last_tick(
    db: impl PgExecutor<'_>,
    schedule: &str,
) -> sqlx::Result<Option<OffsetDateTime>> {
    sqlx::query_scalar("SELECT max(tick_at) FROM schedule_runs WHERE schedule = $1")
        .bind(schedule)
        .fetch_one(db)
        .await
}
