#![doc = include_str!("../README.md")]

pub mod analytics;
pub mod audit;
pub mod businesses;
pub mod cache;
pub mod coupons;
pub mod crm;
pub mod dashboard;
pub mod devices;
pub mod events;
pub mod fraud;
pub mod history;
pub mod integrations;
pub mod ledger;
pub mod limits;
pub mod loyalty;
pub mod media;
pub mod notifications;
pub mod otp;
pub mod outbox;
pub mod page;
pub mod partners;
pub mod payments;
pub mod privacy;
pub mod redis_target;
pub mod referrals;
pub mod retention;
pub mod rfm;
pub mod scans;
pub mod schedule;
pub mod search;
pub mod secret;
pub mod sessions;
pub mod settlement;
pub mod states;
pub mod subjects;
pub mod support;
pub mod tiers;
pub mod tokens;
pub mod users;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::{str::FromStr, time::Duration};

/// The schema, from `migrations/`: the one source of it.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a Postgres pool. Connections are made lazily, so a process can start (and report
/// "not ready") while Postgres is down.
pub fn pg_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    pool_waiting(url, max_connections, Duration::from_secs(3))
}

/// A lazy pool whose reads give up on a connection after `acquire_timeout`.
fn pool_waiting(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("krug");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// Begins a transaction for statements over batches of ids (`= ANY($1)`, `UNNEST`), planned
/// for the ids at hand. A connection otherwise keeps the generic plan it made when a table
/// was small (a sequential scan) as the table grows, until an ANALYZE invalidates it: a CRM
/// backfill into a young database ran some 40 times slower for it.
pub async fn begin_batch(db: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Creates the database named in `url` if it does not exist yet (for `krug migrate` and the demo
/// on a fresh machine).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use sqlx::{Connection, Executor};
    let options = PgConnectOptions::from_str(url).context("Failed to parse DATABASE_URL")?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = sqlx::PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .context("Failed to connect to Postgres")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        // Two processes may race here (tests, several `release` phases): losing is fine.
        if let Err(e) = admin
            .execute(sqlx::AssertSqlSafe(format!(
                r#"CREATE DATABASE "{quoted}""#
            )))
            .await
        {
            tracing::debug!(error = %e, database = %name, "CREATE DATABASE lost a race");
        }
    }
    Ok(())
}

/// Applies the migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether `error` means Postgres could not be reached (as opposed to a statement that
/// failed): what operators are alerted on.
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}
