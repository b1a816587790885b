//! Configuration, read once from the environment (and `.env` in development).
//! Every variable is documented in `.env.example`; defaults are DESIGN.md's.

use anyhow::{Context, bail};
use secrecy::SecretString;
use std::{env, fmt, path::PathBuf};

/// A service's address (`DATABASE_URL`, `REDIS_URL`, `CLICKHOUSE_URL`, `SMTP_URL`). It may carry a
/// password (`postgres://krug:pw@db/krug`), so it prints (`{}` and `{:?}`) with the password
/// masked; [`ServiceUrl::expose`] gives the real one to the client that connects with it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceUrl(String);

impl ServiceUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every password masked; a Redis Cluster's node list
    /// (`redis://:pw@a:7000,redis://:pw@b:7001`) masks each node's.
    fn masked(&self) -> String {
        self.0
            .split(',')
            .map(|node| {
                let Some((scheme, rest)) = node.split_once("://") else {
                    return node.to_owned();
                };
                let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let (authority, path) = rest.split_at(authority_end);
                match authority.rsplit_once('@') {
                    Some((user_info, host)) => {
                        let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
                        format!("{scheme}://{user}:***@{host}{path}")
                    }
                    None => node.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl From<String> for ServiceUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for ServiceUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

/// Development generates missing keys; staging and production refuse to start without
/// them. Each has its own default log level and format (`telemetry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    /// `KRUG_ENV`: `development` (default), `staging` or `production`.
    pub fn from_env() -> anyhow::Result<Self> {
        match var("KRUG_ENV", "development").as_str() {
            "development" | "dev" => Ok(Self::Development),
            "staging" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            other => {
                bail!("KRUG_ENV must be `development`, `staging` or `production`, not `{other}`")
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

/// How pushes leave the system.
#[derive(Debug, Clone)]
pub enum PushConfig {
    /// Print and record (development).
    Log,
    /// FCM HTTP v1: `FCM_BASE_URL` (default `https://fcm.googleapis.com`), `FCM_PROJECT_ID`
    /// (default: the service account's `project_id`), and how to authenticate.
    Fcm {
        base_url: String,
        project_id: String,
        auth: FcmCredentials,
    },
}

/// Where FCM's OAuth token comes from.
#[derive(Debug, Clone)]
pub enum FcmCredentials {
    /// `FCM_SERVICE_ACCOUNT_FILE`: a Google service-account JSON key file; tokens are minted
    /// from it and renewed before they expire.
    ServiceAccountFile(PathBuf),
    /// `FCM_TOKEN`: a fixed OAuth token (it expires within the hour: tests only).
    Token(SecretString),
}

/// How SMS leave the system.
#[derive(Debug, Clone)]
pub enum SmsConfig {
    /// Print and record (development).
    Log,
    /// SMS.ru: `SMSRU_API_ID`, `SMSRU_BASE_URL`, optional `SMSRU_SENDER`.
    SmsRu {
        api_id: SecretString,
        base_url: String,
        sender: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `KRUG_ENV`: `development` (default), `staging` or `production`.
    pub environment: Environment,
    /// `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/krug`.
    pub database_url: ServiceUrl,
    /// `DATABASE_REPLICA_URL` (optional): a streaming replica of `DATABASE_URL` for history
    /// reads (ledger, transactions, dashboard); everything else, and every write, stays on
    /// the primary.
    pub database_replica_url: Option<ServiceUrl>,
    /// `REDIS_URL`, default `redis://127.0.0.1:6379`.
    pub redis_url: ServiceUrl,
    /// `CLICKHOUSE_URL`, default `http://127.0.0.1:8123`.
    pub clickhouse_url: ServiceUrl,
    /// `CLICKHOUSE_DB`, default `krug`.
    pub clickhouse_db: String,
    /// `KRUG_BIND`, default `127.0.0.1:8080`.
    pub bind: String,
    /// `KRUG_METRICS_BIND`, none by default: where `krug worker` and `krug scheduler` serve
    /// `GET /metrics` (`krug api` serves it on `KRUG_BIND`). Without it their counters are
    /// not scrapeable.
    pub metrics_bind: Option<String>,
    /// `KRUG_QUEUE_PREFIX`, default `krug`: every Redis key starts with it.
    pub queue_prefix: String,
    /// `KRUG_JWT_PRIVATE_KEY` / `KRUG_JWT_PUBLIC_KEY`: PEM paths (RS256).
    pub jwt_private_key: Option<PathBuf>,
    pub jwt_public_key: Option<PathBuf>,
    /// `KRUG_SECRET_KEY`: 64 hex digits (AES-256-GCM key for CRM credentials and OTP codes).
    pub secret_key: Option<SecretString>,
    /// `KRUG_KEY_DIR`, default `.krug`: where development keys are generated once.
    pub key_dir: PathBuf,
    /// `KRUG_SMS_PROVIDER`: `log` (default) or `smsru`.
    pub sms: SmsConfig,
    /// `KRUG_PUSH_PROVIDER`: `log` (default) or `fcm`.
    pub push: PushConfig,
    /// `KRUG_TIMEZONE`, default `Europe/Moscow`.
    pub timezone: chrono_tz::Tz,
    /// `DATABASE_MAX_CONNECTIONS`, default 20.
    pub database_max_connections: u32,
    /// `KRUG_WORKER_HEARTBEAT_S` (default 5) and `KRUG_WORKER_MISSED_HEARTBEATS` (default 6):
    /// a worker silent for heartbeat × missed seconds is dead and its jobs go back to the queue.
    pub worker_heartbeat_s: u64,
    pub worker_missed_heartbeats: usize,
    /// `KRUG_RECONCILE_LOST_AFTER_S` (default 120): a relayed job not finished after this long
    /// is pushed again by `reconcile` (a no-op if Redis still holds it).
    pub reconcile_lost_after_s: i64,
    /// How long the daily `retention` job keeps rows of passing use (days):
    /// `KRUG_RETAIN_LOGIN_CODES_DAYS` (default 7, from a code's expiry),
    /// `KRUG_RETAIN_REFRESH_TOKENS_DAYS` (default 30, from a session's revocation or expiry),
    /// `KRUG_RETAIN_OUTBOX_DAYS` (default 14, from a job's end),
    /// `KRUG_RETAIN_SCAN_REQUESTS_DAYS` (default 180, from the scan).
    pub retention: storage::retention::RetentionPolicy,
    /// The abuse limits the API enforces (DESIGN.md "Abuse limits"):
    /// `KRUG_OTP_PER_PHONE_PER_DAY` (5), `KRUG_OTP_PER_IP_PER_HOUR` (10),
    /// `KRUG_SMS_BUDGET_PER_HOUR` (1000), `KRUG_VERIFY_FAILURES_PER_IP_PER_HOUR` (30),
    /// `KRUG_TRUSTED_PROXIES` (none: `X-Forwarded-For` is ignored),
    /// `KRUG_SCANS_PER_MEMBER_PER_MINUTE` (10), `KRUG_STAFF_QR_DAILY_TOTAL` (1000000.00).
    pub limits: api::limits::Limits,
    /// `KRUG_CRM_ALLOWED_HOSTS` (default none): host names or addresses a CRM URL may point
    /// at although they are not public (plain http allowed too), e.g. `127.0.0.1` for the
    /// simulators of tests and the demo, or a self-hosted CRM on a private network.
    pub crm_allowed_hosts: Vec<String>,
    /// The object store for media: `S3_ENDPOINT` (default `http://127.0.0.1:9100`, the
    /// local server `scripts/services.sh` runs), `S3_BUCKET` (default `krug`), `S3_REGION`
    /// (default `ru-central1`), `S3_ACCESS_KEY_ID` and `S3_SECRET_ACCESS_KEY` (development
    /// defaults `krug-dev` / `krug-dev-secret`, the local server's; required in production).
    pub s3: adapters::objects::S3Config,
    /// `KRUG_FRAUD_OUTLIER_PERCENT` (default 50): a QR purchase at or over this percent of
    /// its business's `max_check_amount` is listed in `GET /admin/fraud-flags`.
    pub fraud_outlier_percent: rust_decimal::Decimal,
    /// `KRUG_BONUS_EXPIRY_DAYS` (default 365): an accrued lot expires this many days after it
    /// became spendable; 0: never.
    pub bonus_expiry_days: u32,
    /// ЮKassa, for paid events: `YOOKASSA_SHOP_ID` and `YOOKASSA_SECRET_KEY` (both, or
    /// payments are off and registering for a paid event answers 503
    /// `payments_unavailable`), `YOOKASSA_BASE_URL` (default `https://api.yookassa.ru/v3`).
    pub yookassa: Option<YooKassaConfig>,
    /// `SMTP_URL` (none): where e-mail (tickets, receipts, statements) goes, as lettre's
    /// connection URL: `smtp://127.0.0.1:1025` (the local sink `scripts/services.sh` runs),
    /// `smtps://user:password@host:465` in production. Unset: e-mail is printed and recorded,
    /// not sent. It prints with its password masked.
    pub smtp_url: Option<ServiceUrl>,
    /// `SMTP_FROM` (default `Свой Круг <noreply@svoykrug.ru>`): the sender of every e-mail.
    pub smtp_from: String,
    /// `KRUG_PAYMENT_RETURN_URL` (default `svoykrug://payments/return`): where ЮKassa sends
    /// the member back after paying (the app's deep link).
    pub payment_return_url: String,
}

/// ЮKassa's shop credentials and address.
#[derive(Debug, Clone)]
pub struct YooKassaConfig {
    pub base_url: String,
    pub shop_id: String,
    pub secret_key: SecretString,
}

fn var(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A number from `name`, or `default`; the error names the variable.
fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match optional(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} must be a whole number, not `{raw}`")),
    }
}

fn optional(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let environment = Environment::from_env()?;
        let sms = match var("KRUG_SMS_PROVIDER", "log").as_str() {
            "log" => SmsConfig::Log,
            "smsru" => SmsConfig::SmsRu {
                api_id: optional("SMSRU_API_ID")
                    .context("KRUG_SMS_PROVIDER=smsru needs SMSRU_API_ID")?
                    .into(),
                base_url: var("SMSRU_BASE_URL", "https://sms.ru"),
                sender: optional("SMSRU_SENDER"),
            },
            other => bail!("KRUG_SMS_PROVIDER must be `log` or `smsru`, not `{other}`"),
        };
        let push = match var("KRUG_PUSH_PROVIDER", "log").as_str() {
            "log" => PushConfig::Log,
            "fcm" => {
                let auth = match (optional("FCM_SERVICE_ACCOUNT_FILE"), optional("FCM_TOKEN")) {
                    (Some(file), _) => FcmCredentials::ServiceAccountFile(PathBuf::from(file)),
                    (None, Some(token)) => FcmCredentials::Token(token.into()),
                    (None, None) => bail!(
                        "KRUG_PUSH_PROVIDER=fcm needs FCM_SERVICE_ACCOUNT_FILE (a Google service-account key file)"
                    ),
                };
                PushConfig::Fcm {
                    base_url: var("FCM_BASE_URL", "https://fcm.googleapis.com"),
                    // Empty: the service account's own project.
                    project_id: var("FCM_PROJECT_ID", ""),
                    auth,
                }
            }
            other => bail!("KRUG_PUSH_PROVIDER must be `log` or `fcm`, not `{other}`"),
        };
        if environment == Environment::Production && matches!(sms, SmsConfig::Log) {
            bail!("KRUG_ENV=production needs a real SMS provider (KRUG_SMS_PROVIDER=smsru)");
        }
        let queue_prefix = var("KRUG_QUEUE_PREFIX", "krug");
        if queue_prefix.is_empty()
            || !queue_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            bail!(
                "KRUG_QUEUE_PREFIX may contain only letters, digits, `_` and `-` (it is part of Redis keys and channel names)"
            );
        }
        let timezone_name = var("KRUG_TIMEZONE", "Europe/Moscow");
        let timezone = timezone_name.parse().map_err(|_| {
            anyhow::anyhow!("KRUG_TIMEZONE `{timezone_name}` is not an IANA time zone")
        })?;
        let default_limits = api::limits::Limits::default();
        let limits = api::limits::Limits {
            codes_per_phone_per_day: number(
                "KRUG_OTP_PER_PHONE_PER_DAY",
                default_limits.codes_per_phone_per_day,
            )?,
            codes_per_ip_per_hour: number(
                "KRUG_OTP_PER_IP_PER_HOUR",
                default_limits.codes_per_ip_per_hour,
            )?,
            sms_budget_per_hour: number(
                "KRUG_SMS_BUDGET_PER_HOUR",
                default_limits.sms_budget_per_hour,
            )?,
            verify_failures_per_ip_per_hour: number(
                "KRUG_VERIFY_FAILURES_PER_IP_PER_HOUR",
                default_limits.verify_failures_per_ip_per_hour,
            )?,
            trusted_proxies: api::proxies::TrustedProxies::parse(&var("KRUG_TRUSTED_PROXIES", ""))
                .map_err(|e| anyhow::anyhow!("KRUG_TRUSTED_PROXIES: {e}"))?,
            scans_per_member_per_minute: number(
                "KRUG_SCANS_PER_MEMBER_PER_MINUTE",
                default_limits.scans_per_member_per_minute,
            )?,
            devices_per_member: number(
                "KRUG_MAX_DEVICES_PER_MEMBER",
                default_limits.devices_per_member,
            )?,
            staff_qr_daily_total: match optional("KRUG_STAFF_QR_DAILY_TOTAL") {
                None => default_limits.staff_qr_daily_total,
                Some(raw) => raw
                    .trim()
                    .parse::<rust_decimal::Decimal>()
                    .ok()
                    .filter(|d| *d > rust_decimal::Decimal::ZERO)
                    .with_context(|| {
                        format!(
                            "KRUG_STAFF_QR_DAILY_TOTAL must be an amount of roubles, not `{raw}`"
                        )
                    })?,
            },
            ..default_limits
        };
        let s3_key = |name: &str, development: &str| match (optional(name), environment) {
            (Some(value), _) => Ok(value),
            (None, Environment::Development) => Ok(development.to_owned()),
            // A deployed environment never runs on the local server's development keys.
            (None, Environment::Staging | Environment::Production) => Err(anyhow::anyhow!(
                "KRUG_ENV=staging and production need {name}"
            )),
        };
        let s3 = adapters::objects::S3Config {
            endpoint: var("S3_ENDPOINT", "http://127.0.0.1:9100"),
            bucket: var("S3_BUCKET", "krug"),
            region: var("S3_REGION", "ru-central1"),
            access_key_id: s3_key("S3_ACCESS_KEY_ID", "krug-dev")?,
            secret_access_key: s3_key("S3_SECRET_ACCESS_KEY", "krug-dev-secret")?.into(),
        };
        let fraud_outlier_percent = match optional("KRUG_FRAUD_OUTLIER_PERCENT") {
            None => rust_decimal::Decimal::from(50),
            Some(raw) => raw
                .trim()
                .parse::<rust_decimal::Decimal>()
                .ok()
                .filter(|p| {
                    *p > rust_decimal::Decimal::ZERO && *p <= rust_decimal::Decimal::ONE_HUNDRED
                })
                .with_context(|| {
                    format!("KRUG_FRAUD_OUTLIER_PERCENT must be a percent (0–100], not `{raw}`")
                })?,
        };
        let yookassa = match (
            optional("YOOKASSA_SHOP_ID"),
            optional("YOOKASSA_SECRET_KEY"),
        ) {
            (Some(shop_id), Some(secret_key)) => Some(YooKassaConfig {
                base_url: var("YOOKASSA_BASE_URL", "https://api.yookassa.ru/v3"),
                shop_id,
                secret_key: secret_key.into(),
            }),
            (None, None) => None,
            _ => bail!("ЮKassa needs both YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY (or neither)"),
        };
        Ok(Self {
            yookassa,
            payment_return_url: var("KRUG_PAYMENT_RETURN_URL", "svoykrug://payments/return"),
            smtp_url: optional("SMTP_URL").map(ServiceUrl::from),
            smtp_from: var("SMTP_FROM", "Свой Круг <noreply@svoykrug.ru>"),
            fraud_outlier_percent,
            limits,
            environment,
            database_url: var("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/krug").into(),
            database_replica_url: optional("DATABASE_REPLICA_URL").map(ServiceUrl::from),
            redis_url: var("REDIS_URL", "redis://127.0.0.1:6379").into(),
            clickhouse_url: var("CLICKHOUSE_URL", "http://127.0.0.1:8123").into(),
            clickhouse_db: var("CLICKHOUSE_DB", "krug"),
            bind: var("KRUG_BIND", "127.0.0.1:8080"),
            metrics_bind: optional("KRUG_METRICS_BIND"),
            queue_prefix,
            jwt_private_key: optional("KRUG_JWT_PRIVATE_KEY").map(PathBuf::from),
            jwt_public_key: optional("KRUG_JWT_PUBLIC_KEY").map(PathBuf::from),
            secret_key: optional("KRUG_SECRET_KEY").map(SecretString::from),
            key_dir: PathBuf::from(var("KRUG_KEY_DIR", ".krug")),
            sms,
            push,
            timezone,
            database_max_connections: var("DATABASE_MAX_CONNECTIONS", "20")
                .parse()
                .context("DATABASE_MAX_CONNECTIONS must be a number")?,
            worker_heartbeat_s: var("KRUG_WORKER_HEARTBEAT_S", "5")
                .parse()
                .context("KRUG_WORKER_HEARTBEAT_S must be a number of seconds")?,
            worker_missed_heartbeats: var("KRUG_WORKER_MISSED_HEARTBEATS", "6")
                .parse()
                .context("KRUG_WORKER_MISSED_HEARTBEATS must be a number")?,
            reconcile_lost_after_s: var("KRUG_RECONCILE_LOST_AFTER_S", "120")
                .parse()
                .context("KRUG_RECONCILE_LOST_AFTER_S must be a number of seconds")?,
            bonus_expiry_days: number("KRUG_BONUS_EXPIRY_DAYS", 365)?,
            retention: {
                let default = storage::retention::RetentionPolicy::default();
                storage::retention::RetentionPolicy {
                    login_codes_days: number(
                        "KRUG_RETAIN_LOGIN_CODES_DAYS",
                        default.login_codes_days,
                    )?,
                    refresh_tokens_days: number(
                        "KRUG_RETAIN_REFRESH_TOKENS_DAYS",
                        default.refresh_tokens_days,
                    )?,
                    outbox_days: number("KRUG_RETAIN_OUTBOX_DAYS", default.outbox_days)?,
                    scan_requests_days: number(
                        "KRUG_RETAIN_SCAN_REQUESTS_DAYS",
                        default.scan_requests_days,
                    )?,
                }
            },
            crm_allowed_hosts: var("KRUG_CRM_ALLOWED_HOSTS", "")
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
            s3,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{:?}` of the configuration (and of the SMS.ru client made from it) never prints a
    /// secret: SMS.ru's `api_id`, the FCM token, `KRUG_SECRET_KEY`, the S3 secret key, the
    /// passwords in the services' URLs (nor does `{}` of those URLs).
    #[test]
    fn debug_never_prints_a_secret() {
        let mut config = Config::from_env().expect("the default configuration");
        config.sms = SmsConfig::SmsRu {
            api_id: "smsru-api-id-4f1c9e".to_owned().into(),
            base_url: "https://sms.ru".into(),
            sender: None,
        };
        config.push = PushConfig::Fcm {
            base_url: "https://fcm.googleapis.com".into(),
            project_id: "krug".into(),
            auth: FcmCredentials::Token("fcm-token-7d2b0a".to_owned().into()),
        };
        config.secret_key = Some("ab".repeat(32).into());
        config.s3.secret_access_key = "s3-secret-91e5c3".to_owned().into();
        config.database_url = "postgres://krug:pg-pass-1e7a@db.internal:5432/krug".into();
        config.redis_url =
            "redis://:redis-pass-5b0c@10.0.0.1:7000,redis://:redis-pass-5b0c@10.0.0.2:7001".into();
        config.clickhouse_url = "http://default:ch-pass-c33d@ch.internal:8123".into();
        config.smtp_url = Some("smtps://mailer:smtp-pass-0a9f@smtp.example:465".into());
        let printed = format!(
            "{config:?} {config:#?} {} {} {} {}",
            config.database_url,
            config.redis_url,
            config.clickhouse_url,
            config.smtp_url.as_ref().unwrap()
        );
        let mailer = adapters::email::SmtpEmail::new(
            config.smtp_url.as_ref().unwrap().expose(),
            &config.smtp_from,
        )
        .unwrap();
        let printed = format!("{printed} {mailer:?}");
        let client =
            adapters::sms::HttpSmsRu::new("https://sms.ru", "smsru-api-id-4f1c9e".to_owned(), None);
        let printed = format!("{printed} {client:?}");
        for secret in [
            "smsru-api-id-4f1c9e",
            "fcm-token-7d2b0a",
            &"ab".repeat(32),
            "s3-secret-91e5c3",
            "pg-pass-1e7a",
            "redis-pass-5b0c",
            "ch-pass-c33d",
            "smtp-pass-0a9f",
        ] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(printed.contains("REDACTED"), "{printed}");
        // Still recognisable: the user and each host stay.
        assert!(
            printed.contains("postgres://krug:***@db.internal:5432/krug"),
            "{printed}"
        );
        assert!(printed.contains("redis://:***@10.0.0.2:7001"), "{printed}");
    }
}
