//! Members' devices for push notifications.

use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct Device {
    pub id: Uuid,
    pub user_id: Uuid,
    pub token: String,
    pub platform: String,
}

/// Registers a token for `user_id`. A token is one device: if another account had it (the
/// phone changed hands), it moves to this one, and both stay recorded as its accounts. `None` if the member was deleted meanwhile.
pub async fn register(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    token: &str,
    platform: &str,
) -> sqlx::Result<Option<Device>> {
    // The sighting is kept after the token moves on: referrals look for one device behind
    // two accounts.
    sqlx::query_as(
        "WITH d AS (
            INSERT INTO devices (user_id, token, platform)
            SELECT id, $2, $3 FROM users WHERE id = $1 AND deleted_at IS NULL
            ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform, last_seen_at = now()
            RETURNING id, user_id, token, platform
         ), seen AS (
            INSERT INTO device_sightings (token_hash, user_id)
            SELECT encode(sha256(convert_to(token, 'UTF8')), 'hex'), user_id FROM d
            ON CONFLICT DO NOTHING
         )
         SELECT id, user_id, token, platform FROM d",
    )
    .bind(user_id)
    .bind(token)
    .bind(platform)
    .fetch_optional(db)
    .await
}

pub async fn of_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<Device>> {
    sqlx::query_as(
        "SELECT id, user_id, token, platform FROM devices WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Forgets a token the push provider called dead.
pub async fn forget(db: impl PgExecutor<'_>, device_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM devices WHERE id = $1")
        .bind(device_id)
        .execute(db)
        .await?;
    Ok(())
}
