//! `/metrics`: a client cannot grow the API's memory one series per path it makes up, nor
//! make the API hammer Redis by scraping in a loop; the API's metrics can leave the public
//! bind.

use crate::{
    cli::{free_port, krug},
    helpers::{Options, TestApp, eventually, fresh_database, http, member_phone},
};
use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
};
use uuid::Uuid;

/// The `route` label values of `http_request_duration_seconds` on `/metrics`.
async fn routes(app: &TestApp) -> BTreeSet<String> {
    let text = http()
        .get(format!("{}/metrics", app.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_count{"))
        .filter_map(|l| l.split("route=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Requests to paths nobody serves (`/x1`, `/x2`, … under the API and outside it) each made
/// a new series when the label was the raw path. Labelled by the matched route, they all
/// count as `other`, and a route with an id in it is one series whatever the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_paths_make_no_new_metric_series() {
    let app = TestApp::spawn().await;
    let member = app.sign_in(&member_phone()).await;
    let marker = Uuid::new_v4().simple().to_string();
    let client = http();
    for i in 0..20 {
        for path in [
            format!("/api/v1/x{marker}{i}"),
            format!("/y{marker}{i}"),
            format!("/api/v1/businesses/{marker}{i}/nothing"),
        ] {
            let response = client
                .get(format!("{}{path}", app.api.base))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{path}");
        }
        let _ = member
            .get(&format!("/businesses/{}", Uuid::new_v4()))
            .await
            .unwrap();
    }

    let routes = routes(&app).await;
    let leaked: Vec<&String> = routes.iter().filter(|r| r.contains(&marker)).collect();
    assert!(leaked.is_empty(), "made-up paths became series: {leaked:?}");
    assert!(routes.contains("other"), "{routes:?}");
    assert!(routes.contains("/api/v1/businesses/{id}"), "{routes:?}");
    assert!(routes.contains("/api/v1/auth/send-code"), "{routes:?}");
    assert!(
        routes.iter().all(|r| r == "other" || r.starts_with('/')),
        "{routes:?}"
    );
}

/// A Redis of the test's own on a free port, so that every command it counts is the API's.
struct OwnRedis {
    port: u16,
    server: Child,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = free_port();
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services.sh installs it)");
        OwnRedis { port, server }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `total_commands_processed` of `INFO stats` (the INFO itself counts one).
    async fn commands_processed(&self) -> Option<u64> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut connection)
            .await
            .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// `/metrics` needs no token (Prometheus scrapes it), and each scrape used to read every
/// queue's depth from Redis (a script per queue) and the failing integrations from Postgres:
/// a client looping on it made the API hammer both. The gauges are refreshed on a timer now,
/// so 500 scrapes cost Redis fewer commands than scrapes (the timer's refresh, the revoked
/// sessions' sync), where they cost thousands before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraping_in_a_loop_does_not_reach_redis() {
    let redis = OwnRedis::start();
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        no_worker: true,
        ..Default::default()
    })
    .await;
    let metrics = format!("{}/metrics", app.api.base);
    let client = http();
    // The first refresh has run: the depths are there without a scrape having read them.
    eventually(30, "the queue depths on /metrics", || async {
        let text = client.get(&metrics).send().await.ok()?.text().await.ok()?;
        text.contains("queue_depth{queue=\"qr_scan\",state=\"pending\"} 0")
            .then_some(())
    })
    .await;

    let before = redis.commands_processed().await.expect("INFO stats");
    const SCRAPES: u64 = 500;
    for _ in 0..SCRAPES {
        let response = client.get(&metrics).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let after = redis.commands_processed().await.expect("INFO stats");
    assert!(
        after - before < SCRAPES,
        "{SCRAPES} scrapes made {} Redis commands",
        after - before
    );
}

/// With `KRUG_METRICS_BIND`, `krug api` serves its metrics (its request latencies and the
/// queue depths) on that internal bind, and the public bind answers 404 to `/metrics`: a
/// deployment can keep them off the internet without a proxy rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_metrics_on_the_internal_bind_only_when_given_one() {
    let database_url = fresh_database().await;
    let name = database_url.rsplit('/').next().unwrap().to_owned();
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
    let (public, internal) = (free_port(), free_port());
    let mut api = krug(&database_url, &name, &prefix)
        .arg("api")
        .env("RUST_LOG", "warn")
        .env("KRUG_BIND", format!("127.0.0.1:{public}"))
        .env("KRUG_METRICS_BIND", format!("127.0.0.1:{internal}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = http();
    eventually(30, "krug api to answer", || async {
        let health = client
            .get(format!("http://127.0.0.1:{public}/health"))
            .send()
            .await
            .ok()?;
        (health.status() == 200).then_some(())
    })
    .await;
    let scraped = eventually(30, "the internal /metrics", || async {
        let response = client
            .get(format!("http://127.0.0.1:{internal}/metrics"))
            .send()
            .await
            .ok()?;
        let text = response.text().await.ok()?;
        (text.contains("http_request_duration_seconds_count{") && text.contains("queue_depth{"))
            .then_some(text)
    })
    .await;
    assert!(scraped.contains("route=\"/health\""), "{scraped}");
    let public_metrics = client
        .get(format!("http://127.0.0.1:{public}/metrics"))
        .send()
        .await
        .unwrap();
    let status = public_metrics.status();
    let body = public_metrics.text().await.unwrap();
    let _ = api.kill();
    let _ = api.wait();
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("queue_depth"), "{body}");
}
