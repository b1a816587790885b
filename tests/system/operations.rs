//! Operators: queues, jobs, retry and discard, schedules — through the API and the CLI.

use crate::{
    fakes::{FakeSmsRu, SmsRuMode},
    helpers::{Options, TestApp, eventually, member_phone, test_key_dir},
};
use jobs::{QueueName, client::RawJob};
use krug_client::expect;
use serde_json::json;
use std::process::Command;

async fn dead_otp_job(app: &TestApp, phone: &str) -> String {
    let sent = expect(
        app.api
            .post("/auth/send-code", &json!({"phone": phone}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = sent.data()["job_id"].as_str().unwrap().to_owned();
    // Dead in Redis and recorded dead in the outbox (two writes, in no fixed order).
    eventually(10, "the job to go dead", || async {
        let outcome: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM job_outbox WHERE job_id = $1::uuid")
                .bind(&job_id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        let info = jobs::inspect::job(
            &app.env.queue,
            jobs::QueueName::OtpSend,
            job_id.parse().unwrap(),
        )
        .await
        .unwrap();
        let dead = info.is_some_and(|i| i.state == jobs::inspect::JobState::Dead);
        (dead && outcome.as_deref() == Some("dead")).then_some(())
    })
    .await;
    job_id
}

/// A job that failed for good is listed with its reason and masked payload; once the cause
/// is fixed, an operator's retry runs it to completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_a_dead_job_read_why_and_retry_it() {
    let sms = FakeSmsRu::start(SmsRuMode::BadNumber).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;
    let operator_phone = "+79000000001";
    krug::commands::grant(app.services.clone(), operator_phone, "superadmin", None)
        .await
        .unwrap();
    let phone = member_phone();
    let job_id = dead_otp_job(&app, &phone).await;
    // The operator signs in with a working SMS provider.
    sms.set_mode(SmsRuMode::Accept);
    let operator = app.sign_in_via_smsru(&sms, operator_phone).await;

    let listed = expect(
        operator
            .get("/admin/jobs?queue=otp_send&state=dead")
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let items = listed.data()["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.body);
    let job = &items[0];
    assert_eq!(job["id"], job_id.as_str());
    assert_eq!(job["state"], "dead");
    assert_eq!(job["queue"], "otp_send");
    assert!(job["last_error"].as_str().unwrap().contains("202"), "{job}");
    assert_eq!(
        job["payload"]["phone"],
        format!("{}***{}", &phone[..5], &phone[phone.len() - 4..])
    );
    assert_eq!(job["payload"]["sealed_code"], "***");
    assert!(job["enqueued_at"].is_string() && job["finished_at"].is_string());

    let queues = expect(operator.get("/admin/queues").await.unwrap(), 200).unwrap();
    let otp = queues.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "otp_send")
        .unwrap()
        .clone();
    assert_eq!(otp["dead"], 1);
    assert_eq!(otp["pending"], 0);
    assert_eq!(
        queues.data()["items"].as_array().unwrap().len(),
        jobs::QueueName::ALL.len()
    );

    let retried = expect(
        operator
            .post(&format!("/admin/jobs/otp_send/{job_id}/retry"), &json!({}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert!(
        matches!(
            retried.data()["state"].as_str(),
            Some("pending" | "running" | "done")
        ),
        "{}",
        retried.body
    );
    eventually(10, "the retried job to finish", || async {
        let job = expect(
            operator
                .get(&format!("/admin/jobs/otp_send/{job_id}"))
                .await
                .unwrap(),
            200,
        )
        .unwrap();
        (job.data()["state"] == "done").then_some(())
    })
    .await;
    assert!(
        sms.sent().iter().any(|m| format!("+{}", m.to) == phone),
        "the member's SMS went out"
    );
    let again = operator
        .post(&format!("/admin/jobs/otp_send/{job_id}/retry"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.error_code()),
        (409, Some("job_state_conflict")),
        "a done job is not retried"
    );
}

/// Discarding takes a waiting job out for good; retry and discard answer 404 and 409 where
/// they do not apply; members get 403 and strangers 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_and_the_rules_of_operator_actions() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let later = RawJob {
        id: uuid::Uuid::now_v7(),
        payload: b"{}".to_vec(),
        max_attempts: 2,
        run_at: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        idempotency_key: None,
        from_outbox: false,
    };
    app.services
        .queue
        .push_raw(QueueName::Reconcile, std::slice::from_ref(&later))
        .await
        .unwrap();
    let path = format!("/admin/jobs/reconcile/{}", later.id);
    let job = expect(operator.get(&path).await.unwrap(), 200).unwrap();
    assert_eq!(job.data()["state"], "scheduled");

    let retry_scheduled = operator
        .post(&format!("{path}/retry"), &json!({}))
        .await
        .unwrap();
    assert_eq!(retry_scheduled.status, 409);
    let discarded = expect(
        operator
            .post(&format!("{path}/discard"), &json!({}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(discarded.data()["state"], "dead");
    assert_eq!(discarded.data()["last_error"], "discarded by an operator");
    let twice = operator
        .post(&format!("{path}/discard"), &json!({}))
        .await
        .unwrap();
    assert_eq!(twice.status, 409);

    let missing = operator
        .get(&format!("/admin/jobs/reconcile/{}", uuid::Uuid::new_v4()))
        .await
        .unwrap();
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, Some("job_not_found"))
    );
    let bad_queue = operator.get("/admin/jobs?queue=nope").await.unwrap();
    assert_eq!(
        (bad_queue.status, bad_queue.error_code()),
        (404, Some("queue_not_found"))
    );
    let bad_state = operator
        .get("/admin/jobs?queue=qr_scan&state=lost")
        .await
        .unwrap();
    assert_eq!(
        (bad_state.status, bad_state.error_code()),
        (422, Some("invalid_state"))
    );

    let member = app.sign_in(&member_phone()).await;
    for path in [
        "/admin/queues",
        "/admin/jobs?queue=qr_scan",
        "/admin/schedules",
    ] {
        assert_eq!(member.get(path).await.unwrap().status, 403, "{path}");
        assert_eq!(app.api.get(path).await.unwrap().status, 401, "{path}");
    }
    assert_eq!(
        member
            .post("/admin/schedules/reconcile/trigger", &json!({}))
            .await
            .unwrap()
            .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_and_triggered_now() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;

    let triggered = expect(
        operator
            .post("/admin/schedules/reconcile/trigger", &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = triggered.data()["job_id"].as_str().unwrap().to_owned();
    let listed = eventually(10, "the triggered run to finish", || async {
        let listed = expect(operator.get("/admin/schedules").await.unwrap(), 200).unwrap();
        let reconcile = listed.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "reconcile")
            .cloned()
            .unwrap();
        (reconcile["last_outcome"] == "done").then_some(reconcile)
    })
    .await;
    assert_eq!(listed["last_job_id"], job_id.as_str());
    assert_eq!(listed["cron"], "0 * * * * *");
    assert!(listed["next_fire_at"].is_string());
    let unknown = operator
        .post("/admin/schedules/nope/trigger", &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, Some("schedule_not_found"))
    );
}

/// `krug jobs list|show|retry` work over the same functions as the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_and_retries_jobs() {
    let sms = FakeSmsRu::start(SmsRuMode::BadNumber).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;
    let job_id = dead_otp_job(&app, &member_phone()).await;
    let krug = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_krug"))
            .args(args)
            .env("DATABASE_URL", app.services.config.database_url.expose())
            .env("KRUG_QUEUE_PREFIX", &app.prefix)
            .env("KRUG_KEY_DIR", test_key_dir())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, table, err) = krug(&["jobs", "list", "--queue", "otp_send", "--state", "dead"]);
    assert!(ok, "{err}");
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(table.contains(&job_id) && table.contains("dead"), "{table}");
    let (ok, shown, _) = krug(&["jobs", "show", "otp_send", &job_id]);
    assert!(ok);
    assert!(
        shown.contains("state        dead") && shown.contains("***"),
        "{shown}"
    );

    sms.set_mode(SmsRuMode::Accept);
    let (ok, out, err) = krug(&["jobs", "retry", "otp_send", &job_id]);
    assert!(ok, "{err}");
    assert!(out.contains("retried"));
    eventually(10, "the retried job to finish", || async {
        let job = jobs::inspect::job(
            &app.services.queue,
            QueueName::OtpSend,
            job_id.parse().unwrap(),
        )
        .await
        .unwrap();
        job.filter(|j| j.state == jobs::inspect::JobState::Done)
    })
    .await;
    let (ok, _, err) = krug(&["jobs", "retry", "otp_send", &job_id]);
    assert!(!ok && err.contains("cannot be retried"), "{err}");
}
