//! Prometheus metrics of the job platform, registered in the default registry that
//! `/metrics` serves.

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};
use std::sync::LazyLock;

/// Jobs finished, by queue and outcome (`done`, `retry`, `dead`).
pub static JOBS_PROCESSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "jobs_processed_total",
        "Jobs finished, by queue and outcome",
        &["queue", "outcome"]
    )
    .expect("metric registers once")
});

/// Time spent in job handlers, by queue.
pub static JOB_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "job_duration_seconds",
        "Time spent in job handlers, by queue",
        &["queue"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0
        ]
    )
    .expect("metric registers once")
});

/// QR scans processed, by result (`done`, `failed`).
pub static QR_SCANS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "qr_scans_total",
        "QR scans processed, by result",
        &["result"]
    )
    .expect("metric registers once")
});

/// Bonus roubles accrued (kopecks are in the fraction), by source (`qr`, `crm`).
pub static BONUS_ACCRUED: LazyLock<prometheus::CounterVec> = LazyLock::new(|| {
    prometheus::register_counter_vec!(
        "bonus_accrued_total",
        "Bonus roubles accrued, by source",
        &["source"]
    )
    .expect("metric registers once")
});

/// Coupons issued by cross-promo chains.
pub static CROSS_PROMO_TRIGGERED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "cross_promo_triggered_total",
        "Coupons issued by cross-promo chains"
    )
    .expect("metric registers once")
});

/// Scheduler ticks, by schedule and result (`enqueued`, `failed`): a scheduler that stops
/// ticking is alerted on.
pub static SCHEDULER_TICKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "scheduler_ticks_total",
        "Scheduler ticks, by schedule and result",
        &["schedule", "result"]
    )
    .expect("metric registers once")
});

/// Times Postgres could not be reached (pool timeout, connection refused or lost).
pub static DATABASE_CONNECTION_ERRORS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "database_connection_errors_total",
        "Times Postgres could not be reached (pool timeout, connection refused or lost)"
    )
    .expect("metric registers once")
});

/// Counts `error` in `database_connection_errors_total` if Postgres could not be reached.
pub fn note_database_error(error: &sqlx::Error) {
    if storage::is_connection_error(error) {
        DATABASE_CONNECTION_ERRORS.inc();
    }
}

/// As [`note_database_error`], for an error whose cause chain may hold a `sqlx::Error`.
pub fn note_error_chain(error: &anyhow::Error) {
    if let Some(e) = error.chain().find_map(|e| e.downcast_ref::<sqlx::Error>()) {
        note_database_error(e);
    }
}

/// Every metric of this process in Prometheus's text format.
pub fn render() -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap_or_default()
}

/// Registers this process's metrics with every series it will use at zero, so that a
/// scrape shows them from the start and `increase()` sees the first event (a series born
/// at 1 has no increase to show: the first dead job would go unnoticed).
pub fn initialise_worker(queues: &[crate::QueueName]) {
    for queue in queues {
        for outcome in ["done", "retry", "dead"] {
            JOBS_PROCESSED.with_label_values(&[queue.as_str(), outcome]);
        }
    }
    for result in ["done", "failed"] {
        QR_SCANS.with_label_values(&[result]);
    }
    for source in ["qr", "crm"] {
        BONUS_ACCRUED.with_label_values(&[source]);
    }
    LazyLock::force(&CROSS_PROMO_TRIGGERED);
    LazyLock::force(&DATABASE_CONNECTION_ERRORS);
}

/// As [`initialise_worker`], for a scheduler firing `schedules`.
pub fn initialise_scheduler(schedules: &[&str]) {
    for schedule in schedules {
        for result in ["enqueued", "failed"] {
            SCHEDULER_TICKS.with_label_values(&[schedule, result]);
        }
    }
    LazyLock::force(&DATABASE_CONNECTION_ERRORS);
}
