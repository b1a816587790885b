//! The audit log: every change made by an operator or a business owner, append-only (the
//! table's triggers refuse updates and deletes).
//!
//! Write an entry with [`record`] in the same transaction as the change it describes, so
//! that a change without its entry (or an entry without its change) cannot happen. The API's
//! `audit` module wraps it with the actor and the request id.

use crate::page::{Cursor, Page};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

/// One change, as it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry<'a> {
    /// Who acted; `None` for the command line and the system itself.
    pub actor_id: Option<Uuid>,
    /// What was done, `area.verb` (`business.update`, `job.retry`).
    pub action: &'a str,
    /// What kind of thing it was done to (`business`, `job`, `user`).
    pub target_type: &'a str,
    pub target_id: Option<String>,
    /// The target before and after, as operators see it: never a secret.
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<&'a str>,
}

/// An entry as read back.
#[derive(Debug, Clone, FromRow)]
pub struct Entry {
    pub id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Appends an entry (in the caller's transaction, with the change it records).
pub async fn record(db: impl PgExecutor<'_>, entry: &NewEntry<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, actor_id, action, target_type, target_id, before, after, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(entry.actor_id)
    .bind(entry.action)
    .bind(entry.target_type)
    .bind(&entry.target_id)
    .bind(&entry.before)
    .bind(&entry.after)
    .bind(entry.request_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor_id: Option<Uuid>,
    pub target_id: Option<String>,
}

/// Entries, newest first.
pub async fn page(
    db: impl PgExecutor<'_>,
    filter: &Filter,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<Entry>> {
    let rows: Vec<Entry> = sqlx::query_as(
        "SELECT id, actor_id, action, target_type, target_id, before, after, request_id, created_at
         FROM audit_log
         WHERE ($1::uuid IS NULL OR actor_id = $1)
           AND ($2::text IS NULL OR target_id = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(filter.actor_id)
    .bind(&filter.target_id)
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
