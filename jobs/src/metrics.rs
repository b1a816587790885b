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
