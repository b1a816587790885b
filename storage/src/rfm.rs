//! The nightly RFM snapshot, computed in ClickHouse over `transaction_facts`.
//!
//! Two passes over the year of facts: the first gives the population's quintile boundaries
//! (`quantilesExact`, the rule of `domain::rfm::quintiles`), the second scores every member
//! against them and writes `rfm_snapshots` for the date. `rfm_snapshots` is a
//! ReplacingMergeTree keyed by (date, member): re-running a date replaces it (reads use
//! `FINAL`). The SQL mirrors `domain::rfm`; a test checks they agree. ClickHouse 18.16 has
//! no window functions, hence quantiles rather than `ntile`.

use anyhow::Context;
use clickhouse::Row;
use serde::Deserialize;
use time::Date;
use uuid::Uuid;

/// Per-member figures of a year, as both passes compute them.
const MEMBERS: &str = "
    SELECT user_id,
           toRelativeDayNum(toDate(?)) - toRelativeDayNum(maxIf(event_date, transaction_type = 'purchase')) AS recency_days,
           countIf(transaction_type = 'purchase') AS frequency,
           sumIf(toFloat64(amount), transaction_type = 'purchase') - sumIf(toFloat64(amount), transaction_type = 'refund') AS monetary,
           toRelativeDayNum(maxIf(event_date, transaction_type = 'purchase'))
             - toRelativeDayNum(minIf(event_date, transaction_type = 'purchase')) AS span_days
    FROM transaction_facts
    WHERE event_date > toDate(?) - 365 AND event_date <= toDate(?)
    GROUP BY user_id
    HAVING frequency > 0";

#[derive(Debug, Clone, Row, Deserialize)]
struct Boundaries {
    members: u64,
    recency: Vec<f64>,
    frequency: Vec<f64>,
    monetary: Vec<f64>,
}

/// What a snapshot run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSummary {
    pub members: u64,
    pub recency_quintiles: Vec<f64>,
    pub frequency_quintiles: Vec<f64>,
    pub monetary_quintiles: Vec<f64>,
}

/// Computes and stores the snapshot of `date`.
pub async fn compute(ch: &clickhouse::Client, date: Date) -> anyhow::Result<SnapshotSummary> {
    let day = date.to_string();
    let b: Boundaries = ch
        .query(&format!(
            "SELECT count() AS members,
                    quantilesExact(0.2, 0.4, 0.6, 0.8)(toFloat64(recency_days)) AS recency,
                    quantilesExact(0.2, 0.4, 0.6, 0.8)(toFloat64(frequency)) AS frequency,
                    quantilesExact(0.2, 0.4, 0.6, 0.8)(monetary) AS monetary
             FROM ({MEMBERS})"
        ))
        .bind(&day)
        .bind(&day)
        .bind(&day)
        .fetch_one()
        .await
        .context("Failed to compute the quintile boundaries")?;
    tracing::info!(members = b.members, date = %day, "RFM: quintile boundaries computed; scoring members");
    if b.members == 0 {
        return Ok(SnapshotSummary {
            members: 0,
            recency_quintiles: vec![],
            frequency_quintiles: vec![],
            monetary_quintiles: vec![],
        });
    }
    let fifth = |column: &str, q: &[f64]| {
        format!(
            "(1 + ({column} > {}) + ({column} > {}) + ({column} > {}) + ({column} > {}))",
            q[0], q[1], q[2], q[3]
        )
    };
    let r = format!("(6 - {})", fifth("toFloat64(recency_days)", &b.recency));
    let f = fifth("toFloat64(frequency)", &b.frequency);
    let m = fifth("monetary", &b.monetary);
    // domain::rfm::churn_risk: the usual gap (≥ 7 days; 60 for one purchase), risk rising
    // from 0 at one gap to 1 at three.
    let gap = "if(frequency >= 2, greatest(7, span_days / (frequency - 1)), 60)";
    ch.query(&format!(
        "INSERT INTO rfm_snapshots
         SELECT toDate(?) AS snapshot_date, user_id, toUInt32(recency_days), toUInt32(frequency),
                toDecimal64(monetary, 2), toUInt8(r), toUInt8(f), toUInt8(m),
                concat(toString(r), toString(f), toString(m)),
                round(greatest(0, least(1, (recency_days - gap) / (2 * gap))), 3),
                now()
         FROM (SELECT *, {r} AS r, {f} AS f, {m} AS m, {gap} AS gap FROM ({MEMBERS}))"
    ))
    .bind(&day)
    .bind(&day)
    .bind(&day)
    .bind(&day)
    .execute()
    .await
    .context("Failed to write the RFM snapshot")?;
    tracing::info!(members = b.members, date = %day, "RFM: snapshot written");
    Ok(SnapshotSummary {
        members: b.members,
        recency_quintiles: b.recency,
        frequency_quintiles: b.frequency,
        monetary_quintiles: b.monetary,
    })
}

