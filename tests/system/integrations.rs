//! CRM integrations against simulators that behave as the real vendors do: several per
//! business, 1C as it is configured, AMO's expiring tokens shared by workers, Renovatio's
//! closed methods, iiko's week of orders.

use crate::helpers::{TestApp, eventually, member_phone};
use krug_client::{ApiClient, expect};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use simulators::{Sale, Simulator, Vendor};
use std::{str::FromStr, sync::atomic::Ordering};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

async fn business(app: &TestApp, operator: &ApiClient, name: &str, medical: bool) -> Uuid {
    let created = app
        .create_business(
            operator,
            json!({"name": name, "category": if medical { "health" } else { "gastronomy" },
                   "cashback_percent": "10", "is_medical": medical}),
        )
        .await;
    created["id"].as_str().unwrap().parse().unwrap()
}

async fn connect(
    operator: &ApiClient,
    business: Uuid,
    sim: &Simulator,
    credentials: Value,
    settings: Value,
) -> Uuid {
    let created = expect(
        operator
            .post(
                &format!("/admin/businesses/{business}/integrations"),
                &json!({"crm_type": sim.vendor.crm_type().as_str(), "crm_base_url": sim.url,
                        "crm_credentials": credentials, "settings": settings}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    created.data()["id"].as_str().unwrap().parse().unwrap()
}

async fn poll_business(operator: &ApiClient, business: Uuid) {
    expect(
        operator
            .post(&format!("/admin/businesses/{business}/poll"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
}

/// The integration as `GET /admin/businesses` shows it.
async fn health(operator: &ApiClient, integration: Uuid) -> Value {
    let listed = expect(operator.get("/admin/businesses").await.unwrap(), 200).unwrap();
    listed.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["integrations"].as_array().unwrap().clone())
        .find(|i| i["id"] == integration.to_string())
        .unwrap_or_else(|| panic!("integration {integration} listed: {}", listed.body))
}

async fn applied(app: &TestApp, integration: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM transactions WHERE integration_id = $1 AND bonus_applied",
    )
    .bind(integration)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Лисичкино runs iiko (kitchen, delivery) and 1C (the market's checkout): two
/// integrations of one business, each polled with its own cursor and health. A purchase is
/// unique per integration and vendor id, so the same id in both systems is two purchases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_integrations_on_one_business_are_polled_apart() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let market = business(&app, &operator, "Лисичкино", false).await;
    let kitchen = Simulator::start(Vendor::Iiko).await.unwrap();
    let checkout = Simulator::start(Vendor::OneC).await.unwrap();
    let iiko = connect(
        &operator,
        market,
        &kitchen,
        Vendor::Iiko.credentials(),
        json!({}),
    )
    .await;
    let onec = connect(
        &operator,
        market,
        &checkout,
        Vendor::OneC.credentials(),
        json!({"preset": "retail_2"}),
    )
    .await;
    let anna = member_phone();
    let at = OffsetDateTime::now_utc() - Duration::minutes(20);
    // One id in both systems (both write GUIDs): two purchases, one per system.
    let shared = "0f8c2a5e-0001-4c1e-9d6a-00000000beef";
    kitchen.add_sales([
        Sale::purchase(shared, d("1000"), at, &anna),
        Sale::purchase("0f8c2a5e-0002-4c1e-9d6a-00000000beef", d("500"), at, &anna),
    ]);
    checkout.add_sales([Sale::purchase(shared, d("2000"), at, &anna)]);

    poll_business(&operator, market).await;
    // A poll commits its batches, then advances its cursor: both polls done is both.
    eventually(
        20,
        "three purchases with their bonuses, both polls done",
        || async {
            let done = health(&operator, iiko).await["last_polled_at"].is_string()
                && health(&operator, onec).await["last_polled_at"].is_string();
            (done && applied(&app, iiko).await == 2 && applied(&app, onec).await == 1).then_some(())
        },
    )
    .await;

    let balance: Decimal = sqlx::query_scalar(
        "SELECT b.balance FROM bonus_balances b JOIN users u ON u.id = b.user_id WHERE u.phone = $1",
    )
    .bind(&anna)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(balance, d("350.00"), "10 % of 1000 + 500 + 2000");
    for integration in [iiko, onec] {
        let shown = health(&operator, integration).await;
        assert_eq!(shown["status"], "ok", "{shown}");
        assert!(shown["last_polled_at"].is_string(), "{shown}");
        assert!(shown["lag_s"].as_i64().unwrap() < 600, "{shown}");
        assert!(shown["last_error"].is_null(), "{shown}");
    }
    let listed = expect(operator.get("/admin/businesses").await.unwrap(), 200).unwrap();
    let lisichkino = listed.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == market.to_string())
        .unwrap()
        .clone();
    let types: Vec<&str> = lisichkino["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["crm_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["iiko", "1c"]);
    app.assert_ledger_consistent().await;
}

/// Real 1C checks carry no phone: the buyer is the check's counterparty or the owner of
/// its discount card. A check whose buyer cannot be found (the generic retail buyer) is
/// counted for operators, once however often it is read; a refund is a document of its
/// own that reverses its sale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1c_check_reaches_its_buyer_and_unknown_buyers_are_counted() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let clinic = business(&app, &operator, "Skinerica", false).await;
    let sim = Simulator::start(Vendor::OneC).await.unwrap();
    let integration = connect(
        &operator,
        clinic,
        &sim,
        Vendor::OneC.credentials(),
        json!({}),
    )
    .await;
    let (anna, boris) = (member_phone(), member_phone());
    let at = OffsetDateTime::now_utc() - Duration::minutes(30);
    let mut with_card = Sale::purchase("check-card", d("2000"), at, &boris);
    with_card.card = Some("000777".to_owned());
    let mut anonymous = Sale::purchase("check-anon", d("700"), at, &anna);
    anonymous.phone = None;
    let mut refund = Sale::purchase("return-1", d("400"), at + Duration::minutes(5), &anna);
    refund.refund_of = Some("check-anna".to_owned());
    sim.add_sales([
        Sale::purchase("check-anna", d("1000"), at, &anna),
        with_card,
        anonymous,
        refund,
    ]);

    poll_business(&operator, clinic).await;
    eventually(20, "the two purchases and the refund", || async {
        (applied(&app, integration).await == 3).then_some(())
    })
    .await;
    // Read again: nothing is stored or counted twice.
    jobs::handlers::crm::poll(&app.env, integration, true)
        .await
        .unwrap();

    let balances: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT u.phone, b.balance FROM bonus_balances b JOIN users u ON u.id = b.user_id ORDER BY u.phone",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let of = |phone: &str| {
        balances
            .iter()
            .find(|(p, _)| p == phone)
            .map(|(_, b)| *b)
            .unwrap_or_default()
    };
    assert_eq!(
        of(&anna),
        d("60.00"),
        "100 accrued, 40 reversed by the refund"
    );
    assert_eq!(of(&boris), d("200.00"), "through the discount card's owner");
    let shown = health(&operator, integration).await;
    assert_eq!(shown["unattributed"], 1, "{shown}");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions WHERE integration_id = $1")
            .bind(integration)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(rows, 3);
    app.assert_ledger_consistent().await;
}

/// A publication whose role may not filter by `Date` answers HTTP 500 «Операция не
/// разрешена в предложении "ГДЕ"»: the integration is failing with a message that says
/// what to change, and the job is not retried as if 1C were down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1c_publication_refusing_the_date_filter_is_a_configuration_error() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let clinic = business(&app, &operator, "Skinerica", false).await;
    let sim = Simulator::start(Vendor::OneC).await.unwrap();
    sim.state.onec.lock().unwrap().refuses_date_filter = true;
    let integration = connect(
        &operator,
        clinic,
        &sim,
        Vendor::OneC.credentials(),
        json!({}),
    )
    .await;

    poll_business(&operator, clinic).await;
    let shown = eventually(20, "the integration to be failing", || async {
        let shown = health(&operator, integration).await;
        (shown["status"] == "failing").then_some(shown)
    })
    .await;

    let error = shown["last_error"].as_str().unwrap();
    assert!(
        error.contains("Document_ЧекККМ") && error.contains("role"),
        "{error}"
    );
    // The handler records the failure before the worker marks its job dead.
    let job = eventually(20, "the poll to go dead", || async {
        let dead = expect(
            operator
                .get("/admin/jobs?queue=crm_poll&state=dead")
                .await
                .unwrap(),
            200,
        )
        .unwrap();
        dead.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["payload"]["integration_id"] == integration.to_string())
            .cloned()
    })
    .await;
    assert_eq!(job["attempts"], 1, "not retried: {job}");
    assert_eq!(sim.requests(), 1);
}

