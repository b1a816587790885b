//! A Postgres streaming replica for history reads (`DATABASE_REPLICA_URL`): a primary and a
//! hot standby of the test's own (`scripts/pg-replica.sh` on ports 5441–5442, never the
//! shared 5432, whose pg_hba allows no replication). With the standby's replay paused, a
//! member's ledger read through the API still shows the standby's older state while the
//! operator's view of the same ledger (the primary: operators act on what they read) and
//! every write go on. With the standby stopped, history is read from the primary; started
//! again, reads return to it; paused past `MAX_LAG`, reads leave it until it catches up.
//! Its own test binary: cargo runs test binaries one after another.

#[path = "../system/fakes.rs"]
#[allow(dead_code)]
mod fakes;
#[path = "../system/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::{eventually, member_phone, test_key_dir};
use jobs::{QueueName, runtime::WorkerOptions};
use krug::{Config, Services};
use krug_client::{ApiClient, expect, sign_in};
use poem::{
    http::Method,
    listener::{Acceptor, Listener, TcpListener},
};
use serde_json::{Value, json};
use sqlx::Connection;
use std::process::Command;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The primary's port; the standby listens on the next one.
const PRIMARY_PORT: u16 = 5441;

fn script(action: &str) -> Vec<String> {
    let output = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/pg-replica.sh"
    ))
    .args([action, "--port", &PRIMARY_PORT.to_string()])
    .output()
    .expect("scripts/pg-replica.sh runs");
    assert!(
        output.status.success(),
        "pg-replica.sh {action}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The standby's replay, paused while the guard lives (resumed on drop, even on a panic,
/// so that the next run does not wait on a standby left paused).
struct PausedReplay(String);

impl PausedReplay {
    async fn pause(standby: &str) -> Self {
        replay(standby, "pg_wal_replay_pause").await;
        Self(standby.to_owned())
    }
}

impl Drop for PausedReplay {
    fn drop(&mut self) {
        let standby = self.0.clone();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(replay(&standby, "pg_wal_replay_resume"))
        })
        .join()
        .unwrap();
    }
}

