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
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/purge_job.lua")));
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
    let info = info_of(id, name, state, &data, &meta);
    Ok(Some(JobInfo {
        payload: mask_personal_data(info.payload),
        ..info
    }))
}

/// A job from its stored payload and meta (the payload as it is: mask it before showing).
fn info_of(
    id: Uuid,
    name: QueueName,
    state: JobState,
    data: &[u8],
    meta: &HashMap<String, String>,
) -> JobInfo {
    let last_error = meta
        .get("result")
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|r| r.get("Err").and_then(Value::as_str).map(without_wrapper));
    JobInfo {
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
        payload: serde_json::from_slice(data).unwrap_or(Value::Null),
        enqueued_at: unix(meta.get(ENQUEUED_AT)),
        started_at: unix(meta.get("locked_at")),
        finished_at: if matches!(state, JobState::Done | JobState::Dead) {
            unix(meta.get("done_at"))
        } else {
            None
        },
    }
}

/// Which jobs an operator means; every part is optional.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Jobs about this member: her id in the payload, or a scan, transaction or phone of
    /// hers.
    pub member_id: Option<Uuid>,
    /// Jobs about this business: its id in the payload, or a scan or transaction there.
    pub business_id: Option<Uuid>,
    /// Jobs whose last error contains this, in any case.
    pub error: Option<String>,
}

impl JobFilter {
    pub fn is_empty(&self) -> bool {
        self.member_id.is_none() && self.business_id.is_none() && self.error.is_none()
    }

    fn needs_subjects(&self) -> bool {
        self.member_id.is_some() || self.business_id.is_some()
    }

    fn matches(&self, job: &JobInfo, subjects: &Subjects) -> bool {
        self.member_id.is_none_or(|m| subjects.members.contains(&m))
            && self
                .business_id
                .is_none_or(|b| subjects.businesses.contains(&b))
            && self.error.as_deref().is_none_or(|part| {
                job.last_error
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase().contains(&part.to_lowercase()))
            })
    }
}

/// With a filter, a page reads jobs from Redis in windows of this many…
const FILTER_WINDOW: usize = 500;
/// …and looks at this many at most before it answers (with a cursor to read on), so that a
/// selective filter over a large queue still answers quickly.
const FILTER_BUDGET: usize = 5_000;

/// A page of jobs in `state` (every state, in the order of `JobState::ALL`, when `None`)
/// that match `filter`. The cursor is opaque: `state:position`. Done and dead jobs are read
/// with SSCAN, which may hand out a few more than `limit` at once (and, while the set
/// changes, a job twice). With a filter, a page may come back short (even empty) with a
/// cursor: the jobs looked at so far matched no more.
pub async fn list(
    queue: &JobQueue,
    db: &PgPool,
    name: QueueName,
    state: Option<JobState>,
    filter: &JobFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<JobInfo>, Option<String>), ListError> {
    let (jobs, cursor) = page(queue, db, name, state, filter, cursor, limit, true).await?;
    Ok((
        jobs.into_iter()
            .map(|job| JobInfo {
                payload: mask_personal_data(job.payload),
                ..job
            })
            .collect(),
        cursor,
    ))
}

/// [`list`] with the payloads as they are (for the filter and bulk actions).
#[allow(clippy::too_many_arguments)]
async fn page(
    queue: &JobQueue,
    db: &PgPool,
    name: QueueName,
    state: Option<JobState>,
    filter: &JobFilter,
    cursor: Option<&str>,
    limit: usize,
    budgeted: bool,
) -> Result<(Vec<JobInfo>, Option<String>), ListError> {
    let c = config(queue, name);
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
    let mut looked_at = 0usize;
    while index < states.len() {
        let state = states[index];
        let window = if filter.is_empty() {
            limit - out.len()
        } else {
            FILTER_WINDOW
        };
        let (ids, next) = window_ids(queue, &c, state, position, window).await?;
        looked_at += ids.len();
        let jobs = describe_many(queue, &c, name, &ids, state).await?;
        let subjects = if filter.needs_subjects() {
            subjects_of(db, &jobs).await?
        } else {
            vec![Subjects::default(); jobs.len()]
        };
        // Positional structures can stop after any job; SSCAN cursors cannot.
        let positional = !matches!(state, JobState::Done | JobState::Dead);
        let mut stopped_after = None;
        for ((at, job), subjects) in jobs.into_iter().zip(&subjects) {
            if filter.matches(&job, subjects) {
                out.push(job);
            }
            if positional && out.len() >= limit {
                stopped_after = Some(at);
                break;
            }
        }
        let resume = match stopped_after {
            Some(at) => Some(position + at as u64 + 1),
            None => next,
        };
        match resume {
            Some(next) => position = next,
            None => {
                index += 1;
                position = 0;
            }
        }
        let exhausted = index >= states.len();
        if out.len() >= limit || (budgeted && looked_at >= FILTER_BUDGET && !exhausted) {
            let cursor = (!exhausted).then(|| format!("{}:{position}", states[index].as_str()));
            return Ok((out, cursor));
        }
    }
    Ok((out, None))
}

