//! `krug scheduler`: fires the cron schedules of DESIGN.md.
//!
//! Ticks come from apalis-cron in `KRUG_TIMEZONE`. Each tick becomes one job whose id is
//! derived from (prefix, schedule, tick time) and whose push carries the same idempotency
//! key, so however many schedulers run, a tick is enqueued once (APALIS.md #3).

use crate::{
    client::RawJob,
    env::Env,
    handlers::{crm::PollCrm, reconcile::Reconcile},
    queue::{Job, QueueName},
};
use apalis_cron::CronScheduler;
use chrono_tz::Tz;
use futures::StreamExt;
use std::{str::FromStr, sync::Arc};
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
        }
    }
}

/// The schedules this build runs. (`rfm_snapshot`, `tier_review` and `expire` join as their
/// jobs are built; see the README.)
pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule::of::<PollCrm>("crm_poll", "0 */5 * * * *"),
        Schedule::of::<Reconcile>("reconcile", "0 * * * * *"),
    ]
}

/// Enqueues a schedule's job now (operators' "run now").
pub async fn trigger(env: &Env, name: &str) -> anyhow::Result<Uuid> {
    let schedule = schedules()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("unknown schedule `{name}`"))?;
    let job = schedule.job_now();
    env.queue
        .push_raw(schedule.queue, std::slice::from_ref(&job))
        .await?;
    Ok(job.id)
}

/// Fires every schedule until `shutdown`.
pub async fn run(env: Arc<Env>, timezone: Tz, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for schedule in schedules() {
        let cron = schedule.parsed()?;
        let env = env.clone();
        let shutdown = shutdown.clone();
        tracing::info!(schedule = schedule.name, cron = %schedule.cron, "schedule armed");
        tasks.spawn(async move {
            let mut ticks = Box::pin(
                CronScheduler::new(cron)
                    .with_timezone(timezone)
                    .into_stream(),
            );
            loop {
                let tick = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    tick = ticks.next() => tick,
                };
                match tick {
                    Some(Ok(tick)) => fire(&env, &schedule, tick.get_timestamp()).await,
                    Some(Err(e)) => {
                        tracing::warn!(schedule = schedule.name, error = %e, "schedule error")
                    }
                    None => return,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn fire(env: &Env, schedule: &Schedule, tick_unix: u64) {
    let job = schedule.job_for_tick(env.queue.prefix(), tick_unix);
    match env
        .queue
        .push_raw(schedule.queue, std::slice::from_ref(&job))
        .await
    {
        Ok(()) => tracing::debug!(schedule = schedule.name, tick = tick_unix, "tick enqueued"),
        Err(e) => tracing::warn!(schedule = schedule.name, error = %e, "could not enqueue a tick"),
    }
}
