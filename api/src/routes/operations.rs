//! `/admin/queues`, `/admin/jobs`, `/admin/schedules`: operators inspect, retry and discard
//! jobs and fire schedules. The same functions serve `krug jobs` and `krug schedule`.

use crate::wire::Text;
use crate::{
    audit::{self, Change},
    auth::{Operator, Superadmin},
    envelope::{Envelope, Page},
    error::{
        ApiError, ApiResult, BAD_REQUEST, CONFLICT, JSON_BODY, NOT_FOUND, SIGNED_IN, UNPROCESSABLE,
    },
    state::AppState,
};
use jobs::{
    QueueName,
    inspect::{self, Action, BulkAction, BulkError, JobFilter, JobInfo, JobState, ListError},
    processes::{self, ProcessKind},
    schedule,
};
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: queues, jobs and schedules.
    Operations,
}

pub struct OperationsApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct QueueView {
    pub queue: String,
    pub pending: u64,
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
    /// How long the oldest pending job has waited, seconds.
    #[oai(nullable)]
    pub oldest_pending_age_s: Option<u64>,
}

#[derive(Debug, Object)]
pub struct QueueList {
    pub items: Vec<QueueView>,
}

#[derive(Debug, Object)]
pub struct JobView {
    pub id: Uuid,
    pub queue: String,
    /// `pending`, `scheduled`, `running`, `done`, `failed` or `dead`.
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
    #[oai(nullable)]
    pub last_error: Option<String>,
    /// Personal data masked.
    pub payload: Value,
    #[oai(nullable)]
    pub enqueued_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub started_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub finished_at: Option<OffsetDateTime>,
}

fn job_view(job: JobInfo) -> JobView {
    JobView {
        id: job.id,
        queue: job.queue.as_str().to_owned(),
        state: job.state.as_str().to_owned(),
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        last_error: job.last_error,
        payload: job.payload,
        enqueued_at: job.enqueued_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
    }
}

#[derive(Debug, Object)]
pub struct ScheduleView {
    pub name: String,
    /// Seconds field first.
    pub cron: String,
    pub queue: String,
    #[oai(nullable)]
    pub next_fire_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub last_run_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub last_job_id: Option<Uuid>,
    /// The last run's job state; `unknown` once the queue no longer holds it.
    #[oai(nullable)]
    pub last_outcome: Option<String>,
}

#[derive(Debug, Object)]
pub struct ScheduleList {
    pub items: Vec<ScheduleView>,
}

#[derive(Debug, Object)]
pub struct Triggered {
    pub job_id: Uuid,
}

/// A job running now in a worker process.
#[derive(Debug, Object)]
pub struct RunningJobView {
    pub queue: String,
    pub job_id: Uuid,
    pub started_at: OffsetDateTime,
}

/// A worker or scheduler process, from its last heartbeat in Redis.
#[derive(Debug, Object)]
pub struct ProcessView {
    /// `host-pid-tag`, unique per start.
    pub id: String,
    /// `worker` or `scheduler`.
    pub kind: String,
    pub host: String,
    pub pid: u32,
    /// Queues a worker works on.
    pub queues: Vec<String>,
    /// Schedules a scheduler fires.
    pub schedules: Vec<String>,
    /// Jobs a worker runs at once, over all its queues.
    pub concurrency: u64,
    pub started_at: OffsetDateTime,
    pub heartbeat_at: OffsetDateTime,
    /// Seconds since the last heartbeat.
    pub heartbeat_age_s: i64,
    /// Jobs running now.
    pub busy: u64,
    /// The jobs running now (the longest-running first; at most 200).
    pub running: Vec<RunningJobView>,
}

#[derive(Debug, Object)]
pub struct ProcessList {
    pub items: Vec<ProcessView>,
}

/// Jobs finished in one minute by every worker process together.
#[derive(Debug, Object)]
pub struct MinuteView {
    /// Start of the minute.
    pub minute: OffsetDateTime,
    /// Jobs that ran to an end (done, retry or dead).
    pub processed: u64,
    /// Of those, the ones that failed (retried or dead).
    pub failed: u64,
}

