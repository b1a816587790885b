//! What operators see of the queues, and what they may do: retry a failed or dead job,
//! discard one that should not run. Shared by the admin API and `krug jobs`.
//!
//! States, from apalis-redis's keys: `pending` (the active list), `scheduled` (the delayed
//! set, waiting for its time), `failed` (the delayed set, waiting for a retry after an
//! error), `running` (a worker's in-flight set), `done`, `dead` (out of attempts, failed
//! permanently, or discarded).

use crate::{
    client::{ENQUEUED_AT, JobQueue},
    queue::QueueName,
};
use apalis_redis::Config;
use redis::{AsyncCommands, Script};
use serde_json::Value;
use sqlx::PgPool;
use std::{collections::HashMap, str::FromStr, sync::LazyLock};
use time::OffsetDateTime;
use uuid::Uuid;

static JOB_STATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/job_state.lua")));
static RETRY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/retry_job.lua")));
static DISCARD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/discard_job.lua")));
static COUNTS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/queue_counts.lua")));

/// How many delayed jobs `queue_counts` looks into to tell failed from scheduled.
const COUNT_INSPECT_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Scheduled,
    Running,
    Done,
    Failed,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        Self::Running,
        Self::Pending,
        Self::Failed,
        Self::Scheduled,
        Self::Dead,
        Self::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown state `{s}`; states are pending, scheduled, running, done, failed, dead"))
    }
}

/// A job as operators see it (payload with personal data masked).
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub id: Uuid,
    pub queue: QueueName,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub payload: Value,
    pub enqueued_at: Option<OffsetDateTime>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

/// Counts by state of one queue.
#[derive(Debug, Clone)]
pub struct QueueCounts {
    pub queue: QueueName,
    pub pending: u64,
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
    /// Age of the job that has waited longest in `pending`.
    pub oldest_pending_age_s: Option<u64>,
}

/// What an operator's action came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Done,
    /// No such job in this queue.
    NotFound,
    /// The job's state does not allow it (retrying a running job, discarding a done one).
    NotAllowed(JobState),
}

fn config(queue: &JobQueue, name: QueueName) -> Config {
    queue.config(name)
}

fn meta_key(config: &Config, id: &str) -> String {
    format!("{}:{id}", config.job_meta_hash())
}

fn unix(value: Option<&String>) -> Option<OffsetDateTime> {
    value
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|v| OffsetDateTime::from_unix_timestamp(v).ok())
}

pub async fn queue_counts(queue: &JobQueue, name: QueueName) -> redis::RedisResult<QueueCounts> {
    let c = config(queue, name);
    let (pending, scheduled, failed, running, done, dead, oldest): (
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        String,
    ) = COUNTS
        .key(c.active_jobs_list())
        .key(c.scheduled_jobs_set())
        .key(c.done_jobs_set())
        .key(c.dead_jobs_set())
        .key(c.workers_set())
        .key(c.inflight_jobs_set())
        .key(c.job_meta_hash())
        .arg(COUNT_INSPECT_LIMIT)
        .invoke_async(&mut queue.connection())
        .await?;
    let oldest_pending_age_s = if oldest.is_empty() {
        None
    } else {
        let at: Option<String> = queue
            .connection()
            .hget(meta_key(&c, &oldest), ENQUEUED_AT)
            .await?;
        unix(at.as_ref()).map(|at| (OffsetDateTime::now_utc() - at).whole_seconds().max(0) as u64)
    };
    Ok(QueueCounts {
        queue: name,
        pending,
        scheduled,
        running,
        done,
        failed,
        dead,
        oldest_pending_age_s,
    })
}

async fn state_of(queue: &JobQueue, c: &Config, id: &str) -> redis::RedisResult<Option<JobState>> {
    let state: String = JOB_STATE
        .key(c.active_jobs_list())
        .key(c.scheduled_jobs_set())
        .key(c.done_jobs_set())
        .key(c.dead_jobs_set())
        .key(c.job_data_hash())
        .key(meta_key(c, id))
        .arg(id)
        .invoke_async(&mut queue.connection())
        .await?;
    Ok(state.parse().ok())
}

/// One job, or `None` if this queue does not hold it (any more).
pub async fn job(
    queue: &JobQueue,
    name: QueueName,
    id: Uuid,
) -> redis::RedisResult<Option<JobInfo>> {
    let c = config(queue, name);
    let Some(state) = state_of(queue, &c, &id.to_string()).await? else {
        return Ok(None);
    };
    describe(queue, &c, name, id, state).await
}

