//! The Inner Circle: granted and revoked by a superadmin only (audited), multiplier 2.5,
//! never taken away by `tier_review`, and events that only its members may join.

use crate::helpers::{TestApp, eventually, member_phone};
use krug_client::{ApiClient, expect, scan_and_wait};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

async fn user_id(client: &ApiClient) -> String {
    expect(client.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn tier(client: &ApiClient) -> String {
    expect(client.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["status_tier"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The tier changes the audit log holds for this member, oldest first, as (before, after).
async fn tier_changes(operator: &ApiClient, user: &str) -> Vec<(Value, Value)> {
    let page = expect(
        operator
            .get(&format!("/admin/audit?target={user}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let mut changes: Vec<(Value, Value)> = page.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.tier")
        .map(|e| {
            (
                e["before"]["status_tier"].clone(),
                e["after"]["status_tier"].clone(),
            )
        })
        .collect();
    changes.reverse();
    changes
}

/// A moderator may not grant it; a superadmin grants it (audited, once); purchases then
/// accrue ×2.5 and never move the member out of it; `tier_review`, which moves another
/// member down that same night, leaves her in it although her year earns only VIP; a
/// revocation returns her to VIP (what her spend earns, not the tier named) and her next
/// purchase accrues ×1.5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_superadmin_grants_the_inner_circle_and_only_a_revocation_ends_it() {
    let app = TestApp::spawn().await;
    let superadmin = app.operator().await;
    krug::commands::grant(app.services.clone(), "+79000000301", "moderator", None)
        .await
        .unwrap();
    let moderator = app.sign_in("+79000000301").await;
    let (_, salon) = app
        .business_with_staff(&superadmin, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let (_, spa) = app
        .business_with_staff(&superadmin, "Стим Центр", "wellness", "5", "+79000000102")
        .await;
    // Her year earns VIP: 120 000 ₽ in two categories.
    let member = app.sign_in(&member_phone()).await;
    for staff in [&salon, &spa] {
        scan_and_wait(
            &member,
            &json!({"code": app.issue_qr(staff, "60000").await}),
        )
        .await
        .unwrap();
    }
    assert_eq!(tier(&member).await, "VIP");
    let id = user_id(&member).await;
    let set_tier = format!("/admin/users/{id}/tier");

    let refused = moderator
        .post(&set_tier, &json!({"status_tier": "InnerCircle"}))
        .await
        .unwrap();
    assert_eq!(
        (refused.status, refused.error_code()),
        (403, Some("forbidden")),
        "a moderator may not grant the Inner Circle: {}",
        refused.body
    );
    assert_eq!(tier(&member).await, "VIP");
    assert!(tier_changes(&superadmin, &id).await.is_empty());

    let granted = expect(
        superadmin
            .post(&set_tier, &json!({"status_tier": "InnerCircle"}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(granted.data()["status_tier"], "InnerCircle");
    assert_eq!(granted.data()["earned_tier"], "VIP");
    let again = expect(
        superadmin
            .post(&set_tier, &json!({"status_tier": "InnerCircle"}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(again.data()["status_tier"], "InnerCircle");
    assert_eq!(
        tier_changes(&superadmin, &id).await,
        vec![(json!("VIP"), json!("InnerCircle"))],
        "the grant is audited once; granting again changes nothing"
    );
    assert_eq!(tier(&member).await, "InnerCircle");

    // 1 000 ₽ at 5 % × 2.5.
    let bought = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&salon, "1000").await}),
    )
    .await
    .unwrap();
    assert_eq!(bought["result"]["bonus_accrued"], "125.00", "{bought}");
    assert_eq!(bought["result"]["status_tier"], "InnerCircle");
    let balance = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
    assert_eq!(balance.data()["status_tier"], "InnerCircle");
    assert!(balance.data()["next_tier"].is_null(), "{}", balance.body);

    // Another member whose VIP year has passed: the review moves her down, so it ran.
    let lapsed = app.sign_in(&member_phone()).await;
    scan_and_wait(
        &lapsed,
        &json!({"code": app.issue_qr(&salon, "90000").await}),
    )
    .await
    .unwrap();
    scan_and_wait(&lapsed, &json!({"code": app.issue_qr(&spa, "20000").await}))
        .await
        .unwrap();
    assert_eq!(tier(&lapsed).await, "VIP");
    sqlx::query(
        "UPDATE transactions SET occurred_at = now() - interval '400 days' WHERE amount = 90000",
    )
    .execute(&app.db)
    .await
    .unwrap();
    jobs::schedule::trigger(&app.env.queue, &app.env.db, "tier_review")
        .await
        .unwrap();
    eventually(10, "the review to move the lapsed member down", || async {
        (tier(&lapsed).await == "Insider").then_some(())
    })
    .await;
    assert_eq!(
        tier(&member).await,
        "InnerCircle",
        "tier_review never downgrades the Inner Circle"
    );

    // Revoking: she returns to what her year earns, whatever tier was named.
    let revoked = expect(
        superadmin
            .post(&set_tier, &json!({"status_tier": "Insider"}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(revoked.data()["status_tier"], "VIP");
    assert_eq!(tier(&member).await, "VIP");
    let not_in_it = superadmin
        .post(&set_tier, &json!({"status_tier": "Elite"}))
        .await
        .unwrap();
    assert_eq!(
        (not_in_it.status, not_in_it.error_code()),
        (409, Some("not_inner_circle")),
        "tiers below the Inner Circle are not set by hand: {}",
        not_in_it.body
    );
    assert_eq!(tier(&member).await, "VIP");
    assert_eq!(
        tier_changes(&superadmin, &id).await,
        vec![
            (json!("VIP"), json!("InnerCircle")),
            (json!("InnerCircle"), json!("VIP"))
        ]
    );
    let after = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&salon, "1000").await}),
    )
    .await
    .unwrap();
    assert_eq!(after["result"]["bonus_accrued"], "75.00", "VIP again: ×1.5");

    let unknown = superadmin
        .post(
            &format!("/admin/users/{}/tier", uuid::Uuid::new_v4()),
            &json!({"status_tier": "InnerCircle"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, Some("user_not_found"))
    );
    app.assert_ledger_consistent().await;
}

/// An event for the Inner Circle refuses an Elite member (the tier just below) with 403
/// `tier_too_low` and seats a member of the Inner Circle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_circle_event_refuses_everyone_else() {
    let app = TestApp::spawn().await;
    let superadmin = app.operator().await;
    let mut staff = Vec::new();
    for (name, category, phone) in [
        ("Миндаль", "beauty", "+79000000100"),
        ("Стим Центр", "wellness", "+79000000102"),
        ("Лисичкино", "gastronomy", "+79000000104"),
    ] {
        staff.push(
            app.business_with_staff(&superadmin, name, category, "5", phone)
                .await
                .1,
        );
    }
    // Elite through purchases: 300 000 ₽ in three categories.
    let elite = app.sign_in(&member_phone()).await;
    for cashier in &staff {
        scan_and_wait(
            &elite,
            &json!({"code": app.issue_qr(cashier, "100000").await}),
        )
        .await
        .unwrap();
    }
    assert_eq!(tier(&elite).await, "Elite");
    let invited = app.sign_in(&member_phone()).await;
    expect(
        superadmin
            .post(
                &format!("/admin/users/{}/tier", user_id(&invited).await),
                &json!({"status_tier": "InnerCircle"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();

    let date = (OffsetDateTime::now_utc() + Duration::days(7))
        .format(&Rfc3339)
        .unwrap();
    let proposed = expect(
        superadmin
            .post(
                "/events",
                &json!({"title": "Ужин с шеф-поваром", "date": date, "location": "Лисичкино",
                        "max_participants": 12, "min_status_tier": "InnerCircle"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    assert_eq!(proposed.data()["min_status_tier"], "InnerCircle");
    let id = proposed.data()["id"].as_str().unwrap().to_owned();
    expect(
        superadmin
            .patch(
                &format!("/admin/events/{id}"),
                &json!({"status": "approved"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let register = format!("/events/{id}/register");

    let refused = elite.post(&register, &json!({})).await.unwrap();
    assert_eq!(
        (refused.status, refused.error_code()),
        (403, Some("tier_too_low")),
        "{}",
        refused.body
    );
    let seated = expect(invited.post(&register, &json!({})).await.unwrap(), 201).unwrap();
    assert_eq!(seated.data()["registered_count"], 1);
    assert_eq!(seated.data()["is_registered"], true);
}
