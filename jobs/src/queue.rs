//! Queues, the `Job` trait (a job as it is pushed: its payload and its queue) and job errors.
//!
//! Nothing here knows the worker's `Env`: the queue client, the outbox and the API push jobs
//! without it. What a job does when it runs is `run::RunJob`.

use serde::{Serialize, de::DeserializeOwned};
use std::{fmt, str::FromStr};

/// The queues of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueName {
    OtpSend,
    QrScan,
    CrmPoll,
    BonusCalc,
    CrossPromo,
    Notify,
    RfmSnapshot,
    TierReview,
    Expire,
    Reconcile,
    Retention,
    Media,
    Settlement,
    Payments,
}

impl QueueName {
    pub const ALL: [QueueName; 14] = [
        Self::OtpSend,
        Self::QrScan,
        Self::CrmPoll,
        Self::BonusCalc,
        Self::CrossPromo,
        Self::Notify,
        Self::RfmSnapshot,
        Self::TierReview,
        Self::Expire,
        Self::Reconcile,
        Self::Retention,
        Self::Media,
        Self::Settlement,
        Self::Payments,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OtpSend => "otp_send",
            Self::QrScan => "qr_scan",
            Self::CrmPoll => "crm_poll",
            Self::BonusCalc => "bonus_calc",
            Self::CrossPromo => "cross_promo",
            Self::Notify => "notify",
            Self::RfmSnapshot => "rfm_snapshot",
            Self::TierReview => "tier_review",
            Self::Expire => "expire",
            Self::Reconcile => "reconcile",
            Self::Retention => "retention",
            Self::Media => "media",
            Self::Settlement => "settlement",
            Self::Payments => "payments",
        }
    }

    /// Attempts before a job is dead. Work that touches money or a vendor gets more room;
    /// an OTP is useless after its 5 minutes anyway.
    pub fn max_attempts(self) -> u32 {
        match self {
            Self::OtpSend => 4,
            Self::QrScan | Self::BonusCalc | Self::CrossPromo => 10,
            Self::CrmPoll | Self::Notify | Self::Media => 8,
            // Money at a vendor: room for ЮKassa to come back.
            Self::Payments => 10,
            Self::RfmSnapshot
            | Self::TierReview
            | Self::Expire
            | Self::Retention
            | Self::Settlement => 5,
            Self::Reconcile => 2,
        }
    }

    /// Jobs of this queue run at once in one worker process. The fetch buffer is sized to it,
    /// so a worker never holds jobs it cannot start (apalis issue 251: prefetch defeats concurrency limits).
    pub fn concurrency(self) -> usize {
        match self {
            Self::QrScan => 32,
            Self::OtpSend | Self::Notify | Self::CrossPromo => 16,
            // Each job is a set-based batch of hundreds holding its members' balance locks:
            // more at once only wait on each other's locks and the CPU.
            Self::BonusCalc => 4,
            Self::CrmPoll => 8,
            // Decoding and scaling an image is CPU work: two at a time per process.
            Self::Media => 2,
            Self::RfmSnapshot
            | Self::TierReview
            | Self::Expire
            | Self::Reconcile
            | Self::Retention
            | Self::Settlement
            | Self::Payments => 1,
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of our queues.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown queue `{0}`; queues are: otp_send, qr_scan, crm_poll, bonus_calc, cross_promo, notify, rfm_snapshot, tier_review, expire, reconcile, retention, media, settlement, payments"
)]
pub struct UnknownQueue(pub String);

impl FromStr for QueueName {
    type Err = UnknownQueue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| UnknownQueue(s.to_owned()))
    }
}

/// How a job failed, which decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (with backoff): a database hiccup, a vendor 5xx.
    #[error(transparent)]
    Retry(anyhow::Error),
    /// Will fail the same way again: the job goes dead with this reason.
    #[error("{0}")]
    Permanent(anyhow::Error),
}

impl JobError {
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self::Permanent(anyhow::anyhow!("{message}"))
    }
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> Self {
        Self::Retry(error.into())
    }
}

impl From<redis::RedisError> for JobError {
    fn from(error: redis::RedisError) -> Self {
        Self::Retry(error.into())
    }
}

impl From<anyhow::Error> for JobError {
    fn from(error: anyhow::Error) -> Self {
        Self::Retry(error)
    }
}

/// A job type as the queues see it: its payload is the struct, its queue a constant.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    const QUEUE: QueueName;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_round_trip() {
        for queue in QueueName::ALL {
            assert_eq!(queue.as_str().parse::<QueueName>().unwrap(), queue);
        }
        assert!("nope".parse::<QueueName>().is_err());
    }
}
