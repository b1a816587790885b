//! A partner's dashboard: what happened at one business over a range of local days, summed
//! by day. Every query is scoped to that one business (a business never reads
//! another's rows, medical secrecy included) and served by the indexes of
//! `migrations/…_partner_dashboard.sql` and the hourly sums of
//! `migrations/…_dashboard_hours.sql`, so that a month over a million of the business's
//! transactions reads in a few tens of milliseconds.

use rust_decimal::Decimal;
use sqlx::{FromRow, PgPool};
use time::Date;
use uuid::Uuid;

/// One local day's figures (every day of the range, quiet ones as zeros).
#[derive(Debug, Clone, FromRow)]
pub struct DayFigures {
    pub day: Date,
    /// Σ of the purchases' check amounts.
    pub sales: Decimal,
    pub purchases: i64,
    /// Σ of the refunds' amounts.
    pub refunds: Decimal,
    /// Σ of the cashback the purchases earned (held or already spendable).
    pub bonus_issued: Decimal,
    /// Σ of the bonuses members paid the purchases with.
    pub bonus_redeemed: Decimal,
    /// Purchases paid with a coupon.
    pub coupons_used: i64,
}

/// The figures of a range.
#[derive(Debug, Clone)]
pub struct Dashboard {
    /// By local day, in order.
    pub days: Vec<DayFigures>,
    /// Members with a purchase in the range.
    pub members: i64,
    /// Members whose first purchase at the business falls in the range.
    pub new_members: i64,
    /// Coupons valid at the business issued in the range.
    pub coupons_issued: i64,
    /// Purchases paid with a cross-promo coupon: one from a chain triggered by purchases
    /// elsewhere (another business, or a category), not by this business itself nor by the
    /// nightly churn risk.
    pub promo_arrivals: i64,
}

