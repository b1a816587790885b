//! The bonus ledger, balances, transactions and tiers: every money-changing write of the
//! product goes through this module.
//!
//! Discipline: every balance change is one `bonus_ledger` row with a unique idempotency key,
//! inserted in the same database transaction as the `bonus_balances` update it causes. A
//! retried write finds its key taken and changes nothing, so balance = Σ ledger always holds.

use crate::{
    businesses::Business,
    page::{Cursor, Page},
};
use domain::{
    Tier, TierRule, TierRules,
    loyalty::{BusinessTerms, PricedPurchase, RedemptionError, price_purchase},
};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, Transaction};
use std::collections::HashMap;
use time::OffsetDateTime;
use uuid::Uuid;

type Tx<'a> = Transaction<'a, Postgres>;

/// The tier rules as stored (DESIGN.md defaults unless edited).
pub async fn tier_rules(db: impl PgExecutor<'_>) -> sqlx::Result<TierRules> {
    let rows: Vec<(String, Decimal, i32, Decimal)> =
        sqlx::query_as("SELECT tier, min_spend, min_categories, multiplier FROM tier_rules")
            .fetch_all(db)
            .await?;
    Ok(TierRules::new(
        rows.into_iter()
            .filter_map(|(tier, min_spend, min_categories, multiplier)| {
                Some(TierRule {
                    tier: tier.parse().ok()?,
                    min_spend,
                    min_categories: min_categories.max(0) as u32,
                    multiplier,
                })
            })
            .collect(),
    ))
}

/// A member's balance row.
#[derive(Debug, Clone, Default, FromRow)]
pub struct Balance {
    pub balance: Decimal,
    pub lifetime_earned: Decimal,
    pub lifetime_spent: Decimal,
}

pub async fn balance(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Balance> {
    let row: Option<Balance> = sqlx::query_as(
        "SELECT balance, lifetime_earned, lifetime_spent FROM bonus_balances WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.unwrap_or_default())
}

/// Rolling 365-day spend (purchases minus refunds) and distinct categories bought in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStats {
    pub spend: Decimal,
    pub categories: u32,
}

pub async fn member_stats(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<MemberStats> {
    let (spend, categories): (Decimal, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN t.transaction_type = 'purchase' THEN t.amount ELSE -t.amount END), 0),
                COUNT(DISTINCT b.category) FILTER (WHERE t.transaction_type = 'purchase')
         FROM transactions t JOIN businesses b ON b.id = t.business_id
         WHERE t.user_id = $1 AND t.occurred_at > now() - interval '365 days'",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(MemberStats {
        spend: spend.max(Decimal::ZERO),
        categories: categories as u32,
    })
}

/// Locks the member's balance row (creating it at zero) and returns the balance.
/// Every write that may change a balance takes this lock first, so they serialize per member.
pub(crate) async fn lock_balance(tx: &mut Tx<'_>, user_id: Uuid) -> sqlx::Result<Decimal> {
    sqlx::query("INSERT INTO bonus_balances (user_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query_scalar("SELECT balance FROM bonus_balances WHERE user_id = $1 FOR UPDATE")
        .bind(user_id)
        .fetch_one(&mut **tx)
        .await
}

/// Kinds of ledger entries (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Accrual,
    Redemption,
    Reversal,
    Expiry,
    Adjustment,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accrual => "accrual",
            Self::Redemption => "redemption",
            Self::Reversal => "reversal",
            Self::Expiry => "expiry",
            Self::Adjustment => "adjustment",
        }
    }
}

/// Appends one ledger entry and moves the balance by its amount, once per `key`.
/// Returns `false` (and changes nothing) if the key was used before. Zero amounts write nothing.
/// The caller must hold the member's balance lock.
pub(crate) async fn append_entry(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    kind: EntryKind,
    amount: Decimal,
    transaction_id: Option<Uuid>,
    key: &str,
) -> sqlx::Result<bool> {
    if amount.is_zero() {
        return Ok(false);
    }
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO bonus_ledger (user_id, kind, amount, transaction_id, idempotency_key)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(user_id)
    .bind(kind.as_str())
    .bind(amount)
    .bind(transaction_id)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_none() {
        return Ok(false);
    }
    let earned = if kind == EntryKind::Accrual {
        amount
    } else {
        Decimal::ZERO
    };
    let spent = if kind == EntryKind::Redemption {
        -amount
    } else {
        Decimal::ZERO
    };
    sqlx::query(
        "UPDATE bonus_balances SET balance = balance + $2, lifetime_earned = lifetime_earned + $3,
                lifetime_spent = lifetime_spent + $4, updated_at = now()
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(amount)
    .bind(earned)
    .bind(spent)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// A transaction row as the loyalty rules need it.
#[derive(Debug, Clone, FromRow)]
pub struct TransactionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub business_id: Uuid,
    pub transaction_type: String,
    pub amount: Decimal,
    pub coupon_discount: Decimal,
    pub bonus_redeemed: Decimal,
    pub bonus_accrued: Decimal,
    pub original_transaction_id: Option<Uuid>,
    pub is_medical: bool,
    pub bonus_applied: bool,
    pub created_at: OffsetDateTime,
}

macro_rules! transaction_columns {
    () => {
        "id, user_id, business_id, transaction_type, amount, coupon_discount, bonus_redeemed,
    bonus_accrued, original_transaction_id, is_medical, bonus_applied, created_at"
    };
}

/// Credits (or debits) a member outside a purchase's accrual — a bonus coupon, an
/// operator's adjustment — once per `key`, and returns the balance. Takes the member's
/// balance lock itself.
pub async fn credit(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    kind: EntryKind,
    amount: Decimal,
    transaction_id: Uuid,
    key: &str,
) -> sqlx::Result<Decimal> {
    lock_balance(tx, user_id).await?;
    append_entry(tx, user_id, kind, amount, Some(transaction_id), key).await?;
    Ok(balance(&mut **tx, user_id).await?.balance)
}

/// A purchase made by scanning a staff member's QR code.
#[derive(Debug, Clone)]
pub struct QrPurchase<'a> {
    /// The id its transaction gets.
    pub id: Uuid,
    pub user_id: Uuid,
    pub business: &'a Business,
    pub code: &'a str,
    pub amount: Decimal,
    pub redeem: Decimal,
    pub coupon_id: Option<Uuid>,
    pub coupon_discount: Decimal,
}

