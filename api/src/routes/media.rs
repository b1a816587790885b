//! Media: presigned uploads straight to the object store, checked on completion, and the
//! onboarding (`GET /app/onboarding`).
//!
//! 1. `POST /media/uploads {purpose, content_type, size, business_id | event_id}` → a
//!    `media_id` and a presigned `PUT` URL valid [`UPLOAD_TTL`].
//! 2. The client `PUT`s the file there (the API never carries it).
//! 3. `POST /media/{id}/complete`: the object's size and its real type — sniffed from its
//!    first bytes, not what the client declared — must match the declaration and the
//!    purpose, or the upload is refused (422) and the object deleted; otherwise the `media`
//!    job decodes it, makes a thumbnail and attaches it.
//!
//! Business logos and photos: the business's owner or a superadmin. Event covers and the
//! onboarding video: a superadmin.

use crate::{
    auth::Auth,
    envelope::Envelope,
    error::{
        ApiError, ApiResult, BAD_REQUEST, CONFLICT, JSON_BODY, NOT_FOUND, SERVER, SIGNED_IN,
        UNPROCESSABLE,
    },
    state::AppState,
    wire::Text,
};
use adapters::objects::ObjectStorage;
use domain::media::{MediaType, Purpose, SNIFF_BYTES, sniff};
use jobs::{handlers::media::ProcessMedia, outbox};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags, param::Path, payload::Json};
use std::{sync::Arc, time::Duration};
use storage::media::{self, Media, MediaStatus, NewUpload};
use time::OffsetDateTime;
use uuid::Uuid;

/// How long a presigned upload URL works.
pub const UPLOAD_TTL: Duration = Duration::from_secs(15 * 60);
/// How long the image URLs in responses work: longer than a screen stays open.
pub const VIEW_TTL: Duration = Duration::from_secs(60 * 60);

#[derive(Tags)]
enum Tag {
    /// Logos, photos, covers and the welcome video.
    Media,
}

pub struct MediaApi {
    pub state: Arc<AppState>,
}

/// What an upload is for.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum PurposeParam {
    BusinessLogo,
    BusinessPhoto,
    EventCover,
    OnboardingVideo,
}

impl From<PurposeParam> for Purpose {
    fn from(value: PurposeParam) -> Self {
        match value {
            PurposeParam::BusinessLogo => Purpose::BusinessLogo,
            PurposeParam::BusinessPhoto => Purpose::BusinessPhoto,
            PurposeParam::EventCover => Purpose::EventCover,
            PurposeParam::OnboardingVideo => Purpose::OnboardingVideo,
        }
    }
}

#[derive(Debug, Object)]
pub struct UploadRequest {
    pub purpose: PurposeParam,
    /// `image/jpeg`, `image/png` or `image/webp`; `video/mp4` for the onboarding video.
    #[oai(validator(max_length = 100))]
    pub content_type: Text,
    /// Bytes: at most 10 MB for images, 200 MB for the video.
    pub size: i64,
    /// For business logos and photos.
    #[oai(nullable)]
    pub business_id: Option<Uuid>,
    /// For event covers.
    #[oai(nullable)]
    pub event_id: Option<Uuid>,
}

#[derive(Debug, Object)]
pub struct UploadTicket {
    pub media_id: Uuid,
    /// `PUT` the file's bytes here, then call `POST /media/{media_id}/complete`.
    pub upload_url: String,
    pub expires_at: OffsetDateTime,
}

#[derive(ApiResponse)]
pub enum UploadCreated {
    #[oai(status = 201)]
    Created(Json<Envelope<UploadTicket>>),
}

/// An upload and where it stands.
#[derive(Debug, Object)]
pub struct MediaView {
    pub id: Uuid,
    pub purpose: String,
    /// `pending` (waiting for the file), `processing` (checked; thumbnail on the way),
    /// `ready`, `rejected` or `replaced` (by a newer logo, cover or video).
    pub status: String,
    /// The sniffed type, once checked.
    #[oai(nullable)]
    pub content_type: Option<String>,
    #[oai(nullable)]
    pub size: Option<i64>,
    #[oai(nullable)]
    pub rejection: Option<String>,
}

