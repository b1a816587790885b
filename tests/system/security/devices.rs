//! Push tokens: `POST /users/me/devices` under attack by another member (taking over a
//! stranger's token to receive her pushes) and by a member registering without end.

use crate::helpers::{TestApp, member_phone};
use krug_client::{ApiClient, ApiResponse, expect};
use serde_json::json;

async fn register(member: &ApiClient, token: &str) -> ApiResponse {
    member
        .post(
            "/users/me/devices",
            &json!({"token": token, "platform": "android"}),
        )
        .await
        .unwrap()
}

async fn user_id(client: &ApiClient) -> String {
    expect(client.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn owner_of(app: &TestApp, token: &str) -> Option<String> {
    sqlx::query_scalar("SELECT user_id::text FROM devices WHERE token = $1")
        .bind(token)
        .fetch_optional(&app.db)
        .await
        .unwrap()
}

/// Member B registers member A's push token: 409 `device_taken`, the message names no
/// one, and the token stays A's (her pushes go on reaching her). Once A deletes her
/// account, the device is free and B may register it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_members_push_token_is_not_taken_over() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in(&member_phone()).await;
    let bob = app.sign_in(&member_phone()).await;
    let alice_id = user_id(&alice).await;
    let bob_id = user_id(&bob).await;
    expect(register(&alice, "token-of-alices-phone").await, 201).unwrap();

    let taken = register(&bob, "token-of-alices-phone").await;
    assert_eq!(
        (taken.status, taken.error_code()),
        (409, Some("device_taken")),
        "{}",
        taken.body
    );
    assert!(
        !taken.body.to_string().contains(&alice_id),
        "no other member's data in the refusal: {}",
        taken.body
    );
    assert_eq!(
        owner_of(&app, "token-of-alices-phone").await,
        Some(alice_id.clone()),
        "the token still belongs to her"
    );
    // Re-registering her own token is fine, and stays hers.
    expect(register(&alice, "token-of-alices-phone").await, 201).unwrap();
    assert_eq!(
        owner_of(&app, "token-of-alices-phone").await,
        Some(alice_id)
    );

    expect(alice.delete("/users/me").await.unwrap(), 200).unwrap();
    expect(register(&bob, "token-of-alices-phone").await, 201).unwrap();
    assert_eq!(
        owner_of(&app, "token-of-alices-phone").await,
        Some(bob_id),
        "a deleted member's device is free"
    );
}

/// Ten devices a member; the eleventh is refused with 422 `too_many_devices` and not
/// stored, while re-registering one of the ten still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_device_is_refused() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    let id = user_id(&member).await;
    for n in 1..=10 {
        expect(register(&member, &format!("token-{n}")).await, 201).unwrap();
    }
    let eleventh = register(&member, "token-11").await;
    assert_eq!(
        (eleventh.status, eleventh.error_code()),
        (422, Some("too_many_devices")),
        "{}",
        eleventh.body
    );
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE user_id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(devices, 10);
    expect(register(&member, "token-3").await, 201).unwrap();
}
