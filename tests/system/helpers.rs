//! `TestApp`: the real API on a free port and a real worker, against real Postgres and
//! Redis, each test with its own database and Redis key prefix.

use krug::{Config, Services, config::SmsConfig};
use krug_client::{ApiClient, expect, sign_in};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The template's name carries a hash of this checkout's path: test runs of two checkouts
/// (two branches side by side) each rebuild their own template from their own migrations.
static TEMPLATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_MANIFEST_DIR").hash(&mut hasher);
    format!(
        "krug_test_template_{:012x}",
        hasher.finish() & 0xffff_ffff_ffff
    )
});

/// Databases are copied from a template migrated once per test run: much faster than
/// migrating each one. Copies are made one at a time (Postgres refuses concurrent copies of
/// the same template).
static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();
static COPY_LOCK: Mutex<()> = Mutex::const_new(());

async fn template() {
    TEMPLATE_READY
        .get_or_init(|| async {
            let mut admin = PgConnection::connect(ADMIN_URL)
                .await
                .expect("Postgres is up (scripts/services.sh)");
            // Another test binary may hold an older template: always rebuild it from migrations.
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    *TEMPLATE
                )))
                .await;
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {}",
                    *TEMPLATE
                )))
                .await
                .unwrap();
            let pool = PgPool::connect(&database_url(&TEMPLATE)).await.unwrap();
            storage::migrate(&pool).await.expect("migrations apply");
            pool.close().await;
        })
        .await;
}

fn database_url(name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> String {
    template().await;
    let name = format!("krug_test_{}", Uuid::new_v4().simple());
    let _guard = COPY_LOCK.lock().await;
    let mut admin = PgConnection::connect(ADMIN_URL).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            *TEMPLATE
        )))
        .await
        .unwrap();
    database_url(&name)
}

/// How a test wants its app.
#[derive(Default)]
pub struct Options {
    /// SMS.ru base URL; the `log` provider otherwise.
    pub smsru_url: Option<String>,
    /// No worker is started (tests that drive jobs themselves).
    pub no_worker: bool,
    /// Another Redis (a dead address, to see the API without its queue).
    pub redis_url: Option<String>,
    /// When `reconcile` steps in.
    pub reconcile: Option<jobs::env::ReconcilePolicy>,
    /// `KRUG_TIMEZONE` (to put "now" inside or outside quiet hours).
    pub timezone: Option<chrono_tz::Tz>,
    /// FCM base URL; the `log` push provider otherwise.
    pub fcm_url: Option<String>,
    /// The API's abuse limits. By default `Limits::relaxed()`: tests sign dozens of people
    /// in from 127.0.0.1 within seconds. The security tests give the real ones.
    pub limits: Option<api::limits::Limits>,
    /// FCM's credentials, with `fcm_url`: a service-account key file (a fixed test token
    /// otherwise).
    pub fcm_service_account: Option<PathBuf>,
    /// `KRUG_CRM_ALLOWED_HOSTS`; `127.0.0.1` (where simulators listen) when not given.
    pub crm_allowed_hosts: Option<Vec<String>>,
    /// The queues the worker runs (all when not given); `TestApp::start_worker` adds more.
    pub queues: Option<Vec<jobs::QueueName>>,
    /// ЮKassa: `(YOOKASSA_BASE_URL, shop id, secret key)`; payments are off otherwise.
    pub yookassa: Option<(String, String, String)>,
    /// `KRUG_BONUS_EXPIRY_DAYS` (365 when not given).
    pub bonus_expiry_days: Option<u32>,
    /// `SMTP_URL` (the SMTP sink's, for the e-mail tests); e-mail is logged otherwise.
    pub smtp_url: Option<String>,
}

