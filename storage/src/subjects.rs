//! Whom a job is about: the member and business behind the ids a job payload carries (a
//! scan, a transaction, a phone), so that operators can find the jobs of one member or one
//! business.

use sqlx::PgPool;
use uuid::Uuid;

/// A scan request's member and, when the QR was read, its business.
pub async fn of_scans(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<(Uuid, Uuid, Option<Uuid>)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT id, user_id, (qr->>'business_id')::uuid FROM scan_requests WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

/// A transaction's member and business.
pub async fn of_transactions(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<(Uuid, Uuid, Uuid)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as("SELECT id, user_id, business_id FROM transactions WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(db)
        .await
}

/// The members with these phones (E.164).
pub async fn of_phones(db: &PgPool, phones: &[String]) -> sqlx::Result<Vec<(String, Uuid)>> {
    if phones.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as("SELECT phone, id FROM users WHERE phone = ANY($1)")
        .bind(phones)
        .fetch_all(db)
        .await
}
