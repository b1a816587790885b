//! The system-wide gauges `krug api` reports beside its own counters: every queue's depth
//! (Redis) and how long each failing CRM integration has failed (Postgres).
//!
//! They are refreshed on a timer, never by a scrape: `/metrics` answers from memory, so a
//! client looping on it costs Redis and Postgres nothing.

use crate::state::AppState;
use std::{
    collections::HashSet,
    sync::{Arc, LazyLock},
    time::Duration,
};

/// How often the gauges are read again: well under Prometheus's usual 15–60 s scrape
/// interval, and the alerts on them look at 10 minutes or an hour.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// Jobs per queue and state (every `web` process reports the same numbers; Prometheus keeps
/// one series per queue and state).
static QUEUE_DEPTH: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "queue_depth",
        "Jobs per queue and state",
        &["queue", "state"]
    )
    .expect("metric registers once")
});

/// Seconds each failing CRM integration has failed (since its last successful poll); an
/// integration that recovers leaves the series.
static INTEGRATION_FAILING: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "crm_integration_failing_seconds",
        "Seconds a failing CRM integration has failed, since its last successful poll",
        &["business_id", "integration_id", "crm_type"]
    )
    .expect("metric registers once")
});

/// Refreshes the gauges now and then every `every`, until the task is aborted.
pub fn spawn_refresh(state: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = HashSet::new();
        loop {
            tick.tick().await;
            refresh(&state, &mut reported).await;
        }
    })
}

/// The labels of one failing integration's series.
type FailingLabels = [String; 3];

/// `reported`: the failing series this refresher set last time. Only those that are no
/// longer failing are removed (not the whole gauge), so refreshers of other states in one
/// process (the system tests run many APIs side by side) leave each other's series alone.
async fn refresh(state: &AppState, reported: &mut HashSet<FailingLabels>) {
    for queue in jobs::QueueName::ALL {
        match jobs::inspect::queue_counts(&state.queue, queue).await {
            Ok(c) => {
                for (name, value) in [
                    ("pending", c.pending),
                    ("scheduled", c.scheduled),
                    ("running", c.running),
                    ("failed", c.failed),
                    ("dead", c.dead),
                ] {
                    QUEUE_DEPTH
                        .with_label_values(&[queue.as_str(), name])
                        .set(value as i64);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "queue depths unavailable for /metrics");
                break;
            }
        }
    }
    match storage::integrations::failing(&state.db).await {
        Ok(failing) => {
            let mut now_failing = HashSet::new();
            for f in failing {
                let labels = [
                    f.business_id.to_string(),
                    f.id.to_string(),
                    f.crm_type.as_str().to_owned(),
                ];
                INTEGRATION_FAILING
                    .with_label_values(&labels.each_ref().map(String::as_str))
                    .set(f.seconds);
                now_failing.insert(labels);
            }
            for recovered in reported.difference(&now_failing) {
                let _ = INTEGRATION_FAILING
                    .remove_label_values(&recovered.each_ref().map(String::as_str));
            }
            *reported = now_failing;
        }
        Err(e) => tracing::warn!(error = %e, "integration health unavailable for /metrics"),
    }
}
