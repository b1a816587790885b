//! The operations board in a real browser (Debian's headless Chromium, driven by Playwright
//! from the scripts in `tests/browser/`), used as an operator uses it. Screenshots are kept
//! in `tests/browser/artifacts/` (git-ignored).

use crate::{
    fakes::{FakeSmsRu, SmsRuMode},
    helpers::{Options, TestApp, eventually, member_phone},
};
use krug_client::expect;
use serde_json::json;
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

/// An operator signs in, opens a dead job, presses Retry and sees it done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_dead_job_from_the_board_in_a_browser() {
    let sms = FakeSmsRu::start(SmsRuMode::BadNumber).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;
    let operator = "+79000000001";
    krug::commands::grant(app.services.clone(), operator, "superadmin", None)
        .await
        .unwrap();
    let sent = expect(
        app.api
            .post("/auth/send-code", &json!({"phone": member_phone()}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let job_id = sent.data()["job_id"].as_str().unwrap().to_owned();
    eventually(10, "the job to go dead", || async {
        let job = jobs::inspect::job(
            &app.services.queue,
            jobs::QueueName::OtpSend,
            job_id.parse().unwrap(),
        )
        .await
        .unwrap();
        job.filter(|j| j.state == jobs::inspect::JobState::Dead)
    })
    .await;
    sms.set_mode(SmsRuMode::Accept);

    let screenshot = artifact("board-retry.png");
    let said = drive_browser(
        "board.mjs",
        &[
            ("BOARD_URL", app.api.base.clone()),
            ("OPERATOR_PHONE", operator.to_owned()),
            ("JOB_QUEUE", "otp_send".to_owned()),
            ("JOB_ID", job_id.clone()),
            ("SCREENSHOT", screenshot.clone()),
        ],
        &sms,
        operator,
    )
    .await;
    assert_eq!(said.get("SIGNED_IN").map(String::as_str), Some("1"));
    assert_eq!(said.get("STATE_BEFORE").map(String::as_str), Some("dead"));
    assert!(
        said.get("ERROR_SHOWN").is_some_and(|e| e.contains("202")),
        "{said:?}"
    );
    assert_eq!(
        said.get("STATE_AFTER").map(String::as_str),
        Some("done"),
        "{said:?}"
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000),
        "a screenshot was saved"
    );
}

/// Where the browser tests keep their screenshots (git-ignored, kept after the run).
pub fn artifact(name: &str) -> String {
    let dir = format!("{}/tests/browser/artifacts", env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    format!("{dir}/{name}")
}

/// Runs `tests/browser/<script>` in node with `env`, answers its `CODE_REQUESTED` with the
/// code the fake SMS gateway received for `operator`, and returns every `KEY value` line it
/// printed. The script must exit 0.
pub async fn drive_browser(
    script: &str,
    env: &[(&str, String)],
    sms: &FakeSmsRu,
    operator: &str,
) -> std::collections::HashMap<String, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && std::path::Path::new(&format!("{root}/tests/browser/node_modules")).exists(),
        "the board tests need Debian's chromium and tests/browser/node_modules: run scripts/test.sh, which installs both"
    );
    let mut command = Command::new("node");
    command.arg(format!("{root}/tests/browser/{script}"));
    for (k, v) in env {
        command.env(k, v);
    }
    let mut browser = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = browser.stdin.take().unwrap();
    let stdout = BufReader::new(browser.stdout.take().unwrap());
    // Read the script's lines on a thread of their own: the app under test needs every
    // runtime thread while the browser talks to it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = std::collections::HashMap::new();
    while let Some(line) = tokio::time::timeout(std::time::Duration::from_secs(90), rx.recv())
        .await
        .expect("the browser script said nothing for 90 s")
    {
        eprintln!("[{script}] {line}");
        let (key, value) = line.split_once(' ').unwrap_or((&line, ""));
        if key == "CODE_REQUESTED" {
            let message = eventually(10, "the operator's SMS", || async {
                sms.sent()
                    .into_iter()
                    .rev()
                    .find(|m| m.to == operator.trim_start_matches('+'))
            })
            .await;
            let code: String = message.msg.chars().filter(char::is_ascii_digit).collect();
            writeln!(stdin, "{code}").unwrap();
            stdin.flush().unwrap();
        }
        said.insert(key.to_owned(), value.to_owned());
    }
    let status = browser.wait().unwrap();
    assert!(status.success(), "the browser script failed: {said:?}");
    said
}