#[derive(Debug, Object)]
pub struct Throughput {
    /// Oldest first; the last is the current, unfinished minute.
    pub items: Vec<MinuteView>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum BulkActionName {
    Retry,
    Discard,
}

/// Which jobs, and what to do with them.
#[derive(Debug, Object)]
pub struct BulkRequest {
    pub queue: String,
    pub action: BulkActionName,
    /// `dead` (default) or `failed`.
    #[oai(nullable)]
    pub state: Option<String>,
    #[oai(nullable)]
    pub member_id: Option<Uuid>,
    #[oai(nullable)]
    pub business_id: Option<Uuid>,
    /// Part of the last error, any case.
    #[oai(nullable, validator(max_length = 200))]
    pub error: Option<Text>,
    /// Only count the jobs that match (default false).
    #[oai(nullable)]
    pub dry_run: Option<bool>,
}

#[derive(Debug, Object)]
pub struct BulkResult {
    /// Jobs that matched.
    pub matched: u64,
    /// Jobs retried or discarded (0 in a dry run; fewer than matched if some moved on).
    pub applied: u64,
    pub dry_run: bool,
}

#[derive(ApiResponse)]
pub enum TriggerResponse {
    /// The schedule's job is queued.
    #[oai(status = 202)]
    Accepted(Json<Envelope<Triggered>>),
}

fn queue_name(raw: &str) -> Result<QueueName, ApiError> {
    raw.parse().map_err(|e: jobs::queue::UnknownQueue| {
        ApiError::not_found("queue_not_found", e.to_string())
    })
}

fn redis_down(error: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %error, "queue store unavailable");
    ApiError::queue_unavailable()
}

fn job_state(raw: Option<String>) -> Result<Option<JobState>, ApiError> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e: String| ApiError::unprocessable("invalid_state", e))
        })
        .transpose()
}

fn list_error(error: ListError) -> ApiError {
    match error {
        ListError::BadCursor => ApiError::bad_request("invalid_cursor", error.to_string()),
        ListError::Redis(e) => redis_down(e),
        ListError::Database(e) => e.into(),
    }
}

/// A job of `queue`, or 404 `job_not_found`.
async fn found_job(state: &AppState, queue: QueueName, id: Uuid) -> Result<JobView, ApiError> {
    let job = inspect::job(&state.queue, queue, id)
        .await
        .map_err(redis_down)?
        .ok_or_else(|| {
            ApiError::not_found("job_not_found", "This queue holds no job with this id.")
        })?;
    Ok(job_view(job))
}

fn action_result(action: Action, what: &str) -> Result<(), ApiError> {
    match action {
        Action::Done => Ok(()),
        Action::NotFound => Err(ApiError::not_found(
            "job_not_found",
            "This queue holds no job with this id.",
        )),
        Action::NotAllowed(state) => Err(ApiError::conflict(
            "job_state_conflict",
            format!("A {} job cannot be {what}.", state.as_str()),
        )),
    }
}

#[OpenApi(prefix_path = "/admin", tag = "Tag::Operations")]
impl OperationsApi {
    /// Every queue with its jobs counted by state.
    #[oai(path = "/queues", method = "get")]
    async fn queues(&self, _operator: Operator) -> ApiResult<Json<Envelope<QueueList>>, SIGNED_IN> {
        let mut items = Vec::new();
        for name in QueueName::ALL {
            let c = inspect::queue_counts(&self.state.queue, name)
                .await
                .map_err(redis_down)?;
            items.push(QueueView {
                queue: name.as_str().to_owned(),
                pending: c.pending,
                scheduled: c.scheduled,
                running: c.running,
                done: c.done,
                failed: c.failed,
                dead: c.dead,
                oldest_pending_age_s: c.oldest_pending_age_s,
            });
        }
        Ok(Json(Envelope::new(QueueList { items })))
    }