fn media_view(m: Media) -> MediaView {
    MediaView {
        id: m.id,
        purpose: m.purpose.as_str().to_owned(),
        status: m.status.as_str().to_owned(),
        content_type: m.content_type,
        size: m.size,
        rejection: m.rejection,
    }
}

#[derive(ApiResponse)]
pub enum Completed {
    /// Checked: the `media` job makes the thumbnail and attaches it.
    #[oai(status = 202)]
    Accepted(Json<Envelope<MediaView>>),
    /// Already completed; nothing changed.
    #[oai(status = 200)]
    AlreadyDone(Json<Envelope<MediaView>>),
}

/// An image (or the video) as clients show it.
#[derive(Debug, Clone, Object)]
pub struct ImageView {
    pub id: Uuid,
    /// `business_logo`, `business_photo`, `event_cover` or `onboarding_video`.
    pub purpose: String,
    pub content_type: String,
    /// Valid one hour.
    pub url: String,
    /// A JPEG of at most 320 px a side (images only); valid one hour.
    #[oai(nullable)]
    pub thumbnail_url: Option<String>,
}

/// The views of ready media, URLs signed for [`VIEW_TTL`]. The signing is local (no call to
/// the store); a failure leaves the image out rather than failing the page.
pub(crate) async fn image_views(objects: &ObjectStorage, items: &[Media]) -> Vec<ImageView> {
    let mut views = Vec::with_capacity(items.len());
    for m in items {
        let Ok(url) = objects.presign_get(&m.object_key, VIEW_TTL).await else {
            tracing::warn!(media_id = %m.id, "could not sign a media URL");
            continue;
        };
        let thumbnail_url = match &m.thumbnail_key {
            Some(key) => objects.presign_get(key, VIEW_TTL).await.ok(),
            None => None,
        };
        views.push(ImageView {
            id: m.id,
            purpose: m.purpose.as_str().to_owned(),
            content_type: m.content_type.clone().unwrap_or_default(),
            url,
            thumbnail_url,
        });
    }
    views
}

/// A slide of the onboarding.
#[derive(Debug, Object)]
pub struct SlideView {
    pub title: String,
    pub body: String,
}

#[derive(Debug, Object)]
pub struct OnboardingView {
    /// The welcome video, when one is uploaded.
    #[oai(nullable)]
    pub video: Option<ImageView>,
    pub slides: Vec<SlideView>,
}

fn unreachable_store(e: adapters::objects::ObjectError) -> ApiError {
    tracing::error!(error = %e, "object store unavailable");
    ApiError::Unavailable(Json(crate::envelope::ErrorEnvelope::new(
        "storage_unavailable",
        "File storage is unavailable; try again shortly.",
    )))
}

fn media_not_found() -> ApiError {
    ApiError::not_found("media_not_found", "No such upload.")
}

impl MediaApi {
    /// Whether `auth` may upload for this purpose and target.
    async fn authorize(
        &self,
        auth: &Auth,
        purpose: Purpose,
        business_id: Option<Uuid>,
    ) -> Result<(), ApiError> {
        if auth.0.is_superadmin() {
            return Ok(());
        }
        let owner = match (purpose, business_id) {
            (Purpose::BusinessLogo | Purpose::BusinessPhoto, Some(business_id)) => {
                storage::businesses::staff_role(&self.state.db, business_id, auth.user_id()).await?
                    == Some(domain::roles::StaffRole::Owner)
            }
            _ => false,
        };
        if owner {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "Business images need the business's owner or a superadmin; event covers and the onboarding video a superadmin.",
            ))
        }
    }

    /// Refuses a completed upload: the object goes, the row says why.
    async fn refuse(
        &self,
        item: &Media,
        code: &str,
        reason: String,
    ) -> Result<Completed, ApiError> {
        media::reject(&self.state.db, item.id, &reason).await?;
        if let Err(e) = self.state.objects.delete(&item.object_key).await {
            tracing::warn!(error = %e, media_id = %item.id, "a refused upload could not be deleted");
        }
        tracing::info!(media_id = %item.id, %reason, "upload refused");
        Err(ApiError::unprocessable(code, reason))
    }
}

