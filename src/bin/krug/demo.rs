//! `krug demo`: on a fresh machine, migrates, seeds the coalition and runs a day of the
//! loyalty cycle through the real HTTP API and a real worker, printing what happened.

use adapters::payments::HttpYooKassa;
use anyhow::{Context, bail};
use jobs::{QueueName, runtime::WorkerOptions};
use krug::{
    app::{Services, migrate},
    config::{Config, PushConfig, SmsConfig},
    seed,
};
use krug_client::{ApiClient, expect, scan_and_wait, sign_in, sign_in_session};
use poem::listener::{Acceptor, Listener, TcpListener};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use simulators::{Fault, Sale, Simulator, Vendor, yookassa::FakeYooKassa};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use storage::businesses::Business;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The demo's people are made up: whatever `KRUG_SMS_PROVIDER` and `KRUG_PUSH_PROVIDER`
/// say, its messages are printed and recorded, never sent to a phone.
pub fn offline(mut config: Config) -> Config {
    config.sms = SmsConfig::Log;
    config.push = PushConfig::Log;
    config.smtp_url = None;
    config
}

/// The shop the demo's simulated ЮKassa answers for (made up, like everything it pays).
const DEMO_SHOP: &str = "demo-shop";
const DEMO_SHOP_SECRET: &str = "demo_secret_key";

/// Runs the demo; the operator is `operator_phone` (`--operator-phone`, so that whoever ran it
/// can sign in to the board as that operator afterwards), or a number drawn at random.
pub async fn run(mut services: Services, operator_phone: Option<String>) -> anyhow::Result<()> {
    let operator_phone = match operator_phone {
        Some(phone) => domain::PhoneNumber::parse(&phone)
            .map_err(|e| anyhow::anyhow!("--operator-phone: {e}"))?
            .to_string(),
        None => format!("+7999{:07}", rand::random_range(0..10_000_000u32)),
    };
    println!("Свой Круг — one day of the loyalty coalition\n");
    // The partners' CRMs are simulators on loopback, which CRM URLs may otherwise not reach.
    services.egress = services.egress.allowing("127.0.0.1");
    // Paid events are paid on a simulated ЮKassa, whatever YOOKASSA_* say: nobody pays.
    let kassa = FakeYooKassa::start(DEMO_SHOP, DEMO_SHOP_SECRET).await?;
    services.payments = Some(Arc::new(HttpYooKassa::new(
        &kassa.url,
        DEMO_SHOP.to_owned(),
        DEMO_SHOP_SECRET.to_owned().into(),
    )));

    section("1. Schema and services");
    migrate(&services.config).await?;
    println!(
        "Postgres migrated, ClickHouse tables in place, Redis at {}",
        services.config.redis_url
    );

    section("2. The coalition");
    let partners = seed::partners(&services.db, &services.queue).await?;
    let chains = seed::promo_chains(&services.db, &partners).await?;
    for b in &partners {
        println!(
            "  {:<11} {:<10} cashback {:>5}%  up to {}% of a check in bonuses{}",
            b.name,
            b.category.as_str(),
            b.cashback_percent,
            b.max_redeem_percent,
            if b.is_medical {
                "  (medical: kept out of analytics and cross-promo)"
            } else {
                ""
            }
        );
    }

    if !chains.is_empty() {
        println!(
            "  cross-promo chains: salon → 15 % at the gastromarket; gastronomy → 300 bonuses at the spa; Skinerica → 1 000 ₽ at the salon"
        );
    }

    // The real API on a free port and a real worker for every queue, in this process.
    let shutdown = CancellationToken::new();
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("the API listener has no address")?;
    let api_task = tokio::spawn({
        // The demo signs six people in from one address within a minute: the per-address
        // and system-wide sign-in limits would stop it (the demo never runs in production).
        let state = {
            let mut state = Arc::into_inner(services.app_state()).expect("a fresh state");
            state.limits = api::limits::Limits::relaxed();
            Arc::new(state)
        };
        let shutdown = shutdown.clone();
        async move { api::serve(acceptor, state, async move { shutdown.cancelled().await }).await }
    });
    let worker_task = tokio::spawn(jobs::runtime::run(
        services.job_env(),
        WorkerOptions::new(services.config.redis_url.expose(), QueueName::ALL.to_vec()),
        shutdown.clone(),
    ));
    let api = ApiClient::new(format!("http://{addr}"));
    println!("\nAPI on http://{addr}/api/v1 (docs at /docs), worker running every queue");

    let result = day(&services, &api, &kassa, &partners, &operator_phone).await;
    shutdown.cancel();
    let _ = api_task.await;
    let _ = worker_task.await;
    result
}

