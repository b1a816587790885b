//! `tier_review` (04:00): the yearly re-evaluation. Members below their tier's thresholds
//! over the rolling 365 days move down to the tier they earn (upgrades happen at purchase).
//! The Inner Circle is never reviewed: only a superadmin revokes it.

use crate::{
    handlers::notify_job::{self, Notify},
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::Tier;
use domain::messages::Message;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReviewTiers {}

impl Job for ReviewTiers {
    const QUEUE: QueueName = QueueName::TierReview;
}

impl RunJob for ReviewTiers {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let db = &ctx.env.db;
        let rules = ctx.env.tier_rules().await?;
        let members = storage::tiers::above_insider(db).await?;
        let down: Vec<(Uuid, Tier)> = members
            .iter()
            .filter_map(|(user, current, stats)| {
                rules
                    .after_review(*current, stats.spend, stats.categories)
                    .map(|lower| (*user, lower))
            })
            .collect();
        if !down.is_empty() {
            let mut tx = storage::begin_batch(db).await?;
            storage::tiers::set(&mut tx, &down).await?;
            let notices = down
                .iter()
                .map(|(user, tier)| Notify {
                    user_id: *user,
                    message: Message::TierDowngraded { tier: *tier },
                    dedupe_key: format!("tier-down:{}:{user}", ctx.job_id),
                })
                .collect();
            let follow_ups = notify_job::record_all(&mut tx, notices).await?;
            tx.commit().await?;
            ctx.env
                .committed(
                    down.iter().map(|(user, _)| *user),
                    &follow_ups,
                    "downgrade notices",
                )
                .await;
        }
        tracing::info!(
            reviewed = members.len(),
            downgraded = down.len(),
            "tier review done"
        );
        Ok(())
    }
}
