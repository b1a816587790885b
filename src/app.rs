//! Wiring: connections and keys from the configuration, shared by every subcommand.

use crate::{
    config::{Config, FcmCredentials, PushConfig, SmsConfig},
    keys,
};
use adapters::{
    egress::Egress,
    email::{EmailSender, LogEmail, SmtpEmail},
    objects::ObjectStorage,
    payments::{HttpYooKassa, PaymentGateway},
    push::{FcmAuth, HttpFcm, LogPush, PushSender, ServiceAccount},
    sms::{HttpSmsRu, LogSms, SmsSender},
};
use anyhow::Context;
use api::{State as AppState, jwt::JwtKeys};
use jobs::{Env, JobQueue};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use std::sync::Arc;
use storage::{cache::Cache, history::HistoryDb, secret::SecretBox};
use tokio_util::sync::CancellationToken;

/// Connections (opened lazily: a process starts even if a service is down, and reports it)
/// and keys.
#[derive(Clone)]
pub struct Services {
    pub config: Config,
    pub db: PgPool,
    /// History reads: the replica (`DATABASE_REPLICA_URL`) while it answers, else `db`.
    pub history: HistoryDb,
    pub cache: Cache,
    pub queue: JobQueue,
    pub secrets: SecretBox,
    pub jwt: JwtKeys,
    pub clickhouse: clickhouse::Client,
    pub sms: Arc<dyn SmsSender>,
    pub push: Arc<dyn PushSender>,
    /// SMTP (`SMTP_URL`), or the log sender without it.
    pub email: Arc<dyn EmailSender>,
    /// Where CRM calls may go.
    pub egress: Egress,
    pub objects: Arc<ObjectStorage>,
    /// ЮKassa, when configured.
    pub payments: Option<Arc<dyn PaymentGateway>>,
    /// What is due (holds, expiries, the end of a settlement period): the API and the
    /// workers of one process share it, so a test that moves it moves both.
    pub clock: domain::clock::Clock,
}

impl Services {
    pub fn connect(config: Config) -> anyhow::Result<Self> {
        let keys = keys::load(&config)?;
        let db = storage::pg_pool(
            config.database_url.expose(),
            config.database_max_connections,
        )
        .context("Failed to configure the Postgres pool (DATABASE_URL)")?;
        let replica = match &config.database_replica_url {
            Some(url) => Some(
                storage::history::replica_pool(url.expose(), config.database_max_connections)
                    .context("Failed to configure the replica's pool (DATABASE_REPLICA_URL)")?,
            ),
            None => None,
        };
        let history = HistoryDb::new(db.clone(), replica);
        let redis = storage::redis_target::RedisTarget::parse(config.redis_url.expose())
            .and_then(|target| target.connect())
            .context("Failed to configure Redis (REDIS_URL)")?;
        let sms: Arc<dyn SmsSender> = match &config.sms {
            SmsConfig::Log => Arc::new(LogSms),
            SmsConfig::SmsRu {
                api_id,
                base_url,
                sender,
            } => Arc::new(HttpSmsRu::new(
                base_url,
                api_id.expose_secret().to_owned(),
                sender.clone(),
            )),
        };
        let push: Arc<dyn PushSender> = match &config.push {
            PushConfig::Log => Arc::new(LogPush),
            PushConfig::Fcm {
                base_url,
                project_id,
                auth,
            } => {
                let (auth, own_project) = match auth {
                    FcmCredentials::Token(token) => (FcmAuth::Static(token.clone()), None),
                    FcmCredentials::ServiceAccountFile(path) => {
                        let json = std::fs::read_to_string(path).with_context(|| {
                            format!("Failed to read FCM_SERVICE_ACCOUNT_FILE {}", path.display())
                        })?;
                        let account = ServiceAccount::from_json(&json).map_err(|e| {
                            anyhow::anyhow!("FCM_SERVICE_ACCOUNT_FILE {}: {e}", path.display())
                        })?;
                        let project = account.project_id.clone();
                        (FcmAuth::ServiceAccount(account), project)
                    }
                };
                let project_id = Some(project_id.clone())
                    .filter(|p| !p.is_empty())
                    .or(own_project)
                    .context("KRUG_PUSH_PROVIDER=fcm needs FCM_PROJECT_ID (the service account names none)")?;
                Arc::new(HttpFcm::new(base_url, &project_id, auth))
            }
        };
        let email: Arc<dyn EmailSender> = match &config.smtp_url {
            Some(url) => Arc::new(
                SmtpEmail::new(url.expose(), &config.smtp_from)
                    .context("Failed to configure e-mail (SMTP_URL, SMTP_FROM)")?,
            ),
            None => {
                if config.environment == crate::config::Environment::Production {
                    tracing::warn!(
                        "SMTP_URL is unset: e-mail (tickets, receipts, statements) is only logged"
                    );
                }
                Arc::new(LogEmail)
            }
        };
        let objects = Arc::new(
            ObjectStorage::new(&config.s3)
                .context("Failed to configure the object store (S3_*)")?,
        );
        let payments = config.yookassa.as_ref().map(|kassa| {
            Arc::new(HttpYooKassa::new(
                &kassa.base_url,
                kassa.shop_id.clone(),
                kassa.secret_key.clone(),
            )) as Arc<dyn PaymentGateway>
        });
        Ok(Self {
            objects,
            payments,
            push,
            email,
            egress: Egress::new(&config.crm_allowed_hosts),
            db,
            history,
            cache: Cache::new(redis.clone(), config.queue_prefix.clone()),
            queue: JobQueue::new(redis, config.queue_prefix.clone()),
            secrets: SecretBox::from_hex(&keys.secret_key_hex)
                .map_err(|e| anyhow::anyhow!("KRUG_SECRET_KEY {e}"))?,
            jwt: JwtKeys::from_pem(&keys.jwt_private_pem, &keys.jwt_public_pem)
                .context("Failed to load the JWT keys")?,
            clickhouse: storage::analytics::client(
                config.clickhouse_url.expose(),
                &config.clickhouse_db,
            ),
            sms,
            config,
            clock: Default::default(),
        })
    }

