//! Cross-promo coupons and the messages about them.

use crate::helpers::{Options, TestApp, coupons, eventually, member_phone, zone_where_it_is};
use krug_client::{ApiClient, expect, scan_and_wait};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

/// A salon, a gastromarket, a clinic (medical) and the chain "a salon purchase of 3 000 ₽ or
/// more earns 15 % at the gastromarket, valid 7 days".
struct Coalition {
    operator: ApiClient,
    salon: (String, ApiClient),
    market: (String, ApiClient),
    clinic: (String, ApiClient),
}

async fn coalition(app: &TestApp) -> Coalition {
    let operator = app.operator().await;
    let salon = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let market = app
        .business_with_staff(&operator, "Лисичкино", "gastronomy", "3", "+79000000101")
        .await;
    let clinic_json = app
        .create_business(&operator, json!({"name": "Миллениум", "category": "health", "cashback_percent": "4", "is_medical": true}))
        .await;
    let clinic_id = clinic_json["id"].as_str().unwrap().to_owned();
    expect(
        operator
            .post(
                &format!("/admin/businesses/{clinic_id}/staff"),
                &json!({"phone": "+79000000104", "role": "staff"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let clinic = (clinic_id, app.sign_in("+79000000104").await);
    for (trigger, kind) in [
        (json!({"trigger_business_id": salon.0}), "business"),
        (json!({"trigger_category": "health"}), "category"),
    ] {
        let mut chain = json!({"min_amount": "3000", "target_business_id": market.0, "discount_type": "percent", "discount_value": "15", "valid_days": 7});
        chain
            .as_object_mut()
            .unwrap()
            .extend(trigger.as_object().unwrap().clone());
        let created = operator.post("/admin/promo-chains", &chain).await.unwrap();
        assert_eq!(created.status, 201, "{kind} chain: {}", created.body);
    }
    Coalition {
        operator,
        salon,
        market,
        clinic,
    }
}

async fn notifications(
    app: &TestApp,
    template: &str,
) -> Vec<(String, String, Option<time::OffsetDateTime>)> {
    sqlx::query_as("SELECT channel, status, send_after FROM notifications WHERE template = $1")
        .bind(template)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// A salon purchase issues a gastromarket coupon and a push about it; a medical purchase
/// issues nothing, even though a chain names its category.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salon_purchase_earns_a_gastromarket_coupon_and_a_medical_one_nothing() {
    let app = TestApp::spawn_with(Options {
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await;
    let c = coalition(&app).await;
    let member = app.sign_in(&member_phone()).await;
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": "fcm-token-anna", "platform": "android"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();

    let clinic_visit = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.clinic.1, "5000").await}),
    )
    .await
    .unwrap();
    assert_eq!(clinic_visit["state"], "done");
    let salon_visit = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "4500").await}),
    )
    .await
    .unwrap();
    assert_eq!(salon_visit["state"], "done");

    let issued = eventually(10, "the coupon", || async {
        Some(coupons(&member).await).filter(|c| !c.is_empty())
    })
    .await;
    assert_eq!(
        issued.len(),
        1,
        "one coupon, from the salon purchase only: {issued:?}"
    );
    let coupon = &issued[0];
    assert_eq!(coupon["business_id"], c.market.0.as_str());
    assert_eq!(coupon["discount_type"], "percent");
    assert_eq!(coupon["discount_value"], "15.00");
    assert_eq!(coupon["code"].as_str().unwrap().len(), 10);
    assert!(coupon["source_chain_id"].is_string());
    let pushes = eventually(10, "the coupon push", || async {
        Some(notifications(&app, "coupon_issued").await).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(pushes, vec![("push".to_owned(), "sent".to_owned(), None)]);
    let clinic_promo: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'cross_promo' AND payload::text LIKE $1",
    )
    .bind(format!(
        "%{}%",
        clinic_visit["result"]["transaction_id"].as_str().unwrap()
    ))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        clinic_promo, 0,
        "a medical purchase never reaches cross-promo"
    );
    let metrics = crate::helpers::http()
        .get(format!("{}/metrics", app.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cross_promo_triggered_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let _ = &c.operator;
}

/// A coupon takes its discount once, at its business only, also when two scans race for it;
/// an expired coupon is refused with its reason and leaves the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coupon_works_once_at_its_business_and_not_after_it_expires() {
    let app = TestApp::spawn_with(Options {
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await;
    let c = coalition(&app).await;
    let member = app.sign_in(&member_phone()).await;
    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "3000").await}),
    )
    .await
    .unwrap();
    let coupon = eventually(10, "the coupon", || async {
        coupons(&member).await.into_iter().next()
    })
    .await;
    let coupon_id = coupon["id"].as_str().unwrap().to_owned();

    let wrong_place = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "1000").await, "coupon_id": coupon_id}),
    )
    .await
    .unwrap();
    assert_eq!(wrong_place["error"]["code"], "coupon_wrong_business");
    let stranger = app.sign_in(&member_phone()).await;
    let not_theirs = scan_and_wait(
        &stranger,
        &json!({"code": app.issue_qr(&c.market.1, "1000").await, "coupon_id": coupon_id}),
    )
    .await
    .unwrap();
    assert_eq!(not_theirs["error"]["code"], "coupon_invalid");

    // Two checks at the market race for the coupon: one gets it.
    let (a, b) = (
        app.issue_qr(&c.market.1, "2000").await,
        app.issue_qr(&c.market.1, "2000").await,
    );
    let (body_a, body_b) = (
        json!({"code": a, "coupon_id": coupon_id}),
        json!({"code": b, "coupon_id": coupon_id}),
    );
    let (first, second) = tokio::join!(
        scan_and_wait(&member, &body_a),
        scan_and_wait(&member, &body_b)
    );
    let outcomes = [first.unwrap(), second.unwrap()];
    let used: Vec<&Value> = outcomes.iter().filter(|o| o["state"] == "done").collect();
    assert_eq!(used.len(), 1, "{outcomes:?}");
    assert_eq!(used[0]["result"]["coupon_discount"], "300.00");
    assert_eq!(
        used[0]["result"]["bonus_accrued"], "51.00",
        "3 % of the 1 700 paid in money"
    );
    let refused = outcomes.iter().find(|o| o["state"] == "failed").unwrap();
    assert_eq!(refused["error"]["code"], "coupon_used");
    assert!(
        coupons(&member).await.is_empty(),
        "a used coupon leaves the list"
    );

    // A new coupon from the next purchase, left to expire.
    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "3000").await}),
    )
    .await
    .unwrap();
    let fresh = eventually(10, "the second coupon", || async {
        coupons(&member).await.into_iter().next()
    })
    .await;
    sqlx::query("UPDATE coupons SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(fresh["id"].as_str().unwrap())
        .execute(&app.db)
        .await
        .unwrap();
    let late = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.market.1, "1000").await, "coupon_id": fresh["id"]}),
    )
    .await
    .unwrap();
    assert_eq!(late["error"]["code"], "coupon_expired");
    assert_eq!(late["error"]["message"], "This coupon has expired");
    jobs::schedule::trigger(&app.env.queue, &app.env.db, "expire")
        .await
        .unwrap();
    eventually(10, "the expiry", || async {
        let expired: Option<time::OffsetDateTime> =
            sqlx::query_scalar("SELECT expired_at FROM coupons WHERE id = $1::uuid")
                .bind(fresh["id"].as_str().unwrap())
                .fetch_one(&app.db)
                .await
                .unwrap();
        expired
    })
    .await;
    app.assert_ledger_consistent().await;
}

