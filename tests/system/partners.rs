//! Partners at their own business: staff management, refunds at the counter, roles, and a
//! business seeing only itself.

use crate::helpers::{TestApp, member_phone};
use krug_client::{ApiClient, ApiResponse, expect, scan_and_wait};
use reqwest::Method;
use serde_json::{Value, json};

/// A partner business as the tests use it: an owner and a cashier, signed in.
pub struct Partner {
    pub id: String,
    pub owner: ApiClient,
    pub cashier: ApiClient,
}

impl TestApp {
    /// A business created by `operator`, with an owner (`owner_phone`) and a cashier
    /// (`cashier_phone`) signed in. `extra` adds fields to the business (`bonus_hold_days`…).
    pub async fn partner(
        &self,
        operator: &ApiClient,
        name: &str,
        cashback: &str,
        owner_phone: &str,
        cashier_phone: &str,
        extra: Value,
    ) -> Partner {
        let mut body = json!({"name": name, "category": "beauty", "cashback_percent": cashback});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let business = self.create_business(operator, body).await;
        let id = business["id"].as_str().unwrap().to_owned();
        for (phone, role) in [(owner_phone, "owner"), (cashier_phone, "staff")] {
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
        Partner {
            id,
            owner: self.sign_in(owner_phone).await,
            cashier: self.sign_in(cashier_phone).await,
        }
    }

    /// A member pays `amount` at `partner` by scanning the cashier's code (redeeming
    /// `redeem` bonuses); returns the scan's result.
    pub async fn buy(
        &self,
        partner: &Partner,
        member: &ApiClient,
        amount: &str,
        redeem: &str,
    ) -> Value {
        let code = self.issue_qr(&partner.cashier, amount).await;
        let outcome = scan_and_wait(member, &json!({"code": code, "redeem_bonus": redeem}))
            .await
            .unwrap();
        assert_eq!(outcome["state"], "done", "{outcome}");
        outcome["result"].clone()
    }
}

impl TestApp {
    /// Runs a schedule's job now, as an operator would (`POST /admin/schedules/{name}/trigger`),
    /// and waits until the worker has finished it.
    pub async fn run_schedule(&self, operator: &ApiClient, name: &str) {
        let triggered = expect(
            operator
                .post(&format!("/admin/schedules/{name}/trigger"), &json!({}))
                .await
                .unwrap(),
            202,
        )
        .unwrap();
        let job_id = triggered.data()["job_id"].as_str().unwrap().to_owned();
        let queue = expect(operator.get("/admin/schedules").await.unwrap(), 200)
            .unwrap()
            .data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["queue"].as_str().unwrap().to_owned())
            .unwrap();
        crate::helpers::eventually(60, &format!("the {name} job done"), || async {
            let job = operator
                .get(&format!("/admin/jobs/{queue}/{job_id}"))
                .await
                .unwrap();
            let state = job.body["data"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                state != "dead" && state != "failed",
                "{name}: {:?}",
                job.body
            );
            (state == "done").then_some(())
        })
        .await;
    }
}

