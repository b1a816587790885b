//! Self-scans, inflated checks and scan floods: `POST /business/qr` and `POST
//! /transactions/scan` under attack by a staff member or a member.

use crate::helpers::{Options, TestApp, member_phone};
use api::limits::Limits;
use krug_client::{ApiClient, expect, scan_and_wait};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;

async fn app_with(limits: Limits) -> TestApp {
    TestApp::spawn_with(Options {
        limits: Some(limits),
        ..Default::default()
    })
    .await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db)
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

async fn balance(member: &ApiClient) -> Decimal {
    let response = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
    Decimal::from_str(response.data()["balance"].as_str().unwrap()).unwrap()
}

/// The fraud flags operators see, oldest first.
async fn flags(operator: &ApiClient) -> Vec<Value> {
    let mut items = expect(operator.get("/admin/fraud-flags").await.unwrap(), 200)
        .unwrap()
        .data()["items"]
        .as_array()
        .unwrap()
        .clone();
    items.reverse();
    items
}

fn kinds(flags: &[Value]) -> Vec<(&str, &str)> {
    flags
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["amount"].as_str().unwrap()))
        .collect()
}

/// A staff member issues a code for a big check and scans it with her own member account:
/// cashback and a tier for nothing. Refused with 422 `self_scan`, nothing queued, and the
/// attempt is listed for operators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_member_cannot_scan_her_own_code() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (business_id, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "10", "+79000000100")
        .await;
    let code = app.issue_qr(&staff, "400000.00").await;

    let response = staff
        .post("/transactions/scan", &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(
        (response.status, response.error_code()),
        (422, Some("self_scan")),
        "{}",
        response.body
    );
    assert_eq!(count(&app, "SELECT count(*) FROM scan_requests").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM transactions").await, 0);
    assert_eq!(balance(&staff).await, Decimal::ZERO);

    let flags = flags(&operator).await;
    assert_eq!(kinds(&flags), [("self_scan", "400000.00")]);
    let staff_id = user_id(&staff).await;
    assert_eq!(flags[0]["business_id"], business_id.as_str());
    assert_eq!(flags[0]["staff_id"], staff_id.as_str());
    assert_eq!(flags[0]["member_id"], staff_id.as_str());

    // The code itself is still good for a real customer.
    let customer = app.sign_in(&member_phone()).await;
    let outcome = scan_and_wait(&customer, &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(outcome["state"], "done", "{outcome}");
}

/// Staff could issue a code for up to 10 000 000 ₽. A business's checks are capped at its
/// `max_check_amount` (500 000 ₽ unless a superadmin sets another); an owner cannot raise it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_over_the_business_maximum_gets_no_code() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (business_id, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let issue = |amount: &'static str| {
        let staff = &staff;
        async move {
            staff
                .post("/business/qr", &json!({"amount": amount}))
                .await
                .unwrap()
        }
    };
    let over = issue("500000.01").await;
    assert_eq!(
        (over.status, over.error_code()),
        (422, Some("amount_over_limit")),
        "{}",
        over.body
    );
    assert_eq!(issue("500000.00").await.status, 200);

    // A superadmin lowers it for this business.
    let patched = expect(
        operator
            .patch(
                &format!("/admin/businesses/{business_id}"),
                &json!({"max_check_amount": "20000.00"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(patched.data()["max_check_amount"], "20000.00");
    assert_eq!(
        issue("20000.01").await.error_code(),
        Some("amount_over_limit")
    );
    assert_eq!(issue("20000.00").await.status, 200);

    // The owner of the business cannot lift it.
    expect(
        operator
            .post(
                &format!("/admin/businesses/{business_id}/staff"),
                &json!({"phone": "+79000000109", "role": "owner"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let owner = app.sign_in("+79000000109").await;
    let raised = owner
        .patch(
            &format!("/admin/businesses/{business_id}"),
            &json!({"max_check_amount": "10000000.00"}),
        )
        .await
        .unwrap();
    assert_eq!(raised.status, 403, "{}", raised.body);
    for bad in ["0", "-1", "1.001"] {
        let response = operator
            .patch(
                &format!("/admin/businesses/{business_id}"),
                &json!({"max_check_amount": bad}),
            )
            .await
            .unwrap();
        assert!(
            matches!(response.status, 400 | 422),
            "{bad}: {}",
            response.body
        );
    }
}

/// Many codes just under the maximum add up: one staff member's codes at one business are
/// capped per day (`KRUG_STAFF_QR_DAILY_TOTAL`); the refusal is listed for operators, and
/// another staff member is not held back by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_members_codes_are_capped_per_day() {
    let app = app_with(Limits {
        staff_qr_daily_total: Decimal::from(1000),
        ..Limits::relaxed()
    })
    .await;
    let operator = app.operator().await;
    let (business_id, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    app.issue_qr(&staff, "600.00").await;
    app.issue_qr(&staff, "400.00").await;
    let over = staff
        .post("/business/qr", &json!({"amount": "0.01"}))
        .await
        .unwrap();
    assert_eq!(
        (over.status, over.error_code()),
        (422, Some("staff_daily_limit")),
        "{}",
        over.body
    );
    // A refused code does not count: the total stays at the limit, not past it.
    let again = staff
        .post("/business/qr", &json!({"amount": "0.01"}))
        .await
        .unwrap();
    assert_eq!(again.error_code(), Some("staff_daily_limit"));

    expect(
        operator
            .post(
                &format!("/admin/businesses/{business_id}/staff"),
                &json!({"phone": "+79000000108", "role": "staff"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let colleague = app.sign_in("+79000000108").await;
    app.issue_qr(&colleague, "1000.00").await;

    let flags = flags(&operator).await;
    assert_eq!(
        kinds(&flags),
        [("staff_daily_limit", "0.01"), ("staff_daily_limit", "0.01")]
    );
    assert_eq!(flags[0]["staff_id"], user_id(&staff).await.as_str());
}

/// A purchase near the business's largest check is accepted but listed for operators, with
/// its transaction; a purchase under the threshold is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_near_the_maximum_are_flagged_for_operators() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (business_id, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    expect(
        operator
            .patch(
                &format!("/admin/businesses/{business_id}"),
                &json!({"max_check_amount": "10000.00"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let member = app.sign_in(&member_phone()).await;
    let small = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "4999.99").await}),
    )
    .await
    .unwrap();
    assert_eq!(small["state"], "done", "{small}");
    let big = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "5000.00").await}),
    )
    .await
    .unwrap();
    assert_eq!(big["state"], "done", "{big}");

    let flags = flags(&operator).await;
    assert_eq!(kinds(&flags), [("outlier_amount", "5000.00")]);
    assert_eq!(flags[0]["transaction_id"], big["result"]["transaction_id"]);
    assert_eq!(flags[0]["member_id"], user_id(&member).await.as_str());
    assert_eq!(flags[0]["staff_id"], user_id(&staff).await.as_str());
    let filtered = expect(
        operator
            .get(&format!(
                "/admin/fraud-flags?business_id={}",
                uuid::Uuid::new_v4()
            ))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(filtered.data()["items"], json!([]));

    // Members and staff do not read them.
    for client in [&member, &staff] {
        let response = client.get("/admin/fraud-flags").await.unwrap();
        assert_eq!(response.status, 403);
    }
}

/// A member scanning in a loop (guessing codes, or a script) gets ten a minute, then 429
/// with `Retry-After`; the refused scans leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_gets_ten_scans_a_minute() {
    let app = app_with(Limits {
        scans_per_member_per_minute: 10,
        ..Limits::relaxed()
    })
    .await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let member = app.sign_in(&member_phone()).await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(app.issue_qr(&staff, "100.00").await);
    }
    for code in &codes[..10] {
        expect(
            member
                .post("/transactions/scan", &json!({"code": code}))
                .await
                .unwrap(),
            202,
        )
        .unwrap();
    }
    for code in &codes[10..] {
        let refused = member
            .post("/transactions/scan", &json!({"code": code}))
            .await
            .unwrap();
        assert_eq!(
            (refused.status, refused.error_code()),
            (429, Some("too_many_scans")),
            "{}",
            refused.body
        );
        let retry_after: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM scan_requests").await, 10);

    // Another member is not held back.
    let other = app.sign_in(&member_phone()).await;
    expect(
        other
            .post("/transactions/scan", &json!({"code": codes[10]}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
}

/// A code nobody issued is refused at once, before anything is written: guessing codes
/// fills no table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_code_is_refused_before_anything_is_written() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    let outbox = count(&app, "SELECT count(*) FROM job_outbox").await;
    for guess in ["ABCDEFGHJKMN", "ZZZZZZZZZZZZ", "23456789ABCD"] {
        let response = member
            .post("/transactions/scan", &json!({"code": guess}))
            .await
            .unwrap();
        assert_eq!(
            (response.status, response.error_code()),
            (422, Some("code_expired")),
            "{guess}: {}",
            response.body
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM scan_requests").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM job_outbox").await, outbox);
}
