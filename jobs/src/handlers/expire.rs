//! `expire` (hourly): time passing on bonuses and coupons. Held accruals whose hold ended
//! enter the ledger (with a notice that they can be spent); lots of bonuses whose
//! `KRUG_BONUS_EXPIRY_DAYS` are over expire (an `expiry` entry each), and members are told
//! 14 days ahead, once per lot; coupons past their date stop being usable. What is due is
//! decided by `Env::clock`. Then referral invitations whose invitee's qualifying purchase is
//! past its hold window (its accrual released) are settled (`handlers::referral`).

use crate::{
    handlers::notify_job::{self, Notify},
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::{
    lots::ExpiryRule,
    messages::{Message, russian_date},
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use storage::ledger;
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Expire {}

/// Members' accruals released per transaction: their balance locks are held that long.
const RELEASE_BATCH: i64 = 1000;
/// Members whose lots are expired per transaction (each one's whole ledger is read).
const EXPIRY_BATCH: i64 = 500;

impl Job for Expire {
    const QUEUE: QueueName = QueueName::Expire;
}

impl RunJob for Expire {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let released = release_held_accruals(&ctx).await?;
        let (lots_expired, expiry_notices) = expire_lots(&ctx).await?;
        let expired = storage::coupons::expire_due(&ctx.env.db, ctx.env.clock.now()).await?;
        // After the releases: an accrual released now qualifies its referral in this run.
        let referrals_rewarded = super::referral::settle_referrals(&ctx).await?;
        tracing::info!(
            accruals_released = released,
            lots_expired,
            expiry_notices,
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
        let notices = members
            .iter()
            .filter(|(_, (_, amount, _))| !amount.is_zero())
            .map(|(user_id, (first, amount, balance))| Notify {
                user_id: *user_id,
                message: Message::BonusReleased {
                    amount: *amount,
                    balance: *balance,
                },
                dedupe_key: format!("released:{first}"),
            })
            .collect();
        let follow_ups = notify_job::record_all(&mut tx, notices).await?;
        tx.commit().await?;
        env.committed(members.keys().copied(), &follow_ups, "release notices")
            .await;
    }
}

/// Expires the lots whose time has come and announces those 14 days from it, a batch of
/// members per transaction; a member is told once per day her lots expire on, the notice
/// named after its first lot (the lots are marked announced with the notice, so a retry
/// cannot send it twice). Returns the lots expired and the notices recorded.
async fn expire_lots(ctx: &JobCtx) -> Result<(usize, usize), JobError> {
    let env = &ctx.env;
    let rule = ExpiryRule {
        days: env.bonus_expiry_days,
    };
    let now = env.clock.now();
    let (mut expired, mut told) = (0, 0);
    let mut after = None;
    loop {
        let mut tx = storage::begin_batch(&env.db).await?;
        let run = ledger::expire_due(&mut tx, rule, now, after, EXPIRY_BATCH).await?;
        let Some(last) = run.members.last().copied() else {
            return Ok((expired, told));
        };
        after = Some(last);
        expired += run.expired.len();
        // Per member and day: Σ of what is left of the lots that expire that day.
        let mut notices: BTreeMap<(Uuid, time::Date), (Uuid, Decimal)> = BTreeMap::new();
        for n in &run.notices {
            let day = domain::local_time::local_date(env.timezone, n.expires_at);
            let group = notices
                .entry((n.user_id, day))
                .or_insert((n.lot, Decimal::ZERO));
            group.0 = group.0.min(n.lot);
            group.1 += n.amount;
        }
        // No business is named: a lot may have been earned at a medical one.
        let notices: Vec<Notify> = notices
            .iter()
            .map(|((user_id, day), (first, amount))| Notify {
                user_id: *user_id,
                message: Message::BonusExpiring {
                    amount: *amount,
                    date: russian_date(*day),
                },
                dedupe_key: format!("expiring:{first}"),
            })
            .collect();
        told += notices.len();
        let follow_ups = notify_job::record_all(&mut tx, notices).await?;
        tx.commit().await?;
        let changed: BTreeMap<Uuid, ()> = run.expired.iter().map(|e| (e.user_id, ())).collect();
        env.committed(changed.into_keys(), &follow_ups, "expiry notices")
            .await;
    }
}