/// Renovatio opens methods per key, and `getInvoices` is closed until the clinic enables
/// it: the operator reads which method to ask for (and, this being a medical system,
/// nothing the vendor wrote); once the clinic opens it, a poll-now recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renovatio_tells_the_operator_which_method_to_have_enabled() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let clinic = business(&app, &operator, "Миллениум", true).await;
    let sim = Simulator::start(Vendor::Renovatio).await.unwrap();
    let anna = member_phone();
    sim.add_sales([Sale::purchase(
        "9001",
        d("3000"),
        OffsetDateTime::now_utc() - Duration::minutes(10),
        &anna,
    )]);
    let integration = connect(
        &operator,
        clinic,
        &sim,
        Vendor::Renovatio.credentials(),
        json!({}),
    )
    .await;

    poll_business(&operator, clinic).await;
    let shown = eventually(20, "the integration to be failing", || async {
        let shown = health(&operator, integration).await;
        (shown["status"] == "failing").then_some(shown)
    })
    .await;
    let error = shown["last_error"].as_str().unwrap();
    assert!(
        error.contains("getInvoices") && error.contains("enable"),
        "{error}"
    );
    assert!(!error.contains("No access"), "no vendor text: {error}");

    sim.open_renovatio_invoices();
    poll_business(&operator, clinic).await;
    eventually(20, "the visit, as a medical purchase", || async {
        let medical: Option<bool> = sqlx::query_scalar(
            "SELECT is_medical FROM transactions WHERE integration_id = $1 AND bonus_applied",
        )
        .bind(integration)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        medical
    })
    .await;
    // The poll's batches commit before it records its end (see the README's ingest).
    eventually(20, "the integration to be ok again", || async {
        (health(&operator, integration).await["status"] == "ok").then_some(())
    })
    .await;
}

