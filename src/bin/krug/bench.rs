//! `krug bench`: the speed figures of DESIGN.md, measured on this machine with real
//! services, printed as a table and written to `bench/results.md`.
//!
//! Run it with a release build (`scripts/bench.sh`). It uses its own Redis prefix and
//! database, and removes both afterwards.
//!
//! # Adding a figure
//!
//! [`TARGETS`] is DESIGN.md's speed table, in its order: every target is printed, measured
//! or not. A part of the bench (a function returning [`Figure`]s) names the target it
//! measures by its id, says whether the target is met and, when it is not, the measured
//! reason. Add the part to [`PARTS`] and call it from [`run`] under `options.wants(id)`.

mod partner;

pub use partner::{DASHBOARD_TRANSACTIONS, SETTLEMENT_ENTRIES};

use jobs::{
    Env, Job, JobCtx, JobError, JobQueue, QueueName, RunJob, client::RawJob, runtime::WorkerOptions,
};
use krug::app::Services;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One target of DESIGN.md's speed table.
pub struct Target {
    /// The bench part that measures it (`--only ID`).
    pub id: &'static str,
    pub what: &'static str,
    pub target: &'static str,
    /// What a user would otherwise pick, as DESIGN.md quotes it.
    pub comparison: &'static str,
}

/// DESIGN.md's speed table, in its order.
pub const TARGETS: &[Target] = &[
    Target {
        id: "jobs",
        what: "no-op jobs through apalis-redis, one worker process, 100 000 backlog",
        target: "≥ 38 000 jobs/s, and the backlog drains",
        comparison: "BullMQ 5 (c=64) 19 000/s; Celery 5 < 1 000/s; apalis-redis 1.0.0 8–10 000/s on 5 000 jobs, stalls past ~8 000",
    },
    Target {
        id: "scan",
        what: "QR scan, POST /transactions/scan → bonus in the ledger",
        target: "p99 ≤ 25 ms at 500 scans/s, open-loop load",
        comparison: "one Postgres commit per purchase tops out near 2 800/s here",
    },
    Target {
        id: "ingest",
        what: "CRM ingest: fake CRM → transactions + ledger + balances",
        target: "≥ 20 000 transactions/s",
        comparison: "batched set-based writes ~43 000/s here; one commit per purchase ~2 800/s",
    },
    Target {
        id: "rfm",
        what: "nightly RFM",
        target: "1 000 000 members / 10 000 000 facts in ≤ 30 s",
        comparison: "ClickHouse aggregates 1M facts per member in ~35 ms here",
    },
    Target {
        id: "balance",
        what: "GET /loyalty/balance",
        target: "≥ 50 % of a bare poem handler's requests/s in the same run, p99 ≤ 5 ms",
        comparison: "a bare poem handler, measured in the same run",
    },
    Target {
        id: "bullmq",
        what: "job throughput against BullMQ, side by side in the same run on the same Redis",
        target: "≥ 2×",
        comparison: "BullMQ 5 (Node), concurrency 64, run by the bench itself",
    },
    Target {
        id: "settlement",
        what: "monthly settlement",
        target: "10 000 000 ledger entries closed in ≤ 60 s",
        comparison: "",
    },
    Target {
        id: "search",
        what: "GET /search",
        target: "p99 ≤ 20 ms at 200 requests/s over 10 000 businesses and 100 000 events",
        comparison: "",
    },
    Target {
        id: "dashboard",
        what: "GET /business/dashboard for a month",
        target: "p99 ≤ 50 ms over 1 000 000 transactions of that business",
        comparison: "",
    },
    Target {
        id: "cluster",
        what: "scale-out on a Redis Cluster (3 masters on loopback)",
        target: "two worker processes ≥ 1.6× one; no job lost, each tick once",
        comparison: "",
    },
];

/// The parts `--only` accepts; a target whose id is missing here has no benchmark yet.
pub const PARTS: &[&str] = &[
    "jobs",
    "scan",
    "ingest",
    "rfm",
    "balance",
    "search",
    "dashboard",
    "settlement",
    "cluster",
];

/// What a figure says about its target.
#[derive(Debug, Clone)]
pub enum Verdict {
    Met,
    /// Not met, and the measured reason (a figure, not a guess).
    NotMet(String),
    /// A figure beside the one the target is judged on (another rate, a smaller size).
    Supporting,
    /// Could not be measured in this run, and why.
    NotMeasured(String),
}

/// One measured figure of a target.
pub struct Figure {
    /// [`Target::id`].
    pub target: &'static str,
    /// What exactly was run (size, rate, concurrency).
    pub what: String,
    pub measured: String,
    pub verdict: Verdict,
    /// A comparison measured in the same run, shown beside DESIGN.md's.
    pub comparison: Option<String>,
}

/// Which parts to run (all by default).
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    pub only: Vec<String>,
    /// Jobs in the throughput backlog.
    pub jobs: usize,
    /// The dashboard business's transactions (DESIGN.md: 1 000 000).
    pub dashboard_transactions: usize,
    /// Ledger entries of the settled month (DESIGN.md: 10 000 000).
    pub settlement_entries: usize,
}

