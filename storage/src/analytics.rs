//! ClickHouse: the analytics store. Tables are created by `krug migrate`.

use anyhow::Context;

/// Builds a client for `url` and database `database`. The ClickHouse that the project installs
/// (Debian's 18.16) predates the column-type validation of the `clickhouse` crate, so it is off.
pub fn client(url: &str, database: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_validation(false)
}

/// Creates the database and tables if they do not exist.
pub async fn migrate(url: &str, database: &str) -> anyhow::Result<()> {
    let server = clickhouse::Client::default()
        .with_url(url)
        .with_validation(false);
    server
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS `{}`",
            database.replace('`', "")
        ))
        .execute()
        .await
        .context("Failed to create the ClickHouse database")?;
    let db = client(url, database);
    for ddl in DDL {
        db.query(ddl)
            .execute()
            .await
            .context("Failed to create a ClickHouse table")?;
    }
    Ok(())
}

/// The analytics schema. Medical transactions never reach it (DESIGN.md).
const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS transaction_facts (
        transaction_id UUID,
        user_id UUID,
        business_id UUID,
        category String,
        transaction_type String,
        amount Decimal64(2),
        bonus_accrued Decimal64(2),
        bonus_redeemed Decimal64(2),
        occurred_at DateTime,
        event_date Date
    ) ENGINE = MergeTree()
    PARTITION BY toYYYYMM(event_date)
    ORDER BY (user_id, occurred_at, transaction_id)",
    "CREATE TABLE IF NOT EXISTS rfm_snapshots (
        snapshot_date Date,
        user_id UUID,
        recency_days UInt32,
        frequency UInt32,
        monetary Decimal64(2),
        r_score UInt8,
        f_score UInt8,
        m_score UInt8,
        segment String,
        churn_risk Float64,
        computed_at DateTime
    ) ENGINE = ReplacingMergeTree(computed_at)
    PARTITION BY toYYYYMM(snapshot_date)
    ORDER BY (snapshot_date, user_id)",
];

/// `SELECT 1`, for readiness.
pub async fn ping(client: &clickhouse::Client) -> clickhouse::error::Result<()> {
    client.query("SELECT 1").fetch_one::<u8>().await.map(|_| ())
}
