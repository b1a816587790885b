//! `rfm_snapshot` (03:00): exports what facts are pending, then computes the day's RFM
//! segments and churn risk in ClickHouse.

use crate::queue::{Job, JobCtx, JobError, QueueName};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

/// Facts per export batch.
pub const EXPORT_BATCH: i64 = 5_000;

/// Compute the snapshot of `date` (today in `KRUG_TIMEZONE` when absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RfmSnapshot {
    #[serde(default)]
    pub date: Option<Date>,
}

impl Job for RfmSnapshot {
    const QUEUE: QueueName = QueueName::RfmSnapshot;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let date = self.date.unwrap_or_else(|| today(env.timezone));
        let exported =
            storage::analytics::export_facts(&env.db, &env.clickhouse, EXPORT_BATCH).await?;
        tracing::info!(exported, %date, "RFM: facts up to date; computing the snapshot");
        let summary = storage::rfm::compute(&env.clickhouse, date).await?;
        tracing::info!(members = summary.members, %date, "RFM snapshot done");
        Ok(())
    }
}

/// Today's date where the coalition lives.
pub fn today(timezone: chrono_tz::Tz) -> Date {
    OffsetDateTime::now_utc()
        .to_offset(utc_offset(timezone))
        .date()
}

/// The zone's offset from UTC right now (Europe/Moscow: +03:00).
pub fn utc_offset(timezone: chrono_tz::Tz) -> time::UtcOffset {
    let now = chrono::Utc::now().with_timezone(&timezone);
    time::UtcOffset::from_whole_seconds(chrono::Offset::fix(now.offset()).local_minus_utc())
        .unwrap_or(time::UtcOffset::UTC)
}