/// `POST /business/transactions/{id}/refund` with an Idempotency-Key.
pub async fn refund(
    client: &ApiClient,
    transaction_id: &str,
    key: &str,
    body: &Value,
) -> ApiResponse {
    client
        .call_with_headers(
            Method::POST,
            &format!("/business/transactions/{transaction_id}/refund"),
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
        .unwrap()
}

pub async fn balance(member: &ApiClient) -> Value {
    expect(member.get("/loyalty/balance").await.unwrap(), 200)
        .unwrap()
        .data()
        .clone()
}

async fn ledger(member: &ApiClient) -> Vec<Value> {
    expect(member.get("/loyalty/ledger").await.unwrap(), 200)
        .unwrap()
        .data()["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn user_id(client: &ApiClient) -> String {
    expect(client.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A partial refund of a check paid partly with bonuses takes back the cashback of the
/// refunded part and gives back the bonuses in the same proportion; a second refund of the
/// rest moves exactly what is left, so the refunds never move more than the purchase did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_refund_takes_back_cashback_and_gives_back_redeemed_bonuses_in_proportion() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    // 5000 ₽ at 10 %: 500 bonuses to spend.
    app.buy(&salon, &member, "5000.00", "0").await;
    // 1000 ₽ paid with 300 bonuses: 700 ₽ in money, 70 accrued.
    let paid = app.buy(&salon, &member, "1000.00", "300.00").await;
    assert_eq!(paid["bonus_redeemed"], "300.00");
    assert_eq!(paid["bonus_accrued"], "70.00");
    assert_eq!(balance(&member).await["balance"], "270.00");
    let purchase = paid["transaction_id"].as_str().unwrap();

    // A third of the check back: 23.33 of the 70 taken back, 100 of the 300 given back.
    let first = expect(
        refund(
            &salon.cashier,
            purchase,
            "refund-1",
            &json!({"amount": "333.33", "reason": "одна услуга не оказана"}),
        )
        .await,
        200,
    )
    .unwrap();
    assert_eq!(first.data()["amount"], "333.33");
    assert_eq!(first.data()["bonus_reversed"], "23.33");
    assert_eq!(first.data()["bonus_returned"], "99.99");
    // The rest: exactly what is left of both.
    let rest = expect(
        refund(
            &salon.cashier,
            purchase,
            "refund-2",
            &json!({"reason": "клиентка передумала"}),
        )
        .await,
        200,
    )
    .unwrap();
    assert_eq!(rest.data()["amount"], "666.67");
    assert_eq!(rest.data()["bonus_reversed"], "46.67");
    assert_eq!(rest.data()["bonus_returned"], "200.01");

    // The refunds move −70 and +300: the balance is the first purchase's cashback again.
    let after = balance(&member).await;
    assert_eq!(after["balance"], "500.00");
    assert_eq!(after["lifetime_spent"], "0.00");
    let kinds: Vec<(String, String)> = ledger(&member)
        .await
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("reversal".into(), "-23.33".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("redemption".into(), "99.99".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("reversal".into(), "-46.67".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("redemption".into(), "200.01".into())),
        "{kinds:?}"
    );
    let again = refund(
        &salon.cashier,
        purchase,
        "refund-3",
        &json!({"reason": "ещё раз"}),
    )
    .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.error_code(), Some("already_refunded"));
    app.assert_ledger_consistent().await;
}

/// The same Idempotency-Key answers the same refund again and moves nothing twice; the key
/// used for another purchase is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_is_given_once_per_idempotency_key() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let first = app.buy(&salon, &member, "1000.00", "0").await;
    let second = app.buy(&salon, &member, "2000.00", "0").await;
    let purchase = first["transaction_id"].as_str().unwrap();
    let body = json!({"amount": "500.00", "reason": "возврат половины"});

    let given = expect(refund(&salon.cashier, purchase, "k-1", &body).await, 200).unwrap();
    let replayed = expect(refund(&salon.cashier, purchase, "k-1", &body).await, 200).unwrap();
    assert_eq!(given.data()["id"], replayed.data()["id"]);
    assert_eq!(replayed.data()["bonus_reversed"], "50.00");
    // 100 + 200 − 50, once.
    assert_eq!(balance(&member).await["balance"], "250.00");
    let reused = refund(
        &salon.cashier,
        second["transaction_id"].as_str().unwrap(),
        "k-1",
        &body,
    )
    .await;
    assert_eq!(reused.status, 422, "{:?}", reused.body);
    assert_eq!(reused.error_code(), Some("idempotency_key_reused"));
    let missing = salon
        .cashier
        .post(&format!("/business/transactions/{purchase}/refund"), &body)
        .await
        .unwrap();
    assert_eq!(missing.status, 400, "a refund needs its Idempotency-Key");

    let audit = expect(
        operator
            .get(&format!(
                "/admin/audit?target={}",
                given.data()["id"].as_str().unwrap()
            ))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let entries = audit.data()["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "one refund, one audit entry: {entries:?}");
    assert_eq!(entries[0]["action"], "refund.create");
    assert_eq!(
        entries[0]["actor_id"],
        user_id(&salon.cashier).await.as_str()
    );
    assert_eq!(entries[0]["after"]["reason"], "возврат половины");
    app.assert_ledger_consistent().await;
}

/// Staff refund up to the business's `staff_refund_limit`; above it only an owner does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_above_the_staff_limit_is_the_owners() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({"staff_refund_limit": "1000.00"}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let paid = app.buy(&salon, &member, "3000.00", "0").await;
    let purchase = paid["transaction_id"].as_str().unwrap();

    let over = refund(
        &salon.cashier,
        purchase,
        "a",
        &json!({"amount": "1500.00", "reason": "брак"}),
    )
    .await;
    assert_eq!(over.status, 403, "{:?}", over.body);
    // "Everything that is left" is 3000: also over the limit.
    let whole = refund(&salon.cashier, purchase, "b", &json!({"reason": "брак"})).await;
    assert_eq!(whole.status, 403, "{:?}", whole.body);
    expect(
        refund(
            &salon.cashier,
            purchase,
            "c",
            &json!({"amount": "1000.00", "reason": "брак"}),
        )
        .await,
        200,
    )
    .unwrap();
    let by_owner = expect(
        refund(&salon.owner, purchase, "d", &json!({"reason": "брак"})).await,
        200,
    )
    .unwrap();
    assert_eq!(by_owner.data()["amount"], "2000.00");
    assert_eq!(balance(&member).await["balance"], "0.00");
    app.assert_ledger_consistent().await;
}

/// A viewer reads the dashboard and nothing else: no refund, no QR code, no staff list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_refused_a_refund() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    expect(
        salon
            .owner
            .post(
                "/business/staff",
                &json!({"phone": "+79000000112", "role": "viewer"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let viewer = app.sign_in("+79000000112").await;
    let member = app.sign_in(&member_phone()).await;
    let paid = app.buy(&salon, &member, "1000.00", "0").await;
    let purchase = paid["transaction_id"].as_str().unwrap();

    let refused = refund(&viewer, purchase, "v", &json!({"reason": "хочу"})).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    let qr = viewer
        .post("/business/qr", &json!({"amount": "100.00"}))
        .await
        .unwrap();
    assert_eq!(qr.status, 403, "{:?}", qr.body);
    let staff = viewer.get("/business/staff").await.unwrap();
    assert_eq!(staff.status, 403, "{:?}", staff.body);
    assert_eq!(balance(&member).await["balance"], "100.00");
    let dashboard = expect(viewer.get("/business/dashboard").await.unwrap(), 200).unwrap();
    assert_eq!(dashboard.data()["business_id"], json!(salon.id));
    assert_eq!(dashboard.data()["sales"], "1000.00", "{:?}", dashboard.body);
}

/// A business's dashboard is read by its owners and viewers only: another business's owner
/// or cashier naming it, its own cashier, a member without a role and a caller without a
/// token are refused; naming no business, another owner reads her own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_business_cannot_read_anothers_dashboard() {
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
    let clinic = app
        .partner(
            &operator,
            "Миллениум",
            "4",
            "+79000000142",
            "+79000000143",
            json!({"category": "health", "is_medical": true}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    app.buy(&clinic, &member, "7000.00", "0").await;
    let own = expect(clinic.owner.get("/business/dashboard").await.unwrap(), 200).unwrap();
    assert_eq!(own.data()["sales"], "7000.00", "{:?}", own.body);

    let anothers = format!("/business/dashboard?business_id={}", clinic.id);
    for (who, client) in [
        ("another business's owner", &salon.owner),
        ("another business's cashier", &salon.cashier),
        ("its own cashier", &clinic.cashier),
        ("a member without a role", &member),
        ("nobody signed in", &app.api),
    ] {
        let refused = client.get(&anothers).await.unwrap();
        let status = if who == "nobody signed in" { 401 } else { 403 };
        assert_eq!(refused.status, status, "{who}: {:?}", refused.body);
        assert!(
            !refused.body.to_string().contains("7000"),
            "{who} reads nothing of it: {:?}",
            refused.body
        );
    }
    let salons = expect(salon.owner.get("/business/dashboard").await.unwrap(), 200).unwrap();
    assert_eq!(salons.data()["business_id"], json!(salon.id));
    assert_eq!(salons.data()["sales"], "0.00", "{:?}", salons.body);
    assert_eq!(salons.data()["purchases"], 0);
}

/// A business never touches or reads another's purchases: a refund of another partner's
/// purchase is as good as absent, and its list holds only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_business_cannot_refund_or_list_anothers_purchases() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000120",
            "+79000000121",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let at_salon = app.buy(&salon, &member, "1000.00", "0").await;
    let at_market = app.buy(&market, &member, "400.00", "0").await;

    let refused = refund(
        &market.owner,
        at_salon["transaction_id"].as_str().unwrap(),
        "x",
        &json!({"reason": "чужой чек"}),
    )
    .await;
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    let list = expect(
        market.cashier.get("/business/transactions").await.unwrap(),
        200,
    )
    .unwrap();
    let ids: Vec<&str> = list.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [at_market["transaction_id"].as_str().unwrap()]);
    // Asking for the salon by id does not help either.
    let other = market
        .owner
        .get(&format!("/business/transactions?business_id={}", salon.id))
        .await
        .unwrap();
    assert_eq!(other.status, 403, "{:?}", other.body);
    assert_eq!(balance(&member).await["balance"], "120.00");
}

/// A purchase the business's CRM reported is refunded in the CRM, which reports the refund:
/// a refund at the counter as well would take the cashback back twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_purchase_is_not_refunded_at_the_counter() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let member_id: uuid::Uuid = user_id(&member).await.parse().unwrap();
    let business_id: uuid::Uuid = salon.id.parse().unwrap();
    let crm_purchase: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO transactions (user_id, business_id, transaction_type, source, external_id, amount, is_medical)
         VALUES ($1, $2, 'purchase', 'crm', 'yc-1', 1000, false) RETURNING id",
    )
    .bind(member_id)
    .bind(business_id)
    .fetch_one(&app.db)
    .await
    .unwrap();

    let refused = refund(
        &salon.owner,
        &crm_purchase.to_string(),
        "crm",
        &json!({"reason": "возврат"}),
    )
    .await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.error_code(), Some("refund_in_crm"));
}

/// An owner takes a cashier off the staff: the QR code the cashier issued a moment before,
/// and nobody used, is refused when a member scans it, and the cashier issues no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_cashiers_unused_qr_code_is_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let code = app.issue_qr(&salon.cashier, "1000.00").await;
    let cashier_id = user_id(&salon.cashier).await;

    let removed = expect(
        salon
            .owner
            .delete(&format!("/business/staff/{cashier_id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(removed.data()["previous_role"], "staff");

    let outcome = scan_and_wait(&member, &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert_eq!(outcome["error"]["code"], "code_revoked");
    assert_eq!(balance(&member).await["balance"], "0.00");
    let again = salon
        .cashier
        .post("/business/qr", &json!({"amount": "100.00"}))
        .await
        .unwrap();
    assert_eq!(again.status, 403, "{:?}", again.body);
    let audit = expect(
        operator
            .get(&format!("/admin/audit?target={cashier_id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let actions: Vec<(&str, &Value)> = audit.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), &e["actor_id"]))
        .collect();
    let owner_id = user_id(&salon.owner).await;
    assert!(
        actions.contains(&("staff.remove", &json!(owner_id))),
        "the removal is audited with its owner: {actions:?}"
    );
}

/// Owners add people, change their roles and remove them; staff cannot; a business keeps
/// at least one owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_manage_their_staff_and_a_business_keeps_an_owner() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;

    let added = expect(
        salon
            .owner
            .post(
                "/business/staff",
                &json!({"phone": "8 900 000-01-13", "role": "viewer"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(added.data()["role"], "viewer");
    assert_eq!(added.data()["previous_role"], Value::Null);
    let promoted = expect(
        salon
            .owner
            .post(
                "/business/staff",
                &json!({"phone": "+79000000113", "role": "staff"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(promoted.data()["previous_role"], "viewer");
    let list = expect(salon.owner.get("/business/staff").await.unwrap(), 200).unwrap();
    let roles: Vec<(&str, &str)> = list.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["phone"].as_str().unwrap(), s["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [
            ("+79000000110", "owner"),
            ("+79000000111", "staff"),
            ("+79000000113", "staff")
        ]
    );

    let by_staff = salon
        .cashier
        .post(
            "/business/staff",
            &json!({"phone": "+79000000114", "role": "owner"}),
        )
        .await
        .unwrap();
    assert_eq!(
        by_staff.status, 403,
        "staff do not manage staff: {:?}",
        by_staff.body
    );
    let owner_id = user_id(&salon.owner).await;
    let alone = salon
        .owner
        .delete(&format!("/business/staff/{owner_id}"))
        .await
        .unwrap();
    assert_eq!(alone.status, 409, "{:?}", alone.body);
    assert_eq!(alone.error_code(), Some("last_owner"));
    let demoted = salon
        .owner
        .post(
            "/business/staff",
            &json!({"phone": "+79000000110", "role": "viewer"}),
        )
        .await
        .unwrap();
    assert_eq!(demoted.status, 409, "{:?}", demoted.body);
    let unknown = salon
        .owner
        .delete(&format!("/business/staff/{}", uuid::Uuid::new_v4()))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
}

/// A superadmin takes a cashier off a partner's staff, as the owner could: the code the
/// cashier issued a moment before is refused, she issues no more, the removal is audited
/// with the superadmin as its actor, and the business keeps its last owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superadmin_removes_a_cashier_and_her_unused_qr_code_is_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000110",
            "+79000000111",
            json!({}),
        )
        .await;
    let member = app.sign_in(&member_phone()).await;
    let code = app.issue_qr(&salon.cashier, "1000.00").await;
    let cashier_id = user_id(&salon.cashier).await;
    let path = |user: &str| format!("/admin/businesses/{}/staff/{user}", salon.id);

    let removed = expect(operator.delete(&path(&cashier_id)).await.unwrap(), 200).unwrap();
    assert_eq!(removed.data()["previous_role"], "staff");
    assert_eq!(removed.data()["role"], Value::Null);

    let outcome = scan_and_wait(&member, &json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert_eq!(outcome["error"]["code"], "code_revoked");
    assert_eq!(balance(&member).await["balance"], "0.00");
    let again = salon
        .cashier
        .post("/business/qr", &json!({"amount": "100.00"}))
        .await
        .unwrap();
    assert_eq!(again.status, 403, "{:?}", again.body);

    let twice = operator.delete(&path(&cashier_id)).await.unwrap();
    assert_eq!(
        (twice.status, twice.error_code()),
        (404, Some("staff_not_found"))
    );
    let elsewhere = operator
        .delete(&format!(
            "/admin/businesses/{}/staff/{cashier_id}",
            uuid::Uuid::new_v4()
        ))
        .await
        .unwrap();
    assert_eq!(
        (elsewhere.status, elsewhere.error_code()),
        (404, Some("business_not_found"))
    );
    let owner_id = user_id(&salon.owner).await;
    let last_owner = operator.delete(&path(&owner_id)).await.unwrap();
    assert_eq!(
        (last_owner.status, last_owner.error_code()),
        (409, Some("last_owner"))
    );

    let audit = expect(
        operator
            .get(&format!("/admin/audit?target={cashier_id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let operator_id = user_id(&operator).await;
    let removal = audit.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "staff.remove")
        .cloned()
        .expect("the removal is audited");
    assert_eq!(removal["actor_id"], operator_id.as_str());
    assert_eq!(
        removal["before"],
        json!({"business_id": salon.id, "role": "staff"})
    );
}
