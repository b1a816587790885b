//! Media rows: uploads asked for, checked, processed and attached to businesses and events
//! (migration `…070003_media.sql`). The bytes live in the object store.

use crate::states;
use domain::media::Purpose;
use sqlx::{FromRow, PgExecutor, Postgres, Row, Transaction, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    /// Asked for; waiting for the file.
    Pending,
    /// Checked; the thumbnail is on the way.
    Processing,
    Ready,
    /// Refused (`rejection` says why).
    Rejected,
    /// By a newer logo, cover or video.
    Replaced,
}

impl MediaStatus {
    pub const ALL: [MediaStatus; 5] = [
        Self::Pending,
        Self::Processing,
        Self::Ready,
        Self::Rejected,
        Self::Replaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Rejected => "rejected",
            Self::Replaced => "replaced",
        }
    }
}

domain::parse_by_name!(MediaStatus);

#[derive(Debug, Clone)]
pub struct Media {
    pub id: Uuid,
    pub purpose: Purpose,
    pub business_id: Option<Uuid>,
    pub event_id: Option<Uuid>,
    pub declared_type: String,
    pub declared_size: i64,
    pub content_type: Option<String>,
    pub size: Option<i64>,
    pub object_key: String,
    pub thumbnail_key: Option<String>,
    pub status: MediaStatus,
    pub rejection: Option<String>,
    pub uploaded_by: Uuid,
    pub upload_expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
}

/// By hand for the purpose and the status: a name this build does not know is an error
/// naming the upload.
impl FromRow<'_, PgRow> for Media {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            purpose: states::column(row, "media", id, "purpose")?,
            business_id: row.try_get("business_id")?,
            event_id: row.try_get("event_id")?,
            declared_type: row.try_get("declared_type")?,
            declared_size: row.try_get("declared_size")?,
            content_type: row.try_get("content_type")?,
            size: row.try_get("size")?,
            object_key: row.try_get("object_key")?,
            thumbnail_key: row.try_get("thumbnail_key")?,
            status: states::column(row, "media", id, "status")?,
            rejection: row.try_get("rejection")?,
            uploaded_by: row.try_get("uploaded_by")?,
            upload_expires_at: row.try_get("upload_expires_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

macro_rules! media_columns {
    () => {
        "id, purpose, business_id, event_id, declared_type, declared_size, content_type, size,
    object_key, thumbnail_key, status, rejection, uploaded_by, upload_expires_at, created_at"
    };
}

/// An upload asked for.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub id: Uuid,
    pub purpose: Purpose,
    pub business_id: Option<Uuid>,
    pub event_id: Option<Uuid>,
    pub declared_type: String,
    pub declared_size: i64,
    pub object_key: String,
    pub uploaded_by: Uuid,
    pub upload_expires_at: OffsetDateTime,
}

pub async fn create(db: impl PgExecutor<'_>, new: &NewUpload) -> sqlx::Result<Media> {
    sqlx::query_as(concat!(
        "INSERT INTO media (id, purpose, business_id, event_id, declared_type, declared_size,
                            object_key, uploaded_by, upload_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING ",
        media_columns!()
    ))
    .bind(new.id)
    .bind(new.purpose.as_str())
    .bind(new.business_id)
    .bind(new.event_id)
    .bind(&new.declared_type)
    .bind(new.declared_size)
    .bind(&new.object_key)
    .bind(new.uploaded_by)
    .bind(new.upload_expires_at)
    .fetch_one(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Media>> {
    sqlx::query_as(concat!(
        "SELECT ",
        media_columns!(),
        " FROM media WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The checked object's real type and size; `pending` → `processing`. `None` if it was not
/// pending any more (a concurrent completion got there first).
pub async fn start_processing(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    content_type: &str,
    size: i64,
) -> sqlx::Result<Option<Media>> {
    sqlx::query_as(concat!(
        "UPDATE media SET status = 'processing', content_type = $2, size = $3, updated_at = now()
         WHERE id = $1 AND status = 'pending'
         RETURNING ",
        media_columns!()
    ))
    .bind(id)
    .bind(content_type)
    .bind(size)
    .fetch_optional(&mut **tx)
    .await
}

/// Refused, with the reason; from `pending` or `processing` only.
pub async fn reject(db: impl PgExecutor<'_>, id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE media SET status = 'rejected', rejection = $2, updated_at = now()
         WHERE id = $1 AND status IN ('pending', 'processing')",
    )
    .bind(id)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(())
}

/// `processing` → `ready` with its thumbnail; a logo, cover or video replaces the older one
/// of the same business, event or app. `false` if it was not processing any more.
pub async fn finish(
    tx: &mut Transaction<'_, Postgres>,
    media: &Media,
    thumbnail_key: Option<&str>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE media SET status = 'ready', thumbnail_key = $2, updated_at = now()
         WHERE id = $1 AND status = 'processing'",
    )
    .bind(media.id)
    .bind(thumbnail_key)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if done == 0 {
        return Ok(false);
    }
    if media.purpose.is_single() {
        sqlx::query(
            "UPDATE media SET status = 'replaced', updated_at = now()
             WHERE status = 'ready' AND purpose = $2 AND id <> $1
               AND business_id IS NOT DISTINCT FROM $3 AND event_id IS NOT DISTINCT FROM $4",
        )
        .bind(media.id)
        .bind(media.purpose.as_str())
        .bind(media.business_id)
        .bind(media.event_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// Ready media of these businesses, oldest first.
pub async fn of_businesses(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Media>> {
    sqlx::query_as(concat!(
        "SELECT ",
        media_columns!(),
        " FROM media WHERE status = 'ready' AND business_id = ANY($1) ORDER BY created_at, id"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Ready media of these events, oldest first.
pub async fn of_events(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Media>> {
    sqlx::query_as(concat!(
        "SELECT ",
        media_columns!(),
        " FROM media WHERE status = 'ready' AND event_id = ANY($1) ORDER BY created_at, id"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// The current welcome video.
pub async fn onboarding_video(db: impl PgExecutor<'_>) -> sqlx::Result<Option<Media>> {
    sqlx::query_as(concat!(
        "SELECT ",
        media_columns!(),
        " FROM media WHERE status = 'ready' AND purpose = 'onboarding_video'
         ORDER BY created_at DESC, id DESC LIMIT 1"
    ))
    .fetch_optional(db)
    .await
}
