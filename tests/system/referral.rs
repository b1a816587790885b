//! Referral: a code and a link per member, taken at sign-up or within 7 days of it.

use crate::helpers::{TestApp, member_phone};
use krug::client::{ApiClient, expect, sign_in_session};
use serde_json::{Value, json};

async fn referral(member: &ApiClient) -> Value {
    expect(member.get("/users/me/referral").await.unwrap(), 200)
        .unwrap()
        .data()
        .clone()
}

/// A member's code is stable and her link carries it; a new member names her at sign-up
/// (any case, spaces around), another within the week through `POST /users/me/referrer`;
/// a second inviter, one's own code, an unknown or malformed code and a sign-up older than
/// 7 days are refused, and the inviter's counts say who named her.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_is_taken_at_sign_up_or_within_seven_days() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&member_phone()).await;
    let mine = referral(&inviter).await;
    let code = mine["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8, "{mine}");
    assert!(mine["link"].as_str().unwrap().ends_with(&code), "{mine}");
    assert_eq!(
        (mine["invited"].clone(), mine["rewarded"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        referral(&inviter).await["code"],
        code.as_str(),
        "the code stays"
    );

    // At sign-up.
    let session = sign_in_session(
        &app.services,
        &app.api,
        &member_phone(),
        json!({"referral_code": format!(" {} ", code.to_lowercase())}),
    )
    .await
    .unwrap();
    assert_eq!(session["referral"], json!({"taken": true, "error": null}));
    let invitee = app.api.signed_in(session["access_token"].as_str().unwrap());
    let again = expect(
        invitee
            .post("/users/me/referrer", &json!({"code": code}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(
        again.data()["code"],
        code.as_str(),
        "the same inviter again changes nothing"
    );
    let other_code = referral(&app.sign_in(&member_phone()).await).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = invitee
        .post("/users/me/referrer", &json!({"code": other_code}))
        .await
        .unwrap();
    assert_eq!(
        (second.status, second.error_code()),
        (409, Some("referrer_already_set")),
        "{}",
        second.body
    );

    // Within the week, after sign-up.
    let later = app.sign_in(&member_phone()).await;
    for (body, status, error) in [
        (json!({"code": "NOPE"}), 422, "invalid_referral_code"),
        (json!({"code": "ZZZZZZZZ"}), 404, "referral_code_not_found"),
        (
            json!({"code": referral(&later).await["code"]}),
            422,
            "own_referral_code",
        ),
    ] {
        let refused = later.post("/users/me/referrer", &body).await.unwrap();
        assert_eq!(
            (refused.status, refused.error_code()),
            (status, Some(error)),
            "{body}: {}",
            refused.body
        );
    }
    expect(
        later
            .post("/users/me/referrer", &json!({"code": code}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();

    // A member who signed up 8 days ago.
    let phone = member_phone();
    let late = app.sign_in(&phone).await;
    sqlx::query("UPDATE users SET created_at = now() - interval '8 days' WHERE phone = $1")
        .bind(&phone)
        .execute(&app.db)
        .await
        .unwrap();
    let closed = late
        .post("/users/me/referrer", &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(
        (closed.status, closed.error_code()),
        (409, Some("referral_window_closed")),
        "{}",
        closed.body
    );
    // Signing in again with a code is not signing up: refused, but the sign-in succeeds.
    let resigned = sign_in_session(
        &app.services,
        &app.api,
        &phone,
        json!({"referral_code": code}),
    )
    .await
    .unwrap();
    assert_eq!(
        resigned["referral"],
        json!({"taken": false, "error": "referral_window_closed"})
    );

    let counts = referral(&inviter).await;
    assert_eq!(
        (counts["invited"].clone(), counts["rewarded"].clone()),
        (json!(2), json!(0))
    );
}
