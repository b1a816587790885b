//! Paid events through ЮKassa (issue 16), against the ЮKassa simulator: a seat held while
//! the member pays, confirmed only on ЮKassa's word, released when unpaid, refunded when
//! cancelled 48 hours or more ahead.

use crate::helpers::{Options, TestApp, member_phone};
use krug_client::{ApiClient, expect};
use serde_json::{Value, json};
use simulators::yookassa::FakeYooKassa;
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

pub(crate) const SHOP: &str = "506751";
pub(crate) const SECRET: &str = "test_secret_key_krug";

pub(crate) async fn kassa() -> FakeYooKassa {
    FakeYooKassa::start(SHOP, SECRET).await.unwrap()
}

async fn app_with(kassa: &FakeYooKassa, secret: &str) -> TestApp {
    TestApp::spawn_with(Options {
        yookassa: Some((kassa.url.clone(), SHOP.to_owned(), secret.to_owned())),
        ..Default::default()
    })
    .await
}

/// A published event `days_ahead` days away costing 1500.00, with `seats` seats.
pub(crate) async fn paid_event(operator: &ApiClient, days_ahead: i64, seats: u32) -> String {
    let date = (OffsetDateTime::now_utc() + Duration::days(days_ahead))
        .format(&Rfc3339)
        .unwrap();
    let created = expect(
        operator
            .post(
                "/events",
                &json!({"title": "Ужин с шеф-поваром", "date": date,
                        "location": "Лисичкино", "max_participants": seats, "price": "1500.00"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    assert_eq!(created.data()["price"], "1500.00");
    let id = created.data()["id"].as_str().unwrap().to_owned();
    expect(
        operator
            .patch(
                &format!("/admin/events/{id}"),
                &json!({"status": "approved"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    id
}

/// Registers `member` for a paid event: the 202 body and ЮKassa's payment id.
pub(crate) async fn register(member: &ApiClient, event: &str) -> (Value, String) {
    let held = expect(
        member
            .post(&format!("/events/{event}/register"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let data = held.data().clone();
    let url = data["confirmation_url"].as_str().unwrap();
    let yookassa_id = url.rsplit('/').next().unwrap().to_owned();
    (data, yookassa_id)
}

/// Delivers a notification to the webhook as ЮKassa would; the receipt's `outcome`.
pub(crate) async fn deliver(app: &TestApp, notification: &Value) -> String {
    let answer = expect(
        app.api
            .post("/payments/yookassa", notification)
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    answer.data()["outcome"].as_str().unwrap().to_owned()
}

async fn event(member: &ApiClient, id: &str) -> Value {
    expect(member.get(&format!("/events/{id}")).await.unwrap(), 200)
        .unwrap()
        .data()
        .clone()
}

/// Paying on ЮKassa's page and its `payment.succeeded` notification give the member her
/// seat; until then the seat is held (counted, so a full event stays full) but not hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_seat_is_held_and_confirmed_once_yookassa_says_it_is_paid() {
    let kassa = kassa().await;
    let app = app_with(&kassa, SECRET).await;
    let operator = app.operator().await;
    let event_id = paid_event(&operator, 7, 1).await;
    let member = app.sign_in(&member_phone()).await;

    let (held, payment) = register(&member, &event_id).await;
    assert_eq!(held["amount"], "1500.00");
    let sent = kassa.payment(&payment).unwrap();
    assert_eq!(
        sent["amount"],
        json!({"value": "1500.00", "currency": "RUB"})
    );
    assert_eq!(sent["metadata"]["krug_payment_id"], held["payment_id"]);
    let seen = event(&member, &event_id).await;
    assert_eq!(
        (
            seen["registered_count"].as_u64(),
            seen["is_registered"].as_bool()
        ),
        (Some(1), Some(false))
    );
    // Asking again while the seat is held answers the same payment.
    let (again, _) = register(&member, &event_id).await;
    assert_eq!(again["payment_id"], held["payment_id"]);
    assert_eq!(kassa.payments_created(), 1);
    let other = app.sign_in(&member_phone()).await;
    let full = expect(
        other
            .post(&format!("/events/{event_id}/register"), &json!({}))
            .await
            .unwrap(),
        409,
    )
    .unwrap();
    assert_eq!(full.error_code(), Some("event_full"));

    assert!(kassa.pay(&payment));
    let notification = kassa.notification("payment.succeeded", &payment).unwrap();
    assert_eq!(deliver(&app, &notification).await, "confirmed");

    let seen = event(&member, &event_id).await;
    assert_eq!(
        (
            seen["registered_count"].as_u64(),
            seen["is_registered"].as_bool()
        ),
        (Some(1), Some(true))
    );
}

/// Attack: a notification saying "succeeded" about a payment ЮKassa says is still pending,
/// or about a payment ЮKassa does not know, confirms no seat: the body is never believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_notification_confirms_no_seat() {
    let kassa = kassa().await;
    let app = app_with(&kassa, SECRET).await;
    let operator = app.operator().await;
    let event_id = paid_event(&operator, 7, 5).await;
    let member = app.sign_in(&member_phone()).await;
    let (_, payment) = register(&member, &event_id).await;

    let mut forged = kassa.notification("payment.succeeded", &payment).unwrap();
    forged["object"]["status"] = json!("succeeded");
    forged["object"]["paid"] = json!(true);
    assert_eq!(deliver(&app, &forged).await, "pending");
    let unknown = json!({"type": "notification", "event": "payment.succeeded",
                         "object": {"id": "2c7a31f4-000f-5000-9000-1a2b3c4d5e6f", "status": "succeeded", "paid": true}});
    assert_eq!(deliver(&app, &unknown).await, "unknown");

    let seen = event(&member, &event_id).await;
    assert_eq!(
        seen["is_registered"], false,
        "a forged notification confirmed a seat"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM event_payments")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "pending");
}

/// A member whose hold ran out pays anyway: the seat is taken for her if one is free, and
/// ЮKassa repeating the notification (as it does until it gets a 200, and sometimes after)
/// takes it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_notification_takes_the_seat_once() {
    let kassa = kassa().await;
    let app = app_with(&kassa, SECRET).await;
    let operator = app.operator().await;
    let event_id = paid_event(&operator, 7, 5).await;
    let member = app.sign_in(&member_phone()).await;
    let (_, payment) = register(&member, &event_id).await;
    app.services.clock.advance(Duration::minutes(16));
    app.run_schedule(&operator, "payments").await;
    assert_eq!(event(&member, &event_id).await["registered_count"], 0);

    assert!(kassa.pay(&payment));
    let notification = kassa.notification("payment.succeeded", &payment).unwrap();
    for _ in 0..3 {
        assert_eq!(deliver(&app, &notification).await, "confirmed");
    }

    let seen = event(&member, &event_id).await;
    assert_eq!(
        (
            seen["registered_count"].as_u64(),
            seen["is_registered"].as_bool()
        ),
        (Some(1), Some(true))
    );
    assert!(kassa.refunds_of(&payment).is_empty());
}

/// A canceled payment frees its seat at once; an unpaid hold is freed by the `payments`
/// job after 15 minutes, but only once ЮKassa confirms it is unpaid: a payment whose
/// notification was lost is confirmed instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_seats_are_released_and_paid_ones_kept() {
    let kassa = kassa().await;
    let app = app_with(&kassa, SECRET).await;
    let operator = app.operator().await;
    let event_id = paid_event(&operator, 7, 1).await;
    let (anna, boris) = (
        app.sign_in(&member_phone()).await,
        app.sign_in(&member_phone()).await,
    );

    let (_, annas) = register(&anna, &event_id).await;
    assert!(kassa.cancel(&annas));
    let canceled = kassa.notification("payment.canceled", &annas).unwrap();
    assert_eq!(deliver(&app, &canceled).await, "canceled");
    assert_eq!(event(&anna, &event_id).await["registered_count"], 0);

    let (_, boriss) = register(&boris, &event_id).await;
    app.services.clock.advance(Duration::minutes(16));
    app.run_schedule(&operator, "payments").await;
    assert_eq!(event(&boris, &event_id).await["registered_count"], 0);
    let status: String =
        sqlx::query_scalar("SELECT status FROM event_payments WHERE yookassa_id = $1")
            .bind(&boriss)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "expired");

    // Anna tries again and pays; ЮKassa's notification never arrives.
    let (_, paid) = register(&anna, &event_id).await;
    assert!(kassa.pay(&paid));
    app.services.clock.advance(Duration::minutes(16));
    app.run_schedule(&operator, "payments").await;
    let seen = event(&anna, &event_id).await;
    assert_eq!(
        (
            seen["registered_count"].as_u64(),
            seen["is_registered"].as_bool()
        ),
        (Some(1), Some(true))
    );
}

async fn pay_for_seat(
    app: &TestApp,
    kassa: &FakeYooKassa,
    member: &ApiClient,
    event: &str,
) -> String {
    let (_, payment) = register(member, event).await;
    assert!(kassa.pay(&payment));
    let notification = kassa.notification("payment.succeeded", &payment).unwrap();
    assert_eq!(deliver(app, &notification).await, "confirmed");
    payment
}

/// Cancelling a paid seat 48 hours or more before the event refunds it through ЮKassa,
/// once; cancelling later gives the seat back without a refund, and the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_seat_is_refunded_only_48_hours_ahead() {
    let kassa = kassa().await;
    let app = app_with(&kassa, SECRET).await;
    let operator = app.operator().await;
    let early = paid_event(&operator, 3, 5).await;
    let late = paid_event(&operator, 1, 5).await;
    let member = app.sign_in(&member_phone()).await;

    let payment = pay_for_seat(&app, &kassa, &member, &early).await;
    let cancelled = expect(
        member
            .delete(&format!("/events/{early}/register"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let data = cancelled.data();
    assert_eq!(
        (
            data["refund"]["status"].as_str(),
            data["refund"]["amount"].as_str()
        ),
        (Some("succeeded"), Some("1500.00"))
    );
    assert_eq!(
        (
            data["registered_count"].as_u64(),
            data["is_registered"].as_bool()
        ),
        (Some(0), Some(false))
    );
    let refunds = kassa.refunds_of(&payment);
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["amount"]["value"], "1500.00");
    let refund_id = refunds[0]["id"].as_str().unwrap();
    let notification = kassa.notification("refund.succeeded", refund_id).unwrap();
    assert_eq!(deliver(&app, &notification).await, "refund_recorded");
    app.run_schedule(&operator, "payments").await;
    expect(
        member
            .delete(&format!("/events/{early}/register"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(kassa.refunds_created(), 1, "refunded more than once");

    let payment = pay_for_seat(&app, &kassa, &member, &late).await;
    let cancelled = expect(
        member
            .delete(&format!("/events/{late}/register"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let refund = &cancelled.data()["refund"];
    assert_eq!(refund["status"], "none");
    assert!(
        refund["message"].as_str().unwrap().contains("48 hours"),
        "{refund}"
    );
    assert_eq!(cancelled.data()["registered_count"], 0);
    app.run_schedule(&operator, "payments").await;
    assert!(kassa.refunds_of(&payment).is_empty());
}

/// Wrong ЮKassa credentials: registering answers a clear 503 `payments_unavailable` naming
/// the credentials, and no seat is lost to the failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_yookassa_credentials_are_a_clear_error_and_cost_no_seat() {
    let kassa = kassa().await;
    let app = app_with(&kassa, "not-the-secret").await;
    let operator = app.operator().await;
    let event_id = paid_event(&operator, 7, 1).await;
    let member = app.sign_in(&member_phone()).await;

    let refused = expect(
        member
            .post(&format!("/events/{event_id}/register"), &json!({}))
            .await
            .unwrap(),
        503,
    )
    .unwrap();
    assert_eq!(refused.error_code(), Some("payments_unavailable"));
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{}",
        refused.body
    );
    assert!(
        kassa
            .state
            .unauthorized
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    let seen = event(&member, &event_id).await;
    assert_eq!(
        (
            seen["registered_count"].as_u64(),
            seen["is_registered"].as_bool()
        ),
        (Some(0), Some(false))
    );
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event_payments WHERE status IN ('creating', 'pending')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(open, 0);
}