    /// Jobs of a queue, optionally of one state, with payload, attempts and last error;
    /// optionally only those about one member or business (`member_id`, `business_id`:
    /// named in the payload, or owning the scan or transaction it names) or whose last error
    /// contains `error`. A filtered page looks at a few thousand jobs at most: it may come
    /// back short, with a `next_cursor` to read on.
    #[oai(path = "/jobs", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn jobs(
        &self,
        _operator: Operator,
        queue: Query<String>,
        state: Query<Option<String>>,
        member_id: Query<Option<Uuid>>,
        business_id: Query<Option<Uuid>>,
        error: Query<Option<String>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<
        Json<Envelope<Page<JobView>>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | UNPROCESSABLE },
    > {
        let name = queue_name(&queue.0)?;
        let state = job_state(state.0)?;
        let filter = JobFilter {
            member_id: member_id.0,
            business_id: business_id.0,
            error: error.0.filter(|e| !e.trim().is_empty()),
        };
        let limit = crate::routes::page_limit(limit.0)?;
        let (jobs, next_cursor) = inspect::list(
            &self.state.queue,
            &self.state.db,
            name,
            state,
            &filter,
            cursor.0.as_deref().filter(|c| !c.is_empty()),
            limit,
        )
        .await
        .map_err(list_error)?;
        Ok(Json(Envelope::new(Page {
            items: jobs.into_iter().map(job_view).collect(),
            next_cursor,
        })))
    }

    /// One job.
    #[oai(path = "/jobs/:queue/:id", method = "get")]
    async fn job(
        &self,
        _operator: Operator,
        queue: Path<String>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<JobView>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND }> {
        let name = queue_name(&queue.0)?;
        Ok(Json(Envelope::new(
            found_job(&self.state, name, id.0).await?,
        )))
    }

    /// Run a failed or dead job again (its attempts start over).
    #[oai(path = "/jobs/:queue/:id/retry", method = "post")]
    async fn retry(
        &self,
        auth: Operator,
        queue: Path<String>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<JobView>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT }>
    {
        let name = queue_name(&queue.0)?;
        let action = inspect::retry(&self.state.queue, &self.state.db, name, id.0)
            .await
            .map_err(redis_down)?;
        action_result(action, "retried")?;
        // The queue is in Redis: the entry follows the action rather than sharing its
        // transaction.
        audit::record(
            &self.state.db,
            auth.user_id(),
            Change::new("job.retry", "job", id.0).after_value(json!({"queue": name.as_str()})),
        )
        .await?;
        Ok(Json(Envelope::new(
            found_job(&self.state, name, id.0).await?,
        )))
    }

    /// Take a pending, scheduled or failed job out of the queue for good.
    #[oai(path = "/jobs/:queue/:id/discard", method = "post")]
    async fn discard(
        &self,
        auth: Operator,
        queue: Path<String>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<JobView>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT }>
    {
        let name = queue_name(&queue.0)?;
        let action = inspect::discard(&self.state.queue, &self.state.db, name, id.0)
            .await
            .map_err(redis_down)?;
        action_result(action, "discarded")?;
        audit::record(
            &self.state.db,
            auth.user_id(),
            Change::new("job.discard", "job", id.0).after_value(json!({"queue": name.as_str()})),
        )
        .await?;
        Ok(Json(Envelope::new(
            found_job(&self.state, name, id.0).await?,
        )))
    }

    /// Retry or discard, in one action, every failed or dead job of a queue that matches a
    /// filter (as `GET /admin/jobs` filters). `dry_run` only counts them, for the operator
    /// to confirm. Discarding a failed job makes it dead; discarding a dead job deletes it
    /// from the queue (its outbox record stays, closed as discarded).
    #[oai(path = "/jobs/bulk", method = "post")]
    async fn bulk(
        &self,
        operator: Operator,
        body: Json<BulkRequest>,
    ) -> ApiResult<Json<Envelope<BulkResult>>, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }>
    {
        let body = body.0;
        let name = queue_name(&body.queue)?;
        let state = job_state(body.state)?.unwrap_or(JobState::Dead);
        let filter = JobFilter {
            member_id: body.member_id,
            business_id: body.business_id,
            error: body.error.map(|e| e.0).filter(|e| !e.trim().is_empty()),
        };
        let action = match body.action {
            BulkActionName::Retry => BulkAction::Retry,
            BulkActionName::Discard => BulkAction::Discard,
        };
        let dry_run = body.dry_run.unwrap_or(false);
        let outcome = inspect::bulk(
            &self.state.queue,
            &self.state.db,
            name,
            state,
            &filter,
            action,
            dry_run,
        )
        .await
        .map_err(|e| match e {
            BulkError::State(_) => ApiError::unprocessable("invalid_state", e.to_string()),
            BulkError::List(e) => list_error(e),
            BulkError::Redis(e) => redis_down(e),
            BulkError::Database(e) => e.into(),
        })?;
        if !dry_run {
            // One entry for the whole action: the filter says which jobs, the counts how many.
            let action_name = match action {
                BulkAction::Retry => "job.bulk_retry",
                BulkAction::Discard => "job.bulk_discard",
            };
            audit::record(
                &self.state.db,
                operator.user_id(),
                Change::new(action_name, "queue", name.as_str()).after_value(json!({
                    "state": state.as_str(),
                    "member_id": filter.member_id,
                    "business_id": filter.business_id,
                    "error": filter.error,
                    "matched": outcome.matched,
                    "applied": outcome.applied,
                })),
            )
            .await?;
        }
        Ok(Json(Envelope::new(BulkResult {
            matched: outcome.matched,
            applied: outcome.applied,
            dry_run,
        })))
    }

    /// The schedules: cron, next fire time, last run and its outcome.
    #[oai(path = "/schedules", method = "get")]
    async fn schedules(
        &self,
        _operator: Operator,
    ) -> ApiResult<Json<Envelope<ScheduleList>>, SIGNED_IN> {
        let items = schedule::list(&self.state.queue, &self.state.db, self.state.timezone)
            .await
            .map_err(redis_down)?
            .into_iter()
            .map(|s| ScheduleView {
                name: s.name.to_owned(),
                cron: s.cron,
                queue: s.queue.as_str().to_owned(),
                next_fire_at: s.next_fire_at,
                last_run_at: s.last_run_at,
                last_job_id: s.last_job_id,
                last_outcome: s.last_outcome,
            })
            .collect();
        Ok(Json(Envelope::new(ScheduleList { items })))
    }

    /// Every live worker and scheduler process: host, queues, concurrency, heartbeat and
    /// the jobs it runs now (from the processes' heartbeats in Redis).
    #[oai(path = "/processes", method = "get")]
    async fn processes(
        &self,
        _operator: Operator,
    ) -> ApiResult<Json<Envelope<ProcessList>>, SIGNED_IN> {
        let now = OffsetDateTime::now_utc();
        let items = processes::list(&self.state.queue)
            .await
            .map_err(redis_down)?
            .into_iter()
            .map(|p| ProcessView {
                heartbeat_age_s: (now - p.heartbeat_at).whole_seconds().max(0),
                kind: match p.kind {
                    ProcessKind::Worker => "worker",
                    ProcessKind::Scheduler => "scheduler",
                }
                .to_owned(),
                id: p.id,
                host: p.host,
                pid: p.pid,
                queues: p.queues,
                schedules: p.schedules,
                concurrency: p.concurrency as u64,
                started_at: p.started_at,
                heartbeat_at: p.heartbeat_at,
                busy: p.busy as u64,
                running: p
                    .running
                    .into_iter()
                    .map(|j| RunningJobView {
                        queue: j.queue,
                        job_id: j.job_id,
                        started_at: j.started_at,
                    })
                    .collect(),
            })
            .collect();
        Ok(Json(Envelope::new(ProcessList { items })))
    }

    /// Jobs processed and failed per minute over the last `minutes` (default 180, at most
    /// 1440), summed over every worker process.
    #[oai(path = "/throughput", method = "get")]
    async fn throughput(
        &self,
        _operator: Operator,
        minutes: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<Throughput>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }> {
        let minutes = match minutes.0.unwrap_or(180) {
            n @ 1..=1440 => n,
            _ => {
                return Err(ApiError::unprocessable(
                    "invalid_minutes",
                    "minutes must be between 1 and 1440",
                )
                .into());
            }
        };
        let items = processes::throughput(&self.state.queue, minutes)
            .await
            .map_err(redis_down)?
            .into_iter()
            .map(|m| MinuteView {
                minute: m.minute,
                processed: m.processed,
                failed: m.failed,
            })
            .collect();
        Ok(Json(Envelope::new(Throughput { items })))
    }

    /// Enqueue a schedule's job now.
    #[oai(path = "/schedules/:name/trigger", method = "post")]
    async fn trigger(
        &self,
        superadmin: Superadmin,
        name: Path<String>,
    ) -> ApiResult<TriggerResponse, { SIGNED_IN | NOT_FOUND }> {
        match schedule::trigger(&self.state.queue, &self.state.db, &name.0).await {
            Ok(job_id) => {
                audit::record(
                    &self.state.db,
                    superadmin.user_id(),
                    Change::new("schedule.trigger", "schedule", &name.0)
                        .after_value(json!({"job_id": job_id})),
                )
                .await?;
                Ok(TriggerResponse::Accepted(Json(Envelope::new(Triggered {
                    job_id,
                }))))
            }
            Err(e) if e.is::<schedule::UnknownSchedule>() => {
                Err(ApiError::not_found("schedule_not_found", e.to_string()).into())
            }
            Err(e) => Err(redis_down(e).into()),
        }
    }
}
