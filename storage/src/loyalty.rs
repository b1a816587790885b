//! Reading the money: balances, the ledger and transactions as members see them. Every
//! write that changes a balance is `crate::ledger`'s.

use crate::page::{Cursor, Page};
use crate::states;
use domain::loyalty::{EntryKind, TransactionType};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, PgPool, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

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

/// A transaction row as the loyalty rules need it.
#[derive(Debug, Clone)]
pub struct TransactionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub business_id: Uuid,
    pub transaction_type: TransactionType,
    pub amount: Decimal,
    pub coupon_discount: Decimal,
    pub bonus_redeemed: Decimal,
    pub bonus_accrued: Decimal,
    pub original_transaction_id: Option<Uuid>,
    pub is_medical: bool,
    pub bonus_applied: bool,
    pub created_at: OffsetDateTime,
}

impl FromRow<'_, PgRow> for TransactionRow {
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
            created_at: row.try_get("created_at")?,
        })
    }
}

macro_rules! transaction_columns {
    () => {
        "id, user_id, business_id, transaction_type, amount, coupon_discount, bonus_redeemed,
    bonus_accrued, original_transaction_id, is_medical, bonus_applied, created_at"
    };
}

/// A ledger entry as members see it.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub kind: EntryKind,
    pub amount: Decimal,
    pub transaction_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

impl FromRow<'_, PgRow> for LedgerEntry {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            kind: states::column(row, "bonus_ledger", id, "kind")?,
            amount: row.try_get("amount")?,
            transaction_id: row.try_get("transaction_id")?,
            created_at: row.try_get("created_at")?,
        })
    }
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
    pub transaction_type: Option<TransactionType>,
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
    .bind(filter.transaction_type.map(TransactionType::as_str))
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, limit, |r| Cursor {
        created_at: r.created_at,
        id: r.id,
    }))
}
