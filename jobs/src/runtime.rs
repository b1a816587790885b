//! `krug worker`: one supervised apalis worker per queue.
//!
//! - Worker names are unique per process and per restart (`qr_scan@host-pid-3-x7k2`): two
//!   processes never share a heartbeat, so a killed worker's jobs are re-enqueued by the
//!   others once its heartbeat is stale (apalis issue 504, fixed upstream by PR 507).
//! - A worker whose backend fails (Redis gone) is rebuilt after a pause, not left dead.
//! - Idle workers wake on Redis pub/sub and also poll, so a lost listener costs latency only.
//! - Every job runs through `execute`, which times it, records its outcome in the outbox
//!   and maps `JobError` onto apalis: `Retry` → retried with backoff, `Permanent` → dead.

use crate::{
    env::Env,
    handlers::{
        analytics::RfmSnapshot, bonus::CalcBonus, crm::PollCrm, expire::Expire,
        media::ProcessMedia, notify_job::NotifyJob, otp::SendOtp, payments::SettlePayments,
        promo::IssueCoupons, reconcile::Reconcile, retention::Purge, scan::ScanQr,
        settlement::CloseSettlement, tiers::ReviewTiers,
    },
    metrics::{JOB_DURATION, JOBS_PROCESSED},
    processes::{self, ProcessInfo},
    queue::{JobError, QueueName},
    run::{JobCtx, RunJob},
    signals::{self, Wakeup},
};
use apalis::layers::WorkerBuilderExt;
use apalis_core::{
    backend::ext::poll_strategy::{PollWith, Strategy},
    error::{AbortError, BoxDynError, WorkerError},
    task::{attempt::Attempt, data::Data, metadata::MetadataStore, task_id::TaskId},
    worker::{builder::WorkerBuilder, ext::parallelize::ParallelizeExt},
};
use apalis_redis::RedisStorage;
use futures::future::BoxFuture;
use std::{collections::HashMap, sync::Arc, time::Duration};
use storage::redis_target::RedisConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a worker process runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queues: Vec<QueueName>,
    /// For the pub/sub listener.
    pub redis_url: String,
    /// How often a worker proves it is alive.
    pub heartbeat: Duration,
    /// Missed heartbeats after which a worker's jobs go back to the queue.
    pub missed_heartbeats: usize,
    /// How often an idle worker polls when no push notification arrives.
    pub idle_poll: Duration,
    /// Jobs run at once per queue, instead of each queue's own setting.
    pub concurrency: Option<usize>,
}

impl WorkerOptions {
    pub fn new(redis_url: impl Into<String>, queues: Vec<QueueName>) -> Self {
        Self {
            queues,
            redis_url: redis_url.into(),
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 6,
            idle_poll: Duration::from_millis(500),
            concurrency: None,
        }
    }
}

/// Runs workers for `options.queues` until `shutdown` is cancelled, then lets running jobs
/// finish.
pub async fn run(env: Arc<Env>, options: WorkerOptions, shutdown: CancellationToken) {
    crate::metrics::initialise_worker(&options.queues);
    let mut wakeups = HashMap::new();
    let mut supervisors = tokio::task::JoinSet::new();
    for queue in options.queues.iter().copied() {
        let wakeup = Wakeup::default();
        wakeups.insert(
            crate::JobQueue::namespace(env.queue.prefix(), queue),
            wakeup.clone(),
        );
        supervisors.spawn(supervise(
            queue,
            env.clone(),
            wakeup,
            options.clone(),
            shutdown.clone(),
        ));
    }
    let listener = signals::spawn_listener(options.redis_url.clone(), wakeups);
    let concurrency = options
        .queues
        .iter()
        .map(|q| options.concurrency.unwrap_or(q.concurrency()).max(1))
        .sum();
    // Its own token: the heartbeat stops after the workers, with their last counts.
    let heartbeat_stop = CancellationToken::new();
    let heartbeat = tokio::spawn(processes::heartbeat(
        env.queue.clone(),
        env.activity.clone(),
        ProcessInfo::worker(&options.queues, concurrency),
        options.heartbeat,
        options.heartbeat * options.missed_heartbeats.max(1) as u32,
        heartbeat_stop.clone(),
    ));
    tracing::info!(queues = ?options.queues.iter().map(|q| q.as_str()).collect::<Vec<_>>(), "worker started");
    while supervisors.join_next().await.is_some() {}
    listener.abort();
    env.finisher.flush().await;
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    tracing::info!("worker stopped");
}

