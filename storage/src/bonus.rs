//! Applying the bonus rules to recorded transactions, many at a time: accrual for purchases
//! (tier multiplier, then immediate upgrades), proportional reversal for refunds.
//!
//! One implementation for every path: a QR scan applies a batch of one inside its own
//! transaction, `bonus_calc` applies the batches CRM polling produced. The arithmetic is
//! `domain::loyalty`; this module loads, locks and writes set-based (one statement per
//! step whatever the batch size), which is what makes CRM ingest fast.
//!
//! Locks are taken in one order on every path — member balances by user id, then
//! transactions by id — so concurrent batches cannot deadlock. Applying is idempotent:
//! a transaction already applied is reported, not applied again, and every ledger entry has
//! its own idempotency key.

use crate::loyalty::{EntryKind, MemberStats};
use domain::{
    Tier, TierRules,
    loyalty::{accrual, refund_reversal},
};
use rust_decimal::Decimal;
use sqlx::{FromRow, Postgres, Transaction};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;
use uuid::Uuid;

type Tx<'a> = Transaction<'a, Postgres>;

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
    /// For follow-ups (cross-promo, analytics).
    pub business_id: Uuid,
    pub is_medical: bool,
    pub is_refund: bool,
}

#[derive(Debug, Clone, FromRow)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    business_id: Uuid,
    transaction_type: String,
    amount: Decimal,
    coupon_discount: Decimal,
    bonus_redeemed: Decimal,
    bonus_accrued: Decimal,
    original_transaction_id: Option<Uuid>,
    is_medical: bool,
    bonus_applied: bool,
    occurred_at: OffsetDateTime,
    cashback_percent: Decimal,
    status_tier: String,
}