pub struct TestApp {
    /// What the worker's jobs see.
    pub env: Arc<jobs::Env>,
    /// What the API's routes see.
    pub api_state: Arc<api::state::AppState>,
    pub api: ApiClient,
    pub services: Services,
    pub db: PgPool,
    pub prefix: String,
    shutdown: CancellationToken,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        init_logs();
        let mut config = Config::from_env().expect("default configuration");
        config.database_url = fresh_database().await.into();
        // A ClickHouse database of the test's own, named like its Postgres one.
        config.clickhouse_db = config
            .database_url
            .expose()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        storage::analytics::migrate(config.clickhouse_url.expose(), &config.clickhouse_db)
            .await
            .expect("ClickHouse is up (scripts/services.sh)");
        config.queue_prefix = format!("kt-{}", &Uuid::new_v4().simple().to_string()[..12]);
        config.key_dir = test_key_dir();
        config.database_max_connections = 10;
        if let Some(url) = options.redis_url {
            config.redis_url = url.into();
        }
        if let Some(timezone) = options.timezone {
            config.timezone = timezone;
        }
        if let Some(days) = options.bonus_expiry_days {
            config.bonus_expiry_days = days;
        }
        if let Some(url) = options.fcm_url {
            config.push = krug::config::PushConfig::Fcm {
                base_url: url,
                project_id: "krug-test".to_owned(),
                auth: match options.fcm_service_account {
                    Some(file) => krug::config::FcmCredentials::ServiceAccountFile(file),
                    None => {
                        krug::config::FcmCredentials::Token("test-oauth-token".to_owned().into())
                    }
                },
            };
        }
        config.crm_allowed_hosts = options
            .crm_allowed_hosts
            .unwrap_or_else(|| vec!["127.0.0.1".to_owned()]);
        if let Some(url) = options.smsru_url {
            config.sms = SmsConfig::SmsRu {
                api_id: "test-api-id".to_owned().into(),
                base_url: url,
                sender: None,
            };
        }
        if let Some(url) = options.smtp_url {
            config.smtp_url = Some(url.into());
        }
        if let Some((base_url, shop_id, secret_key)) = options.yookassa {
            config.yookassa = Some(krug::config::YooKassaConfig {
                base_url,
                shop_id,
                secret_key: secret_key.into(),
            });
        }
        let services = Services::connect(config).expect("services configure");
        let env = {
            let mut env = Arc::into_inner(services.job_env()).expect("a fresh Env");
            env.reconcile = options.reconcile.unwrap_or_default();
            Arc::new(env)
        };
        let shutdown = CancellationToken::new();
        let acceptor = poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind(
            "127.0.0.1:0",
        ))
        .await
        .unwrap();
        let addr = poem::listener::Acceptor::local_addr(&acceptor)[0]
            .as_socket_addr()
            .copied()
            .unwrap();
        let api_state = {
            let mut state = Arc::into_inner(services.app_state()).expect("a fresh state");
            state.limits = options.limits.unwrap_or_else(api::limits::Limits::relaxed);
            Arc::new(state)
        };
        tokio::spawn({
            let state = api_state.clone();
            let shutdown = shutdown.clone();
            async move { api::serve(acceptor, state, async move { shutdown.cancelled().await }).await }
        });
        if !options.no_worker {
            let mut worker = worker_options(&services);
            if let Some(queues) = options.queues {
                worker.queues = queues;
            }
            tokio::spawn(jobs::runtime::run(env.clone(), worker, shutdown.clone()));
        }
        TestApp {
            env,
            api_state,
            api: ApiClient::new(format!("http://{addr}")),
            db: services.db.clone(),
            prefix: services.config.queue_prefix.clone(),
            services,
            shutdown,
        }
    }

    /// Starts a worker of `queues` beside the app's (for tests that hold a queue back).
    pub fn start_worker(&self, queues: Vec<jobs::QueueName>) {
        let mut worker = worker_options(&self.services);
        worker.queues = queues;
        tokio::spawn(jobs::runtime::run(
            self.env.clone(),
            worker,
            self.shutdown.clone(),
        ));
    }

    /// Signs `phone` in by SMS.
    pub async fn sign_in(&self, phone: &str) -> ApiClient {
        sign_in(&self.services.db, &self.services.cache, &self.api, phone)
            .await
            .expect("sign in")
    }

    /// An operator (superadmin), signed in.
    pub async fn operator(&self) -> ApiClient {
        let phone = "+79000000001";
        krug::commands::grant(self.services.clone(), phone, "superadmin", None)
            .await
            .unwrap();
        self.sign_in(phone).await
    }

    /// Creates a business through the admin API and returns its JSON.
    pub async fn create_business(&self, operator: &ApiClient, body: Value) -> Value {
        expect(
            operator.post("/admin/businesses", &body).await.unwrap(),
            201,
        )
        .unwrap()
        .data()
        .clone()
    }

    /// A business (`name`, `category`, `cashback`%) with one staff member, signed in.
    pub async fn business_with_staff(
        &self,
        operator: &ApiClient,
        name: &str,
        category: &str,
        cashback: &str,
        staff_phone: &str,
    ) -> (String, ApiClient) {
        let business = self
            .create_business(
                operator,
                json!({"name": name, "category": category, "cashback_percent": cashback}),
            )
            .await;
        let id = business["id"].as_str().unwrap().to_owned();
        expect(
            operator
                .post(
                    &format!("/admin/businesses/{id}/staff"),
                    &json!({"phone": staff_phone, "role": "staff"}),
                )
                .await
                .unwrap(),
            201,
        )
        .unwrap();
        (id, self.sign_in(staff_phone).await)
    }

    /// Issues a QR code for `amount` as `staff`.
    pub async fn issue_qr(&self, staff: &ApiClient, amount: &str) -> String {
        let qr = expect(
            staff
                .post("/business/qr", &json!({"amount": amount}))
                .await
                .unwrap(),
            200,
        )
        .unwrap();
        qr.data()["code"].as_str().unwrap().to_owned()
    }

    /// Asserts the ledger invariant for every member: balance = Σ ledger, and the lifetime
    /// totals match the entries.
    pub async fn assert_ledger_consistent(&self) {
        let broken: Vec<(Uuid, rust_decimal::Decimal, rust_decimal::Decimal)> = sqlx::query_as(
            "SELECT b.user_id, b.balance, COALESCE(SUM(l.amount), 0)
             FROM bonus_balances b LEFT JOIN bonus_ledger l ON l.user_id = b.user_id
             GROUP BY b.user_id, b.balance HAVING b.balance <> COALESCE(SUM(l.amount), 0)",
        )
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert!(
            broken.is_empty(),
            "balance differs from the sum of the ledger: {broken:?}"
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Quick heartbeats and polls: tests wait on them.
pub fn worker_options(services: &Services) -> jobs::runtime::WorkerOptions {
    let mut options = jobs::runtime::WorkerOptions::new(
        services.config.redis_url.expose(),
        jobs::QueueName::ALL.to_vec(),
    );
    options.heartbeat = Duration::from_secs(2);
    options.missed_heartbeats = 5;
    options.idle_poll = Duration::from_millis(100);
    options
}

/// Development keys for tests, generated once per machine.
pub fn test_key_dir() -> PathBuf {
    std::env::temp_dir().join("krug-test-keys")
}

/// Logs stay quiet unless TEST_LOG is set.
fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        krug::telemetry::init(
            krug::config::Environment::Development,
            krug::telemetry::LogTo::Stdout,
        );
    }
}

