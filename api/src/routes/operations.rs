//! `/admin/queues`, `/admin/jobs`, `/admin/schedules`: operators inspect, retry and discard
//! jobs and fire schedules. The same functions serve `krug jobs` and `krug schedule`.

use crate::{
    audit::{self, Change},
    auth::{Operator, Superadmin},
    envelope::{Envelope, Page},
    error::{ApiError, ApiResult},
    state::AppState,
};
use jobs::{
    QueueName,
    inspect::{self, Action, JobInfo, JobState, ListError},
    schedule,
};
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
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
    async fn queues(&self, _operator: Operator) -> ApiResult<Json<Envelope<QueueList>>> {
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

    /// Jobs of a queue, optionally of one state, with payload, attempts and last error.
    #[oai(path = "/jobs", method = "get")]
    async fn jobs(
        &self,
        _operator: Operator,
        queue: Query<String>,
        state: Query<Option<String>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<Page<JobView>>>> {
        let name = queue_name(&queue.0)?;
        let state: Option<JobState> = state
            .0
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|e: String| ApiError::unprocessable("invalid_state", e))
            })
            .transpose()?;
        let limit = crate::routes::page_limit(limit.0)?;
        let (jobs, next_cursor) = inspect::list(
            &self.state.queue,
            name,
            state,
            cursor.0.as_deref().filter(|c| !c.is_empty()),
            limit,
        )
        .await
        .map_err(|e| match e {
            ListError::BadCursor => ApiError::bad_request("invalid_cursor", e.to_string()),
            ListError::Redis(e) => redis_down(e),
        })?;
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
    ) -> ApiResult<Json<Envelope<JobView>>> {
        let name = queue_name(&queue.0)?;
        let job = inspect::job(&self.state.queue, name, id.0)
            .await
            .map_err(redis_down)?
            .ok_or_else(|| {
                ApiError::not_found("job_not_found", "This queue holds no job with this id.")
            })?;
        Ok(Json(Envelope::new(job_view(job))))
    }

    /// Run a failed or dead job again (its attempts start over).
    #[oai(path = "/jobs/:queue/:id/retry", method = "post")]
    async fn retry(
        &self,
        auth: Operator,
        queue: Path<String>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<JobView>>> {
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
        self.job(auth, queue, id).await
    }

    /// Take a pending, scheduled or failed job out of the queue for good.
    #[oai(path = "/jobs/:queue/:id/discard", method = "post")]
    async fn discard(
        &self,
        auth: Operator,
        queue: Path<String>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<JobView>>> {
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
        self.job(auth, queue, id).await
    }

    /// The schedules: cron, next fire time, last run and its outcome.
    #[oai(path = "/schedules", method = "get")]
    async fn schedules(&self, _operator: Operator) -> ApiResult<Json<Envelope<ScheduleList>>> {
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

    /// Enqueue a schedule's job now.
    #[oai(path = "/schedules/:name/trigger", method = "post")]
    async fn trigger(
        &self,
        superadmin: Superadmin,
        name: Path<String>,
    ) -> ApiResult<TriggerResponse> {
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
                Err(ApiError::not_found("schedule_not_found", e.to_string()))
            }
            Err(e) => Err(redis_down(e)),
        }
    }
}
