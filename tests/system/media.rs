//! Media: presigned uploads to the real S3-compatible server (`s3s-fs`, started by
//! scripts/services.sh), checked on completion by their real type, thumbnails by the
//! `media` job, images on businesses and events, and the onboarding.

use crate::helpers::{TestApp, eventually, http};
use krug_client::{ApiClient, expect};
use serde_json::{Value, json};

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Asks for an upload and PUTs `bytes` to the presigned URL; returns the media id.
async fn upload(client: &ApiClient, request: Value, bytes: &[u8]) -> String {
    let ticket = expect(client.post("/media/uploads", &request).await.unwrap(), 201).unwrap();
    let url = ticket.data()["upload_url"].as_str().unwrap().to_owned();
    let put = http().put(url).body(bytes.to_vec()).send().await.unwrap();
    assert!(
        put.status().is_success(),
        "the store took the PUT: {}",
        put.status()
    );
    ticket.data()["media_id"].as_str().unwrap().to_owned()
}

/// A logo goes straight to the store, is checked, gets a thumbnail and shows on the
/// business; a file whose bytes are not what its content type says is refused and deleted;
/// so is one of another size; only the business's owner or a superadmin may upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_by_what_they_are_not_what_they_claim() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (salon, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let logo = png(800, 400);
    let media_id = upload(
        &operator,
        json!({"purpose": "business_logo", "content_type": "image/png",
               "size": logo.len(), "business_id": salon}),
        &logo,
    )
    .await;
    let checked = expect(
        operator
            .post(&format!("/media/{media_id}/complete"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    assert_eq!(checked.data()["content_type"], "image/png");
    let images = eventually(20, "the logo on the business", || async {
        let business = expect(
            staff.get(&format!("/businesses/{salon}")).await.unwrap(),
            200,
        )
        .unwrap();
        let images = business.data()["images"].as_array().unwrap().clone();
        Some(images).filter(|i| !i.is_empty())
    })
    .await;
    assert_eq!(images[0]["purpose"], "business_logo");
    let original = http()
        .get(images[0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    assert_eq!(original.bytes().await.unwrap().as_ref(), logo.as_slice());
    let thumbnail = http()
        .get(images[0]["thumbnail_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let small = image::load_from_memory(&thumbnail).unwrap();
    assert_eq!((small.width(), small.height()), (320, 160));
    assert_eq!(
        domain::media::sniff(&thumbnail),
        Some(domain::media::MediaType::Jpeg)
    );

    // A page dressed as a photo.
    let lie = b"<html><script>document.location='https://evil.example'</script></html>";
    let liar = upload(
        &operator,
        json!({"purpose": "business_photo", "content_type": "image/jpeg",
               "size": lie.len(), "business_id": salon}),
        lie,
    )
    .await;
    let refused = operator
        .post(&format!("/media/{liar}/complete"), &json!({}))
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("content_type_mismatch"));
    let key = format!("media/{liar}/original");
    assert_eq!(
        app.services.objects.size(&key).await.unwrap(),
        None,
        "the refused file is deleted"
    );
    let again = operator
        .post(&format!("/media/{liar}/complete"), &json!({}))
        .await
        .unwrap();
    assert_eq!(again.error_code(), Some("media_rejected"));
    // A real PNG declared as a JPEG is refused as well: the declaration must be true.
    let png_as_jpeg = upload(
        &operator,
        json!({"purpose": "business_photo", "content_type": "image/jpeg",
               "size": logo.len(), "business_id": salon}),
        &logo,
    )
    .await;
    let refused = operator
        .post(&format!("/media/{png_as_jpeg}/complete"), &json!({}))
        .await
        .unwrap();
    assert_eq!(refused.error_code(), Some("content_type_mismatch"));
    // Not the size that was declared.
    let short = upload(
        &operator,
        json!({"purpose": "business_photo", "content_type": "image/png",
               "size": logo.len() + 10, "business_id": salon}),
        &logo,
    )
    .await;
    let refused = operator
        .post(&format!("/media/{short}/complete"), &json!({}))
        .await
        .unwrap();
    assert_eq!(refused.error_code(), Some("size_mismatch"));

    // Nothing uploaded yet.
    let ticket = expect(
        operator
            .post(
                "/media/uploads",
                &json!({"purpose": "business_photo", "content_type": "image/png",
                        "size": 100, "business_id": salon}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let early = operator
        .post(
            &format!(
                "/media/{}/complete",
                ticket.data()["media_id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(early.status, 409);
    assert_eq!(early.error_code(), Some("upload_missing"));

    // Cashiers do not change the shop window; nobody uploads a GIF or a huge file.
    let forbidden = staff
        .post(
            "/media/uploads",
            &json!({"purpose": "business_logo", "content_type": "image/png",
                    "size": 100, "business_id": salon}),
        )
        .await
        .unwrap();
    assert_eq!(forbidden.status, 403);
    for (body, code) in [
        (
            json!({"purpose": "business_logo", "content_type": "image/gif", "size": 100, "business_id": salon}),
            "unsupported_content_type",
        ),
        (
            json!({"purpose": "business_logo", "content_type": "image/png", "size": 11 * 1024 * 1024, "business_id": salon}),
            "invalid_size",
        ),
        (
            json!({"purpose": "business_logo", "content_type": "image/png", "size": 100}),
            "missing_target",
        ),
    ] {
        let refused = operator.post("/media/uploads", &body).await.unwrap();
        assert_eq!(refused.status, 422, "{body}: {}", refused.body);
        assert_eq!(refused.error_code(), Some(code));
    }
}

/// The onboarding is public; once a superadmin uploads the welcome video it is there; an
/// event's cover shows on the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onboarding_video_and_event_covers_show_where_clients_look() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let before = expect(app.api.get("/app/onboarding").await.unwrap(), 200).unwrap();
    assert!(before.data()["video"].is_null());
    assert!(before.data()["slides"].as_array().unwrap().len() >= 3);

    let mut video = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41".to_vec();
    video.extend(std::iter::repeat_n(0u8, 4096));
    let id = upload(
        &operator,
        json!({"purpose": "onboarding_video", "content_type": "video/mp4", "size": video.len()}),
        &video,
    )
    .await;
    expect(
        operator
            .post(&format!("/media/{id}/complete"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let shown = eventually(20, "the welcome video", || async {
        let onboarding = expect(app.api.get("/app/onboarding").await.unwrap(), 200).unwrap();
        Some(onboarding.data()["video"].clone()).filter(|v| !v.is_null())
    })
    .await;
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["content_type"], "video/mp4");

    let event = expect(
        operator
            .post(
                "/events",
                &json!({"title": "Вечер сыров", "max_participants": 10,
                        "date": (time::OffsetDateTime::now_utc() + time::Duration::days(3))
                            .format(&time::format_description::well_known::Rfc3339).unwrap()}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let event_id = event.data()["id"].as_str().unwrap().to_owned();
    let cover = png(640, 480);
    let id = upload(
        &operator,
        json!({"purpose": "event_cover", "content_type": "image/png", "size": cover.len(), "event_id": event_id}),
        &cover,
    )
    .await;
    expect(
        operator
            .post(&format!("/media/{id}/complete"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    eventually(20, "the cover on the event", || async {
        let shown = expect(
            operator.get(&format!("/events/{event_id}")).await.unwrap(),
            200,
        )
        .unwrap();
        Some(()).filter(|_| shown.data()["images"][0]["id"] == id.as_str())
    })
    .await;
}
