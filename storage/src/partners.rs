//! What a partner business reads about itself: its purchases and refunds. Every query is
//! scoped to one business — a business never reads another's rows (medical secrecy included).

use crate::page::{Cursor, Page};
use crate::states;
use domain::loyalty::TransactionType;
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// A purchase or refund at the business, as its staff see it.
#[derive(Debug, Clone)]
pub struct BusinessTransaction {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Empty for a member who deleted her account.
    pub phone: String,
    pub transaction_type: TransactionType,
    /// `qr`, `crm` or `counter`.
    pub source: String,
    pub amount: Decimal,
    pub coupon_discount: Decimal,
    pub bonus_redeemed: Decimal,
    pub bonus_accrued: Decimal,
    /// For purchases: what refunds took back so far.
    pub refunded: Decimal,
    pub original_transaction_id: Option<Uuid>,
    /// For counter refunds: why.
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
}

impl FromRow<'_, PgRow> for BusinessTransaction {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            user_id: row.try_get("user_id")?,
            phone: row.try_get("phone")?,
            transaction_type: states::column(row, "transactions", id, "transaction_type")?,
            source: row.try_get("source")?,
            amount: row.try_get("amount")?,
            coupon_discount: row.try_get("coupon_discount")?,
            bonus_redeemed: row.try_get("bonus_redeemed")?,
            bonus_accrued: row.try_get("bonus_accrued")?,
            refunded: row.try_get("refunded")?,
            original_transaction_id: row.try_get("original_transaction_id")?,
            reason: row.try_get("reason")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Which of its transactions a business lists.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    /// The QR code of a purchase (what the cashier has at hand).
    pub code: Option<String>,
    /// Only purchases, or only refunds.
    pub transaction_type: Option<TransactionType>,
}

/// The business's transactions, newest first.
pub async fn transactions_page(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
    filter: &TransactionFilter,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<BusinessTransaction>> {
    let rows: Vec<BusinessTransaction> = sqlx::query_as(
        "SELECT t.id, t.user_id, COALESCE(u.phone, '') AS phone, t.transaction_type, t.source, t.amount, t.coupon_discount,
                t.bonus_redeemed, t.bonus_accrued,
                COALESCE((SELECT SUM(r.amount) FROM transactions r WHERE r.original_transaction_id = t.id), 0)
                    AS refunded,
                t.original_transaction_id, d.reason, t.created_at
         FROM transactions t
         JOIN users u ON u.id = t.user_id
         LEFT JOIN refund_details d ON d.transaction_id = t.id
         WHERE t.business_id = $1
           AND ($2::text IS NULL OR (t.external_id = $2 AND t.source = 'qr'))
           AND ($3::text IS NULL OR t.transaction_type = $3)
           AND ($4::timestamptz IS NULL OR (t.created_at, t.id) < ($4, $5))
         ORDER BY t.created_at DESC, t.id DESC LIMIT $6",
    )
    .bind(business_id)
    .bind(&filter.code)
    .bind(filter.transaction_type.map(TransactionType::as_str))
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

/// The business a transaction belongs to.
pub async fn business_of_transaction(
    db: impl PgExecutor<'_>,
    transaction_id: Uuid,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT business_id FROM transactions WHERE id = $1")
        .bind(transaction_id)
        .fetch_optional(db)
        .await
}
