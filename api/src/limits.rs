//! The abuse limits of DESIGN.md that the API enforces, their defaults and their metrics.
//! Counters live in Redis (`storage::limits`) so that they hold across API processes.

use crate::proxies::TrustedProxies;
use prometheus::{IntCounterVec, IntGauge, register_int_counter_vec, register_int_gauge};
use rust_decimal::Decimal;
use std::sync::LazyLock;
use storage::limits::Backoff;

/// Every limit, read once from the environment (see `krug::Config` for the variables).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Login codes per phone within 24 hours (`KRUG_OTP_PER_PHONE_PER_DAY`, 5).
    pub codes_per_phone_per_day: u64,
    /// Login codes requested per client address within an hour (`KRUG_OTP_PER_IP_PER_HOUR`, 10).
    pub codes_per_ip_per_hour: u64,
    /// Login SMS for the whole system within an hour (`KRUG_SMS_BUDGET_PER_HOUR`, 1000):
    /// past it `send-code` answers 503 `sms_budget_exhausted`.
    pub sms_budget_per_hour: u64,
    /// Failed code checks per client address within an hour
    /// (`KRUG_VERIFY_FAILURES_PER_IP_PER_HOUR`, 30).
    pub verify_failures_per_ip_per_hour: u64,
    /// How a phone's failed checks slow its next ones down.
    pub verify_backoff: Backoff,
    /// Whose `X-Forwarded-For` is believed (`KRUG_TRUSTED_PROXIES`, none).
    pub trusted_proxies: TrustedProxies,
    /// QR scans per member per minute (`KRUG_SCANS_PER_MEMBER_PER_MINUTE`, 10).
    pub scans_per_member_per_minute: u64,
    /// Roubles of QR codes one staff member may issue per day at one business
    /// (`KRUG_STAFF_QR_DAILY_TOTAL`, 1 000 000.00).
    pub staff_qr_daily_total: Decimal,
    /// Push devices per member (`KRUG_MAX_DEVICES_PER_MEMBER`, 10).
    pub devices_per_member: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            codes_per_phone_per_day: 5,
            codes_per_ip_per_hour: 10,
            sms_budget_per_hour: 1000,
            verify_failures_per_ip_per_hour: 30,
            verify_backoff: Backoff::default(),
            trusted_proxies: TrustedProxies::default(),
            scans_per_member_per_minute: 10,
            staff_qr_daily_total: Decimal::from(1_000_000),
            devices_per_member: 10,
        }
    }
}

impl Limits {
    /// Limits for tests and the demo, which sign dozens of people in from one address
    /// within minutes: the per-address and system-wide ones are lifted, the rest kept.
    pub fn relaxed() -> Self {
        Self {
            codes_per_ip_per_hour: 100_000,
            sms_budget_per_hour: 100_000,
            verify_failures_per_ip_per_hour: 100_000,
            codes_per_phone_per_day: 1_000,
            scans_per_member_per_minute: 10_000,
            ..Self::default()
        }
    }
}

/// Requests refused by an abuse limit, by limit: an alert on a jump shows an attack.
pub static REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "abuse_limit_refusals_total",
        "Requests refused by an abuse limit, by limit",
        &["limit"]
    )
    .expect("metric registers once")
});

/// Login SMS sent in the system's current budget hour, as last seen by this process.
pub static SMS_BUDGET_USED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "sms_budget_used",
        "Login SMS sent in the current budget hour (whole system)"
    )
    .expect("metric registers once")
});

/// `KRUG_SMS_BUDGET_PER_HOUR`: alert when `sms_budget_used / sms_budget_limit` nears 1.
pub static SMS_BUDGET_LIMIT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "sms_budget_limit",
        "Login SMS allowed per hour for the whole system"
    )
    .expect("metric registers once")
});