/// AMO's OAuth tokens expire and its refresh tokens are single use. Two workers polling
/// the same integration at once, twice, with the token expiring between: one renewal per
/// expiry, no refresh token ever spent twice, and the rotated pair stored (sealed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amo_tokens_are_renewed_once_however_many_workers_poll() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let spa = business(&app, &operator, "Стим Центр", false).await;
    let sim = Simulator::start(Vendor::AmoCrm).await.unwrap();
    let anna = member_phone();
    sim.add_sales([Sale::purchase(
        "77001",
        d("5000"),
        OffsetDateTime::now_utc() - Duration::minutes(10),
        &anna,
    )]);
    let integration = connect(
        &operator,
        spa,
        &sim,
        simulators::amo_oauth_credentials(),
        json!({}),
    )
    .await;
    let poll = || jobs::handlers::crm::poll(&app.env, integration, true);

    let (a, b) = tokio::join!(poll(), poll());
    a.unwrap();
    b.unwrap();
    let first = storage::integrations::credentials(&app.db, &app.services.secrets, integration)
        .await
        .unwrap()
        .unwrap();
    sim.state.tokens.expire_all();
    let (c, d) = tokio::join!(poll(), poll());
    c.unwrap();
    d.unwrap();
    let second = storage::integrations::credentials(&app.db, &app.services.secrets, integration)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        sim.state
            .tokens
            .reused_refresh_tokens
            .load(Ordering::SeqCst),
        0
    );
    assert_eq!(sim.state.tokens.refreshes.load(Ordering::SeqCst), 2);
    assert_ne!(
        first["refresh_token"],
        simulators::amo_oauth_credentials()["refresh_token"]
    );
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let purchases: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions WHERE integration_id = $1")
            .bind(integration)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(purchases, 1, "four polls, one purchase");
    assert_eq!(health(&operator, integration).await["status"], "ok");
}

