//! Which worker and scheduler processes are alive, what they run now, and how many jobs
//! the whole platform processed each minute: what operators see on the board's Processes
//! page and throughput chart (as Sidekiq Web's "Busy" and its dashboard graph).
//!
//! Every process keeps its own [`Activity`] in memory (jobs running now, jobs finished per
//! minute) and a heartbeat task writes it to Redis every few seconds: the process's own key,
//! which expires when the heartbeats stop, and per-minute counters that every process adds
//! to. Counting in memory and adding in batches keeps Redis out of each job's path.
//!
//! Keys (one hash tag, so one Redis Cluster slot): `{prefix.ops}:processes` (set of ids),
//! `{prefix.ops}:process:<id>` (JSON, expires), `{prefix.ops}:throughput:<unix minute>`
//! (hash `processed`, `failed`; expires after [`THROUGHPUT_KEEP`]).

use crate::{client::JobQueue, queue::QueueName};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Per-minute counts are kept this long (the board shows up to the last day).
pub const THROUGHPUT_KEEP: Duration = Duration::from_secs(26 * 3600);
/// A process publishes at most this many of its running jobs (the rest are counted).
const RUNNING_SHOWN: usize = 200;

/// What kind of process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessKind {
    Worker,
    Scheduler,
}

/// A job running now in some process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningJob {
    pub queue: String,
    pub job_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// A process as its last heartbeat described it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// `host-pid-tag`, unique per start.
    pub id: String,
    pub kind: ProcessKind,
    pub host: String,
    pub pid: u32,
    /// Queues a worker works on (empty for a scheduler).
    pub queues: Vec<String>,
    /// Schedules a scheduler fires (empty for a worker).
    #[serde(default)]
    pub schedules: Vec<String>,
    /// Jobs a worker runs at once, summed over its queues.
    pub concurrency: usize,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub heartbeat_at: OffsetDateTime,
    /// How many jobs run now (may exceed `running.len()`, which is capped).
    pub busy: usize,
    pub running: Vec<RunningJob>,
}

impl ProcessInfo {
    /// A worker process on this host working on `queues` with `concurrency` jobs at once.
    pub fn worker(queues: &[QueueName], concurrency: usize) -> Self {
        Self::new(
            ProcessKind::Worker,
            queues.iter().map(|q| q.as_str().to_owned()).collect(),
            Vec::new(),
            concurrency,
        )
    }

    /// A scheduler process firing `schedules`.
    pub fn scheduler(schedules: Vec<String>) -> Self {
        Self::new(ProcessKind::Scheduler, Vec::new(), schedules, 0)
    }

    fn new(
        kind: ProcessKind,
        queues: Vec<String>,
        schedules: Vec<String>,
        concurrency: usize,
    ) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            id: process_tag(),
            kind,
            host: host_name(),
            pid: std::process::id(),
            queues,
            schedules,
            concurrency,
            started_at: now,
            heartbeat_at: now,
            busy: 0,
            running: Vec::new(),
        }
    }
}

/// This machine's name (the container's, under Docker).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned())
}

/// `host-pid-tag`: unique per process start, so a restarted process is a new one.
pub fn process_tag() -> String {
    let tag = domain::codes::human_code(&mut rand::rng(), 4).to_lowercase();
    format!("{}-{}-{tag}", host_name(), std::process::id())
}

/// What this process is doing: jobs running now and jobs finished per minute since the
/// last heartbeat.
#[derive(Debug, Default)]
pub struct Activity {
    running: Mutex<HashMap<Uuid, RunningJob>>,
    /// Unix minute → (processed, failed), not yet added to Redis.
    minutes: Mutex<BTreeMap<i64, (u64, u64)>>,
}

