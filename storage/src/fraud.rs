//! Fraud flags: suspicious scans and QR codes listed for operators.

use crate::{
    page::{Cursor, Page},
    states,
};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// What was suspicious.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// A member scanned a code she issued herself (refused).
    SelfScan,
    /// A staff member's QR codes of the day would have passed the daily total (refused).
    StaffDailyLimit,
    /// A purchase at or over its business's outlier threshold (recorded).
    OutlierAmount,
}

impl FlagKind {
    pub const ALL: [FlagKind; 3] = [Self::SelfScan, Self::StaffDailyLimit, Self::OutlierAmount];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfScan => "self_scan",
            Self::StaffDailyLimit => "staff_daily_limit",
            Self::OutlierAmount => "outlier_amount",
        }
    }
}

domain::parse_by_name!(FlagKind);

/// A flag to record.
#[derive(Debug, Clone)]
pub struct NewFlag {
    pub kind: FlagKind,
    pub business_id: Uuid,
    pub staff_id: Option<Uuid>,
    pub member_id: Option<Uuid>,
    pub amount: Decimal,
    pub transaction_id: Option<Uuid>,
}

/// A flag as listed.
#[derive(Debug, Clone)]
pub struct Flag {
    pub id: Uuid,
    pub kind: FlagKind,
    pub business_id: Uuid,
    pub staff_id: Option<Uuid>,
    pub member_id: Option<Uuid>,
    pub amount: Decimal,
    pub transaction_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

impl FromRow<'_, PgRow> for Flag {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            kind: states::column(row, "fraud_flags", id, "kind")?,
            business_id: row.try_get("business_id")?,
            staff_id: row.try_get("staff_id")?,
            member_id: row.try_get("member_id")?,
            amount: row.try_get("amount")?,
            transaction_id: row.try_get("transaction_id")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Records flags (one statement, in the caller's transaction when there is one).
pub async fn record(db: impl PgExecutor<'_>, flags: &[NewFlag]) -> sqlx::Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO fraud_flags (id, kind, business_id, staff_id, member_id, amount, transaction_id)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[],
                              $6::numeric[], $7::uuid[])",
    )
    .bind(flags.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(flags.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>())
    .bind(flags.iter().map(|f| f.business_id).collect::<Vec<_>>())
    .bind(flags.iter().map(|f| f.staff_id).collect::<Vec<_>>())
    .bind(flags.iter().map(|f| f.member_id).collect::<Vec<_>>())
    .bind(flags.iter().map(|f| f.amount).collect::<Vec<_>>())
    .bind(flags.iter().map(|f| f.transaction_id).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

/// Flags, newest first, of one business or of all.
pub async fn page(
    db: impl PgExecutor<'_>,
    business_id: Option<Uuid>,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<Flag>> {
    let rows: Vec<Flag> = sqlx::query_as(
        "SELECT id, kind, business_id, staff_id, member_id, amount, transaction_id, created_at
         FROM fraud_flags
         WHERE ($1::uuid IS NULL OR business_id = $1)
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(business_id)
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
