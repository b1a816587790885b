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
    pub user_id: Uuid,
    pub business: &'a Business,
    pub code: &'a str,
    pub amount: Decimal,
    pub redeem: Decimal,
    pub coupon_id: Option<Uuid>,
    pub coupon_discount: Decimal,
}

/// Why a QR purchase was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum QrPurchaseError {
    /// Another scan recorded a purchase with this code first.
    #[error("this code has already been used")]
    CodeUsed,
    #[error(transparent)]
    Redemption(#[from] RedemptionError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What a recorded QR purchase came to.
#[derive(Debug, Clone)]
pub struct RecordedPurchase {
    pub priced: PricedPurchase,
    pub bonus: crate::bonus::BonusOutcome,
}

/// Records a QR purchase in the caller's transaction: the purchase row (unique per business
/// and code, which makes a code single-use even under concurrent scans), the redemption and
/// the accrual.
pub async fn record_qr_purchase(
    tx: &mut Tx<'_>,
    purchase: &QrPurchase<'_>,
    rules: &TierRules,
) -> Result<RecordedPurchase, QrPurchaseError> {
    let balance = lock_balance(tx, purchase.user_id).await?;
    let (tier_name,): (String,) = sqlx::query_as("SELECT status_tier FROM users WHERE id = $1")
        .bind(purchase.user_id)
        .fetch_one(&mut **tx)
        .await?;
    let tier: Tier = tier_name.parse().unwrap_or(Tier::Insider);
    let terms = BusinessTerms {
        cashback_percent: purchase.business.cashback_percent,
        max_redeem_percent: purchase.business.max_redeem_percent,
    };
    let priced = price_purchase(
        purchase.amount,
        purchase.coupon_discount,
        purchase.redeem,
        balance,
        terms,
        rules.multiplier(tier),
    )?;
    let transaction_id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO transactions (user_id, business_id, transaction_type, source, external_id, amount,
                                   coupon_discount, coupon_id, bonus_redeemed, is_medical)
         VALUES ($1, $2, 'purchase', 'qr', $3, $4, $5, $6, $7, $8)
         ON CONFLICT (business_id, source, external_id) DO NOTHING RETURNING id",
    )
    .bind(purchase.user_id)
    .bind(purchase.business.id)
    .bind(purchase.code)
    .bind(priced.amount)
    .bind(priced.coupon_discount)
    .bind(purchase.coupon_id)
    .bind(priced.bonus_redeemed)
    .bind(purchase.business.is_medical)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(transaction_id) = transaction_id else {
        return Err(QrPurchaseError::CodeUsed);
    };
    append_entry(
        tx,
        purchase.user_id,
        EntryKind::Redemption,
        -priced.bonus_redeemed,
        Some(transaction_id),
        &format!("redemption:{transaction_id}"),
    )
    .await?;
    let bonus = crate::bonus::apply(tx, &[transaction_id], rules)
        .await?
        .pop()
        .expect("apply returns one outcome per transaction");
    Ok(RecordedPurchase { priced, bonus })
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

/// A member's purchases and refunds, newest first.
pub async fn transactions_page(
    db: &PgPool,
    user_id: Uuid,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<TransactionRow>> {
    let rows: Vec<TransactionRow> = sqlx::query_as(concat!(
        "SELECT ",
        transaction_columns!(),
        " FROM transactions
         WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
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
