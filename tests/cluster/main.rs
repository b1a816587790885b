//! Redis Cluster: the system as production runs it — `krug api`, two `krug worker` and three
//! `krug scheduler`, each a process of its own — on a cluster of three masters and three
//! replicas that the test starts itself (`scripts/redis-cluster.sh` on ports 7100–7105, never
//! the shared 6379) and tears down after. Killing a master is safe here: the cluster is the
//! test's own. Its own test binary: cargo runs test binaries one after another, so six krug
//! processes and six Redis nodes never compete with the parallel system tests.

#[path = "../system/fakes.rs"]
#[allow(dead_code)]
mod fakes;
#[path = "../system/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::{eventually, fresh_database, member_phone, test_key_dir};
use krug::{Config, Services};
use krug_client::{ApiClient, expect, sign_in};
use rust_decimal::Decimal;
use serde_json::json;
use simulators::{Sale, Simulator, Vendor};
use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use uuid::Uuid;

/// The cluster's first port (its six nodes use BASE..BASE+5, their bus port + 10 000).
const BASE_PORT: u16 = 7100;

/// A Redis Cluster of the test's own, stopped (and its data removed) when dropped.
struct Cluster {
    base: u16,
    url: String,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct Node {
    id: String,
    port: u16,
    master: bool,
    failed: bool,
    /// The master's id, for a replica.
    replica_of: Option<String>,
    slots: Vec<(u16, u16)>,
}

fn script(action: &str, base: u16) -> std::process::Output {
    let output = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/redis-cluster.sh"
    ))
    .args([action, "--port", &base.to_string()])
    .output()
    .expect("scripts/redis-cluster.sh runs");
    assert!(
        output.status.success(),
        "redis-cluster.sh {action}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Cluster {
    fn start(base: u16) -> Self {
        // Leftovers of an interrupted run (a half-failed-over cluster) go first.
        script("stop", base);
        let started = script("start", base);
        let url = String::from_utf8_lossy(&started.stdout)
            .lines()
            .last()
            .expect("the script prints the REDIS_URL")
            .trim()
            .to_owned();
        assert!(url.starts_with("redis+cluster://"), "{url}");
        Self { base, url }
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn ports(&self) -> impl Iterator<Item = u16> {
        self.base..self.base + 6
    }

    /// The cluster as the node on `port` sees it.
    fn nodes(&self, port: u16) -> Vec<Node> {
        self.cli(port, &["cluster", "nodes"])
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 8 {
                    return None;
                }
                let port = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
                let flags = fields[2];
                Some(Node {
                    id: fields[0].to_owned(),
                    port,
                    master: flags.contains("master"),
                    failed: flags.contains("fail"),
                    replica_of: (fields[3] != "-").then(|| fields[3].to_owned()),
                    slots: fields[8..]
                        .iter()
                        .filter(|s| !s.starts_with('['))
                        .filter_map(|s| match s.split_once('-') {
                            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                            None => s.parse().ok().map(|n| (n, n)),
                        })
                        .collect(),
                })
            })
            .collect()
    }

    fn slot(&self, key: &str) -> u16 {
        self.cli(self.base, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap()
    }

    /// The live master that holds `key`'s slot, seen from a live node.
    fn master_of(&self, key: &str, via: u16) -> Node {
        let slot = self.slot(key);
        self.nodes(via)
            .into_iter()
            .find(|n| {
                n.master && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .unwrap_or_else(|| panic!("no live master holds slot {slot}"))
    }

    /// kill -9 of the node on `port` (a crash: it answers nothing, saves nothing).
    fn kill(&self, port: u16) {
        let pid_file = format!("/tmp/krug-redis-cluster-{}/{port}/redis.pid", self.base);
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{pid_file}: {e}"))
            .trim()
            .to_owned();
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success(), "kill -9 {pid}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/redis-cluster.sh"
        ))
        .args(["stop", "--port", &self.base.to_string()])
        .output();
    }
}

/// The krug processes of a test, SIGKILLed if the test ends before it stops them.
struct Processes(Vec<(String, Child)>);

