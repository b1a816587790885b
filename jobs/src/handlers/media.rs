//! `media`: a checked upload becomes usable. An image is decoded in full (a file whose
//! first bytes pass for a JPEG but whose body is not one is refused here) and gets a
//! thumbnail; then the media is `ready` and shows on its business, event or the onboarding.
//! Idempotent: only a `processing` row is worked on, and the thumbnail's key is the
//! media's own, so a second run rewrites the same object.

use crate::{
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::media::MediaType;
use serde::{Deserialize, Serialize};
use storage::media::{self, MediaStatus};
use uuid::Uuid;

/// The longest side of a thumbnail, in pixels: a list tile on a phone's 3× screen.
pub const THUMBNAIL_SIDE: u32 = 320;

/// Process the checked upload `media_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessMedia {
    pub media_id: Uuid,
}

/// Where a media's thumbnail is kept.
pub fn thumbnail_key(media_id: Uuid) -> String {
    format!("media/{media_id}/thumbnail.jpg")
}

impl Job for ProcessMedia {
    const QUEUE: QueueName = QueueName::Media;
}

impl RunJob for ProcessMedia {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let Some(item) = media::get(&env.db, self.media_id).await? else {
            tracing::warn!(media_id = %self.media_id, "no such media; nothing to do");
            return Ok(());
        };
        if item.status != MediaStatus::Processing {
            return Ok(());
        }
        let kind = item.content_type.as_deref().and_then(MediaType::from_mime);
        let thumbnail = match kind {
            Some(kind) if kind.is_image() => {
                let bytes = env
                    .objects
                    .read(&item.object_key)
                    .await
                    .map_err(|e| JobError::Retry(e.into()))?;
                // Decoding is CPU work: off the async threads.
                let made = tokio::task::spawn_blocking(move || thumbnail(&bytes))
                    .await
                    .map_err(|e| JobError::Retry(e.into()))?;
                match made {
                    Ok(jpeg) => {
                        let key = thumbnail_key(item.id);
                        env.objects
                            .put(&key, jpeg)
                            .await
                            .map_err(|e| JobError::Retry(e.into()))?;
                        Some(key)
                    }
                    Err(e) => {
                        let reason = format!("not a readable image: {e}");
                        media::reject(&env.db, item.id, &reason).await?;
                        // Refused for good; a leftover object is only storage.
                        if let Err(e) = env.objects.delete(&item.object_key).await {
                            tracing::warn!(error = %e, "a refused upload could not be deleted");
                        }
                        tracing::info!(media_id = %item.id, %reason, "upload refused");
                        return Ok(());
                    }
                }
            }
            // Videos are served as uploaded: making a still of one needs a video decoder
            // (ffmpeg), which this process does not carry.
            _ => None,
        };
        let mut tx = env.db.begin().await?;
        media::finish(&mut tx, &item, thumbnail.as_deref()).await?;
        tx.commit().await?;
        tracing::info!(media_id = %item.id, purpose = %item.purpose, "media ready");
        Ok(())
    }
}

/// A JPEG no larger than [`THUMBNAIL_SIDE`] on its longest side, from an image's bytes.
pub fn thumbnail(bytes: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let image = image::load_from_memory(bytes)?;
    let small = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).into_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    small.write_to(&mut out, image::ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn thumbnails_are_small_jpegs_that_keep_the_aspect() {
        let made = thumbnail(&png(1200, 600)).unwrap();
        assert_eq!(domain::media::sniff(&made), Some(MediaType::Jpeg));
        let back = image::load_from_memory(&made).unwrap();
        assert_eq!((back.width(), back.height()), (320, 160));
    }

    #[test]
    fn a_file_that_only_starts_like_an_image_is_not_one() {
        let mut fake = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        fake.extend_from_slice(b"<script>alert(1)</script>");
        assert!(thumbnail(&fake).is_err());
    }
}