impl Activity {
    /// A job starts; the guard records its end (as failed unless told otherwise, so a panic
    /// counts as a failure).
    pub fn start(&self, queue: QueueName, job_id: Uuid) -> RunningGuard<'_> {
        self.running.lock().expect("activity lock").insert(
            job_id,
            RunningJob {
                queue: queue.as_str().to_owned(),
                job_id,
                started_at: OffsetDateTime::now_utc(),
            },
        );
        RunningGuard {
            activity: self,
            job_id,
            failed: true,
        }
    }

    fn finish(&self, job_id: Uuid, failed: bool) {
        self.running.lock().expect("activity lock").remove(&job_id);
        let minute = OffsetDateTime::now_utc().unix_timestamp().div_euclid(60);
        let mut minutes = self.minutes.lock().expect("activity lock");
        let counts = minutes.entry(minute).or_default();
        counts.0 += 1;
        counts.1 += u64::from(failed);
    }

    fn running(&self) -> (usize, Vec<RunningJob>) {
        let running = self.running.lock().expect("activity lock");
        let mut shown: Vec<RunningJob> = running.values().cloned().collect();
        shown.sort_by_key(|j| j.started_at);
        shown.truncate(RUNNING_SHOWN);
        (running.len(), shown)
    }

    fn take_minutes(&self) -> BTreeMap<i64, (u64, u64)> {
        std::mem::take(&mut *self.minutes.lock().expect("activity lock"))
    }

    /// Counts that could not be written go back, to be written with the next heartbeat
    /// (those older than what is kept are dropped).
    fn put_back(&self, counts: BTreeMap<i64, (u64, u64)>) {
        let oldest = OffsetDateTime::now_utc().unix_timestamp().div_euclid(60)
            - (THROUGHPUT_KEEP.as_secs() / 60) as i64;
        let mut minutes = self.minutes.lock().expect("activity lock");
        for (minute, (processed, failed)) in counts.into_iter().filter(|(m, _)| *m >= oldest) {
            let entry = minutes.entry(minute).or_default();
            entry.0 += processed;
            entry.1 += failed;
        }
    }
}

/// Ends a running job's record when dropped.
pub struct RunningGuard<'a> {
    activity: &'a Activity,
    job_id: Uuid,
    failed: bool,
}

impl RunningGuard<'_> {
    /// The job ended well.
    pub fn succeeded(mut self) {
        self.failed = false;
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.activity.finish(self.job_id, self.failed);
    }
}

fn namespace(prefix: &str) -> String {
    format!("{{{prefix}.ops}}")
}

fn processes_key(prefix: &str) -> String {
    format!("{}:processes", namespace(prefix))
}

fn process_key(prefix: &str, id: &str) -> String {
    format!("{}:process:{id}", namespace(prefix))
}

fn throughput_key(prefix: &str, minute: i64) -> String {
    format!("{}:throughput:{minute}", namespace(prefix))
}

