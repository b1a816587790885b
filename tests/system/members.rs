//! Members' round-2 routes: search, settings and consent, history filters.

use crate::helpers::{Options, TestApp, eventually, member_phone, zone_where_it_is};
use krug_client::{ApiClient, expect, scan_and_wait};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

async fn search(member: &ApiClient, query: &str) -> Vec<Value> {
    let response = member.get(&format!("/search?{query}")).await.unwrap();
    expect(response, 200).unwrap().data()["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn names(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["name"].as_str().unwrap()).collect()
}

/// An event the operator proposes and, if `approve`, publishes.
async fn event(operator: &ApiClient, title: &str, approve: bool) -> String {
    let created = expect(
        operator
            .post(
                "/events",
                &json!({
                    "title": title,
                    "date": (OffsetDateTime::now_utc() + Duration::days(7)).format(&Rfc3339).unwrap(),
                    "location": "Малая Бронная, 28",
                    "max_participants": 20,
                }),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let id = created.data()["id"].as_str().unwrap().to_owned();
    if approve {
        expect(
            operator
                .patch(
                    &format!("/admin/events/{id}"),
                    &json!({"status": "approved"}),
                )
                .await
                .unwrap(),
            200,
        )
        .unwrap();
    }
    id
}

/// «лисичкно» (a letter dropped) finds Лисичкино; «красоты» (another case of «красота»)
/// finds the beauty salon by its category although its name says nothing of beauty, after
/// a business whose name says it; a name's word and a category's word find together;
/// unpublished events stay out; filters narrow; nonsense and anonymous callers are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_forgives_typos_and_knows_russian_word_forms() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    for (name, category) in [
        ("Лисичкино", "gastronomy"),
        ("Миндаль", "beauty"),
        ("Стим Центр", "wellness"),
        ("Миллениум", "health"),
        ("Ярмарка красоты", "gastronomy"),
    ] {
        app.create_business(
            &operator,
            json!({"name": name, "category": category, "cashback_percent": "5"}),
        )
        .await;
    }
    let tasting = event(&operator, "Вечер сыров в Лисичкино", true).await;
    event(&operator, "Лисичкино: закрытая распродажа", false).await;
    let member = app.sign_in(&member_phone()).await;

    let hits = search(&member, "q=лисичкно").await;
    assert_eq!(
        hits[0]["name"], "Лисичкино",
        "the business first, despite the typo: {hits:?}"
    );
    let ripe = search(&member, "q=вечер%20сыры").await;
    assert_eq!(
        names(&ripe),
        ["Вечер сыров в Лисичкино"],
        "«сыры» finds «сыров»"
    );
    assert_eq!(hits[0]["type"], "business");
    assert_eq!(hits[0]["category"], "gastronomy");
    assert!(
        hits.iter()
            .any(|h| h["type"] == "event" && h["id"] == tasting.as_str()),
        "the published event at Лисичкино is found too: {hits:?}"
    );
    assert!(
        !names(&hits).contains(&"Лисичкино: закрытая распродажа"),
        "a proposal nobody approved is not public: {hits:?}"
    );

    // A name match first, then a match by the category's words, though «М» sorts before «Я».
    let beauty = search(&member, "q=красоты").await;
    assert_eq!(names(&beauty), ["Ярмарка красоты", "Миндаль"], "{beauty:?}");
    assert_eq!(beauty[1]["category"], "beauty");
    let salon = search(&member, "q=салон%20красоты").await;
    assert_eq!(names(&salon), ["Миндаль"], "{salon:?}");
    // A word of the name and a word of the category together; a stop word changes nothing.
    let both = search(&member, "q=миндаль%20и%20маникюр").await;
    assert_eq!(names(&both), ["Миндаль"], "{both:?}");
    let neither = search(&member, "q=ярмарка%20маникюр").await;
    assert!(neither.is_empty(), "a market is no manicure: {neither:?}");
    let only_stop_words = search(&member, "q=и%20в").await;
    assert!(only_stop_words.is_empty(), "{only_stop_words:?}");

    let events_only = search(&member, "q=лисичкино&type=event").await;
    assert_eq!(names(&events_only), ["Вечер сыров в Лисичкино"]);
    let wellness = search(&member, "q=лисичкино&category=wellness").await;
    assert!(wellness.is_empty(), "{wellness:?}");
    assert!(search(&member, "q=пылесос").await.is_empty());

    for bad in ["q=", "q=%20%20", "q=%00", &format!("q={}", "я".repeat(101))] {
        let response = member.get(&format!("/search?{bad}")).await.unwrap();
        assert_eq!(response.status, 422, "{bad}: {}", response.body);
        assert_eq!(response.error_code(), Some("invalid_query"));
    }
    let anonymous = app.api.get("/search?q=лисичкино").await.unwrap();
    assert_eq!(anonymous.status, 401);
}

/// Settings round-trip; with marketing refused on push and SMS, a coupon's notice is recorded
/// as skipped and never sent, while the purchase's own bonus notice still goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_is_never_sent_against_the_members_settings() {
    let app = TestApp::spawn_with(Options {
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let (salon, salon_staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let market = app
        .create_business(
            &operator,
            json!({"name": "Лисичкино", "category": "gastronomy", "cashback_percent": "3"}),
        )
        .await;
    expect(
        operator
            .post(
                "/admin/promo-chains",
                &json!({"trigger_business_id": salon, "min_amount": "1000",
                        "target_business_id": market["id"], "discount_type": "percent",
                        "discount_value": "15", "valid_days": 7}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let member = app.sign_in(&member_phone()).await;

    let defaults = expect(member.get("/users/me/settings").await.unwrap(), 200).unwrap();
    assert_eq!(
        defaults.data(),
        &json!({"push_marketing": true, "sms_marketing": true, "email_marketing": true, "email": null})
    );
    let changed = expect(
        member
            .patch(
                "/users/me/settings",
                &json!({"push_marketing": false, "sms_marketing": false, "email": "anna@example.ru"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(
        changed.data(),
        &json!({"push_marketing": false, "sms_marketing": false, "email_marketing": true, "email": "anna@example.ru"})
    );
    let refused = member
        .patch("/users/me/settings", &json!({"email": "not an address"}))
        .await
        .unwrap();
    assert_eq!(refused.status, 422);
    assert_eq!(refused.error_code(), Some("invalid_email"));
    let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
    assert_eq!(
        me.data()["email"],
        "anna@example.ru",
        "one e-mail, two routes"
    );

    let visit = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&salon_staff, "4000").await}),
    )
    .await
    .unwrap();
    assert_eq!(visit["state"], "done", "{visit}");
    let by_template = |template: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT status, provider FROM notifications WHERE template = $1",
            )
            .bind(template)
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    let coupon = eventually(10, "the coupon notice's record", || async {
        Some(by_template("coupon_issued").await).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(
        coupon,
        [("skipped".to_owned(), "none".to_owned())],
        "a coupon is an offer: not sent"
    );
    let bonus = eventually(10, "the bonus notice", || async {
        Some(by_template("bonus_accrued").await).filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(
        bonus,
        [("sent".to_owned(), "log".to_owned())],
        "account news is not an offer: sent"
    );
}

/// `GET /transactions` narrows by business, by period (local dates, both included) and by
/// type; a period that ends before it starts is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_filtered_by_business_period_and_type() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (salon, salon_staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let (market, market_staff) = app
        .business_with_staff(&operator, "Лисичкино", "gastronomy", "3", "+79000000101")
        .await;
    let member = app.sign_in(&member_phone()).await;
    for (staff, amount) in [
        (&salon_staff, "1000"),
        (&market_staff, "2000"),
        (&salon_staff, "3000"),
    ] {
        let done = scan_and_wait(&member, &json!({"code": app.issue_qr(staff, amount).await}))
            .await
            .unwrap();
        assert_eq!(done["state"], "done", "{done}");
    }
    let list = |query: String| {
        let member = member.clone();
        async move {
            let page = expect(
                member.get(&format!("/transactions?{query}")).await.unwrap(),
                200,
            )
            .unwrap();
            page.data()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["business_id"].as_str().unwrap().to_owned(),
                        t["amount"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(String::new()).await.len(), 3);
    assert_eq!(
        list(format!("business_id={salon}")).await,
        [
            (salon.clone(), "3000.00".to_owned()),
            (salon.clone(), "1000.00".to_owned())
        ]
    );
    assert_eq!(
        list(format!("business_id={market}&type=purchase")).await,
        [(market.clone(), "2000.00".to_owned())]
    );
    assert!(list("type=refund".to_owned()).await.is_empty());
    let today = OffsetDateTime::now_utc().date();
    let (yesterday, tomorrow) = (today.previous_day().unwrap(), today.next_day().unwrap());
    assert_eq!(
        list(format!("from={yesterday}&to={tomorrow}")).await.len(),
        3
    );
    // Two days on, whatever the zone's date is now.
    let (later, next_week) = (today + Duration::days(2), today + Duration::days(7));
    assert!(
        list(format!("from={later}&to={next_week}"))
            .await
            .is_empty()
    );
    let backwards = member
        .get(&format!("/transactions?from={tomorrow}&to={yesterday}"))
        .await
        .unwrap();
    assert_eq!(backwards.status, 422);
    assert_eq!(backwards.error_code(), Some("invalid_range"));
    let bad_type = member.get("/transactions?type=gift").await.unwrap();
    assert_eq!(bad_type.status, 400, "{}", bad_type.body);
}

/// Signs `phone` in as the app does and returns (access token, refresh token).
async fn session(app: &TestApp, phone: &str) -> (String, String) {
    app.services.cache.release_otp_send(phone).await.unwrap();
    let sent = expect(
        app.api
            .post("/auth/send-code", &json!({"phone": phone}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = sent.data()["job_id"].as_str().unwrap().to_owned();
    let code = eventually(10, "the login code", || async {
        krug_client::dev_otp_code(&app.db, &job_id).await.unwrap()
    })
    .await;
    let session = expect(
        app.api
            .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    (
        session.data()["access_token"].as_str().unwrap().to_owned(),
        session.data()["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Rows of any table of the schema whose text contains `needle`, by table.
async fn tables_containing(app: &TestApp, needle: &str) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(tables.len() > 15, "the schema is read: {tables:?}");
    let mut found = Vec::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            r#"SELECT count(*) FROM "{table}" t WHERE t::text LIKE '%' || $1 || '%'"#
        )))
        .bind(needle)
        .fetch_one(&app.db)
        .await
        .unwrap();
        if count > 0 {
            found.push((table, count));
        }
    }
    found
}

/// The member exports her data, then deletes her account: her phone (in any written form)
/// is in no table any more, her sessions, devices and seat are gone and no message reaches
/// her, while her ledger and balance stay whole under an anonymous id; the same phone later
/// signs up as a new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_members_phone_is_gone_from_every_table() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (salon, salon_staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let phone = member_phone();
    let national = &phone[2..]; // the ten digits every written form contains
    let (access, refresh) = session(&app, &phone).await;
    let member = app.api.signed_in(&access);
    let user_id = expect(member.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect(
        member
            .patch(
                "/users/me",
                &json!({"first_name": "Анна", "last_name": "Смирнова", "email": "anna@example.ru"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": "fcm-token-of-anna", "platform": "ios"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    expect(
        operator
            .post(
                &format!("/admin/businesses/{salon}/staff"),
                &json!({"phone": phone, "role": "viewer"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    for amount in ["1000", "2500"] {
        let done = scan_and_wait(
            &member,
            &json!({"code": app.issue_qr(&salon_staff, amount).await}),
        )
        .await
        .unwrap();
        assert_eq!(done["state"], "done", "{done}");
    }
    let tasting = event(&operator, "Вечер сыров в Лисичкино", true).await;
    expect(
        member
            .post(&format!("/events/{tasting}/register"), &json!({}))
            .await
            .unwrap(),
        201,
    )
    .unwrap();

    let export = expect(member.get("/users/me/export").await.unwrap(), 200).unwrap();
    let export = export.data();
    assert_eq!(export["profile"]["phone"], phone.as_str());
    assert_eq!(export["profile"]["last_name"], "Смирнова");
    assert_eq!(export["ledger"].as_array().unwrap().len(), 2);
    assert_eq!(export["transactions"].as_array().unwrap().len(), 2);
    assert_eq!(export["transactions"][0]["business_name"], "Миндаль");
    assert_eq!(export["balance"]["balance"], "175.00");
    assert_eq!(export["events"][0]["event_id"], tasting.as_str());
    assert_eq!(export["devices"][0]["platform"], "ios");
    assert!(
        !export.to_string().contains("fcm-token-of-anna"),
        "push tokens are ours, not hers to carry around"
    );
    assert_eq!(export["roles"][0]["role"], "viewer");
    let balance_before: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT balance FROM bonus_balances WHERE user_id = $1::uuid")
            .bind(&user_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!tables_containing(&app, national).await.is_empty());

    let deleted = expect(member.delete("/users/me").await.unwrap(), 200).unwrap();
    assert_eq!(deleted.data()["seats_released"], 1);

    let left = tables_containing(&app, national).await;
    assert!(left.is_empty(), "the phone is still in: {left:?}");
    let names = tables_containing(&app, "Смирнова").await;
    assert!(names.is_empty(), "her name is still in: {names:?}");
    app.assert_ledger_consistent().await;
    let (entries, balance_after): (i64, rust_decimal::Decimal) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM bonus_ledger WHERE user_id = $1::uuid),
                (SELECT balance FROM bonus_balances WHERE user_id = $1::uuid)",
    )
    .bind(&user_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        (entries, balance_after),
        (2, balance_before),
        "the books keep her anonymous entries"
    );
    let seats: i32 = sqlx::query_scalar("SELECT registered_count FROM events WHERE id = $1::uuid")
        .bind(&tasting)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(seats, 0, "her seat went back");

    // Her sessions ended with the account: her access token is refused at once.
    assert_eq!(
        member.get("/users/me").await.unwrap().error_code(),
        Some("session_revoked")
    );
    // A token for the id that still somehow reached the API (signed before the deletion
    // by another session, say) finds no account.
    let member = app.api.signed_in(&app.services.jwt.issue(
        user_id.parse().unwrap(),
        vec![],
        uuid::Uuid::new_v4(),
    ));
    assert_eq!(member.get("/users/me").await.unwrap().status, 404);
    assert_eq!(member.get("/users/me/export").await.unwrap().status, 404);
    assert_eq!(member.delete("/users/me").await.unwrap().status, 404);
    let refreshed = app
        .api
        .post("/auth/refresh", &json!({"refresh_token": refresh}))
        .await
        .unwrap();
    assert_eq!(refreshed.status, 401, "{}", refreshed.body);
    let device = member
        .post(
            "/users/me/devices",
            &json!({"token": "fcm-token-again", "platform": "ios"}),
        )
        .await
        .unwrap();
    assert_eq!(device.status, 404, "no device for an account that is gone");

    // A message meant for her finds nobody to send to.
    let messages_before: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let notify = jobs::handlers::notify_job::NotifyJob::Send(jobs::handlers::notify_job::Notify {
        user_id: user_id.parse().unwrap(),
        message: domain::messages::Message::TierUpgraded {
            tier: domain::Tier::Vip,
        },
        dedupe_key: "after-deletion".to_owned(),
    });
    jobs::RunJob::run(
        notify,
        jobs::JobCtx {
            env: app.env.clone(),
            job_id: uuid::Uuid::now_v7(),
            attempt: 1,
        },
    )
    .await
    .unwrap();
    let messages_after: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        messages_after, messages_before,
        "nothing sent, nothing recorded"
    );

    let again = app.sign_in(&phone).await;
    let new_id = expect(again.get("/users/me").await.unwrap(), 200)
        .unwrap()
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_id, user_id, "the phone joins again as a new member");
}