/// The figures of `business_id` for purchases and refunds that happened from the local day
/// `from` to `to` (both included) in the time zone `tz` (an IANA name; Postgres's zone
/// database draws the days' bounds, summer time included).
///
/// The day sums add up the hourly sums the transaction triggers keep (`business_hours`,
/// `migrations/…_dashboard_hours.sql`): ~720 rows a month however much the business sells.
/// That needs every day to begin on a whole UTC hour, as it does in every Russian zone; in
/// a zone where one does not (India's +05:30), each day sums its transactions' figures
/// instead (`krug_hour_figures`, the triggers' own; exact, but as slow as the month is
/// large). The member count reads the range's
/// purchases (a distinct count does not add up by hour); the parts run side by side on
/// three connections. JIT compilation is off for these statements: the planner cannot see
/// how few rows a day holds, guesses a cost that switches JIT on, and compiling took three
/// times as long as the query.
pub async fn dashboard(
    db: &PgPool,
    business_id: Uuid,
    from: Date,
    to: Date,
    tz: &str,
) -> sqlx::Result<Dashboard> {
    let days = async {
        let mut tx = without_jit(db).await?;
        let rows = sqlx::query_as::<_, DayFigures>(
            "WITH days AS (
                 SELECT day, day::timestamp AT TIME ZONE $4 AS since,
                        (day + 1)::timestamp AT TIME ZONE $4 AS until
                 FROM (SELECT $2::date + n AS day FROM generate_series(0, $3::date - $2::date) AS n) d
             ), whole_hours AS (
                 SELECT bool_and(since = date_trunc('hour', since, 'UTC')
                                 AND until = date_trunc('hour', until, 'UTC')) AS yes
                 FROM days
             ), parts AS (
                 SELECT (h.hour AT TIME ZONE $4)::date AS day, h.sales, h.purchases, h.refunds,
                        h.bonus_issued, h.bonus_redeemed, h.coupons_used
                 FROM business_hours h
                 WHERE (SELECT yes FROM whole_hours) AND h.business_id = $1
                   AND h.hour >= $2::date::timestamp AT TIME ZONE $4
                   AND h.hour < ($3::date + 1)::timestamp AT TIME ZONE $4
                 UNION ALL
                 -- The same figures as the triggers sum by hour, summed by day instead.
                 SELECT d.day, f.sales, f.purchases, f.refunds, f.bonus_issued, f.bonus_redeemed,
                        f.coupons_used
                 FROM days d
                 JOIN transactions t ON t.business_id = $1
                      AND t.occurred_at >= d.since AND t.occurred_at < d.until
                 CROSS JOIN LATERAL krug_hour_figures(t, 1) f
                 WHERE NOT (SELECT yes FROM whole_hours)
             ), sums AS (
                 SELECT day, SUM(sales) AS sales, SUM(purchases)::bigint AS purchases,
                        SUM(refunds) AS refunds, SUM(bonus_issued) AS bonus_issued,
                        SUM(bonus_redeemed) AS bonus_redeemed,
                        SUM(coupons_used)::bigint AS coupons_used
                 FROM parts GROUP BY day
             )
             SELECT d.day, COALESCE(s.sales, 0) AS sales, COALESCE(s.purchases, 0) AS purchases,
                    COALESCE(s.refunds, 0) AS refunds, COALESCE(s.bonus_issued, 0) AS bonus_issued,
                    COALESCE(s.bonus_redeemed, 0) AS bonus_redeemed,
                    COALESCE(s.coupons_used, 0) AS coupons_used
             FROM days d LEFT JOIN sums s USING (day)
             ORDER BY d.day",
        )
        .bind(business_id)
        .bind(from)
        .bind(to)
        .bind(tz)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    };
    let members = member_count(db, business_id, from, to, tz);
    let others = async {
        let mut tx = without_jit(db).await?;
        let rows = sqlx::query_as::<_, (i64, i64, i64)>(
            "WITH r AS (SELECT $2::date::timestamp AT TIME ZONE $4 AS since,
                               ($3::date + 1)::timestamp AT TIME ZONE $4 AS until)
             SELECT
                 (SELECT COUNT(*) FROM business_members, r
                  WHERE business_id = $1 AND first_purchase_at >= r.since
                    AND first_purchase_at < r.until),
                 (SELECT COUNT(*) FROM coupons, r
                  WHERE business_id = $1 AND created_at >= r.since AND created_at < r.until),
                 (SELECT COUNT(*) FROM r, transactions t
                  JOIN coupons c ON c.id = t.coupon_id
                  JOIN promo_chains p ON p.id = c.source_chain_id
                  WHERE t.business_id = $1 AND t.occurred_at >= r.since AND t.occurred_at < r.until
                    AND t.coupon_id IS NOT NULL AND t.transaction_type = 'purchase'
                    AND (p.trigger_category IS NOT NULL
                         OR p.trigger_business_id IS DISTINCT FROM $1
                            AND p.trigger_business_id IS NOT NULL))",
        )
        .bind(business_id)
        .bind(from)
        .bind(to)
        .bind(tz)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    };
    let (days, members, (new_members, coupons_issued, promo_arrivals)) =
        tokio::try_join!(days, members, others)?;
    Ok(Dashboard {
        days,
        members,
        new_members,
        coupons_issued,
        promo_arrivals,
    })
}

/// Members with a purchase at `business_id` from the local day `from` to `to`: the one part
/// of the dashboard that reads the range's purchases (a distinct count does not add up by
/// hour), so the part that grows with the month (the bench times it alone).
pub async fn member_count(
    db: &PgPool,
    business_id: Uuid,
    from: Date,
    to: Date,
    tz: &str,
) -> sqlx::Result<i64> {
    let mut tx = without_jit(db).await?;
    let members = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM (
             SELECT user_id FROM transactions
             WHERE business_id = $1
               AND occurred_at >= $2::date::timestamp AT TIME ZONE $4
               AND occurred_at < ($3::date + 1)::timestamp AT TIME ZONE $4
               AND transaction_type = 'purchase'
             GROUP BY user_id
         ) m",
    )
    .bind(business_id)
    .bind(from)
    .bind(to)
    .bind(tz)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(members)
}

/// A read-only transaction whose statements are never JIT-compiled.
async fn without_jit(db: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    Ok(tx)
}
