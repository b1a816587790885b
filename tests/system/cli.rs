//! The `krug` binary as operators and the Procfile run it.

use crate::helpers::{member_phone, test_key_dir};
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use uuid::Uuid;

pub(crate) fn krug(database_url: &str, clickhouse_db: &str, prefix: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_krug"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("CLICKHOUSE_DB", clickhouse_db)
        .env("KRUG_QUEUE_PREFIX", prefix)
        .env("KRUG_KEY_DIR", test_key_dir())
        .env("RUST_LOG", "info");
    command
}

pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not stop within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `krug migrate` creates the database and the ClickHouse tables; `krug admin grant` gives
/// roles; `krug api`, `krug worker` and `krug scheduler` stop cleanly on SIGTERM; with
/// `LOG_FORMAT=json` every request's log line is JSON with its request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_migrates_grants_serves_and_stops_on_sigterm() {
    let name = format!("krug_test_{}", Uuid::new_v4().simple());
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let prefix = format!("kt-{}", &Uuid::new_v4().simple().to_string()[..12]);

    let migrate = krug(&database_url, &name, &prefix)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let tables = crate::helpers::http()
        .get(format!(
            "http://127.0.0.1:8123/?query=SHOW%20TABLES%20FROM%20{name}"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        tables.contains("transaction_facts") && tables.contains("rfm_snapshots"),
        "{tables}"
    );
    let again = krug(&database_url, &name, &prefix)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(again.status.success(), "migrate is idempotent");

    let phone = member_phone();
    let grant = krug(&database_url, &name, &prefix)
        .args(["admin", "grant", "--phone", &phone, "--role", "moderator"])
        .output()
        .unwrap();
    assert!(
        grant.status.success(),
        "{}",
        String::from_utf8_lossy(&grant.stderr)
    );
    assert!(String::from_utf8_lossy(&grant.stdout).contains(&phone));
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    let role: String = sqlx::query_scalar("SELECT role FROM user_roles")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(role, "moderator");
    let bad = krug(&database_url, &name, &prefix)
        .args(["admin", "grant", "--phone", &phone, "--role", "wizard"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--role must be"));

    let port = free_port();
    let mut api = krug(&database_url, &name, &prefix)
        .arg("api")
        .env("KRUG_BIND", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let http = crate::helpers::http();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .header("x-request-id", "cli-test-request")
            .send()
            .await;
        if response.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "krug api did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(&api);
    assert!(
        wait_exit(&mut api, Duration::from_secs(15)).success(),
        "krug api exits 0 on SIGTERM"
    );
    let lines: Vec<serde_json::Value> = BufReader::new(api.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("every log line is JSON"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "cli-test-request" && l["status"] == 200),
        "a request log line with its id: {lines:?}"
    );

    for command in ["worker", "scheduler"] {
        let mut child = krug(&database_url, &name, &prefix)
            .arg(command)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "krug {command} keeps running"
        );
        sigterm(&child);
        assert!(
            wait_exit(&mut child, Duration::from_secs(15)).success(),
            "krug {command} exits 0 on SIGTERM"
        );
    }

    db.close().await;
    let _ = crate::helpers::http()
        .post("http://127.0.0.1:8123/")
        .body(format!("DROP DATABASE IF EXISTS {name}"))
        .send()
        .await;
}

/// The worker's logs (JSON, at debug level) never carry a login code, with a real SMS
/// gateway; only the gateway receives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_codes_never_reach_the_logs() {
    use crate::fakes::{FakeSmsRu, SmsRuMode};
    let sms = FakeSmsRu::start(SmsRuMode::Accept).await;
    let app = crate::helpers::TestApp::spawn_with(crate::helpers::Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let mut worker = Command::new(env!("CARGO_BIN_EXE_krug"))
        .arg("worker")
        .env("DATABASE_URL", app.services.config.database_url.expose())
        .env("CLICKHOUSE_DB", &app.services.config.clickhouse_db)
        .env("KRUG_QUEUE_PREFIX", &app.prefix)
        .env("KRUG_KEY_DIR", test_key_dir())
        .env("KRUG_SMS_PROVIDER", "smsru")
        .env("SMSRU_API_ID", "test-api-id")
        .env("SMSRU_BASE_URL", sms.url())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let phone = member_phone();
    let sent = app
        .api
        .post("/auth/send-code", &serde_json::json!({"phone": phone}))
        .await
        .unwrap();
    assert_eq!(sent.status, 202);
    assert!(
        !sent
            .body
            .to_string()
            .chars()
            .collect::<String>()
            .contains("code\":\"")
    );
    let message =
        crate::helpers::eventually(10, "the SMS", || async { sms.sent().into_iter().next() }).await;
    let code: String = message.msg.chars().filter(char::is_ascii_digit).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(15)).success());
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut worker.stdout.take().unwrap(), &mut logs).unwrap();
    std::io::Read::read_to_string(&mut worker.stderr.take().unwrap(), &mut logs).unwrap();
    assert!(
        logs.contains("otp_send"),
        "the worker logged its work: {logs}"
    );
    assert!(!logs.contains(&code), "the code {code} appears in the logs");
    let stored: Vec<String> = sqlx::query_scalar("SELECT body FROM notifications")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(stored.iter().all(|b| !b.contains(&code)), "{stored:?}");
}

/// `krug demo` refuses staging and production before it reads the configuration or touches
/// a database: it says why on stderr, exits non-zero, and the database it was given is never
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_refuses_production_and_staging_and_creates_nothing() {
    use sqlx::Connection;
    for environment in ["production", "staging"] {
        let name = format!("krug_test_{}", Uuid::new_v4().simple());
        let database_url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let prefix = format!("kt-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let demo = krug(&database_url, &name, &prefix)
            .env("KRUG_ENV", environment)
            .arg("demo")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&demo.stderr);
        assert!(!demo.status.success(), "{environment}: {stderr}");
        assert!(
            stderr.contains(&format!("krug demo refuses KRUG_ENV={environment}")),
            "{environment}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        let mut admin = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .unwrap();
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        assert!(!exists, "{environment}: the demo created database {name}");
    }
}
