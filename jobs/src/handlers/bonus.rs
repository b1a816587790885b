//! `bonus_calc`: applies the bonus rules to transactions that CRM polling recorded.

use crate::{
    handlers::{notify_job::Notify, promo::IssueCoupons},
    metrics::BONUS_ACCRUED,
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::messages::Message;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use storage::ledger;
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
        let applied: Vec<_> = outcomes.iter().filter(|o| o.newly_applied).collect();
        // Follow-ups, recorded in the same transaction as the bonuses they follow.
        let mut follow_ups = Vec::new();
        // Only purchases some chain may fire for (`cross_promo` checks category and amount).
        let chains = storage::coupons::purchase_chains(&mut *tx).await?;
        let may_fire = |business: Uuid| {
            chains
                .iter()
                .any(|c| c.trigger_business_id == Some(business) || c.trigger_category.is_some())
        };
        let promo: Vec<Uuid> = applied
            .iter()
            .filter(|o| {
                !o.is_medical && !o.is_refund && !o.while_blocked && may_fire(o.business_id)
            })
            .map(|o| o.transaction_id)
            .collect();
        if !promo.is_empty() {
            let id = Uuid::new_v5(&ctx.job_id, b"cross-promo");
            follow_ups.push(
                outbox::record(
                    &mut tx,
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
        for outcome in applied.iter().filter(|o| o.upgraded_from.is_some()) {
            if upgraded.insert(outcome.user_id) {
                let notify = Notify {
                    user_id: outcome.user_id,
                    message: Message::TierUpgraded { tier: outcome.tier },
                    dedupe_key: format!("tier-up:{}", outcome.transaction_id),
                };
                follow_ups.push(notify.record(&mut tx).await?);
            }
        }
        tx.commit().await?;
        env.cache
            .balances_changed(applied.iter().map(|o| o.user_id))
            .await;
        if let Err(e) = outbox::relay(&env.db, &env.queue, &follow_ups).await {
            tracing::warn!(error = %e, "bonus follow-ups recorded but not relayed");
        }
        let accrued: Decimal = applied
            .iter()
            .map(|o| o.bonus_change.max(Decimal::ZERO))
            .sum();
        BONUS_ACCRUED
            .with_label_values(&["crm"])
            .inc_by(f64::try_from(accrued).unwrap_or(0.0));
        tracing::info!(
            applied = applied.len(),
            repeated = outcomes.len() - applied.len(),
            upgraded = upgraded.len(),
            "bonuses applied"
        );
        Ok(())
    }
}