    pub fn app_state(&self) -> Arc<AppState> {
        Arc::new(AppState {
            db: self.db.clone(),
            history: self.history.clone(),
            cache: self.cache.clone(),
            queue: self.queue.clone(),
            secrets: self.secrets.clone(),
            jwt: self.jwt.clone(),
            clickhouse: self.clickhouse.clone(),
            objects: self.objects.clone(),
            payments: self.payments.clone(),
            payment_return_url: self.config.payment_return_url.clone(),
            timezone: self.config.timezone,
            clock: self.clock.clone(),
            bonus_expiry_days: self.config.bonus_expiry_days,
            redis_url: self.config.redis_url.expose().to_owned(),
            balances: Default::default(),
            limits: self.config.limits.clone(),
            revoked: Default::default(),
            egress: self.egress.clone(),
            public_metrics: self.config.metrics_bind.is_none(),
        })
    }

    pub fn job_env(&self) -> Arc<Env> {
        Arc::new(Env {
            db: self.db.clone(),
            cache: self.cache.clone(),
            queue: self.queue.clone(),
            secrets: self.secrets.clone(),
            sms: self.sms.clone(),
            push: self.push.clone(),
            email: self.email.clone(),
            egress: self.egress.clone(),
            clickhouse: self.clickhouse.clone(),
            objects: self.objects.clone(),
            payments: self.payments.clone(),
            timezone: self.config.timezone,
            clock: self.clock.clone(),
            bonus_expiry_days: self.config.bonus_expiry_days,
            tier_rules: Default::default(),
            finisher: jobs::finisher::Finisher::start(self.db.clone()),
            scans: Default::default(),
            retention: self.config.retention,
            activity: Default::default(),
            fraud_outlier_percent: self.config.fraud_outlier_percent,
            reconcile: jobs::env::ReconcilePolicy {
                lost_after_s: self.config.reconcile_lost_after_s,
                ..Default::default()
            },
        })
    }
}

/// Creates the database if needed, applies the migrations, seals CRM credentials stored in
/// an older form again, and creates the ClickHouse tables.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    storage::ensure_database(config.database_url.expose()).await?;
    let db = storage::pg_pool(config.database_url.expose(), 2)?;
    storage::migrate(&db)
        .await
        .context("Failed to apply the migrations")?;
    let keys = keys::load(config)?;
    let secrets = SecretBox::from_hex(&keys.secret_key_hex)
        .map_err(|e| anyhow::anyhow!("KRUG_SECRET_KEY {e}"))?;
    let resealed = storage::integrations::reseal_stale(&db, &secrets)
        .await
        .context("Failed to seal the stored CRM credentials again")?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            "CRM credentials sealed with the current key version"
        );
    }
    db.close().await;
    storage::analytics::migrate(config.clickhouse_url.expose(), &config.clickhouse_db).await?;
    Ok(())
}

/// Cancelled on SIGINT or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}