/// iiko keeps orders a week: a catch-up reaching further back is read from where iiko
/// still has orders, and operators are told that it is incomplete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iiko_catch_up_older_than_a_week_is_flagged_incomplete() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let market = business(&app, &operator, "Лисичкино", false).await;
    let sim = Simulator::start(Vendor::Iiko).await.unwrap();
    let anna = member_phone();
    sim.add_sales([Sale::purchase(
        "0f8c2a5e-0003-4c1e-9d6a-00000000beef",
        d("800"),
        OffsetDateTime::now_utc() - Duration::hours(2),
        &anna,
    )]);
    let integration = connect(
        &operator,
        market,
        &sim,
        Vendor::Iiko.credentials(),
        json!({}),
    )
    .await;
    // The integration was last polled ten days ago (the worker was down, say).
    sqlx::query("UPDATE integrations SET polled_until = now() - interval '10 days' WHERE id = $1")
        .bind(integration)
        .execute(&app.db)
        .await
        .unwrap();

    poll_business(&operator, market).await;
    eventually(20, "the recent order", || async {
        (applied(&app, integration).await == 1).then_some(())
    })
    .await;

    // The poll's batches commit before it records its end and its warning.
    let shown = eventually(20, "the poll's end", || async {
        let shown = health(&operator, integration).await;
        shown["last_polled_at"].is_string().then_some(shown)
    })
    .await;
    let warning = shown["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("incomplete") && warning.contains("7 days"),
        "{shown}"
    );
    assert_eq!(shown["status"], "ok");
}

/// The API's `/metrics`, as Prometheus scrapes it.
async fn metrics_text(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The `crm_integration_failing_seconds` line of `/metrics` for `integration`, if any.
async fn failing_seconds(app: &TestApp, integration: Uuid) -> Option<f64> {
    metrics_text(app)
        .await
        .lines()
        .filter(|l| l.starts_with("crm_integration_failing_seconds{"))
        .find(|l| l.contains(&format!("integration_id=\"{integration}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The alert "an integration failing for an hour" reads `crm_integration_failing_seconds`:
/// a failing integration is a series on the API's `/metrics` (labelled with its business,
/// id and CRM), counting from its creation when it never succeeded; a poll that succeeds
/// removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_integration_is_a_metric_until_it_recovers() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let clinic = business(&app, &operator, "Клиника", true).await;
    let sim = Simulator::start(Vendor::Renovatio).await.unwrap();
    let integration = connect(
        &operator,
        clinic,
        &sim,
        Vendor::Renovatio.credentials(),
        json!({}),
    )
    .await;
    assert_eq!(failing_seconds(&app, integration).await, None, "healthy");
    // As if it had been set up two hours ago and never polled successfully since.
    sqlx::query("UPDATE integrations SET created_at = now() - interval '2 hours' WHERE id = $1")
        .bind(integration)
        .execute(&app.db)
        .await
        .unwrap();

    // Renovatio keeps `getInvoices` closed until the clinic opens it: the poll fails.
    poll_business(&operator, clinic).await;
    eventually(20, "the integration to be failing", || async {
        (health(&operator, integration).await["status"] == "failing").then_some(())
    })
    .await;
    // The gauges are read on a timer (`api::gauges::REFRESH_EVERY`), not by the scrape.
    let seconds = eventually(30, "the failing integration on /metrics", || {
        failing_seconds(&app, integration)
    })
    .await;
    assert!(seconds >= 7200.0, "failing since its creation: {seconds}");
    let text = metrics_text(&app).await;
    assert!(
        text.contains(&format!(
            "crm_integration_failing_seconds{{business_id=\"{clinic}\",crm_type=\"renovatio\",integration_id=\"{integration}\"}}"
        )),
        "{text}"
    );

    sim.open_renovatio_invoices();
    poll_business(&operator, clinic).await;
    eventually(20, "the integration to recover", || async {
        (health(&operator, integration).await["status"] == "ok").then_some(())
    })
    .await;
    eventually(30, "the recovered integration off /metrics", || async {
        failing_seconds(&app, integration)
            .await
            .is_none()
            .then_some(())
    })
    .await;
}
