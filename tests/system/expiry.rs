//! Bonus expiry (DESIGN.md "Expiry"): each lot expires `KRUG_BONUS_EXPIRY_DAYS` after it
//! became spendable; spending takes the oldest lots first; a notice 14 days ahead, once; an
//! `expiry` entry per lot, funded by whoever funded the lot; never more than the balance
//! the remaining lots justify. The tests run with 30-day lots and move the rules' clock.

use crate::helpers::{Options, TestApp, eventually, member_phone, zone_where_it_is};
use crate::partners::{balance, refund};
use crate::pending::balance_once;
use krug_client::{ApiClient, expect};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use time::Duration;
use uuid::Uuid;

const DAYS: u32 = 30;

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options {
        bonus_expiry_days: Some(DAYS),
        // Midday where the coalition lives: notices are not held for quiet hours.
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await
}

fn money(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("an amount: {v}"))).unwrap()
}

async fn user_id(member: &ApiClient) -> Uuid {
    let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
    Uuid::parse_str(me.data()["id"].as_str().unwrap()).unwrap()
}

/// Her expiry entries: (amount, the business funding it).
async fn expiries(app: &TestApp, user: Uuid) -> Vec<(Decimal, Option<Uuid>)> {
    sqlx::query_as(
        "SELECT amount, business_id FROM bonus_ledger WHERE user_id = $1 AND kind = 'expiry'
         ORDER BY created_at, id",
    )
    .bind(user)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Σ of her ledger as she reads it.
async fn ledger_sum(member: &ApiClient) -> Decimal {
    expect(member.get("/loyalty/ledger?limit=100").await.unwrap(), 200)
        .unwrap()
        .data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| money(&e["amount"]))
        .sum()
}

