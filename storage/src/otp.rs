//! Login codes. Only a keyed hash of each code is stored; attempts are counted per code.

use sqlx::{FromRow, PgExecutor, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// How many wrong guesses lock a code.
pub const MAX_ATTEMPTS: i32 = 5;

#[derive(Debug, Clone, FromRow)]
pub struct OtpCode {
    pub id: Uuid,
    pub phone: String,
    pub code_hash: String,
    pub attempts: i32,
    pub expires_at: OffsetDateTime,
    pub consumed_at: Option<OffsetDateTime>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    phone: &str,
    code_hash: &str,
    expires_at: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO otp_codes (id, phone, code_hash, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(phone)
        .bind(code_hash)
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM otp_codes WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<OtpCode>> {
    sqlx::query_as("SELECT id, phone, code_hash, attempts, expires_at, consumed_at FROM otp_codes WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The newest code sent to `phone`, locked for this transaction so that concurrent guesses
/// are counted one by one.
pub async fn latest_for_update(
    tx: &mut Transaction<'_, Postgres>,
    phone: &str,
) -> sqlx::Result<Option<OtpCode>> {
    sqlx::query_as(
        "SELECT id, phone, code_hash, attempts, expires_at, consumed_at FROM otp_codes
         WHERE phone = $1 ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
    )
    .bind(phone)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn record_failed_attempt(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> sqlx::Result<i32> {
    sqlx::query_scalar(
        "UPDATE otp_codes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await
}

pub async fn consume(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE otp_codes SET consumed_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