async fn replay(standby: &str, function: &str) {
    let mut conn = sqlx::PgConnection::connect(standby).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {function}()")))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn adjust(operator: &ApiClient, user_id: &str, amount: &str) {
    expect(
        operator
            .call_with_headers(
                Method::POST,
                &format!("/admin/users/{user_id}/adjust"),
                Some(&json!({"amount": amount, "reason": "replica test"})),
                &[("Idempotency-Key", &Uuid::new_v4().to_string())],
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
}

/// How many ledger entries `database` holds for the member (none while it does not answer).
async fn entries_on(database: &str, user_id: &str) -> Option<i64> {
    let mut conn = sqlx::PgConnection::connect(database).await.ok()?;
    sqlx::query_scalar("SELECT count(*) FROM bonus_ledger WHERE user_id = $1")
        .bind(user_id.parse::<Uuid>().unwrap())
        .fetch_one(&mut conn)
        .await
        .ok()
}

fn amounts(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_come_from_the_replica_while_it_answers_and_writes_from_the_primary() {
    let urls = script("start");
    let (primary, standby) = (&urls[0], &urls[1]);
    let name = format!(
        "krug_test_replica_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    // A standby a previous run left paused would never show this run's database.
    replay(&format!("{standby}/postgres"), "pg_wal_replay_resume").await;

    let mut config = Config::from_env().unwrap();
    config.database_url = format!("{primary}/{name}").into();
    config.database_replica_url = Some(format!("{standby}/{name}").into());
    config.clickhouse_db = name.clone();
    config.queue_prefix = format!("kt-{}", &Uuid::new_v4().simple().to_string()[..12]);
    config.key_dir = test_key_dir();
    krug::app::migrate(&config).await.unwrap();
    let services = Services::connect(config.clone()).unwrap();

    // The API and a login-code worker, in this process: what is tested is which pool each
    // read takes, not the processes' boundaries.
    let shutdown = CancellationToken::new();
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let api_task = tokio::spawn({
        let state = services.app_state();
        let shutdown = shutdown.clone();
        async move { api::serve(acceptor, state, async move { shutdown.cancelled().await }).await }
    });
    let worker_task = tokio::spawn(jobs::runtime::run(
        services.job_env(),
        WorkerOptions::new(config.redis_url.expose(), vec![QueueName::OtpSend]),
        shutdown.clone(),
    ));
    let api = ApiClient::new(format!("http://{addr}"));

    let operator_phone = "+79000000001";
    krug::commands::grant(services.clone(), operator_phone, "superadmin", None)
        .await
        .unwrap();
    let operator = sign_in(&services.db, &services.cache, &api, operator_phone)
        .await
        .unwrap();
    let member = sign_in(&services.db, &services.cache, &api, &member_phone())
        .await
        .unwrap();
    let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
    let member_id = me.data()["id"].as_str().unwrap().to_owned();

    adjust(&operator, &member_id, "100.00").await;
    eventually(30, "the first entry on the standby", || async {
        let page = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
        (amounts(page.data()) == ["100.00"]).then_some(())
    })
    .await;

    let paused = PausedReplay::pause(&format!("{standby}/{name}")).await;
    // Writes go to the primary: the adjustment succeeds with the standby frozen.
    adjust(&operator, &member_id, "50.00").await;
    let operators_view = expect(
        operator
            .get(&format!("/admin/users/{member_id}/ledger"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(amounts(operators_view.data()), ["50.00", "100.00"]);
    // The member's history comes from the standby, which has not replayed the second.
    let history = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
    assert_eq!(
        amounts(history.data()),
        ["100.00"],
        "the member's ledger was not read from the replica"
    );
    drop(paused);
    eventually(30, "the second entry on the standby", || async {
        let page = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
        (amounts(page.data()) == ["50.00", "100.00"]).then_some(())
    })
    .await;

    // The standby goes down: the member's history is answered by the primary, and fresh.
    script("stop-replica");
    adjust(&operator, &member_id, "25.00").await;
    let history = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
    assert_eq!(
        amounts(history.data()),
        ["25.00", "50.00", "100.00"],
        "with the replica down the member's ledger did not come from the primary"
    );
    expect(member.get("/transactions").await.unwrap(), 200).unwrap();
    let ready = api.get("//ready").await.unwrap();
    assert_eq!(
        ready.status, 200,
        "a replica down leaves the API ready: {}",
        ready.body
    );
    assert_eq!(ready.data()["replica"], "unavailable", "{}", ready.body);

    // It comes back: once it has caught up, reads return to it (with its replay paused, an
    // entry only the primary holds tells which of the two answered).
    script("start");
    eventually(30, "the standby caught up after its restart", || async {
        (entries_on(&format!("{standby}/{name}"), &member_id).await == Some(3)).then_some(())
    })
    .await;
    let paused = PausedReplay::pause(&format!("{standby}/{name}")).await;
    adjust(&operator, &member_id, "10.00").await;
    eventually(30, "history read from the standby again", || async {
        let page = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
        (amounts(page.data()) == ["25.00", "50.00", "100.00"]).then_some(())
    })
    .await;

    // Its replay stays paused: once it is more than MAX_LAG behind, history is read from
    // the primary (fresh), and `/ready` says why.
    let fresh = ["10.00", "25.00", "50.00", "100.00"];
    eventually(30, "the lagging standby left alone", || async {
        let page = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
        (amounts(page.data()) == fresh).then_some(())
    })
    .await;
    let ready = api.get("//ready").await.unwrap();
    assert_eq!(ready.data()["replica"], "lagging", "{}", ready.body);
    assert_eq!(ready.status, 200, "{}", ready.body);
    drop(paused);
    eventually(30, "the standby caught up again", || async {
        let ready = api.get("//ready").await.unwrap();
        (ready.data()["replica"] == "ok").then_some(())
    })
    .await;
    let page = expect(member.get("/loyalty/ledger").await.unwrap(), 200).unwrap();
    assert_eq!(amounts(page.data()), fresh);

    shutdown.cancel();
    let _ = api_task.await;
    let _ = worker_task.await;
    services.db.close().await;
    services.history.close().await;
    let mut admin = sqlx::PgConnection::connect(&format!("{primary}/postgres"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = helpers::http()
        .post("http://127.0.0.1:8123/")
        .body(format!("DROP DATABASE IF EXISTS {name}"))
        .send()
        .await;
    // A failed run leaves the pair running for a look at its logs; a passed one removes it.
    script("stop");
}
