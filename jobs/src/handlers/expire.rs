//! `expire` (hourly): time passing on bonuses and coupons. Held accruals whose hold ended
//! enter the ledger (with a notice that they can be spent), and coupons past their date stop
//! being usable. What is due is decided by `Env::clock`. Then referral invitations whose
//! invitee's qualifying purchase is past its hold window (its accrual released) are settled
//! (`handlers::referral`).

use crate::{
    handlers::notify::Notify,
    outbox,
    queue::{Job, JobCtx, JobError, QueueName},
};
use domain::messages::Message;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use storage::ledger;
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Expire {}

/// Members' accruals released per transaction: their balance locks are held that long.
const RELEASE_BATCH: i64 = 1000;

impl Job for Expire {
    const QUEUE: QueueName = QueueName::Expire;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let released = release_held_accruals(&ctx).await?;
        let expired = sqlx::query(
            "UPDATE coupons SET expired_at = now()
             WHERE expires_at <= $1 AND redeemed_at IS NULL AND expired_at IS NULL",
        )
        .bind(ctx.env.clock.now())
        .execute(&ctx.env.db)
        .await?
        .rows_affected();
        // After the releases: an accrual released now qualifies its referral in this run.
        let referrals_rewarded = super::referral::settle_referrals(&ctx).await?;
        tracing::info!(
            accruals_released = released,
            coupons_expired = expired,
            referrals_rewarded,
            "expiry done"
        );
        Ok(())
    }
}

/// Releases every held accrual that is due, a batch per transaction, each member told once
/// per batch what became spendable.
async fn release_held_accruals(ctx: &JobCtx) -> Result<usize, JobError> {
    let env = &ctx.env;
    let now = env.clock.now();
    let mut total = 0;
    loop {
        let mut tx = storage::begin_batch(&env.db).await?;
        let released = ledger::release_due(&mut tx, now, RELEASE_BATCH).await?;
        if released.is_empty() {
            return Ok(total);
        }
        total += released.len();
        // Per member: what she can spend now, named after her first accrual released (the
        // notice is recorded with the release, so a retry cannot send it twice).
        let mut members: BTreeMap<Uuid, (Uuid, Decimal, Decimal)> = BTreeMap::new();
        for r in &released {
            let member =
                members
                    .entry(r.user_id)
                    .or_insert((r.transaction_id, Decimal::ZERO, r.balance));
            member.0 = member.0.min(r.transaction_id);
            member.1 += r.amount;
        }
        let mut follow_ups = Vec::new();
        for (user_id, (first, amount, balance)) in &members {
            if amount.is_zero() {
                continue;
            }
            let notify = Notify {
                user_id: *user_id,
                message: Message::BonusReleased {
                    amount: *amount,
                    balance: *balance,
                },
                dedupe_key: format!("released:{first}"),
            };
            follow_ups.push(notify.record(&mut tx).await?);
        }
        tx.commit().await?;
        env.cache.balances_changed(members.keys().copied()).await;
        if let Err(e) = outbox::relay(&env.db, &env.queue, &follow_ups).await {
            tracing::warn!(error = %e, "release notices recorded but not relayed");
        }
    }
}
