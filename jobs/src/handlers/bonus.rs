//! `bonus_calc`: applies the bonus rules to transactions that CRM polling recorded without
//! them (refunds, and any purchase recorded before purchases were settled as stored), and
//! what follows from bonuses applied by either (cross-promo coupons, tier-upgrade notices).

use crate::{
    handlers::{
        notify_job::{self, Notify},
        promo::IssueCoupons,
    },
    metrics::BONUS_ACCRUED,
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::messages::Message;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use storage::{
    ledger::{self, BonusOutcome},
    outbox::OutboxJob,
};
use uuid::Uuid;

/// Apply the rules to these transactions (a batch from one poll).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalcBonus {
    pub transaction_ids: Vec<Uuid>,
}

impl Job for CalcBonus {
    const QUEUE: QueueName = QueueName::BonusCalc;
}

impl RunJob for CalcBonus {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let rules = env.tier_rules().await?;
        let mut tx = storage::begin_batch(&env.db).await?;
        let outcomes = ledger::apply_bonuses(&mut tx, &self.transaction_ids, &rules).await?;
        let applied: Vec<&BonusOutcome> = outcomes.iter().filter(|o| o.newly_applied).collect();
        let follow_ups = record_follow_ups(&mut tx, ctx.job_id, &applied).await?;
        tx.commit().await?;
        announce(env, &applied, &follow_ups).await;
        tracing::info!(
            applied = applied.len(),
            repeated = outcomes.len() - applied.len(),
            "bonuses applied"
        );
        Ok(())
    }
}

/// Records, in the transaction that applied them, what follows from CRM bonuses just
/// applied: one `cross_promo` job for the purchases some chain may fire for, a notice per
/// member lifted to a higher tier. `seed` (the applying job's id) names the jobs, so a
/// retried job records the same ones.
pub async fn record_follow_ups(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    seed: Uuid,
    applied: &[&BonusOutcome],
) -> sqlx::Result<Vec<OutboxJob>> {
    let mut follow_ups = Vec::new();
    // Only purchases some chain may fire for (`cross_promo` checks category and amount).
    let chains = storage::coupons::purchase_chains(&mut **tx).await?;
    let may_fire = |business: Uuid| {
        chains
            .iter()
            .any(|c| c.trigger_business_id == Some(business) || c.trigger_category.is_some())
    };
    let promo: Vec<Uuid> = applied
        .iter()
        .filter(|o| !o.is_medical && !o.is_refund && !o.while_blocked && may_fire(o.business_id))
        .map(|o| o.transaction_id)
        .collect();
    if !promo.is_empty() {
        let id = Uuid::new_v5(&seed, b"cross-promo");
        follow_ups.push(
            outbox::record(
                tx,
                id,
                &IssueCoupons {
                    transaction_ids: promo,
                },
                None,
            )
            .await?,
        );
    }
    let mut upgraded = HashSet::new();
    let notices = applied
        .iter()
        .filter(|o| o.upgraded_from.is_some() && upgraded.insert(o.user_id))
        .map(|o| Notify {
            user_id: o.user_id,
            message: Message::TierUpgraded { tier: o.tier },
            dedupe_key: format!("tier-up:{}", o.transaction_id),
        })
        .collect();
    follow_ups.extend(notify_job::record_all(tx, notices).await?);
    Ok(follow_ups)
}

/// After the commit: the API's balance caches hear of the members, the follow-ups go to
/// their queues (`reconcile` relays them if this fails), and the accrued bonuses are counted.
pub async fn announce(env: &crate::Env, applied: &[&BonusOutcome], follow_ups: &[OutboxJob]) {
    env.committed(
        applied.iter().map(|o| o.user_id),
        follow_ups,
        "bonus follow-ups",
    )
    .await;
    let accrued: Decimal = applied
        .iter()
        .map(|o| o.bonus_change.max(Decimal::ZERO))
        .sum();
    BONUS_ACCRUED
        .with_label_values(&["crm"])
        .inc_by(f64::try_from(accrued).unwrap_or(0.0));
}
