//! The operations board in a real browser (Debian's headless Chromium, driven by Playwright
//! from `tests/browser/board.mjs`): an operator signs in, opens a dead job, presses Retry and
//! sees it done.

use crate::{
    fakes::{FakeSmsRu, SmsRuMode},
    helpers::{Options, TestApp, eventually, member_phone},
};
use krug::client::expect;
use serde_json::json;
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_dead_job_from_the_board_in_a_browser() {
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && std::path::Path::new(&format!("{root}/tests/browser/node_modules")).exists(),
        "the board test needs Debian's chromium and tests/browser/node_modules: run scripts/test.sh, which installs both"
    );
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

    let screenshot = format!("{root}/target/board-retry.png");
    let mut browser = Command::new("node")
        .arg(format!("{root}/tests/browser/board.mjs"))
        .env("BOARD_URL", &app.api.base)
        .env("OPERATOR_PHONE", operator)
        .env("JOB_QUEUE", "otp_send")
        .env("JOB_ID", &job_id)
        .env("SCREENSHOT", &screenshot)
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
    while let Some(line) = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
        .await
        .expect("the browser script said nothing for a minute")
    {
        eprintln!("[board.mjs] {line}");
        let (key, value) = line.split_once(' ').unwrap_or((&line, ""));
        if key == "CODE_REQUESTED" {
            let message = eventually(10, "the operator's SMS", || async {
                sms.sent()
                    .into_iter()
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
