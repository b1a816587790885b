//! Staff QR codes, member scans and the bonuses they move.

use crate::helpers::{Options, TestApp, eventually, member_phone, worker_options};
use krug_client::{expect, scan_and_wait, wait_for_scan};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;

fn dec(value: &Value) -> Decimal {
    Decimal::from_str(
        value
            .as_str()
            .unwrap_or_else(|| panic!("{value} is not a decimal string")),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_records_the_purchase_and_accrues_cashback() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (business_id, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let member = app.sign_in(&member_phone()).await;

    let code = app.issue_qr(&staff, "4500.00").await;
    let outcome = scan_and_wait(&member, &json!({"code": code}))
        .await
        .unwrap();

    assert_eq!(outcome["state"], "done", "{outcome}");
    let result = &outcome["result"];
    assert_eq!(result["business_id"], business_id.as_str());
    assert_eq!(result["amount"], "4500.00");
    assert_eq!(result["bonus_accrued"], "225.00");
    assert_eq!(result["bonus_redeemed"], "0.00");
    assert_eq!(result["coupon_discount"], "0.00");
    assert_eq!(result["balance"], "225.00");
    assert_eq!(result["status_tier"], "Insider");
    let balance = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
    assert_eq!(balance.data()["balance"], "225.00");
    assert_eq!(balance.data()["lifetime_earned"], "225.00");
    assert_eq!(balance.data()["next_tier"]["name"], "VIP");
    assert_eq!(balance.data()["next_tier"]["spend_needed"], "95500.00");
    assert_eq!(balance.data()["next_tier"]["categories_needed"], 1);
    let transactions = expect(member.get("/transactions").await.unwrap(), 200).unwrap();
    let items = transactions.data()["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["transaction_type"], "purchase");
    assert_eq!(items[0]["bonus_accrued"], "225.00");
    assert_eq!(items[0]["id"], result["transaction_id"]);
    app.assert_ledger_consistent().await;
}

/// The API serves balances from memory; a worker's change reaches them through its
/// announcement, long before the cached view would expire (`api::balances::FRESH_FOR`),
/// even when the member never asks the API how her scan went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_balance_is_forgotten_when_a_worker_changes_it() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let member = app.sign_in(&member_phone()).await;
    let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
    let member_id: uuid::Uuid = me.data()["id"].as_str().unwrap().parse().unwrap();
    // Read until the view is kept (the API subscribes to the announcements at start).
    eventually(5, "the balance view cached", || async {
        let before = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
        assert_eq!(before.data()["balance"], "0.00");
        app.api_state.balances.get(member_id).0
    })
    .await;

    let code = app.issue_qr(&staff, "4500.00").await;
    let accepted = expect(
        member
            .post("/transactions/scan", &json!({"code": code}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let scan_id: uuid::Uuid = accepted.data()["job_id"].as_str().unwrap().parse().unwrap();
    // Done, as Postgres says: the API is not asked, so only the announcement can tell it.
    eventually(10, "the scan processed", || async {
        let state: String = sqlx::query_scalar("SELECT state FROM scan_requests WHERE id = $1")
            .bind(scan_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
        (state == "done").then_some(())
    })
    .await;
    let fresh_for = api::balances::FRESH_FOR.as_secs();
    eventually(fresh_for / 3, "the new balance", || async {
        let balance = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
        (balance.data()["balance"] == "225.00").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemption_is_capped_by_the_business_and_by_the_balance() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Лисичкино", "gastronomy", "10", "+79000000101")
        .await;
    let member = app.sign_in(&member_phone()).await;
    let first = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "3000").await}),
    )
    .await
    .unwrap();
    assert_eq!(first["result"]["balance"], "300.00");

    // 30 % of 500 is 150: asking 150.01 is over the cap.
    let code = app.issue_qr(&staff, "500").await;
    let over_cap = scan_and_wait(&member, &json!({"code": code, "redeem_bonus": "150.01"}))
        .await
        .unwrap();
    assert_eq!(over_cap["state"], "failed");
    assert_eq!(over_cap["error"]["code"], "redeem_limit_exceeded");

    // The refused scan used nothing up: the same code works within the cap.
    let within = scan_and_wait(&member, &json!({"code": code, "redeem_bonus": "150"}))
        .await
        .unwrap();
    assert_eq!(within["state"], "done", "{within}");
    assert_eq!(within["result"]["bonus_redeemed"], "150.00");
    assert_eq!(
        within["result"]["bonus_accrued"], "35.00",
        "accrual on the 350 paid in money"
    );
    assert_eq!(within["result"]["balance"], "185.00");

    let big = app.issue_qr(&staff, "10000").await;
    let too_much = scan_and_wait(&member, &json!({"code": big, "redeem_bonus": "185.01"}))
        .await
        .unwrap();
    assert_eq!(too_much["error"]["code"], "insufficient_balance");
    assert!(
        too_much["error"]["message"]
            .as_str()
            .unwrap()
            .contains("185.00")
    );

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
            ("accrual", "35.00"),
            ("redemption", "-150.00"),
            ("accrual", "300.00")
        ]
    );
    app.assert_ledger_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_single_use_even_when_scanned_concurrently() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Стим Центр", "wellness", "5", "+79000000102")
        .await;
    let member = app.sign_in(&member_phone()).await;
    let other = app.sign_in(&member_phone()).await;
    let code = app.issue_qr(&staff, "1000").await;

    let scans: Vec<_> = (0..6)
        .map(|i| {
            let who = if i % 2 == 0 {
                member.clone()
            } else {
                other.clone()
            };
            let body = json!({"code": code});
            tokio::spawn(async move { scan_and_wait(&who, &body).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for scan in scans {
        outcomes.push(scan.await.unwrap());
    }

    let done = outcomes.iter().filter(|o| o["state"] == "done").count();
    assert_eq!(
        done, 1,
        "exactly one scan records the purchase: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o["state"] == "failed")
            .all(|o| o["error"]["code"] == "code_already_used")
    );
    let purchases: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let accruals: i64 = sqlx::query_scalar("SELECT count(*) FROM bonus_ledger")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((purchases, accruals), (1, 1));
    app.assert_ledger_consistent().await;
}

/// Scans waiting together are processed together (one transaction for the lot): a code
/// scanned twice in the lot is still one purchase, a redemption without the balance for it
/// is refused, and every accrual and balance is exact. Which scans share a batch is up to
/// the worker, so every assertion holds however they are split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_processed_together_keep_codes_single_use_and_balances_exact() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    // Every queue but qr_scan is worked from the start (sign-in needs otp_send).
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut others = worker_options(&app.services);
    others.queues.retain(|q| *q != jobs::QueueName::QrScan);
    tokio::spawn(jobs::runtime::run(
        app.env.clone(),
        others,
        shutdown.clone(),
    ));
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Лисичкино", "gastronomy", "5", "+79000000104")
        .await;
    let anna = app.sign_in(&member_phone()).await;
    let boris = app.sign_in(&member_phone()).await;
    let first = app.issue_qr(&staff, "1000").await;
    let second = app.issue_qr(&staff, "3000").await;
    let third = app.issue_qr(&staff, "2000").await;

    // Queued while no qr_scan worker runs, so that one worker finds them all waiting.
    let queued = [
        (&anna, json!({"code": first})),
        (&anna, json!({"code": second})),
        (&anna, json!({"code": first})),
        (&boris, json!({"code": third})),
        (&anna, json!({"code": third})),
        // Boris earns at most the 100.00 of the third code before it (if he scanned it
        // first, and in an earlier batch), so 100.01 is more than he has in any batching.
        (
            &boris,
            json!({"code": app.issue_qr(&staff, "1000").await, "redeem_bonus": "100.01"}),
        ),
    ];
    let mut job_ids = Vec::new();
    for (member, body) in &queued {
        let accepted = expect(member.post("/transactions/scan", body).await.unwrap(), 202).unwrap();
        job_ids.push(accepted.data()["job_id"].as_str().unwrap().to_owned());
    }
    let mut scans = worker_options(&app.services);
    scans.queues = vec![jobs::QueueName::QrScan];
    tokio::spawn(jobs::runtime::run(app.env.clone(), scans, shutdown.clone()));
    let mut outcomes = Vec::new();
    for ((member, _), job_id) in queued.iter().zip(&job_ids) {
        outcomes.push(wait_for_scan(member, job_id).await.unwrap());
    }
    shutdown.cancel();

    let state = |o: &Value| match o["state"].as_str() {
        Some("done") => "done".to_owned(),
        _ => o["error"]["code"].as_str().unwrap_or("?").to_owned(),
    };
    // The first scan of a code records it, whichever scan that was.
    let first_code: Vec<String> = [&outcomes[0], &outcomes[2]].map(state).to_vec();
    assert!(
        first_code.contains(&"done".to_owned())
            && first_code.contains(&"code_already_used".to_owned()),
        "{outcomes:?}"
    );
    let third_code: Vec<String> = [&outcomes[3], &outcomes[4]].map(state).to_vec();
    assert!(
        third_code.contains(&"done".to_owned())
            && third_code.contains(&"code_already_used".to_owned()),
        "{outcomes:?}"
    );
    assert_eq!(state(&outcomes[1]), "done", "{outcomes:?}");
    assert_eq!(state(&outcomes[5]), "insufficient_balance", "{outcomes:?}");
    for done in outcomes.iter().filter(|o| o["state"] == "done") {
        let result = &done["result"];
        assert_eq!(
            dec(&result["bonus_accrued"]),
            dec(&result["amount"]) * Decimal::new(5, 2),
            "5 % of the check: {result}"
        );
    }

    let purchases: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(purchases, 3, "three codes, three purchases");
    let balance = |member: &krug_client::ApiClient| {
        let member = member.clone();
        async move {
            let balance = expect(member.get("/loyalty/balance").await.unwrap(), 200).unwrap();
            dec(&balance.data()["balance"])
        }
    };
    let accrued_by = |member_scans: &[usize]| -> Decimal {
        member_scans
            .iter()
            .map(|i| &outcomes[*i])
            .filter(|o| o["state"] == "done")
            .map(|o| dec(&o["result"]["bonus_accrued"]))
            .sum()
    };
    assert_eq!(balance(&anna).await, accrued_by(&[0, 1, 2, 4]));
    assert_eq!(balance(&boris).await, accrued_by(&[3, 5]));
    app.assert_ledger_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_expired_codes_fail_with_a_reason() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Skinerica", "beauty", "7", "+79000000103")
        .await;
    let member = app.sign_in(&member_phone()).await;

    // Refused at once: nothing is queued for a code that cannot succeed.
    let unknown = member
        .post("/transactions/scan", &json!({"code": "ABCDEFGHJKMN"}))
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (422, Some("code_expired"))
    );

    // A code whose five minutes are over (its Redis entry outlives it a little).
    let code = app.issue_qr(&staff, "700").await;
    let key = format!("{}:qr:{code}", app.prefix);
    let mut redis = app.services.cache.connection();
    let raw: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut qr: Value = serde_json::from_str(&raw).unwrap();
    qr["expires_at"] = json!("2020-01-01T00:00:00Z");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(qr.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    let expired = member
        .post("/transactions/scan", &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(
        (expired.status, expired.error_code()),
        (422, Some("code_expired"))
    );

    for bad in ["", "short", "0OIL1ABCDEFG", "ABCDEFGHJKMNP"] {
        let response = member
            .post("/transactions/scan", &json!({"code": bad}))
            .await
            .unwrap();
        assert_eq!(
            (response.status, response.error_code()),
            (422, Some("invalid_code")),
            "{bad:?}"
        );
    }
    let negative = member
        .post(
            "/transactions/scan",
            &json!({"code": "ABCDEFGHJKMN", "redeem_bonus": "-1"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (negative.status, negative.error_code()),
        (422, Some("invalid_amount"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_the_vip_threshold_upgrades_at_once_and_raises_the_multiplier() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, salon) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let (_, spa) = app
        .business_with_staff(&operator, "Стим Центр", "wellness", "5", "+79000000102")
        .await;
    let member = app.sign_in(&member_phone()).await;

    let first = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&salon, "99999.99").await}),
    )
    .await
    .unwrap();
    assert_eq!(
        first["result"]["status_tier"], "Insider",
        "one category is not enough"
    );
    let second = scan_and_wait(&member, &json!({"code": app.issue_qr(&spa, "100").await}))
        .await
        .unwrap();
    assert_eq!(second["result"]["status_tier"], "VIP");
    assert_eq!(
        second["result"]["bonus_accrued"], "5.00",
        "accrued at the tier held when buying"
    );
    let third = scan_and_wait(&member, &json!({"code": app.issue_qr(&spa, "100").await}))
        .await
        .unwrap();
    assert_eq!(
        third["result"]["bonus_accrued"], "7.50",
        "VIP multiplies by 1.5"
    );
    let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
    assert_eq!(me.data()["status_tier"], "VIP");
    assert_eq!(
        dec(&third["result"]["balance"]),
        Decimal::from_str("5012.49").unwrap()
    );
    app.assert_ledger_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_staff_issue_codes_and_only_for_their_business() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (salon_id, salon_staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let (market_id, _) = app
        .business_with_staff(&operator, "Лисичкино", "gastronomy", "3", "+79000000101")
        .await;
    let member = app.sign_in(&member_phone()).await;

    let by_member = member
        .post("/business/qr", &json!({"amount": "100"}))
        .await
        .unwrap();
    assert_eq!(
        (by_member.status, by_member.error_code()),
        (403, Some("forbidden"))
    );
    let other_business = salon_staff
        .post(
            "/business/qr",
            &json!({"amount": "100", "business_id": market_id}),
        )
        .await
        .unwrap();
    assert_eq!(other_business.status, 403);
    let own = salon_staff
        .post(
            "/business/qr",
            &json!({"amount": "100", "business_id": salon_id}),
        )
        .await
        .unwrap();
    assert_eq!(own.status, 200);
    assert_eq!(own.data()["code"].as_str().unwrap().len(), 12);
    for amount in [
        json!("0"),
        json!("-5"),
        json!("1.001"),
        json!("abc"),
        json!("10000000.01"),
    ] {
        let response = salon_staff
            .post("/business/qr", &json!({"amount": amount}))
            .await
            .unwrap();
        assert!(
            matches!(response.status, 400 | 422),
            "{amount}: {}",
            response.body
        );
    }
    let anonymous = app
        .api
        .post("/business/qr", &json!({"amount": "100"}))
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_see_another_members_scan() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let member = app.sign_in(&member_phone()).await;
    let stranger = app.sign_in(&member_phone()).await;
    let accepted = expect(
        member
            .post(
                "/transactions/scan",
                &json!({"code": app.issue_qr(&staff, "100").await}),
            )
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = accepted.data()["job_id"].as_str().unwrap().to_owned();
    wait_for_scan(&member, &job_id).await.unwrap();

    let peek = stranger
        .get(&format!("/transactions/scan/{job_id}"))
        .await
        .unwrap();

    assert_eq!(
        (peek.status, peek.error_code()),
        (404, Some("scan_not_found"))
    );
    let ledger = expect(stranger.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
    assert_eq!(ledger.data()["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_and_transactions_page_with_cursors() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let member = app.sign_in(&member_phone()).await;
    for amount in ["100", "200", "300", "400", "500"] {
        scan_and_wait(
            &member,
            &json!({"code": app.issue_qr(&staff, amount).await}),
        )
        .await
        .unwrap();
    }

    let mut seen = Vec::new();
    let mut path = "/transactions?limit=2".to_owned();
    loop {
        let page = expect(member.get(&path).await.unwrap(), 200).unwrap();
        for item in page.data()["items"].as_array().unwrap() {
            seen.push(item["amount"].as_str().unwrap().to_owned());
        }
        match page.data()["next_cursor"].as_str() {
            Some(cursor) => path = format!("/transactions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["500.00", "400.00", "300.00", "200.00", "100.00"],
        "newest first, each once"
    );

    let bad = member.get("/loyalty/ledger?cursor=garbage").await.unwrap();
    assert_eq!(
        (bad.status, bad.error_code()),
        (400, Some("invalid_cursor"))
    );
    let too_big = member.get("/loyalty/ledger?limit=1000").await.unwrap();
    assert_eq!(
        (too_big.status, too_big.error_code()),
        (422, Some("invalid_limit"))
    );
}