async fn describe(
    queue: &JobQueue,
    c: &Config,
    name: QueueName,
    id: Uuid,
    state: JobState,
) -> redis::RedisResult<Option<JobInfo>> {
    let mut conn = queue.connection();
    let data: Option<Vec<u8>> = conn.hget(c.job_data_hash(), id.to_string()).await?;
    let Some(data) = data else {
        return Ok(None);
    };
    let meta: HashMap<String, String> = conn.hgetall(meta_key(c, &id.to_string())).await?;
    let last_error = meta
        .get("result")
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|r| r.get("Err").and_then(Value::as_str).map(without_wrapper));
    let payload = serde_json::from_slice(&data).unwrap_or(Value::Null);
    Ok(Some(JobInfo {
        id,
        queue: name,
        state,
        attempts: meta
            .get("attempts")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        max_attempts: meta
            .get("max_attempts")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        last_error: if matches!(state, JobState::Done) {
            None
        } else {
            last_error
        },
        payload: mask_personal_data(payload),
        enqueued_at: unix(meta.get(ENQUEUED_AT)),
        started_at: unix(meta.get("locked_at")),
        finished_at: if matches!(state, JobState::Done | JobState::Dead) {
            unix(meta.get("done_at"))
        } else {
            None
        },
    }))
}