/// A bonus coupon takes nothing off the check: its bonuses are credited with the purchase
/// that uses it, once, beside the redemption and the accrual; every entry names the
/// partner it belongs to (for settlement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bonus_coupon_credits_its_bonuses_with_the_purchase_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (salon_id, salon) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let (market_id, market) = app
        .business_with_staff(&operator, "Лисичкино", "gastronomy", "3", "+79000000101")
        .await;
    let chain = json!({"trigger_business_id": salon_id, "min_amount": "3000", "target_business_id": market_id,
                       "discount_type": "bonus", "discount_value": "300", "valid_days": 7});
    expect(
        operator.post("/admin/promo-chains", &chain).await.unwrap(),
        201,
    )
    .unwrap();
    let member = app.sign_in(&member_phone()).await;
    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&salon, "3000").await}),
    )
    .await
    .unwrap();
    let coupon = eventually(10, "the coupon", || async {
        coupons(&member).await.into_iter().next()
    })
    .await;
    assert_eq!(coupon["discount_type"], "bonus");

    let body = json!({"code": app.issue_qr(&market, "1000").await, "coupon_id": coupon["id"], "redeem_bonus": "100"});
    let used = scan_and_wait(&member, &body).await.unwrap();
    assert_eq!(used["state"], "done", "{used}");
    let result = &used["result"];
    assert_eq!(result["coupon_discount"], "0.00");
    assert_eq!(result["bonus_redeemed"], "100.00");
    assert_eq!(
        result["bonus_accrued"], "27.00",
        "3 % of the 900 paid in money"
    );
    assert_eq!(result["balance"], "377.00", "150 − 100 + 27 + 300");
    let again = json!({"code": app.issue_qr(&market, "1000").await, "coupon_id": coupon["id"]});
    let refused = scan_and_wait(&member, &again).await.unwrap();
    assert_eq!(refused["error"]["code"], "coupon_used");

    let ledger = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
    let kinds: Vec<(&str, &str)> = ledger.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("adjustment", "300.00"),
            ("accrual", "27.00"),
            ("redemption", "-100.00"),
            ("accrual", "150.00")
        ]
    );
    let funders: Vec<(String, Option<uuid::Uuid>, uuid::Uuid)> = sqlx::query_as(
        "SELECT l.kind, l.business_id, t.business_id FROM bonus_ledger l
         JOIN transactions t ON t.id = l.transaction_id ORDER BY l.created_at",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(funders.len(), 4);
    for (kind, funder, business) in &funders {
        assert_eq!(funder.as_ref(), Some(business), "{kind} names its partner");
    }
    let balance = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
    assert_eq!(balance.data()["lifetime_earned"], "177.00", "accruals only");
    assert_eq!(balance.data()["lifetime_spent"], "100.00");
    app.assert_ledger_consistent().await;
}

