//! Operator roles (a moderator is not a superadmin) and the audit log of their changes.

use crate::helpers::TestApp;
use krug_client::{ApiClient, expect};
use serde_json::{Value, json};
use uuid::Uuid;

async fn user_id(client: &ApiClient) -> String {
    expect(client.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A moderator reads everything, retries and discards jobs and approves events; every
/// change to the coalition itself is refused with 403 `forbidden`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_cannot_change_the_coalition() {
    let app = TestApp::spawn().await;
    let superadmin = app.operator().await;
    let business = app
        .create_business(
            &superadmin,
            json!({"name": "Миндаль", "category": "beauty", "cashback_percent": "5"}),
        )
        .await;
    let id = business["id"].as_str().unwrap();
    krug::commands::grant(app.services.clone(), "+79000000301", "moderator", None)
        .await
        .unwrap();
    let moderator = app.sign_in("+79000000301").await;

    let refused: Vec<(&str, reqwest::Method, String, Value)> = vec![
        (
            "create a business",
            reqwest::Method::POST,
            "/admin/businesses".into(),
            json!({"name": "Moderator's own", "category": "beauty", "cashback_percent": "50"}),
        ),
        (
            "raise a cashback",
            reqwest::Method::PATCH,
            format!("/admin/businesses/{id}"),
            json!({"cashback_percent": "90"}),
        ),
        (
            "add staff",
            reqwest::Method::POST,
            format!("/admin/businesses/{id}/staff"),
            json!({"phone": "+79000000302", "role": "owner"}),
        ),
        (
            "poll a CRM",
            reqwest::Method::POST,
            format!("/admin/businesses/{id}/poll"),
            json!({}),
        ),
        (
            "create a promo chain",
            reqwest::Method::POST,
            "/admin/promo-chains".into(),
            json!({"trigger_category": "beauty", "target_business_id": id,
                   "discount_type": "bonus", "discount_value": "5000", "valid_days": 30}),
        ),
        (
            "trigger a schedule",
            reqwest::Method::POST,
            "/admin/schedules/tier_review/trigger".into(),
            json!({}),
        ),
    ];
    for (what, method, path, body) in refused {
        let response = moderator.call(method, &path, Some(&body)).await.unwrap();
        assert_eq!(
            (response.status, response.error_code()),
            (403, Some("forbidden")),
            "a moderator may not {what}: {}",
            response.body
        );
    }
    let unchanged: (String, rust_decimal::Decimal) =
        sqlx::query_as("SELECT name, cashback_percent FROM businesses WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(unchanged.1, rust_decimal::Decimal::from(5));
    let businesses: i64 = sqlx::query_scalar("SELECT count(*) FROM businesses")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(businesses, 1);

    // What a moderator may do.
    expect(moderator.get("/admin/queues").await.unwrap(), 200).unwrap();
    expect(moderator.get("/admin/schedules").await.unwrap(), 200).unwrap();
    expect(moderator.get("/admin/audit").await.unwrap(), 200).unwrap();
    let retried = moderator
        .post(
            &format!("/admin/jobs/otp_send/{}/retry", Uuid::now_v7()),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(
        (retried.status, retried.error_code()),
        (404, Some("job_not_found")),
        "a moderator may retry jobs (this one does not exist)"
    );
    let event: Uuid = sqlx::query_scalar(
        "INSERT INTO events (title, date, max_participants) VALUES ('Дегустация', now() + interval '7 days', 20) RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let approved = expect(
        moderator
            .patch(
                &format!("/admin/events/{event}"),
                &json!({"status": "approved"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(approved.data()["status"], "approved");
}

/// Every change an operator makes is in the append-only audit log: who, what, on what,
/// before and after, and the id of the request that made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_changes_are_in_an_append_only_audit_log() {
    let app = TestApp::spawn().await;
    let superadmin = app.operator().await;
    let superadmin_id = user_id(&superadmin).await;
    let created = expect(
        superadmin
            .post(
                "/admin/businesses",
                &json!({"name": "Лисичкино", "category": "gastronomy", "cashback_percent": "3"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let id = created.data()["id"].as_str().unwrap().to_owned();
    let updated = expect(
        superadmin
            .patch(
                &format!("/admin/businesses/{id}"),
                &json!({"cashback_percent": "4.5"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    krug::commands::grant(app.services.clone(), "+79000000303", "moderator", None)
        .await
        .unwrap();
    let moderator = app.sign_in("+79000000303").await;

    let log = expect(
        moderator
            .get(&format!("/admin/audit?target={id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let items = log.data()["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["business.update", "business.create"],
        "{}",
        log.body
    );
    let update = &items[0];
    assert_eq!(update["actor_id"], superadmin_id.as_str());
    assert_eq!(update["target_type"], "business");
    assert_eq!(update["before"]["cashback_percent"], "3.00");
    assert_eq!(update["after"]["cashback_percent"], "4.50");
    assert_eq!(
        update["request_id"], updated.body["meta"]["request_id"],
        "the entry names the request that made the change"
    );
    assert_eq!(items[1]["request_id"], created.body["meta"]["request_id"]);
    assert!(items[1]["before"].is_null());

    // The command line's grant is there too, without an actor; filtering by actor leaves it out.
    let moderator_id = user_id(&moderator).await;
    let grants = expect(
        moderator
            .get(&format!("/admin/audit?target={moderator_id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(grants.data()["items"][0]["action"], "role.grant");
    assert!(grants.data()["items"][0]["actor_id"].is_null());
    let by_superadmin = expect(
        moderator
            .get(&format!("/admin/audit?actor={superadmin_id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(by_superadmin.data()["items"].as_array().unwrap().len(), 2);

    // Append-only, whoever asks: not even the database owner rewrites history.
    for tamper in [
        "UPDATE audit_log SET after = '{}'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let refused = sqlx::query(tamper).execute(&app.db).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("append-only")),
            "{tamper}: {refused:?}"
        );
    }
}

/// Pausing a promo chain and taking someone off a partner's staff are a superadmin's: a
/// moderator (who may list the chains) and a member are refused with 403 `forbidden`, and
/// the chain and the staff stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderators_and_members_cannot_pause_chains_or_remove_staff() {
    let app = TestApp::spawn().await;
    let superadmin = app.operator().await;
    let (salon, cashier) = app
        .business_with_staff(&superadmin, "Миндаль", "beauty", "5", "+79000000311")
        .await;
    let cashier_id = user_id(&cashier).await;
    let chain = expect(
        superadmin
            .post(
                "/admin/promo-chains",
                &json!({"trigger_category": "beauty", "target_business_id": salon,
                        "discount_type": "percent", "discount_value": "10", "valid_days": 7}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap()
    .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    krug::commands::grant(app.services.clone(), "+79000000301", "moderator", None)
        .await
        .unwrap();
    let moderator = app.sign_in("+79000000301").await;
    let member = app.sign_in("+79000000312").await;

    let listed = expect(moderator.get("/admin/promo-chains").await.unwrap(), 200).unwrap();
    assert_eq!(listed.data()["items"][0]["id"], chain.as_str());
    let listing = member.get("/admin/promo-chains").await.unwrap();
    assert_eq!(
        (listing.status, listing.error_code()),
        (403, Some("forbidden"))
    );
    for (who, client) in [("a moderator", &moderator), ("a member", &member)] {
        let pause = client
            .patch(
                &format!("/admin/promo-chains/{chain}"),
                &json!({"is_active": false}),
            )
            .await
            .unwrap();
        assert_eq!(
            (pause.status, pause.error_code()),
            (403, Some("forbidden")),
            "{who} may not pause a chain: {}",
            pause.body
        );
        let remove = client
            .delete(&format!("/admin/businesses/{salon}/staff/{cashier_id}"))
            .await
            .unwrap();
        assert_eq!(
            (remove.status, remove.error_code()),
            (403, Some("forbidden")),
            "{who} may not remove staff: {}",
            remove.body
        );
    }
    let active: bool = sqlx::query_scalar("SELECT is_active FROM promo_chains WHERE id = $1::uuid")
        .bind(&chain)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(active, "the chain still issues coupons");
    let qr = cashier
        .post("/business/qr", &json!({"amount": "100.00"}))
        .await
        .unwrap();
    assert_eq!(
        qr.status, 200,
        "the cashier is still on the staff: {}",
        qr.body
    );
}
