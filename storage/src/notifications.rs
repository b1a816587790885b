//! The record of every SMS, push and e-mail: who, what, through whom, and what the provider said.
//!
//! A message is checked before it is sent (`sent_before`: a retried or duplicated job finds
//! it and sends nothing) and recorded once its outcome is known (`record`), in one commit.
//! That record is written with `synchronous_commit = off`: losing it in a crash costs at most
//! one repeated message, never money, and it saves a WAL flush per message.

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Push,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Self::Sms, Self::Push, Self::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Push => "push",
            Self::Email => "email",
        }
    }
}

/// Where a message stands (`notifications.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Allowed by the table; this build records a message only once its outcome is known.
    Sending,
    Sent,
    Failed,
    /// Waiting for the end of quiet hours.
    Scheduled,
    /// Not sent, on purpose.
    Skipped,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 5] = [
        Self::Sending,
        Self::Sent,
        Self::Failed,
        Self::Scheduled,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Scheduled => "scheduled",
            Self::Skipped => "skipped",
        }
    }
}

domain::parse_by_name!(Channel, MessageStatus);

#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub user_id: Option<Uuid>,
    pub phone: Option<&'a str>,
    /// The address an e-mail went to.
    pub email: Option<&'a str>,
    pub channel: Channel,
    pub template: &'a str,
    pub title: Option<&'a str>,
    /// What is kept of the text (secrets such as OTP codes are masked by the caller).
    pub body: &'a str,
    pub dedupe_key: &'a str,
    pub provider: &'a str,
}

/// How a send attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Sent {
        reply: &'a str,
    },
    Failed {
        error: &'a str,
    },
    /// Waiting for the end of quiet hours.
    Scheduled {
        send_after: OffsetDateTime,
    },
    /// Not sent, on purpose (the member withdrew her consent): `reason` says why.
    Skipped {
        reason: &'a str,
    },
}

/// True if this message (by its dedupe key) was sent already.
pub async fn sent_before(db: &PgPool, dedupe_key: &str) -> sqlx::Result<bool> {
    Ok(!sent_among(db, &[dedupe_key.to_owned()]).await?.is_empty())
}

/// Those of these messages (by their dedupe keys) that were sent or skipped already.
pub async fn sent_among(
    db: impl PgExecutor<'_>,
    dedupe_keys: &[String],
) -> sqlx::Result<Vec<String>> {
    if dedupe_keys.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "SELECT dedupe_key FROM notifications
         WHERE dedupe_key = ANY($1) AND status IN ('sent', 'skipped')",
    )
    .bind(dedupe_keys)
    .fetch_all(db)
    .await
}

/// Records the outcome of an attempt (the latest attempt wins: a retry that succeeds turns a
/// `failed` into `sent`).
pub async fn record(
    db: &PgPool,
    new: &NewNotification<'_>,
    outcome: Outcome<'_>,
) -> sqlx::Result<()> {
    record_all(db, &[(new.clone(), outcome)]).await
}

/// Records the outcomes of several attempts in one statement (as [`record`] does each; a
/// dedupe key appears at most once).
pub async fn record_all(
    db: &PgPool,
    attempts: &[(NewNotification<'_>, Outcome<'_>)],
) -> sqlx::Result<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&(NewNotification<'_>, Outcome<'_>)) -> Option<String>| {
        attempts.iter().map(f).collect::<Vec<_>>()
    };
    let (mut status, mut reply, mut error, mut send_after) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (_, outcome) in attempts {
        let (s, r, e, a) = match *outcome {
            Outcome::Sent { reply } => (MessageStatus::Sent, Some(reply), None, None),
            Outcome::Failed { error } => (MessageStatus::Failed, None, Some(error), None),
            Outcome::Scheduled { send_after } => {
                (MessageStatus::Scheduled, None, None, Some(send_after))
            }
            Outcome::Skipped { reason } => (MessageStatus::Skipped, None, Some(reason), None),
        };
        status.push(s.as_str());
        reply.push(r);
        error.push(e);
        send_after.push(a);
    }
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO notifications (user_id, phone, channel, template, title, body, dedupe_key, status, provider,
                                    provider_reply, error, send_after, sent_at, email)
         SELECT user_id, phone, channel, template, title, body, dedupe_key, status, provider,
                provider_reply, error, send_after, CASE WHEN status = 'sent' THEN now() END, email
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[])
              AS a(user_id, phone, channel, template, title, body, dedupe_key, status, provider,
                   provider_reply, error, send_after, email)
         ON CONFLICT (dedupe_key) DO UPDATE SET
             status = EXCLUDED.status, provider = EXCLUDED.provider, provider_reply = EXCLUDED.provider_reply,
             error = EXCLUDED.error, send_after = EXCLUDED.send_after, sent_at = EXCLUDED.sent_at
         WHERE notifications.status NOT IN ('sent', 'skipped')",
    )
    .bind(attempts.iter().map(|(n, _)| n.user_id).collect::<Vec<_>>())
    .bind(column(|(n, _)| n.phone.map(str::to_owned)))
    .bind(column(|(n, _)| Some(n.channel.as_str().to_owned())))
    .bind(column(|(n, _)| Some(n.template.to_owned())))
    .bind(column(|(n, _)| n.title.map(str::to_owned)))
    .bind(column(|(n, _)| Some(n.body.to_owned())))
    .bind(column(|(n, _)| Some(n.dedupe_key.to_owned())))
    .bind(status)
    .bind(column(|(n, _)| Some(n.provider.to_owned())))
    .bind(reply)
    .bind(error)
    .bind(send_after)
    .bind(column(|(n, _)| n.email.map(str::to_owned)))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
