//! CRM ingest: every purchase becomes exactly one transaction with its bonus.

use crate::helpers::{TestApp, member_phone};
use domain::PhoneNumber;
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;
use storage::{
    bonus, businesses,
    crm::{self, Record},
    loyalty,
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
    let rules = loyalty::tier_rules(&app.db).await.unwrap();
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
    let ingested = crm::ingest(&mut tx, &business, &first_window)
        .await
        .unwrap();
    assert_eq!(ingested.new_transaction_ids.len(), 4);
    assert_eq!(ingested.duplicates, 1);
    assert_eq!(
        ingested.unattributed, 1,
        "a purchase without a usable phone is not attributed"
    );
    let outcomes = bonus::apply(&mut tx, &ingested.new_transaction_ids, &rules)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let changes: Vec<Decimal> = outcomes.iter().map(|o| o.bonus_change).collect();
    assert_eq!(changes, [d("30.00"), d("9.99"), d("150.00"), d("-3.33")]);

    // The overlapping re-poll delivers the same records again, plus the rest of the refunds.
    let second_window = vec![
        purchase("A-1", "1000.00", &anna),
        refund("A-2:refund", "A-2", "111.11"),
        refund("A-2:refund-2", "A-2", "222.22"),
        refund("Z:refund", "Z-unknown", "50"),
    ];
    let mut tx = app.db.begin().await.unwrap();
    let again = crm::ingest(&mut tx, &business, &second_window)
        .await
        .unwrap();
    assert_eq!(
        again.new_transaction_ids.len(),
        1,
        "only the second refund is new"
    );
    assert_eq!(
        again.unattributed, 1,
        "a refund of nothing we know, without a phone"
    );
    let outcomes = bonus::apply(&mut tx, &again.new_transaction_ids, &rules)
        .await
        .unwrap();
    assert_eq!(
        outcomes[0].bonus_change,
        d("-6.66"),
        "the last refund takes back exactly what is left"
    );
    // Applying again changes nothing.
    let repeat = bonus::apply(&mut tx, &ingested.new_transaction_ids, &rules)
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
