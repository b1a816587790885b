//! The bonus rules applied to recorded transactions (CRM polling records them, `bonus_calc`
//! applies them), many at a time: accrual for purchases (tier multiplier, then immediate
//! upgrades), proportional reversal for refunds. The arithmetic is `domain::loyalty`; this
//! loads, locks and writes set-based (one statement per step whatever the batch size),
//! which is what makes CRM ingest fast.
//!
//! Applying is idempotent: a transaction already applied is reported, not applied again,
//! and every ledger entry has its own idempotency key.

use super::{
    Entry, Tx, lock,
    pending::{self, Held, Shrink},
};
use crate::states;
use domain::{
    Tier, TierRules,
    loyalty::{EntryKind, PricedPurchase, TransactionType, refund_share},
};
use rust_decimal::Decimal;
use sqlx::{FromRow, Row as _, postgres::PgRow};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;
use uuid::Uuid;

/// What applying the rules did to one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BonusOutcome {
    pub transaction_id: Uuid,
    pub user_id: Uuid,
    /// Accrued (positive) or reversed (negative) by this call; zero on a repeat.
    pub bonus_change: Decimal,
    /// False when the rules had been applied before (a retried job).
    pub newly_applied: bool,
    /// The member's balance once the whole batch is applied.
    pub balance: Decimal,
    /// The member's tier once the whole batch is applied.
    pub tier: Tier,
    /// Set when this batch lifted the member to a higher tier.
    pub upgraded_from: Option<Tier>,
    /// When the accrual becomes spendable, if its business holds accruals.
    pub held_until: Option<OffsetDateTime>,
    /// For follow-ups (cross-promo, analytics).
    pub business_id: Uuid,
    /// A purchase made while its member was blocked: recorded, but it accrues nothing and
    /// nothing follows from it (no coupon, no tier change, no referral).
    pub while_blocked: bool,
    pub is_medical: bool,
    pub is_refund: bool,
}

#[derive(Debug, Clone)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    business_id: Uuid,
    transaction_type: TransactionType,
    amount: Decimal,
    coupon_discount: Decimal,
    bonus_redeemed: Decimal,
    bonus_accrued: Decimal,
    original_transaction_id: Option<Uuid>,
    is_medical: bool,
    bonus_applied: bool,
    occurred_at: OffsetDateTime,
    cashback_percent: Decimal,
    bonus_hold_days: i32,
    while_blocked: bool,
}

impl FromRow<'_, PgRow> for Row {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            user_id: row.try_get("user_id")?,
            business_id: row.try_get("business_id")?,
            transaction_type: states::column(row, "transactions", id, "transaction_type")?,
            amount: row.try_get("amount")?,
            coupon_discount: row.try_get("coupon_discount")?,
            bonus_redeemed: row.try_get("bonus_redeemed")?,
            bonus_accrued: row.try_get("bonus_accrued")?,
            original_transaction_id: row.try_get("original_transaction_id")?,
            is_medical: row.try_get("is_medical")?,
            bonus_applied: row.try_get("bonus_applied")?,
            occurred_at: row.try_get("occurred_at")?,
            cashback_percent: row.try_get("cashback_percent")?,
            bonus_hold_days: row.try_get("bonus_hold_days")?,
            while_blocked: row.try_get("while_blocked")?,
        })
    }
}

