//! The whole API, fuzzed from its own OpenAPI spec with schemathesis, and every operation's
//! authorization checked from the same spec.

use crate::helpers::{TestApp, member_phone};
use serde_json::Value;
use std::process::Command;

/// schemathesis (from PyPI, installed by scripts/test.sh) generates requests from
/// /openapi.json — valid ones, invalid ones, and sequences — as an operator: zero 5xx and
/// zero responses that break the spec (status codes, headers, content types, bodies).
/// Not run: "positive data acceptance", which calls a business rule's 422 (a phone that is
/// not Russian, a percent over 100) a failure because the schema cannot say it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_survives_schemathesis_without_a_5xx_or_a_spec_violation() {
    // Paid events and the ЮKassa webhook answer 503 without ЮKassa: give them its simulator.
    let kassa = simulators::yookassa::FakeYooKassa::start("fuzz-shop", "fuzz-secret")
        .await
        .unwrap();
    let app = TestApp::spawn_with(crate::helpers::Options {
        yookassa: Some((
            kassa.url.clone(),
            "fuzz-shop".to_owned(),
            "fuzz-secret".to_owned(),
        )),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let _ = operator;
    let user: uuid::Uuid =
        sqlx::query_scalar("SELECT user_id FROM user_roles WHERE role = 'superadmin'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let token = app
        .services
        .jwt
        .issue(user, vec!["superadmin".to_owned()], uuid::Uuid::new_v4());
    let schemathesis = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned());
    let output = tokio::task::spawn_blocking({
        let base = app.api.base.clone();
        move || {
            Command::new(&schemathesis)
                .args(["run", &format!("{base}/openapi.json")])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args([
                    "--max-examples",
                    "25",
                    "--seed",
                    "20261125",
                    "--no-shrink",
                    "--workers",
                    "2",
                ])
                .args([
                    "--checks",
                    "all",
                    "--exclude-checks",
                    "positive_data_acceptance",
                ])
                .args(["--generation-database", "none"])
                .env("NO_COLOR", "1")
                .output()
        }
    })
    .await
    .unwrap()
    .expect("schemathesis runs (scripts/test.sh installs it from PyPI)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("Tested: "), "{report}");
}

/// Every operation that needs a token refuses none (401), a forged one (401), and — for
/// operators' routes — a member's (403), as the spec says it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_secured_operation_rejects_missing_forged_and_other_role_tokens() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    let forged = {
        let claims = serde_json::json!({"sub": uuid::Uuid::new_v4(), "exp": 4_102_444_800i64, "iat": 0, "roles": ["superadmin"], "typ": "access"});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"guessed"),
        )
        .unwrap()
    };
    let spec = app.api.get("//openapi.json").await.unwrap().body;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            let concrete = path
                .split('/')
                .map(|s| match s {
                    "{queue}" => "otp_send".to_owned(),
                    "{name}" => "reconcile".to_owned(),
                    s if s.starts_with('{') => uuid::Uuid::new_v4().to_string(),
                    s => s.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE)
                .then(|| Value::Object(Default::default()));
            let anonymous = app
                .api
                .call(method.clone(), &concrete, body.as_ref())
                .await
                .unwrap();
            let with_forged = app
                .api
                .signed_in(&forged)
                .call(method.clone(), &concrete, body.as_ref())
                .await
                .unwrap();
            if !secured {
                // Signing in, what the app shows before sign-in, and what ЮKassa calls.
                let public = (path.starts_with("/auth/") && path != "/auth/logout")
                    || ["/app/onboarding", "/payments/yookassa"].contains(&path.as_str());
                assert!(public, "{method} {path} is not secured");
                continue;
            }
            assert_eq!(
                anonymous.status, 401,
                "{method} {path} without a token: {}",
                anonymous.body
            );
            assert_eq!(
                with_forged.status, 401,
                "{method} {path} with a forged token: {}",
                with_forged.body
            );
            if path.starts_with("/admin/") {
                let as_member = member
                    .call(method.clone(), &concrete, body.as_ref())
                    .await
                    .unwrap();
                assert_eq!(
                    as_member.status, 403,
                    "{method} {path} as a member: {}",
                    as_member.body
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} secured operations found");
}
