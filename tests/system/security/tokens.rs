//! Access tokens: issuer and audience checked, and a session that ends takes its access
//! tokens with it within seconds — also those the API had already checked and remembered.

use crate::helpers::{TestApp, eventually, member_phone, test_key_dir};
use krug_client::{ApiClient, dev_otp_code, expect};
use serde_json::{Value, json};

/// Signs in by SMS and returns the whole session (access and refresh tokens).
async fn session(app: &TestApp, phone: &str) -> Value {
    app.services.cache.release_otp_send(phone).await.unwrap();
    let sent = expect(
        app.api
            .post("/auth/send-code", &json!({"phone": phone}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = sent.data()["job_id"].as_str().unwrap().to_owned();
    let code = eventually(10, "the login code", || async {
        dev_otp_code(&app.db, &job_id).await.unwrap()
    })
    .await;
    expect(
        app.api
            .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
            .await
            .unwrap(),
        200,
    )
    .unwrap()
    .data()
    .clone()
}

fn client(app: &TestApp, access_token: &Value) -> ApiClient {
    app.api.signed_in(access_token.as_str().unwrap())
}

async fn status_of_me(client: &ApiClient) -> (u16, Option<String>) {
    let me = client.get("/users/me").await.unwrap();
    (me.status, me.error_code().map(str::to_owned))
}

/// After logout the access token that was just used — checked and remembered by the API —
/// is refused at once, not 15 minutes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_access_token_stops_working() {
    let app = TestApp::spawn().await;
    let session = session(&app, &member_phone()).await;
    let member = client(&app, &session["access_token"]);
    assert_eq!(status_of_me(&member).await.0, 200);
    expect(
        member
            .post(
                "/auth/logout",
                &json!({"refresh_token": session["refresh_token"]}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(
        status_of_me(&member).await,
        (401, Some("session_revoked".to_owned()))
    );
}

/// A refresh token presented twice was stolen: the session ends, and with it every access
/// token it issued — the thief's fresh one and the owner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_refresh_token_ends_the_sessions_access_tokens() {
    let app = TestApp::spawn().await;
    let session = session(&app, &member_phone()).await;
    let owner = client(&app, &session["access_token"]);
    let stolen = session["refresh_token"].clone();
    let thief = expect(
        app.api
            .post("/auth/refresh", &json!({"refresh_token": stolen}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let thief = client(&app, &thief.data()["access_token"]);
    assert_eq!(status_of_me(&thief).await.0, 200);
    assert_eq!(status_of_me(&owner).await.0, 200);

    let replay = app
        .api
        .post("/auth/refresh", &json!({"refresh_token": stolen}))
        .await
        .unwrap();
    assert_eq!(replay.error_code(), Some("refresh_token_reused"));
    for (who, client) in [("thief", &thief), ("owner", &owner)] {
        assert_eq!(
            status_of_me(client).await,
            (401, Some("session_revoked".to_owned())),
            "the {who}'s access token"
        );
    }
}

/// A superadmin whose role is taken away (`krug admin revoke`, another process than the
/// API) loses it within seconds: her sessions end on every API process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_role_takes_effect_within_seconds() {
    let app = TestApp::spawn().await;
    let phone = "+79000000401";
    krug::commands::grant(app.services.clone(), phone, "superadmin", None)
        .await
        .unwrap();
    let operator = app.sign_in(phone).await;
    expect(operator.get("/admin/queues").await.unwrap(), 200).unwrap();

    // The command line shares only Postgres and Redis with the API, as in production.
    let cli = krug::Services::connect(app.services.config.clone()).unwrap();
    krug::commands::revoke(cli, phone, "superadmin")
        .await
        .unwrap();
    eventually(10, "the API to refuse the revoked operator", || async {
        let response = operator.get("/admin/queues").await.unwrap();
        (response.status == 401).then_some(())
    })
    .await;
    let log = expect(app.operator().await.get("/admin/audit").await.unwrap(), 200).unwrap();
    assert!(
        log.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "role.revoke"),
        "{}",
        log.body
    );
}

/// A token signed with our own key but for another issuer or audience — or with no session
/// — is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_another_issuer_audience_or_no_session_are_refused() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    let user_id = expect(member.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = std::fs::read(test_key_dir().join("jwt/private.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sid = uuid::Uuid::new_v4().to_string();
    let good = json!({"sub": user_id, "exp": now + 600, "iat": now, "iss": "krug",
                      "aud": "krug-api", "sid": sid, "roles": [], "typ": "access"});
    let sign = |claims: &Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            claims,
            &key,
        )
        .unwrap()
    };
    // The well-formed token works: what follows fails for its one difference only.
    assert_eq!(
        app.api
            .signed_in(&sign(&good))
            .get("/users/me")
            .await
            .unwrap()
            .status,
        200
    );
    for (what, field, value) in [
        ("another issuer", "iss", json!("staging")),
        ("another audience", "aud", json!("partner-portal")),
        ("no issuer", "iss", Value::Null),
        ("no audience", "aud", Value::Null),
        ("no session", "sid", Value::Null),
    ] {
        let mut claims = good.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(field);
        } else {
            claims[field] = value;
        }
        let response = app
            .api
            .signed_in(&sign(&claims))
            .get("/users/me")
            .await
            .unwrap();
        assert_eq!(
            (response.status, response.error_code()),
            (401, Some("invalid_token")),
            "{what}: {}",
            response.body
        );
    }
}