async fn day(
    services: &Services,
    api: &ApiClient,
    kassa: &FakeYooKassa,
    partners: &[Business],
    operator_phone: &str,
) -> anyhow::Result<()> {
    let partner = |name: &str| {
        partners
            .iter()
            .find(|b| b.name == name)
            .expect("seeded partner")
    };

    section("3. Operators and staff");
    krug::commands::grant(services.clone(), operator_phone, "superadmin", None).await?;
    let operator = sign_in(&services.db, &services.cache, api, operator_phone).await?;
    println!("  operator (superadmin): {operator_phone}");
    let mut staff = Vec::new();
    for (i, name) in ["Миндаль", "Лисичкино", "Стим Центр", "Миллениум"]
        .into_iter()
        .enumerate()
    {
        let phone = format!("+7900000010{i}");
        let business = partner(name);
        let added = expect(
            operator
                .post(
                    &format!("/admin/businesses/{}/staff", business.id),
                    &json!({"phone": phone, "role": "staff"}),
                )
                .await?,
            201,
        )?;
        println!(
            "  {} joins the staff of {}",
            added.data()["phone"].as_str().unwrap_or_default(),
            name
        );
        staff.push((
            name,
            sign_in(&services.db, &services.cache, api, &phone).await?,
        ));
    }
    let staff_of = |name: &str| {
        &staff
            .iter()
            .find(|(n, _)| *n == name)
            .expect("staff signed in")
            .1
    };

    section("4. A member signs in by SMS");
    let member_phone = format!("+7999{:07}", rand::random_range(0..10_000_000u32));
    let anna = sign_in(&services.db, &services.cache, api, &member_phone).await?;
    expect(
        anna.patch(
            "/users/me",
            &json!({"first_name": "Анна", "last_name": "Смирнова"}),
        )
        .await?,
        200,
    )?;
    let me = expect(anna.get("/users/me").await?, 200)?;
    println!(
        "  {} {} ({}) is a member, tier {}",
        me.data()["first_name"].as_str().unwrap_or_default(),
        me.data()["last_name"].as_str().unwrap_or_default(),
        me.data()["phone"].as_str().unwrap_or_default(),
        me.data()["status_tier"].as_str().unwrap_or_default()
    );

    section("5. A day of purchases, paid by scanning the cashier's QR code");
    let visits: [(&str, &str, Option<&str>); 5] = [
        ("Миндаль", "4500.00", None),
        ("Лисичкино", "2380.00", Some("100")),
        ("Стим Центр", "98000.00", None),
        ("Миллениум", "3000.00", None),
        ("Лисичкино", "1000.00", Some("400")),
    ];
    let mut codes = Vec::new();
    for (name, amount, redeem) in visits {
        let qr = expect(
            staff_of(name)
                .post("/business/qr", &json!({"amount": amount}))
                .await?,
            200,
        )?;
        let code = qr.data()["code"].as_str().unwrap_or_default().to_owned();
        let outcome = scan_and_wait(
            &anna,
            &json!({"code": code, "redeem_bonus": redeem.unwrap_or("0")}),
        )
        .await?;
        let what = match redeem {
            Some(r) => format!("{name}: check {amount} ₽, pays {r} in bonuses"),
            None => format!("{name}: check {amount} ₽"),
        };
        describe(&what, &outcome);
        codes.push(code);
    }
    // A refused scan used nothing up: the same code works with an allowed redemption.
    let retry = scan_and_wait(&anna, &json!({"code": codes[4], "redeem_bonus": "300"})).await?;
    describe(
        "Лисичкино: the same check again, paying 300 in bonuses",
        &retry,
    );
    let again = scan_and_wait(&anna, &json!({"code": codes[0]})).await?;
    describe("Миндаль: the first code scanned a second time", &again);

    // The salon visit earned a coupon at the gastromarket (the seeded cross-promo chain).
    let deadline = Instant::now() + Duration::from_secs(10);
    let coupon = loop {
        let listed = expect(anna.get("/coupons").await?, 200)?;
        let market = partner("Лисичкино").id.to_string();
        if let Some(c) = listed.data()["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["business_id"] == market.as_str())
        {
            break c.clone();
        }
        if Instant::now() > deadline {
            bail!("no cross-promo coupon within 10 s: is the cross_promo worker running?");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "  the salon visit earned coupon {} at Лисичкино: {} {} off, until {}",
        coupon["code"].as_str().unwrap_or_default(),
        coupon["discount_value"].as_str().unwrap_or_default(),
        if coupon["discount_type"] == "percent" {
            "%"
        } else {
            "₽"
        },
        coupon["expires_at"].as_str().unwrap_or_default()
    );
    let qr = expect(
        staff_of("Лисичкино")
            .post("/business/qr", &json!({"amount": "3000.00"}))
            .await?,
        200,
    )?;
    let with_coupon = scan_and_wait(
        &anna,
        &json!({"code": qr.data()["code"], "coupon_id": coupon["id"]}),
    )
    .await?;
    describe("Лисичкино: check 3000.00 ₽ with the coupon", &with_coupon);

    crm_day(services, &operator, partners, &member_phone).await?;

    section("7. Where Анна stands");
    let balance = expect(anna.get("/loyalty/balance").await?, 200)?;
    let b = balance.data();
    println!(
        "  balance {} (earned {}, spent {}), tier {}",
        b["balance"].as_str().unwrap_or_default(),
        b["lifetime_earned"].as_str().unwrap_or_default(),
        b["lifetime_spent"].as_str().unwrap_or_default(),
        b["status_tier"].as_str().unwrap_or_default()
    );
    if let Some(next) = b["next_tier"].as_object() {
        println!(
            "  next: {} — {} ₽ and {} more categories to go",
            next["name"].as_str().unwrap_or_default(),
            next["spend_needed"].as_str().unwrap_or_default(),
            next["categories_needed"]
        );
    }
    let ledger = expect(anna.get("/loyalty/ledger?limit=20").await?, 200)?;
    println!("  ledger, newest first:");
    for entry in ledger.data()["items"].as_array().into_iter().flatten() {
        println!(
            "    {:<11} {:>10}",
            entry["kind"].as_str().unwrap_or_default(),
            entry["amount"].as_str().unwrap_or_default()
        );
    }
    members_round(services, api, kassa, &operator, &anna, staff_of("Миндаль")).await?;
    settlement(&operator).await?;
    println!(
        "\nDone. Everything above went through the HTTP API and the otp_send, qr_scan, crm_poll, cross_promo and notify workers."
    );
    Ok(())
}

/// What a member does beyond buying: Анна invites a friend (both are rewarded once the
/// friend's first purchase is in), pays for a seat at a dinner through ЮKassa (simulated)
/// and searches the catalogue with a typo.
async fn members_round(
    services: &Services,
    api: &ApiClient,
    kassa: &FakeYooKassa,
    operator: &ApiClient,
    anna: &ApiClient,
    salon_staff: &ApiClient,
) -> anyhow::Result<()> {
    section("8. A friend, a dinner and a search");
    let referral = expect(anna.get("/users/me/referral").await?, 200)?;
    let code = referral.data()["code"]
        .as_str()
        .context("no referral code")?
        .to_owned();
    println!(
        "  Анна's referral link: {}",
        referral.data()["link"].as_str().unwrap_or_default()
    );
    let friend_phone = format!("+7999{:07}", rand::random_range(0..10_000_000u32));
    let session = sign_in_session(
        &services.db,
        &services.cache,
        api,
        &friend_phone,
        json!({"referral_code": code}),
    )
    .await?;
    let friend = api.signed_in_session(&session)?;
    println!(
        "  her friend {friend_phone} signs up with code {code} (taken: {})",
        session["referral"]["taken"]
    );
    let qr = expect(
        salon_staff
            .post("/business/qr", &json!({"amount": "2500.00"}))
            .await?,
        200,
    )?;
    let first = scan_and_wait(&friend, &json!({"code": qr.data()["code"]})).await?;
    describe("the friend's first visit, Миндаль: check 2500.00 ₽", &first);
    // Rewards are settled by the hourly `expire` job, once the purchase's hold is over (none
    // at the salon): run it now rather than wait for the hour.
    jobs::schedule::trigger(&services.queue, &services.db, "expire").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ledger = expect(anna.get("/loyalty/ledger?limit=5").await?, 200)?;
        let rewarded = ledger.data()["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["kind"] == "referral")
            .cloned();
        if let Some(entry) = rewarded {
            let counts = expect(anna.get("/users/me/referral").await?, 200)?;
            println!(
                "  the expire job rewards both: Анна +{} (invited {}, rewarded {})",
                entry["amount"].as_str().unwrap_or_default(),
                counts.data()["invited"],
                counts.data()["rewarded"]
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("no referral reward within 10 s: is the expire worker running?");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An operator prices a dinner; Анна's seat is held while she pays on ЮKassa's page.
    let date = (OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)?;
    let created = expect(
        operator
            .post(
                "/events",
                &json!({"title": "Ужин с шеф-поваром", "date": date, "location": "Лисичкино",
                        "max_participants": 12, "price": "1500.00"}),
            )
            .await?,
        201,
    )?;
    let event = created.data()["id"]
        .as_str()
        .context("no event id")?
        .to_owned();
    expect(
        operator
            .patch(
                &format!("/admin/events/{event}"),
                &json!({"status": "approved"}),
            )
            .await?,
        200,
    )?;
    let held = expect(
        anna.post(&format!("/events/{event}/register"), &json!({}))
            .await?,
        202,
    )?;
    let confirmation = held.data()["confirmation_url"]
        .as_str()
        .context("no confirmation url")?
        .to_owned();
    println!(
        "  «Ужин с шеф-поваром» costs 1500.00 ₽: Анна's seat is held until {} while she pays at {confirmation}",
        held.data()["expires_at"].as_str().unwrap_or_default()
    );
    let payment = confirmation
        .rsplit('/')
        .next()
        .context("no payment id in the confirmation url")?;
    anyhow::ensure!(kassa.pay(payment), "the simulated ЮKassa lost the payment");
    let notification = kassa
        .notification("payment.succeeded", payment)
        .context("no notification for the payment")?;
    let answer = expect(api.post("/payments/yookassa", &notification).await?, 200)?;
    let seat = expect(anna.get(&format!("/events/{event}")).await?, 200)?;
    println!(
        "  she pays; ЮKassa's notification, checked against ЮKassa itself: {}; registered {}",
        answer.data()["outcome"].as_str().unwrap_or_default(),
        seat.data()["is_registered"]
    );

    for query in ["лисичкно", "красоты"] {
        let found = expect(anna.get(&format!("/search?q={query}")).await?, 200)?;
        let names: Vec<String> = found.data()["items"]
            .as_array()
            .into_iter()
            .flatten()
            .take(3)
            .map(|hit| {
                format!(
                    "{} ({})",
                    hit["name"].as_str().unwrap_or_default(),
                    hit["type"].as_str().unwrap_or_default()
                )
            })
            .collect();
        println!("  search «{query}» → {}", names.join(", "));
    }
    Ok(())
}

/// The month's settlement so far (the open period's live preview: it closes on the 1st):
/// each partner's line, and who pays whom through the coalition operator.
async fn settlement(operator: &ApiClient) -> anyhow::Result<()> {
    section("9. The month's settlement between the partners");
    let periods = expect(operator.get("/admin/settlements").await?, 200)?;
    let period = periods.data()["items"][0]["period"]
        .as_str()
        .context("no open settlement period")?
        .to_owned();
    let statement = expect(
        operator
            .get(&format!("/admin/settlements/{period}"))
            .await?,
        200,
    )?;
    let s = statement.data();
    println!(
        "  {period} ({}, live until the month closes): {} ledger entries",
        s["status"].as_str().unwrap_or_default(),
        s["entries"]
    );
    println!(
        "  {:<11} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "partner", "issued", "redeemed", "refunded", "expired", "net"
    );
    for line in s["businesses"].as_array().into_iter().flatten() {
        let money = |k: &str| line[k].as_str().unwrap_or_default().to_owned();
        println!(
            "  {:<11} {:>10} {:>10} {:>10} {:>10} {:>10}",
            line["business_name"].as_str().unwrap_or_default(),
            money("issued"),
            money("redeemed"),
            money("refunded"),
            money("expired"),
            money("net")
        );
    }
    println!(
        "  the operator funded {} (referrals, adjustments); total {} = the change of the members' balances",
        s["operator_funded"].as_str().unwrap_or_default(),
        s["total"].as_str().unwrap_or_default()
    );
    println!("  who pays whom:");
    for t in s["transfers"].as_array().into_iter().flatten() {
        let name = t["business_name"].as_str().unwrap_or_default();
        let amount = t["amount"].as_str().unwrap_or_default();
        if t["direction"] == "to_operator" {
            println!("    {name} pays the coalition operator {amount} ₽");
        } else {
            println!("    the coalition operator pays {name} {amount} ₽");
        }
    }
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

fn describe(what: &str, outcome: &Value) {
    let r = &outcome["result"];
    if outcome["state"] == "done" {
        let coupon = r["coupon_discount"].as_str().filter(|d| *d != "0.00");
        println!(
            "  {what} → +{} bonuses (redeemed {}{}), balance {}, tier {}",
            r["bonus_accrued"].as_str().unwrap_or_default(),
            r["bonus_redeemed"].as_str().unwrap_or_default(),
            coupon
                .map(|d| format!(", coupon took {d} off"))
                .unwrap_or_default(),
            r["balance"].as_str().unwrap_or_default(),
            r["status_tier"].as_str().unwrap_or_default()
        );
    } else {
        println!(
            "  {what} → refused: {} ({})",
            outcome["error"]["message"].as_str().unwrap_or_default(),
            outcome["error"]["code"].as_str().unwrap_or_default()
        );
    }
}

/// The partners' own systems: each business's CRM is a local simulator speaking its vendor's
/// API; `crm_poll` stores the day's sales in Postgres with their bonuses.
async fn crm_day(
    services: &Services,
    operator: &ApiClient,
    partners: &[Business],
    anna: &str,
) -> anyhow::Result<()> {
    section("6. The partners' CRMs report the rest of the day's sales");
    let national = &anna[2..];
    // Лисичкино runs two systems: iiko for the kitchen and delivery, 1C for the market's
    // checkout. The first CRM of each business is connected through `PATCH
    // /admin/businesses/{id}`, a second one through `/admin/businesses/{id}/integrations`.
    let connections = [
        ("Миндаль", Vendor::Yclients),
        ("Лисичкино", Vendor::Iiko),
        ("Лисичкино", Vendor::OneC),
        ("Skinerica", Vendor::OneC),
        ("Стим Центр", Vendor::AmoCrm),
        ("Миллениум", Vendor::Renovatio),
    ];
    let now = OffsetDateTime::now_utc();
    let mut simulators = Vec::new();
    for (i, (name, vendor)) in connections.into_iter().enumerate() {
        let business = partners
            .iter()
            .find(|b| b.name == name)
            .context("seeded partner")?;
        let sim = Simulator::start(vendor).await?;
        // The clinic has opened the invoice method for our key, as Renovatio requires.
        sim.open_renovatio_invoices();
        // Стим Центр's AMO CRM is an OAuth integration: its token is minted on first use
        // and its refresh token rotated.
        let credentials = if vendor == Vendor::AmoCrm {
            simulators::amo_oauth_credentials()
        } else {
            vendor.credentials()
        };
        let second = simulators
            .iter()
            .any(|(n, _, _): &(&str, Uuid, Simulator)| *n == name);
        let integration: Uuid = if second {
            let created = expect(
                operator
                    .post(
                        &format!("/admin/businesses/{}/integrations", business.id),
                        &json!({"crm_type": vendor.crm_type().as_str(), "crm_base_url": sim.url, "crm_credentials": credentials}),
                    )
                    .await?,
                201,
            )?;
            created.data()["id"].as_str().unwrap_or_default().parse()?
        } else {
            let patched = expect(
                operator
                    .patch(
                        &format!("/admin/businesses/{}", business.id),
                        &json!({"crm_type": vendor.crm_type().as_str(), "crm_base_url": sim.url, "crm_credentials": credentials}),
                    )
                    .await?,
                200,
            )?;
            patched.data()["integrations"][0]["id"]
                .as_str()
                .unwrap_or_default()
                .parse()?
        };
        // Анна's visit, written the way this vendor's staff write phones, and two other members.
        let at = now - time::Duration::minutes(50 - 5 * i as i64);
        let forms = [
            format!("8{national}"),
            format!(
                "+7 ({}) {}-{}-{}",
                &national[..3],
                &national[3..6],
                &national[6..8],
                &national[8..]
            ),
            format!("7{national}"),
        ];
        let mut sales = vec![Sale::purchase(
            format!("{}-{i}-A", vendor.crm_type()),
            dec(1500 + 500 * i as i64),
            at,
            &forms[i % 3],
        )];
        for j in 0..2 {
            let phone = format!("+7916{:07}", rand::random_range(0..10_000_000u32));
            sales.push(Sale::purchase(
                format!("{}-{i}-{j}", vendor.crm_type()),
                dec(800 + 250 * j),
                at + time::Duration::minutes(j),
                &phone,
            ));
        }
        sim.add_sales(sales);
        println!(
            "  {name:<11} → {} simulator at {}",
            vendor.crm_type(),
            sim.url
        );
        simulators.push((name, integration, sim));
    }
    // A bad moment at the gastromarket's kitchen: rate limited, then a server error. The
    // poll waits as told and retries; nothing is lost.
    simulators[1]
        .2
        .inject([Fault::RateLimited { retry_after_s: 1 }, Fault::ServerError]);
    // The salon's YCLIENTS delivers every record twice.
    simulators[0]
        .2
        .state
        .duplicate
        .store(true, std::sync::atomic::Ordering::SeqCst);

    let expected = 3 * simulators.len() as i64;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions WHERE source = 'crm'")
        .fetch_one(&services.db)
        .await?;
    expect(
        operator
            .post("/admin/schedules/crm_poll/trigger", &json!({}))
            .await?,
        202,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (stored, pending): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE NOT bonus_applied) FROM transactions WHERE source = 'crm'",
        )
        .fetch_one(&services.db)
        .await?;
        if stored - before >= expected && pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the CRM polls did not finish within 30 s ({} of {expected} sales stored)",
                stored - before
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (name, integration, sim) in &simulators {
        let (count, accrued, medical): (i64, Decimal, bool) = sqlx::query_as(
            "SELECT count(*), COALESCE(SUM(bonus_accrued), 0), COALESCE(bool_or(is_medical), false)
             FROM transactions WHERE integration_id = $1 AND source = 'crm'",
        )
        .bind(integration)
        .fetch_one(&services.db)
        .await?;
        println!(
            "  {name:<11} {:<9} {count} sales stored once each ({} HTTP requests to its CRM), {accrued} bonuses accrued{}",
            sim.vendor.crm_type(),
            sim.requests(),
            if medical { ", marked medical" } else { "" }
        );
    }
    let health = expect(operator.get("/admin/businesses").await?, 200)?;
    let market = health.data()["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == "Лисичкино")
        .cloned()
        .unwrap_or_default();
    let systems: Vec<String> = market["integrations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{} {}",
                i["crm_type"].as_str().unwrap_or_default(),
                i["status"].as_str().unwrap_or_default()
            )
        })
        .collect();
    println!(
        "  operators see Лисичкино's integrations: {}",
        systems.join(", ")
    );
    Ok(())
}

fn dec(value: i64) -> Decimal {
    Decimal::from(value)
}
