//! Operators manage businesses and staff; members manage their profile.

use crate::helpers::{TestApp, member_phone};
use krug_client::expect;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_credentials_are_stored_encrypted_and_never_returned() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;

    let created = operator
        .post(
            "/admin/businesses",
            &json!({
                "name": "Миндаль", "category": "beauty", "cashback_percent": "5",
                "crm_type": "yclients", "crm_base_url": "https://api.yclients.com/api/v1/",
                "crm_credentials": {"partner_token": "pt-SECRET-1", "user_token": "ut-SECRET-2", "company_id": 4564}
            }),
        )
        .await
        .unwrap();

    assert_eq!(created.status, 201, "{}", created.body);
    let business = created.data();
    assert_eq!(business["max_redeem_percent"], "30.00");
    assert_eq!(business["is_medical"], false);
    assert_eq!(business["crm_type"], "yclients");
    assert_eq!(business["crm_base_url"], "https://api.yclients.com/api/v1");
    assert_eq!(business["has_crm_credentials"], true);
    assert!(
        !created.body.to_string().contains("SECRET"),
        "credentials never leave: {}",
        created.body
    );
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT credentials FROM integrations")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("SECRET"),
        "stored encrypted"
    );
    let id: uuid::Uuid = business["id"].as_str().unwrap().parse().unwrap();
    let integration: uuid::Uuid = business["integrations"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let opened = storage::integrations::credentials(&app.db, &app.services.secrets, integration)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened["partner_token"], "pt-SECRET-1");

    let patched = expect(
        operator
            .patch(
                &format!("/admin/businesses/{id}"),
                &json!({"cashback_percent": "7.5", "is_active": false}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(patched.data()["cashback_percent"], "7.50");
    assert_eq!(patched.data()["is_active"], false);
    assert!(!patched.body.to_string().contains("SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_businesses_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let cases = [
        (
            json!({"name": "X", "category": "beauty", "cashback_percent": "101"}),
            "invalid_percent",
        ),
        (
            json!({"name": "X", "category": "beauty", "cashback_percent": "5.555"}),
            "invalid_percent",
        ),
        (
            json!({"name": "X", "category": "beauty", "cashback_percent": "5", "crm_type": "iiko"}),
            "invalid_url",
        ),
        (
            json!({"name": "X", "category": "beauty", "cashback_percent": "5", "crm_type": "iiko",
                   "crm_base_url": "https://api-ru.iiko.services", "crm_credentials": {"api_login": "k"}}),
            "invalid_credentials",
        ),
        (
            json!({"name": "X", "category": "beauty", "cashback_percent": "5", "crm_type": "1c",
                   "crm_base_url": "ftp://x", "crm_credentials": {"username": "u", "password": "p"}}),
            "invalid_url",
        ),
    ];
    for (body, code) in cases {
        let response = operator.post("/admin/businesses", &body).await.unwrap();
        assert_eq!(
            (response.status, response.error_code()),
            (422, Some(code)),
            "{body}: {}",
            response.body
        );
        let message = response.body["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty());
    }
    let unknown_category = operator
        .post(
            "/admin/businesses",
            &json!({"name": "X", "category": "bank", "cashback_percent": "5"}),
        )
        .await
        .unwrap();
    assert_eq!(unknown_category.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_an_operator() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    let body = json!({"name": "X", "category": "beauty", "cashback_percent": "5"});

    let as_member = member.post("/admin/businesses", &body).await.unwrap();
    assert_eq!(
        (as_member.status, as_member.error_code()),
        (403, Some("forbidden"))
    );
    let anonymous = app.api.post("/admin/businesses", &body).await.unwrap();
    assert_eq!(anonymous.status, 401);

    let operator = app.operator().await;
    let business = app.create_business(&operator, body.clone()).await;
    let id = business["id"].as_str().unwrap();
    let staff = member
        .post(
            &format!("/admin/businesses/{id}/staff"),
            &json!({"phone": member_phone(), "role": "staff"}),
        )
        .await
        .unwrap();
    assert_eq!(staff.status, 403);
    let missing = operator
        .post(
            &format!("/admin/businesses/{}/staff", uuid::Uuid::new_v4()),
            &json!({"phone": member_phone(), "role": "staff"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, Some("business_not_found"))
    );
    let added = expect(
        operator
            .post(
                &format!("/admin/businesses/{id}/staff"),
                &json!({"phone": "8 (900) 555-00-11", "role": "owner"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    assert_eq!(added.data()["phone"], "+79005550011");
    assert_eq!(added.data()["role"], "owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_and_change_their_profile() {
    let app = TestApp::spawn().await;
    let phone = member_phone();
    let member = app.sign_in(&phone).await;

    let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
    assert_eq!(me.data()["phone"], phone.as_str());
    assert_eq!(me.data()["roles"], json!([]));
    assert!(me.data()["first_name"].is_null());

    let changed = expect(
        member
            .patch(
                "/users/me",
                &json!({"first_name": "Анна", "email": "anna@example.ru"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(changed.data()["first_name"], "Анна");
    assert_eq!(changed.data()["email"], "anna@example.ru");
    let cleared = expect(
        member
            .patch("/users/me", &json!({"email": null}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert!(cleared.data()["email"].is_null());
    assert_eq!(cleared.data()["first_name"], "Анна", "absent fields stay");
    let invalid = member
        .patch("/users/me", &json!({"email": "not-an-email"}))
        .await
        .unwrap();
    assert_eq!(
        (invalid.status, invalid.error_code()),
        (422, Some("invalid_email"))
    );
}