/// Writes `info` (with `activity`) to Redis every `interval` until `shutdown`, then
/// writes the last counts and removes the process. Its key expires after `ttl` without a
/// heartbeat, so a killed process leaves the list on its own.
pub async fn heartbeat(
    queue: JobQueue,
    activity: std::sync::Arc<Activity>,
    mut info: ProcessInfo,
    interval: Duration,
    ttl: Duration,
    shutdown: CancellationToken,
) {
    loop {
        info.heartbeat_at = OffsetDateTime::now_utc();
        (info.busy, info.running) = activity.running();
        let counts = activity.take_minutes();
        if let Err(e) = beat(&queue, &info, &counts, ttl).await {
            tracing::debug!(error = %e, "heartbeat not written");
            activity.put_back(counts);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    let counts = activity.take_minutes();
    if let Err(e) = add_counts(&queue, &counts).await {
        tracing::warn!(error = %e, "the last throughput counts were not written");
    }
    let prefix = queue.prefix().to_owned();
    let removed: redis::RedisResult<()> = redis::pipe()
        .srem(processes_key(&prefix), &info.id)
        .del(process_key(&prefix, &info.id))
        .query_async(&mut queue.connection())
        .await;
    if let Err(e) = removed {
        tracing::debug!(error = %e, "process not removed; its key expires");
    }
}

async fn beat(
    queue: &JobQueue,
    info: &ProcessInfo,
    counts: &BTreeMap<i64, (u64, u64)>,
    ttl: Duration,
) -> redis::RedisResult<()> {
    let prefix = queue.prefix();
    let json = serde_json::to_string(info).expect("process info serializes");
    let mut pipe = redis::pipe();
    pipe.sadd(processes_key(prefix), &info.id).ignore();
    pipe.set_ex(process_key(prefix, &info.id), json, ttl.as_secs().max(1))
        .ignore();
    counts_into(&mut pipe, prefix, counts);
    pipe.query_async(&mut queue.connection()).await
}

async fn add_counts(
    queue: &JobQueue,
    counts: &BTreeMap<i64, (u64, u64)>,
) -> redis::RedisResult<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    counts_into(&mut pipe, queue.prefix(), counts);
    pipe.query_async(&mut queue.connection()).await
}

fn counts_into(pipe: &mut redis::Pipeline, prefix: &str, counts: &BTreeMap<i64, (u64, u64)>) {
    for (minute, (processed, failed)) in counts {
        let key = throughput_key(prefix, *minute);
        pipe.hincr(&key, "processed", *processed).ignore();
        if *failed > 0 {
            pipe.hincr(&key, "failed", *failed).ignore();
        }
        pipe.expire(&key, THROUGHPUT_KEEP.as_secs() as i64).ignore();
    }
}

/// Every live process, workers first, then by host and start time. Ids whose key expired
/// (the process stopped beating) are dropped from the set on the way.
pub async fn list(queue: &JobQueue) -> redis::RedisResult<Vec<ProcessInfo>> {
    let prefix = queue.prefix();
    let mut conn = queue.connection();
    let ids: Vec<String> = conn.smembers(processes_key(prefix)).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| process_key(prefix, id)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
    let mut gone = Vec::new();
    let mut out = Vec::new();
    for (id, value) in ids.iter().zip(values) {
        match value.and_then(|v| serde_json::from_str::<ProcessInfo>(&v).ok()) {
            Some(info) => out.push(info),
            None => gone.push(id.clone()),
        }
    }
    if !gone.is_empty() {
        let _: () = conn.srem(processes_key(prefix), gone).await?;
    }
    out.sort_by(|a, b| {
        (a.kind != ProcessKind::Worker, &a.host, a.started_at).cmp(&(
            b.kind != ProcessKind::Worker,
            &b.host,
            b.started_at,
        ))
    });
    Ok(out)
}

/// Jobs processed and failed in one minute, by all processes together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCount {
    /// Start of the minute.
    pub minute: OffsetDateTime,
    pub processed: u64,
    pub failed: u64,
}

/// The last `minutes` minutes, oldest first, the current (unfinished) minute last.
pub async fn throughput(queue: &JobQueue, minutes: u32) -> redis::RedisResult<Vec<MinuteCount>> {
    let now = OffsetDateTime::now_utc().unix_timestamp().div_euclid(60);
    let range: Vec<i64> = (now - i64::from(minutes.max(1)) + 1..=now).collect();
    let mut pipe = redis::pipe();
    for minute in &range {
        pipe.cmd("HMGET")
            .arg(throughput_key(queue.prefix(), *minute))
            .arg("processed")
            .arg("failed");
    }
    let values: Vec<(Option<u64>, Option<u64>)> = pipe.query_async(&mut queue.connection()).await?;
    Ok(range
        .into_iter()
        .zip(values)
        .map(|(minute, (processed, failed))| MinuteCount {
            minute: OffsetDateTime::from_unix_timestamp(minute * 60)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            processed: processed.unwrap_or(0),
            failed: failed.unwrap_or(0),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_is_counted_in_its_minute_and_leaves_the_running_list() {
        let activity = Activity::default();
        let ok = Uuid::now_v7();
        let bad = Uuid::now_v7();
        let guard = activity.start(QueueName::QrScan, ok);
        let failing = activity.start(QueueName::Notify, bad);
        assert_eq!(activity.running().0, 2);
        guard.succeeded();
        drop(failing);
        assert_eq!(activity.running().0, 0);
        let counts = activity.take_minutes();
        let total: (u64, u64) = counts
            .values()
            .fold((0, 0), |acc, c| (acc.0 + c.0, acc.1 + c.1));
        assert_eq!(total, (2, 1), "two processed, one of them failed");
        assert!(activity.take_minutes().is_empty(), "taken once");
        activity.put_back(counts);
        assert_eq!(
            activity.take_minutes().values().map(|c| c.0).sum::<u64>(),
            2
        );
    }
}