/// At 23:00 a coupon push waits for 09:00 (scheduled, not dropped), while news about the
/// member's own bonuses goes out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_postpone_marketing_but_not_account_news() {
    let zone = zone_where_it_is(23);
    let app = TestApp::spawn_with(Options {
        timezone: Some(zone),
        ..Default::default()
    })
    .await;
    let c = coalition(&app).await;
    let member = app.sign_in(&member_phone()).await;
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": "fcm-token-night", "platform": "ios"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();

    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "4000").await}),
    )
    .await
    .unwrap();

    let waiting = eventually(10, "the postponed coupon push", || async {
        Some(notifications(&app, "coupon_issued").await).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].1, "scheduled");
    let send_after = waiting[0].2.unwrap();
    let local = domain::local_time::local(zone, send_after);
    assert_eq!(
        (local.hour(), local.minute()),
        (9, 0),
        "scheduled for 09:00 local, got {local}"
    );
    assert!(send_after > time::OffsetDateTime::now_utc());
    // The job records the postponement, then pushes its delayed copy: wait for the push.
    eventually(10, "a delayed job waiting for 09:00", || async {
        let delayed: usize = redis::cmd("ZCARD")
            .arg(format!("{{{}.notify}}:scheduled", app.prefix))
            .query_async(&mut app.services.queue.connection())
            .await
            .unwrap();
        (delayed == 1).then_some(())
    })
    .await;
    let accrual = eventually(10, "the accrual push", || async {
        Some(notifications(&app, "bonus_accrued").await).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(accrual[0].1, "sent", "account news is not held back");
}

/// FCM answers UNREGISTERED: the device token is forgotten and the send recorded as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_fcm_token_is_forgotten() {
    let fcm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]
        }})))
        .mount(&fcm)
        .await;
    let app = TestApp::spawn_with(Options {
        fcm_url: Some(fcm.uri()),
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await;
    let c = coalition(&app).await;
    let member = app.sign_in(&member_phone()).await;
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": "stale-token", "platform": "android"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();

    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "1000").await}),
    )
    .await
    .unwrap();

    eventually(10, "the token to be forgotten", || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM devices")
            .fetch_one(&app.db)
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
    let sent = notifications(&app, "bonus_accrued").await;
    assert!(
        sent.iter()
            .any(|(channel, status, _)| channel == "push" && status == "failed"),
        "{sent:?}"
    );
    let requests = fcm.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["message"]["token"], "stale-token");
    assert_eq!(
        requests[0].headers["authorization"],
        "Bearer test-oauth-token"
    );
}

