//! SMS pumping and code guessing: `POST /auth/send-code` and `/auth/verify-code` under attack.

use crate::helpers::{Options, TestApp, http, member_phone};
use api::{limits::Limits, proxies::TrustedProxies};
use krug_client::{ApiResponse, dev_otp_code, expect};
use serde_json::{Value, json};

async fn app_with(limits: Limits) -> TestApp {
    TestApp::spawn_with(Options {
        limits: Some(limits),
        ..Default::default()
    })
    .await
}

/// A POST with an `X-Forwarded-For` header (the test client is 127.0.0.1).
async fn post_from(app: &TestApp, path: &str, forwarded_for: &str, body: &Value) -> ApiResponse {
    let response = http()
        .post(format!("{}/api/v1{path}", app.api.base))
        .header("x-forwarded-for", forwarded_for)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    ApiResponse {
        status,
        headers,
        body: response.json().await.unwrap(),
    }
}

fn retry_after(response: &ApiResponse) -> u64 {
    response.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn send_code(app: &TestApp, phone: &str) -> ApiResponse {
    app.api
        .post("/auth/send-code", &json!({"phone": phone}))
        .await
        .unwrap()
}

async fn codes_recorded(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM otp_codes")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Landline ranges (+7 495, +7 812…) get no SMS: a pumping script loops over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landline_numbers_get_no_login_code() {
    let app = app_with(Limits::default()).await;
    for landline in ["+7 495 123-45-67", "8 (812) 000-00-00", "+73431234567"] {
        let response = send_code(&app, landline).await;
        assert_eq!(
            (response.status, response.error_code()),
            (422, Some("invalid_phone")),
            "{landline}: {}",
            response.body
        );
    }
    assert_eq!(codes_recorded(&app).await, 0);
}

/// One phone gets at most five codes in a day, however the minutes between them pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_gets_at_most_five_codes_a_day() {
    let app = app_with(Limits::default()).await;
    let phone = member_phone();
    for _ in 0..5 {
        // As if a minute had passed since the last code.
        app.services.cache.release_otp_send(&phone).await.unwrap();
        expect(send_code(&app, &phone).await, 202).unwrap();
    }
    app.services.cache.release_otp_send(&phone).await.unwrap();
    let sixth = send_code(&app, &phone).await;
    assert_eq!(
        (sixth.status, sixth.error_code()),
        (429, Some("too_many_requests")),
        "{}",
        sixth.body
    );
    assert!(retry_after(&sixth) > 3600, "the wait runs to the day's end");
    assert_eq!(codes_recorded(&app).await, 5);
}

/// One client address asks for at most ten codes an hour, whatever phones it names; an
/// `X-Forwarded-For` it writes itself changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_ten_codes_an_hour_and_cannot_forge_another() {
    let app = app_with(Limits::default()).await;
    for _ in 0..10 {
        expect(send_code(&app, &member_phone()).await, 202).unwrap();
    }
    let eleventh = send_code(&app, &member_phone()).await;
    assert_eq!(
        (eleventh.status, eleventh.error_code()),
        (429, Some("too_many_requests")),
        "{}",
        eleventh.body
    );
    let forged = post_from(
        &app,
        "/auth/send-code",
        "198.51.100.7",
        &json!({"phone": member_phone()}),
    )
    .await;
    assert_eq!(
        forged.status, 429,
        "X-Forwarded-For from an untrusted peer is ignored: {}",
        forged.body
    );
    assert_eq!(codes_recorded(&app).await, 10);
}

/// Behind a trusted proxy, each client address has its own ten codes an hour: a busy
/// address is limited without locking out the others behind the same proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_address_is_limited_on_its_own() {
    let app = app_with(Limits {
        trusted_proxies: TrustedProxies::parse("127.0.0.1").unwrap(),
        ..Limits::default()
    })
    .await;
    for _ in 0..10 {
        let sent = post_from(
            &app,
            "/auth/send-code",
            "198.51.100.7",
            &json!({"phone": member_phone()}),
        )
        .await;
        expect(sent, 202).unwrap();
    }
    let eleventh = post_from(
        &app,
        "/auth/send-code",
        "203.0.113.1, 198.51.100.7",
        &json!({"phone": member_phone()}),
    )
    .await;
    assert_eq!(
        eleventh.status, 429,
        "the address our proxy saw counts, not the one the client wrote: {}",
        eleventh.body
    );
    let other = post_from(
        &app,
        "/auth/send-code",
        "198.51.100.8",
        &json!({"phone": member_phone()}),
    )
    .await;
    expect(other, 202).unwrap();
}

