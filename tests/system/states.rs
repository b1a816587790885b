//! States read back strictly: a tier, discount type, transaction type, CRM type or staff
//! role this build does not know (a hand edit, or a newer release wrote it) is an error that
//! names the row, never a silent default.

use crate::helpers::{fresh_database, member_phone};
use domain::{PhoneNumber, TierRules};
use sqlx::PgPool;
use uuid::Uuid;

fn assert_names(error: sqlx::Error, parts: &[&str]) {
    let message = error.to_string();
    for part in parts {
        assert!(message.contains(part), "`{part}` missing from `{message}`");
    }
}

/// A member and a business to hang the rows under test on.
async fn member_and_business(db: &PgPool) -> (storage::users::User, Uuid) {
    let phone = PhoneNumber::parse(&member_phone()).unwrap();
    let user = storage::users::find_or_create(db, &phone).await.unwrap();
    let business: Uuid = sqlx::query_scalar(
        "INSERT INTO businesses (name, category, cashback_percent)
         VALUES ('Кофейня', 'gastronomy', 5) RETURNING id",
    )
    .fetch_one(db)
    .await
    .unwrap();
    (user, business)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tier_or_discount_type_in_a_row_is_an_error_naming_the_row() {
    // Arrange: the CHECKs keep such names out, so this database drops them first.
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    sqlx::raw_sql(
        "ALTER TABLE users DROP CONSTRAINT users_status_tier_check;
         ALTER TABLE coupons DROP CONSTRAINT coupons_discount_type_check;",
    )
    .execute(&db)
    .await
    .unwrap();
    let (user, business) = member_and_business(&db).await;
    sqlx::query("UPDATE users SET status_tier = 'Platinum' WHERE id = $1")
        .bind(user.id)
        .execute(&db)
        .await
        .unwrap();
    let coupon: Uuid = sqlx::query_scalar(
        "INSERT INTO coupons (code, user_id, business_id, discount_type, discount_value, expires_at)
         VALUES ('STATES-1', $1, $2, 'voucher', 10, now() + interval '1 day') RETURNING id",
    )
    .bind(user.id)
    .bind(business)
    .fetch_one(&db)
    .await
    .unwrap();

    // Act
    let tier = storage::users::get(&db, user.id).await;
    let coupons = storage::coupons::active_for_user(&db, user.id).await;

    // Assert
    let user_id = user.id.to_string();
    assert_names(
        tier.expect_err("an unknown tier must not read as Insider"),
        &["users", &user_id, "status_tier", "Platinum"],
    );
    let coupon_id = coupon.to_string();
    assert_names(
        coupons.expect_err("an unknown discount type must not read as percent"),
        &["coupons", &coupon_id, "discount_type", "voucher"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_transaction_type_in_a_row_is_an_error_naming_the_row() {
    // Arrange: the CHECK keeps such names out, so this database drops it first. (The ledger's
    // `kind` is not tried here: only `storage::ledger` may write `bonus_ledger`.)
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    sqlx::raw_sql("ALTER TABLE transactions DROP CONSTRAINT transactions_transaction_type_check")
        .execute(&db)
        .await
        .unwrap();
    let (user, business) = member_and_business(&db).await;
    let transaction: Uuid = sqlx::query_scalar(
        "INSERT INTO transactions (user_id, business_id, transaction_type, source, external_id, amount, is_medical)
         VALUES ($1, $2, 'exchange', 'crm', 'states-1', 1000, false) RETURNING id",
    )
    .bind(user.id)
    .bind(business)
    .fetch_one(&db)
    .await
    .unwrap();

    // Act: the member's history, the partner's list, and the bonus rules (which took
    // anything but a refund for a purchase, and accrued on it).
    let history = storage::loyalty::transactions_page(
        &db,
        user.id,
        storage::loyalty::HistoryFilter::default(),
        None,
        10,
    )
    .await;
    let partner_list = storage::partners::transactions_page(
        &db,
        business,
        &storage::partners::TransactionFilter::default(),
        None,
        10,
    )
    .await;
    let mut tx = db.begin().await.unwrap();
    let applied =
        storage::ledger::apply_bonuses(&mut tx, &[transaction], &TierRules::default()).await;
    drop(tx);

    // Assert
    let transaction_id = transaction.to_string();
    let parts = [
        "transactions",
        &transaction_id,
        "transaction_type",
        "exchange",
    ];
    assert_names(
        history.expect_err("an unknown transaction type must not read as a purchase"),
        &parts,
    );
    assert_names(
        partner_list.expect_err("an unknown transaction type must not read as a purchase"),
        &parts,
    );
    assert_names(
        applied.expect_err("an unknown transaction type must not accrue as a purchase"),
        &parts,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_crm_type_or_staff_role_in_a_row_is_an_error_naming_the_row() {
    // Arrange: the CHECKs keep such names out, so this database drops them first.
    let db = PgPool::connect(&fresh_database().await).await.unwrap();
    sqlx::raw_sql(
        "ALTER TABLE integrations DROP CONSTRAINT integrations_crm_type_check;
         ALTER TABLE business_staff DROP CONSTRAINT business_staff_role_check;",
    )
    .execute(&db)
    .await
    .unwrap();
    let (user, business) = member_and_business(&db).await;
    let integration: Uuid = sqlx::query_scalar(
        "INSERT INTO integrations (business_id, crm_type, base_url)
         VALUES ($1, 'bitrix24', 'https://crm.example.com') RETURNING id",
    )
    .bind(business)
    .fetch_one(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO business_staff (business_id, user_id, role) VALUES ($1, $2, 'cashier')",
    )
    .bind(business)
    .bind(user.id)
    .execute(&db)
    .await
    .unwrap();

    // Act: the read a poll starts with (which picked a client by the name, and failed only
    // there) and the role check behind every partner route (which took an unknown role
    // for no role at all).
    let polled = storage::integrations::get(&db, integration).await;
    let roles = storage::businesses::roles_of(&db, user.id).await;

    // Assert
    let integration_id = integration.to_string();
    assert_names(
        polled.expect_err("an unknown CRM type must not read as an integration"),
        &["integrations", &integration_id, "crm_type", "bitrix24"],
    );
    let (business_id, user_id) = (business.to_string(), user.id.to_string());
    assert_names(
        roles.expect_err("an unknown staff role must not read as no role"),
        &["business_staff", &business_id, &user_id, "role", "cashier"],
    );
}
