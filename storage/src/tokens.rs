//! Refresh tokens: stored as SHA-256 hashes, rotated on every use within a family.
//! Presenting a token that was already rotated means it leaked: the whole family is revoked.

use crate::secret::sha256_hex;
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct RefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current; it is now rotated and the new one stored in the same family
    /// (the session, `sid` in access tokens).
    Rotated { user_id: Uuid, family_id: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
    /// Already rotated: a replay. The family is now revoked.
    Reused { family_id: Uuid },
}

pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
    family_id: Uuid,
    token: &str,
    expires_at: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(family_id)
    .bind(sha256_hex(token))
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rotates `old` to `new` in one transaction.
pub async fn rotate(
    db: &PgPool,
    old: &str,
    new: &str,
    new_expires_at: OffsetDateTime,
) -> sqlx::Result<Rotation> {
    let mut tx = db.begin().await?;
    let current: Option<RefreshToken> = sqlx::query_as(
        "SELECT id, user_id, family_id, expires_at, rotated_at, revoked_at FROM refresh_tokens
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(sha256_hex(old))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(current) = current else {
        return Ok(Rotation::Invalid);
    };
    if current.rotated_at.is_some() {
        revoke_family_in(&mut tx, current.family_id).await?;
        tx.commit().await?;
        return Ok(Rotation::Reused {
            family_id: current.family_id,
        });
    }
    if current.revoked_at.is_some() || current.expires_at <= OffsetDateTime::now_utc() {
        return Ok(Rotation::Invalid);
    }
    sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE id = $1")
        .bind(current.id)
        .execute(&mut *tx)
        .await?;
    insert(
        &mut tx,
        current.user_id,
        current.family_id,
        new,
        new_expires_at,
    )
    .await?;
    tx.commit().await?;
    Ok(Rotation::Rotated {
        user_id: current.user_id,
        family_id: current.family_id,
    })
}

/// Revokes the family of `token` if it belongs to `user_id` and returns it; `None` if there
/// was no such token.
pub async fn revoke(db: &PgPool, user_id: Uuid, token: &str) -> sqlx::Result<Option<Uuid>> {
    let mut tx = db.begin().await?;
    let family: Option<Uuid> = sqlx::query_scalar(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
    )
    .bind(sha256_hex(token))
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(family) = family else {
        return Ok(None);
    };
    revoke_family_in(&mut tx, family).await?;
    tx.commit().await?;
    Ok(Some(family))
}

/// Revokes session `family_id` of `user_id` (its refresh tokens).
pub async fn revoke_session(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    family_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes every session of `user_id` (a role taken away, an account blocked or deleted)
/// and returns their ids, for the access tokens' revocation list (`storage::sessions`).
pub async fn revoke_all(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "WITH revoked AS (
             UPDATE refresh_tokens SET revoked_at = now()
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
             RETURNING family_id
         )
         SELECT DISTINCT family_id FROM revoked",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

async fn revoke_family_in(tx: &mut Transaction<'_, Postgres>, family_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
