//! `vendor/apalis-redis/PATCHES.md`, first row: apalis-redis 1.0.0 stalls for good once ~8 000 due jobs wait (its Lua
//! promotes the whole due set with one `unpack`). With the patched copy, a 100 000-job
//! backlog of due jobs drains on every queue.

use crate::helpers::{Options, TestApp};
use jobs::{
    Env, Job, JobCtx, JobError, JobQueue, QueueName, RunJob, client::RawJob, runtime::WorkerOptions,
};
use serde::{Deserialize, Serialize};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BACKLOG: usize = 100_000;

macro_rules! noop_jobs {
    ($($name:ident => $queue:expr),* $(,)?) => {$(
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        struct $name {}

        impl Job for $name {
            const QUEUE: QueueName = $queue;
        }

        impl RunJob for $name {
            async fn run(self, _ctx: JobCtx) -> Result<(), JobError> {
                static_counter(Self::QUEUE).fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    )*};
}

noop_jobs! {
    OtpSendNoop => QueueName::OtpSend,
    QrScanNoop => QueueName::QrScan,
    CrmPollNoop => QueueName::CrmPoll,
    BonusCalcNoop => QueueName::BonusCalc,
    CrossPromoNoop => QueueName::CrossPromo,
    NotifyNoop => QueueName::Notify,
    RfmSnapshotNoop => QueueName::RfmSnapshot,
    TierReviewNoop => QueueName::TierReview,
    ExpireNoop => QueueName::Expire,
    ReconcileNoop => QueueName::Reconcile,
    RetentionNoop => QueueName::Retention,
}

static COUNTERS: [AtomicU64; QueueName::ALL.len()] =
    [const { AtomicU64::new(0) }; QueueName::ALL.len()];

fn static_counter(queue: QueueName) -> &'static AtomicU64 {
    &COUNTERS[QueueName::ALL.iter().position(|q| *q == queue).unwrap()]
}

/// Pushes `BACKLOG` jobs into the delayed set, makes them all due at once (the path that
/// stalled), then drains them with one worker and checks nothing is left.
async fn drain<J: RunJob + Default>(app: &TestApp) {
    let prefix = format!("kt-backlog-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let queue = JobQueue::new(app.services.queue.connection(), prefix.clone());
    let env = Arc::new(Env {
        queue: queue.clone(),
        ..Arc::into_inner(app.services.job_env()).unwrap()
    });
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let payload = serde_json::to_vec(&J::default()).unwrap();
    let jobs: Vec<RawJob> = (0..BACKLOG)
        .map(|_| RawJob {
            id: Uuid::now_v7(),
            payload: payload.clone(),
            max_attempts: 1,
            run_at: Some(later),
            idempotency_key: None,
            from_outbox: false,
        })
        .collect();
    queue.push_raw(J::QUEUE, &jobs).await.unwrap();
    drop(jobs);
    let namespace = JobQueue::namespace(&prefix, J::QUEUE);
    let mut redis = queue.connection();
    let scheduled: usize = redis::cmd("ZCARD")
        .arg(format!("{namespace}:scheduled"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        scheduled,
        BACKLOG,
        "{}: the backlog waits in the delayed set",
        J::QUEUE
    );
    // Every one of them due now: scores to 0. Rewriting 100 000 scores can outlast the
    // service connections' 2 s answer timeout on a loaded machine: a connection of its own.
    let mut admin = redis::Client::open(app.services.config.redis_url.expose())
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(std::time::Duration::from_secs(60))),
        )
        .await
        .unwrap();
    let _: () = redis::cmd("ZUNIONSTORE")
        .arg(format!("{namespace}:scheduled"))
        .arg(1)
        .arg(format!("{namespace}:scheduled"))
        .arg("WEIGHTS")
        .arg(0)
        .query_async(&mut admin)
        .await
        .unwrap();

    let counter = static_counter(J::QUEUE);
    counter.store(0, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let mut options = WorkerOptions::new(app.services.config.redis_url.expose(), vec![J::QUEUE]);
    options.concurrency = Some(64);
    let worker = tokio::spawn(jobs::runtime::run_single::<J>(
        env,
        options,
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(300);
    while counter.load(Ordering::Relaxed) < BACKLOG as u64 {
        assert!(
            Instant::now() < deadline,
            "{}: stalled at {} of {BACKLOG}",
            J::QUEUE,
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Acks go out in batches after the handlers: wait for the last of them.
    let done_key = format!("{namespace}:done");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: usize = redis::cmd("SCARD")
            .arg(&done_key)
            .query_async(&mut redis)
            .await
            .unwrap();
        if done == BACKLOG {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {done} of {BACKLOG} acknowledged",
            J::QUEUE
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = worker.await;
    for (suffix, command) in [("active", "LLEN"), ("scheduled", "ZCARD")] {
        let left: usize = redis::cmd(command)
            .arg(format!("{namespace}:{suffix}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(left, 0, "{}: {suffix} is empty", J::QUEUE);
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_backlog_of_due_jobs_drains_on_every_queue() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    drain::<OtpSendNoop>(&app).await;
    drain::<QrScanNoop>(&app).await;
    drain::<CrmPollNoop>(&app).await;
    drain::<BonusCalcNoop>(&app).await;
    drain::<CrossPromoNoop>(&app).await;
    drain::<NotifyNoop>(&app).await;
    drain::<RfmSnapshotNoop>(&app).await;
    drain::<TierReviewNoop>(&app).await;
    drain::<ExpireNoop>(&app).await;
    drain::<ReconcileNoop>(&app).await;
    drain::<RetentionNoop>(&app).await;
}
