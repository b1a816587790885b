//! `tier_review` (04:00): the yearly re-evaluation. Members below their tier's thresholds
//! over the rolling 365 days move down to the tier they earn (upgrades happen at purchase).

use crate::{
    handlers::notify::Notify,
    outbox,
    queue::{Job, JobCtx, JobError, QueueName},
};
use domain::Tier;
use domain::messages::Message;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReviewTiers {}

impl Job for ReviewTiers {
    const QUEUE: QueueName = QueueName::TierReview;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let db = &ctx.env.db;
        let rules = ctx.env.tier_rules().await?;
        // Every member above Insider, with the year's spend and categories.
        let members: Vec<(Uuid, String, Decimal, i64)> = sqlx::query_as(
            "SELECT u.id, u.status_tier,
                    COALESCE(SUM(CASE WHEN t.transaction_type = 'purchase' THEN t.amount ELSE -t.amount END), 0),
                    COUNT(DISTINCT b.category) FILTER (WHERE t.transaction_type = 'purchase')
             FROM users u
             LEFT JOIN transactions t ON t.user_id = u.id AND t.occurred_at > now() - interval '365 days'
             LEFT JOIN businesses b ON b.id = t.business_id
             WHERE u.status_tier <> 'Insider'
             GROUP BY u.id, u.status_tier",
        )
        .fetch_all(db)
        .await?;
        let mut down: Vec<(Uuid, &'static str)> = Vec::new();
        for (user, tier, spend, categories) in &members {
            let current: Tier = tier.parse().unwrap_or(Tier::Insider);
            let earned = rules.earned((*spend).max(Decimal::ZERO), *categories as u32);
            if earned < current {
                down.push((*user, earned.as_str()));
            }
        }
        if !down.is_empty() {
            let (users, tiers): (Vec<Uuid>, Vec<&str>) = down.iter().copied().unzip();
            let mut tx = storage::begin_batch(db).await?;
            sqlx::query(
                "UPDATE users u SET status_tier = n.tier, tier_changed_at = now(), updated_at = now()
                 FROM UNNEST($1::uuid[], $2::text[]) AS n(id, tier) WHERE u.id = n.id",
            )
            .bind(&users)
            .bind(&tiers)
            .execute(&mut *tx)
            .await?;
            let mut follow_ups = Vec::new();
            for (user, tier) in &down {
                let notify = Notify {
                    user_id: *user,
                    message: Message::TierDowngraded {
                        tier: tier.parse().unwrap_or(Tier::Insider),
                    },
                    dedupe_key: format!("tier-down:{}:{user}", ctx.job_id),
                };
                follow_ups.push(notify.record(&mut tx).await?);
            }
            tx.commit().await?;
            ctx.env.cache.balances_changed(users.iter().copied()).await;
            if let Err(e) = outbox::relay(db, &ctx.env.queue, &follow_ups).await {
                tracing::warn!(error = %e, "downgrade notices recorded but not relayed");
            }
        }
        tracing::info!(
            reviewed = members.len(),
            downgraded = down.len(),
            "tier review done"
        );
        Ok(())
    }
}