/// The board's operations pages in Chromium: the throughput chart counts finished jobs, the
/// Processes page lists this test's worker process by its pid, and an operator filters the
/// dead `notify` jobs to one member's, confirms the count and retries them in one action
/// (the other member's stay dead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_processes_and_retries_a_members_dead_jobs_in_a_browser() {
    use jobs::{
        QueueName,
        client::RawJob,
        handlers::notify_job::{Notify, NotifyJob},
        inspect::{self, JobState},
    };
    let sms = FakeSmsRu::start(SmsRuMode::Accept).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;
    let operator = "+79000000001";
    krug::commands::grant(app.services.clone(), operator, "superadmin", None)
        .await
        .unwrap();
    let mut dead = Vec::new();
    let mut members = Vec::new();
    for count in [3, 2] {
        let phone = domain::PhoneNumber::parse(&member_phone()).unwrap();
        let member = storage::users::find_or_create(&app.db, &phone)
            .await
            .unwrap()
            .id;
        members.push(member);
        for n in 0..count {
            let id = uuid::Uuid::now_v7();
            let job = NotifyJob::Send(Notify {
                user_id: member,
                message: domain::messages::Message::TierUpgraded {
                    tier: domain::Tier::Vip,
                },
                dedupe_key: format!("board-test:{member}:{n}"),
            });
            // Due in an hour, then discarded: dead with the operator's reason.
            app.env
                .queue
                .push_raw(
                    QueueName::Notify,
                    &[RawJob {
                        id,
                        payload: serde_json::to_vec(&job).unwrap(),
                        max_attempts: 8,
                        run_at: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
                        idempotency_key: None,
                        from_outbox: false,
                    }],
                )
                .await
                .unwrap();
            inspect::discard(&app.env.queue, &app.db, QueueName::Notify, id)
                .await
                .unwrap();
            dead.push((member, id));
        }
    }
    let said = drive_browser(
        "operations.mjs",
        &[
            ("BOARD_URL", app.api.base.clone()),
            ("OPERATOR_PHONE", operator.to_owned()),
            ("MEMBER_ID", members[0].to_string()),
            ("ARTIFACTS", artifact("").trim_end_matches('/').to_owned()),
        ],
        &sms,
        operator,
    )
    .await;
    let get = |key: &str| said.get(key).cloned().unwrap_or_default();
    assert_eq!(get("CHART_MINUTES"), "180");
    assert!(
        get("CHART_PROCESSED").parse::<u64>().unwrap() >= 1,
        "{said:?}"
    );
    assert!(
        get("WORKER_PIDS")
            .split(',')
            .any(|pid| pid == std::process::id().to_string()),
        "{said:?}"
    );
    assert_eq!(get("DEAD_ROWS_BEFORE"), "5");
    assert_eq!(get("DEAD_ROWS_FILTERED"), "3");
    assert_eq!(
        get("CONFIRM_TEXT"),
        "Retry 3 dead notify jobs matching this filter?"
    );
    assert_eq!(get("BULK_APPLIED"), "3");
    for (member, id) in dead {
        let state = eventually(20, "the retried jobs to run", || async {
            let state = inspect::job(&app.env.queue, QueueName::Notify, id)
                .await
                .unwrap()
                .unwrap()
                .state;
            let settled = if member == members[0] {
                state == JobState::Done
            } else {
                state == JobState::Dead
            };
            settled.then_some(state)
        })
        .await;
        assert!(matches!(state, JobState::Done | JobState::Dead));
    }
    assert!(
        std::fs::metadata(artifact("bulk-retry-confirm.png")).is_ok_and(|m| m.len() > 1000),
        "screenshots are kept"
    );
}

