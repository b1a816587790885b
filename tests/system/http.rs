//! The HTTP surface: the envelope everywhere, request ids, system endpoints, token checks.

use crate::helpers::{Options, TestApp, member_phone};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use krug_client::expect;
use serde_json::{Value, json};

fn assert_error_envelope(body: &Value, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["meta"]["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert!(body["meta"]["timestamp"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_outside_handlers_use_the_envelope_too() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let http = crate::helpers::http();
    let base = &app.api.base;

    let not_found = app.api.get("/no/such/route").await.unwrap();
    assert_eq!(not_found.status, 404);
    assert_error_envelope(&not_found.body, "not_found");

    let wrong_method = app.api.delete("/auth/send-code").await.unwrap();
    assert_eq!(wrong_method.status, 405);
    assert_error_envelope(&wrong_method.body, "method_not_allowed");

    let bad_json = http
        .post(format!("{base}/api/v1/auth/send-code"))
        .header("content-type", "application/json")
        .body("{\"phone\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    assert_error_envelope(&bad_json.json().await.unwrap(), "bad_request");

    let missing_field = app
        .api
        .post("/auth/send-code", &json!({"telephone": "+79991234567"}))
        .await
        .unwrap();
    assert_eq!(missing_field.status, 400);
    assert_error_envelope(&missing_field.body, "bad_request");

    let huge = http
        .post(format!("{base}/api/v1/auth/send-code"))
        .header("content-type", "application/json")
        .body(format!("{{\"phone\": \"{}\"}}", "9".repeat(200_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert_error_envelope(&huge.json().await.unwrap(), "payload_too_large");

    // 100 KiB of whitespace, then a valid body. The API answers 413 as soon as the cap is
    // passed and closes the connection; a client still writing the rest may see the pipe
    // break before it reads that answer (HTTP/1.1 has no way round it). Either way the body
    // was refused: no code was sent.
    let chunks = (0..100)
        .map(|_| vec![b' '; 1024])
        .chain([br#"{"phone": "+79991234567"}"#.to_vec()])
        .map(Ok::<_, std::io::Error>);
    let chunked = http
        .post(format!("{base}/api/v1/auth/send-code"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    match chunked {
        Ok(chunked) => {
            assert_eq!(
                chunked.status(),
                413,
                "a body without Content-Length is limited too"
            );
            assert_error_envelope(&chunked.json().await.unwrap(), "payload_too_large");
        }
        Err(e) => assert!(e.is_request(), "refused while being written: {e:?}"),
    }
    let codes: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_codes")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(codes, 0, "no body over the cap reached the handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_its_request_id() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let http = crate::helpers::http();

    let ok = app.api.get("//health").await.unwrap();
    let header = ok.headers["x-request-id"].to_str().unwrap();
    assert_eq!(ok.body["meta"]["request_id"], header);
    assert_eq!(ok.data()["status"], "ok");

    let echoed = http
        .get(format!("{}/api/v1/users/me", app.api.base))
        .header("x-request-id", "from-the-client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 401);
    assert_eq!(echoed.headers()["x-request-id"], "from-the-client-42");
    let body: Value = echoed.json().await.unwrap();
    assert_eq!(body["meta"]["request_id"], "from-the-client-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_endpoints_answer() {
    let app = TestApp::spawn().await;

    let ready = app.api.get("//ready").await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.data()["postgres"], "ok");
    assert_eq!(ready.data()["redis"], "ok");
    assert_eq!(ready.data()["clickhouse"], "ok");
    assert_eq!(
        ready.data()["replica"],
        "none",
        "no DATABASE_REPLICA_URL here"
    );

    let spec = app.api.get("//openapi.json").await.unwrap();
    assert_eq!(spec.status, 200);
    for path in [
        "/auth/send-code",
        "/transactions/scan",
        "/loyalty/balance",
        "/admin/businesses",
    ] {
        assert!(spec.body["paths"][path].is_object(), "spec has {path}");
    }
    let docs = crate::helpers::http()
        .get(format!("{}/docs", app.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));

    // Metrics move when a scan is processed.
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let member = app.sign_in(&member_phone()).await;
    let before = scans_done(&app).await;
    krug_client::scan_and_wait(&member, &json!({"code": app.issue_qr(&staff, "100").await}))
        .await
        .unwrap();
    // The counter is the process's (scans of tests running beside this one count too), and
    // the worker counts a scan just after committing it, when the member may already read
    // the result.
    crate::helpers::eventually(10, "qr_scans_total to count the scan", || async {
        (scans_done(&app).await >= before + 1.0).then_some(())
    })
    .await;
    let text = crate::helpers::http()
        .get(format!("{}/metrics", app.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("jobs_processed_total{outcome=\"done\",queue=\"qr_scan\"}"),
        "{text}"
    );
    for series in [
        "queue_depth{queue=\"qr_scan\",state=\"pending\"} 0",
        "job_duration_seconds_bucket{queue=\"qr_scan\"",
        "bonus_accrued_total{source=\"qr\"}",
        "qr_scans_total{result=\"done\"}",
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
}

/// Each operation's spec lists the error statuses it can answer, not every status the API
/// has: a client reading it learns which failures to handle where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_lists_the_error_statuses_it_can_answer() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let spec = app.api.get("//openapi.json").await.unwrap().body;
    let statuses = |path: &str, method: &str| -> Vec<u16> {
        let responses = spec["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is in the spec"));
        responses.keys().map(|s| s.parse().unwrap()).collect()
    };
    let cases: [(&str, &str, &[u16]); 5] = [
        // A profile read has no parameters and changes nothing: no 400, 409 or 422.
        ("/users/me/settings", "get", &[200, 401, 403, 404, 500, 503]),
        // A device token another member holds is a conflict; too many devices a 422.
        (
            "/users/me/devices",
            "post",
            &[201, 400, 401, 403, 404, 409, 413, 415, 422, 500, 503],
        ),
        // Public and rate limited: 429, never 401.
        (
            "/auth/send-code",
            "post",
            &[202, 400, 413, 415, 422, 429, 500, 503],
        ),
        // An operator's read of the queues: nothing to parse, nothing to find.
        ("/admin/queues", "get", &[200, 401, 403, 500, 503]),
        // ЮKassa's webhook answers 200 once handled, or 503 to have it sent again.
        ("/payments/yookassa", "post", &[200, 400, 413, 415, 503]),
    ];
    for (path, method, expected) in cases {
        let mut listed = statuses(path, method);
        listed.sort_unstable();
        assert_eq!(listed, expected, "{method} {path}");
    }
}

/// What the framework answers before a handler runs is listed too, on every operation: 401
/// and 403 where a token is checked (and 401 nowhere else but the two sign-in steps that
/// refuse a code or a refresh token), 400, 413 and 415 where a JSON body is read, and 400
/// where a parameter can fail to parse (a required one missing, or one that is more than a
/// plain string).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_lists_what_is_answered_before_its_handler_runs() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let spec = app.api.get("//openapi.json").await.unwrap().body;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let listed = |status: &str| operation["responses"].get(status).is_some();
            let name = format!("{method} {path}");
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                assert!(listed("401") && listed("403"), "{name}: 401 and 403");
            } else if !["/auth/verify-code", "/auth/refresh"].contains(&path.as_str()) {
                assert!(!listed("401"), "{name} is public: no 401");
            }
            if operation["requestBody"].is_object() {
                for status in ["400", "413", "415"] {
                    assert!(listed(status), "{name} reads JSON: {status}");
                }
            }
            let parsed = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| {
                    (p["in"] != "path" && p["required"] == true)
                        || p["schema"] != json!({"type": "string"})
                });
            if parsed {
                assert!(listed("400"), "{name} parses a parameter: 400");
            }
            checked += 1;
        }
    }
    assert!(checked >= 70, "only {checked} operations found");
}

async fn scans_done(app: &TestApp) -> f64 {
    let text = crate::helpers::http()
        .get(format!("{}/metrics", app.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("qr_scans_total{result=\"done\"}"))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Tokens that are missing, expired, unsigned, signed with HS256 using our public key, or
/// signed by another RSA key are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    assert_eq!(member.get("/users/me").await.unwrap().status, 200);
    let user_id = expect(member.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"sub": user_id, "exp": now + 600, "iat": now, "roles": ["superadmin"], "typ": "access"});

    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let unsigned = format!("{header_none}.{payload}.");

    let public_pem = std::fs::read(crate::helpers::test_key_dir().join("jwt/public.pem")).unwrap();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();

    let (other_pem, _) = krug::keys::generate_rsa_pair().unwrap();
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(other_pem.as_bytes()).unwrap(),
    )
    .unwrap();

    let expired = app.services.jwt.issue_with_lifetime(
        user_id.parse().unwrap(),
        vec![],
        uuid::Uuid::new_v4(),
        -120,
    );

    for (name, token, code) in [
        ("alg none", unsigned.as_str(), "invalid_token"),
        (
            "HS256 keyed with the public key",
            hs256.as_str(),
            "invalid_token",
        ),
        ("another RSA key", wrong_key.as_str(), "invalid_token"),
        ("expired", expired.as_str(), "token_expired"),
        ("garbage", "not.a.token", "invalid_token"),
    ] {
        let client = app.api.signed_in(token);
        for path in ["/users/me", "/loyalty/balance", "/admin/businesses"] {
            let response = if path == "/admin/businesses" {
                client
                    .post(
                        path,
                        &json!({"name": "x", "category": "beauty", "cashback_percent": "5"}),
                    )
                    .await
                    .unwrap()
            } else {
                client.get(path).await.unwrap()
            };
            assert_eq!(response.status, 401, "{name} on {path}: {}", response.body);
            assert_eq!(response.error_code(), Some(code), "{name} on {path}");
        }
    }
    let anonymous = app.api.get("/loyalty/balance").await.unwrap();
    assert_eq!(anonymous.status, 401);
    assert_error_envelope(&anonymous.body, "unauthorized");
}
