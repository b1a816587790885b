//! Referral: a code and a link per member, taken at sign-up or within 7 days of it.

use crate::helpers::{TestApp, eventually, member_phone};
use krug_client::{ApiClient, expect, scan_and_wait, sign_in_session};
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
        &app.services.db,
        &app.services.cache,
        &app.api,
        &member_phone(),
        json!({"referral_code": format!(" {} ", code.to_lowercase())}),
    )
    .await
    .unwrap();
    assert_eq!(session["referral"], json!({"taken": true, "error": null}));
    let invitee = app.api.signed_in_session(&session).unwrap();
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
        &app.services.db,
        &app.services.cache,
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

async fn invited_by(app: &TestApp, code: &str) -> ApiClient {
    let session = sign_in_session(
        &app.services.db,
        &app.services.cache,
        &app.api,
        &member_phone(),
        json!({"referral_code": code}),
    )
    .await
    .unwrap();
    assert_eq!(session["referral"]["taken"], true, "{session}");
    app.api.signed_in_session(&session).unwrap()
}

async fn referral_entries(member: &ApiClient) -> Vec<String> {
    expect(member.get("/loyalty/ledger").await.unwrap(), 200)
        .unwrap()
        .data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "referral")
        .map(|e| e["amount"].as_str().unwrap().to_owned())
        .collect()
}

async fn register_device(member: &ApiClient, token: &str) {
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": token, "platform": "android"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
}

/// Through `expire`: a purchase under `referral_min_purchase` rewards nothing; the first
/// one of 1 000 ₽ rewards inviter and invitee 300 each, once however often the job runs;
/// an invitee on the inviter's own device (he tried to register her token) gets
/// nothing, nor does his inviter; past the yearly limit (here 1, the rule being editable)
/// an invitation is not rewarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_is_rewarded_once_and_never_for_oneself_or_past_the_limit() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, salon) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let expire = || async {
        jobs::schedule::trigger(&app.env.queue, &app.env.db, "expire")
            .await
            .unwrap();
    };

    let inviter = app.sign_in(&member_phone()).await;
    register_device(&inviter, "device-of-the-inviter").await;
    let code = referral(&inviter).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let friend = invited_by(&app, &code).await;
    scan_and_wait(
        &friend,
        &json!({"code": app.issue_qr(&salon, "999.99").await}),
    )
    .await
    .unwrap();
    expire().await;
    // One to settle on her own device, from a second account.
    let second_self = invited_by(&app, &code).await;
    // The token stays the inviter's (409 `device_taken`), but the second account was seen
    // on the device all the same.
    let taken = second_self
        .post(
            "/users/me/devices",
            &json!({"token": "device-of-the-inviter", "platform": "android"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (taken.status, taken.error_code()),
        (409, Some("device_taken"))
    );
    scan_and_wait(
        &second_self,
        &json!({"code": app.issue_qr(&salon, "5000").await}),
    )
    .await
    .unwrap();
    scan_and_wait(
        &friend,
        &json!({"code": app.issue_qr(&salon, "1000").await}),
    )
    .await
    .unwrap();
    expire().await;
    eventually(10, "the referral reward", || async {
        (referral(&inviter).await["rewarded"] == 1).then_some(())
    })
    .await;
    expire().await;
    // A third invitee past the limit, settled by the same run as a control that shows the
    // job has run again.
    sqlx::query("UPDATE referral_rules SET yearly_limit = 1")
        .execute(&app.db)
        .await
        .unwrap();
    let third = invited_by(&app, &code).await;
    scan_and_wait(&third, &json!({"code": app.issue_qr(&salon, "2000").await}))
        .await
        .unwrap();
    expire().await;
    eventually(10, "every invitation settled", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM referrals WHERE status = 'pending'")
                .fetch_one(&app.db)
                .await
                .unwrap();
        (pending == 0).then_some(())
    })
    .await;

    assert_eq!(
        referral_entries(&inviter).await,
        vec!["300.00"],
        "rewarded once"
    );
    assert_eq!(referral_entries(&friend).await, vec!["300.00"]);
    assert!(
        referral_entries(&second_self).await.is_empty(),
        "not for oneself"
    );
    assert!(
        referral_entries(&third).await.is_empty(),
        "not past the yearly limit"
    );
    let refusals: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, refusal FROM referrals ORDER BY created_at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        refusals,
        vec![
            ("rewarded".to_owned(), None),
            ("refused".to_owned(), Some("same_device".to_owned())),
            ("refused".to_owned(), Some("yearly_limit".to_owned())),
        ]
    );
    let counts = referral(&inviter).await;
    assert_eq!(
        (counts["invited"].clone(), counts["rewarded"].clone()),
        (json!(3), json!(1))
    );
    app.assert_ledger_consistent().await;
}
