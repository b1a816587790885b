//! Push in production: the FCM token minted from a service account, renewed when it
//! expires, against fakes of Google's token endpoint and FCM; and a job of many messages,
//! each by its member's channel.

use crate::{
    fakes::{FakeSmsRu, SmsRuMode},
    helpers::{Options, TestApp, eventually, member_phone, zone_where_it_is},
};
use domain::{Tier, messages::Message};
use jobs::{
    JobCtx, JobError, RunJob,
    handlers::notify_job::{Notify, NotifyJob},
};
use krug_client::{expect, scan_and_wait};
use rust_decimal::Decimal;
use serde_json::json;
use simulators::fcm::FakeFcm;
use std::path::PathBuf;
use uuid::Uuid;

/// An app whose pushes go to a fake FCM through a service account (its key file is
/// returned, to remove), at noon (no quiet hours), with SMS.ru at `smsru_url` if given.
async fn with_fcm(smsru_url: Option<String>) -> (TestApp, FakeFcm, PathBuf) {
    let (private, public) = krug::keys::generate_rsa_pair().unwrap();
    let email = "krug-push@krug-test.iam.gserviceaccount.com";
    let google = FakeFcm::start(email, public.as_bytes()).await.unwrap();
    let file = std::env::temp_dir().join(format!("krug-sa-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &file,
        json!({
            "type": "service_account", "project_id": "krug-test", "private_key_id": "k1",
            "private_key": private,
            "client_email": email, "token_uri": google.token_url,
        })
        .to_string(),
    )
    .unwrap();
    let app = TestApp::spawn_with(Options {
        fcm_url: Some(google.url.clone()),
        fcm_service_account: Some(file.clone()),
        smsru_url,
        timezone: Some(zone_where_it_is(12)),
        ..Default::default()
    })
    .await;
    (app, google, file)
}

/// A member's accruals are pushed through FCM with a token minted from the service account
/// (`FCM_SERVICE_ACCOUNT_FILE`); when Google expires it, FCM's 401 gets a new one minted
/// and the message sent: nothing is lost and no static token is ever configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_fcm_token_is_renewed_from_the_service_account() {
    let (app, google, file) = with_fcm(None).await;
    let operator = app.operator().await;
    let (_, staff) = app
        .business_with_staff(&operator, "Миндаль", "beauty", "5", &member_phone())
        .await;
    let member = app.sign_in(&member_phone()).await;
    expect(
        member
            .post(
                "/users/me/devices",
                &json!({"token": "device-anna", "platform": "ios"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();

    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "1000").await}),
    )
    .await
    .unwrap();
    eventually(10, "the first push", || async {
        (google.sent().len() == 1).then_some(())
    })
    .await;
    google.expire_tokens();
    scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&staff, "2000").await}),
    )
    .await
    .unwrap();
    eventually(10, "the second push", || async {
        (google.sent().len() == 2).then_some(())
    })
    .await;
    let _ = std::fs::remove_file(&file);

    assert_eq!(
        google.minted(),
        2,
        "one token, then one more after it expired"
    );
    assert_eq!(
        google
            .state
            .refused_bearer
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(
        google
            .sent()
            .iter()
            .all(|(device, _, _)| device == "device-anna")
    );
}

