//! Chaos: the worker killed mid-batch, Redis restarted, Postgres stopped — against real
//! services. These tests stop shared services, so they live in a test binary of their own
//! (cargo runs test binaries one after another) and run one at a time.

#[path = "../system/fakes.rs"]
#[allow(dead_code)]
mod fakes;
#[path = "../system/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::{Options, TestApp, eventually, member_phone, test_key_dir};
use krug_client::{ApiClient, expect};
use rust_decimal::Decimal;
use serde_json::json;
use simulators::{Sale, Simulator, Vendor};
use std::{
    process::{Child, Command, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};
use tokio::sync::Mutex;
use uuid::Uuid;

/// One chaos test at a time: they stop the services the others use.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// `krug worker` as a process of its own, with quick liveness checks and reconcile.
fn worker(app: &TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_krug"))
        .arg("worker")
        .env("DATABASE_URL", app.services.config.database_url.expose())
        .env("CLICKHOUSE_DB", &app.services.config.clickhouse_db)
        .env("KRUG_QUEUE_PREFIX", &app.prefix)
        .env("KRUG_KEY_DIR", test_key_dir())
        .env("KRUG_TIMEZONE", "Etc/GMT-14")
        .env("KRUG_WORKER_HEARTBEAT_S", "1")
        .env("KRUG_WORKER_MISSED_HEARTBEATS", "3")
        .env("KRUG_RECONCILE_LOST_AFTER_S", "3")
        .env("KRUG_CRM_ALLOWED_HOSTS", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("krug worker starts")
}

fn kill9(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Runs `scripts/services.sh`: starts whatever is down and waits for it.
fn services_up() {
    let status = Command::new(format!(
        "{}/scripts/services.sh",
        env!("CARGO_MANIFEST_DIR")
    ))
    .stdout(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success(), "services restart");
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap()
}

/// Every transaction accrued exactly once and exactly what the rules give, and every
/// balance is the sum of its ledger.
async fn audit(app: &TestApp) {
    let (transactions, accruals, distinct): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM transactions),
                (SELECT count(*) FROM bonus_ledger WHERE kind = 'accrual'),
                (SELECT count(DISTINCT transaction_id) FROM bonus_ledger WHERE kind = 'accrual')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        accruals, transactions,
        "one accrual per transaction: none missing"
    );
    assert_eq!(distinct, accruals, "no transaction accrued twice");
    let wrong: Vec<(Uuid, Decimal, Decimal)> = sqlx::query_as(
        "SELECT t.id, t.amount, l.amount FROM transactions t
         JOIN businesses b ON b.id = t.business_id
         JOIN bonus_ledger l ON l.transaction_id = t.id AND l.kind = 'accrual'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
    .into_iter()
    .filter(|(_, amount, accrued)| {
        domain::loyalty::accrual(*amount, Decimal::from(5), Decimal::ONE) != *accrued
    })
    .collect();
    assert!(
        wrong.is_empty(),
        "accruals differ from the rules: {wrong:?}"
    );
    app.assert_ledger_consistent().await;
}

/// A business (5 % cashback) with a 1C CRM holding `sales`, and members signed in.
async fn setup(
    app: &TestApp,
    members: usize,
    sales: usize,
) -> (ApiClient, Uuid, Simulator, Vec<ApiClient>) {
    let operator = app.operator().await;
    let sim = Simulator::start(Vendor::OneC).await.unwrap();
    let business = app
        .create_business(
            &operator,
            json!({"name": "Skinerica", "category": "beauty", "cashback_percent": "5",
                   "crm_type": "1c", "crm_base_url": sim.url, "crm_credentials": Vendor::OneC.credentials()}),
        )
        .await;
    let business_id: Uuid = business["id"].as_str().unwrap().parse().unwrap();
    let mut signed_in = Vec::new();
    let mut phones = Vec::new();
    for _ in 0..members {
        let phone = member_phone();
        signed_in.push(app.sign_in(&phone).await);
        phones.push(phone);
    }
    let at = time::OffsetDateTime::now_utc() - time::Duration::minutes(30);
    sim.add_sales((0..sales).map(|i| {
        Sale::purchase(
            format!("s-{i}"),
            Decimal::new(10_000 + i as i64 * 7, 2),
            at + time::Duration::milliseconds(i as i64),
            &phones[i % members],
        )
    }));
    (operator, business_id, sim, signed_in)
}

/// Puts `count` QR codes of this business straight into the store, as its cashier would
/// (a code of someone not on the staff is refused).
async fn codes(app: &TestApp, business_id: Uuid, count: usize) -> Vec<String> {
    let cashier: Uuid = sqlx::query_scalar(
        "INSERT INTO users (phone) VALUES ($1)
         ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING id",
    )
    .bind(member_phone())
    .fetch_one(&app.db)
    .await
    .unwrap();
    storage::businesses::put_staff(
        &app.db,
        business_id,
        cashier,
        domain::roles::StaffRole::Staff,
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    for i in 0..count {
        let code = domain::codes::human_code(&mut rand::rng(), 12);
        let qr = storage::cache::QrCode {
            business_id,
            amount: Decimal::new(50_000 + i as i64 * 13, 2),
            issued_by: cashier,
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(5),
        };
        assert!(
            app.services
                .cache
                .put_qr(&code, &qr, Duration::from_secs(900))
                .await
                .unwrap()
        );
        out.push(code);
    }
    out
}

async fn scan_all(members: &[ApiClient], codes: Vec<String>) -> Vec<(u16, Option<String>)> {
    let mut sends = tokio::task::JoinSet::new();
    for (i, code) in codes.into_iter().enumerate() {
        let member = members[i % members.len()].clone();
        sends.spawn(async move {
            let r = member
                .post("/transactions/scan", &json!({"code": code}))
                .await
                .unwrap();
            (r.status, r.data()["job_id"].as_str().map(str::to_owned))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = sends.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// Until every scan is finished and every CRM sale settled, nudging `reconcile` meanwhile.
async fn wait_until_settled(app: &TestApp, scans: i64, crm: i64, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let open = count(
            app,
            "SELECT count(*) FROM scan_requests WHERE state IN ('pending', 'processing')",
        )
        .await;
        let done = count(
            app,
            "SELECT count(*) FROM scan_requests WHERE state = 'done'",
        )
        .await;
        let settled = count(
            app,
            "SELECT count(*) FROM transactions WHERE source = 'crm' AND bonus_applied",
        )
        .await;
        if open == 0 && done == scans && settled == crm {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {open} scans open, {done}/{scans} done, {settled}/{crm} CRM sales"
        );
        let _ = jobs::schedule::trigger(&app.env.queue, &app.env.db, "reconcile").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// kill -9 the worker three times in the middle of QR scans and a CRM backfill; restarted,
/// it finishes everything: no scan lost, no purchase missing or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_three_times_loses_and_doubles_nothing() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let mut worker_process = worker(&app);
    let (operator, business_id, _sim, members) = setup(&app, 20, 3000).await;
    let qr = codes(&app, business_id, 300).await;

    expect(
        operator
            .post(&format!("/admin/businesses/{business_id}/poll"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let sent = scan_all(&members, qr).await;
    assert!(sent.iter().all(|(status, _)| *status == 202), "{sent:?}");
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        kill9(&mut worker_process);
        tokio::time::sleep(Duration::from_millis(200)).await;
        worker_process = worker(&app);
    }

    wait_until_settled(&app, 300, 3000, 180).await;
    stop(worker_process);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM transactions WHERE source = 'qr'"
        )
        .await,
        300
    );
    audit(&app).await;
}

/// Redis goes away: the API refuses enqueues quickly with 503 `queue_unavailable`; Redis
/// comes back empty (no persistence): the worker reconnects and reconcile re-enqueues what
/// Postgres recorded, so every scan accepted before completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing_recorded_in_postgres() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let worker_process = worker(&app);
    let (_operator, business_id, _sim, members) = setup(&app, 10, 0).await;
    let qr = codes(&app, business_id, 200).await;
    let later = codes(&app, business_id, 1).await;

    let sent = scan_all(&members, qr).await;
    let accepted = sent.iter().filter(|(status, _)| *status == 202).count() as i64;
    let _ = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "shutdown", "nosave"])
        .status();

    let started = Instant::now();
    let refused = members[0]
        .post("/transactions/scan", &json!({"code": later[0]}))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (refused.status, refused.error_code()),
        (503, Some("queue_unavailable"))
    );
    let ready = app.api.get("//ready").await.unwrap();
    assert_eq!(ready.status, 503);

    services_up();
    wait_until_settled(&app, accepted, 0, 120).await;
    stop(worker_process);
    assert_eq!(app.api.get("//ready").await.unwrap().status, 200);
    let failed = count(&app, "SELECT count(*) FROM scan_requests WHERE state = 'failed' AND error_code <> 'queue_unavailable'").await;
    assert_eq!(failed, 0, "no accepted scan failed");
    audit(&app).await;
}

/// Postgres stops mid-run: /ready says so, jobs fail and retry, nothing is half-written; when
/// it is back, all the work completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_delays_work_but_loses_and_halves_nothing() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn_with(Options {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let worker_process = worker(&app);
    let (operator, business_id, _sim, members) = setup(&app, 10, 2000).await;
    let qr = codes(&app, business_id, 200).await;

    expect(
        operator
            .post(&format!("/admin/businesses/{business_id}/poll"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    let sent = scan_all(&members, qr).await;
    assert!(sent.iter().all(|(status, _)| *status == 202));
    let versions = std::fs::read_dir("/etc/postgresql")
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let version = versions.to_string_lossy().to_string();
    let _ = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "stop",
            "-m",
            "fast",
        ])
        .status();

    let ready = eventually(10, "/ready to report Postgres", || async {
        let r = app.api.get("//ready").await.ok()?;
        (r.status == 503
            && r.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("postgres"))
        .then_some(r)
    })
    .await;
    assert_eq!(ready.error_code(), Some("not_ready"));
    let during = members[0].get("/loyalty/balance").await.unwrap();
    assert_eq!(during.status, 503, "{}", during.body);
    tokio::time::sleep(Duration::from_secs(2)).await;

    services_up();
    wait_until_settled(&app, 200, 2000, 180).await;
    stop(worker_process);
    audit(&app).await;
    let _ = Decimal::from_str("0");
}
