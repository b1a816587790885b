//! Medical secrecy: a medical visit is never named in a message, never reaches analytics,
//! never triggers cross-promo, and the flag that says so cannot be lifted.

use crate::helpers::{TestApp, eventually, member_phone};
use krug_client::{ApiClient, expect, scan_and_wait};
use serde_json::{Value, json};
use uuid::Uuid;

/// A business created through the admin API, with one staff member signed in.
async fn business(
    app: &TestApp,
    operator: &ApiClient,
    body: Value,
    staff_phone: &str,
) -> (Uuid, ApiClient) {
    let business = app.create_business(operator, body).await;
    let id: Uuid = business["id"].as_str().unwrap().parse().unwrap();
    expect(
        operator
            .post(
                &format!("/admin/businesses/{id}/staff"),
                &json!({"phone": staff_phone, "role": "staff"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    (id, app.sign_in(staff_phone).await)
}

/// The texts sent to a member, by template.
async fn sent_texts(app: &TestApp, template: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT body FROM notifications WHERE template = $1 ORDER BY created_at")
        .bind(template)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// The "bonuses accrued" SMS of a purchase at a wellness centre with medical services says
/// how many bonuses, never where: whoever reads her phone learns nothing of her treatment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accrual_message_of_a_medical_purchase_never_names_the_business() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, staff) = business(
        &app,
        &operator,
        json!({"name": "Стим Центр", "category": "wellness", "cashback_percent": "5", "is_medical": true}),
        "+79000000201",
    )
    .await;
    let member = app.sign_in(&member_phone()).await;
    let done = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "2000").await}),
    )
    .await
    .unwrap();
    assert_eq!(done["state"], "done", "{done}");

    let texts = eventually(10, "the accrual message", || async {
        Some(sent_texts(&app, "bonus_accrued").await).filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(
        texts,
        vec!["+100.00 бонусов начислено. На счёте 100.00.".to_owned()]
    );
    assert!(!texts[0].contains("Стим"), "{texts:?}");
}

/// Flagging a business medical takes its whole history out of ClickHouse, and nothing of it
/// is exported afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagging_a_business_medical_removes_its_facts_from_analytics() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (id, staff) = business(
        &app,
        &operator,
        json!({"name": "Стим Центр", "category": "wellness", "cashback_percent": "5"}),
        "+79000000202",
    )
    .await;
    let member = app.sign_in(&member_phone()).await;
    for amount in ["1000", "1500"] {
        scan_and_wait(
            &member,
            &json!({"code": app.issue_qr(&staff, amount).await}),
        )
        .await
        .unwrap();
    }
    let ch = &app.services.clickhouse;
    storage::analytics::export_facts(&app.db, ch, 100)
        .await
        .unwrap();
    assert_eq!(
        storage::analytics::business_fact_count(ch, id)
            .await
            .unwrap(),
        2,
        "the visits were in analytics before the flag"
    );
    // One more visit before the flag that was never exported.
    scan_and_wait(&member, &json!({"code": app.issue_qr(&staff, "700").await}))
        .await
        .unwrap();

    let flagged = expect(
        operator
            .patch(
                &format!("/admin/businesses/{id}"),
                &json!({"is_medical": true}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(flagged.data()["is_medical"], true);

    eventually(30, "the business's facts to leave ClickHouse", || async {
        (storage::analytics::business_fact_count(ch, id)
            .await
            .unwrap()
            == 0)
            .then_some(())
    })
    .await;
    storage::analytics::export_facts(&app.db, ch, 100)
        .await
        .unwrap();
    assert_eq!(
        storage::analytics::business_fact_count(ch, id)
            .await
            .unwrap(),
        0,
        "nothing of the business is exported after the flag"
    );
}

/// The export reads the business's flag as it is now, not only the copy each purchase kept:
/// a purchase recorded while the business was not yet medical stays out once it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_checks_the_business_flag_as_it_is_now() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (id, staff) = business(
        &app,
        &operator,
        json!({"name": "Стим Центр", "category": "wellness", "cashback_percent": "5"}),
        "+79000000203",
    )
    .await;
    let member = app.sign_in(&member_phone()).await;
    scan_and_wait(&member, &json!({"code": app.issue_qr(&staff, "900").await}))
        .await
        .unwrap();
    // The flag as a writer other than the API might set it: the purchase's own copy of the
    // flag still says "not medical".
    sqlx::query("UPDATE businesses SET is_medical = true WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let ch = &app.services.clickhouse;
    storage::analytics::export_facts(&app.db, ch, 100)
        .await
        .unwrap();
    assert_eq!(
        storage::analytics::business_fact_count(ch, id)
            .await
            .unwrap(),
        0
    );
}

/// No operator can lift the flag: `PATCH … {"is_medical": false}` is refused and changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_medical_flag_cannot_be_cleared_through_the_api() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let clinic = app
        .create_business(
            &operator,
            json!({"name": "Миллениум", "category": "health", "cashback_percent": "4", "is_medical": true}),
        )
        .await;
    let id = clinic["id"].as_str().unwrap();
    let cleared = operator
        .patch(
            &format!("/admin/businesses/{id}"),
            &json!({"is_medical": false, "name": "Миллениум Плюс"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (cleared.status, cleared.error_code()),
        (422, Some("medical_flag_permanent")),
        "{:?}",
        cleared.body
    );
    let (still, name): (bool, String) =
        sqlx::query_as("SELECT is_medical, name FROM businesses WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(still);
    assert_eq!(
        name, "Миллениум",
        "nothing of the refused change was applied"
    );
}

/// A promo chain cannot start at a medical business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medical_business_cannot_trigger_a_promo_chain() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let spa = app
        .create_business(
            &operator,
            json!({"name": "Стим Центр", "category": "wellness", "cashback_percent": "5", "is_medical": true}),
        )
        .await;
    let salon = app
        .create_business(
            &operator,
            json!({"name": "Миндаль", "category": "beauty", "cashback_percent": "5"}),
        )
        .await;
    let chain = operator
        .post(
            "/admin/promo-chains",
            &json!({
                "trigger_business_id": spa["id"],
                "target_business_id": salon["id"],
                "discount_type": "fixed",
                "discount_value": "1000",
                "valid_days": 30
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        (chain.status, chain.error_code()),
        (422, Some("medical_trigger")),
        "{:?}",
        chain.body
    );
}

/// The demo's coalition: Стим Центр and Миллениум are medical, and no seeded chain starts at
/// either (DESIGN.md). A database seeded by the older seed gets the flag on the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flags_both_medical_partners_and_starts_no_chain_at_them() {
    let app = TestApp::spawn().await;
    let services = &app.services;
    // As the older seed left it: Стим Центр not medical.
    sqlx::query(
        "INSERT INTO businesses (name, category, cashback_percent, is_medical)
         VALUES ('Стим Центр', 'wellness', 5, false)",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let partners = krug::seed::partners(&services.db, &services.queue)
        .await
        .unwrap();
    let chains = krug::seed::promo_chains(&services.db, &partners)
        .await
        .unwrap();
    let medical: Vec<&str> = partners
        .iter()
        .filter(|b| b.is_medical)
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(medical, ["Стим Центр", "Миллениум"]);
    assert!(!chains.is_empty());
    for chain in &chains {
        let trigger = partners
            .iter()
            .find(|b| Some(b.id) == chain.trigger_business_id);
        assert!(
            trigger.is_none_or(|b| !b.is_medical),
            "a seeded chain starts at {:?}",
            trigger.map(|b| &b.name)
        );
    }
}
