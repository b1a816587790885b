//! ClickHouse facts, the nightly RFM snapshot, tier review, and schedules that fire once.

use crate::helpers::{Options, TestApp, coupons, eventually, member_phone, test_key_dir};
use domain::{loyalty::TransactionType, rfm};
use krug_client::{expect, scan_and_wait};
use serde_json::json;
use std::{collections::HashMap, process::Command, time::Duration};
use storage::analytics::Fact;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

async fn facts(app: &TestApp) -> Vec<(String, String)> {
    app.services
        .clickhouse
        .query("SELECT toString(transaction_id), transaction_type FROM transaction_facts")
        .fetch_all::<(String, String)>()
        .await
        .unwrap()
}

/// Non-medical purchases and refunds reach ClickHouse once each, however often the export
/// runs; medical ones never do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_reach_clickhouse_once_and_medical_ones_never() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, salon) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let clinic = app
        .create_business(&operator, json!({"name": "Миллениум", "category": "health", "cashback_percent": "4", "is_medical": true}))
        .await;
    let clinic_id = clinic["id"].as_str().unwrap();
    expect(
        operator
            .post(
                &format!("/admin/businesses/{clinic_id}/staff"),
                &json!({"phone": "+79000000104", "role": "staff"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let doctor = app.sign_in("+79000000104").await;
    let member = app.sign_in(&member_phone()).await;
    let mut visible = Vec::new();
    for amount in ["100", "200"] {
        let done = scan_and_wait(
            &member,
            &json!({"code": app.issue_qr(&salon, amount).await}),
        )
        .await
        .unwrap();
        visible.push(
            done["result"]["transaction_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let medical = scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&doctor, "5000").await}),
    )
    .await
    .unwrap();
    let medical_id = medical["result"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        medical["result"]["bonus_accrued"], "200.00",
        "medical purchases earn like any other"
    );

    for _ in 0..3 {
        storage::analytics::export_facts(&app.db, &app.services.clickhouse, 1)
            .await
            .unwrap();
    }
    // A crash between the ClickHouse insert and the Postgres mark: the next export finds the
    // fact there and only marks it.
    sqlx::query("UPDATE transactions SET facts_exported_at = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    jobs::schedule::trigger(&app.env.queue, &app.env.db, "reconcile")
        .await
        .unwrap();
    eventually(10, "the re-export to settle", || async {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM transactions WHERE facts_exported_at IS NULL AND NOT is_medical",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        (left == 0).then_some(())
    })
    .await;

    let stored = facts(&app).await;
    let mut ids: Vec<String> = stored.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    visible.sort();
    assert_eq!(ids, visible, "each non-medical purchase once");
    assert!(
        !stored.iter().any(|(id, _)| *id == medical_id),
        "no medical fact"
    );
}

fn fact(user: Uuid, days_ago: i64, amount_rub: i64, today: Date) -> Fact {
    let day = today - time::Duration::days(days_ago);
    Fact {
        transaction_id: Uuid::new_v4(),
        user_id: user,
        business_id: Uuid::nil(),
        category: "beauty".to_owned(),
        transaction_type: TransactionType::Purchase,
        amount: amount_rub * 100,
        bonus_accrued: 0,
        bonus_redeemed: 0,
        occurred_at: day.midnight().assume_utc() + time::Duration::hours(12),
        event_date: day,
    }
}

/// Over a generated population, the snapshot's quintile boundaries, segments and churn
/// risks are exactly what `domain::rfm` gives; re-running the date replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rfm_snapshot_matches_the_rules_over_a_generated_population() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let ch = &app.services.clickhouse;
    let today = OffsetDateTime::now_utc().date();
    // Member i: last bought (i * 7) % 300 days ago, (i % 9) + 1 times, 10 days apart, for 500 + 37 i roubles each.
    let mut expected_inputs = HashMap::new();
    let mut insert = ch.inserter::<Fact>("transaction_facts");
    for i in 0..200i64 {
        let user = Uuid::new_v4();
        let last = (i * 7) % 300;
        let count = (i % 9) + 1;
        for k in 0..count {
            insert
                .write(&fact(user, last + 10 * k, 500 + 37 * i, today))
                .await
                .unwrap();
        }
        // An old purchase outside the year never counts.
        insert.write(&fact(user, 400, 99_999, today)).await.unwrap();
        // Only purchases less than 365 days old are in the year.
        let in_year = (0..count).filter(|k| last + 10 * k < 365).count() as i64;
        expected_inputs.insert(
            user,
            (
                last as f64,
                in_year as u64,
                (in_year * (500 + 37 * i)) as f64,
                (10 * (in_year - 1)) as f64,
            ),
        );
    }
    insert.end().await.unwrap();

    let summary = storage::rfm::compute(ch, today).await.unwrap();

    let recencies: Vec<f64> = expected_inputs.values().map(|v| v.0).collect();
    let frequencies: Vec<f64> = expected_inputs.values().map(|v| v.1 as f64).collect();
    let monetaries: Vec<f64> = expected_inputs.values().map(|v| v.2).collect();
    let (qr, qf, qm) = (
        rfm::quintiles(&recencies),
        rfm::quintiles(&frequencies),
        rfm::quintiles(&monetaries),
    );
    assert_eq!(summary.members, 200);
    assert_eq!(summary.recency_quintiles, qr.0.to_vec());
    assert_eq!(summary.frequency_quintiles, qf.0.to_vec());
    assert_eq!(summary.monetary_quintiles, qm.0.to_vec());
    let scores = storage::rfm::member_scores(ch, today, None, 1000)
        .await
        .unwrap();
    assert_eq!(scores.len(), 200);
    for score in &scores {
        let (recency, frequency, monetary, span) = expected_inputs[&score.user_id];
        let (r, f, m) = (
            rfm::score(recency, &qr, true),
            rfm::score(frequency as f64, &qf, false),
            rfm::score(monetary, &qm, false),
        );
        assert_eq!(
            score.segment,
            rfm::segment(r, f, m),
            "member {score:?}, inputs {:?}, quintiles {qr:?} {qf:?} {qm:?}",
            expected_inputs[&score.user_id]
        );
        assert_eq!(
            score.churn_risk,
            rfm::churn_risk(recency, frequency, span),
            "member {score:?}"
        );
        assert_eq!(score.monetary, monetary as i64 * 100);
    }

    // Re-running the date replaces it.
    storage::rfm::compute(ch, today).await.unwrap();
    let counts = storage::rfm::segment_counts(ch, today).await.unwrap();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 200);

    // And operators read it through the API, page by page.
    let operator = {
        let app_with_worker = &app;
        krug::commands::grant(
            app_with_worker.services.clone(),
            "+79000000001",
            "superadmin",
            None,
        )
        .await
        .unwrap();
        let token = app.services.jwt.issue(
            storage::users::find_by_phone(
                &app.db,
                &domain::PhoneNumber::parse("+79000000001").unwrap(),
            )
            .await
            .unwrap()
            .unwrap()
            .id,
            vec!["superadmin".to_owned()],
            uuid::Uuid::new_v4(),
        );
        app.api.signed_in(&token)
    };
    let first = expect(
        operator
            .get(&format!("/admin/analytics/rfm?date={today}&limit=100"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let segments: u64 = first.data()["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["members"].as_u64().unwrap())
        .sum();
    assert_eq!(segments, 200);
    assert_eq!(first.data()["items"].as_array().unwrap().len(), 100);
    let cursor = first.data()["next_cursor"].as_str().unwrap().to_owned();
    let second = expect(
        operator
            .get(&format!(
                "/admin/analytics/rfm?date={today}&limit=100&cursor={cursor}"
            ))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(second.data()["items"].as_array().unwrap().len(), 100);
    assert!(second.data()["next_cursor"].is_null());
}

/// A member whose year no longer holds up their tier is moved down by `tier_review`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_review_downgrades_members_below_their_thresholds() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (_, salon) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let (_, spa) = app
        .business_with_staff(&operator, "Стим Центр", "wellness", "5", "+79000000102")
        .await;
    let phone = member_phone();
    let member = app.sign_in(&phone).await;
    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&salon, "90000").await}),
    )
    .await
    .unwrap();
    let vip = scan_and_wait(&member, &json!({"code": app.issue_qr(&spa, "20000").await}))
        .await
        .unwrap();
    assert_eq!(vip["result"]["status_tier"], "VIP");
    // A year passes for the big purchase.
    sqlx::query(
        "UPDATE transactions SET occurred_at = now() - interval '400 days' WHERE amount = 90000",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let holder = app.sign_in(&member_phone()).await;
    scan_and_wait(
        &holder,
        &json!({"code": app.issue_qr(&salon, "60000").await}),
    )
    .await
    .unwrap();
    scan_and_wait(&holder, &json!({"code": app.issue_qr(&spa, "60000").await}))
        .await
        .unwrap();

    jobs::schedule::trigger(&app.env.queue, &app.env.db, "tier_review")
        .await
        .unwrap();

    eventually(10, "the downgrade", || async {
        let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
        (me.data()["status_tier"] == "Insider").then_some(())
    })
    .await;
    let kept = expect(holder.get("/users/me").await.unwrap(), 200).unwrap();
    assert_eq!(
        kept.data()["status_tier"],
        "VIP",
        "a member who still qualifies keeps the tier"
    );
}

fn scheduler(app: &TestApp, cron: &[(&str, &str)]) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_krug"));
    command
        .arg("scheduler")
        .env("DATABASE_URL", app.services.config.database_url.expose())
        .env("CLICKHOUSE_DB", &app.services.config.clickhouse_db)
        .env("KRUG_QUEUE_PREFIX", &app.prefix)
        .env("KRUG_KEY_DIR", test_key_dir())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    for (name, expression) in cron {
        command.env(format!("KRUG_CRON_{}", name.to_uppercase()), expression);
    }
    command.spawn().unwrap()
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

async fn queued(app: &TestApp, queue: &str) -> usize {
    redis::cmd("LLEN")
        .arg(format!("{{{}.{queue}}}:active", app.prefix))
        .query_async(&mut app.services.queue.connection())
        .await
        .unwrap()
}

/// Three schedulers for a minute with a per-second schedule: every tick is enqueued once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_enqueue_each_tick_once() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let every_second = [("reconcile", "* * * * * *")];
    let schedulers: Vec<_> = (0..3).map(|_| scheduler(&app, &every_second)).collect();
    tokio::time::sleep(Duration::from_secs(60)).await;
    for child in schedulers {
        stop(child);
    }

    let ticks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM schedule_runs WHERE schedule = 'reconcile'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(
        (55..=62).contains(&ticks),
        "about one tick a second for a minute: {ticks}"
    );
    assert_eq!(
        queued(&app, "reconcile").await,
        ticks as usize,
        "each tick enqueued once, not three times"
    );
}

/// A scheduler that was down catches up the last tick it missed, once, even when several
/// start together; it does not replay every missed tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_schedulers_catch_up_the_last_missed_tick_once() {
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    // Hourly; the last run was a day ago, so 23 ticks were missed.
    sqlx::query("INSERT INTO schedule_runs (schedule, tick_at, job_id) VALUES ('tier_review', now() - interval '1 day', gen_random_uuid())")
        .execute(&app.db)
        .await
        .unwrap();
    let hourly = [("tier_review", "0 0 * * * *")];
    let schedulers: Vec<_> = (0..3).map(|_| scheduler(&app, &hourly)).collect();
    eventually(20, "the catch-up", || async {
        (queued(&app, "tier_review").await >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for child in schedulers {
        stop(child);
    }
    assert_eq!(
        queued(&app, "tier_review").await,
        1,
        "one catch-up, not one per scheduler or per missed tick"
    );
}

/// A win-back chain gives its coupon, once, to the members whose churn risk newly reached
/// its level in the night's snapshot: not to members at risk the night before too, not to
/// members who are fine, not to a blocked member drifting alike, and to no one while no
/// such chain exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_newly_at_high_churn_risk_get_the_win_back_coupon_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let spa = app
        .create_business(
            &operator,
            json!({"name": "Стим Центр", "category": "wellness", "cashback_percent": "5"}),
        )
        .await;
    let mut members = Vec::new();
    for _ in 0..4 {
        let member = app.sign_in(&member_phone()).await;
        let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
        let id: Uuid = me.data()["id"].as_str().unwrap().parse().unwrap();
        members.push((id, member));
    }
    let today = OffsetDateTime::now_utc().date();
    let last_snapshot = today - time::Duration::days(20);
    // Every 10 days, last 5 days ago: never at risk.
    let steady = [5, 15, 25, 35, 45];
    // Every 10 days, last 40 days ago: risk 0.5 at the last snapshot, 1.0 today.
    let drifting = [40, 50, 60, 70];
    // Once, 200 days ago: risk 1.0 at both.
    let lapsed = [200];
    let mut insert = app
        .services
        .clickhouse
        .inserter::<Fact>("transaction_facts");
    // The fourth drifts as the second does, but is blocked.
    for ((user, _), days) in members
        .iter()
        .zip([&steady[..], &drifting, &lapsed, &drifting])
    {
        for days_ago in days {
            insert
                .write(&fact(*user, *days_ago, 3000, today))
                .await
                .unwrap();
        }
    }
    insert.end().await.unwrap();
    storage::rfm::compute(&app.services.clickhouse, last_snapshot)
        .await
        .unwrap();
    let tonight = || async {
        use jobs::RunJob;
        jobs::handlers::analytics::RfmSnapshot { date: Some(today) }
            .run(jobs::JobCtx {
                env: app.env.clone(),
                job_id: Uuid::new_v4(),
                attempt: 1,
            })
            .await
            .unwrap();
    };
    tonight().await;
    assert!(
        coupons(&members[1].1).await.is_empty(),
        "no win-back without a win-back chain"
    );

    for (bad, why) in [
        (json!({"trigger_churn_risk": 1.5}), "risk above 1"),
        (json!({"trigger_churn_risk": 0}), "risk 0"),
        (
            json!({"trigger_churn_risk": 0.7, "trigger_category": "beauty"}),
            "two triggers",
        ),
    ] {
        let mut body = json!({"target_business_id": spa["id"], "discount_type": "percent", "discount_value": "20", "valid_days": 14});
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let refused = operator.post("/admin/promo-chains", &body).await.unwrap();
        assert_eq!(refused.status, 422, "{why}: {}", refused.body);
        assert_eq!(refused.error_code(), Some("invalid_trigger"), "{why}");
    }
    let chain = expect(
        operator
            .post(
                "/admin/promo-chains",
                &json!({"trigger_churn_risk": 0.7, "target_business_id": spa["id"], "discount_type": "percent", "discount_value": "20", "valid_days": 14}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    assert_eq!(chain.data()["trigger_churn_risk"], 0.7);

    expect(
        operator
            .post(
                &format!("/admin/users/{}/block", members[3].0),
                &json!({"reason": "Проверка"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    tonight().await;
    let won_back = coupons(&members[1].1).await;
    assert_eq!(won_back.len(), 1, "the drifting member: {won_back:?}");
    assert_eq!(won_back[0]["business_id"], spa["id"]);
    assert!(coupons(&members[0].1).await.is_empty(), "the steady member");
    assert!(
        coupons(&members[2].1).await.is_empty(),
        "the member at risk since before"
    );
    let code = won_back[0]["code"].as_str().unwrap();
    let notices: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'notify' AND payload::text LIKE '%' || $1 || '%'",
    )
    .bind(code)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(notices, 1, "one notice of the coupon");
    let blocked_coupons: i64 =
        sqlx::query_scalar("SELECT count(*) FROM coupons WHERE user_id = $1")
            .bind(members[3].0)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(blocked_coupons, 0, "no offer to a blocked member");

    // The same night again (a retried job) issues nothing more.
    tonight().await;
    let issued: i64 = sqlx::query_scalar("SELECT count(*) FROM coupons")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(issued, 1);
}
