//! Member support: what operators read about one member beyond what the member herself
//! reads (`loyalty` has her balance, ledger and purchases): all her coupons, her devices and
//! the messages sent to her. Reads only; what operators change goes through `users`
//! (blocking) and `ledger::adjust` (corrections).

use crate::{
    coupons::Coupon,
    devices::Platform,
    notifications::{Channel, MessageStatus},
    page::{Cursor, Page},
    states,
};
use sqlx::{FromRow, PgExecutor, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// Her latest `limit` coupons, newest first, used and expired ones included.
pub async fn coupons(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<Coupon>> {
    sqlx::query_as(
        "SELECT id, code, user_id, business_id, discount_type, discount_value, expires_at, redeemed_at,
                expired_at, source_chain_id, created_at
         FROM coupons WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A device, without its push token (a credential to reach her phone).
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: Uuid,
    pub platform: Platform,
    pub created_at: OffsetDateTime,
    pub last_seen_at: Option<OffsetDateTime>,
}

impl FromRow<'_, PgRow> for DeviceRow {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            platform: states::column(row, "devices", id, "platform")?,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
        })
    }
}

pub async fn devices(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<DeviceRow>> {
    sqlx::query_as(
        "SELECT id, platform, created_at, last_seen_at FROM devices WHERE user_id = $1
         ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// A message sent (or held, skipped, failed) to her, without the number it went to.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: Uuid,
    pub channel: Channel,
    pub template: String,
    pub title: Option<String>,
    pub body: String,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
    pub sent_at: Option<OffsetDateTime>,
}

/// By hand for the channel and the status: a name this build does not know is an error
/// naming the message.
impl FromRow<'_, PgRow> for MessageRow {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            channel: states::column(row, "notifications", id, "channel")?,
            template: row.try_get("template")?,
            title: row.try_get("title")?,
            body: row.try_get("body")?,
            status: states::column(row, "notifications", id, "status")?,
            error: row.try_get("error")?,
            created_at: row.try_get("created_at")?,
            sent_at: row.try_get("sent_at")?,
        })
    }
}

/// Messages to her, newest first. Login codes are never among them: they go to a phone, not
/// to a member (no `user_id`), and the development provider's record holds the code itself,
/// which an operator must never read; the template is left out here as well.
pub async fn messages_page(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<MessageRow>> {
    let rows: Vec<MessageRow> = sqlx::query_as(
        "SELECT id, channel, template, title, body, status, error, created_at, sent_at
         FROM notifications
         WHERE user_id = $1 AND template <> 'otp'
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
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