/// Up to `window` ids of the structure that holds `state`, from `position`, with the
/// position to read on from (`None` when the structure is exhausted). For `scheduled` and
/// `failed` these are ids of the delayed set, which holds both.
async fn window_ids(
    queue: &JobQueue,
    c: &Config,
    state: JobState,
    position: u64,
    window: usize,
) -> redis::RedisResult<(Vec<String>, Option<u64>)> {
    let mut conn = queue.connection();
    let window = window.max(1);
    let end = (position as usize + window - 1) as isize;
    Ok(match state {
        JobState::Pending | JobState::Scheduled | JobState::Failed => {
            let ids: Vec<String> = if state == JobState::Pending {
                conn.lrange(c.active_jobs_list(), position as isize, end)
                    .await?
            } else {
                conn.zrange(c.scheduled_jobs_set(), position as isize, end)
                    .await?
            };
            let next = (ids.len() == window).then_some(position + window as u64);
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
            let next = (ids.len() > window).then_some(position + window as u64);
            (ids.into_iter().take(window).collect(), next)
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
                .arg(window)
                .query_async(&mut conn)
                .await?;
            (ids, (next_cursor != 0).then_some(next_cursor))
        }
    })
}

/// The jobs behind `ids` (read in one round trip), each with its place in `ids`; ids
/// whose job is gone, or (in the delayed set) is of the other state, are left out.
async fn describe_many(
    queue: &JobQueue,
    c: &Config,
    name: QueueName,
    ids: &[String],
    state: JobState,
) -> redis::RedisResult<Vec<(usize, JobInfo)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.hget(c.job_data_hash(), id);
        pipe.hgetall(meta_key(c, id));
    }
    let replies: Vec<redis::Value> = pipe.query_async(&mut queue.connection()).await?;
    let mut out = Vec::new();
    for (at, (id, pair)) in ids.iter().zip(replies.chunks(2)).enumerate() {
        let Ok(uuid) = id.parse::<Uuid>() else {
            continue;
        };
        let data: Option<Vec<u8>> = redis::from_redis_value(pair[0].clone())?;
        let meta: HashMap<String, String> = redis::from_redis_value(pair[1].clone())?;
        let Some(data) = data else {
            continue;
        };
        if matches!(state, JobState::Scheduled | JobState::Failed) {
            let failed = meta.get("status").map(String::as_str) == Some("Failed");
            if failed != (state == JobState::Failed) {
                continue;
            }
        }
        out.push((at, info_of(uuid, name, state, &data, &meta)));
    }
    Ok(out)
}

/// The members and businesses a job is about.
#[derive(Debug, Clone, Default)]
struct Subjects {
    members: Vec<Uuid>,
    businesses: Vec<Uuid>,
}

/// What a payload names directly, and what needs Postgres to say whose it is.
#[derive(Debug, Default)]
struct Refs {
    members: Vec<Uuid>,
    businesses: Vec<Uuid>,
    scans: Vec<Uuid>,
    transactions: Vec<Uuid>,
    phones: Vec<String>,
}

