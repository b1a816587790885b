//! Member support through the admin API: lookup by phone, a member's history as operators
//! see it, adjustments (superadmin only, idempotent, through the ledger), blocking and
//! unblocking — each change in the audit log.

use crate::helpers::{Options, TestApp, eventually, member_phone};
use krug_client::{ApiClient, ApiResponse, expect, scan_and_wait};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// A moderator, signed in.
async fn moderator(app: &TestApp) -> ApiClient {
    let phone = "+79000000002";
    krug::commands::grant(app.services.clone(), phone, "moderator", None)
        .await
        .unwrap();
    app.sign_in(phone).await
}

/// The member's id, found by phone as support finds her.
async fn find(operator: &ApiClient, phone: &str) -> Value {
    let found = expect(
        operator
            .get(&format!("/admin/users?phone={}", urlencode(phone)))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let items = found.data()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "one member per phone: {items:?}");
    items[0].clone()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn adjust(operator: &ApiClient, user_id: &str, key: &str, body: &Value) -> ApiResponse {
    operator
        .call_with_headers(
            Method::POST,
            &format!("/admin/users/{user_id}/adjust"),
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
        .unwrap()
}

/// The audit entries about `target`, oldest first, as operators read them.
async fn audit_actions(operator: &ApiClient, target: &str) -> Vec<Value> {
    let page = expect(
        operator
            .get(&format!("/admin/audit?target={target}&limit=100"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let mut items = page.data()["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

fn money(value: &Value) -> Decimal {
    value.as_str().unwrap().parse().unwrap()
}

/// A moderator finds a member by her phone written another way (masked in the list), and
/// reads her profile, balance, tier, ledger, purchases — a medical one flagged, without the
/// clinic's own visit id — coupons, devices (never their push tokens) and the messages sent
/// to her (never a login code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_a_member_by_phone_and_read_her_history() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (salon, salon_staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", &member_phone())
        .await;
    let (clinic, clinic_staff) = app
        .business_with_staff(&operator, "Миллениум", "health", "3", &member_phone())
        .await;
    expect(
        operator
            .patch(
                &format!("/admin/businesses/{clinic}"),
                &json!({"is_medical": true}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let phone = member_phone();
    let member = app.sign_in(&phone).await;
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": "fcm-token-SECRET-42", "platform": "android"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    for (staff, amount) in [(&salon_staff, "2000.00"), (&clinic_staff, "1000.00")] {
        let code = app.issue_qr(staff, amount).await;
        let scan = scan_and_wait(&member, &json!({"code": code}))
            .await
            .unwrap();
        assert_eq!(scan["state"], "done", "{scan}");
    }
    let moderator = moderator(&app).await;

    // 8 (999) … is the same phone as +7999…
    let written_otherwise = format!("8 ({}) {}-{}", &phone[2..5], &phone[5..8], &phone[8..]);
    let summary = find(&moderator, &written_otherwise).await;
    assert_eq!(summary["phone"], domain::phone::mask_phone(&phone));
    assert_ne!(summary["phone"], phone.as_str(), "lists mask phones");
    assert_eq!(summary["blocked"], false);
    let id = summary["id"].as_str().unwrap().to_owned();

    let view = expect(
        moderator.get(&format!("/admin/users/{id}")).await.unwrap(),
        200,
    )
    .unwrap();
    let view = view.data().clone();
    assert_eq!(view["phone"], phone.as_str());
    assert_eq!(view["status_tier"], "Insider");
    assert_eq!(view["blocked"], Value::Null);
    // 5 % of 2 000 at the salon, 3 % of 1 000 at the clinic.
    assert_eq!(view["balance"], "130.00");
    assert_eq!(view["lifetime_earned"], "130.00");
    assert_eq!(view["devices"].as_array().unwrap().len(), 1);
    assert_eq!(view["devices"][0]["platform"], "android");
    assert!(view["coupons"].is_array());
    assert!(
        !view.to_string().contains("SECRET"),
        "a push token is a credential: {view}"
    );

    let ledger = expect(
        moderator
            .get(&format!("/admin/users/{id}/ledger"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let entries = ledger.data()["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let sum: Decimal = entries.iter().map(|e| money(&e["amount"])).sum();
    assert_eq!(sum, money(&view["balance"]), "ledger sum = balance");

    let history = expect(
        moderator
            .get(&format!("/admin/users/{id}/transactions"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let purchases = history.data()["items"].as_array().unwrap();
    assert_eq!(purchases.len(), 2);
    let at = |business: &str| {
        purchases
            .iter()
            .find(|p| p["business_id"] == business)
            .unwrap()
            .clone()
    };
    assert_eq!(at(&clinic)["is_medical"], true);
    assert_eq!(at(&salon)["is_medical"], false);
    assert_eq!(at(&clinic)["amount"], "1000.00");
    for purchase in purchases {
        assert!(
            purchase.get("external_id").is_none(),
            "the partner's own visit or check id stays with the partner: {purchase}"
        );
    }

    let messages = eventually(10, "the bonus messages", || async {
        let page = expect(
            moderator
                .get(&format!("/admin/users/{id}/messages"))
                .await
                .unwrap(),
            200,
        )
        .unwrap();
        let items = page.data()["items"].as_array().unwrap().clone();
        (!items.is_empty()).then_some(items)
    })
    .await;
    for message in &messages {
        assert_ne!(message["template"], "otp", "login codes are never shown");
        assert!(
            !message["body"].as_str().unwrap().contains("Миллениум"),
            "no message names a medical business: {message}"
        );
    }

    // A member, staff or nobody cannot read any of it.
    for (who, client) in [
        ("member", &member),
        ("staff", &salon_staff),
        ("nobody", &app.api),
    ] {
        let response = client.get(&format!("/admin/users/{id}")).await.unwrap();
        assert!(
            [401, 403].contains(&response.status),
            "{who}: {}",
            response.status
        );
    }
    let unknown = moderator
        .get(&format!("/admin/users/{}", Uuid::new_v4()))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
}

/// A moderator's adjustment is refused (403) and changes nothing; a superadmin's is one
/// `adjustment` entry (balance = Σ ledger), applied once however often it is sent with the
/// same `Idempotency-Key`, refused with another amount under that key, and audited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_are_a_superadmins_applied_once_and_audited() {
    let app = TestApp::spawn().await;
    let superadmin = app.operator().await;
    let phone = member_phone();
    let member = app.sign_in(&phone).await;
    let moderator = moderator(&app).await;
    let id = find(&moderator, &phone).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"amount": "500.00", "reason": "Бонусы за визит, не дошедший из CRM"});

    let refused = adjust(&moderator, &id, "key-1", &body).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("forbidden"));

    let missing_key = superadmin
        .post(&format!("/admin/users/{id}/adjust"), &body)
        .await
        .unwrap();
    assert_eq!(missing_key.status, 422, "{}", missing_key.body);
    assert_eq!(missing_key.error_code(), Some("idempotency_key_required"));

    let applied = expect(adjust(&superadmin, &id, "key-1", &body).await, 200).unwrap();
    assert_eq!(applied.data()["repeated"], false);
    assert_eq!(applied.data()["balance"], "500.00");
    let repeated = expect(adjust(&superadmin, &id, "key-1", &body).await, 200).unwrap();
    assert_eq!(repeated.data()["repeated"], true);
    assert_eq!(repeated.data()["entry_id"], applied.data()["entry_id"]);
    assert_eq!(repeated.data()["balance"], "500.00");
    let reused = adjust(
        &superadmin,
        &id,
        "key-1",
        &json!({"amount": "-50.00", "reason": "другая сумма"}),
    )
    .await;
    assert_eq!(reused.status, 409, "{}", reused.body);
    assert_eq!(reused.error_code(), Some("idempotency_key_reused"));
    let debit = expect(
        adjust(
            &superadmin,
            &id,
            "key-2",
            &json!({"amount": "-120.50", "reason": "Начислено дважды"}),
        )
        .await,
        200,
    )
    .unwrap();
    assert_eq!(debit.data()["balance"], "379.50");
    let zero = adjust(
        &superadmin,
        &id,
        "key-3",
        &json!({"amount": "0.00", "reason": "x"}),
    )
    .await;
    assert_eq!(zero.status, 422, "{}", zero.body);

    let balance = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
    assert_eq!(
        balance.data()["balance"],
        "379.50",
        "the member sees it at once"
    );
    let ledger = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
    let entries = ledger.data()["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "applied once: {entries:?}");
    assert!(entries.iter().all(|e| e["kind"] == "adjustment"));
    let sum: Decimal = entries.iter().map(|e| money(&e["amount"])).sum();
    assert_eq!(sum.to_string(), "379.50");
    app.assert_ledger_consistent().await;
    let funded_by: Vec<Option<Uuid>> =
        sqlx::query_scalar("SELECT business_id FROM bonus_ledger WHERE kind = 'adjustment'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        funded_by,
        vec![None, None],
        "the operator funds adjustments"
    );

    let audit = audit_actions(&superadmin, &id).await;
    assert_eq!(actions(&audit), ["member.adjust", "member.adjust"]);
    assert_eq!(audit[0]["after"]["amount"], "500.00");
    assert_eq!(audit[0]["after"]["reason"], body["reason"]);
    assert_eq!(audit[0]["before"]["balance"], "0.00");
    assert_eq!(audit[1]["after"]["amount"], "-120.50");
}

/// Blocked, a member's tokens answer 403 `member_blocked` — her scan and her event
/// registration refused — and so does signing in again; a scan she sent before the block and
/// still queued is refused by the worker. Unblocked, she signs in, scans and registers. Block
/// and unblock are audited with their reasons; a moderator may block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_member_cannot_sign_in_scan_or_register_until_unblocked() {
    use jobs::QueueName;
    // The qr_scan worker is held back, to have a scan queued when she is blocked.
    let app = TestApp::spawn_with(Options {
        queues: Some(
            QueueName::ALL
                .into_iter()
                .filter(|q| *q != QueueName::QrScan)
                .collect(),
        ),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let (_salon, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", &member_phone())
        .await;
    let event = expect(
        operator
            .post(
                "/events",
                &json!({
                    "title": "Вечер сыров",
                    "date": (OffsetDateTime::now_utc() + Duration::days(7)).format(&Rfc3339).unwrap(),
                    "location": "Малая Бронная, 28",
                    "max_participants": 20,
                }),
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
    expect(
        operator
            .patch(
                &format!("/admin/events/{event}"),
                &json!({"status": "approved"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let phone = member_phone();
    let member = app.sign_in(&phone).await;
    let queued_code = app.issue_qr(&staff, "1000.00").await;
    let queued = expect(
        member
            .post("/transactions/scan", &json!({"code": queued_code}))
            .await
            .unwrap(),
        202,
    )
    .unwrap()
    .data()["job_id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    let moderator = moderator(&app).await;
    let id = find(&moderator, &phone).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let blocked = expect(
        moderator
            .post(
                &format!("/admin/users/{id}/block"),
                &json!({"reason": "Передавала QR-коды третьим лицам"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(blocked.data()["blocked"], true);
    assert_eq!(blocked.data()["sessions_ended"], 1);

    // Her token: every route says why.
    let code = app.issue_qr(&staff, "500.00").await;
    let scan = member
        .post("/transactions/scan", &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(scan.status, 403, "{}", scan.body);
    assert_eq!(scan.error_code(), Some("member_blocked"));
    let register = member
        .call(Method::POST, &format!("/events/{event}/register"), None)
        .await
        .unwrap();
    assert_eq!(register.status, 403, "{}", register.body);
    assert_eq!(register.error_code(), Some("member_blocked"));
    // Signing in again: the code is right, and she is told she is blocked.
    let again = krug_client::sign_in(&app.services.db, &app.services.cache, &app.api, &phone)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("member_blocked"), "{again}");
    // The scan she sent before the block is refused once the worker gets to it.
    app.start_worker(vec![QueueName::QrScan]);
    let (state, error): (String, Option<String>) = eventually(15, "the queued scan", || async {
        let row: (String, Option<String>) =
            sqlx::query_as("SELECT state, error_code FROM scan_requests WHERE id = $1")
                .bind(queued)
                .fetch_one(&app.db)
                .await
                .unwrap();
        (row.0 == "failed" || row.0 == "done").then_some(row)
    })
    .await;
    assert_eq!(
        (state.as_str(), error.as_deref()),
        ("failed", Some("member_blocked"))
    );
    let view = expect(
        moderator.get(&format!("/admin/users/{id}")).await.unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(
        view.data()["blocked"]["reason"],
        "Передавала QR-коды третьим лицам"
    );
    assert_eq!(
        view.data()["balance"],
        "0.00",
        "nothing was recorded for her"
    );

    let unblocked = expect(
        moderator
            .call_with_headers(
                Method::POST,
                &format!("/admin/users/{id}/unblock"),
                Some(&json!({"reason": "Разобрались"})),
                &[],
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(unblocked.data()["blocked"], false);
    let member = app.sign_in(&phone).await;
    let code = app.issue_qr(&staff, "500.00").await;
    let scan = scan_and_wait(&member, &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(scan["state"], "done", "{scan}");
    expect(
        member
            .call(Method::POST, &format!("/events/{event}/register"), None)
            .await
            .unwrap(),
        201,
    )
    .unwrap();

    let audit = audit_actions(&operator, &id).await;
    assert_eq!(actions(&audit), ["member.block", "member.unblock"]);
    assert_eq!(
        audit[0]["after"],
        json!({"blocked": true, "reason": "Передавала QR-коды третьим лицам"})
    );
    assert_eq!(audit[0]["before"]["blocked"], false);
    assert_eq!(audit[1]["after"]["unblock_reason"], "Разобрались");
    assert_eq!(audit[1]["before"]["blocked"], true);

    // A moderator may not block an operator, nor anyone herself.
    let operator_id = find(&moderator, "+79000000001").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = moderator
        .post(
            &format!("/admin/users/{operator_id}/block"),
            &json!({"reason": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    let own = operator
        .post(
            &format!("/admin/users/{operator_id}/block"),
            &json!({"reason": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(own.status, 422, "{}", own.body);
    assert_eq!(own.error_code(), Some("cannot_block_self"));
}

/// A partner's CRM reports a purchase a blocked member made at the till: it is recorded (the
/// money changed hands, and support sees it) but accrues nothing, and the promo chain it
/// matches issues no coupon — nor later, once she is unblocked. Her next purchase, unblocked,
/// accrues and earns the coupon as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_members_crm_purchase_is_recorded_without_bonus_or_coupon() {
    use simulators::{Sale, Simulator, Vendor};
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let crm = Simulator::start(Vendor::Yclients).await.unwrap();
    let salon = app
        .create_business(
            &operator,
            json!({
                "name": "Миндаль", "category": "beauty", "cashback_percent": "5",
                "crm_type": crm.vendor.crm_type().as_str(), "crm_base_url": crm.url,
                "crm_credentials": crm.vendor.credentials(),
            }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let market = app
        .create_business(
            &operator,
            json!({"name": "Лисичкино", "category": "gastronomy", "cashback_percent": "3"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect(
        operator
            .post(
                "/admin/promo-chains",
                &json!({"trigger_business_id": salon, "target_business_id": market,
                        "discount_type": "percent", "discount_value": "10", "valid_days": 7}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let phone = member_phone();
    app.sign_in(&phone).await;
    let id = find(&operator, &phone).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let blocked = expect(
        operator
            .post(
                &format!("/admin/users/{id}/block"),
                &json!({"reason": "Проверка"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let blocked_at =
        OffsetDateTime::parse(blocked.data()["blocked_at"].as_str().unwrap(), &Rfc3339).unwrap();
    // Vendors report times to the second: the sale is placed clearly after the block, and
    // polled once that moment has passed.
    let sold_at = blocked_at + Duration::seconds(2);
    crm.add_sales([Sale::purchase("y-1", Decimal::from(4000), sold_at, &phone)]);
    let wait = sold_at + Duration::seconds(1) - OffsetDateTime::now_utc();
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    let applied = |count: usize| {
        let operator = &operator;
        let id = &id;
        async move {
            expect(
                operator
                    .post("/admin/schedules/crm_poll/trigger", &json!({}))
                    .await
                    .unwrap(),
                202,
            )
            .unwrap();
            eventually(20, "the CRM purchases settled", || async {
                let page = expect(
                    operator
                        .get(&format!("/admin/users/{id}/transactions"))
                        .await
                        .unwrap(),
                    200,
                )
                .unwrap();
                let items = page.data()["items"].as_array().unwrap().clone();
                (items.len() == count && items.iter().all(|t| t["bonus_applied"] == true))
                    .then_some(items)
            })
            .await
        }
    };
    let while_blocked = applied(1).await;
    assert_eq!(while_blocked[0]["amount"], "4000.00");
    assert_eq!(
        while_blocked[0]["bonus_accrued"], "0.00",
        "recorded, but no bonus while blocked"
    );
    let first_purchase = while_blocked[0]["id"].as_str().unwrap().to_owned();
    let follow_ups: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'cross_promo' AND payload::text LIKE $1",
    )
    .bind(format!("%{first_purchase}%"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        follow_ups, 0,
        "no coupon follows a blocked member's purchase"
    );

    expect(
        operator
            .post(&format!("/admin/users/{id}/unblock"), &json!({}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    crm.add_sales([Sale::purchase(
        "y-2",
        Decimal::from(2000),
        OffsetDateTime::now_utc() - Duration::seconds(1),
        &phone,
    )]);
    let both = applied(2).await;
    let accrued: Vec<(&str, &str)> = both
        .iter()
        .map(|t| {
            (
                t["amount"].as_str().unwrap(),
                t["bonus_accrued"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        accrued.contains(&("2000.00", "100.00")) && accrued.contains(&("4000.00", "0.00")),
        "the purchase made unblocked accrues; the blocked one stays without bonus: {accrued:?}"
    );
    let view = eventually(20, "the coupon of the unblocked purchase", || async {
        let view = expect(
            operator.get(&format!("/admin/users/{id}")).await.unwrap(),
            200,
        )
        .unwrap()
        .data()
        .clone();
        (!view["coupons"].as_array().unwrap().is_empty()).then_some(view)
    })
    .await;
    assert_eq!(view["balance"], "100.00");
    let coupons = view["coupons"].as_array().unwrap();
    assert_eq!(coupons.len(), 1, "{coupons:?}");
    assert_eq!(coupons[0]["business_id"], market.as_str());
    app.assert_ledger_consistent().await;
}