impl BenchOptions {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

pub async fn run(services: Services, options: BenchOptions) -> anyhow::Result<()> {
    if let Some(unknown) = options.only.iter().find(|p| !PARTS.contains(&p.as_str())) {
        anyhow::bail!("--only {unknown}: the parts are {}", PARTS.join(", "));
    }
    let mut figures = Vec::new();
    if options.wants("jobs") {
        println!("== job throughput");
        let mut ours = None;
        for concurrency in [1, 64] {
            let (figure, drain) = job_throughput(&services, options.jobs, concurrency).await?;
            figures.push(figure);
            ours = Some(drain);
        }
        println!("== BullMQ 5, the same backlog on the same Redis");
        if let Some(ours) = ours {
            figures.push(bullmq_throughput(&services, options.jobs, 64, ours).await);
        }
    }
    let needs_system = ["scan", "ingest", "balance", "search", "dashboard"]
        .iter()
        .any(|p| options.wants(p));
    if needs_system {
        let system = System::start(&services).await?;
        let result = async {
            if options.wants("scan") {
                println!("== QR scan, POST → bonus in the ledger (open loop)");
                figures.extend(scan_latency(&system).await?);
            }
            if options.wants("ingest") {
                println!("== CRM ingest");
                figures.push(crm_ingest(&system, 100_000).await?);
            }
            if options.wants("balance") {
                println!("== GET /loyalty/balance next to a bare poem handler");
                figures.extend(balance_rps(&system).await?);
            }
            if options.wants("search") {
                println!("== GET /search over the catalogue");
                figures.push(search_latency(&system).await?);
            }
            if options.wants("dashboard") {
                println!("== GET /business/dashboard for a month");
                figures.extend(
                    partner::dashboard_latency(&system, options.dashboard_transactions).await?,
                );
            }
            anyhow::Ok(())
        }
        .await;
        system.stop().await;
        result?;
    }
    if options.wants("settlement") {
        println!("== monthly settlement closed");
        figures.push(partner::settlement_close(&services, options.settlement_entries).await?);
    }
    if options.wants("cluster") {
        println!("== scale-out: worker processes on a Redis Cluster");
        figures.push(cluster_scale_out(options.jobs).await?);
    }
    // Last: ClickHouse goes on merging what was loaded for a while after, which would
    // weigh on the other figures.
    if options.wants("rfm") {
        println!("== nightly RFM in ClickHouse");
        // The issue's size, then DESIGN.md's.
        figures.push(rfm_snapshot(&services, 100_000, 1_000_000).await?);
        figures.push(rfm_snapshot(&services, 1_000_000, 10_000_000).await?);
    }
    report(&figures, &options)
}

/// The system under load: `krug api` and `krug worker` as processes of their own (the load
/// comes from this one), on a database and Redis prefix of the benchmark's own.
struct System {
    services: Services,
    api: String,
    children: Vec<std::process::Child>,
    prefix: String,
    database: String,
}

impl System {
    async fn start(base: &Services) -> anyhow::Result<Self> {
        let prefix = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let database = format!("krug_bench_{}", &Uuid::new_v4().simple().to_string()[..8]);
        let mut config = base.config.clone();
        config.database_url = replace_database(config.database_url.expose(), &database).into();
        config.queue_prefix = prefix.clone();
        config.database_max_connections = 40;
        krug::app::migrate(&config).await?;
        let services = Services::connect(config.clone())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe()?;
        let spawn = |args: &[&str]| {
            std::process::Command::new(&exe)
                .args(args)
                .env("DATABASE_URL", config.database_url.expose())
                .env("DATABASE_MAX_CONNECTIONS", "40")
                .env("KRUG_QUEUE_PREFIX", &prefix)
                .env("KRUG_KEY_DIR", &config.key_dir)
                .env("KRUG_BIND", format!("127.0.0.1:{port}"))
                // The CRM simulators listen on loopback.
                .env("KRUG_CRM_ALLOWED_HOSTS", "127.0.0.1")
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .spawn()
        };
        let children = vec![spawn(&["api"])?, spawn(&["worker"])?];
        let api = format!("http://127.0.0.1:{port}");
        let http = adapters::http_client(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{api}/health")).send().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "krug api did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            services,
            api,
            children,
            prefix,
            database,
        })
    }

    /// Waits until no job is pending or running on any queue, so that one measurement's
    /// follow-up jobs (coupons, pushes) do not run into the next one's figures.
    async fn settle(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut busy = 0;
            for name in jobs::queue::QueueName::ALL {
                let counts = jobs::inspect::queue_counts(&self.services.queue, name).await?;
                busy += counts.pending + counts.running;
            }
            if busy == 0 {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(300) {
                anyhow::bail!("{busy} jobs still waiting after 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn stop(mut self) {
        for child in &mut self.children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        self.services.db.close().await;
        let _ = delete_keys(&self.services, &self.prefix).await;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&replace_database(
            self.services.config.database_url.expose(),
            "postgres",
        ))
        .await
        {
            let _ = sqlx::Executor::execute(
                &mut admin,
                sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.database
                )),
            )
            .await;
        }
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    format!("{base}/{database}")
}

/// A job that does nothing: the platform's own cost per job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Noop {
    n: u64,
}

static NOOPS_DONE: AtomicU64 = AtomicU64::new(0);

impl Job for Noop {
    // An isolated prefix makes any queue name free to use.
    const QUEUE: QueueName = QueueName::Notify;
}