/// Applies the rules to `transaction_ids` (and to the purchases their refunds refund, if
/// those were not applied yet) in the caller's transaction. Returns one outcome per id given,
/// in the same order.
pub async fn apply(
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
    let users: Vec<Uuid> = users.into_iter().collect();

    // Locks: balances by user id, then transactions by id.
    sqlx::query(
        "INSERT INTO bonus_balances (user_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING",
    )
    .bind(&users)
    .execute(&mut **tx)
    .await?;
    let mut balances: HashMap<Uuid, Decimal> = sqlx::query_as::<_, (Uuid, Decimal)>(
        "SELECT user_id, balance FROM bonus_balances WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
    )
    .bind(&users)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.id, t.user_id, t.business_id, t.transaction_type, t.amount, t.coupon_discount, t.bonus_redeemed,
                t.bonus_accrued, t.original_transaction_id, t.is_medical, t.bonus_applied, t.occurred_at,
                b.cashback_percent, u.status_tier
         FROM transactions t JOIN businesses b ON b.id = t.business_id JOIN users u ON u.id = t.user_id
         WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE OF t",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let tiers: HashMap<Uuid, Tier> = rows
        .iter()
        .map(|r| (r.user_id, r.status_tier.parse().unwrap_or(Tier::Insider)))
        .collect();
    // What earlier refunds already took back from each purchase (only refunds need it).
    let mut refunded: HashMap<Uuid, (Decimal, Decimal)> = HashMap::new();
    if rows
        .iter()
        .any(|r| r.transaction_type == "refund" && !r.bonus_applied)
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
    }

    // Purchases first (oldest first), then refunds: a refund needs its purchase's accrual.
    let mut pending: Vec<&Row> = rows.iter().filter(|r| !r.bonus_applied).collect();
    pending.sort_by_key(|r| (r.transaction_type == "refund", r.occurred_at, r.id));
    let mut accrued: HashMap<Uuid, Decimal> =
        rows.iter().map(|r| (r.id, r.bonus_accrued)).collect();
    let mut changes: HashMap<Uuid, Decimal> = HashMap::new();
    let mut entries = Entries::default();
    for row in pending {
        let multiplier =
            rules.multiplier(tiers.get(&row.user_id).copied().unwrap_or(Tier::Insider));
        let change = if row.transaction_type == "refund" {
            let reversal = match row
                .original_transaction_id
                .and_then(|o| rows.iter().find(|r| r.id == o))
            {
                // A refund we cannot tie to a purchase reverses nothing (it still counts against spend).
                None => Decimal::ZERO,
                Some(original) => {
                    let (already_refunded, already_reversed) =
                        refunded.get(&original.id).copied().unwrap_or_default();
                    let reversal = refund_reversal(
                        original.amount,
                        accrued[&original.id],
                        already_refunded,
                        already_reversed,
                        row.amount,
                    );
                    let sums = refunded.entry(original.id).or_default();
                    sums.0 += row.amount;
                    sums.1 += reversal;
                    reversal
                }
            };
            entries.push(
                row.user_id,
                EntryKind::Reversal,
                -reversal,
                row.id,
                format!("reversal:{}", row.id),
            );
            -reversal
        } else {
            let paid = row.amount - row.coupon_discount - row.bonus_redeemed;
            let amount = accrual(paid, row.cashback_percent, multiplier);
            entries.push(
                row.user_id,
                EntryKind::Accrual,
                amount,
                row.id,
                format!("accrual:{}", row.id),
            );
            accrued.insert(row.id, amount);
            amount
        };
        changes.insert(row.id, change);
    }

    // Ledger entries, the balances they move and the transactions they settle, in one
    // statement (data-modifying CTEs): a batch costs one round trip whatever its size. The
    // `= ANY` conditions let the planner use the primary keys (it cannot see into UNNEST).
    let (settled, settled_amounts): (Vec<Uuid>, Vec<Decimal>) =
        changes.iter().map(|(id, c)| (*id, c.abs())).unzip();
    let moved: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "WITH ledger AS (
             INSERT INTO bonus_ledger (user_id, kind, amount, transaction_id, idempotency_key)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::text[])
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING user_id, kind, amount
         ), moved AS (
             SELECT user_id, SUM(amount) AS delta,
                    COALESCE(SUM(amount) FILTER (WHERE kind = 'accrual'), 0) AS earned
             FROM ledger GROUP BY user_id
         ), settled AS (
             UPDATE transactions t SET bonus_accrued = s.amount, bonus_applied = true
             FROM UNNEST($6::uuid[], $7::numeric[]) AS s(id, amount) WHERE t.id = s.id AND t.id = ANY($6)
         )
         UPDATE bonus_balances b SET balance = b.balance + m.delta, lifetime_earned = b.lifetime_earned + m.earned,
                updated_at = now()
         FROM moved m WHERE b.user_id = m.user_id AND b.user_id = ANY($1)
         RETURNING b.user_id, b.balance",
    )
    .bind(&entries.users)
    .bind(&entries.kinds)
    .bind(&entries.amounts)
    .bind(&entries.transactions)
    .bind(&entries.keys)
    .bind(&settled)
    .bind(&settled_amounts)
    .fetch_all(&mut **tx)
    .await?;
    balances.extend(moved);

    // Upgrades happen at once; downgrades only at tier_review.
    let buyers: Vec<Uuid> = rows
        .iter()
        .filter(|r| changes.contains_key(&r.id) && r.transaction_type == "purchase")
        .map(|r| r.user_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let stats = members_stats(tx, &buyers).await?;
    let mut new_tiers = tiers.clone();
    let mut upgraded: Vec<(Uuid, &'static str)> = Vec::new();
    for user in &buyers {
        let current = tiers.get(user).copied().unwrap_or(Tier::Insider);
        let s = stats.get(user).copied().unwrap_or_default();
        let after = rules.after_purchase(current, s.spend, s.categories);
        if after != current {
            new_tiers.insert(*user, after);
            upgraded.push((*user, after.as_str()));
        }
    }
    if !upgraded.is_empty() {
        let (up_users, up_tiers): (Vec<Uuid>, Vec<&str>) = upgraded.into_iter().unzip();
        sqlx::query(
            "UPDATE users u SET status_tier = n.tier, tier_changed_at = now(), updated_at = now()
             FROM UNNEST($1::uuid[], $2::text[]) AS n(id, tier) WHERE u.id = n.id",
        )
        .bind(&up_users)
        .bind(&up_tiers)
        .execute(&mut **tx)
        .await?;
    }
    Ok(transaction_ids
        .iter()
        .filter_map(|id| rows.iter().find(|r| r.id == *id))
        .map(|row| {
            let before = tiers.get(&row.user_id).copied().unwrap_or(Tier::Insider);
            let after = new_tiers.get(&row.user_id).copied().unwrap_or(before);
            BonusOutcome {
                transaction_id: row.id,
                user_id: row.user_id,
                bonus_change: changes.get(&row.id).copied().unwrap_or(Decimal::ZERO),
                newly_applied: changes.contains_key(&row.id),
                balance: balances.get(&row.user_id).copied().unwrap_or_default(),
                tier: after,
                upgraded_from: (after != before).then_some(before),
                business_id: row.business_id,
                is_medical: row.is_medical,
                is_refund: row.transaction_type == "refund",
            }
        })
        .collect())
}

/// Rolling 365-day spend and categories of several members at once.
async fn members_stats(
    tx: &mut Tx<'_>,
    users: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, MemberStats>> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Decimal, i64)> = sqlx::query_as(
        "SELECT t.user_id,
                COALESCE(SUM(CASE WHEN t.transaction_type = 'purchase' THEN t.amount ELSE -t.amount END), 0),
                COUNT(DISTINCT b.category) FILTER (WHERE t.transaction_type = 'purchase')
         FROM transactions t JOIN businesses b ON b.id = t.business_id
         WHERE t.user_id = ANY($1) AND t.occurred_at > now() - interval '365 days'
         GROUP BY t.user_id",
    )
    .bind(users)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, spend, categories)| {
            (
                user,
                MemberStats {
                    spend: spend.max(Decimal::ZERO),
                    categories: categories as u32,
                },
            )
        })
        .collect())
}

/// Ledger entries to write, as columns for `UNNEST`. Zero amounts are not entries.
#[derive(Default)]
struct Entries {
    users: Vec<Uuid>,
    kinds: Vec<&'static str>,
    amounts: Vec<Decimal>,
    transactions: Vec<Uuid>,
    keys: Vec<String>,
}

impl Entries {
    fn push(
        &mut self,
        user: Uuid,
        kind: EntryKind,
        amount: Decimal,
        transaction: Uuid,
        key: String,
    ) {
        if amount.is_zero() {
            return;
        }
        self.users.push(user);
        self.kinds.push(kind.as_str());
        self.amounts.push(amount);
        self.transactions.push(transaction);
        self.keys.push(key);
    }
}