/// One job of several messages (a scan batch's): each member gets hers once by her channel —
/// a push to her device, an SMS without one, nothing (recorded as skipped) for marketing she
/// refuses everywhere — and when SMS.ru fails for a moment the job is retried, sending only
/// what did not go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_many_messages_sends_each_once_by_its_channel_and_a_retry_only_the_rest() {
    let sms = FakeSmsRu::start(SmsRuMode::UnavailableFirst(1)).await;
    let (app, google, file) = with_fcm(Some(sms.url())).await;
    let member = || async {
        let id: Uuid = sqlx::query_scalar("INSERT INTO users (phone) VALUES ($1) RETURNING id")
            .bind(member_phone())
            .fetch_one(&app.db)
            .await
            .unwrap();
        id
    };
    let (anna, boris, vera) = (member().await, member().await, member().await);
    storage::devices::register(
        &app.db,
        anna,
        "device-anna",
        storage::devices::Platform::Ios,
        10,
    )
    .await
    .unwrap();
    sqlx::query("UPDATE users SET push_marketing = false, sms_marketing = false WHERE id = $1")
        .bind(vera)
        .execute(&app.db)
        .await
        .unwrap();
    let accrual = |user_id, key: &str| Notify {
        user_id,
        message: Message::BonusAccrued {
            amount: Decimal::from(50),
            business: Some("Миндаль".to_owned()),
            balance: Decimal::from(50),
        },
        dedupe_key: key.to_owned(),
    };
    let job = NotifyJob::of(vec![
        accrual(anna, "accrual:a"),
        accrual(boris, "accrual:b"),
        Notify {
            user_id: vera,
            message: Message::CouponIssued {
                business: "Лисичкино".to_owned(),
                discount: "15 %".to_owned(),
                code: "KRUG-TEST".to_owned(),
                expires: "31.12.2026".to_owned(),
            },
            dedupe_key: "coupon:v".to_owned(),
        },
        Notify {
            user_id: anna,
            message: Message::TierUpgraded { tier: Tier::Vip },
            dedupe_key: "tier-up:a".to_owned(),
        },
    ]);
    assert!(matches!(job, NotifyJob::SendAll { .. }));
    let run = |job: NotifyJob| {
        job.run(JobCtx {
            env: app.env.clone(),
            job_id: Uuid::now_v7(),
            attempt: 1,
        })
    };

    let first = run(job.clone()).await;
    assert!(matches!(first, Err(JobError::Retry(_))), "{first:?}");
    assert_eq!(google.sent().len(), 2, "both of Anna's messages pushed");
    run(job.clone()).await.unwrap();
    run(job).await.unwrap();
    let _ = std::fs::remove_file(&file);

    assert_eq!(google.sent().len(), 2, "nothing pushed twice");
    assert_eq!(sms.requests().await, 2, "Boris's SMS: 503, then sent once");
    let recorded: Vec<(Uuid, String, String, String)> = sqlx::query_as(
        "SELECT user_id, template, channel, status FROM notifications ORDER BY template, user_id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let of = |user: Uuid, template: &str| {
        recorded
            .iter()
            .filter(|r| r.0 == user && r.1 == template)
            .map(|r| (r.2.as_str(), r.3.as_str()))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(anna, "bonus_accrued"), [("push", "sent")]);
    assert_eq!(of(anna, "tier_upgraded"), [("push", "sent")]);
    assert_eq!(of(boris, "bonus_accrued"), [("sms", "sent")]);
    assert_eq!(of(vera, "coupon_issued"), [("sms", "skipped")]);
}

/// A worker that dies in the middle of a long job (here: the job's future dropped after
/// twenty pushes) has recorded what it sent a chunk at a time, so the job run again sends
/// again at most one chunk's worth, and every message ends recorded once as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cut_short_sends_again_at_most_one_chunk() {
    let (app, google, file) = with_fcm(None).await;
    let count = 60;
    let mut messages = Vec::new();
    for i in 0..count {
        let user_id: Uuid =
            sqlx::query_scalar("INSERT INTO users (phone) VALUES ($1) RETURNING id")
                .bind(member_phone())
                .fetch_one(&app.db)
                .await
                .unwrap();
        storage::devices::register(
            &app.db,
            user_id,
            &format!("device-{i}"),
            storage::devices::Platform::Android,
            10,
        )
        .await
        .unwrap();
        messages.push(Notify {
            user_id,
            message: Message::TierUpgraded { tier: Tier::Vip },
            dedupe_key: format!("tier-up:{i}"),
        });
    }
    let job = NotifyJob::of(messages);
    let run = |job: NotifyJob| {
        job.run(JobCtx {
            env: app.env.clone(),
            job_id: Uuid::now_v7(),
            attempt: 1,
        })
    };

    let cut_short = async {
        while google.sent().len() < 20 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        finished = run(job.clone()) => panic!("the job ended before it was cut short: {finished:?}"),
        () = cut_short => {}
    }
    let before = google.sent().len();
    assert!(before < count, "cut short after {before} pushes");
    run(job).await.unwrap();
    let _ = std::fs::remove_file(&file);

    let again = google.sent().len() - count;
    assert!(
        again <= 16,
        "{again} pushes sent twice (cut short after {before}): more than one chunk"
    );
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT dedupe_key) FROM notifications WHERE status = 'sent'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(sent, count as i64);
}