/// Operators list the chains; a superadmin pauses one — a salon purchase then issues no
/// coupon — edits it while paused (validated as on creation, unknown chains 404), resumes
/// it, and the next purchase earns the edited coupon. Pause, edit and resume are audited
/// with their before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_chain_issues_no_coupon_until_resumed() {
    let app = TestApp::spawn().await;
    let c = coalition(&app).await;
    let listed = expect(c.operator.get("/admin/promo-chains").await.unwrap(), 200).unwrap();
    let chains = listed.data()["items"].as_array().unwrap().clone();
    assert_eq!(chains.len(), 2, "{chains:?}");
    let chain = chains
        .iter()
        .find(|ch| ch["trigger_business_id"] == c.salon.0.as_str())
        .unwrap();
    assert_eq!(chain["is_active"], true);
    let id = chain["id"].as_str().unwrap().to_owned();
    let patch = |body: Value| {
        let operator = &c.operator;
        let path = format!("/admin/promo-chains/{id}");
        async move { operator.patch(&path, &body).await.unwrap() }
    };

    let paused = expect(patch(json!({"is_active": false})).await, 200).unwrap();
    assert_eq!(paused.data()["is_active"], false);
    let member = app.sign_in(&member_phone()).await;
    let while_paused = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "4500").await}),
    )
    .await
    .unwrap();
    assert_eq!(while_paused["state"], "done", "{while_paused}");
    // Cross-promo follow-ups are recorded with the purchase itself: none for this one.
    let follow_ups: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'cross_promo' AND payload::text LIKE $1",
    )
    .bind(format!(
        "%{}%",
        while_paused["result"]["transaction_id"].as_str().unwrap()
    ))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(follow_ups, 0, "a paused chain issues nothing");
    assert!(coupons(&member).await.is_empty());

    for (body, code) in [
        (
            json!({"discount_type": "percent", "discount_value": "150"}),
            "invalid_amount",
        ),
        (
            json!({"trigger_business_id": c.salon.0, "trigger_category": "beauty"}),
            "invalid_trigger",
        ),
        (json!({"valid_days": 0}), "invalid_valid_days"),
        (
            json!({"trigger_business_id": c.clinic.0}),
            "medical_trigger",
        ),
        (
            json!({"target_business_id": uuid::Uuid::new_v4()}),
            "business_not_found",
        ),
    ] {
        let refused = patch(body.clone()).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (422, Some(code)),
            "{body}: {}",
            refused.body
        );
    }
    let missing = c
        .operator
        .patch(
            &format!("/admin/promo-chains/{}", uuid::Uuid::new_v4()),
            &json!({"is_active": false}),
        )
        .await
        .unwrap();
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, Some("promo_chain_not_found"))
    );
    let edited = expect(
        patch(json!({"discount_value": "20", "valid_days": 14})).await,
        200,
    )
    .unwrap();
    assert_eq!(edited.data()["discount_value"], "20.00");
    assert_eq!(edited.data()["valid_days"], 14);
    assert_eq!(edited.data()["is_active"], false, "an edit does not resume");
    assert_eq!(edited.data()["trigger_business_id"], c.salon.0.as_str());

    let resumed = expect(patch(json!({"is_active": true})).await, 200).unwrap();
    assert_eq!(resumed.data()["is_active"], true);
    let after = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&c.salon.1, "4500").await}),
    )
    .await
    .unwrap();
    assert_eq!(after["state"], "done", "{after}");
    let issued = eventually(10, "the coupon of the resumed chain", || async {
        Some(coupons(&member).await).filter(|c| !c.is_empty())
    })
    .await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["discount_value"], "20.00");
    assert_eq!(issued[0]["source_chain_id"], id.as_str());

    let audit = expect(
        c.operator
            .get(&format!("/admin/audit?target={id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let mut entries = audit.data()["items"].as_array().unwrap().clone();
    entries.reverse();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "promo_chain.create",
            "promo_chain.pause",
            "promo_chain.update",
            "promo_chain.resume"
        ]
    );
    assert_eq!(entries[1]["before"]["is_active"], true);
    assert_eq!(entries[1]["after"]["is_active"], false);
    assert_eq!(entries[2]["before"]["discount_value"], "15.00");
    assert_eq!(entries[2]["after"]["discount_value"], "20.00");
}