/// Members per segment in the snapshot of `date`.
pub async fn segment_counts(
    ch: &clickhouse::Client,
    date: Date,
) -> anyhow::Result<Vec<(String, u64)>> {
    Ok(ch
        .query("SELECT segment, count() FROM rfm_snapshots FINAL WHERE snapshot_date = toDate(?) GROUP BY segment ORDER BY segment")
        .bind(date.to_string())
        .fetch_all::<(String, u64)>()
        .await?)
}

/// One member's scores.
#[derive(Debug, Clone, Row, Deserialize, PartialEq)]
pub struct MemberScore {
    #[serde(with = "clickhouse::serde::uuid")]
    pub user_id: Uuid,
    pub recency_days: u32,
    pub frequency: u32,
    /// Kopecks (Decimal64(2) on the wire).
    pub monetary: i64,
    pub r_score: u8,
    pub f_score: u8,
    pub m_score: u8,
    pub segment: String,
    pub churn_risk: f64,
}

/// Members' scores of `date`, by user id after `after`.
pub async fn member_scores(
    ch: &clickhouse::Client,
    date: Date,
    after: Option<Uuid>,
    limit: u64,
) -> anyhow::Result<Vec<MemberScore>> {
    Ok(ch
        .query(
            "SELECT user_id, recency_days, frequency, monetary, r_score, f_score, m_score, segment, churn_risk
             FROM rfm_snapshots FINAL
             WHERE snapshot_date = toDate(?) AND toString(user_id) > ?
             ORDER BY toString(user_id) LIMIT ?",
        )
        .bind(date.to_string())
        .bind(after.map(|u| u.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all::<MemberScore>()
        .await?)
}

#[derive(Debug, Clone, Row, Deserialize)]
struct Member {
    #[serde(with = "clickhouse::serde::uuid")]
    user_id: Uuid,
}

/// Members whose churn risk is at least `min_risk` in the snapshot of `date` but was not in
/// the latest snapshot before it (with no earlier snapshot, every member at that risk).
pub async fn newly_at_risk(
    ch: &clickhouse::Client,
    date: Date,
    min_risk: f64,
) -> anyhow::Result<Vec<Uuid>> {
    let day = date.to_string();
    let members: Vec<Member> = ch
        .query(
            "SELECT user_id FROM rfm_snapshots FINAL
             WHERE snapshot_date = toDate(?) AND churn_risk >= ?
               AND user_id NOT IN (
                   SELECT user_id FROM rfm_snapshots FINAL
                   WHERE snapshot_date = (SELECT max(snapshot_date) FROM rfm_snapshots WHERE snapshot_date < toDate(?))
                     AND churn_risk >= ?)
             ORDER BY user_id",
        )
        .bind(&day)
        .bind(min_risk)
        .bind(&day)
        .bind(min_risk)
        .fetch_all()
        .await
        .context("Failed to read the members newly at risk")?;
    Ok(members.into_iter().map(|m| m.user_id).collect())
}
