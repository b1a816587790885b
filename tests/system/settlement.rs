//! Settlement between partners (DESIGN.md "Settlement"): a month of activity at three
//! businesses closes into a statement that balances against the ledger to the kopeck; a
//! refund after the close is an adjustment of the next period; owners read only their own.

use crate::helpers::{Options, TestApp, coupons, eventually, member_phone};
use crate::partners::refund;
use krug_client::{ApiClient, expect, scan_and_wait};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use time::Duration;

fn money(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("an amount: {v}"))).unwrap()
}

fn line<'a>(statement: &'a Value, business_id: &str) -> &'a Value {
    statement["businesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["business_id"] == business_id)
        .unwrap_or_else(|| panic!("a line for {business_id}: {statement}"))
}

fn transfer<'a>(statement: &'a Value, business_id: &str) -> Option<&'a Value> {
    statement["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["business_id"] == business_id)
}

async fn statement(operator: &ApiClient, period: &str) -> Value {
    expect(
        operator
            .get(&format!("/admin/settlements/{period}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap()
    .data()
    .clone()
}

/// Σ of the ledger entries and of the members' balances, read from the database.
async fn books(app: &TestApp) -> (Decimal, Decimal) {
    sqlx::query_as(
        "SELECT (SELECT COALESCE(SUM(amount), 0) FROM bonus_ledger),
                (SELECT COALESCE(SUM(balance), 0) FROM bonus_balances)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// The statement's own arithmetic: each net by the formula, Σ nets + the operator's = total.
fn assert_balanced(statement: &Value) {
    let mut nets = Decimal::ZERO;
    for l in statement["businesses"].as_array().unwrap() {
        assert_eq!(
            money(&l["net"]),
            money(&l["issued"])
                - money(&l["refunded"])
                - money(&l["expired"])
                - money(&l["redeemed"]),
            "{l}"
        );
        nets += money(&l["net"]);
        let t = transfer(statement, l["business_id"].as_str().unwrap());
        match money(&l["net"]) {
            n if n.is_zero() => assert!(t.is_none(), "{statement}"),
            n => {
                let t = t.unwrap();
                assert_eq!(money(&t["amount"]), n.abs());
                let way = if n > Decimal::ZERO {
                    "to_operator"
                } else {
                    "to_business"
                };
                assert_eq!(t["direction"], way);
            }
        }
    }
    assert_eq!(
        nets + money(&statement["operator_funded"]),
        money(&statement["total"]),
        "{statement}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_at_three_businesses_closes_into_a_statement_that_balances_against_the_ledger() {
    // Lots live 30 days: a month later, what is left of them expires.
    let app = TestApp::spawn_with(Options {
        bonus_expiry_days: Some(30),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000130",
            "+79000000131",
            json!({}),
        )
        .await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000132",
            "+79000000133",
            json!({}),
        )
        .await;
    let spa = app
        .partner(
            &operator,
            "Термы",
            "4",
            "+79000000134",
            "+79000000135",
            json!({}),
        )
        .await;
    // A salon check of 3000 or more brings a 300-bonus coupon funded by the market.
    let chain = json!({"trigger_business_id": salon.id, "min_amount": "3000",
                       "target_business_id": market.id, "discount_type": "bonus",
                       "discount_value": "300", "valid_days": 7});
    expect(
        operator.post("/admin/promo-chains", &chain).await.unwrap(),
        201,
    )
    .unwrap();

    let anna = app.sign_in(&member_phone()).await;
    let boris = app.sign_in(&member_phone()).await;
    // Anna earns 300 at the salon and gets the market's coupon.
    let big = app.buy(&salon, &anna, "3000.00", "0").await;
    assert_eq!(big["bonus_accrued"], "300.00");
    let coupon = eventually(10, "the coupon", || async {
        coupons(&anna).await.into_iter().next()
    })
    .await;
    // At the market she uses it (+300, the market's) and pays 200 with bonuses: 5 % of
    // the 800 paid in money comes back.
    let code = app.issue_qr(&market.cashier, "1000.00").await;
    let used = scan_and_wait(
        &anna,
        &json!({"code": code, "coupon_id": coupon["id"], "redeem_bonus": "200"}),
    )
    .await
    .unwrap();
    assert_eq!(used["state"], "done", "{used}");
    assert_eq!(used["result"]["bonus_accrued"], "40.00");
    // Boris earns at the spa and spends there; the salon refunds half of a check of his.
    let spa_check = app.buy(&spa, &boris, "2500.00", "0").await;
    assert_eq!(spa_check["bonus_accrued"], "100.00");
    app.buy(&spa, &boris, "500.00", "50").await;
    let salon_check = app.buy(&salon, &boris, "1000.00", "0").await;
    let salon_purchase = salon_check["transaction_id"].as_str().unwrap();
    expect(
        refund(
            &salon.cashier,
            salon_purchase,
            "half",
            &json!({"amount": "500.00", "reason": "возврат половины"}),
        )
        .await,
        200,
    )
    .unwrap();

    // The open month, live.
    let period = expect(operator.get("/admin/settlements").await.unwrap(), 200)
        .unwrap()
        .data()["items"][0]["period"]
        .as_str()
        .unwrap()
        .to_owned();
    let open = statement(&operator, &period).await;
    assert_eq!(open["status"], "open");
    assert_balanced(&open);
    let s = line(&open, &salon.id);
    assert_eq!(
        (
            money(&s["issued"]),
            money(&s["refunded"]),
            money(&s["redeemed"]),
            money(&s["net"])
        ),
        (
            Decimal::from(400),
            Decimal::from(50),
            Decimal::ZERO,
            Decimal::from(350)
        ),
        "300 + 100 earned at the salon, 50 of it refunded"
    );
    let m = line(&open, &market.id);
    assert_eq!(
        (money(&m["issued"]), money(&m["redeemed"]), money(&m["net"])),
        (Decimal::from(340), Decimal::from(200), Decimal::from(140)),
        "the market funds its coupon's 300 and the 40 earned, and gave 200 off"
    );
    let spa_line = line(&open, &spa.id);
    assert_eq!(
        (
            money(&spa_line["issued"]),
            money(&spa_line["redeemed"]),
            money(&spa_line["net"])
        ),
        (Decimal::from(118), Decimal::from(50), Decimal::from(68)),
        "100 + 4 % of 450"
    );
    let (ledger_total, balances) = books(&app).await;
    assert_eq!(
        money(&open["total"]),
        ledger_total,
        "the statement is the ledger's sum"
    );
    assert_eq!(
        balances, ledger_total,
        "members hold what the ledger says (they started at 0)"
    );

    // The month has not ended: it cannot close.
    let early = operator
        .post(&format!("/admin/settlements/{period}/close"), &json!({}))
        .await
        .unwrap();
    assert_eq!(early.status, 409, "{:?}", early.body);
    assert_eq!(early.body["error"]["code"], "period_not_ended");

    // A month later the settlement job closes it.
    app.services.clock.advance(Duration::days(32));
    app.run_schedule(&operator, "settlement").await;
    let closed = statement(&operator, &period).await;
    assert_eq!(closed["status"], "closed");
    assert_balanced(&closed);
    assert_eq!(closed["total"], open["total"]);
    assert_eq!(closed["businesses"], open["businesses"]);
    assert_eq!(closed["entries"], open["entries"]);
    let again = operator
        .post(&format!("/admin/settlements/{period}/close"), &json!({}))
        .await
        .unwrap();
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["code"], "period_closed");

    // A refund after the close: the closed statement stays as it was, the next period
    // carries the adjustment.
    expect(
        refund(
            &salon.cashier,
            salon_purchase,
            "rest",
            &json!({"reason": "остальное"}),
        )
        .await,
        200,
    )
    .unwrap();
    let still = statement(&operator, &period).await;
    assert_eq!(still["businesses"], closed["businesses"]);
    assert_eq!(still["total"], closed["total"]);
    let next = expect(operator.get("/admin/settlements").await.unwrap(), 200)
        .unwrap()
        .data()["items"][0]
        .clone();
    assert_ne!(next["period"], period.as_str());
    let next = statement(&operator, next["period"].as_str().unwrap()).await;
    assert_eq!(next["status"], "open");
    let late = line(&next, &salon.id);
    assert_eq!(money(&late["refunded"]), Decimal::from(50));
    assert_eq!(money(&late["net"]), Decimal::from(-50));
    assert_eq!(
        transfer(&next, &salon.id).unwrap()["direction"],
        "to_business"
    );
    let (ledger_total, balances) = books(&app).await;
    assert_eq!(
        money(&closed["total"]) + money(&next["total"]),
        ledger_total
    );
    assert_eq!(balances, ledger_total);
    app.assert_ledger_consistent().await;

    // CSV for the accountants.
    let csv = operator
        .get(&format!("/admin/settlements/{period}?format=csv"))
        .await
        .unwrap();
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.body.as_str().unwrap().to_owned();
    assert!(
        text.lines()
            .any(|l| l.contains(&salon.id) && l.contains("350.00") && l.contains("to_operator")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("\"total\"")), "{text}");

    // The operator marks the market's transfer paid, once.
    let market_transfer = transfer(&closed, &market.id).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = expect(
        operator
            .post(
                &format!("/admin/settlements/{period}/transfers/{market_transfer}/paid"),
                &json!({}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert!(paid.data()["paid_at"].is_string());
    let twice = operator
        .post(
            &format!("/admin/settlements/{period}/transfers/{market_transfer}/paid"),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(twice.status, 409);

    // The lots' 30 days are over: what is left of each expires into the open period, each
    // lot's expiry on the business that funded it. Anna spent 200 of the salon's 300 first
    // (the oldest lot) and keeps the market's 40 and coupon's 300; Boris spent 50 of the
    // spa's 100 and keeps its 18, the salon's 100 refunded in full.
    app.run_schedule(&operator, "expire").await;
    app.run_schedule(&operator, "expire").await;
    let next = statement(&operator, next["period"].as_str().unwrap()).await;
    assert_balanced(&next);
    let expired = |id: &str| money(&line(&next, id)["expired"]);
    assert_eq!(
        (expired(&salon.id), expired(&market.id), expired(&spa.id)),
        (Decimal::from(100), Decimal::from(340), Decimal::from(68)),
        "{next}"
    );
    assert_eq!(
        money(&line(&next, &salon.id)["net"]),
        Decimal::from(-150),
        "the late refund and the salon's expired lot"
    );
    let (ledger_total, balances) = books(&app).await;
    assert_eq!(
        money(&closed["total"]) + money(&next["total"]),
        ledger_total
    );
    assert_eq!(balances, ledger_total);
    assert_eq!(
        balances,
        Decimal::ZERO,
        "every lot spent, refunded or expired"
    );
    app.assert_ledger_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_read_their_own_settlement_and_nobody_elses() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000140",
            "+79000000141",
            json!({}),
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
    app.buy(&salon, &member, "1000.00", "0").await;
    app.buy(&market, &member, "1000.00", "100").await;

    let mine = expect(salon.owner.get("/business/settlements").await.unwrap(), 200).unwrap();
    let items = mine.data()["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "open");
    assert_eq!(items[0]["line"]["business_id"], salon.id.as_str());
    assert_eq!(items[0]["line"]["net"], "100.00");
    assert_eq!(items[0]["transfer"]["direction"], "to_operator");
    let period = items[0]["period"].as_str().unwrap();
    let one = expect(
        salon
            .owner
            .get(&format!("/business/settlements/{period}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(one.data()["line"]["business_id"], salon.id.as_str());
    assert!(
        !one.body.to_string().contains(&market.id),
        "nothing of the market in the salon's statement"
    );

    // The salon's owner asks for the market's: refused. So are the cashier and a member.
    let theirs = salon
        .owner
        .get(&format!(
            "/business/settlements/{period}?business_id={}",
            market.id
        ))
        .await
        .unwrap();
    assert_eq!(theirs.status, 403, "{:?}", theirs.body);
    for (who, client) in [("a cashier", &salon.cashier), ("a member", &member)] {
        let refused = client.get("/business/settlements").await.unwrap();
        assert_eq!(refused.status, 403, "{who}: {:?}", refused.body);
        let admin = client
            .get(&format!("/admin/settlements/{period}"))
            .await
            .unwrap();
        assert_eq!(admin.status, 403, "{who}: {:?}", admin.body);
    }
}

/// Statements close in order, and what is closed cannot be changed even in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periods_close_in_order_and_a_closed_statement_cannot_be_changed() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000150",
            "+79000000151",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    app.buy(&salon, &member, "1000.00", "0").await;
    let period = expect(operator.get("/admin/settlements").await.unwrap(), 200)
        .unwrap()
        .data()["items"][0]["period"]
        .as_str()
        .unwrap()
        .to_owned();
    // Far enough that the month after next has ended too: only the order refuses it.
    app.services.clock.advance(Duration::days(100));
    // Close this month, then try to skip the next one.
    expect(
        operator
            .post(&format!("/admin/settlements/{period}/close"), &json!({}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let (year, month) = period.split_once('-').unwrap();
    let (year, month): (i32, u32) = (year.parse().unwrap(), month.parse().unwrap());
    let after_next = if month >= 11 {
        format!("{}-{:02}", year + 1, month - 10)
    } else {
        format!("{year}-{:02}", month + 2)
    };
    let skipped = operator
        .post(
            &format!("/admin/settlements/{after_next}/close"),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(skipped.status, 409, "{:?}", skipped.body);
    assert_eq!(skipped.body["error"]["code"], "periods_close_in_order");
    let bad = operator.get("/admin/settlements/2026-13").await.unwrap();
    assert_eq!(bad.status, 422);

    let changed = sqlx::query("UPDATE settlement_lines SET net = net + 1, issued = issued + 1")
        .execute(&app.db)
        .await;
    assert!(changed.is_err(), "a closed line was changed");
    let deleted = sqlx::query("DELETE FROM settlement_periods")
        .execute(&app.db)
        .await;
    assert!(deleted.is_err(), "a closed period was deleted");
    let moved = sqlx::query("UPDATE settlement_transfers SET amount = amount + 1")
        .execute(&app.db)
        .await;
    assert!(moved.is_err(), "a transfer's amount was changed");
}
