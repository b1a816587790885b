//! Pending bonuses (DESIGN.md): at a business with `bonus_hold_days`, cashback waits outside
//! the ledger until the hold ends; a refund inside the window shrinks or cancels it; after
//! the window a refund takes back what was released.

use crate::helpers::{Options, TestApp, member_phone, zone_where_it_is};
use crate::partners::{balance, refund};
use krug_client::{ApiClient, expect};
use serde_json::{Value, json};
use time::Duration;

async fn ledger_kinds(member: &ApiClient) -> Vec<(String, String)> {
    expect(member.get("/loyalty/ledger").await.unwrap(), 200)
        .unwrap()
        .data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The member's balance once `settled` holds: a worker's change reaches the API's view of
/// it through an announcement, a moment after the job ends.
pub async fn balance_once(member: &ApiClient, settled: impl Fn(&Value) -> bool) -> Value {
    crate::helpers::eventually(10, "the balance to settle", || async {
        let now = balance(member).await;
        settled(&now).then_some(now)
    })
    .await
}

async fn messages(app: &TestApp, template: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT body FROM notifications WHERE template = $1 ORDER BY created_at")
        .bind(template)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// Cashback at a business that holds it 14 days is pending, not spendable; a full refund
/// inside the window cancels it, and nothing of it ever reaches the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_inside_the_hold_window_cancels_the_pending_bonus() {
    // Midday where the coalition lives: the release notice is not held for quiet hours.
    let app = TestApp::spawn_with(Options {
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "10",
            "+79000000120",
            "+79000000121",
            json!({"bonus_hold_days": 14}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let kept = app.buy(&market, &member, "500.00", "0").await;
    let returned = app.buy(&market, &member, "1000.00", "0").await;
    assert_eq!(returned["bonus_accrued"], "100.00");
    assert_eq!(returned["balance"], "0.00", "nothing spendable yet");
    let before = balance(&member).await;
    assert_eq!(before["balance"], "0.00");
    assert_eq!(before["pending"], "150.00");
    let told = crate::helpers::eventually(10, "the pending notice", || async {
        let sent = messages(&app, "bonus_pending").await;
        (sent.len() == 2).then_some(sent)
    })
    .await;
    assert!(told[0].contains("можно будет тратить с"), "{told:?}");

    // A partial refund shrinks it, the rest of the purchase cancels it.
    let purchase = returned["transaction_id"].as_str().unwrap();
    let part = expect(
        refund(
            &market.cashier,
            purchase,
            "p1",
            &json!({"amount": "400.00", "reason": "часть"}),
        )
        .await,
        200,
    )
    .unwrap();
    assert_eq!(part.data()["bonus_reversed"], "40.00");
    assert_eq!(balance(&member).await["pending"], "110.00");
    expect(
        refund(
            &market.cashier,
            purchase,
            "p2",
            &json!({"reason": "остальное"}),
        )
        .await,
        200,
    )
    .unwrap();
    assert_eq!(balance(&member).await["pending"], "50.00");

    // The hold ends: only the purchase kept is released.
    app.services.clock.advance(Duration::days(15));
    app.run_schedule(&operator, "expire").await;
    let after = balance_once(&member, |b| b["pending"] == "0.00").await;
    assert_eq!(after["balance"], "50.00");
    assert_eq!(after["pending"], "0.00");
    assert_eq!(after["lifetime_earned"], "50.00");
    assert_eq!(
        ledger_kinds(&member).await,
        [("accrual".to_owned(), "50.00".to_owned())],
        "the cancelled cashback never reached the ledger"
    );
    let _ = kept;
    let released = crate::helpers::eventually(10, "the release notice", || async {
        let sent = messages(&app, "bonus_released").await;
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert!(
        released[0].contains("50.00 бонусов теперь можно тратить"),
        "{released:?}"
    );
    app.assert_ledger_consistent().await;
}

/// After the hold window the cashback is in the ledger: a refund takes back its part there,
/// and the released accrual is released once however often `expire` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_after_the_hold_window_takes_back_the_released_bonus() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "10",
            "+79000000120",
            "+79000000121",
            json!({"bonus_hold_days": 7}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let paid = app.buy(&market, &member, "1000.00", "0").await;

    app.run_schedule(&operator, "expire").await;
    assert_eq!(
        balance(&member).await["pending"],
        "100.00",
        "not released before the hold ends"
    );
    app.services.clock.advance(Duration::days(8));
    app.run_schedule(&operator, "expire").await;
    app.run_schedule(&operator, "expire").await;
    assert_eq!(
        balance_once(&member, |b| b["pending"] == "0.00").await["balance"],
        "100.00"
    );

    let purchase = paid["transaction_id"].as_str().unwrap();
    let late = expect(
        refund(
            &market.owner,
            purchase,
            "late",
            &json!({"amount": "250.00", "reason": "брак"}),
        )
        .await,
        200,
    )
    .unwrap();
    assert_eq!(late.data()["bonus_reversed"], "25.00");
    let after = balance(&member).await;
    assert_eq!(after["balance"], "75.00");
    assert_eq!(after["pending"], "0.00");
    let kinds = ledger_kinds(&member).await;
    assert_eq!(
        kinds,
        [
            ("reversal".to_owned(), "-25.00".to_owned()),
            ("accrual".to_owned(), "100.00".to_owned())
        ]
    );
    app.assert_ledger_consistent().await;
}

/// A business without a hold (the default) accrues at once, as before: nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_hold_cashback_is_spendable_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    let business: Value = expect(
        operator
            .patch(&format!("/admin/businesses/{}", salon.id), &json!({}))
            .await
            .unwrap(),
        200,
    )
    .unwrap()
    .data()
    .clone();
    assert_eq!(business["bonus_hold_days"], 0);
    assert_eq!(business["staff_refund_limit"], "5000.00");
    let member = app.sign_in(&member_phone()).await;
    let paid = app.buy(&salon, &member, "1000.00", "0").await;
    assert_eq!(paid["balance"], "100.00");
    let now = balance(&member).await;
    assert_eq!(now["balance"], "100.00");
    assert_eq!(now["pending"], "0.00");
}