impl RunJob for Noop {
    async fn run(self, _ctx: JobCtx) -> Result<(), JobError> {
        NOOPS_DONE.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// `krug bench-noop-worker`: a worker process of no-op jobs (concurrency 64) on
/// `REDIS_URL` under `KRUG_QUEUE_PREFIX`, until SIGTERM; the scale-out part starts one or two.
pub async fn noop_worker(services: Services, concurrency: usize) -> anyhow::Result<()> {
    let shutdown = krug::app::shutdown_signal();
    let mut options = WorkerOptions::new(services.config.redis_url.expose(), vec![Noop::QUEUE]);
    options.concurrency = Some(concurrency);
    jobs::runtime::run_single::<Noop>(services.job_env(), options, shutdown).await;
    Ok(())
}

/// The cluster's first port for the scale-out part (`scripts/redis-cluster.sh`): not the
/// development cluster's 7000 nor the cluster test's 7100.
const BENCH_CLUSTER_PORT: u16 = 7200;

/// DESIGN.md's scale-out row: `count` no-op jobs drained by one `krug bench-noop-worker`
/// process, then another `count` by two, on a three-master Redis Cluster of the bench's own
/// on loopback; the figure is the two processes' rate over the one's. Each rate is timed
/// from the first job done to the last (a process's start-up is not the platform's speed).
async fn cluster_scale_out(count: usize) -> anyhow::Result<Figure> {
    use anyhow::Context;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-cluster.sh");
    let port = BENCH_CLUSTER_PORT.to_string();
    let cluster = |action: &str| {
        std::process::Command::new(script)
            .args([action, "--port", &port])
            .output()
    };
    cluster("stop")?;
    let started = cluster("start")?;
    anyhow::ensure!(
        started.status.success(),
        "redis-cluster.sh start: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let url = String::from_utf8_lossy(&started.stdout)
        .lines()
        .last()
        .context("redis-cluster.sh printed no URL")?
        .trim()
        .to_owned();
    let result = async {
        let mut rates = Vec::new();
        for processes in [1usize, 2] {
            let rate = drain_with_processes(&url, count, processes).await?;
            println!("  {processes} worker process(es): {rate:.0} jobs/s");
            rates.push(rate);
        }
        anyhow::Ok(rates)
    }
    .await;
    let _ = cluster("stop");
    let rates = result?;
    let ratio = rates[1] / rates[0];
    Ok(Figure {
        target: "cluster",
        what: format!(
            "{count} no-op jobs, concurrency 64 per process, 3 masters + 3 replicas on loopback"
        ),
        measured: format!(
            "1 process {:.0}/s, 2 processes {:.0}/s: {ratio:.2}×",
            rates[0], rates[1]
        ),
        verdict: if ratio >= 1.6 {
            Verdict::Met
        } else {
            Verdict::NotMet(format!(
                "{ratio:.2}× with {} cores for six Redis nodes, the workers and the bench",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ))
        },
        comparison: None,
    })
}

/// Pushes `count` no-op jobs under a fresh prefix, starts `processes` worker processes and
/// returns the rate (jobs/s) from the first job done to the last.
async fn drain_with_processes(url: &str, count: usize, processes: usize) -> anyhow::Result<f64> {
    let prefix = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let connection = storage::redis_target::RedisTarget::parse(url)?.connect()?;
    let queue = JobQueue::new(connection, prefix.clone());
    queue.push_raw(Noop::QUEUE, &noop_jobs(count)).await?;
    let mut workers = Vec::new();
    for _ in 0..processes {
        workers.push(
            std::process::Command::new(std::env::current_exe()?)
                .arg("bench-noop-worker")
                .env("REDIS_URL", url)
                .env("KRUG_QUEUE_PREFIX", &prefix)
                .env("RUST_LOG", "error")
                .stdout(std::process::Stdio::null())
                .spawn()?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_done = None;
    let outcome = loop {
        let counts = jobs::inspect::queue_counts(&queue, Noop::QUEUE).await?;
        if counts.done > 0 && first_done.is_none() {
            first_done = Some((Instant::now(), counts.done));
        }
        if counts.done >= count as u64 {
            let (since, already) = first_done.expect("set above");
            break Ok((count as u64 - already) as f64 / since.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "{} of {count} jobs done after 10 minutes",
                counts.done
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for worker in &mut workers {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status();
    }
    for mut worker in workers {
        let _ = worker.wait();
    }
    outcome
}

/// `count` no-op jobs, due now.
fn noop_jobs(count: usize) -> Vec<RawJob> {
    (0..count as u64)
        .map(|n| RawJob {
            id: Uuid::now_v7(),
            payload: serde_json::to_vec(&Noop { n }).expect("serializes"),
            max_attempts: 1,
            run_at: None,
            idempotency_key: None,
            from_outbox: false,
        })
        .collect()
}

/// A drain's rate (jobs/s) and CPU cost.
#[derive(Debug, Clone, Copy)]
struct Drain {
    rate: f64,
    cpu: CpuPerJob,
}

/// Pushes `count` no-op jobs, then times one worker draining them at `concurrency`.
/// The figure and the drain it measured.
async fn job_throughput(
    services: &Services,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Figure, Drain)> {
    let prefix = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let queue = JobQueue::new(services.queue.connection(), prefix.clone());
    let env = Arc::new(Env {
        queue: queue.clone(),
        ..Arc::into_inner(services.job_env()).expect("a fresh Env")
    });
    let jobs = noop_jobs(count);
    let pushed = Instant::now();
    queue.push_raw(Noop::QUEUE, &jobs).await?;
    let push_rate = count as f64 / pushed.elapsed().as_secs_f64();
    println!(
        "  pushed {count} no-op jobs at {push_rate:.0}/s; draining at concurrency {concurrency}…"
    );

    NOOPS_DONE.store(0, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let mut options = WorkerOptions::new(services.config.redis_url.expose(), vec![Noop::QUEUE]);
    options.concurrency = Some(concurrency);
    let cpu_before = CpuSpent::now(services).await?;
    let started = Instant::now();
    let worker = tokio::spawn(jobs::runtime::run_single::<Noop>(
        env,
        options,
        shutdown.clone(),
    ));
    let deadline = started + Duration::from_secs(600);
    while NOOPS_DONE.load(Ordering::Relaxed) < count as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let done = NOOPS_DONE.load(Ordering::SeqCst);
    let per_job = CpuSpent::now(services)
        .await?
        .since(&cpu_before)
        .per_job(done);
    shutdown.cancel();
    let _ = worker.await;
    let left: usize = redis::cmd("LLEN")
        .arg(format!(
            "{}:active",
            JobQueue::namespace(&prefix, Noop::QUEUE)
        ))
        .query_async(&mut queue.connection())
        .await?;
    delete_keys(services, &prefix).await?;
    let rate = done as f64 / elapsed.as_secs_f64();
    let drained = done == count as u64 && left == 0;
    let measured = format!(
        "{rate:.0} jobs/s{}; CPU per job: {per_job}",
        if drained {
            ", backlog drained".to_owned()
        } else {
            format!(", NOT drained ({done} done, {left} left)")
        }
    );
    let verdict = match (concurrency, drained) {
        (_, false) => Verdict::NotMet(format!("{left} jobs left after 10 minutes")),
        (64, true) if rate >= 38_000.0 => Verdict::Met,
        (64, true) => Verdict::NotMet(format!("{rate:.0} jobs/s; {}", per_job.bound(rate))),
        _ => Verdict::Supporting,
    };
    Ok((
        Figure {
            target: "jobs",
            what: format!("{count} backlog, concurrency {concurrency}"),
            measured,
            verdict,
            comparison: None,
        },
        Drain { rate, cpu: per_job },
    ))
}

/// BullMQ 5 (`bench/bullmq/throughput.mjs`, Node) drains the same number of no-op jobs at
/// the same concurrency on the same Redis, right after our worker did; the figure is our
/// rate over BullMQ's, with each drain's CPU cost per job (where the difference comes
/// from). Not measured, with the reason, when Node or npm is missing.
async fn bullmq_throughput(
    services: &Services,
    count: usize,
    concurrency: usize,
    ours: Drain,
) -> Figure {
    let figure = |measured: String, verdict: Verdict| Figure {
        target: "bullmq",
        what: format!("{count} no-op jobs each, concurrency {concurrency}"),
        measured,
        verdict,
        comparison: None,
    };
    match run_bullmq(services, count, concurrency).await {
        Ok(theirs) if theirs.rate > 0.0 => {
            let ratio = ours.rate / theirs.rate;
            println!(
                "  BullMQ drained at {:.0}/s; krug {:.0}/s: {ratio:.2}×",
                theirs.rate, ours.rate
            );
            figure(
                format!(
                    "krug {:.0}/s, BullMQ {:.0}/s: {ratio:.2}×; CPU per job: krug {}, BullMQ {}",
                    ours.rate, theirs.rate, ours.cpu, theirs.cpu
                ),
                if ratio >= 2.0 {
                    Verdict::Met
                } else {
                    Verdict::NotMet(format!(
                        "{ratio:.2}×: krug's jobs cost {:.2}× less CPU than BullMQ's, but its drain kept {:.1} cores busy and BullMQ's {:.1}",
                        (theirs.cpu.redis_us + theirs.cpu.worker_us)
                            / (ours.cpu.redis_us + ours.cpu.worker_us),
                        ours.cpu.busy_cores(ours.rate),
                        theirs.cpu.busy_cores(theirs.rate)
                    ))
                },
            )
        }
        Ok(_) => figure(
            "—".to_owned(),
            Verdict::NotMeasured("BullMQ drained nothing".into()),
        ),
        Err(e) => {
            println!("  BullMQ not run: {e:#}");
            figure("—".to_owned(), Verdict::NotMeasured(format!("{e:#}")))
        }
    }
}

/// Installs BullMQ (pinned by `bench/bullmq/package-lock.json`) if needed and runs it; its
/// drain.
async fn run_bullmq(
    services: &Services,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Drain> {
    use anyhow::Context;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/bullmq");
    let node = tokio::process::Command::new("node")
        .arg("--version")
        .output()
        .await
        .context("Node.js is not installed (BullMQ runs on it)")?;
    anyhow::ensure!(node.status.success(), "node --version failed");
    if !dir.join("node_modules/bullmq").exists() {
        println!("  installing bullmq in {} (npm ci)", dir.display());
        let status = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .await
            .context("npm is not installed")?;
        anyhow::ensure!(status.success(), "npm ci in {} failed", dir.display());
    }
    let prefix = format!("bench-bullmq-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let output = tokio::process::Command::new("node")
        .arg(dir.join("throughput.mjs"))
        .env("REDIS_URL", services.config.redis_url.expose())
        .env("JOBS", count.to_string())
        .env("CONCURRENCY", concurrency.to_string())
        .env("PREFIX", &prefix)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    delete_keys(services, &prefix).await?;
    anyhow::ensure!(
        output.status.success(),
        "the BullMQ run failed ({})",
        output.status
    );
    let line = String::from_utf8_lossy(&output.stdout);
    let answer: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("BullMQ's run printed no figure: {line}"))?;
    anyhow::ensure!(
        answer["drained"] == true,
        "BullMQ did not drain its backlog: {answer}"
    );
    println!(
        "  BullMQ pushed {} jobs/s with addBulk",
        answer["pushed_per_s"]
    );
    let number = |field: &str| {
        answer[field]
            .as_f64()
            .with_context(|| format!("no {field} in BullMQ's answer"))
    };
    Ok(Drain {
        rate: number("processed_per_s")?,
        cpu: CpuPerJob {
            redis_us: number("redis_cpu_us_per_job")?,
            worker_us: number("worker_cpu_us_per_job")?,
        },
    })
}

/// CPU time spent so far, in seconds, by the Redis server (`INFO cpu`, all its threads) and
/// by this process (`/proc/self/stat`: the worker the bench runs in it, and the bench's own
/// polling, which sleeps): what a drain's jobs cost each side.
#[derive(Debug, Clone, Copy)]
struct CpuSpent {
    redis: f64,
    worker: f64,
}

impl CpuSpent {
    async fn now(services: &Services) -> anyhow::Result<Self> {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut services.queue.connection())
            .await?;
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        Ok(Self {
            redis: redis_cpu_seconds(&info)?,
            worker: process_cpu_seconds(&stat)?,
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            redis: self.redis - before.redis,
            worker: self.worker - before.worker,
        }
    }

    fn per_job(&self, jobs: u64) -> CpuPerJob {
        let micros = |seconds: f64| seconds * 1e6 / jobs.max(1) as f64;
        CpuPerJob {
            redis_us: micros(self.redis),
            worker_us: micros(self.worker),
        }
    }
}

/// A drain's CPU cost per job, in microseconds.
#[derive(Debug, Clone, Copy)]
struct CpuPerJob {
    redis_us: f64,
    worker_us: f64,
}

impl std::fmt::Display for CpuPerJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Redis {:.1} µs + worker {:.1} µs",
            self.redis_us, self.worker_us
        )
    }
}

impl CpuPerJob {
    /// How many cores a drain at `rate` jobs/s kept busy (Redis and the worker together).
    fn busy_cores(&self, rate: f64) -> f64 {
        (self.redis_us + self.worker_us) * rate / 1e6
    }

    /// What limits a drain at `rate`: the rates these costs allow on this machine (Redis
    /// runs commands on one thread; Redis and the worker share the cores), and how much of
    /// the cores the drain used — well under all of them means it waited, not computed.
    fn bound(&self, rate: f64) -> String {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        format!(
            "at these costs Redis's one thread allows {:.0}/s and {cores} cores {:.0}/s; the drain kept {:.1} of {cores} cores busy",
            1e6 / self.redis_us,
            cores * 1e6 / (self.redis_us + self.worker_us),
            self.busy_cores(rate)
        )
    }
}

/// `used_cpu_sys` + `used_cpu_user` of `INFO cpu`.
fn redis_cpu_seconds(info: &str) -> anyhow::Result<f64> {
    let field = |name: &str| -> anyhow::Result<f64> {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| anyhow::anyhow!("INFO cpu has no {name}"))?
            .trim()
            .parse()
            .map_err(Into::into)
    };
    Ok(field("used_cpu_sys")? + field("used_cpu_user")?)
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds (Linux counts them in ticks of
/// 1/100 s on every architecture the bench runs on).
fn process_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let after_name = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow::anyhow!("no command name in {stat}"))?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc stat line"))?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

async fn delete_keys(services: &Services, prefix: &str) -> anyhow::Result<()> {
    let mut conn = services.queue.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}

/// Prints every target of DESIGN.md with its figures; a full run also writes the table to
/// `bench/results.md` (a partial run would leave the file with only some of the figures).
fn report(figures: &[Figure], options: &BenchOptions) -> anyhow::Result<()> {
    let full = options.only.is_empty();
    let mut md = String::new();
    writeln!(md, "# Benchmark results\n")?;
    writeln!(
        md,
        "Measured by `scripts/bench.sh` (`krug bench`, release build) on {}.\n",
        machine()
    )?;
    writeln!(
        md,
        "| target (DESIGN.md) | measured on | measured | met | for comparison |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    println!("\n{:<64} {:<44} MET", "MEASURED ON", "MEASURED");
    for target in TARGETS {
        println!("\n{}: {}", target.what, target.target);
        let mine: Vec<&Figure> = figures.iter().filter(|f| f.target == target.id).collect();
        let mut first = true;
        let mut row = |what: &str, measured: &str, met: &str, comparison: &str| {
            println!("  {what:<62} {measured:<44} {met}");
            let heading = if first {
                format!("{}: {}", target.what, target.target)
            } else {
                String::new()
            };
            first = false;
            writeln!(
                md,
                "| {heading} | {what} | {measured} | {met} | {comparison} |"
            )
        };
        if mine.is_empty() {
            // BullMQ runs inside the `jobs` part, side by side with it.
            let part = if target.id == "bullmq" {
                "jobs"
            } else {
                target.id
            };
            let why = if !PARTS.contains(&part) {
                "no benchmark yet"
            } else if !options.wants(part) {
                "not run (partial run)"
            } else {
                "the part produced no figure"
            };
            row("—", "—", &format!("not measured: {why}"), target.comparison)?;
        }
        for figure in mine {
            let met = match &figure.verdict {
                Verdict::Met => "yes".to_owned(),
                Verdict::NotMet(why) => format!("NOT MET: {why}"),
                Verdict::Supporting => "—".to_owned(),
                Verdict::NotMeasured(why) => format!("not measured: {why}"),
            };
            let comparison = match &figure.comparison {
                Some(measured) if target.comparison.is_empty() => measured.clone(),
                Some(measured) => format!("{measured}; {}", target.comparison),
                None => target.comparison.to_owned(),
            };
            row(&figure.what, &figure.measured, &met, &comparison)?;
        }
    }
    if !full {
        println!("\npartial run: bench/results.md left as it was");
        return Ok(());
    }
    std::fs::create_dir_all("bench")?;
    let path = "bench/results.md";
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    // Keep the notes written below the table by hand.
    let notes = previous
        .split_once("\n## Notes")
        .map(|(_, notes)| format!("\n## Notes{notes}"))
        .unwrap_or_default();
    std::fs::write(path, format!("{md}{notes}"))?;
    println!("\nwritten to {path}");
    Ok(())
}

/// CPU model, cores and memory, for the results' header.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    format!(
        "{cpu}, {cores} cores, {memory_gib} GiB, {}",
        chrono_free_date()
    )
}

fn chrono_free_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{}-{:02}-{:02}", now.year(), now.month() as u8, now.day())
}

/// Percentiles of a sorted list of durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A business with members whose tokens the load generator uses, and QR codes to scan.
async fn business_and_members(
    system: &System,
    members: usize,
) -> anyhow::Result<(storage::businesses::Business, Vec<String>)> {
    let services = &system.services;
    let business = storage::businesses::create(
        &services.db,
        &storage::businesses::NewBusiness {
            name: "Бенчмарк".to_owned(),
            category: domain::Category::Beauty,
            cashback_percent: rust_decimal::Decimal::from(5),
            max_redeem_percent: rust_decimal::Decimal::from(30),
            max_check_amount: storage::businesses::DEFAULT_MAX_CHECK_AMOUNT,
            is_medical: false,
            bonus_hold_days: 0,
            staff_refund_limit: storage::businesses::DEFAULT_STAFF_REFUND_LIMIT,
        },
    )
    .await?;
    let phones: Vec<String> = (0..members).map(|i| format!("+7990{:07}", i)).collect();
    sqlx::query("INSERT INTO users (phone) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING")
        .bind(&phones)
        .execute(&services.db)
        .await?;
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE phone = ANY($1) ORDER BY phone")
            .bind(&phones)
            .fetch_all(&services.db)
            .await?;
    let tokens = ids
        .iter()
        .map(|id| services.jwt.issue(*id, vec![], Uuid::new_v4()))
        .collect();
    Ok((business, tokens))
}

/// Open-loop QR scans at fixed rates: each scan is sent on schedule whatever the others do;
/// latency runs from sending the POST to the accrual's ledger entry (same machine clock).
async fn scan_latency(system: &System) -> anyhow::Result<Vec<Figure>> {
    let (business, tokens) = business_and_members(system, 2_000).await?;
    // The cashier who issues the codes: a code of someone not on the staff is refused.
    let cashier: Uuid = sqlx::query_scalar(
        "INSERT INTO users (phone) VALUES ('+79899999999')
         ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING id",
    )
    .fetch_one(&system.services.db)
    .await?;
    storage::businesses::put_staff(
        &system.services.db,
        business.id,
        cashier,
        domain::roles::StaffRole::Staff,
    )
    .await?;
    // Every purchase triggers a cross-promo chain, as at a real partner: the first one
    // per member issues a coupon, the rest find the member already holds it.
    storage::coupons::create_chain(
        &system.services.db,
        &storage::coupons::NewChain {
            trigger_business_id: Some(business.id),
            trigger_category: None,
            trigger_churn_risk: None,
            min_amount: rust_decimal::Decimal::ZERO,
            target_business_id: business.id,
            discount_type: domain::loyalty::DiscountType::Percent,
            discount_value: rust_decimal::Decimal::from(10),
            valid_days: 7,
            cooldown_days: 0,
        },
    )
    .await?;
    let http = adapters::http_client(Duration::from_secs(10));
    let mut figures = Vec::new();
    let mut member = 0usize;
    // A first, unrecorded round warms the pools, caches and plans of the fresh processes.
    for (rate, seconds, recorded) in [
        (100u64, 3u64, false),
        (100, 10, true),
        (300, 10, true),
        (500, 10, true),
    ] {
        let count = (rate * seconds) as usize;
        let expires_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
        let mut codes = Vec::with_capacity(count);
        for _ in 0..count {
            let code = domain::codes::human_code(&mut rand::rng(), 12);
            let qr = storage::cache::QrCode {
                business_id: business.id,
                amount: rust_decimal::Decimal::from(1000),
                issued_by: cashier,
                expires_at,
            };
            system
                .services
                .cache
                .put_qr(&code, &qr, Duration::from_secs(600))
                .await?;
            codes.push(code);
        }
        let started = Instant::now();
        let mut sends = tokio::task::JoinSet::new();
        for (i, code) in codes.into_iter().enumerate() {
            let at = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(at.into()).await;
            let token = tokens[member % tokens.len()].clone();
            member += 1;
            let http = http.clone();
            let url = format!("{}/api/v1/transactions/scan", system.api);
            sends.spawn(async move {
                let sent_at = time::OffsetDateTime::now_utc();
                let t = Instant::now();
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({"code": code}))
                    .send()
                    .await;
                let answered = t.elapsed();
                let job_id = match response {
                    Ok(r) if r.status() == 202 => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|b| b["data"]["job_id"].as_str().map(str::to_owned)),
                    _ => None,
                };
                (job_id, sent_at, answered)
            });
        }
        let mut sent = Vec::new();
        let mut answers = Vec::new();
        while let Some(result) = sends.join_next().await {
            let (job_id, sent_at, answered) = result?;
            answers.push(answered);
            if let Some(job_id) = job_id {
                sent.push((job_id.parse::<Uuid>()?, sent_at));
            }
        }
        let achieved = count as f64 / started.elapsed().as_secs_f64();
        // Wait for the last scans to be processed.
        let ids: Vec<Uuid> = sent.iter().map(|(id, _)| *id).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let open: i64 = sqlx::query_scalar("SELECT count(*) FROM scan_requests WHERE id = ANY($1) AND state IN ('pending', 'processing')")
                .bind(&ids)
                .fetch_one(&system.services.db)
                .await?;
            if open == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ledger: std::collections::HashMap<Uuid, time::OffsetDateTime> =
            sqlx::query_as::<_, (Uuid, time::OffsetDateTime)>(
                "SELECT s.id, l.created_at FROM scan_requests s
             JOIN bonus_ledger l ON l.transaction_id = s.transaction_id AND l.kind = 'accrual'
             WHERE s.id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&system.services.db)
            .await?
            .into_iter()
            .collect();
        let mut latencies: Vec<Duration> = sent
            .iter()
            .filter_map(|(id, sent_at)| {
                ledger
                    .get(id)
                    .map(|at| (*at - *sent_at).try_into().unwrap_or(Duration::ZERO))
            })
            .collect();
        latencies.sort();
        answers.sort();
        let failed = count - latencies.len();
        let p99 = percentile(&latencies, 99.0);
        if !recorded {
            println!("  warm-up: {} scans at {rate}/s", latencies.len());
            system.settle().await?;
            continue;
        }
        println!(
            "  {rate}/s: {} scans, p50 {} p95 {} p99 {}, POST answered p99 {}, {failed} not accrued",
            latencies.len(),
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 95.0)),
            ms(p99),
            ms(percentile(&answers, 99.0))
        );
        let answered_p99 = percentile(&answers, 99.0);
        let verdict = if rate != 500 {
            Verdict::Supporting
        } else if failed > 0 {
            Verdict::NotMet(format!("{failed} scans not accrued"))
        } else if p99 <= Duration::from_millis(25) {
            Verdict::Met
        } else {
            Verdict::NotMet(format!(
                "p99 {}; the POST alone answered at p99 {}",
                ms(p99),
                ms(answered_p99)
            ))
        };
        figures.push(Figure {
            target: "scan",
            what: format!("{rate} scans/s ({achieved:.0}/s sent, open loop, {seconds} s)"),
            measured: format!(
                "p50 {} / p95 {} / p99 {}{}",
                ms(percentile(&latencies, 50.0)),
                ms(percentile(&latencies, 95.0)),
                ms(p99),
                if failed > 0 {
                    format!(", {failed} not accrued")
                } else {
                    String::new()
                }
            ),
            verdict,
            comparison: None,
        });
        system.settle().await?;
    }
    Ok(figures)
}

/// 100 000 sales in a simulated 1C (OData, 500 a page) polled by `crm_poll`, which stores
/// them with their bonuses: transactions per second until the last bonus is in.
async fn crm_ingest(system: &System, count: usize) -> anyhow::Result<Figure> {
    use simulators::{OneCSetup, Sale, Simulator, Vendor};
    let sim = Simulator::start(Vendor::OneC).await?;
    // An installation with its own phone attribute on checks: the benchmark measures our
    // writes, not 20 000 counterparty look-ups.
    *sim.state.onec.lock().unwrap() = OneCSetup {
        phone_attribute: Some("Телефон".to_owned()),
        ..OneCSetup::default()
    };
    let at = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    sim.add_sales((0..count).map(|i| {
        Sale::purchase(
            format!("bench-{i}"),
            rust_decimal::Decimal::new(100_00 + (i as i64 % 5000) * 10, 2),
            at + time::Duration::milliseconds(i as i64),
            &format!("+7991{:07}", i % 20_000),
        )
    }));
    let services = &system.services;
    let business = storage::businesses::create(
        &services.db,
        &storage::businesses::NewBusiness {
            name: "Skinerica (бенчмарк)".to_owned(),
            category: domain::Category::Beauty,
            cashback_percent: rust_decimal::Decimal::from(7),
            max_redeem_percent: rust_decimal::Decimal::from(30),
            max_check_amount: storage::businesses::DEFAULT_MAX_CHECK_AMOUNT,
            is_medical: false,
            bonus_hold_days: 0,
            staff_refund_limit: storage::businesses::DEFAULT_STAFF_REFUND_LIMIT,
        },
    )
    .await?;
    let integration = storage::integrations::create(
        &mut *services.db.acquire().await?,
        &services.secrets,
        business.id,
        &storage::integrations::NewIntegration {
            crm_type: domain::crm::CrmType::OneC,
            base_url: sim.url.clone(),
            credentials: Some(Vendor::OneC.credentials()),
            settings: serde_json::json!({"phone_field": "Телефон"}),
        },
    )
    .await?;
    let started = Instant::now();
    let job = jobs::handlers::crm::PollCrm {
        integration_id: Some(integration.id),
        business_id: None,
        force: true,
    };
    services.queue.push(Uuid::now_v7(), &job).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_stored_at = None;
    let mut stored_at = None;
    // Watched through cheap queries (a first row; the cursor; whether any transaction is
    // unsettled, one probe of the partial index): counting rows is a scan of the table
    // (~100 ms at this size) that would load the machine being measured.
    loop {
        if first_stored_at.is_none() {
            let any: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM transactions WHERE business_id = $1)",
            )
            .bind(business.id)
            .fetch_one(&services.db)
            .await?;
            if any {
                first_stored_at = Some(started.elapsed());
            }
        } else if stored_at.is_none() {
            let stored: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM integrations WHERE id = $1 AND last_success_at IS NOT NULL)",
            )
            .bind(integration.id)
            .fetch_one(&services.db)
            .await?;
            if stored {
                stored_at = Some(started.elapsed());
            }
        } else {
            let unsettled: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM transactions WHERE NOT bonus_applied)",
            )
            .fetch_one(&services.db)
            .await?;
            if !unsettled {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transactions WHERE business_id = $1 AND bonus_applied",
    )
    .bind(business.id)
    .fetch_one(&services.db)
    .await?;
    let rate = applied as f64 / elapsed.as_secs_f64();
    let first_s = first_stored_at.unwrap_or(elapsed).as_secs_f64();
    let stored_s = stored_at.unwrap_or(elapsed).as_secs_f64();
    println!(
        "  {applied} of {count} transactions with bonuses in {:.1} s ({} HTTP requests to the CRM; first batch stored after {first_s:.1} s, the last after {stored_s:.1} s)",
        elapsed.as_secs_f64(),
        sim.requests(),
    );
    let verdict = if applied as usize != count {
        Verdict::NotMet(format!("{applied} of {count} settled within 10 minutes"))
    } else if rate >= 20_000.0 {
        Verdict::Met
    } else {
        Verdict::NotMet(format!(
            "{rate:.0}/s: fetched (first batch stored) after {first_s:.1} s, stored after {stored_s:.1} s, settled after {:.1} s",
            elapsed.as_secs_f64()
        ))
    };
    Ok(Figure {
        target: "ingest",
        what: format!("simulated 1C, {count} transactions"),
        measured: format!("{rate:.0} transactions/s"),
        verdict,
        comparison: None,
    })
}

