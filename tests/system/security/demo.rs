//! `krug demo` on a developer's machine configured for real SMS: its people are made up, so
//! none of its messages may leave.

use crate::{
    cli::krug,
    fakes::{FakeSmsRu, SmsRuMode},
};
use uuid::Uuid;

/// A developer who keeps `KRUG_SMS_PROVIDER=smsru` in her `.env` runs the demo: it signs in
/// an operator, staff and members by SMS. Every code is recorded and printed, none reaches
/// SMS.ru (the demo's phone numbers belong to strangers). The operator is the phone given on
/// the command line, so she can sign in to the board as that operator afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_sends_no_sms_and_its_operator_is_the_one_given() {
    let smsru = FakeSmsRu::start(SmsRuMode::Accept).await;
    let name = format!("krug_test_{}", Uuid::new_v4().simple());
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let prefix = format!("kt-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let smsru_url = smsru.url();
    let demo = tokio::task::spawn_blocking(move || {
        krug(&database_url, &name, &prefix)
            .env("RUST_LOG", "warn")
            .env("KRUG_SMS_PROVIDER", "smsru")
            .env("SMSRU_API_ID", "demo-test-api-id")
            .env("SMSRU_BASE_URL", smsru_url)
            .args(["demo", "--operator-phone", "8 (999) 000-11-22"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(
        demo.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(
        stdout.contains("operator (superadmin): +79990001122"),
        "{stdout}"
    );
    assert_eq!(
        smsru.requests().await,
        0,
        "SMS.ru received {:?}",
        smsru.sent()
    );
}