/// A page of jobs in `state` (every state, in the order of `JobState::ALL`, when `None`).
/// The cursor is opaque: `state:position`.
pub async fn list(
    queue: &JobQueue,
    name: QueueName,
    state: Option<JobState>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<JobInfo>, Option<String>), ListError> {
    let c = config(queue, name);
    let mut conn = queue.connection();
    let states: Vec<JobState> = state.map_or(JobState::ALL.to_vec(), |s| vec![s]);
    let (mut index, mut position) = match cursor {
        None => (0usize, 0u64),
        Some(cursor) => {
            let (s, p) = cursor.split_once(':').ok_or(ListError::BadCursor)?;
            let s: JobState = s.parse().map_err(|_| ListError::BadCursor)?;
            let index = states
                .iter()
                .position(|x| *x == s)
                .ok_or(ListError::BadCursor)?;
            (index, p.parse().map_err(|_| ListError::BadCursor)?)
        }
    };
    let mut out = Vec::new();
    while index < states.len() {
        let state = states[index];
        let want = limit - out.len();
        // (ids, next position in this state's structure, or None when it is exhausted)
        let (ids, next): (Vec<String>, Option<u64>) = match state {
            JobState::Pending => {
                let ids: Vec<String> = conn
                    .lrange(
                        c.active_jobs_list(),
                        position as isize,
                        (position as usize + want - 1) as isize,
                    )
                    .await?;
                let next = (ids.len() == want).then_some(position + want as u64);
                (ids, next)
            }
            JobState::Scheduled | JobState::Failed => {
                // Both live in the delayed set: read a window and keep this state's.
                let window: Vec<String> = conn
                    .zrange(
                        c.scheduled_jobs_set(),
                        position as isize,
                        (position as usize + want - 1) as isize,
                    )
                    .await?;
                let mut ids = Vec::new();
                for id in &window {
                    let status: Option<String> = conn.hget(meta_key(&c, id), "status").await?;
                    let failed = status.as_deref() == Some("Failed");
                    if failed == (state == JobState::Failed) {
                        ids.push(id.clone());
                    }
                }
                let next = (window.len() == want).then_some(position + want as u64);
                (ids, next)
            }
            JobState::Running => {
                let workers: Vec<String> = conn.zrange(c.workers_set(), 0, -1).await?;
                let mut ids = Vec::new();
                for worker in workers {
                    let held: Vec<String> = conn
                        .smembers(format!("{}:{worker}", c.inflight_jobs_set()))
                        .await?;
                    ids.extend(held);
                }
                ids.sort();
                let ids: Vec<String> = ids.into_iter().skip(position as usize).collect();
                let next = (ids.len() > want).then_some(position + want as u64);
                (ids.into_iter().take(want).collect(), next)
            }
            JobState::Done | JobState::Dead => {
                let key = if state == JobState::Done {
                    c.done_jobs_set()
                } else {
                    c.dead_jobs_set()
                };
                let (next_cursor, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(&key)
                    .arg(position)
                    .arg("COUNT")
                    .arg(want)
                    .query_async(&mut conn)
                    .await?;
                (ids, (next_cursor != 0).then_some(next_cursor))
            }
        };
        for id in ids {
            let Ok(uuid) = id.parse::<Uuid>() else {
                continue;
            };
            if let Some(info) = describe(queue, &c, name, uuid, state).await? {
                out.push(info);
            }
        }
        match next {
            Some(next) if out.len() >= limit => {
                return Ok((out, Some(format!("{}:{next}", state.as_str()))));
            }
            Some(next) => position = next,
            None => {
                index += 1;
                position = 0;
            }
        }
        if out.len() >= limit {
            let cursor = states.get(index).map(|s| format!("{}:0", s.as_str()));
            return Ok((out, cursor));
        }
    }
    Ok((out, None))
}

/// Listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("the cursor is not valid; start again without one")]
    BadCursor,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Runs a failed or dead job again (attempts reset). Its outbox record, if any, is reopened
/// so that `reconcile` watches it again.
pub async fn retry(
    queue: &JobQueue,
    db: &PgPool,
    name: QueueName,
    id: Uuid,
) -> anyhow::Result<Action> {
    let c = config(queue, name);
    let key = id.to_string();
    let Some(state) = state_of(queue, &c, &key).await? else {
        return Ok(Action::NotFound);
    };
    if !matches!(state, JobState::Failed | JobState::Dead) {
        return Ok(Action::NotAllowed(state));
    }
    let retried: i64 = RETRY
        .key(c.active_jobs_list())
        .key(c.scheduled_jobs_set())
        .key(c.dead_jobs_set())
        .key(meta_key(&c, &key))
        .key(c.signal_list())
        .arg(&key)
        .invoke_async(&mut queue.connection())
        .await?;
    if retried == 0 {
        return Ok(Action::NotAllowed(
            state_of(queue, &c, &key).await?.unwrap_or(state),
        ));
    }
    sqlx::query("UPDATE job_outbox SET finished_at = NULL, outcome = NULL, relayed_at = now() WHERE job_id = $1")
        .bind(id)
        .execute(db)
        .await?;
    tracing::info!(queue = %name, job_id = %id, "job retried by an operator");
    Ok(Action::Done)
}

/// Takes a pending, scheduled or failed job out for good; its outbox record is closed so
/// that `reconcile` does not bring it back.
pub async fn discard(
    queue: &JobQueue,
    db: &PgPool,
    name: QueueName,
    id: Uuid,
) -> anyhow::Result<Action> {
    let c = config(queue, name);
    let key = id.to_string();
    let Some(state) = state_of(queue, &c, &key).await? else {
        return Ok(Action::NotFound);
    };
    if !matches!(
        state,
        JobState::Pending | JobState::Scheduled | JobState::Failed
    ) {
        return Ok(Action::NotAllowed(state));
    }
    let result = serde_json::json!({"Err": "discarded by an operator"}).to_string();
    let discarded: i64 = DISCARD
        .key(c.active_jobs_list())
        .key(c.scheduled_jobs_set())
        .key(c.dead_jobs_set())
        .key(meta_key(&c, &key))
        .arg(&key)
        .arg(OffsetDateTime::now_utc().unix_timestamp())
        .arg(result)
        .invoke_async(&mut queue.connection())
        .await?;
    if discarded == 0 {
        return Ok(Action::NotAllowed(
            state_of(queue, &c, &key).await?.unwrap_or(state),
        ));
    }
    storage::outbox::finish(db, id, "discarded").await?;
    tracing::info!(queue = %name, job_id = %id, "job discarded by an operator");
    Ok(Action::Done)
}

/// Hides personal data in a payload: phones show `+7999***4567`, emails `a***@domain`,
/// secrets (`token`, `password`, `api_key`, `sealed_code`, …) `***`.
pub fn mask_personal_data(value: Value) -> Value {
    fn mask(key: Option<&str>, value: Value) -> Value {
        let key_lc = key.map(str::to_ascii_lowercase).unwrap_or_default();
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let masked = mask(Some(&k), v);
                        (k, masked)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| mask(key, v)).collect()),
            Value::String(s)
                if [
                    "token",
                    "password",
                    "secret",
                    "api_key",
                    "sealed",
                    "code_hash",
                ]
                .iter()
                .any(|k| key_lc.contains(k)) =>
            {
                let _ = s;
                Value::String("***".to_owned())
            }
            Value::String(s) if key_lc.contains("phone") || looks_like_phone(&s) => {
                Value::String(domain::phone::mask_phone(&s))
            }
            Value::String(s) if key_lc.contains("email") || s.contains('@') => {
                let domain = s.split_once('@').map(|(_, d)| d).unwrap_or("");
                Value::String(format!("{}***@{domain}", s.chars().next().unwrap_or('*')))
            }
            other => other,
        }
    }
    mask(None, value)
}

/// apalis prefixes permanent failures with `AbortError: `; operators want the reason.
fn without_wrapper(error: &str) -> String {
    error
        .strip_prefix("AbortError: ")
        .unwrap_or(error)
        .to_owned()
}

fn looks_like_phone(s: &str) -> bool {
    s.starts_with('+') && s.len() >= 11 && s[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_data_is_masked_wherever_it_is() {
        let masked = mask_personal_data(json!({
            "otp_id": "0b8c", "phone": "+79991234567", "sealed_code": "c2VjcmV0",
            "nested": {"customer": {"mobile": "+79997654321", "email": "anna@example.ru"}},
            "devices": [{"token": "fcm-token-1"}], "amount": "100.00"
        }));
        assert_eq!(masked["phone"], "+7999***4567");
        assert_eq!(masked["sealed_code"], "***");
        assert_eq!(masked["nested"]["customer"]["mobile"], "+7999***4321");
        assert_eq!(masked["nested"]["customer"]["email"], "a***@example.ru");
        assert_eq!(masked["devices"][0]["token"], "***");
        assert_eq!(masked["amount"], "100.00");
        assert_eq!(masked["otp_id"], "0b8c");
    }
}
