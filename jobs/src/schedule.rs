//! `krug scheduler`: fires the cron schedules of DESIGN.md.
//!
//! Ticks come from apalis-cron (patched: `vendor/apalis-cron/PATCHES.md`) in
//! `KRUG_TIMEZONE`. Each tick becomes one job whose id is derived from (prefix, schedule, tick time) and whose push carries the
//! same idempotency key, so however many schedulers run, a tick is enqueued once
//! (apalis issue 281: apalis-cron fires once per running instance).

use crate::{
    client::{JobQueue, RawJob},
    env::Env,
    handlers::{
        analytics::RfmSnapshot, crm::PollCrm, expire::Expire, notify_job::NotifyJob,
        payments::SettlePayments, reconcile::Reconcile, retention::Purge,
        settlement::CloseSettlement, tiers::ReviewTiers,
    },
    metrics::{SCHEDULER_TICKS, note_database_error},
    processes::{self, ProcessInfo},
    queue::{Job, QueueName},
};
use apalis_cron::CronScheduler;
use chrono_tz::Tz;
use futures::StreamExt;
use sqlx::PgPool;
use std::{str::FromStr, sync::Arc};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A schedule: a name, a cron expression (seconds first) and the job it enqueues.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: &'static str,
    pub cron: String,
    pub queue: QueueName,
    payload: serde_json::Value,
}

impl Schedule {
    fn of<J: Job + Default>(name: &'static str, default_cron: &str) -> Self {
        let env_name = format!("KRUG_CRON_{}", name.to_uppercase());
        Self {
            name,
            cron: std::env::var(env_name).unwrap_or_else(|_| default_cron.to_owned()),
            queue: J::QUEUE,
            payload: serde_json::to_value(J::default()).expect("job payloads serialize"),
        }
    }

    pub fn parsed(&self) -> anyhow::Result<cron::Schedule> {
        cron::Schedule::from_str(&self.cron).map_err(|e| {
            anyhow::anyhow!(
                "schedule {} has an invalid cron expression {:?}: {e}",
                self.name,
                self.cron
            )
        })
    }

    /// The job of the tick at `tick_unix` (seconds): the same id in every scheduler.
    pub fn job_for_tick(&self, prefix: &str, tick_unix: u64) -> RawJob {
        let key = format!("{prefix}:{}:{tick_unix}", self.name);
        RawJob {
            id: Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()),
            payload: serde_json::to_vec(&self.payload).expect("JSON values serialize"),
            max_attempts: self.queue.max_attempts(),
            run_at: None,
            idempotency_key: Some(format!("tick:{}:{tick_unix}", self.name)),
            from_outbox: false,
        }
    }

    /// A job for "run it now": a fresh id, no tick key.
    pub fn job_now(&self) -> RawJob {
        RawJob {
            id: Uuid::now_v7(),
            payload: serde_json::to_vec(&self.payload).expect("JSON values serialize"),
            max_attempts: self.queue.max_attempts(),
            run_at: None,
            idempotency_key: None,
            from_outbox: false,
        }
    }
}

/// The schedules of DESIGN.md.
pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule::of::<PollCrm>("crm_poll", "0 */5 * * * *"),
        Schedule::of::<RfmSnapshot>("rfm_snapshot", "0 0 3 * * *"),
        Schedule::of::<ReviewTiers>("tier_review", "0 0 4 * * *"),
        // Hourly rather than daily: held bonuses become spendable within the hour their
        // hold ends.
        Schedule::of::<Expire>("expire", "0 30 * * * *"),
        Schedule::of::<NotifyJob>("event_reminders", "0 0 12 * * *"),
        Schedule::of::<Reconcile>("reconcile", "0 * * * * *"),
        Schedule::of::<Purge>("retention", "0 15 4 * * *"),
        Schedule::of::<CloseSettlement>("settlement", "0 0 5 1 * *"),
        // Holds last 15 minutes: a seat is back on sale at most 5 minutes after its hold.
        Schedule::of::<SettlePayments>("payments", "0 */5 * * * *"),
    ]
}

/// A schedule name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("unknown schedule `{0}`")]
pub struct UnknownSchedule(pub String);

/// Enqueues a schedule's job now (operators' "run now") and records the run.
pub async fn trigger(queue: &JobQueue, db: &PgPool, name: &str) -> anyhow::Result<Uuid> {
    let schedule = schedules()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| UnknownSchedule(name.to_owned()))?;
    let job = schedule.job_now();
    queue
        .push_raw(schedule.queue, std::slice::from_ref(&job))
        .await?;
    storage::schedule::record_run(db, schedule.name, OffsetDateTime::now_utc(), job.id).await?;
    Ok(job.id)
}

