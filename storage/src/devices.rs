//! Members' devices for push notifications.

use crate::states;
use sqlx::{FromRow, PgExecutor, Row, postgres::PgRow};
use uuid::Uuid;

/// The phone's operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Self::Ios, Self::Android];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ios => "ios",
            Self::Android => "android",
        }
    }
}

domain::parse_by_name!(Platform);

#[derive(Debug, Clone)]
pub struct Device {
    pub id: Uuid,
    pub user_id: Uuid,
    pub token: String,
    pub platform: Platform,
}

/// By hand for the platform: a name this build does not know is an error naming the device.
impl FromRow<'_, PgRow> for Device {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            user_id: row.try_get("user_id")?,
            token: row.try_get("token")?,
            platform: states::column(row, "devices", id, "platform")?,
        })
    }
}

/// What became of a registration.
#[derive(Debug)]
pub enum Registered {
    /// The token is hers now (new, re-registered, or taken over from a deleted account).
    Device(Device),
    /// Another live member has the token; nothing changed but the sighting.
    TakenByAnother,
    /// She already has `max` other devices.
    TooMany,
    /// The member was deleted meanwhile.
    Gone,
}

/// Registers a token for `user_id`, at most `max` devices per member (re-registering one of
/// her own tokens is not a new device). A token another live member has stays hers
/// (`TakenByAnother`): a stranger who learns it must not take her pushes; a deleted
/// member's device is taken over. Either way the caller is recorded as a sighting of the
/// token: referrals look for one device behind two accounts.
pub async fn register(
    db: &sqlx::PgPool,
    user_id: Uuid,
    token: &str,
    platform: Platform,
    max: u64,
) -> sqlx::Result<Registered> {
    let mut tx = db.begin().await?;
    // Her row locked: two registrations at once cannot both pass the cap.
    let live: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if live.is_none() {
        return Ok(Registered::Gone);
    }
    // The sighting is kept whatever happens to the registration.
    sqlx::query(
        "INSERT INTO device_sightings (token_hash, user_id)
         VALUES (encode(sha256(convert_to($2, 'UTF8')), 'hex'), $1)
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(token)
    .execute(&mut *tx)
    .await?;
    let owner: Option<(Uuid, bool)> = sqlx::query_as(
        "SELECT d.user_id, u.deleted_at IS NULL FROM devices d JOIN users u ON u.id = d.user_id
         WHERE d.token = $1 FOR UPDATE OF d",
    )
    .bind(token)
    .fetch_optional(&mut *tx)
    .await?;
    match owner {
        Some((owner, true)) if owner != user_id => {
            tx.commit().await?;
            return Ok(Registered::TakenByAnother);
        }
        Some((owner, _)) if owner == user_id => {}
        _ => {
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            if count as u64 >= max {
                tx.commit().await?;
                return Ok(Registered::TooMany);
            }
        }
    }
    let device: Device = sqlx::query_as(
        "INSERT INTO devices (user_id, token, platform) VALUES ($1, $2, $3)
         ON CONFLICT (token) DO UPDATE
            SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform, last_seen_at = now()
         RETURNING id, user_id, token, platform",
    )
    .bind(user_id)
    .bind(token)
    .bind(platform.as_str())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Registered::Device(device))
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

/// The devices of these members, each member's in the order she registered them.
pub async fn of_users(db: impl PgExecutor<'_>, user_ids: &[Uuid]) -> sqlx::Result<Vec<Device>> {
    sqlx::query_as(
        "SELECT id, user_id, token, platform FROM devices WHERE user_id = ANY($1)
         ORDER BY user_id, created_at",
    )
    .bind(user_ids)
    .fetch_all(db)
    .await
}