/// Why a QR purchase was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrPurchaseRefusal {
    /// Another scan recorded a purchase with this code first.
    #[error("this code has already been used")]
    CodeUsed,
    #[error(transparent)]
    Redemption(#[from] RedemptionError),
}

/// What a recorded QR purchase came to.
#[derive(Debug, Clone)]
pub struct RecordedPurchase {
    pub priced: PricedPurchase,
    pub bonus: crate::bonus::BonusOutcome,
}

/// Records QR purchases in the caller's transaction, in the order given, set-based: the
/// purchase rows (unique per business and code, which makes a code single-use even under
/// concurrent scans), the redemptions and the accruals. Returns one result per purchase.
///
/// Purchases of one member are priced one after the other against her balance as the earlier
/// ones' redemptions left it. An earlier purchase's accrual is not counted in (it is applied
/// with the batch), so a redemption that only that accrual would cover is refused: a
/// refusal the member can retry, never money given away.
pub async fn record_qr_purchases(
    tx: &mut Tx<'_>,
    purchases: &[QrPurchase<'_>],
    rules: &TierRules,
) -> sqlx::Result<Vec<Result<RecordedPurchase, QrPurchaseRefusal>>> {
    if purchases.is_empty() {
        return Ok(Vec::new());
    }
    // Balance locks in user-id order, as on every path (see `bonus`).
    let users: Vec<Uuid> = purchases
        .iter()
        .map(|p| p.user_id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    sqlx::query(
        "INSERT INTO bonus_balances (user_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING",
    )
    .bind(&users)
    .execute(&mut **tx)
    .await?;
    let members: Vec<(Uuid, Decimal, String)> = sqlx::query_as(
        "SELECT b.user_id, b.balance, u.status_tier FROM bonus_balances b JOIN users u ON u.id = b.user_id
         WHERE b.user_id = ANY($1) ORDER BY b.user_id FOR UPDATE OF b",
    )
    .bind(&users)
    .fetch_all(&mut **tx)
    .await?;
    let mut balances: HashMap<Uuid, Decimal> = HashMap::new();
    let mut tiers: HashMap<Uuid, Tier> = HashMap::new();
    for (user, balance, tier) in members {
        balances.insert(user, balance);
        tiers.insert(user, tier.parse().unwrap_or(Tier::Insider));
    }

    let mut results: Vec<Result<PricedPurchase, QrPurchaseRefusal>> =
        Vec::with_capacity(purchases.len());
    let mut codes = std::collections::HashSet::new();
    for p in purchases {
        if !codes.insert((p.business.id, p.code)) {
            results.push(Err(QrPurchaseRefusal::CodeUsed));
            continue;
        }
        let balance = balances.entry(p.user_id).or_default();
        let terms = BusinessTerms {
            cashback_percent: p.business.cashback_percent,
            max_redeem_percent: p.business.max_redeem_percent,
        };
        let tier = tiers.get(&p.user_id).copied().unwrap_or(Tier::Insider);
        let priced = price_purchase(
            p.amount,
            p.coupon_discount,
            p.redeem,
            *balance,
            terms,
            rules.multiplier(tier),
        );
        if let Ok(priced) = &priced {
            *balance -= priced.bonus_redeemed;
        }
        results.push(priced.map_err(QrPurchaseRefusal::from));
    }

    // The purchase rows; a code another scan used first inserts nothing.
    let priced: Vec<(&QrPurchase<'_>, &PricedPurchase)> = purchases
        .iter()
        .zip(&results)
        .filter_map(|(p, r)| r.as_ref().ok().map(|priced| (p, priced)))
        .collect();
    let inserted: std::collections::HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO transactions (id, user_id, business_id, transaction_type, source, external_id, amount,
                                   coupon_discount, coupon_id, bonus_redeemed, is_medical)
         SELECT id, user_id, business_id, 'purchase', 'qr', code, amount, coupon_discount, coupon_id, redeemed, medical
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::numeric[], $6::numeric[], $7::uuid[],
                     $8::numeric[], $9::bool[])
              AS p(id, user_id, business_id, code, amount, coupon_discount, coupon_id, redeemed, medical)
         ON CONFLICT (business_id, source, external_id) DO NOTHING RETURNING id",
    )
    .bind(priced.iter().map(|(p, _)| p.id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.user_id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.business.id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.code).collect::<Vec<_>>())
    .bind(priced.iter().map(|(_, q)| q.amount).collect::<Vec<_>>())
    .bind(priced.iter().map(|(_, q)| q.coupon_discount).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.coupon_id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(_, q)| q.bonus_redeemed).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.business.is_medical).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();

    // Redemptions: ledger entries and the balances they move, in one statement.
    let redeemed: Vec<(&QrPurchase<'_>, &PricedPurchase)> = priced
        .iter()
        .filter(|(p, q)| inserted.contains(&p.id) && q.bonus_redeemed > Decimal::ZERO)
        .copied()
        .collect();
    if !redeemed.is_empty() {
        sqlx::query(
            "WITH ledger AS (
                 INSERT INTO bonus_ledger (user_id, kind, amount, transaction_id, idempotency_key)
                 SELECT user_id, 'redemption', -redeemed, id, 'redemption:' || id
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::numeric[]) AS r(id, user_id, redeemed)
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING user_id, amount
             ), moved AS (SELECT user_id, SUM(amount) AS delta FROM ledger GROUP BY user_id)
             UPDATE bonus_balances b SET balance = b.balance + m.delta, lifetime_spent = b.lifetime_spent - m.delta,
                    updated_at = now()
             FROM moved m WHERE b.user_id = m.user_id AND b.user_id = ANY($2)",
        )
        .bind(redeemed.iter().map(|(p, _)| p.id).collect::<Vec<_>>())
        .bind(redeemed.iter().map(|(p, _)| p.user_id).collect::<Vec<_>>())
        .bind(redeemed.iter().map(|(_, q)| q.bonus_redeemed).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    let ids: Vec<Uuid> = priced
        .iter()
        .map(|(p, _)| p.id)
        .filter(|id| inserted.contains(id))
        .collect();
    let mut outcomes: HashMap<Uuid, crate::bonus::BonusOutcome> =
        crate::bonus::apply(tx, &ids, rules)
            .await?
            .into_iter()
            .map(|o| (o.transaction_id, o))
            .collect();
    Ok(purchases
        .iter()
        .zip(results)
        .map(|(p, result)| {
            let priced = result?;
            match outcomes.remove(&p.id) {
                Some(bonus) => Ok(RecordedPurchase { priced, bonus }),
                None => Err(QrPurchaseRefusal::CodeUsed),
            }
        })
        .collect())
}

/// A ledger entry as members see it.
#[derive(Debug, Clone, FromRow)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub kind: String,
    pub amount: Decimal,
    pub transaction_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

/// A member's ledger, newest first.
pub async fn ledger_page(
    db: &PgPool,
    user_id: Uuid,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<LedgerEntry>> {
    let rows: Vec<LedgerEntry> = sqlx::query_as(
        "SELECT id, kind, amount, transaction_id, created_at FROM bonus_ledger
         WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit as i64 + 1)
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| Cursor {
        created_at: r.created_at,
        id: r.id,
    }))
}

/// Narrows a member's history (`GET /transactions?business_id=&from=&to=&type=`).
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryFilter {
    pub business_id: Option<Uuid>,
    /// Transactions that happened at or after this instant.
    pub from: Option<OffsetDateTime>,
    /// Transactions that happened before this instant.
    pub until: Option<OffsetDateTime>,
    /// `purchase` or `refund`.
    pub transaction_type: Option<&'static str>,
}

/// A member's purchases and refunds, newest first.
pub async fn transactions_page(
    db: &PgPool,
    user_id: Uuid,
    filter: HistoryFilter,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<TransactionRow>> {
    let rows: Vec<TransactionRow> = sqlx::query_as(concat!(
        "SELECT ",
        transaction_columns!(),
        " FROM transactions
         WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
           AND ($5::uuid IS NULL OR business_id = $5)
           AND ($6::timestamptz IS NULL OR occurred_at >= $6)
           AND ($7::timestamptz IS NULL OR occurred_at < $7)
           AND ($8::text IS NULL OR transaction_type = $8)
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit as i64 + 1)
    .bind(filter.business_id)
    .bind(filter.from)
    .bind(filter.until)
    .bind(filter.transaction_type)
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| Cursor {
        created_at: r.created_at,
        id: r.id,
    }))
}