/// A schedule as operators see it.
#[derive(Debug, Clone)]
pub struct ScheduleInfo {
    pub name: &'static str,
    pub cron: String,
    pub queue: QueueName,
    pub next_fire_at: Option<OffsetDateTime>,
    pub last_run_at: Option<OffsetDateTime>,
    pub last_job_id: Option<Uuid>,
    /// The state of the last run's job (`done`, `dead`, `running`, …), `unknown` once the
    /// queue no longer holds it.
    pub last_outcome: Option<String>,
}

/// Every schedule with its next fire time and its last run.
pub async fn list(
    queue: &JobQueue,
    db: &PgPool,
    timezone: Tz,
) -> anyhow::Result<Vec<ScheduleInfo>> {
    let mut out = Vec::new();
    for schedule in schedules() {
        let next_fire_at = schedule
            .parsed()
            .ok()
            .and_then(|cron| cron.upcoming(timezone).next())
            .and_then(|next| OffsetDateTime::from_unix_timestamp(next.timestamp()).ok());
        let last = storage::schedule::last_run(db, schedule.name).await?;
        let last_outcome = match last {
            Some((_, job_id)) => Some(
                crate::inspect::job(queue, schedule.queue, job_id)
                    .await?
                    .map_or_else(|| "unknown".to_owned(), |job| job.state.as_str().to_owned()),
            ),
            None => None,
        };
        out.push(ScheduleInfo {
            name: schedule.name,
            cron: schedule.cron.clone(),
            queue: schedule.queue,
            next_fire_at,
            last_run_at: last.map(|(at, _)| at),
            last_job_id: last.map(|(_, id)| id),
            last_outcome,
        });
    }
    Ok(out)
}