async fn supervise(
    queue: QueueName,
    env: Arc<Env>,
    wakeup: Wakeup,
    options: WorkerOptions,
    shutdown: CancellationToken,
) {
    let mut incarnation = 0u32;
    loop {
        incarnation += 1;
        let name = worker_name(queue, incarnation);
        let (env, wakeup, options, shutdown) = (&env, &wakeup, &options, &shutdown);
        let worker = match queue {
            QueueName::OtpSend => run_queue::<SendOtp>(env, wakeup, options, name, shutdown),
            QueueName::QrScan => run_queue::<ScanQr>(env, wakeup, options, name, shutdown),
            QueueName::CrmPoll => run_queue::<PollCrm>(env, wakeup, options, name, shutdown),
            QueueName::BonusCalc => run_queue::<CalcBonus>(env, wakeup, options, name, shutdown),
            QueueName::RfmSnapshot => {
                run_queue::<RfmSnapshot>(env, wakeup, options, name, shutdown)
            }
            QueueName::TierReview => run_queue::<ReviewTiers>(env, wakeup, options, name, shutdown),
            QueueName::Expire => run_queue::<Expire>(env, wakeup, options, name, shutdown),
            QueueName::Reconcile => run_queue::<Reconcile>(env, wakeup, options, name, shutdown),
            QueueName::Retention => run_queue::<Purge>(env, wakeup, options, name, shutdown),
            QueueName::Media => run_queue::<ProcessMedia>(env, wakeup, options, name, shutdown),
            QueueName::Settlement => {
                run_queue::<CloseSettlement>(env, wakeup, options, name, shutdown)
            }
            QueueName::Payments => {
                run_queue::<SettlePayments>(env, wakeup, options, name, shutdown)
            }
            QueueName::Notify => run_queue::<NotifyJob>(env, wakeup, options, name, shutdown),
            QueueName::CrossPromo => {
                run_queue::<IssueCoupons>(env, wakeup, options, name, shutdown)
            }
        };
        let result = worker.await;
        if shutdown.is_cancelled() {
            return;
        }
        match result {
            Ok(()) => tracing::warn!(queue = %queue, "worker ended; starting it again"),
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "worker failed; starting it again")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn worker_name(queue: QueueName, incarnation: u32) -> String {
    let tag = domain::codes::human_code(&mut rand::rng(), 4).to_lowercase();
    format!(
        "{queue}@{}-{}-{incarnation}-{tag}",
        processes::host_name(),
        std::process::id()
    )
}

/// Runs the worker of job type `J` alone (the benchmark's no-op jobs), until `shutdown`.
pub async fn run_single<J: RunJob>(
    env: Arc<Env>,
    options: WorkerOptions,
    shutdown: CancellationToken,
) {
    let wakeup = Wakeup::default();
    let namespace = crate::JobQueue::namespace(env.queue.prefix(), J::QUEUE);
    let listener = signals::spawn_listener(
        options.redis_url.clone(),
        HashMap::from([(namespace, wakeup.clone())]),
    );
    let name = worker_name(J::QUEUE, 1);
    if let Err(e) = run_queue::<J>(&env, &wakeup, &options, name, &shutdown).await {
        tracing::warn!(error = %e, "worker failed");
    }
    listener.abort();
}

/// Builds the worker of one queue. Not an `async fn`: the worker's future is boxed here,
/// where its types are concrete, because the compiler cannot prove `Send` for it through
/// the higher-ranked closures of apalis layers inside another async body.
fn run_queue<J: RunJob>(
    env: &Arc<Env>,
    wakeup: &Wakeup,
    options: &WorkerOptions,
    name: String,
    shutdown: &CancellationToken,
) -> BoxFuture<'static, Result<(), WorkerError>> {
    let concurrency = options.concurrency.unwrap_or(J::QUEUE.concurrency()).max(1);
    // A second batch is fetched while the first runs, so the worker does not wait on Redis
    // between batches (no-op jobs at 64: ~35 000/s with one batch, ~41 000/s with two). A
    // fetched job counts as this worker's: if it dies, they all go back to the queue.
    let config = env
        .queue
        .config(J::QUEUE)
        .batch_size(concurrency * 2)
        .heartbeat_interval(options.heartbeat)
        .missed_heartbeats(options.missed_heartbeats);
    let storage =
        RedisStorage::<J, RedisConnection>::new(env.queue.connection()).with_config(config);
    let strategy = Strategy::new()
        .stream(wakeup.clone())
        .interval(options.idle_poll);
    let backend = PollWith::new(storage, strategy);
    let worker = WorkerBuilder::new(name)
        .backend(backend)
        .data(env.clone())
        .catch_panic()
        .concurrency(concurrency)
        .parallelize(tokio::spawn)
        .build(execute::<J>);
    let shutdown = shutdown.clone();
    Box::pin(worker.run_until(async move {
        shutdown.cancelled().await;
        Ok::<(), std::io::Error>(())
    }))
}

/// Runs one job: the handler, then the bookkeeping every job shares.
async fn execute<J: RunJob>(
    job: J,
    env: Data<Arc<Env>>,
    id: TaskId,
    attempt: Attempt,
    meta: MetadataStore,
) -> Result<(), BoxDynError> {
    let queue = J::QUEUE;
    let job_id = id.to_uuid();
    let attempt = attempt.current().max(1);
    let env: Arc<Env> = (*env).clone();
    let span = tracing::info_span!("job", queue = queue.as_str(), job_id = %job_id, attempt);
    let timer = JOB_DURATION
        .with_label_values(&[queue.as_str()])
        .start_timer();
    let ctx = JobCtx {
        env: env.clone(),
        job_id,
        attempt,
    };
    let running = env.activity.start(queue, job_id);
    let result = job.run(ctx).instrument(span.clone()).await;
    timer.observe_duration();
    if result.is_ok() {
        running.succeeded();
    } else {
        drop(running);
    }
    let _entered = span.enter();
    if let Err(JobError::Retry(e) | JobError::Permanent(e)) = &result {
        crate::metrics::note_error_chain(e);
    }
    let final_outcome = match &result {
        Ok(()) => Some("done"),
        Err(JobError::Permanent(_)) => Some("dead"),
        Err(JobError::Retry(_)) if attempt >= queue.max_attempts() as usize => Some("dead"),
        Err(JobError::Retry(_)) => None,
    };
    JOBS_PROCESSED
        .with_label_values(&[queue.as_str(), final_outcome.unwrap_or("retry")])
        .inc();
    if let Some(outcome) = final_outcome.filter(|_| meta.contains_key(crate::client::FROM_OUTBOX)) {
        env.finisher.finished(job_id, outcome);
    }
    match result {
        Ok(()) => Ok(()),
        Err(JobError::Permanent(e)) => {
            tracing::warn!(error = %e, "job failed permanently");
            Err(Box::new(AbortError::new(e.to_string())))
        }
        Err(JobError::Retry(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "job failed; it will be retried");
            Err(format!("{e:#}").into())
        }
    }
}