impl Processes {
    /// SIGTERM to each of `names`, and waits for it to exit.
    fn stop(&mut self, prefix: &str) {
        let (stopping, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(name, _)| name.starts_with(prefix));
        self.0 = kept;
        for (_, child) in &stopping {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for (name, mut child) in stopping {
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "krug {name} did not stop");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sums the samples of a Prometheus counter whose labels include all of `labels`.
async fn counter(url: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = helpers::http()
        .get(url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum(),
    )
}

async fn count(db: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

/// QR scans and a CRM backfill while the master of the scans' queue (and of the reconcile
/// ticks' queue) is killed and its replica takes over. Afterwards: every QR code is one
/// purchase with one accrual, every CRM sale one transaction settled once, every balance
/// the sum of its ledger; and every per-second reconcile tick was enqueued once and ran
/// once, across the failover too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_run_loses_and_doubles_nothing() {
    const MEMBERS: usize = 8;
    const CODES: usize = 160;
    const SALES: usize = 2000;

    let cluster = Cluster::start(BASE_PORT);
    // A prefix whose scan queue and reconcile queue live on the same master: the failover
    // then hits scans, the relay that recovers them, and the ticks all at once.
    let prefix = loop {
        let prefix = format!("kt-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let scans = cluster.master_of(&format!("{{{prefix}.qr_scan}}"), cluster.base);
        let ticks = cluster.master_of(&format!("{{{prefix}.reconcile}}"), cluster.base);
        if scans.id == ticks.id {
            break prefix;
        }
    };
    let database_url = fresh_database().await;
    let name = database_url.rsplit('/').next().unwrap().to_owned();
    let logs = std::env::temp_dir().join(format!("krug-cluster-{prefix}"));
    std::fs::create_dir_all(&logs).unwrap();
    let krug = |command: &str, log: &str, extra: &[(&str, String)]| -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_krug"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &database_url)
            .env("CLICKHOUSE_DB", &name)
            .env("REDIS_URL", &cluster.url)
            .env("KRUG_QUEUE_PREFIX", &prefix)
            .env("KRUG_KEY_DIR", test_key_dir())
            .env("KRUG_CRM_ALLOWED_HOSTS", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .arg(command)
            .stdout(std::fs::File::create(logs.join(log)).unwrap())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    };
    let migrate = krug("migrate", "migrate.log", &[]).status().unwrap();
    assert!(migrate.success(), "krug migrate: see {}", logs.display());

    let api_port = free_port();
    let worker_metrics = [free_port(), free_port()];
    let scheduler_metrics = [free_port(), free_port(), free_port()];
    let worker_env = |port: u16| {
        vec![
            ("KRUG_METRICS_BIND", format!("127.0.0.1:{port}")),
            ("KRUG_WORKER_HEARTBEAT_S", "1".to_owned()),
            ("KRUG_WORKER_MISSED_HEARTBEATS", "3".to_owned()),
            // A scan whose job the dead master took with it is pushed again this soon.
            ("KRUG_RECONCILE_LOST_AFTER_S", "5".to_owned()),
        ]
    };
    let scheduler_env = |port: u16| {
        vec![
            ("KRUG_METRICS_BIND", format!("127.0.0.1:{port}")),
            ("KRUG_CRON_RECONCILE", "* * * * * *".to_owned()),
        ]
    };
    let mut processes = Processes(vec![(
        "api".to_owned(),
        krug(
            "api",
            "api.log",
            &[
                ("KRUG_BIND", format!("127.0.0.1:{api_port}")),
                ("KRUG_SCANS_PER_MEMBER_PER_MINUTE", "100000".to_owned()),
                ("KRUG_OTP_PER_IP_PER_HOUR", "100000".to_owned()),
            ],
        )
        .spawn()
        .unwrap(),
    )]);
    for (i, port) in worker_metrics.iter().enumerate() {
        let log = format!("worker-{i}.log");
        processes.0.push((
            format!("worker-{i}"),
            krug("worker", &log, &worker_env(*port)).spawn().unwrap(),
        ));
    }
    for (i, port) in scheduler_metrics.iter().enumerate() {
        let log = format!("scheduler-{i}.log");
        processes.0.push((
            format!("scheduler-{i}"),
            krug("scheduler", &log, &scheduler_env(*port))
                .spawn()
                .unwrap(),
        ));
    }
    let api = ApiClient::new(format!("http://127.0.0.1:{api_port}"));
    eventually(30, "krug api to answer", || async {
        api.get("//health").await.ok().filter(|r| r.status == 200)
    })
    .await;

    // The test reads login codes from the database, as `sign_in` does.
    let mut config = Config::from_env().unwrap();
    config.database_url = database_url.clone().into();
    config.clickhouse_db = name.clone();
    config.redis_url = cluster.url.clone().into();
    config.queue_prefix = prefix.clone();
    config.key_dir = test_key_dir();
    let services = Services::connect(config).unwrap();
    let db = services.db.clone();
    let operator_phone = "+79000000001";
    krug::commands::grant(services.clone(), operator_phone, "superadmin", None)
        .await
        .unwrap();
    let operator = sign_in(&services.db, &services.cache, &api, operator_phone)
        .await
        .unwrap();
    let crm = Simulator::start(Vendor::OneC).await.unwrap();
    let business = expect(
        operator
            .post(
                "/admin/businesses",
                &json!({"name": "Skinerica", "category": "beauty", "cashback_percent": "5",
                        "crm_type": "1c", "crm_base_url": crm.url,
                        "crm_credentials": Vendor::OneC.credentials()}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let business_id = business.data()["id"].as_str().unwrap().to_owned();
    let staff_phone = "+79000000100";
    expect(
        operator
            .post(
                &format!("/admin/businesses/{business_id}/staff"),
                &json!({"phone": staff_phone, "role": "staff"}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let staff = sign_in(&services.db, &services.cache, &api, staff_phone)
        .await
        .unwrap();
    let mut members = Vec::new();
    let mut phones = Vec::new();
    for _ in 0..MEMBERS {
        let phone = member_phone();
        members.push(
            sign_in(&services.db, &services.cache, &api, &phone)
                .await
                .unwrap(),
        );
        phones.push(phone);
    }
    // The cashier's codes, issued through the API (a code must name a staff member).
    let mut codes = Vec::new();
    for i in 0..CODES {
        let amount = format!("{}.{:02}", 500 + i * 3, i % 100);
        let qr = expect(
            staff
                .post("/business/qr", &json!({"amount": amount}))
                .await
                .unwrap(),
            200,
        )
        .unwrap();
        codes.push(qr.data()["code"].as_str().unwrap().to_owned());
    }
    let at = time::OffsetDateTime::now_utc() - time::Duration::minutes(30);
    crm.add_sales((0..SALES).map(|i| {
        Sale::purchase(
            format!("s-{i}"),
            Decimal::new(10_000 + i as i64 * 7, 2),
            at + time::Duration::milliseconds(i as i64),
            &phones[i % MEMBERS],
        )
    }));
    // The codes reach the replicas (asynchronous replication, on loopback within a moment):
    // this test is about jobs in flight, not about codes issued a millisecond before a crash.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Scans at a steady pace, each member her own codes; a 503 (the queue's master is down)
    // is tried again with the same code, as the app does, until the scan is accepted.
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for (m, member) in members.iter().enumerate() {
        let member = member.clone();
        let mine: Vec<String> = codes.iter().skip(m).step_by(MEMBERS).cloned().collect();
        senders.spawn(async move {
            let mut refused = 0usize;
            let mut accepted = Vec::new();
            for code in mine {
                loop {
                    let r = member
                        .post("/transactions/scan", &json!({"code": code}))
                        .await
                        .unwrap();
                    match r.status {
                        202 => {
                            accepted.push(code.clone());
                            break;
                        }
                        503 => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        other => panic!("scan of {code}: HTTP {other} {}", r.body),
                    }
                }
                tokio::time::sleep(Duration::from_millis(350)).await;
            }
            (accepted, refused)
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    expect(
        operator
            .post(&format!("/admin/businesses/{business_id}/poll"), &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The crash: the master of the scans' queue dies; its replica is promoted.
    let victim = cluster.master_of(&format!("{{{prefix}.qr_scan}}"), cluster.base);
    let survivor = cluster.ports().find(|p| *p != victim.port).unwrap();
    let replica = cluster
        .nodes(survivor)
        .into_iter()
        .find(|n| n.replica_of.as_deref() == Some(victim.id.as_str()))
        .expect("the master has a replica");
    let accepted_before: i64 = count(&db, "SELECT count(*) FROM scan_requests").await;
    cluster.kill(victim.port);
    let killed_at = started.elapsed();
    eventually(30, "the replica to be promoted", || async {
        cluster
            .cli(replica.port, &["role"])
            .starts_with("master")
            .then_some(())
    })
    .await;
    let promoted_at = started.elapsed();
    let promoted_unix = time::OffsetDateTime::now_utc().unix_timestamp();

    let mut accepted = Vec::new();
    let mut refused = 0;
    while let Some(sent) = senders.join_next().await {
        let (codes, r) = sent.unwrap();
        accepted.extend(codes);
        refused += r;
    }
    assert_eq!(accepted.len(), CODES, "every code was scanned, in the end");
    assert!(
        accepted_before > 0 && (accepted_before as usize) < CODES,
        "the master died mid-run: {accepted_before} of {CODES} scans in before it"
    );

    // Settled: every code's scan done, nothing open, every CRM sale settled. Reconcile
    // (every second, `lost_after` 5 s) pushes again what the dead master took with it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = count(
            &db,
            "SELECT count(*) FROM scan_requests WHERE state IN ('pending', 'processing')",
        )
        .await;
        let done = count(
            &db,
            "SELECT count(DISTINCT code) FROM scan_requests WHERE state = 'done'",
        )
        .await;
        let settled = count(
            &db,
            "SELECT count(*) FROM transactions WHERE source = 'crm' AND bonus_applied",
        )
        .await;
        if open == 0 && done == CODES as i64 && settled == SALES as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {open} scans open, {done}/{CODES} codes done, {settled}/{SALES} CRM sales \
             (logs in {})",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled_at = started.elapsed();

    // Nothing lost, nothing doubled: one purchase per code, one transaction per CRM sale,
    // one accrual per transaction, of the amount the rules give.
    let per_code: Vec<(String, i64)> = sqlx::query_as(
        "SELECT external_id, count(*) FROM transactions WHERE source = 'qr' GROUP BY external_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let per_code: BTreeMap<String, i64> = per_code.into_iter().collect();
    let expected: BTreeMap<String, i64> = codes.iter().map(|c| (c.clone(), 1)).collect();
    assert_eq!(per_code, expected, "each code one purchase");
    let done_scans = count(
        &db,
        "SELECT count(*) FROM scan_requests WHERE state = 'done'",
    )
    .await;
    assert_eq!(done_scans, CODES as i64, "each code done once");
    let failed_otherwise = count(
        &db,
        "SELECT count(*) FROM scan_requests WHERE state = 'failed' AND error_code <> 'queue_unavailable'",
    )
    .await;
    assert_eq!(failed_otherwise, 0, "no accepted scan failed");
    let (crm_transactions, crm_records) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT count(*), count(DISTINCT external_id) FROM transactions WHERE source = 'crm'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (crm_transactions, crm_records),
        (SALES as i64, SALES as i64),
        "each CRM sale one transaction"
    );
    let (transactions, accruals, accrued_transactions): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM transactions),
                (SELECT count(*) FROM bonus_ledger WHERE kind = 'accrual'),
                (SELECT count(DISTINCT transaction_id) FROM bonus_ledger WHERE kind = 'accrual')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (accruals, accrued_transactions),
        (transactions, transactions),
        "one accrual per transaction"
    );
    let wrong: Vec<(Uuid, Decimal, Decimal)> = sqlx::query_as(
        "SELECT t.id, t.amount, l.amount FROM transactions t
         JOIN bonus_ledger l ON l.transaction_id = t.id AND l.kind = 'accrual'",
    )
    .fetch_all(&db)
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
    let unbalanced = count(
        &db,
        "SELECT count(*) FROM (SELECT b.user_id FROM bonus_balances b
           LEFT JOIN bonus_ledger l ON l.user_id = b.user_id
           GROUP BY b.user_id, b.balance HAVING b.balance <> COALESCE(SUM(l.amount), 0)) x",
    )
    .await;
    assert_eq!(unbalanced, 0, "every balance is the sum of its ledger");

    // Each tick once. The schedulers stop; every reconcile tick they recorded ran once on the
    // workers: none lost with the dead master, none run twice (a worker whose Redis calls
    // failed mid-batch is rebuilt under a new name and its fetched jobs handed out again).
    // A tick that could not be enqueued before the next one was due (the queue's master
    // down) is skipped, not enqueued late; the schedules go on after the failover.
    eventually(30, "reconcile ticks after the failover", || async {
        let after: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM schedule_runs
             WHERE schedule = 'reconcile' AND tick_at > to_timestamp($1)",
        )
        .bind(promoted_unix as f64)
        .fetch_one(&db)
        .await
        .unwrap();
        (after >= 3).then_some(())
    })
    .await;
    processes.stop("scheduler");
    let ticks: Vec<(i64,)> = sqlx::query_as(
        "SELECT extract(epoch FROM tick_at)::bigint FROM schedule_runs
         WHERE schedule = 'reconcile' ORDER BY tick_at",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let ticks: Vec<i64> = ticks.into_iter().map(|(t,)| t).collect();
    let skipped: Vec<i64> = (ticks[0]..=*ticks.last().unwrap())
        .filter(|t| !ticks.contains(t))
        .collect();
    let worker_urls: Vec<String> = worker_metrics
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/metrics"))
        .collect();
    let runs = || async {
        let mut total = 0.0;
        for url in &worker_urls {
            total += counter(
                url,
                "jobs_processed_total",
                &[("queue", "reconcile"), ("outcome", "done")],
            )
            .await?;
        }
        Some(total as usize)
    };
    eventually(30, "a reconcile job run for each tick", || async {
        runs().await.filter(|n| *n >= ticks.len())
    })
    .await;
    // Long enough for a worker whose ack was lost to have its jobs handed out again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A tick's job has the same id in every scheduler, so the queue's set of finished jobs
    // holds each tick's job once however often it ran: runs beyond it are jobs run twice.
    // A tick whose enqueue timed out during the failover may still have reached Redis
    // without a row in schedule_runs (the scheduler could not know), so the set may hold
    // more ticks than the rows, never fewer.
    let finished = jobs::inspect::queue_counts(&services.queue, jobs::QueueName::Reconcile)
        .await
        .unwrap()
        .done as usize;
    assert_eq!(
        runs().await.unwrap(),
        finished,
        "no reconcile tick's job ran twice (logs in {})",
        logs.display()
    );
    assert!(
        finished >= ticks.len(),
        "every recorded tick ran: {finished} of {} (logs in {})",
        ticks.len(),
        logs.display()
    );
    println!(
        "master :{} killed at {killed_at:?}, replica :{} promoted at {promoted_at:?}, all settled at \
         {settled_at:?}; {refused} scans answered 503 meanwhile and were sent again; {} reconcile \
         ticks recorded, {finished} tick jobs ran once each, seconds skipped: {skipped:?}",
        victim.port,
        replica.port,
        ticks.len()
    );
    processes.stop("worker");
    processes.stop("api");
    services.db.close().await;
    let _ = helpers::http()
        .post("http://127.0.0.1:8123/")
        .body(format!("DROP DATABASE IF EXISTS {name}"))
        .send()
        .await;
    let _ = std::fs::remove_dir_all(&logs);
}
