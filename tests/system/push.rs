//! Push in production: the FCM token minted from a service account, renewed when it
//! expires, against fakes of Google's token endpoint and FCM.

use crate::helpers::{Options, TestApp, eventually, member_phone, zone_where_it_is};
use krug_client::{expect, scan_and_wait};
use serde_json::json;
use simulators::fcm::FakeFcm;

/// A member's accruals are pushed through FCM with a token minted from the service account
/// (`FCM_SERVICE_ACCOUNT_FILE`); when Google expires it, FCM's 401 gets a new one minted
/// and the message sent: nothing is lost and no static token is ever configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_fcm_token_is_renewed_from_the_service_account() {
    let (private, public) = krug::keys::generate_rsa_pair().unwrap();
    let email = "krug-push@krug-test.iam.gserviceaccount.com";
    let google = FakeFcm::start(email, public.as_bytes()).await.unwrap();
    let file = std::env::temp_dir().join(format!("krug-sa-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &file,
        json!({
            "type": "service_account", "project_id": "krug-test", "private_key_id": "k1",
            "private_key": private,
            "client_email": email, "token_uri": google.token_url,
        })
        .to_string(),
    )
    .unwrap();
    let app = TestApp::spawn_with(Options {
        fcm_url: Some(google.url.clone()),
        fcm_service_account: Some(file.clone()),
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", &member_phone())
        .await;
    let member = app.sign_in(&member_phone()).await;
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": "device-anna", "platform": "ios"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();

    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "1000").await}),
    )
    .await
    .unwrap();
    eventually(10, "the first push", || async {
        (google.sent().len() == 1).then_some(())
    })
    .await;
    google.expire_tokens();
    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "2000").await}),
    )
    .await
    .unwrap();
    eventually(10, "the second push", || async {
        (google.sent().len() == 2).then_some(())
    })
    .await;
    let _ = std::fs::remove_file(&file);

    assert_eq!(
        google.minted(),
        2,
        "one token, then one more after it expired"
    );
    assert_eq!(
        google
            .state
            .refused_bearer
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(
        google
            .sent()
            .iter()
            .all(|(device, _, _)| device == "device-anna")
    );
}