/// Applies the rules to `transaction_ids` (and to the purchases their refunds refund, if
/// those were not applied yet) in the caller's transaction. Returns one outcome per id given,
/// in the same order.
pub async fn apply_bonuses(
    tx: &mut Tx<'_>,
    transaction_ids: &[Uuid],
    rules: &TierRules,
) -> sqlx::Result<Vec<BonusOutcome>> {
    if transaction_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Which purchases (these and the ones their refunds refund) and which members are
    // involved: an unlocked read, to learn what to lock.
    let involved: Vec<(Uuid, Uuid, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "SELECT t.id, t.user_id, o.id, o.user_id FROM transactions t
         LEFT JOIN transactions o ON o.id = t.original_transaction_id
         WHERE t.id = ANY($1)",
    )
    .bind(transaction_ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut ids = BTreeSet::new();
    let mut users = BTreeSet::new();
    for (id, user, original, original_user) in involved {
        ids.insert(id);
        users.insert(user);
        ids.extend(original);
        users.extend(original_user);
    }
    let ids: Vec<Uuid> = ids.into_iter().collect();

    // Locks: balances by user id, then transactions by id.
    let mut locked = lock(tx, users).await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.id, t.user_id, t.business_id, t.transaction_type, t.amount, t.coupon_discount, t.bonus_redeemed,
                t.bonus_accrued, t.original_transaction_id, t.is_medical, t.bonus_applied, t.occurred_at,
                b.cashback_percent, b.bonus_hold_days,
                (u.blocked_at IS NOT NULL AND t.occurred_at >= u.blocked_at) AS while_blocked
         FROM transactions t JOIN businesses b ON b.id = t.business_id
         JOIN users u ON u.id = t.user_id
         WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE OF t",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    // What earlier refunds already took back from each purchase, and which purchases still
    // hold their accrual back (only refunds need either).
    let mut refunded: HashMap<Uuid, (Decimal, Decimal)> = HashMap::new();
    let mut waiting: HashMap<Uuid, Decimal> = HashMap::new();
    if rows
        .iter()
        .any(|r| r.transaction_type == TransactionType::Refund && !r.bonus_applied)
    {
        refunded = sqlx::query_as::<_, (Uuid, Decimal, Decimal)>(
            "SELECT original_transaction_id, SUM(amount), SUM(bonus_accrued) FROM transactions
             WHERE original_transaction_id = ANY($1) AND bonus_applied GROUP BY 1",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(id, amount, reversed)| (id, (amount, reversed)))
        .collect();
        waiting = pending::waiting(tx, &ids).await?;
    }

    // Purchases first (oldest first), then refunds: a refund needs its purchase's accrual.
    let mut unapplied: Vec<&Row> = rows.iter().filter(|r| !r.bonus_applied).collect();
    unapplied.sort_by_key(|r| {
        (
            r.transaction_type == TransactionType::Refund,
            r.occurred_at,
            r.id,
        )
    });
    let mut accrued: HashMap<Uuid, Decimal> =
        rows.iter().map(|r| (r.id, r.bonus_accrued)).collect();
    let mut changes: HashMap<Uuid, Decimal> = HashMap::new();
    let mut entries = Vec::new();
    let mut held: HashMap<Uuid, Held> = HashMap::new();
    let mut shrinks = Vec::new();
    for row in unapplied {
        if row.transaction_type == TransactionType::Refund {
            let Some(original) = row
                .original_transaction_id
                .and_then(|o| rows.iter().find(|r| r.id == o))
            else {
                // A refund we cannot tie to a purchase reverses nothing (it still counts
                // against spend).
                changes.insert(row.id, Decimal::ZERO);
                continue;
            };
            let (already_refunded, already_reversed) =
                refunded.get(&original.id).copied().unwrap_or_default();
            let reversal = refund_share(
                original.amount,
                accrued[&original.id],
                already_refunded,
                already_reversed,
                row.amount,
            );
            let sums = refunded.entry(original.id).or_default();
            sums.0 += row.amount;
            sums.1 += reversal;
            let in_full = sums.0 >= original.amount;
            changes.insert(row.id, -reversal);
            // Inside the hold window the ledger never saw the accrual: the refund takes it
            // back where it waits.
            if let Some(h) = held.get_mut(&original.id) {
                h.amount -= reversal;
                if in_full {
                    held.remove(&original.id);
                }
            } else if waiting.contains_key(&original.id) {
                shrinks.push(Shrink {
                    purchase_id: original.id,
                    by: reversal,
                    cancel: in_full,
                });
            } else {
                entries.push(Entry {
                    user_id: row.user_id,
                    kind: EntryKind::Reversal,
                    amount: -reversal,
                    transaction_id: Some(row.id),
                    business_id: Some(row.business_id),
                    key: format!("reversal:{}", row.id),
                });
            }
        } else if row.while_blocked {
            // The purchase happened at the till, so it is recorded (and counts as spend), but
            // a blocked member earns nothing: it is settled with no accrual, for good (a
            // later refund of it reverses nothing).
            changes.insert(row.id, Decimal::ZERO);
        } else {
            let priced = PricedPurchase::recorded(
                row.amount,
                row.coupon_discount,
                row.bonus_redeemed,
                row.cashback_percent,
                rules.multiplier(locked.tier(row.user_id)),
            );
            accrued.insert(row.id, priced.bonus_accrued);
            changes.insert(row.id, priced.bonus_accrued);
            match Held::of(
                row.id,
                row.user_id,
                row.business_id,
                priced.bonus_accrued,
                row.occurred_at,
                row.bonus_hold_days,
            ) {
                Some(h) => {
                    held.insert(row.id, h);
                }
                None => entries.push(Entry {
                    user_id: row.user_id,
                    kind: EntryKind::Accrual,
                    amount: priced.bonus_accrued,
                    transaction_id: Some(row.id),
                    business_id: Some(row.business_id),
                    key: format!("accrual:{}", row.id),
                }),
            }
        }
    }

    // Ledger entries, the balances they move and the transactions they settle: one statement.
    let settled: Vec<(Uuid, Decimal)> = changes.iter().map(|(id, c)| (*id, c.abs())).collect();
    locked.post_settling(tx, &entries, &settled).await?;
    let held: Vec<Held> = held.into_values().collect();
    pending::hold(tx, &held).await?;
    pending::shrink(tx, &shrinks).await?;

    let buyers: BTreeSet<Uuid> = rows
        .iter()
        .filter(|r| {
            changes.contains_key(&r.id)
                && r.transaction_type == TransactionType::Purchase
                && !r.while_blocked
        })
        .map(|r| r.user_id)
        .collect();
    let upgraded = locked.upgrade(tx, &buyers, rules).await?;
    Ok(transaction_ids
        .iter()
        .filter_map(|id| rows.iter().find(|r| r.id == *id))
        .map(|row| {
            let member = locked.member(row.user_id);
            BonusOutcome {
                transaction_id: row.id,
                user_id: row.user_id,
                bonus_change: changes.get(&row.id).copied().unwrap_or(Decimal::ZERO),
                newly_applied: changes.contains_key(&row.id),
                balance: member.balance,
                tier: member.tier,
                upgraded_from: upgraded.get(&row.user_id).copied(),
                held_until: held
                    .iter()
                    .find(|h| h.transaction_id == row.id)
                    .map(|h| h.release_at),
                business_id: row.business_id,
                while_blocked: row.while_blocked,
                is_medical: row.is_medical,
                is_refund: row.transaction_type == TransactionType::Refund,
            }
        })
        .collect())
}