/// Fires every schedule until `shutdown`.
pub async fn run(env: Arc<Env>, timezone: Tz, shutdown: CancellationToken) -> anyhow::Result<()> {
    let armed = schedules()
        .into_iter()
        .map(|schedule| schedule.parsed().map(|cron| (schedule, cron)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    let heartbeat = tokio::spawn(processes::heartbeat(
        env.queue.clone(),
        env.activity.clone(),
        ProcessInfo::scheduler(armed.iter().map(|(s, _)| s.name.to_owned()).collect()),
        SCHEDULER_HEARTBEAT,
        SCHEDULER_HEARTBEAT * 6,
        shutdown.clone(),
    ));
    crate::metrics::initialise_scheduler(&armed.iter().map(|(s, _)| s.name).collect::<Vec<_>>());
    for (schedule, cron) in armed {
        catch_up(&env, &schedule, &cron, timezone, &shutdown).await;
        let env = env.clone();
        let shutdown = shutdown.clone();
        tracing::info!(schedule = schedule.name, cron = %schedule.cron, "schedule armed");
        tasks.spawn(async move {
            let mut ticks = Box::pin(
                CronScheduler::new(cron.clone())
                    .with_timezone(timezone)
                    .into_stream(),
            );
            loop {
                let tick = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    tick = ticks.next() => tick,
                };
                match tick {
                    Some(Ok(tick)) => {
                        let tick_unix = tick.get_timestamp();
                        let next = next_tick(&cron, timezone, tick_unix);
                        fire(&env, &schedule, tick_unix, next, &shutdown).await;
                    }
                    // A tick that went by while the previous one was still being enqueued
                    // is skipped, not replayed late; the stream goes on with the next.
                    Some(Err(e)) => {
                        tracing::warn!(schedule = schedule.name, error = %e, "tick skipped")
                    }
                    None => return,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let _ = heartbeat.await;
    Ok(())
}

/// How often a scheduler tells Redis it is alive (it is gone after six missed beats).
const SCHEDULER_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// How far back a restarted scheduler looks for a missed tick.
const CATCH_UP_LOOKBACK_HOURS: i64 = 24;

/// A scheduler that was down fires the last tick it missed, once (not every tick it
/// missed: a storm of stale polls and snapshots helps nobody). The tick's job id is the
/// same in every scheduler, so several starting together still enqueue it once.
async fn catch_up(
    env: &Env,
    schedule: &Schedule,
    cron: &cron::Schedule,
    timezone: Tz,
    shutdown: &CancellationToken,
) {
    let now = chrono::Utc::now().with_timezone(&timezone);
    let since = now - chrono::Duration::hours(CATCH_UP_LOOKBACK_HOURS);
    let Some(missed) = cron.after(&since).take_while(|t| *t <= now).last() else {
        return;
    };
    let last_run = match storage::schedule::last_tick(&env.db, schedule.name).await {
        Ok(last) => last,
        Err(e) => {
            note_database_error(&e);
            tracing::warn!(schedule = schedule.name, error = %e, "could not read the last run; no catch-up");
            return;
        }
    };
    if last_run.is_some_and(|last| last.unix_timestamp() >= missed.timestamp()) {
        return;
    }
    tracing::info!(schedule = schedule.name, tick = %missed, "catching up the last missed tick");
    let tick = missed.timestamp().max(0) as u64;
    let next = next_tick(cron, timezone, tick);
    fire(env, schedule, tick, next, shutdown).await;
}

/// The tick after `tick_unix`, in unix seconds.
fn next_tick(cron: &cron::Schedule, timezone: Tz, tick_unix: u64) -> Option<u64> {
    let tick = chrono::DateTime::from_timestamp(tick_unix as i64, 0)?.with_timezone(&timezone);
    let next = cron.after(&tick).next()?;
    Some(next.timestamp().max(0) as u64)
}

/// How long a scheduler waits before trying a failed enqueue again.
const RETRY_ENQUEUE_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Enqueues the job of a tick. An enqueue that fails (Redis down, a cluster master failing
/// over) is tried again until it succeeds or the schedule's next tick (`next_unix`) is due,
/// which supersedes it: a daily tick outlives a Redis blip, a per-minute one is not
/// replayed late. Every try carries the same job id and idempotency key, so a try that
/// reached Redis but whose answer was lost is not enqueued twice.
async fn fire(
    env: &Env,
    schedule: &Schedule,
    tick_unix: u64,
    next_unix: Option<u64>,
    shutdown: &CancellationToken,
) {
    let job = schedule.job_for_tick(env.queue.prefix(), tick_unix);
    loop {
        let Err(e) = env
            .queue
            .push_raw(schedule.queue, std::slice::from_ref(&job))
            .await
        else {
            break;
        };
        SCHEDULER_TICKS
            .with_label_values(&[schedule.name, "failed"])
            .inc();
        let retry_at = OffsetDateTime::now_utc() + RETRY_ENQUEUE_AFTER;
        if next_unix.is_some_and(|next| retry_at.unix_timestamp() >= next as i64) {
            tracing::warn!(schedule = schedule.name, error = %e, "could not enqueue a tick; the next one supersedes it");
            return;
        }
        tracing::warn!(schedule = schedule.name, error = %e, "could not enqueue a tick; trying again");
        tokio::select! {
            _ = tokio::time::sleep(RETRY_ENQUEUE_AFTER) => {}
            _ = shutdown.cancelled() => return,
        }
    }
    SCHEDULER_TICKS
        .with_label_values(&[schedule.name, "enqueued"])
        .inc();
    tracing::debug!(schedule = schedule.name, tick = tick_unix, "tick enqueued");
    let tick_at = OffsetDateTime::from_unix_timestamp(tick_unix as i64)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    if let Err(e) = storage::schedule::record_run(&env.db, schedule.name, tick_at, job.id).await {
        note_database_error(&e);
        tracing::warn!(schedule = schedule.name, error = %e, "could not record a tick");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_second() -> cron::Schedule {
        cron::Schedule::from_str("* * * * * *").unwrap()
    }

    /// A per-second schedule whose consumer was busy for 2.5 s (an enqueue retried through
    /// a Redis failover) goes on ticking: the tick that went by is reported once and the
    /// next is still to come. Unpatched apalis-cron 1.0 answered `OutOfRange` for the past
    /// tick on every poll after, and the schedule never ticked again.
    #[tokio::test]
    async fn a_tick_missed_while_busy_does_not_stop_the_schedule() {
        let tz: Tz = "Europe/Moscow".parse().unwrap();
        let mut ticks = Box::pin(
            CronScheduler::new(every_second())
                .with_timezone(tz)
                .into_stream(),
        );
        let first = ticks.next().await.unwrap().unwrap().get_timestamp();
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let mut skipped = 0;
        let next = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(3), ticks.next()).await {
                Ok(Some(Ok(tick))) => break tick.get_timestamp(),
                Ok(Some(Err(_))) => {
                    skipped += 1;
                    assert!(skipped <= 1, "the past tick is reported again and again");
                }
                Ok(None) => panic!("the schedule ended"),
                Err(_) => panic!("no tick within 3 s of the missed one"),
            }
        };
        assert_eq!(skipped, 1, "the tick that went by is reported");
        let now = OffsetDateTime::now_utc().unix_timestamp() as u64;
        assert!(
            next >= first + 2 && next + 1 >= now,
            "tick {next} after {first}, now {now}"
        );
    }

    #[test]
    fn the_next_tick_of_a_daily_schedule_is_a_day_later() {
        let tz: Tz = "Europe/Moscow".parse().unwrap();
        let daily = cron::Schedule::from_str("0 0 3 * * *").unwrap();
        let tick = daily.upcoming(tz).next().unwrap().timestamp() as u64;
        assert_eq!(next_tick(&daily, tz, tick), Some(tick + 24 * 3600));
    }
}
