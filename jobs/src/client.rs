//! Pushing jobs to Redis.

use crate::queue::{Job, QueueName};
use apalis_core::task::{builder::TaskBuilder, metadata::MetadataStore, task_id::TaskId};
use apalis_redis::{Config, RedisTask};
use std::collections::HashMap;
use storage::redis_target::RedisConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// The meta field with the push time (unix seconds).
pub const ENQUEUED_AT: &str = "enqueued_at";
/// The meta field that marks a job relayed from the Postgres outbox: its outcome is written
/// back there (other jobs skip that round trip).
pub const FROM_OUTBOX: &str = "outbox";

/// Pushes larger than this are split: one huge Lua call blocks Redis and times out
/// (measured here: 100 000 jobs in one push failed with
/// `PushError(Database(timed out))`).
const PUSH_BATCH: usize = 500;

/// The Redis side of the queues could not take the job.
#[derive(Debug, thiserror::Error)]
#[error("the job queue is unavailable: {0}")]
pub struct QueueError(#[from] pub apalis_redis::Error);

/// One job ready to push: its id, queue payload and options.
#[derive(Debug, Clone)]
pub struct RawJob {
    pub id: Uuid,
    pub payload: Vec<u8>,
    pub max_attempts: u32,
    pub run_at: Option<OffsetDateTime>,
    /// Pushing twice with the same key enqueues once (scheduler ticks).
    pub idempotency_key: Option<String>,
    /// Relayed from the outbox (see [`FROM_OUTBOX`]).
    pub from_outbox: bool,
}

/// The producer side of every queue.
#[derive(Clone)]
pub struct JobQueue {
    conn: RedisConnection,
    prefix: String,
}

impl JobQueue {
    /// `prefix` starts every Redis key (`KRUG_QUEUE_PREFIX`).
    pub fn new(conn: RedisConnection, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// The Redis namespace of a queue: `{krug.qr_scan}`. The braces are a Redis Cluster hash
    /// tag, so all keys of one queue live in one slot (their Lua scripts touch several).
    pub fn namespace(prefix: &str, queue: QueueName) -> String {
        format!("{{{prefix}.{}}}", queue.as_str())
    }

    /// The apalis-redis configuration of a queue.
    pub fn config(&self, queue: QueueName) -> Config {
        Config::default()
            .queue(Self::namespace(&self.prefix, queue))
            .batch_size(queue.concurrency())
            // fetch_next (patched) records who runs a task and since when; a lease round trip
            // per batch would only repeat that. Per-task pub/sub events have no listener.
            .lock_tasks(false)
            .emit_events(false)
            // Keys of retried tasks expire: a tick key only has to outlive the tick.
            .idempotency_ttl(Some(std::time::Duration::from_secs(7 * 24 * 3600)))
    }

    /// Pushes one typed job with its id.
    pub async fn push<J: Job>(&self, id: Uuid, job: &J) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(job).expect("job payloads serialize");
        self.push_raw(
            J::QUEUE,
            &[RawJob {
                id,
                payload,
                max_attempts: J::QUEUE.max_attempts(),
                run_at: None,
                idempotency_key: None,
                from_outbox: false,
            }],
        )
        .await
    }

    /// Pushes jobs in batches. A job whose id Redis already holds is left as it is, so
    /// pushing again (a relay retried by `reconcile`) never duplicates it.
    pub async fn push_raw(&self, queue: QueueName, jobs: &[RawJob]) -> Result<(), QueueError> {
        let config = self.config(queue);
        let mut conn = self.conn.clone();
        for chunk in jobs.chunks(PUSH_BATCH) {
            let tasks: Vec<RedisTask> = chunk.iter().map(to_task).collect();
            apalis_redis::queries::push_tasks(&mut conn, &config, &tasks).await?;
        }
        Ok(())
    }
}

fn to_task(job: &RawJob) -> RedisTask {
    // Kept in the job's meta hash, for operators (apalis-redis records no enqueue time).
    let mut fields = HashMap::from([(
        ENQUEUED_AT.to_owned(),
        OffsetDateTime::now_utc().unix_timestamp().to_string(),
    )]);
    if job.from_outbox {
        fields.insert(FROM_OUTBOX.to_owned(), "1".to_owned());
    }
    let meta = MetadataStore::from_map(fields);
    let mut builder = TaskBuilder::new(job.payload.clone())
        .task_id(TaskId::from_uuid(job.id))
        .with_metadata(meta)
        .max_attempts(job.max_attempts as usize);
    if let Some(run_at) = job.run_at {
        builder = builder.run_at_timestamp(run_at.unix_timestamp().max(0) as u64);
    }
    if let Some(key) = &job.idempotency_key {
        builder = builder.idempotency_key(key);
    }
    builder.build()
}
