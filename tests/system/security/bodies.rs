//! Request bodies: the 64 KiB cap holds for a body that declares no length at all.

use crate::helpers::{Options, TestApp, http};

/// A cleartext HTTP/2 request body has neither `Content-Length` nor `Transfer-Encoding`: a
/// cap that looks for either let a client stream any amount into the JSON reader. 1 MiB of
/// whitespace before a valid send-code body is refused with 413 (and no code is sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_a_length_is_capped_over_cleartext_http2() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let _ = http(); // installs the TLS provider reqwest insists on even for plain HTTP
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let chunks = (0..1024)
        .map(|_| vec![b' '; 1024])
        .chain([br#"{"phone": "+79991234567"}"#.to_vec()])
        .map(Ok::<_, std::io::Error>);
    let response = h2c
        .post(format!("{}/api/v1/auth/send-code", app.api.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    let codes: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_codes")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(codes, 0);

    // A small body over HTTP/2 is read as before.
    let small = h2c
        .post(format!("{}/api/v1/auth/send-code", app.api.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter([Ok::<
            _,
            std::io::Error,
        >(
            br#"{"phone": "+79991234567"}"#.to_vec(),
        )])))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 202);
}