#[OpenApi(tag = "Tag::Media")]
impl MediaApi {
    /// Ask to upload a file: answers a presigned `PUT` URL valid 15 minutes.
    #[oai(path = "/media/uploads", method = "post")]
    async fn create_upload(
        &self,
        auth: Auth,
        body: Json<UploadRequest>,
    ) -> ApiResult<UploadCreated, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }> {
        let purpose = Purpose::from(body.purpose);
        let (business_id, event_id) = match purpose {
            Purpose::BusinessLogo | Purpose::BusinessPhoto => (body.business_id, None),
            Purpose::EventCover => (None, body.event_id),
            Purpose::OnboardingVideo => (None, None),
        };
        self.authorize(&auth, purpose, business_id).await?;
        let missing = |field: &str| {
            ApiError::unprocessable("missing_target", format!("{purpose} needs {field}"))
        };
        let db = &self.state.db;
        match purpose {
            Purpose::BusinessLogo | Purpose::BusinessPhoto => {
                let id = business_id.ok_or_else(|| missing("business_id"))?;
                storage::businesses::get(db, id).await?.ok_or_else(|| {
                    ApiError::not_found("business_not_found", "No such business.")
                })?;
            }
            Purpose::EventCover => {
                let id = event_id.ok_or_else(|| missing("event_id"))?;
                let viewer = storage::events::Viewer {
                    user_id: auth.user_id(),
                    operator: true,
                };
                storage::events::get_visible(db, id, viewer)
                    .await?
                    .ok_or_else(|| ApiError::not_found("event_not_found", "No such event."))?;
            }
            Purpose::OnboardingVideo => {}
        }
        let declared = MediaType::from_mime(&body.content_type)
            .filter(|kind| purpose.accepts(*kind))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "unsupported_content_type",
                    format!(
                        "{purpose} takes {}",
                        MediaType::ALL
                            .into_iter()
                            .filter(|k| purpose.accepts(*k))
                            .map(MediaType::mime)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        if body.size <= 0 || body.size as u64 > purpose.max_bytes() {
            return Err(ApiError::unprocessable(
                "invalid_size",
                format!(
                    "size must be 1 to {} bytes for {purpose}",
                    purpose.max_bytes()
                ),
            )
            .into());
        }
        let id = Uuid::now_v7();
        let object_key = format!("media/{id}/original");
        let upload_url = self
            .state
            .objects
            .presign_put(&object_key, UPLOAD_TTL)
            .await
            .map_err(unreachable_store)?;
        let expires_at = OffsetDateTime::now_utc() + UPLOAD_TTL;
        media::create(
            db,
            &NewUpload {
                id,
                purpose,
                business_id,
                event_id,
                declared_type: declared.mime().to_owned(),
                declared_size: body.size,
                object_key,
                uploaded_by: auth.user_id(),
                upload_expires_at: expires_at,
            },
        )
        .await?;
        Ok(UploadCreated::Created(Json(Envelope::new(UploadTicket {
            media_id: id,
            upload_url,
            expires_at,
        }))))
    }

    /// The file is in the store: check it and process it. Its size must be the declared
    /// one (422 `size_mismatch`) and its real type, read from its first bytes, the declared
    /// one (422 `content_type_mismatch`); a refused file is deleted. Not uploaded yet: 409
    /// `upload_missing`.
    #[oai(path = "/media/:id/complete", method = "post")]
    async fn complete(
        &self,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<Completed, { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT | UNPROCESSABLE }>
    {
        let state = &self.state;
        let item = media::get(&state.db, id.0)
            .await?
            .filter(|m| m.uploaded_by == auth.user_id() || auth.0.is_superadmin())
            .ok_or_else(media_not_found)?;
        match item.status {
            MediaStatus::Pending => {}
            MediaStatus::Rejected => {
                return Err(ApiError::conflict(
                    "media_rejected",
                    format!(
                        "This upload was refused: {}",
                        item.rejection.as_deref().unwrap_or("")
                    ),
                )
                .into());
            }
            MediaStatus::Processing | MediaStatus::Ready | MediaStatus::Replaced => {
                return Ok(Completed::AlreadyDone(Json(Envelope::new(media_view(
                    item,
                )))));
            }
        }
        let purpose = item.purpose;
        let Some(size) = state
            .objects
            .size(&item.object_key)
            .await
            .map_err(unreachable_store)?
        else {
            return Err(ApiError::conflict(
                "upload_missing",
                "No file has been uploaded to this upload's URL yet.",
            )
            .into());
        };
        if size != item.declared_size as u64 || size > purpose.max_bytes() {
            return self
                .refuse(
                    &item,
                    "size_mismatch",
                    format!("{size} bytes arrived; {} were declared", item.declared_size),
                )
                .await
                .map_err(Into::into);
        }
        let head = state
            .objects
            .read_head(&item.object_key, SNIFF_BYTES)
            .await
            .map_err(unreachable_store)?;
        let real = sniff(&head);
        if real.map(MediaType::mime) != Some(item.declared_type.as_str()) {
            let what = real.map_or("not an image or video we take", MediaType::mime);
            return self
                .refuse(
                    &item,
                    "content_type_mismatch",
                    format!("the file is {what}; {} was declared", item.declared_type),
                )
                .await
                .map_err(Into::into);
        }
        let mut tx = state.db.begin().await?;
        let Some(checked) =
            media::start_processing(&mut tx, item.id, &item.declared_type, size as i64).await?
        else {
            let now = media::get(&state.db, item.id)
                .await?
                .ok_or_else(media_not_found)?;
            return Ok(Completed::AlreadyDone(Json(Envelope::new(media_view(now)))));
        };
        let row = outbox::record(
            &mut tx,
            Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("media:{}", item.id).as_bytes(),
            ),
            &ProcessMedia { media_id: item.id },
            None,
        )
        .await?;
        tx.commit().await?;
        outbox::relay_committed(
            &state.db,
            &state.queue,
            std::slice::from_ref(&row),
            "media job",
        )
        .await;
        Ok(Completed::Accepted(Json(Envelope::new(media_view(
            checked,
        )))))
    }

    /// An upload and where it stands (its uploader or a superadmin).
    #[oai(path = "/media/:id", method = "get")]
    async fn get(
        &self,
        auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<MediaView>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND }> {
        let item = media::get(&self.state.db, id.0)
            .await?
            .filter(|m| m.uploaded_by == auth.user_id() || auth.0.is_superadmin())
            .ok_or_else(media_not_found)?;
        Ok(Json(Envelope::new(media_view(item))))
    }

    /// What the app shows before sign-in: the welcome video and the slides. Public.
    #[oai(path = "/app/onboarding", method = "get")]
    async fn onboarding(&self) -> ApiResult<Json<Envelope<OnboardingView>>, SERVER> {
        let video = media::onboarding_video(&self.state.db).await?;
        let video = image_views(&self.state.objects, video.as_slice())
            .await
            .into_iter()
            .next();
        Ok(Json(Envelope::new(OnboardingView {
            video,
            slides: domain::onboarding::SLIDES
                .iter()
                .map(|(title, body)| SlideView {
                    title: (*title).to_owned(),
                    body: (*body).to_owned(),
                })
                .collect(),
        })))
    }
}