/// Past the hourly SMS budget of the whole system, no more login SMS go out: 503
/// `sms_budget_exhausted`, and a counter an alert watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_hourly_sms_budget_send_code_answers_503() {
    let app = app_with(Limits {
        sms_budget_per_hour: 3,
        ..Limits::relaxed()
    })
    .await;
    for _ in 0..3 {
        expect(send_code(&app, &member_phone()).await, 202).unwrap();
    }
    let over = send_code(&app, &member_phone()).await;
    assert_eq!(
        (over.status, over.error_code()),
        (503, Some("sms_budget_exhausted")),
        "{}",
        over.body
    );
    assert_eq!(codes_recorded(&app).await, 3);
    let metrics = app.api.get("//metrics").await.unwrap();
    let text = metrics.body.as_str().unwrap();
    let refused: f64 = text
        .lines()
        .find(|l| l.starts_with("abuse_limit_refusals_total{limit=\"sms_budget\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sms_budget refusals in /metrics:\n{text}"));
    assert!(refused >= 1.0);
    assert!(text.contains("sms_budget_limit"), "{text}");
}

/// Every failed check gets the same answer — no code sent, a wrong code, an expired one —
/// so a script learns nothing from it; and one address may fail only so often, across
/// however many phones it tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_look_alike_and_are_limited_per_address() {
    let app = app_with(Limits {
        verify_failures_per_ip_per_hour: 4,
        ..Limits::relaxed()
    })
    .await;
    let with_code = member_phone();
    let sent = expect(send_code(&app, &with_code).await, 202).unwrap();
    let job_id = sent.data()["job_id"].as_str().unwrap().to_owned();
    let code = crate::helpers::eventually(10, "the login code", || async {
        dev_otp_code(&app.db, &job_id).await.unwrap()
    })
    .await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let expired = member_phone();
    expect(send_code(&app, &expired).await, 202).unwrap();
    sqlx::query("UPDATE otp_codes SET expires_at = now() - interval '1 second' WHERE phone = $1")
        .bind(&expired)
        .execute(&app.db)
        .await
        .unwrap();

    let mut answers = Vec::new();
    for (phone, guess) in [
        (member_phone(), "123456"),
        (with_code.clone(), wrong),
        (expired.clone(), "123456"),
        (member_phone(), "654321"),
    ] {
        let response = app
            .api
            .post("/auth/verify-code", &json!({"phone": phone, "code": guess}))
            .await
            .unwrap();
        answers.push((
            response.status,
            response.body["error"]["code"].clone(),
            response.body["error"]["message"].clone(),
        ));
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "every failure answers alike: {answers:?}"
    );
    assert_eq!(
        (answers[0].0, answers[0].1.as_str()),
        (401, Some("invalid_code"))
    );

    // The address has used its failures: even the right code waits.
    let blocked = app
        .api
        .post(
            "/auth/verify-code",
            &json!({"phone": with_code, "code": code}),
        )
        .await
        .unwrap();
    assert_eq!(
        (blocked.status, blocked.error_code()),
        (429, Some("too_many_attempts")),
        "{}",
        blocked.body
    );
    assert!(retry_after(&blocked) > 0);
}

/// A phone whose codes are guessed at waits longer after each failure: 30 s after the
/// fifth, 60 s after the sixth, from any address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_at_one_phone_backs_off() {
    let app = app_with(Limits {
        trusted_proxies: TrustedProxies::parse("127.0.0.1").unwrap(),
        ..Limits::relaxed()
    })
    .await;
    let phone = member_phone();
    expect(send_code(&app, &phone).await, 202).unwrap();
    // Each guess from another address: the per-address limit does not help the phone.
    for i in 0..5 {
        let response = post_from(
            &app,
            "/auth/verify-code",
            &format!("198.51.100.{i}"),
            &json!({"phone": phone, "code": format!("00000{i}")}),
        )
        .await;
        assert_eq!(response.status, 401, "{}", response.body);
    }
    let waiting = post_from(
        &app,
        "/auth/verify-code",
        "198.51.100.99",
        &json!({"phone": phone, "code": "999999"}),
    )
    .await;
    assert_eq!(
        (waiting.status, waiting.error_code()),
        (429, Some("too_many_attempts")),
        "{}",
        waiting.body
    );
    assert!((1..=30).contains(&retry_after(&waiting)));

    // The wait over (its key gone), the next failure doubles it.
    let backoff_key = app.services.cache.limit_key("verify-backoff", &phone);
    let _: () = redis::cmd("DEL")
        .arg(&backoff_key)
        .query_async(&mut app.services.cache.connection())
        .await
        .unwrap();
    let sixth = post_from(
        &app,
        "/auth/verify-code",
        "198.51.100.100",
        &json!({"phone": phone, "code": "999998"}),
    )
    .await;
    assert_eq!(sixth.status, 401);
    let doubled = post_from(
        &app,
        "/auth/verify-code",
        "198.51.100.101",
        &json!({"phone": phone, "code": "999997"}),
    )
    .await;
    assert_eq!(doubled.status, 429);
    assert!(
        (31..=60).contains(&retry_after(&doubled)),
        "{:?}",
        doubled.headers
    );
}