/// A random member phone.
pub fn member_phone() -> String {
    format!("+7999{:07}", rand::random_range(0..10_000_000u32))
}

/// Polls `check` every 20 ms until it returns `Some`, failing the test after `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP client (rustls set up as the app sets it up).
pub fn http() -> reqwest::Client {
    adapters::http_client(Duration::from_secs(30))
}

impl TestApp {
    /// Signs in when the app sends SMS through the fake SMS.ru: the code is read from the
    /// message the fake received.
    pub async fn sign_in_via_smsru(&self, sms: &crate::fakes::FakeSmsRu, phone: &str) -> ApiClient {
        self.services.cache.release_otp_send(phone).await.unwrap();
        let before = sms.sent().len();
        expect(
            self.api
                .post("/auth/send-code", &json!({"phone": phone}))
                .await
                .unwrap(),
            202,
        )
        .unwrap();
        let digits = phone.trim_start_matches('+').to_owned();
        let message = eventually(10, "the login SMS", || async {
            sms.sent().into_iter().skip(before).find(|m| m.to == digits)
        })
        .await;
        let code: String = message.msg.chars().filter(char::is_ascii_digit).collect();
        let session = expect(
            self.api
                .post("/auth/verify-code", &json!({"phone": phone, "code": code}))
                .await
                .unwrap(),
            200,
        )
        .unwrap();
        self.api
            .signed_in(session.data()["access_token"].as_str().unwrap())
    }
}

/// A fixed-offset zone whose local time is now `hour` o'clock (give or take the minutes), to
/// put a test inside or outside quiet hours whatever the real clock says.
pub fn zone_where_it_is(hour: i64) -> chrono_tz::Tz {
    let utc_hour = time::OffsetDateTime::now_utc().hour() as i64;
    // Etc/GMT-N is N hours *ahead* of UTC; the names run from -14 to +12.
    let mut ahead = (hour - utc_hour).rem_euclid(24);
    if ahead > 14 {
        ahead -= 24;
    }
    let name = if ahead >= 0 {
        format!("Etc/GMT-{ahead}")
    } else {
        format!("Etc/GMT+{}", -ahead)
    };
    name.parse().unwrap()
}

/// The member's usable coupons, as the app lists them.
pub async fn coupons(member: &ApiClient) -> Vec<Value> {
    expect(member.get("/coupons").await.unwrap(), 200)
        .unwrap()
        .data()["items"]
        .as_array()
        .unwrap()
        .clone()
}
