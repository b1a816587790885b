//! SMS login, tokens and refresh rotation.

use crate::{
    fakes::{FakeSmsRu, SmsRuMode},
    helpers::{Options, TestApp, eventually, member_phone},
};
use krug_client::{dev_otp_code, expect};
use serde_json::json;

/// The real SMS.ru adapter delivers the code to the normalized number, and the API never
/// shows the code; only its keyed hash is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_code_normalizes_the_phone_and_delivers_the_code_through_smsru() {
    let sms = FakeSmsRu::start(SmsRuMode::Accept).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;

    let response = app
        .api
        .post("/auth/send-code", &json!({"phone": "8 (999) 123-45-67"}))
        .await
        .unwrap();

    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(response.data()["resend_after_s"], 60);
    assert!(response.data()["job_id"].is_string());
    assert!(
        !response.body.to_string().contains("code\":\""),
        "no code in the response"
    );
    let sent = eventually(10, "the SMS", || async { sms.sent().into_iter().next() }).await;
    assert_eq!(sent.to, "79991234567");
    assert_eq!(sent.api_id, "test-api-id");
    let code: String = sent.msg.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "message {:?}", sent.msg);
    let stored: (String, String) = sqlx::query_as("SELECT phone, code_hash FROM otp_codes")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored.0, "+79991234567");
    assert!(!stored.1.contains(&code), "the code is stored hashed");
    // The worker records the SMS once SMS.ru has answered: after the fake has seen it.
    let record: String = eventually(10, "the SMS's record", || async {
        sqlx::query_scalar("SELECT body FROM notifications")
            .fetch_optional(&app.db)
            .await
            .unwrap()
    })
    .await;
    assert!(
        !record.contains(&code),
        "the real provider's record masks the code: {record}"
    );

    let session = app
        .api
        .post(
            "/auth/verify-code",
            &json!({"phone": "+7 999 123 45 67", "code": code}),
        )
        .await
        .unwrap();
    assert_eq!(session.status, 200, "{}", session.body);
    assert_eq!(session.data()["user"]["phone"], "+79991234567");
    assert_eq!(session.data()["user"]["status_tier"], "Insider");
    assert_eq!(session.data()["expires_in"], 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_but_a_russian_phone_is_422_invalid_phone() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    for phone in [
        "12345",
        "+1 202 555 0143",
        "phone",
        "+7 999 123 45 6",
        "",
        "+7 199 123 45 67",
    ] {
        let response = app
            .api
            .post("/auth/send-code", &json!({"phone": phone}))
            .await
            .unwrap();
        assert_eq!(response.status, 422, "{phone:?}: {}", response.body);
        assert_eq!(response.error_code(), Some("invalid_phone"), "{phone:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_code_within_a_minute_is_429_with_retry_after() {
    let app = TestApp::spawn().await;
    let phone = member_phone();
    expect(
        app.api
            .post("/auth/send-code", &json!({"phone": phone}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();

    let again = app
        .api
        .post("/auth/send-code", &json!({"phone": phone}))
        .await
        .unwrap();

    assert_eq!(again.status, 429);
    assert_eq!(again.error_code(), Some("too_many_requests"));
    let retry_after: u64 = again.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // Another phone is not limited.
    expect(
        app.api
            .post("/auth/send-code", &json!({"phone": member_phone()}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
}

async fn requested_code(app: &TestApp, phone: &str) -> String {
    let sent = expect(
        app.api
            .post("/auth/send-code", &json!({"phone": phone}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = sent.data()["job_id"].as_str().unwrap().to_owned();
    eventually(10, "the login code", || async {
        dev_otp_code(&app.db, &job_id).await.unwrap()
    })
    .await
}

/// Five wrong guesses lock the code: the right one no longer works. Every failure gets the
/// same answer. (The phone's back-off is lifted here to see the code's own lock; the
/// security tests cover the back-off.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_attempts_lock_the_code() {
    let app = TestApp::spawn_with(Options {
        limits: Some(api::limits::Limits {
            verify_backoff: storage::limits::Backoff {
                free_failures: 100,
                ..Default::default()
            },
            ..api::limits::Limits::relaxed()
        }),
        ..Default::default()
    })
    .await;
    let phone = member_phone();
    let code = requested_code(&app, &phone).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };

    for _ in 0..5 {
        let response = app
            .api
            .post("/auth/verify-code", &json!({"phone": phone, "code": wrong}))
            .await
            .unwrap();
        assert_eq!(
            (response.status, response.error_code()),
            (401, Some("invalid_code"))
        );
    }
    let right = app
        .api
        .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
        .await
        .unwrap();
    assert_eq!(
        (right.status, right.error_code()),
        (401, Some("invalid_code")),
        "the right code no longer works: {}",
        right.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_used_code_is_refused() {
    let app = TestApp::spawn().await;
    let phone = member_phone();
    let code = requested_code(&app, &phone).await;
    expect(
        app.api
            .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();

    let reused = app
        .api
        .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
        .await
        .unwrap();
    assert_eq!(
        (reused.status, reused.error_code()),
        (401, Some("invalid_code"))
    );

    let other = member_phone();
    let code = requested_code(&app, &other).await;
    sqlx::query("UPDATE otp_codes SET expires_at = now() - interval '1 second' WHERE phone = $1")
        .bind(&other)
        .execute(&app.db)
        .await
        .unwrap();
    let late = app
        .api
        .post("/auth/verify-code", &json!({"phone": other, "code": code}))
        .await
        .unwrap();
    assert_eq!(
        (late.status, late.error_code()),
        (401, Some("invalid_code"))
    );

    let malformed = app
        .api
        .post(
            "/auth/verify-code",
            &json!({"phone": other, "code": "12ab56"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (malformed.status, malformed.error_code()),
        (422, Some("invalid_code_format"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_a_replayed_token_revokes_the_session() {
    let app = TestApp::spawn().await;
    let phone = member_phone();
    let code = requested_code(&app, &phone).await;
    let session = expect(
        app.api
            .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let first = session.data()["refresh_token"].as_str().unwrap().to_owned();

    let rotated = expect(
        app.api
            .post("/auth/refresh", &json!({"refresh_token": first}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let second = rotated.data()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let me = app
        .api
        .signed_in(rotated.data()["access_token"].as_str().unwrap())
        .get("/users/me")
        .await
        .unwrap();
    assert_eq!(me.status, 200);

    let replay = app
        .api
        .post("/auth/refresh", &json!({"refresh_token": first}))
        .await
        .unwrap();
    assert_eq!(
        (replay.status, replay.error_code()),
        (401, Some("refresh_token_reused"))
    );
    let after = app
        .api
        .post("/auth/refresh", &json!({"refresh_token": second}))
        .await
        .unwrap();
    assert_eq!(
        after.status, 401,
        "the whole session is revoked: {}",
        after.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_refresh_token() {
    let app = TestApp::spawn().await;
    let phone = member_phone();
    let code = requested_code(&app, &phone).await;
    let session = expect(
        app.api
            .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let refresh = session.data()["refresh_token"].as_str().unwrap().to_owned();
    let member = app
        .api
        .signed_in(session.data()["access_token"].as_str().unwrap());

    let out = expect(
        member
            .post("/auth/logout", &json!({"refresh_token": refresh}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();

    assert_eq!(out.data()["revoked"], true);
    let refreshed = app
        .api
        .post("/auth/refresh", &json!({"refresh_token": refresh}))
        .await
        .unwrap();
    assert_eq!(
        (refreshed.status, refreshed.error_code()),
        (401, Some("invalid_refresh_token"))
    );
    let anonymous = app
        .api
        .post("/auth/logout", &json!({"refresh_token": refresh}))
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
}

/// A 503 from SMS.ru is retried (with backoff) until the message goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_sms_failures_are_retried_until_delivered() {
    let sms = FakeSmsRu::start(SmsRuMode::UnavailableFirst(1)).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;

    expect(
        app.api
            .post("/auth/send-code", &json!({"phone": member_phone()}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();

    let sent = eventually(15, "the retried SMS", || async {
        sms.sent().into_iter().next()
    })
    .await;
    assert!(sent.msg.contains("код входа"));
    assert_eq!(sms.requests().await, 2, "one failure, one success");
    // The job records the delivery once SMS.ru has answered.
    eventually(10, "the delivery recorded as sent", || async {
        let status: String = sqlx::query_scalar("SELECT status FROM notifications")
            .fetch_one(&app.db)
            .await
            .unwrap();
        (status == "sent").then_some(())
    })
    .await;
}

/// A bad number is permanent: the job goes dead with SMS.ru's reason, and is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_sms_failure_fails_the_job_with_the_providers_reason() {
    let sms = FakeSmsRu::start(SmsRuMode::BadNumber).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;

    let sent = expect(
        app.api
            .post("/auth/send-code", &json!({"phone": member_phone()}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = sent.data()["job_id"].as_str().unwrap().to_owned();

    let outcome: String = eventually(10, "the job's outcome", || async {
        sqlx::query_scalar(
            "SELECT outcome FROM job_outbox WHERE job_id = $1::uuid AND outcome IS NOT NULL",
        )
        .bind(&job_id)
        .fetch_optional(&app.db)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(outcome, "dead");
    let error: String = sqlx::query_scalar("SELECT error FROM notifications")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(
        error.contains("202") && error.contains("Неправильно указан номер"),
        "{error}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        sms.requests().await,
        1,
        "a permanent failure is not retried"
    );
}
