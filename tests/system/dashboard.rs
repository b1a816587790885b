//! The partner's dashboard (`GET /business/dashboard`): a business's own figures by day,
//! counted from purchases, refunds and coupons made through the API; and the partner page
//! (`/partner`) over it in Chromium.

use crate::{
    board::{artifact, drive_browser},
    fakes::{FakeSmsRu, SmsRuMode},
    helpers::{Options, TestApp, coupons, eventually},
    partners::refund,
};
use krug_client::{ApiClient, expect, scan_and_wait};
use rust_decimal::Decimal;
use serde_json::{Value, json};

async fn dashboard(client: &ApiClient, query: &str) -> Value {
    expect(
        client
            .get(&format!("/business/dashboard{query}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap()
    .data()
    .clone()
}

/// A salon whose purchases of 3 000 ₽ or more earn a 10 % coupon at a gastromarket: the
/// market's dashboard counts its own purchases, members, bonuses, refunds and coupons —
/// the coupon-paid purchase as a promo arrival — day by day, and the salon's holds only
/// the salon's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_counts_the_businesss_own_purchases_by_day() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000210",
            "+79000000211",
            json!({}),
        )
        .await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000212",
            "+79000000213",
            json!({"category": "gastronomy"}),
        )
        .await;
    let chain = json!({"trigger_business_id": salon.id, "min_amount": "3000",
                       "target_business_id": market.id, "discount_type": "percent",
                       "discount_value": "10", "valid_days": 7});
    expect(
        operator.post("/admin/promo-chains", &chain).await.unwrap(),
        201,
    )
    .unwrap();
    let anna = app.sign_in("+79000000220").await;
    let vera = app.sign_in("+79000000221").await;

    // Anna: 3 000 ₽ at the salon earns her the market's coupon; she spends it there.
    app.buy(&salon, &anna, "3000.00", "0").await;
    let coupon = eventually(10, "the market's coupon", || async {
        coupons(&anna).await.into_iter().next()
    })
    .await;
    let code = app.issue_qr(&market.cashier, "2000.00").await;
    let with_coupon = scan_and_wait(&anna, &json!({"code": code, "coupon_id": coupon["id"]}))
        .await
        .unwrap();
    assert_eq!(with_coupon["state"], "done", "{with_coupon}");
    assert_eq!(
        with_coupon["result"]["bonus_accrued"], "90.00",
        "5 % of 1 800"
    );
    app.buy(&market, &anna, "500.00", "0").await;
    // Vera: 1 000 ₽ at the salon, then pays 100 of the market's 1 000 ₽ with its bonuses,
    // and returns 500 ₽ of it.
    app.buy(&salon, &vera, "1000.00", "0").await;
    let paid = app.buy(&market, &vera, "1000.00", "100").await;
    assert_eq!(paid["bonus_accrued"], "45.00", "5 % of 900");
    let purchase = paid["transaction_id"].as_str().unwrap();
    let refunded = refund(
        &market.cashier,
        purchase,
        "dash-1",
        &json!({"amount": "500.00", "reason": "вернули товар"}),
    )
    .await;
    assert_eq!(refunded.status, 200, "{:?}", refunded.body);

    let this_month = dashboard(&market.owner, "").await;
    let today = time::Date::parse(
        this_month["to"].as_str().unwrap(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    let from = today - time::Duration::days(2);
    let market_view = dashboard(&market.owner, &format!("?from={from}&to={today}")).await;
    let expected = [
        ("business_id", json!(market.id)),
        ("sales", json!("3500.00")),
        ("purchases", json!(3)),
        ("refunds", json!("500.00")),
        ("members", json!(2)),
        ("new_members", json!(2)),
        ("bonus_issued", json!("160.00")),
        ("bonus_redeemed", json!("100.00")),
        ("coupons_issued", json!(1)),
        ("coupons_used", json!(1)),
        ("promo_arrivals", json!(1)),
    ];
    for (field, value) in &expected {
        assert_eq!(&market_view[field], value, "{field}: {market_view}");
        assert_eq!(
            &this_month[field], value,
            "this month's {field}: {this_month}"
        );
    }
    let days = market_view["by_day"].as_array().unwrap();
    assert_eq!(days.len(), 3, "every day of the range: {days:?}");
    for quiet in &days[..2] {
        assert_eq!(quiet["purchases"], 0, "{quiet}");
        assert_eq!(quiet["sales"], "0.00", "{quiet}");
    }
    assert_eq!(days[2]["date"], json!(today.to_string()));
    for field in [
        "sales",
        "purchases",
        "refunds",
        "bonus_issued",
        "bonus_redeemed",
        "coupons_used",
    ] {
        assert_eq!(days[2][field], market_view[field], "today's {field}");
    }

    let salon_view = dashboard(&salon.owner, &format!("?from={today}&to={today}")).await;
    assert_eq!(salon_view["business_id"], json!(salon.id));
    assert_eq!(salon_view["sales"], "4000.00", "{salon_view}");
    assert_eq!(salon_view["purchases"], 2);
    assert_eq!(salon_view["members"], 2);
    assert_eq!(salon_view["bonus_issued"], "400.00");
    assert_eq!(salon_view["refunds"], "0.00");
    assert_eq!(
        salon_view["coupons_issued"], 0,
        "the coupon is the market's"
    );
    assert_eq!(salon_view["promo_arrivals"], 0);

    let yesterday = today - time::Duration::days(1);
    let before = dashboard(&market.owner, &format!("?from={yesterday}&to={yesterday}")).await;
    assert_eq!(before["purchases"], 0, "{before}");
    assert_eq!(before["new_members"], 0, "{before}");
}

/// The day sums come from hourly sums the transactions' triggers keep; in a zone whose days
/// begin on a half hour (India, +05:30) they come from the transactions themselves. Two
/// purchases in one UTC hour, 18:15 and 18:45, moved there after they were made (an update
/// moves their figures between hours): in Moscow both fall on the same day, in Kolkata
/// 23:45 and 00:15 fall on two. Each zone's days match the transactions summed by local day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_days_sums_match_the_transactions_in_whole_and_half_hour_zones() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000230",
            "+79000000231",
            json!({"category": "gastronomy"}),
        )
        .await;
    let anna = app.sign_in("+79000000232").await;
    let first = app.buy(&market, &anna, "1000.00", "0").await;
    let second = app.buy(&market, &anna, "700.00", "50").await;
    let refunded = refund(
        &market.cashier,
        second["transaction_id"].as_str().unwrap(),
        "dash-hours",
        &json!({"amount": "200.00", "reason": "вернули товар"}),
    )
    .await;
    assert_eq!(refunded.status, 200, "{:?}", refunded.body);
    let day = time::OffsetDateTime::now_utc().date() - time::Duration::days(3);
    let at = |minute: u8| day.with_hms(18, minute, 0).unwrap().assume_utc();
    for (purchase, minute) in [(&first, 15u8), (&second, 45)] {
        let id: uuid::Uuid = purchase["transaction_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        sqlx::query("UPDATE transactions SET occurred_at = $2 WHERE id = $1 OR original_transaction_id = $1")
            .bind(id)
            .bind(at(minute))
            .execute(&app.db)
            .await
            .unwrap();
    }
    // A day's sales, purchases, refunds, bonuses issued and redeemed.
    type Day = (time::Date, Decimal, i64, Decimal, Decimal, Decimal);
    let business: uuid::Uuid = market.id.parse().unwrap();
    let (from, to) = (day - time::Duration::days(1), day + time::Duration::days(1));
    for tz in ["Europe/Moscow", "Asia/Kolkata"] {
        let figures = storage::dashboard::dashboard(&app.db, business, from, to, tz)
            .await
            .unwrap();
        let by_day: Vec<Day> = figures
            .days
            .iter()
            .map(|d| {
                (
                    d.day,
                    d.sales,
                    d.purchases,
                    d.refunds,
                    d.bonus_issued,
                    d.bonus_redeemed,
                )
            })
            .collect();
        let expected: Vec<Day> =
            sqlx::query_as(
                "SELECT d::date,
                        COALESCE(SUM(t.amount) FILTER (WHERE t.transaction_type = 'purchase'), 0),
                        COUNT(t.id) FILTER (WHERE t.transaction_type = 'purchase'),
                        COALESCE(SUM(t.amount) FILTER (WHERE t.transaction_type = 'refund'), 0),
                        COALESCE(SUM(t.bonus_accrued) FILTER (WHERE t.transaction_type = 'purchase'), 0),
                        COALESCE(SUM(t.bonus_redeemed) FILTER (WHERE t.transaction_type = 'purchase'), 0)
                 FROM generate_series($2::date, $3::date, interval '1 day') AS d
                 LEFT JOIN transactions t ON t.business_id = $1
                      AND (t.occurred_at AT TIME ZONE $4)::date = d::date
                 GROUP BY d ORDER BY d",
            )
            .bind(business)
            .bind(from)
            .bind(to)
            .bind(tz)
            .fetch_all(&app.db)
            .await
            .unwrap();
        assert_eq!(by_day, expected, "{tz}");
        let busy: Vec<i64> = figures.days.iter().map(|d| d.purchases).collect();
        match tz {
            "Europe/Moscow" => assert_eq!(busy, [0, 2, 0], "21:15 and 21:45 on one day"),
            _ => assert_eq!(busy, [0, 1, 1], "23:45 and 00:15 on two days"),
        }
    }
}

/// A range backwards or longer than a year is refused with 422, a date that is no date
/// with 400, each in the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_refuses_a_range_backwards_too_long_or_malformed() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000230",
            "+79000000231",
            json!({}),
        )
        .await;
    let cases = [
        ("?from=2026-11-02&to=2026-11-01", 422, "invalid_range"),
        ("?from=2025-11-01&to=2026-11-02", 422, "range_too_long"),
        ("?from=2026-13-01&to=2026-12-01", 400, "bad_request"),
        ("?from=yesterday", 400, "bad_request"),
    ];
    for (query, status, code) in cases {
        let answer = salon
            .owner
            .get(&format!("/business/dashboard{query}"))
            .await
            .unwrap();
        assert_eq!(answer.status, status, "{query}: {:?}", answer.body);
        assert_eq!(
            answer.error_code(),
            Some(code),
            "{query}: {:?}",
            answer.body
        );
    }
    let year = dashboard(&salon.owner, "?from=2025-11-02&to=2026-11-02").await;
    assert_eq!(
        year["by_day"].as_array().unwrap().len(),
        366,
        "a leap-free year and a day"
    );
}

