//! `bonus_calc`: applies the bonus rules to transactions that CRM polling recorded.

use crate::{
    metrics::BONUS_ACCRUED,
    queue::{Job, JobCtx, JobError, QueueName},
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use storage::{bonus, loyalty};
use uuid::Uuid;

/// Apply the rules to these transactions (a batch from one poll).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalcBonus {
    pub transaction_ids: Vec<Uuid>,
}

impl Job for CalcBonus {
    const QUEUE: QueueName = QueueName::BonusCalc;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let db = &ctx.env.db;
        let rules = loyalty::tier_rules(db).await?;
        let mut tx = db.begin().await?;
        let outcomes = bonus::apply(&mut tx, &self.transaction_ids, &rules).await?;
        tx.commit().await?;
        let applied: Vec<_> = outcomes.iter().filter(|o| o.newly_applied).collect();
        let accrued: Decimal = applied
            .iter()
            .map(|o| o.bonus_change.max(Decimal::ZERO))
            .sum();
        BONUS_ACCRUED
            .with_label_values(&["crm"])
            .inc_by(f64::try_from(accrued).unwrap_or(0.0));
        for upgrade in outcomes.iter().filter(|o| o.upgraded_from.is_some()) {
            tracing::info!(user_id = %upgrade.user_id, to = %upgrade.tier, "member upgraded");
        }
        tracing::info!(
            applied = applied.len(),
            repeated = outcomes.len() - applied.len(),
            "bonuses applied"
        );
        Ok(())
    }
}
