//! QR scan requests: what the member scanned, and what came of it.

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct ScanRequest {
    pub id: Uuid,
    pub user_id: Uuid,
    pub code: String,
    pub qr: Option<Value>,
    pub redeem_bonus: Decimal,
    pub coupon_id: Option<Uuid>,
    pub state: String,
    pub result: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub transaction_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    /// Whether the person who issued the scanned QR code is still owner or staff of its
    /// business (read by [`start`] only: a removed cashier's unused codes stop working).
    #[sqlx(default)]
    pub issuer_on_staff: bool,
}

macro_rules! scan_columns {
    () => {
        "id, user_id, code, qr, redeem_bonus, coupon_id, state, result, error_code,
    error_message, transaction_id, created_at"
    };
}

#[derive(Debug, Clone)]
pub struct NewScan {
    pub id: Uuid,
    pub user_id: Uuid,
    pub code: String,
    pub qr: Option<Value>,
    pub redeem_bonus: Decimal,
    pub coupon_id: Option<Uuid>,
}

pub async fn insert(db: impl PgExecutor<'_>, scan: &NewScan) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO scan_requests (id, user_id, code, qr, redeem_bonus, coupon_id) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(scan.id)
    .bind(scan.user_id)
    .bind(&scan.code)
    .bind(&scan.qr)
    .bind(scan.redeem_bonus)
    .bind(scan.coupon_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Scans still waiting after `older_than_s` seconds: their job was lost (a crash between the
/// insert and the push, or Redis forgot it), or is still retrying.
pub async fn stuck(
    db: impl PgExecutor<'_>,
    older_than_s: i64,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM scan_requests
         WHERE state IN ('pending', 'processing') AND updated_at < now() - make_interval(secs => $1)
         ORDER BY updated_at LIMIT $2",
    )
    .bind(older_than_s as f64)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<ScanRequest>> {
    sqlx::query_as(concat!(
        "SELECT ",
        scan_columns!(),
        " FROM scan_requests WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A member's own scan; another member's scan is as good as absent.
pub async fn get_for_user(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<ScanRequest>> {
    sqlx::query_as(concat!(
        "SELECT ",
        scan_columns!(),
        " FROM scan_requests WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Locks unfinished scans for processing (in id order, so concurrent batches cannot
/// deadlock); finished ones (a job delivered again after its success) are left out. Each
/// says whether its QR code's issuer is still on the business's staff (in the same
/// statement: no round trip more per scan batch).
pub async fn start(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[Uuid],
) -> sqlx::Result<Vec<ScanRequest>> {
    sqlx::query_as(concat!(
        "WITH locked AS (
             SELECT id AS locked_id FROM scan_requests
             WHERE id = ANY($1) AND state IN ('pending', 'processing')
             ORDER BY id FOR UPDATE
         )
         UPDATE scan_requests s SET state = 'processing', updated_at = now()
         FROM locked WHERE s.id = locked.locked_id
         RETURNING ",
        scan_columns!(),
        ", EXISTS (SELECT 1 FROM business_staff bs
                   WHERE bs.business_id = (s.qr->>'business_id')::uuid
                     AND bs.user_id = (s.qr->>'issued_by')::uuid
                     AND bs.role IN ('owner', 'staff')) AS issuer_on_staff"
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await
}

/// Scans done: each with its purchase and the result the member sees.
pub async fn complete(
    tx: &mut Transaction<'_, Postgres>,
    done: &[(Uuid, Uuid, Value)],
) -> sqlx::Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE scan_requests s SET state = 'done', transaction_id = d.transaction_id, result = d.result,
                updated_at = now()
         FROM UNNEST($1::uuid[], $2::uuid[], $3::jsonb[]) AS d(id, transaction_id, result)
         WHERE s.id = d.id AND s.id = ANY($1)",
    )
    .bind(done.iter().map(|d| d.0).collect::<Vec<_>>())
    .bind(done.iter().map(|d| d.1).collect::<Vec<_>>())
    .bind(done.iter().map(|d| d.2.clone()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Scans refused: each with a code and a message for the member.
pub async fn refuse(
    tx: &mut Transaction<'_, Postgres>,
    refused: &[(Uuid, &str, &str)],
) -> sqlx::Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE scan_requests s SET state = 'failed', error_code = r.code, error_message = r.message,
                updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS r(id, code, message)
         WHERE s.id = r.id AND s.id = ANY($1) AND s.state <> 'done'",
    )
    .bind(refused.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(refused.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(refused.iter().map(|r| r.2).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A scan that could not even be queued.
pub async fn fail(
    db: impl PgExecutor<'_>,
    id: Uuid,
    code: &str,
    message: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE scan_requests SET state = 'failed', error_code = $2, error_message = $3, updated_at = now()
         WHERE id = $1 AND state <> 'done'",
    )
    .bind(id)
    .bind(code)
    .bind(message)
    .execute(db)
    .await?;
    Ok(())
}
