//! Purchases a partner's CRM reported: recorded already settled, with their accrual, in a
//! fixed number of statements per batch. One write per row: inserting them unsettled and
//! marking them applied afterwards would write every index of `transactions` twice (the
//! flag is in a partial index, so that update is never HOT), which was half of what CRM
//! ingest cost.
//!
//! Refunds are not recorded here: they need their purchase's accrual and what earlier
//! refunds took back, which [`super::apply_bonuses`] works out (`bonus_calc`).

use super::{
    BonusOutcome, Entry, Tx, lock,
    pending::{self, Held},
};
use crate::businesses::Business;
use domain::{
    TierRules,
    loyalty::{EntryKind, PricedPurchase},
};
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// A purchase from a CRM, its member found.
#[derive(Debug, Clone)]
pub struct CrmPurchase {
    pub user_id: Uuid,
    /// The vendor's id: a purchase is recorded once per integration.
    pub external_id: String,
    pub amount: Decimal,
    pub occurred_at: OffsetDateTime,
    /// The vendor's own flag; a medical business's purchases are medical whatever it says.
    pub is_medical: bool,
}

/// Records `purchases` of one business, reported by `integration_id`, in the caller's
/// transaction: the rows that are new (a purchase delivered before inserts nothing), their
/// accruals (tier multiplier; held back if the business holds accruals; nothing for a
/// member blocked when she bought) and immediate tier upgrades. Returns an outcome per
/// purchase recorded now, in the order given.
pub async fn record_crm_purchases(
    tx: &mut Tx<'_>,
    business: &Business,
    integration_id: Uuid,
    purchases: &[CrmPurchase],
    rules: &TierRules,
) -> sqlx::Result<Vec<BonusOutcome>> {
    if purchases.is_empty() {
        return Ok(Vec::new());
    }
    let members: BTreeSet<Uuid> = purchases.iter().map(|p| p.user_id).collect();
    let mut locked = lock(tx, members.iter().copied()).await?;
    let blocked: HashMap<Uuid, OffsetDateTime> = sqlx::query_as(
        "SELECT id, blocked_at FROM users WHERE id = ANY($1) AND blocked_at IS NOT NULL",
    )
    .bind(members.iter().copied().collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();

    struct Priced<'a> {
        id: Uuid,
        purchase: &'a CrmPurchase,
        accrued: Decimal,
        while_blocked: bool,
    }
    let priced: Vec<Priced<'_>> = purchases
        .iter()
        .map(|p| {
            // Recorded at the till either way (it counts as spend), but a blocked member
            // earns nothing.
            let while_blocked = blocked
                .get(&p.user_id)
                .is_some_and(|at| p.occurred_at >= *at);
            let accrued = if while_blocked {
                Decimal::ZERO
            } else {
                PricedPurchase::recorded(
                    p.amount,
                    Decimal::ZERO,
                    Decimal::ZERO,
                    business.cashback_percent,
                    rules.multiplier(locked.tier(p.user_id)),
                )
                .bonus_accrued
            };
            Priced {
                id: Uuid::now_v7(),
                purchase: p,
                accrued,
                while_blocked,
            }
        })
        .collect();

    let inserted: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(
        "INSERT INTO transactions (id, user_id, business_id, integration_id, transaction_type, source, external_id,
                                   amount, occurred_at, is_medical, bonus_accrued, bonus_applied)
         SELECT p.id, p.user_id, $1, $2, 'purchase', 'crm', p.external_id, p.amount, p.occurred_at,
                p.is_medical OR $3, p.accrued, true
         FROM UNNEST($4::uuid[], $5::uuid[], $6::text[], $7::numeric[], $8::timestamptz[], $9::bool[],
                     $10::numeric[])
              AS p(id, user_id, external_id, amount, occurred_at, is_medical, accrued)
         ON CONFLICT (integration_id, external_id) WHERE source = 'crm' DO NOTHING
         RETURNING id",
    )
    .bind(business.id)
    .bind(integration_id)
    .bind(business.is_medical)
    .bind(priced.iter().map(|p| p.id).collect::<Vec<_>>())
    .bind(priced.iter().map(|p| p.purchase.user_id).collect::<Vec<_>>())
    .bind(priced.iter().map(|p| p.purchase.external_id.as_str()).collect::<Vec<_>>())
    .bind(priced.iter().map(|p| p.purchase.amount).collect::<Vec<_>>())
    .bind(priced.iter().map(|p| p.purchase.occurred_at).collect::<Vec<_>>())
    .bind(priced.iter().map(|p| p.purchase.is_medical).collect::<Vec<_>>())
    .bind(priced.iter().map(|p| p.accrued).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let recorded: Vec<&Priced<'_>> = priced.iter().filter(|p| inserted.contains(&p.id)).collect();

    let mut entries = Vec::new();
    let mut held = HashMap::new();
    for p in &recorded {
        let user_id = p.purchase.user_id;
        match Held::of(
            p.id,
            user_id,
            business.id,
            p.accrued,
            p.purchase.occurred_at,
            business.bonus_hold_days,
        ) {
            Some(h) => {
                held.insert(p.id, h);
            }
            None => entries.push(Entry {
                user_id,
                kind: EntryKind::Accrual,
                amount: p.accrued,
                transaction_id: Some(p.id),
                business_id: Some(business.id),
                key: format!("accrual:{}", p.id),
            }),
        }
    }
    locked.post(tx, &entries).await?;
    pending::hold(tx, &held.values().cloned().collect::<Vec<_>>()).await?;
    let buyers: BTreeSet<Uuid> = recorded
        .iter()
        .filter(|p| !p.while_blocked)
        .map(|p| p.purchase.user_id)
        .collect();
    let upgraded = locked.upgrade(tx, &buyers, rules).await?;

    Ok(recorded
        .iter()
        .map(|p| {
            let user_id = p.purchase.user_id;
            let member = locked.member(user_id);
            BonusOutcome {
                transaction_id: p.id,
                user_id,
                bonus_change: p.accrued,
                newly_applied: true,
                balance: member.balance,
                tier: member.tier,
                upgraded_from: upgraded.get(&user_id).copied(),
                held_until: held.get(&p.id).map(|h| h.release_at),
                business_id: business.id,
                while_blocked: p.while_blocked,
                is_medical: p.purchase.is_medical || business.is_medical,
                is_refund: false,
            }
        })
        .collect())
}