/// Reads the ids a payload carries, by the names our job types give them.
fn refs_of(payload: &Value) -> Refs {
    fn walk(key: Option<&str>, value: &Value, refs: &mut Refs) {
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(Some(k), v, refs)),
            Value::Array(items) => items.iter().for_each(|v| walk(key, v, refs)),
            Value::String(s) => {
                let uuid = s.parse::<Uuid>().ok();
                match (key.unwrap_or(""), uuid) {
                    ("user_id" | "member_id", Some(id)) => refs.members.push(id),
                    ("business_id", Some(id)) => refs.businesses.push(id),
                    ("scan_id", Some(id)) => refs.scans.push(id),
                    ("transaction_id" | "transaction_ids", Some(id)) => refs.transactions.push(id),
                    ("phone", None) => refs.phones.push(s.clone()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut refs = Refs::default();
    walk(None, payload, &mut refs);
    refs
}

/// Whom each job is about, with three queries at most for the whole window.
async fn subjects_of(db: &PgPool, jobs: &[(usize, JobInfo)]) -> sqlx::Result<Vec<Subjects>> {
    let refs: Vec<Refs> = jobs.iter().map(|(_, j)| refs_of(&j.payload)).collect();
    let scans: Vec<Uuid> = refs.iter().flat_map(|r| r.scans.iter().copied()).collect();
    let transactions: Vec<Uuid> = refs
        .iter()
        .flat_map(|r| r.transactions.iter().copied())
        .collect();
    let phones: Vec<String> = refs.iter().flat_map(|r| r.phones.iter().cloned()).collect();
    let scans: HashMap<Uuid, (Uuid, Option<Uuid>)> = storage::subjects::of_scans(db, &scans)
        .await?
        .into_iter()
        .map(|(id, member, business)| (id, (member, business)))
        .collect();
    let transactions: HashMap<Uuid, (Uuid, Uuid)> =
        storage::subjects::of_transactions(db, &transactions)
            .await?
            .into_iter()
            .map(|(id, member, business)| (id, (member, business)))
            .collect();
    let phones: HashMap<String, Uuid> = storage::subjects::of_phones(db, &phones)
        .await?
        .into_iter()
        .collect();
    Ok(refs
        .into_iter()
        .map(|r| {
            let mut subjects = Subjects {
                members: r.members,
                businesses: r.businesses,
            };
            for (member, business) in r.scans.iter().filter_map(|id| scans.get(id)) {
                subjects.members.push(*member);
                subjects.businesses.extend(*business);
            }
            for (member, business) in r.transactions.iter().filter_map(|id| transactions.get(id)) {
                subjects.members.push(*member);
                subjects.businesses.push(*business);
            }
            subjects
                .members
                .extend(r.phones.iter().filter_map(|p| phones.get(p)));
            subjects
        })
        .collect())
}

/// What an operator does to many jobs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// Failed and dead jobs run again, attempts reset.
    Retry,
    /// Failed jobs go dead with the operator's reason; dead jobs are deleted from the queue
    /// store (their outbox record stays, closed as discarded).
    Discard,
}

/// What a bulk action came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Jobs that matched the filter.
    pub matched: u64,
    /// Jobs the action applied to (fewer than matched if some moved on meanwhile; zero for
    /// a dry run).
    pub applied: u64,
}

/// Bulk actions touch failed or dead jobs only.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("bulk actions apply to failed or dead jobs, not {0}")]
    State(&'static str),
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Retries or discards every `state` job of a queue that matches `filter` (a dry run only
/// counts them). Runs through the whole queue: meant for a few hundred thousand jobs.
pub async fn bulk(
    queue: &JobQueue,
    db: &PgPool,
    name: QueueName,
    state: JobState,
    filter: &JobFilter,
    action: BulkAction,
    dry_run: bool,
) -> Result<BulkOutcome, BulkError> {
    if !matches!(state, JobState::Failed | JobState::Dead) {
        return Err(BulkError::State(state.as_str()));
    }
    // Gather first, then act: acting while reading would move the positions read.
    let mut ids: Vec<Uuid> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let (jobs, next) = page(
            queue,
            db,
            name,
            Some(state),
            filter,
            cursor.as_deref(),
            FILTER_WINDOW,
            false,
        )
        .await?;
        ids.extend(jobs.into_iter().map(|j| j.id).filter(|id| seen.insert(*id)));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let matched = ids.len() as u64;
    if dry_run || ids.is_empty() {
        return Ok(BulkOutcome {
            matched,
            applied: 0,
        });
    }
    let c = config(queue, name);
    let script: &Script = match (action, state) {
        (BulkAction::Retry, _) => &RETRY,
        (BulkAction::Discard, JobState::Failed) => &DISCARD,
        (BulkAction::Discard, _) => &PURGE,
    };
    let mut conn = queue.connection();
    script.prepare_invoke().load_async(&mut conn).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let reason = serde_json::json!({"Err": "discarded by an operator"}).to_string();
    let mut applied_ids = Vec::new();
    for chunk in ids.chunks(FILTER_WINDOW) {
        let mut pipe = redis::pipe();
        for id in chunk {
            let key = id.to_string();
            let mut invocation = script.prepare_invoke();
            match (action, state) {
                (BulkAction::Retry, _) => {
                    invocation
                        .key(c.active_jobs_list())
                        .key(c.scheduled_jobs_set())
                        .key(c.dead_jobs_set())
                        .key(meta_key(&c, &key))
                        .key(c.signal_list())
                        .arg(&key);
                }
                (BulkAction::Discard, JobState::Failed) => {
                    invocation
                        .key(c.active_jobs_list())
                        .key(c.scheduled_jobs_set())
                        .key(c.dead_jobs_set())
                        .key(meta_key(&c, &key))
                        .arg(&key)
                        .arg(now)
                        .arg(&reason);
                }
                (BulkAction::Discard, _) => {
                    invocation
                        .key(c.dead_jobs_set())
                        .key(c.job_data_hash())
                        .key(meta_key(&c, &key))
                        .arg(&key);
                }
            }
            pipe.invoke_script(&invocation);
        }
        let done: Vec<i64> = pipe.query_async(&mut conn).await?;
        applied_ids.extend(
            chunk
                .iter()
                .zip(done)
                .filter(|(_, done)| *done == 1)
                .map(|(id, _)| *id),
        );
    }
    for chunk in applied_ids.chunks(5_000) {
        match action {
            BulkAction::Retry => storage::outbox::reopen(db, chunk).await?,
            BulkAction::Discard => storage::outbox::finish_all(db, chunk, "discarded").await?,
        }
    }
    tracing::info!(
        queue = %name,
        state = state.as_str(),
        action = ?action,
        matched,
        applied = applied_ids.len(),
        "bulk action by an operator"
    );
    Ok(BulkOutcome {
        matched,
        applied: applied_ids.len() as u64,
    })
}

/// Listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("the cursor is not valid; start again without one")]
    BadCursor,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Postgres, asked whom the jobs are about (a member or business filter).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
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
    storage::outbox::reopen(db, &[id]).await?;
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