/// Closed-loop load at a fixed concurrency for `seconds`: requests/s and p99.
async fn closed_loop(
    url: &str,
    token: Option<&str>,
    concurrency: usize,
    seconds: u64,
) -> (f64, Duration, usize) {
    let http = adapters::http_client(Duration::from_secs(5));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let http = http.clone();
        let url = url.to_owned();
        let token = token.map(str::to_owned);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < stop {
                let t = Instant::now();
                let mut request = http.get(&url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(Ok((latencies, e))) = tasks.join_next().await {
        all.extend(latencies);
        errors += e;
    }
    all.sort();
    (
        all.len() as f64 / seconds as f64,
        percentile(&all, 99.0),
        errors,
    )
}

/// `GET /loyalty/balance` (JWT check, three Postgres reads) beside a bare poem handler
/// served by another process in the same run, at the same concurrency.
async fn balance_rps(system: &System) -> anyhow::Result<Vec<Figure>> {
    let (_, tokens) = business_and_members(system, 10).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut bare = std::process::Command::new(std::env::current_exe()?)
        .args(["bench-bare", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let bare_url = format!("http://127.0.0.1:{port}/bare");
    let http = adapters::http_client(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(&bare_url).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the bare server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let concurrency = 32;
    let (bare_rps, bare_p99, _) = closed_loop(&bare_url, None, concurrency, 10).await;
    let balance_url = format!("{}/api/v1/loyalty/balance", system.api);
    let (rps, p99, errors) = closed_loop(&balance_url, Some(&tokens[0]), concurrency, 10).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &bare.id().to_string()])
        .status();
    let _ = bare.wait();
    let ratio = rps / bare_rps;
    println!(
        "  bare: {bare_rps:.0} req/s p99 {}; balance: {rps:.0} req/s p99 {} ({errors} errors); ratio {:.0} %",
        ms(bare_p99),
        ms(p99),
        ratio * 100.0
    );
    let verdict = if errors > 0 {
        Verdict::NotMet(format!("{errors} requests failed"))
    } else if ratio >= 0.5 && p99 <= Duration::from_millis(5) {
        Verdict::Met
    } else {
        Verdict::NotMet(format!("{:.0} % of bare, p99 {}", ratio * 100.0, ms(p99)))
    };
    Ok(vec![Figure {
        target: "balance",
        what: format!("{concurrency} concurrent, 10 s"),
        measured: format!(
            "{rps:.0} req/s, p99 {}, {:.0} % of bare",
            ms(p99),
            ratio * 100.0
        ),
        verdict,
        comparison: Some(format!(
            "bare poem handler in the same run: {bare_rps:.0} req/s, p99 {}",
            ms(bare_p99)
        )),
    }])
}

/// `krug bench-bare`: the bare poem handler the balance route is compared with.
pub async fn bare_server(bind: &str) -> anyhow::Result<()> {
    use poem::{Route, Server, get, handler, listener::TcpListener, web::Json};
    #[handler]
    fn bare() -> Json<serde_json::Value> {
        Json(serde_json::json!({"success": true, "data": {"ok": true}}))
    }
    let shutdown = krug::app::shutdown_signal();
    Server::new(TcpListener::bind(bind))
        .run_with_graceful_shutdown(
            Route::new().at("/bare", get(bare)),
            async move { shutdown.cancelled().await },
            None,
        )
        .await?;
    Ok(())
}

/// `members` members with `facts` purchases between them over the year, straight into a
/// ClickHouse database of the benchmark's own; then the snapshot is timed.
async fn rfm_snapshot(services: &Services, members: usize, facts: usize) -> anyhow::Result<Figure> {
    use domain::loyalty::TransactionType;
    use storage::analytics::Fact;
    let database = format!("krug_bench_{}", &Uuid::new_v4().simple().to_string()[..8]);
    storage::analytics::migrate(services.config.clickhouse_url.expose(), &database).await?;
    let ch = storage::analytics::client(services.config.clickhouse_url.expose(), &database);
    let today = time::OffsetDateTime::now_utc().date();
    let users: Vec<Uuid> = (0..members).map(|_| Uuid::new_v4()).collect();
    let loading = Instant::now();
    let mut insert = ch
        .inserter::<Fact>("transaction_facts")
        .with_max_rows(100_000);
    for i in 0..facts {
        // A skewed population: some members buy often, most now and then.
        let member = (i * 7919 + (i / members) * 104_729) % members;
        let days_ago = ((i * 31 + member * 17) % 360) as i64;
        let day = today - time::Duration::days(days_ago);
        insert
            .write(&Fact {
                transaction_id: Uuid::new_v4(),
                user_id: users[member],
                business_id: Uuid::nil(),
                category: "beauty".to_owned(),
                transaction_type: TransactionType::Purchase,
                amount: 10_000 + (i as i64 * 37) % 500_000,
                bonus_accrued: 0,
                bonus_redeemed: 0,
                occurred_at: day.midnight().assume_utc(),
                event_date: day,
            })
            .await?;
        insert.commit().await?;
    }
    insert.end().await?;
    println!(
        "  loaded {facts} facts for {members} members in {:.1} s; computing…",
        loading.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let summary = storage::rfm::compute(&ch, today).await?;
    let elapsed = started.elapsed();
    let _ = ch
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await;
    println!(
        "  snapshot of {} members in {:.2} s",
        summary.members,
        elapsed.as_secs_f64()
    );
    // The target is for 1 000 000 members; a smaller run is a supporting figure.
    let verdict = if summary.members as usize != members {
        Verdict::NotMet(format!("{} of {members} members scored", summary.members))
    } else if members < 1_000_000 {
        Verdict::Supporting
    } else if elapsed.as_secs_f64() <= 30.0 {
        Verdict::Met
    } else {
        Verdict::NotMet(format!("{:.1} s", elapsed.as_secs_f64()))
    };
    Ok(Figure {
        target: "rfm",
        what: format!("{members} members / {facts} facts (ClickHouse 18.16)"),
        measured: format!("{:.2} s", elapsed.as_secs_f64()),
        verdict,
        comparison: None,
    })
}

/// `GET /search` over DESIGN.md's catalogue size: 10 000 businesses and 100 000 events
/// (names made of real partners' words, so that queries hit realistic posting lists), then
/// 200 requests/s open loop for 10 s with a mix of exact words, word forms, typos and
/// category filters.
async fn search_latency(system: &System) -> anyhow::Result<Figure> {
    let (_, tokens) = business_and_members(system, 1).await?;
    let db = &system.services.db;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO businesses (name, category, cashback_percent)
         SELECT (ARRAY['Салон','Студия','Кафе','Лавка','Клиника','Спа','Бар','Пекарня','Рынок','Центр'])[1 + i % 10]
                || ' ' || (ARRAY['Лисичкино','Миндаль','Скинерика','Миллениум','Ромашка','Берёзка','Василёк','Радуга','Жемчуг','Клевер','Шафран','Базилик'])[1 + (i / 10) % 12]
                || ' ' || i,
                (ARRAY['beauty','wellness','gastronomy','health'])[1 + i % 4], 5
         FROM generate_series(1, 10000) AS i",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO events (title, description, date, location, max_participants, status)
         SELECT (ARRAY['Дегустация сыров','Мастер-класс по макияжу','Йога на рассвете','Вечер вин','Лекция о здоровье','Ужин от шефа','День красоты','Банный вечер'])[1 + i % 8]
                || ' №' || i,
                'Для участников Своего Круга: количество мест ограничено.',
                now() + (i % 365) * interval '1 day',
                (ARRAY['Лисичкино','Миндаль','Стим Центр','Skinerica'])[1 + i % 4],
                50,
                (ARRAY['approved','active','proposed','completed'])[1 + i % 4]
         FROM generate_series(1, 100000) AS i",
    )
    .execute(db)
    .await?;
    sqlx::query("ANALYZE businesses").execute(db).await?;
    sqlx::query("ANALYZE events").execute(db).await?;
    println!(
        "  catalogue seeded in {:.1} s: 10000 businesses, 100000 events",
        started.elapsed().as_secs_f64()
    );
    let queries = [
        "q=лисичкно",
        "q=красоты",
        "q=дегустация",
        "q=йога",
        "q=мастер%20класс",
        "q=сыров&type=event",
        "q=миндаль&category=beauty",
        "q=ромашко",
        "q=салон%20красоты",
        "q=вечер%20вин",
    ];
    let http = adapters::http_client(Duration::from_secs(10));
    let (rate, seconds) = (200u64, 10u64);
    let mut measured = Vec::new();
    let (mut failures, mut failure) = (0, None::<String>);
    // A first, unrecorded second warms the API's pool and Postgres's caches.
    for (round_seconds, recorded) in [(2u64, false), (seconds, true)] {
        let count = (rate * round_seconds) as usize;
        let started = Instant::now();
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..count {
            let at = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(at.into()).await;
            let url = format!(
                "{}/api/v1/search?{}",
                system.api,
                queries[i % queries.len()]
            );
            let (http, token) = (http.clone(), tokens[0].clone());
            sends.spawn(async move {
                let t = Instant::now();
                // The failure, as the bench reports it: the status and the API's error code.
                let failure = match http.get(url).bearer_auth(token).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.err().map(|e| e.to_string())
                    }
                    Ok(r) => Some(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Some(e.to_string()),
                };
                (t.elapsed(), failure)
            });
        }
        let mut latencies = Vec::with_capacity(count);
        let mut failed = 0;
        let mut first_failure = None;
        while let Some(result) = sends.join_next().await {
            match result? {
                (latency, None) => latencies.push(latency),
                (_, Some(failure)) => {
                    failed += 1;
                    first_failure.get_or_insert(failure);
                }
            }
        }
        if recorded {
            latencies.sort();
            measured = latencies;
            failures = failed;
            failure = first_failure;
        }
    }
    if let Some(failure) = &failure {
        println!("  {failures} searches failed, the first: {failure}");
    }
    let p99 = percentile(&measured, 99.0);
    println!(
        "  {rate}/s: {} searches answered, p50 {} p95 {} p99 {}",
        measured.len(),
        ms(percentile(&measured, 50.0)),
        ms(percentile(&measured, 95.0)),
        ms(p99)
    );
    Ok(Figure {
        target: "search",
        what: format!(
            "GET /search at {rate} requests/s (open loop, {seconds} s), 10 000 businesses / 100 000 events"
        ),
        measured: format!(
            "p50 {} / p95 {} / p99 {}",
            ms(percentile(&measured, 50.0)),
            ms(percentile(&measured, 95.0)),
            ms(p99)
        ),
        verdict: if failures > 0 {
            // The first failure says why (a 503 is the API's pool giving up on a queue).
            Verdict::NotMet(format!(
                "{failures} of {} failed: {}",
                rate * seconds,
                failure
                    .unwrap_or_default()
                    .chars()
                    .take(80)
                    .collect::<String>()
            ))
        } else if p99 <= Duration::from_millis(20) {
            Verdict::Met
        } else {
            Verdict::NotMet(format!("p99 {}", ms(p99)))
        },
        comparison: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_read_from_redis_info_and_proc_stat() {
        let info = "# CPU\r\nused_cpu_sys:12.500000\r\nused_cpu_user:30.250000\r\nused_cpu_sys_children:9.000000\r\n";
        assert_eq!(redis_cpu_seconds(info).unwrap(), 42.75);
        // A command name with a space and a parenthesis; utime 250 and stime 50 ticks.
        let stat = "4242 (krug (bench) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(process_cpu_seconds(stat).unwrap(), 3.0);
    }
}
