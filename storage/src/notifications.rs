//! The record of every SMS and push: who, what, through whom, and what the provider said.
//! The dedupe key makes a retried send find its earlier attempt instead of sending twice.

use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub user_id: Option<Uuid>,
    pub phone: Option<&'a str>,
    pub channel: &'a str,
    pub template: &'a str,
    pub title: Option<&'a str>,
    /// What is kept of the text (secrets such as OTP codes are masked by the caller).
    pub body: &'a str,
    pub dedupe_key: &'a str,
    pub provider: &'a str,
}

/// What to do about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Send it: the row `id` records the attempt.
    Send(Uuid),
    /// It was sent before: do nothing.
    AlreadySent,
}

pub async fn begin(db: &PgPool, new: &NewNotification<'_>) -> sqlx::Result<Begun> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO notifications (user_id, phone, channel, template, title, body, dedupe_key, status, provider)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'sending', $8)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(new.user_id)
    .bind(new.phone)
    .bind(new.channel)
    .bind(new.template)
    .bind(new.title)
    .bind(new.body)
    .bind(new.dedupe_key)
    .bind(new.provider)
    .fetch_optional(db)
    .await?;
    if let Some(id) = inserted {
        return Ok(Begun::Send(id));
    }
    let (id, status): (Uuid, String) =
        sqlx::query_as("SELECT id, status FROM notifications WHERE dedupe_key = $1")
            .bind(new.dedupe_key)
            .fetch_one(db)
            .await?;
    Ok(match status.as_str() {
        "sent" | "skipped" => Begun::AlreadySent,
        _ => Begun::Send(id),
    })
}

pub async fn mark_sent(db: &PgPool, id: Uuid, provider_reply: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notifications SET status = 'sent', provider_reply = $2, error = NULL, sent_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(provider_reply)
    .execute(db)
    .await?;
    Ok(())
}

/// Records that a marketing message waits for the end of quiet hours.
pub async fn mark_scheduled(
    db: &PgPool,
    id: Uuid,
    send_after: time::OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE notifications SET status = 'scheduled', send_after = $2 WHERE id = $1")
        .bind(id)
        .bind(send_after)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn mark_failed(db: &PgPool, id: Uuid, error: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE notifications SET status = 'failed', error = $2 WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(db)
        .await?;
    Ok(())
}
