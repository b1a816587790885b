//! Nothing is lost between Postgres and Redis: the job outbox and `reconcile`.

use crate::helpers::{Options, TestApp, eventually, member_phone};
use jobs::{env::ReconcilePolicy, handlers::scan::ScanQr};
use krug_client::{expect, wait_for_scan};
use serde_json::json;
use std::time::{Duration, Instant};
use storage::scans::{self, NewScan};
use uuid::Uuid;

fn eager_reconcile() -> Option<ReconcilePolicy> {
    Some(ReconcilePolicy {
        unrelayed_grace_s: 0,
        lost_after_s: 1,
    })
}

/// A scan recorded in Postgres whose push to Redis never happened (the API process died
/// between commit and push) is found and processed by `reconcile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_whose_enqueue_was_lost_is_processed_after_reconcile() {
    let app = TestApp::spawn_with(Options {
        reconcile: eager_reconcile(),
        ..Default::default()
    })
    .await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let phone = member_phone();
    let member = app.sign_in(&phone).await;
    let code = app.issue_qr(&staff, "1000").await;
    let qr = app.services.cache.get_qr(&code).await.unwrap().unwrap();
    let user_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE phone = $1")
        .bind(&phone)
        .fetch_one(&app.db)
        .await
        .unwrap();

    // What POST /transactions/scan commits, without the push that follows it.
    let scan_id = Uuid::now_v7();
    scans::insert(
        &app.db,
        &NewScan {
            id: scan_id,
            user_id,
            code,
            qr: Some(serde_json::to_value(qr).unwrap()),
            redeem_bonus: Default::default(),
            coupon_id: None,
        },
    )
    .await
    .unwrap();
    // A scan is its own record of work: one still pending after `lost_after_s` (1 s
    // here) is pushed again by reconcile.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let pending = expect(
        member
            .get(&format!("/transactions/scan/{scan_id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(
        pending.data()["state"],
        "pending",
        "nothing picked it up on its own"
    );

    jobs::schedule::trigger(&app.env.queue, &app.env.db, "reconcile")
        .await
        .unwrap();

    let outcome = wait_for_scan(&member, &scan_id.to_string()).await.unwrap();
    assert_eq!(outcome["state"], "done", "{outcome}");
    assert_eq!(outcome["result"]["bonus_accrued"], "50.00");
    app.assert_ledger_consistent().await;
}

/// Redis forgot a job it had accepted (a restart without persistence): the outbox still
/// shows it unfinished, and `reconcile` pushes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_redis_lost_is_pushed_again_by_reconcile() {
    let app = TestApp::spawn_with(Options {
        reconcile: eager_reconcile(),
        no_worker: true,
        ..Default::default()
    })
    .await;
    let sent = expect(
        app.api
            .post("/auth/send-code", &json!({"phone": member_phone()}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id: Uuid = sent.data()["job_id"].as_str().unwrap().parse().unwrap();
    let mut redis = app.services.cache.connection();
    let pattern = format!("{{{}.otp_send}}*", app.prefix);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the job was pushed");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Now a worker comes up and reconcile runs.
    tokio::spawn(jobs::runtime::run(
        app.env.clone(),
        crate::helpers::worker_options(&app.services),
        tokio_util::sync::CancellationToken::new(),
    ));
    jobs::schedule::trigger(&app.env.queue, &app.env.db, "reconcile")
        .await
        .unwrap();

    let outcome: String = eventually(10, "the lost job to finish", || async {
        sqlx::query_scalar(
            "SELECT outcome FROM job_outbox WHERE job_id = $1 AND outcome IS NOT NULL",
        )
        .bind(job_id)
        .fetch_optional(&app.db)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(outcome, "done");
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE status = 'sent'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sent, 1);
}

/// With Redis unreachable the API says so at once (503 `queue_unavailable`) and leaves
/// nothing behind that would run later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_api_answers_503_quickly_and_records_nothing() {
    let app = TestApp::spawn_with(Options {
        redis_url: Some("redis://127.0.0.1:1".to_owned()),
        no_worker: true,
        ..Default::default()
    })
    .await;

    let started = Instant::now();
    let response = app
        .api
        .post("/auth/send-code", &json!({"phone": member_phone()}))
        .await
        .unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (response.status, response.error_code()),
        (503, Some("queue_unavailable"))
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM job_outbox")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let ready = app.api.get("//ready").await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(ready.error_code(), Some("not_ready"));
    assert!(
        ready.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redis")
    );
}

/// At-least-once delivery means a job may run again after its effect: pushed again with a
/// new id, every job type finds its work done and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_delivered_again_after_their_effect_change_nothing() {
    use jobs::handlers::{bonus::CalcBonus, promo::IssueCoupons};
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let (salon_id, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", "+79000000100")
        .await;
    let (market_id, _) = app
        .business_with_staff(&operator, "Лисичкино", "gastronomy", "3", "+79000000101")
        .await;
    expect(
        operator
            .post(
                "/admin/promo-chains",
                &json!({"trigger_business_id": salon_id, "target_business_id": market_id, "discount_type": "fixed",
                        "discount_value": "200", "valid_days": 7}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let member = app.sign_in(&member_phone()).await;
    let accepted = expect(
        member
            .post(
                "/transactions/scan",
                &json!({"code": app.issue_qr(&staff, "1000").await}),
            )
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let scan_id: Uuid = accepted.data()["job_id"].as_str().unwrap().parse().unwrap();
    let done = wait_for_scan(&member, &scan_id.to_string()).await.unwrap();
    let transaction_id: Uuid = done["result"]["transaction_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    eventually(10, "the coupon", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM coupons")
            .fetch_one(&app.db)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    let effects = || async {
        sqlx::query_as::<_, (i64, i64, i64, i64)>(
            "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM bonus_ledger),
                    (SELECT count(*) FROM coupons), (SELECT count(*) FROM notifications WHERE template <> 'otp')",
        )
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    let queue = &app.services.queue;
    let idle = || async {
        let mut busy = 0;
        for q in [
            jobs::QueueName::QrScan,
            jobs::QueueName::BonusCalc,
            jobs::QueueName::CrossPromo,
            jobs::QueueName::Notify,
        ] {
            let c = jobs::inspect::queue_counts(queue, q).await.unwrap();
            busy += c.pending + c.running + c.failed;
        }
        busy == 0
    };
    // The bonus and coupon messages are recorded by `notify` jobs after the coupon: the
    // snapshot waits for both, or a slow machine records them after it.
    eventually(10, "the bonus and coupon messages", || async {
        (effects().await.3 == 2 && idle().await).then_some(())
    })
    .await;
    let before = effects().await;

    queue
        .push(Uuid::now_v7(), &ScanQr { scan_id })
        .await
        .unwrap();
    queue
        .push(
            Uuid::now_v7(),
            &CalcBonus {
                transaction_ids: vec![transaction_id],
            },
        )
        .await
        .unwrap();
    queue
        .push(
            Uuid::now_v7(),
            &IssueCoupons {
                transaction_ids: vec![transaction_id],
            },
        )
        .await
        .unwrap();
    jobs::schedule::trigger(queue, &app.db, "reconcile")
        .await
        .unwrap();
    eventually(10, "the repeated jobs to finish", || async {
        idle().await.then_some(())
    })
    .await;

    assert_eq!(
        effects().await,
        before,
        "(transactions, ledger entries, coupons, messages) unchanged"
    );
    let again = wait_for_scan(&member, &scan_id.to_string()).await.unwrap();
    assert_eq!(again, done, "the scan's result is the same");
    app.assert_ledger_consistent().await;
}
