//! ClickHouse: the analytics store. Tables are created by `krug migrate`.
//!
//! Facts are exported from Postgres exactly once: a batch of unexported, non-medical,
//! settled transactions is locked in Postgres, the ones ClickHouse does not have yet are
//! inserted (the crate's inserter), and only then are they marked exported, in the same
//! Postgres transaction. A crash or a ClickHouse outage between the two leaves them
//! unmarked; the next export finds them in ClickHouse and only marks them.

use crate::states;
use anyhow::Context;
use clickhouse::Row;
use domain::loyalty::TransactionType;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool, Row as _, postgres::PgRow};
use std::collections::HashSet;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

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

/// The analytics schema. Amounts are Decimal64(2); medical transactions never reach it.
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

/// One row of `transaction_facts`. Money travels as kopecks: the wire form of Decimal64(2).
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct Fact {
    #[serde(with = "clickhouse::serde::uuid")]
    pub transaction_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub user_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub business_id: Uuid,
    pub category: String,
    pub transaction_type: TransactionType,
    pub amount: i64,
    pub bonus_accrued: i64,
    pub bonus_redeemed: i64,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::date")]
    pub event_date: Date,
}

fn kopecks(value: rust_decimal::Decimal) -> i64 {
    let mut v = value.round_dp(2);
    v.rescale(2);
    i64::try_from(v.mantissa()).unwrap_or(i64::MAX)
}

struct Pending {
    id: Uuid,
    user_id: Uuid,
    business_id: Uuid,
    category: String,
    transaction_type: TransactionType,
    amount: rust_decimal::Decimal,
    bonus_accrued: rust_decimal::Decimal,
    bonus_redeemed: rust_decimal::Decimal,
    occurred_at: OffsetDateTime,
}

impl FromRow<'_, PgRow> for Pending {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            user_id: row.try_get("user_id")?,
            business_id: row.try_get("business_id")?,
            category: row.try_get("category")?,
            transaction_type: states::column(row, "transactions", id, "transaction_type")?,
            amount: row.try_get("amount")?,
            bonus_accrued: row.try_get("bonus_accrued")?,
            bonus_redeemed: row.try_get("bonus_redeemed")?,
            occurred_at: row.try_get("occurred_at")?,
        })
    }
}

/// Deletes every fact of `business_id` from ClickHouse: the business was flagged medical
/// and its history leaves analytics. ClickHouse runs the deletion as a mutation in the
/// background; it covers every fact stored before this call (the caller made sure no export
/// of this business can still be writing).
pub async fn delete_business_facts(
    ch: &clickhouse::Client,
    business_id: Uuid,
) -> clickhouse::error::Result<()> {
    ch.query("ALTER TABLE transaction_facts DELETE WHERE toString(business_id) = ?")
        .bind(business_id.to_string())
        .execute()
        .await
}

/// Facts of `business_id` in ClickHouse (for tests and operators checking a purge).
pub async fn business_fact_count(
    ch: &clickhouse::Client,
    business_id: Uuid,
) -> clickhouse::error::Result<u64> {
    ch.query("SELECT count() FROM transaction_facts WHERE toString(business_id) = ?")
        .bind(business_id.to_string())
        .fetch_one::<u64>()
        .await
}

/// Exports every pending fact, `batch` at a time; returns how many were exported.
pub async fn export_facts(
    db: &PgPool,
    ch: &clickhouse::Client,
    batch: i64,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let mut tx = crate::begin_batch(db).await?;
        let rows: Vec<Pending> = sqlx::query_as(
            "SELECT t.id, t.user_id, t.business_id, b.category, t.transaction_type, t.amount, t.bonus_accrued,
                    t.bonus_redeemed, t.occurred_at
             FROM transactions t JOIN businesses b ON b.id = t.business_id
             WHERE t.facts_exported_at IS NULL AND t.bonus_applied AND NOT t.is_medical
               -- The business's flag as it is now, too: one set medical since this purchase
               -- was recorded keeps the rest of its history out of analytics.
               AND NOT b.is_medical
             ORDER BY t.created_at LIMIT $1
             FOR UPDATE OF t SKIP LOCKED",
        )
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
        let present: HashSet<String> = ch
            // `has` rather than `IN ?`: ClickHouse 18.16 reads a bound array as one value in IN.
            .query("SELECT toString(transaction_id) FROM transaction_facts WHERE has(?, toString(transaction_id))")
            .bind(&ids)
            .fetch_all::<String>()
            .await
            .context("Failed to read transaction_facts")?
            .into_iter()
            .collect();
        let mut inserter = ch
            .inserter::<Fact>("transaction_facts")
            .with_max_rows(batch as u64);
        let mut written = 0;
        for row in rows.iter().filter(|r| !present.contains(&r.id.to_string())) {
            inserter
                .write(&Fact {
                    transaction_id: row.id,
                    user_id: row.user_id,
                    business_id: row.business_id,
                    category: row.category.clone(),
                    transaction_type: row.transaction_type,
                    amount: kopecks(row.amount),
                    bonus_accrued: kopecks(row.bonus_accrued),
                    bonus_redeemed: kopecks(row.bonus_redeemed),
                    occurred_at: row.occurred_at,
                    event_date: row.occurred_at.date(),
                })
                .await
                .context("Failed to write a fact")?;
            written += 1;
        }
        inserter
            .end()
            .await
            .context("Failed to insert facts into ClickHouse")?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        sqlx::query("UPDATE transactions SET facts_exported_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        total += rows.len();
        tracing::info!(
            exported = total,
            inserted = written,
            "facts exported to ClickHouse"
        );
    }
}