async fn notices(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT body FROM notifications WHERE template = 'bonus_expiring' ORDER BY created_at",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// The open month of the ledger's own clock (entries are stamped by the database, whatever
/// the rules' clock says).
async fn this_month(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT to_char(now(), 'YYYY-MM')")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_lots_are_spent_first_and_what_is_left_expires_once_after_a_notice() {
    let app = spawn().await;
    let operator = app.operator().await;
    let clinic = app
        .partner(
            &operator,
            "Клиника Здоровье",
            "10",
            "+79000000140",
            "+79000000141",
            json!({"is_medical": true}),
        )
        .await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000142",
            "+79000000143",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let user = user_id(&member).await;

    // Lot 1: 100 funded by the clinic; lot 2: 100 by the market. Spending 150 takes all of
    // lot 1 (the oldest) and 50 of lot 2; the check brings lot 3 (5 % of 850 = 42.50).
    app.buy(&clinic, &member, "1000.00", "0").await;
    app.buy(&market, &member, "2000.00", "0").await;
    let spent = app.buy(&market, &member, "1000.00", "150").await;
    assert_eq!(spent["bonus_redeemed"], "150.00");
    assert_eq!(spent["bonus_accrued"], "42.50");
    let now = balance(&member).await;
    assert_eq!(now["balance"], "92.50");
    assert_eq!(
        now["expiring"]["amount"], "50.00",
        "the next lot to expire is what spending left of lot 2: {now}"
    );
    let at = time::OffsetDateTime::parse(
        now["expiring"]["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let from_now = at - time::OffsetDateTime::now_utc();
    assert!(
        from_now > Duration::days(29) && from_now <= Duration::days(30),
        "{now}"
    );

    // Nothing is due yet: a run changes nothing.
    app.run_schedule(&operator, "expire").await;
    assert!(expiries(&app, user).await.is_empty());

    // 13 days before the lots expire: one notice, naming no business, however often
    // `expire` runs.
    app.services.clock.advance(Duration::days(17));
    app.run_schedule(&operator, "expire").await;
    app.run_schedule(&operator, "expire").await;
    let told = eventually(10, "the expiry notice", || async {
        let sent = notices(&app).await;
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("92.50 бонусов сгорят"), "{told:?}");
    assert!(!told[0].contains("Клиника"), "medical secrecy: {told:?}");
    assert!(
        expiries(&app, user).await.is_empty(),
        "announced, not expired"
    );

    // Their time comes: what is left of lots 2 and 3 expires, funded by the market; lot 1
    // (the clinic's) was spent. A second run writes nothing more.
    app.services.clock.advance(Duration::days(14));
    app.run_schedule(&operator, "expire").await;
    app.run_schedule(&operator, "expire").await;
    let market_id = Uuid::parse_str(&market.id).unwrap();
    assert_eq!(
        expiries(&app, user).await,
        [
            (Decimal::from_str("-50.00").unwrap(), Some(market_id)),
            (Decimal::from_str("-42.50").unwrap(), Some(market_id)),
        ]
    );
    let after = balance_once(&member, |b| b["balance"] == "0.00").await;
    assert!(after["expiring"].is_null(), "{after}");
    assert_eq!(ledger_sum(&member).await, Decimal::ZERO);
    assert_eq!(notices(&app).await.len(), 1, "no second notice");
    app.assert_ledger_consistent().await;

    // In the month's settlement the market's expired lots are its own: the clinic's line
    // has none, and the books still balance (Σ nets + the operator's = Σ ledger = 0).
    let period = this_month(&app).await;
    let statement = expect(
        operator
            .get(&format!("/admin/settlements/{period}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap()
    .data()
    .clone();
    let line = |id: &str| {
        statement["businesses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["business_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("a line for {id}: {statement}"))
    };
    let m = line(&market.id);
    assert_eq!(
        (
            money(&m["issued"]),
            money(&m["redeemed"]),
            money(&m["expired"])
        ),
        (
            Decimal::from_str("142.50").unwrap(),
            Decimal::from(150),
            Decimal::from_str("92.50").unwrap()
        ),
        "{m}"
    );
    assert_eq!(money(&m["net"]), Decimal::from(-100));
    let c = line(&clinic.id);
    assert_eq!(
        (money(&c["expired"]), money(&c["net"])),
        (Decimal::ZERO, Decimal::from(100))
    );
    assert_eq!(money(&statement["total"]), Decimal::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_takes_back_its_own_lot_and_a_member_in_debt_has_nothing_to_expire() {
    let app = spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000144",
            "+79000000145",
            json!({}),
        )
        .await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000146",
            "+79000000147",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let user = user_id(&member).await;

    // Lot 1: 100 at the salon, spent at the market (which brings lot 2: 45).
    let salon_check = app.buy(&salon, &member, "1000.00", "0").await;
    app.buy(&market, &member, "1000.00", "100").await;
    assert_eq!(balance(&member).await["balance"], "45.00");
    // The salon refunds its check: its 100 are taken back, from lot 1 (spent) and then
    // lot 2; the balance goes 55 below zero.
    expect(
        refund(
            &salon.cashier,
            salon_check["transaction_id"].as_str().unwrap(),
            "all",
            &json!({"reason": "возврат"}),
        )
        .await,
        200,
    )
    .unwrap();
    let owed = balance(&member).await;
    assert_eq!(owed["balance"], "-55.00");
    assert!(owed["expiring"].is_null(), "nothing left to expire: {owed}");

    // Long after every lot's time: nothing expires, the debt stays what it was.
    app.services
        .clock
        .advance(Duration::days(i64::from(DAYS) + 1));
    app.run_schedule(&operator, "expire").await;
    assert!(expiries(&app, user).await.is_empty());
    assert_eq!(balance(&member).await["balance"], "-55.00");
    assert_eq!(ledger_sum(&member).await, Decimal::from(-55));
    app.assert_ledger_consistent().await;
}

/// Bonuses a refund gives back return to the lots the purchase spent; if that lot's time
/// has passed they expire at the next run, funded by whoever funded the lot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bonuses_given_back_to_an_expired_lot_expire_at_the_next_run() {
    let app = spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000148",
            "+79000000149",
            json!({}),
        )
        .await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000150",
            "+79000000151",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let user = user_id(&member).await;
    app.buy(&salon, &member, "1000.00", "0").await;
    let paid = app.buy(&market, &member, "1000.00", "100").await;

    // The lots' time passes: lot 2 (the market's 45) expires; lot 1 was spent.
    app.services
        .clock
        .advance(Duration::days(i64::from(DAYS) + 1));
    app.run_schedule(&operator, "expire").await;
    let market_id = Uuid::parse_str(&market.id).unwrap();
    assert_eq!(
        expiries(&app, user).await,
        [(Decimal::from(-45), Some(market_id))]
    );

    // The market refunds the check: its accrual (expired) is taken back, the 100 paid with
    // bonuses return to lot 1 — whose time has passed.
    expect(
        refund(
            &market.cashier,
            paid["transaction_id"].as_str().unwrap(),
            "all",
            &json!({"reason": "возврат"}),
        )
        .await,
        200,
    )
    .unwrap();
    assert_eq!(balance(&member).await["balance"], "55.00");
    app.run_schedule(&operator, "expire").await;
    app.run_schedule(&operator, "expire").await;
    let salon_id = Uuid::parse_str(&salon.id).unwrap();
    assert_eq!(
        expiries(&app, user).await,
        [
            (Decimal::from(-45), Some(market_id)),
            (Decimal::from(-55), Some(salon_id)),
        ]
    );
    balance_once(&member, |b| b["balance"] == "0.00").await;
    app.assert_ledger_consistent().await;
}