/// The board's member, business, promo-chain and audit pages in Chromium, each with one
/// action: a member found by her phone (written the domestic way), her balance and ledger
/// read, blocked with a reason and unblocked; each business with its CRM integration's
/// health after a poll; a promo chain paused; the audit log filtered to that chain. Every
/// action lands through the admin API (checked here after the browser is done), and the
/// page's Content-Security-Policy refuses nothing of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_supports_a_member_and_pauses_a_chain_from_the_board_in_a_browser() {
    use simulators::{Simulator, Vendor};
    let sms = FakeSmsRu::start(SmsRuMode::Accept).await;
    let app = TestApp::spawn_with(Options {
        smsru_url: Some(sms.url()),
        ..Default::default()
    })
    .await;
    // The browser signs in as one superadmin; the test arranges things as another, so that
    // the browser's login code is not held back by the one-code-a-minute limit.
    let operator = "+79000000001";
    let arranger = "+79000000005";
    for phone in [operator, arranger] {
        krug::commands::grant(app.services.clone(), phone, "superadmin", None)
            .await
            .unwrap();
    }
    let admin = app.sign_in_via_smsru(&sms, arranger).await;
    let crm = Simulator::start(Vendor::Yclients).await.unwrap();
    let salon = app
        .create_business(
            &admin,
            json!({
                "name": "Миндаль", "category": "beauty", "cashback_percent": "5",
                "crm_type": crm.vendor.crm_type().as_str(), "crm_base_url": crm.url,
                "crm_credentials": crm.vendor.credentials(),
            }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cashier_phone = member_phone();
    expect(
        admin
            .post(
                &format!("/admin/businesses/{salon}/staff"),
                &json!({"phone": cashier_phone, "role": "staff"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let cashier = app.sign_in_via_smsru(&sms, &cashier_phone).await;
    let phone = member_phone();
    let member = app.sign_in_via_smsru(&sms, &phone).await;
    let bought = krug_client::scan_and_wait(
        &member,
        &json!({"code": app.issue_qr(&cashier, "2000.00").await}),
    )
    .await
    .unwrap();
    assert_eq!(bought["state"], "done", "{bought}");
    let chain = expect(
        admin
            .post(
                "/admin/promo-chains",
                &json!({"trigger_category": "gastronomy", "target_business_id": salon,
                        "discount_type": "percent", "discount_value": "10", "valid_days": 7}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap()
    .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect(
        admin
            .post(&format!("/admin/businesses/{salon}/poll"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    eventually(20, "the integration polled", || async {
        let list = expect(admin.get("/admin/businesses").await.unwrap(), 200).unwrap();
        let integration = list.data()["items"][0]["integrations"][0].clone();
        integration["last_polled_at"].is_string().then_some(())
    })
    .await;

    let said = drive_browser(
        "pages.mjs",
        &[
            ("BOARD_URL", app.api.base.clone()),
            ("OPERATOR_PHONE", operator.to_owned()),
            ("MEMBER_PHONE", phone.clone()),
            ("CHAIN_ID", chain.clone()),
            ("ARTIFACTS", artifact("").trim_end_matches('/').to_owned()),
        ],
        &sms,
        operator,
    )
    .await;
    let get = |key: &str| said.get(key).cloned().unwrap_or_default();
    assert_eq!(get("MEMBERS_FOUND"), "1", "{said:?}");
    assert_eq!(get("MEMBER_BALANCE"), "100.00", "5 % of 2 000");
    assert_eq!(get("LEDGER_KINDS"), "accrual");
    assert!(
        get("MEMBER_STATUS").ends_with("Проверка с доски"),
        "{said:?}"
    );
    assert_eq!(get("MEMBER_UNBLOCKED"), "1");
    assert_eq!(get("INTEGRATIONS"), "ok");
    assert_eq!(get("CHAIN_PAUSED"), "1");
    assert_eq!(get("AUDIT_ACTIONS"), "promo_chain.pause,promo_chain.create");
    assert_eq!(get("CSP_VIOLATIONS"), "0");

    // What the browser did, as the API sees it.
    let chains = expect(admin.get("/admin/promo-chains").await.unwrap(), 200).unwrap();
    assert_eq!(chains.data()["items"][0]["is_active"], false);
    let found = expect(
        admin
            .get(&format!("/admin/users?phone=%2B{}", &phone[1..]))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let member_id = found.data()["items"][0]["id"].as_str().unwrap().to_owned();
    let audit = expect(
        admin
            .get(&format!("/admin/audit?target={member_id}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let actions: Vec<&str> = audit.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["member.unblock", "member.block"]);
    assert_eq!(
        audit.data()["items"][1]["after"]["reason"],
        "Проверка с доски"
    );
    let ended = member.get("/loyalty/balance").await.unwrap();
    assert_eq!(
        ended.status, 401,
        "blocking ended her session: {}",
        ended.body
    );
    for name in ["member-blocked", "businesses", "promo-chains", "audit"] {
        assert!(
            std::fs::metadata(artifact(&format!("{name}.png"))).is_ok_and(|m| m.len() > 1000),
            "screenshot {name} kept"
        );
    }
}
