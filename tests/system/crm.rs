//! CRM ingest: every purchase becomes exactly one transaction with its bonus.

use crate::helpers::{TestApp, member_phone};
use domain::PhoneNumber;
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;
use storage::{
    businesses,
    crm::{self, Record},
    ledger, loyalty, tiers,
};
use time::OffsetDateTime;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn purchase(id: &str, amount: &str, phone: &str) -> Record {
    Record {
        external_id: id.to_owned(),
        refund_of: None,
        amount: d(amount),
        occurred_at: OffsetDateTime::now_utc(),
        phone: PhoneNumber::parse(phone).ok(),
        is_medical: false,
    }
}

fn refund(id: &str, of: &str, amount: &str) -> Record {
    Record {
        refund_of: Some(of.to_owned()),
        phone: None,
        ..purchase(id, amount, "+79990000000")
    }
}

/// Purchases, a duplicate delivery, refunds in the same window as their purchase and in a
/// later one: one row each, proportional reversals, and balance = Σ ledger throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_bonus_calc_record_each_purchase_once_and_reverse_refunds() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let created = app
        .create_business(
            &operator,
            json!({"name": "Лисичкино", "category": "gastronomy", "cashback_percent": "3"}),
        )
        .await;
    let business = businesses::get(&app.db, created["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let integration = storage::integrations::create(
        &mut *app.db.acquire().await.unwrap(),
        &app.services.secrets,
        business.id,
        &storage::integrations::NewIntegration {
            crm_type: domain::crm::CrmType::Iiko,
            base_url: "https://api-ru.iiko.services".to_owned(),
            credentials: None,
            settings: json!({}),
        },
    )
    .await
    .unwrap()
    .id;
    let rules = tiers::rules(&app.db).await.unwrap();
    let anna = member_phone();
    let boris = member_phone();

    let first_window = vec![
        purchase("A-1", "1000.00", &anna),
        purchase("A-2", "333.33", &anna),
        purchase("A-1", "1000.00", &anna), // delivered twice
        purchase("B-1", "5000", &format!("8{}", &boris[2..])), // written the domestic way
        refund("A-2:refund", "A-2", "111.11"),
        purchase("X-1", "100", "not a phone"),
    ];
    let mut tx = app.db.begin().await.unwrap();
    let ingested = crm::ingest(&mut tx, &business, integration, &first_window, &rules)
        .await
        .unwrap();
    assert_eq!(ingested.purchases.len(), 3);
    assert_eq!(ingested.new_refund_ids.len(), 1);
    assert_eq!(ingested.duplicates, 1);
    assert_eq!(
        ingested.unattributed, 1,
        "a purchase without a usable phone is not attributed"
    );
    // Purchases are stored with their bonuses; the refund waits for bonus_calc.
    let accrued: Vec<Decimal> = ingested.purchases.iter().map(|o| o.bonus_change).collect();
    assert_eq!(accrued, [d("30.00"), d("9.99"), d("150.00")]);
    let outcomes = ledger::apply_bonuses(&mut tx, &ingested.new_refund_ids, &rules)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let changes: Vec<Decimal> = outcomes.iter().map(|o| o.bonus_change).collect();
    assert_eq!(changes, [d("-3.33")]);

    // The overlapping re-poll delivers the same records again, plus the rest of the refunds.
    let second_window = vec![
        purchase("A-1", "1000.00", &anna),
        refund("A-2:refund", "A-2", "111.11"),
        refund("A-2:refund-2", "A-2", "222.22"),
        refund("Z:refund", "Z-unknown", "50"),
    ];
    let mut tx = app.db.begin().await.unwrap();
    let again = crm::ingest(&mut tx, &business, integration, &second_window, &rules)
        .await
        .unwrap();
    assert!(again.purchases.is_empty(), "no purchase is new");
    assert_eq!(
        again.new_refund_ids.len(),
        1,
        "only the second refund is new"
    );
    assert_eq!(
        again.orphan_refunds, 1,
        "a refund of nothing we know, without a phone"
    );
    assert_eq!(
        again.unattributed, 0,
        "the unattributed purchase is counted once"
    );
    let outcomes = ledger::apply_bonuses(&mut tx, &again.new_refund_ids, &rules)
        .await
        .unwrap();
    assert_eq!(
        outcomes[0].bonus_change,
        d("-6.66"),
        "the last refund takes back exactly what is left"
    );
    // Applying again changes nothing, to purchases stored with their bonuses as to refunds.
    let first_ids: Vec<_> = ingested
        .purchases
        .iter()
        .map(|o| o.transaction_id)
        .chain(ingested.new_refund_ids.iter().copied())
        .collect();
    let repeat = ledger::apply_bonuses(&mut tx, &first_ids, &rules)
        .await
        .unwrap();
    assert!(
        repeat
            .iter()
            .all(|o| !o.newly_applied && o.bonus_change.is_zero())
    );
    tx.commit().await.unwrap();

    let anna_id = storage::users::find_by_phone(&app.db, &PhoneNumber::parse(&anna).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let balance = loyalty::balance(&app.db, anna_id).await.unwrap();
    assert_eq!(
        balance.balance,
        d("30.00"),
        "9.99 accrued on A-2 is fully reversed"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 5);
    app.assert_ledger_consistent().await;
}

mod pipeline {
    use crate::helpers::{TestApp, eventually, member_phone};
    use krug_client::expect;
    use rust_decimal::Decimal;
    use serde_json::{Value, json};
    use simulators::{Fault, Sale, Simulator, Vendor};
    use std::str::FromStr;
    use time::{Duration, OffsetDateTime};
    use uuid::Uuid;

    async fn connect(
        app: &TestApp,
        operator: &krug_client::ApiClient,
        name: &str,
        sim: &Simulator,
        cashback: &str,
    ) -> Uuid {
        let business = app
            .create_business(
                operator,
                json!({
                    "name": name, "category": "beauty", "cashback_percent": cashback,
                    "crm_type": sim.vendor.crm_type().as_str(), "crm_base_url": sim.url,
                    "crm_credentials": sim.vendor.credentials(),
                }),
            )
            .await;
        business["id"].as_str().unwrap().parse().unwrap()
    }

    async fn count(app: &TestApp, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&app.db)
            .await
            .unwrap()
    }

    async fn poll_all(operator: &krug_client::ApiClient) {
        expect(
            operator
                .post("/admin/schedules/crm_poll/trigger", &json!({}))
                .await
                .unwrap(),
            202,
        )
        .unwrap();
    }

    /// Two businesses polled by one tick, then again over an overlapping window with one new
    /// sale each: every purchase is stored once, with its bonus, and the cursors move on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_crms_polled_twice_store_each_purchase_once_with_its_bonus() {
        let app = TestApp::spawn().await;
        let operator = app.operator().await;
        let salon = Simulator::start(Vendor::Yclients).await.unwrap();
        let clinic = Simulator::start(Vendor::OneC).await.unwrap();
        *salon.state.page_size.lock().unwrap() = Some(2);
        *clinic.state.page_size.lock().unwrap() = Some(2);
        let salon_id = connect(&app, &operator, "Миндаль", &salon, "5").await;
        let clinic_id = connect(&app, &operator, "Skinerica", &clinic, "10").await;
        let anna = member_phone();
        let boris = member_phone();
        let earlier = OffsetDateTime::now_utc() - Duration::minutes(30);
        salon.add_sales([
            Sale::purchase("y-1", Decimal::from(1000), earlier, &anna),
            Sale::purchase(
                "y-2",
                Decimal::from(2000),
                earlier + Duration::minutes(1),
                &boris,
            ),
            Sale::purchase(
                "y-3",
                Decimal::from(3000),
                earlier + Duration::minutes(2),
                &anna,
            ),
        ]);
        clinic.add_sales([
            Sale::purchase("c-1", Decimal::from(500), earlier, &anna),
            Sale::purchase(
                "c-2",
                Decimal::from(700),
                earlier + Duration::minutes(3),
                &boris,
            ),
        ]);

        poll_all(&operator).await;
        eventually(20, "five purchases with their bonuses", || async {
            (count(
                &app,
                "SELECT count(*) FROM transactions WHERE bonus_applied",
            )
            .await
                == 5)
                .then_some(())
        })
        .await;

        // The overlap re-reads the same records; one new sale each.
        salon.add_sales([Sale::purchase(
            "y-4",
            Decimal::from(400),
            OffsetDateTime::now_utc() - Duration::minutes(1),
            &boris,
        )]);
        clinic.add_sales([Sale::purchase(
            "c-3",
            Decimal::from(300),
            OffsetDateTime::now_utc() - Duration::minutes(1),
            &anna,
        )]);
        salon
            .state
            .duplicate
            .store(true, std::sync::atomic::Ordering::SeqCst);
        poll_all(&operator).await;
        eventually(20, "the two new purchases", || async {
            (count(
                &app,
                "SELECT count(*) FROM transactions WHERE bonus_applied",
            )
            .await
                == 7)
                .then_some(())
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;

        assert_eq!(
            count(&app, "SELECT count(*) FROM transactions").await,
            7,
            "each purchase once"
        );
        assert_eq!(
            count(&app, "SELECT count(*) FROM bonus_ledger").await,
            7,
            "one accrual each"
        );
        let anna_balance = balance_of(&app, &anna).await;
        // 5 % of 1000 + 3000 at the salon, 10 % of 500 + 300 at the clinic.
        assert_eq!(anna_balance, Decimal::from_str("280.00").unwrap());
        let boris_balance = balance_of(&app, &boris).await;
        assert_eq!(boris_balance, Decimal::from_str("190.00").unwrap());
        for business in [salon_id, clinic_id] {
            let (polled_until, error): (OffsetDateTime, Option<String>) = sqlx::query_as(
                "SELECT polled_until, last_error FROM integrations WHERE business_id = $1",
            )
            .bind(business)
            .fetch_one(&app.db)
            .await
            .unwrap();
            assert!(
                OffsetDateTime::now_utc() - polled_until < Duration::minutes(1),
                "cursor advanced to the last poll"
            );
            assert_eq!(error, None);
        }
        app.assert_ledger_consistent().await;
    }

    async fn balance_of(app: &TestApp, phone: &str) -> Decimal {
        sqlx::query_scalar("SELECT b.balance FROM bonus_balances b JOIN users u ON u.id = b.user_id WHERE u.phone = $1")
            .bind(phone)
            .fetch_one(&app.db)
            .await
            .unwrap()
    }

    /// 401 marks the integration failing (operators see it; polling stops until they act); a
    /// malformed reply fails the poll with the vendor's excerpt and keeps the cursor; a 429
    /// and a 500 are waited out and the window is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vendor_failures_stop_retry_or_wait_as_they_deserve() {
        let app = TestApp::spawn().await;
        let operator = app.operator().await;
        let refusing = Simulator::start(Vendor::AmoCrm).await.unwrap();
        let garbled = Simulator::start(Vendor::Renovatio).await.unwrap();
        let busy = Simulator::start(Vendor::Iiko).await.unwrap();
        garbled.open_renovatio_invoices();
        let refusing_id = connect(&app, &operator, "Стим Центр", &refusing, "5").await;
        let garbled_id = connect(&app, &operator, "Миллениум", &garbled, "4").await;
        let busy_id = connect(&app, &operator, "Лисичкино", &busy, "3").await;
        let at = OffsetDateTime::now_utc() - Duration::minutes(20);
        for sim in [&refusing, &garbled, &busy] {
            sim.add_sales([Sale::purchase(
                format!("{:?}-1", sim.vendor),
                Decimal::from(1000),
                at,
                &member_phone(),
            )]);
        }
        refusing.inject([Fault::Unauthorized]);
        garbled.inject([Fault::Malformed]);
        busy.inject([Fault::RateLimited { retry_after_s: 1 }, Fault::ServerError]);

        poll_all(&operator).await;

        let busy_stored = eventually(20, "the busy vendor's window", || async {
            (count(
                &app,
                &format!("SELECT count(*) FROM transactions WHERE business_id = '{busy_id}'"),
            )
            .await
                == 1)
                .then_some(())
        })
        .await;
        let _ = busy_stored;
        let status: (String, Option<String>) =
            eventually(20, "the refusing CRM to be marked failing", || async {
                let row: (String, Option<String>) = sqlx::query_as(
                    "SELECT status, last_error FROM integrations WHERE business_id = $1",
                )
                .bind(refusing_id)
                .fetch_one(&app.db)
                .await
                .unwrap();
                (row.0 == "failing").then_some(row)
            })
            .await;
        assert!(status.1.unwrap().contains("401"));
        let garbled_error: String =
            eventually(20, "the malformed reply to be recorded", || async {
                let row: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT last_error FROM integrations WHERE business_id = $1")
                        .bind(garbled_id)
                        .fetch_optional(&app.db)
                        .await
                        .unwrap();
                row.and_then(|r| r.0)
            })
            .await;
        assert!(
            garbled_error.contains("unexpected reply"),
            "{garbled_error}"
        );
        let garbled_cursor: Option<OffsetDateTime> =
            sqlx::query_scalar("SELECT last_success_at FROM integrations WHERE business_id = $1")
                .bind(garbled_id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(
            garbled_cursor, None,
            "a malformed reply does not advance the cursor"
        );
        assert_eq!(
            count(
                &app,
                &format!("SELECT count(*) FROM transactions WHERE business_id = '{garbled_id}'")
            )
            .await,
            0
        );

        // The next tick skips the failing integration; an operator's poll-now tries it, and
        // once the vendor answers again it is back to ok.
        let refused_requests = refusing.requests();
        poll_all(&operator).await;
        eventually(
            20,
            "the garbled vendor's window on the next tick",
            || async {
                (count(
                    &app,
                    &format!(
                        "SELECT count(*) FROM transactions WHERE business_id = '{garbled_id}'"
                    ),
                )
                .await
                    == 1)
                    .then_some(())
            },
        )
        .await;
        assert_eq!(
            refusing.requests(),
            refused_requests,
            "a failing integration is not polled by the schedule"
        );
        let queued: Value = expect(
            operator
                .post(&format!("/admin/businesses/{refusing_id}/poll"), &json!({}))
                .await
                .unwrap(),
            202,
        )
        .unwrap()
        .data()
        .clone();
        assert!(queued["job_id"].is_string());
        eventually(20, "the integration to recover", || async {
            let status: String =
                sqlx::query_scalar("SELECT status FROM integrations WHERE business_id = $1")
                    .bind(refusing_id)
                    .fetch_one(&app.db)
                    .await
                    .unwrap();
            (status == "ok").then_some(())
        })
        .await;
        app.assert_ledger_consistent().await;
    }
}