/// An owner signs in to the partner page by SMS in Chromium and reads her dashboard (the
/// figures and a bar a day), her staff and her open month's settlement, as the API gives
/// them. Screenshots are kept in `tests/browser/artifacts/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_reads_her_dashboard_staff_and_statements_on_the_partner_page_in_a_browser() {
    let sms = FakeSmsRu::start(SmsRuMode::Accept).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;
    krug::commands::grant(app.services.clone(), "+79000000001", "superadmin", None)
        .await
        .unwrap();
    let operator = app.sign_in_via_smsru(&sms, "+79000000001").await;
    let salon = app
        .create_business(
            &operator,
            json!({"name": "Миндаль", "category": "beauty", "cashback_percent": "10"}),
        )
        .await;
    let id = salon["id"].as_str().unwrap();
    let (owner, cashier, viewer) = ("+79000000240", "+79000000241", "+79000000242");
    for (phone, role) in [(owner, "owner"), (cashier, "staff"), (viewer, "viewer")] {
        expect(
            operator
                .post(
                    &format!("/admin/businesses/{id}/staff"),
                    &json!({"phone": phone, "role": role}),
                )
                .await
                .unwrap(),
            201,
        )
        .unwrap();
    }
    let cashier = app.sign_in_via_smsru(&sms, cashier).await;
    let member = app.sign_in_via_smsru(&sms, "+79000000243").await;
    for (amount, redeem) in [("2000.00", "0"), ("1000.00", "100")] {
        let code = app.issue_qr(&cashier, amount).await;
        let paid = scan_and_wait(&member, &json!({"code": code, "redeem_bonus": redeem}))
            .await
            .unwrap();
        assert_eq!(paid["state"], "done", "{paid}");
    }
    let this_month = dashboard(&app.sign_in_via_smsru(&sms, viewer).await, "").await;

    let said = drive_browser(
        "partner.mjs",
        &[
            ("PARTNER_URL", app.api.base.clone()),
            ("OWNER_PHONE", owner.to_owned()),
            ("SCREENSHOTS", artifact("").trim_end_matches('/').to_owned()),
        ],
        &sms,
        owner,
    )
    .await;
    let get = |key: &str| said.get(key).cloned().unwrap_or_default();
    assert_eq!(get("SIGNED_IN"), "1", "{said:?}");
    assert!(!said.contains_key("PAGE_ERROR"), "{said:?}");
    assert!(!said.contains_key("CONSOLE_ERROR"), "{said:?}");
    assert_eq!(get("FIGURE_sales"), "3000,00₽", "{said:?}");
    assert_eq!(get("FIGURE_purchases"), "2");
    assert_eq!(get("FIGURE_members"), "1");
    assert_eq!(get("FIGURE_bonus_issued"), "290,00₽", "200 + 10 % of 900");
    assert_eq!(get("FIGURE_bonus_redeemed"), "100,00₽");
    let days = this_month["by_day"].as_array().unwrap().len().to_string();
    assert_eq!(get("CHART_DAYS"), days, "a bar a day of the month so far");
    assert_eq!(get("CHART_BARS"), days);
    assert_eq!(get("STAFF_ROLES"), "owner,staff,viewer");
    assert_eq!(get("STATEMENT_STATUS"), "open");
    assert_eq!(get("STATEMENT_NET"), "190,00₽", "290 issued − 100 redeemed");
    for name in [
        "partner-dashboard.png",
        "partner-staff.png",
        "partner-statements.png",
    ] {
        assert!(
            std::fs::metadata(artifact(name)).is_ok_and(|m| m.len() > 1000),
            "{name} kept"
        );
    }
}
