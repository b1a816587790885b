//! `rfm_snapshot` (03:00): exports what facts are pending, computes the day's RFM
//! segments and churn risk in ClickHouse, then gives members newly at high churn risk the
//! coupons of the win-back chains (promo chains with a `trigger_churn_risk`; none exist
//! until an operator creates one, so win-back is off by default).

use crate::{
    Env,
    handlers::{
        notify_job,
        promo::{COUPON_CODE_LEN, coupon_notice},
    },
    metrics::CROSS_PROMO_TRIGGERED,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::codes::human_code;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use storage::coupons::{self, Issued, PromoChain};
use time::Date;

/// Facts per export batch.
pub const EXPORT_BATCH: i64 = 5_000;

/// Win-back coupons issued per transaction.
const WINBACK_BATCH: usize = 500;

/// Compute the snapshot of `date` (today in `KRUG_TIMEZONE` when absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RfmSnapshot {
    #[serde(default)]
    pub date: Option<Date>,
}

impl Job for RfmSnapshot {
    const QUEUE: QueueName = QueueName::RfmSnapshot;
}

impl RunJob for RfmSnapshot {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let date = self
            .date
            .unwrap_or_else(|| domain::local_time::today(env.timezone));
        let exported =
            storage::analytics::export_facts(&env.db, &env.clickhouse, EXPORT_BATCH).await?;
        tracing::info!(exported, %date, "RFM: facts up to date; computing the snapshot");
        let summary = storage::rfm::compute(&env.clickhouse, date).await?;
        tracing::info!(members = summary.members, %date, "RFM snapshot done");
        for chain in coupons::winback_chains(&env.db).await? {
            win_back(env, &chain, date).await?;
        }
        Ok(())
    }
}

/// Issues `chain`'s coupon to the members whose churn risk reached its level in the
/// snapshot of `date`, with a notice each. A coupon is keyed by (chain, date, member), so a
/// re-run of the date issues nothing twice; the chain's cool-down and its one active coupon
/// per member hold as for purchases.
async fn win_back(env: &Env, chain: &PromoChain, date: Date) -> Result<(), JobError> {
    let Some(min_risk) = chain.trigger_churn_risk.and_then(|r| r.to_f64()) else {
        return Ok(());
    };
    let members = storage::rfm::newly_at_risk(&env.clickhouse, date, min_risk).await?;
    let (total, mut done, mut issued) = (members.len(), 0, 0);
    for batch in members.chunks(WINBACK_BATCH) {
        let mut tx = storage::begin_batch(&env.db).await?;
        let known = storage::users::open_to_offers(&mut *tx, batch).await?;
        let mut notices = Vec::new();
        for user_id in known {
            let issue_key = format!("winback:{}:{date}:{user_id}", chain.id);
            let code = human_code(&mut rand::rng(), COUPON_CODE_LEN);
            if let Issued::New(coupon) =
                coupons::issue(&mut tx, chain, user_id, &code, &issue_key).await?
            {
                issued += 1;
                CROSS_PROMO_TRIGGERED.inc();
                notices.push(coupon_notice(&mut tx, env.timezone, &coupon).await?);
            }
        }
        let follow_ups = notify_job::record_all(&mut tx, notices).await?;
        tx.commit().await?;
        env.committed([], &follow_ups, "win-back notices").await;
        done += batch.len();
        tracing::info!(chain = %chain.id, done, total, issued, "win-back: members done / total");
    }
    tracing::info!(chain = %chain.id, %date, at_risk = total, issued, "win-back done");
    Ok(())
}
