//! The partners' figures: a month's dashboard over a million transactions of one business
//! (`dashboard`), and a month's settlement closed over ten million ledger entries
//! (`settlement`). Both sizes are flags (`--dashboard-transactions`, `--settlement-entries`)
//! so that a quick run can check the parts work; a figure measured below DESIGN.md's size
//! is reported as supporting, never as the target met.

use super::{Figure, System, Verdict, ms, percentile, replace_database};
use domain::loyalty::EntryKind;
use krug::app::Services;
use rust_decimal::Decimal;
use sqlx::Connection;
use std::time::{Duration, Instant};
use storage::ledger::{Entry, Locked};
use uuid::Uuid;

/// DESIGN.md's sizes.
pub const DASHBOARD_TRANSACTIONS: usize = 1_000_000;
pub const SETTLEMENT_ENTRIES: usize = 10_000_000;

/// `GET /business/dashboard` for a whole month, one request after another against
/// `krug api`, over `transactions` purchases and refunds of one business spread over the
/// last year (and a tenth as many at a second business, which the dashboard must skip).
///
/// The rows are written straight into `transactions` by one statement each: the dashboard
/// reads purchases only, never the ledger, and a million QR scans would take the run's
/// whole time. Their members, coupons and the promo chain are real rows.
pub(super) async fn dashboard_latency(
    system: &System,
    transactions: usize,
) -> anyhow::Result<Vec<Figure>> {
    let db = &system.services.db;
    let (business, _) = super::business_and_members(system, 50_000).await?;
    let (other, _) = super::business_and_members(system, 0).await?;
    let owner: Uuid =
        sqlx::query_scalar("INSERT INTO users (phone) VALUES ('+79980000001') RETURNING id")
            .fetch_one(db)
            .await?;
    storage::businesses::put_staff(db, business.id, owner, domain::roles::StaffRole::Owner).await?;
    let token = system.services.jwt.issue(owner, vec![], Uuid::new_v4());
    let started = Instant::now();
    let chain: Uuid = sqlx::query_scalar(
        "INSERT INTO promo_chains (trigger_business_id, target_business_id, discount_type,
                                   discount_value, valid_days)
         VALUES ($1, $2, 'percent', 10, 7) RETURNING id",
    )
    .bind(other.id)
    .bind(business.id)
    .fetch_one(db)
    .await?;
    // One coupon in fifty purchases, issued over the same year.
    let coupons = transactions / 50;
    sqlx::query(
        "INSERT INTO coupons (code, user_id, business_id, discount_type, discount_value,
                              expires_at, source_chain_id, created_at)
         SELECT 'BENCH' || i, m.ids[(1 + (i * 7919) % array_length(m.ids, 1))::int], $1, 'percent', 10,
                now() - interval '365 days' + (i::float8 / $3::float8) * interval '365 days' + interval '7 days',
                $2, now() - interval '365 days' + (i::float8 / $3::float8) * interval '365 days'
         FROM generate_series(1, $3) AS i,
              (SELECT array_agg(id) AS ids FROM users WHERE phone LIKE '+7990%') AS m",
    )
    .bind(business.id)
    .bind(chain)
    .bind(coupons as i64)
    .execute(db)
    .await?;
    for (business_id, count) in [(business.id, transactions), (other.id, transactions / 10)] {
        // Every fiftieth row a refund, every fiftieth purchase paid with one of the coupons.
        sqlx::query(
            "INSERT INTO transactions (user_id, business_id, transaction_type, source, external_id,
                                       amount, coupon_discount, coupon_id, bonus_redeemed,
                                       bonus_accrued, is_medical, bonus_applied, occurred_at,
                                       created_at)
             SELECT m.ids[(1 + (i * 7919) % array_length(m.ids, 1))::int], $1,
                    CASE WHEN i % 50 = 0 THEN 'refund' ELSE 'purchase' END, 'qr', 'bench-' || i,
                    500 + (i * 37) % 9500, 0,
                    CASE WHEN i % 50 = 25 AND $1 = $3 THEN c.ids[(1 + (i / 50) % array_length(c.ids, 1))::int] END,
                    (i % 10) * 10, (500 + (i * 37) % 9500) * 0.05, false, true, t.ts, t.ts
             FROM generate_series(1, $2) AS i
             CROSS JOIN (SELECT array_agg(id) AS ids FROM users WHERE phone LIKE '+7990%') AS m
             CROSS JOIN (SELECT array_agg(id ORDER BY created_at) AS ids FROM coupons) AS c
             CROSS JOIN LATERAL (
                 SELECT now() - interval '365 days' + (i::float8 / $2::float8) * interval '365 days' AS ts
             ) AS t",
        )
        .bind(business_id)
        .bind(count as i64)
        .bind(business.id)
        .execute(db)
        .await?;
    }
    // As autovacuum would after a load: statistics, and the visibility map that lets the
    // dashboard's index be read without the table.
    for table in ["transactions", "coupons", "business_members"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(db)
            .await?;
    }
    println!(
        "  loaded in {:.1} s: {transactions} transactions of one business, {} of another, {coupons} coupons",
        started.elapsed().as_secs_f64(),
        transactions / 10
    );
    // The last eleven whole months, each read whole.
    let months: Vec<(String, String)> = sqlx::query_as(
        "SELECT to_char(d, 'YYYY-MM-DD'), to_char(d + interval '1 month' - interval '1 day', 'YYYY-MM-DD')
         FROM generate_series(date_trunc('month', now()) - interval '11 months',
                              date_trunc('month', now()) - interval '1 month',
                              interval '1 month') AS d",
    )
    .fetch_all(db)
    .await?;
    let http = adapters::http_client(Duration::from_secs(10));
    let mut latencies = Vec::new();
    let mut purchases_seen = 0i64;
    // A first round, unrecorded, warms the API's pool and Postgres's caches.
    for (rounds, recorded) in [(2usize, false), (30, true)] {
        for round in 0..rounds {
            for (from, to) in &months {
                let url = format!(
                    "{}/api/v1/business/dashboard?from={from}&to={to}",
                    system.api
                );
                let t = Instant::now();
                let response = http.get(url).bearer_auth(&token).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "the dashboard answered {}",
                    response.status()
                );
                let body: serde_json::Value = response.json().await?;
                let elapsed = t.elapsed();
                if recorded {
                    latencies.push(elapsed);
                }
                if round == 0 && recorded {
                    purchases_seen += body["data"]["purchases"].as_i64().unwrap_or_default();
                }
            }
        }
    }
    latencies.sort();
    let p99 = percentile(&latencies, 99.0);
    // The part that grows with the month, timed alone against Postgres.
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let tz = system.services.config.timezone.name();
    let mut counts = Vec::new();
    for _ in 0..3 {
        for (from, to) in &months {
            let (from, to) = (time::Date::parse(from, day)?, time::Date::parse(to, day)?);
            let t = Instant::now();
            storage::dashboard::member_count(db, business.id, from, to, tz).await?;
            counts.push(t.elapsed());
        }
    }
    counts.sort();
    let member_count = format!(
        "the month's distinct member count alone p50 {} / p99 {}",
        ms(percentile(&counts, 50.0)),
        ms(percentile(&counts, 99.0))
    );
    let measured = format!(
        "p50 {} / p95 {} / p99 {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 95.0)),
        ms(p99)
    );
    println!("  {member_count}");
    println!(
        "  {} requests over {} months ({purchases_seen} purchases in them): {measured}",
        latencies.len(),
        months.len()
    );
    let full = transactions >= DASHBOARD_TRANSACTIONS;
    Ok(vec![Figure {
        target: "dashboard",
        what: format!(
            "one month per request, one after another, {} requests; {transactions} transactions of the business over a year",
            latencies.len()
        ),
        measured,
        verdict: match (full, p99 <= Duration::from_millis(50)) {
            (false, _) => Verdict::Supporting,
            (true, true) => Verdict::Met,
            (true, false) => Verdict::NotMet(format!("p99 {}; {member_count}", ms(p99))),
        },
        comparison: None,
    }])
}

/// Closes a month of `entries` ledger entries (accruals, redemptions and reversals at five
/// businesses, referral rewards of the operator's) into its statement: the time of
/// `storage::settlement::close`, the one the `settlement` job and the operators' route call.
///
/// The entries are written through `storage::ledger` (the one writer of the ledger), in
/// batches, on a database of the bench's own; the load's time is printed, not judged.
pub(super) async fn settlement_close(
    services: &Services,
    entries: usize,
) -> anyhow::Result<Figure> {
    let database = format!("krug_bench_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut config = services.config.clone();
    config.database_url = replace_database(config.database_url.expose(), &database).into();
    krug::app::migrate(&config).await?;
    let db = storage::pg_pool(config.database_url.expose(), 4)?;
    let result = close_loaded_month(&db, config.timezone, entries).await;
    db.close().await;
    if let Ok(mut admin) =
        sqlx::PgConnection::connect(&replace_database(config.database_url.expose(), "postgres"))
            .await
    {
        let _ = sqlx::Executor::execute(
            &mut admin,
            sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")),
        )
        .await;
    }
    result
}

async fn close_loaded_month(
    db: &sqlx::PgPool,
    timezone: chrono_tz::Tz,
    entries: usize,
) -> anyhow::Result<Figure> {
    const MEMBERS: usize = 100_000;
    const BATCH: usize = 10_000;
    let mut businesses = Vec::new();
    for i in 0..5 {
        let b = storage::businesses::create(
            db,
            &storage::businesses::NewBusiness {
                name: format!("Партнёр {i}"),
                category: domain::Category::Beauty,
                cashback_percent: Decimal::from(5),
                max_redeem_percent: Decimal::from(30),
                max_check_amount: storage::businesses::DEFAULT_MAX_CHECK_AMOUNT,
                is_medical: false,
                bonus_hold_days: 0,
                staff_refund_limit: storage::businesses::DEFAULT_STAFF_REFUND_LIMIT,
            },
        )
        .await?;
        businesses.push(b.id);
    }
    let members: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (phone) SELECT '+7991' || lpad(i::text, 7, '0')
         FROM generate_series(1, $1) AS i RETURNING id",
    )
    .bind(MEMBERS as i64)
    .fetch_all(db)
    .await?;
    let loading = Instant::now();
    let mut written = 0usize;
    while written < entries {
        let size = BATCH.min(entries - written);
        let batch: Vec<Entry> = (written..written + size)
            .map(|i| {
                let (kind, amount, business_id) = match i % 20 {
                    0..=10 => (
                        EntryKind::Accrual,
                        Decimal::new(5000 + (i % 997) as i64, 2),
                        Some(businesses[i % 5]),
                    ),
                    11..=17 => (
                        EntryKind::Redemption,
                        -Decimal::new(3000 + (i % 991) as i64, 2),
                        Some(businesses[(i / 5) % 5]),
                    ),
                    18 => (
                        EntryKind::Reversal,
                        -Decimal::new(1000 + (i % 89) as i64, 2),
                        Some(businesses[i % 5]),
                    ),
                    _ => (EntryKind::Referral, Decimal::from(300), None),
                };
                Entry {
                    user_id: members[(i * 7919) % MEMBERS],
                    kind,
                    amount,
                    transaction_id: None,
                    business_id,
                    key: format!("bench:{i}"),
                }
            })
            .collect();
        let mut tx = db.begin().await?;
        Locked::default().post(&mut tx, &batch).await?;
        tx.commit().await?;
        written += size;
        if written % 1_000_000 < BATCH {
            println!(
                "  {written} entries written ({:.0}/s)",
                written as f64 / loading.elapsed().as_secs_f64()
            );
        }
    }
    sqlx::raw_sql("VACUUM ANALYZE bonus_ledger")
        .execute(db)
        .await?;
    println!(
        "  {entries} entries written through storage::ledger in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    // The entries were written this month: close it as if it had ended (the close takes
    // what was written until the moment it runs).
    let period =
        storage::settlement::period_at(db, time::OffsetDateTime::now_utc(), timezone.name())
            .await?;
    let after_end = storage::settlement::month_bounds(db, period, timezone.name())
        .await?
        .1;
    let closing = Instant::now();
    let mut tx = db.begin().await?;
    let statement = storage::settlement::close(&mut tx, period, timezone.name(), after_end, None)
        .await?
        .map_err(|refusal| anyhow::anyhow!("the close was refused: {refusal}"))?;
    tx.commit().await?;
    let took = closing.elapsed();
    anyhow::ensure!(
        statement.entries == entries as i64,
        "the statement counted {} entries of {entries}",
        statement.entries
    );
    println!(
        "  closed {period}: {} entries, {} businesses, {} transfers in {:.2} s",
        statement.entries,
        statement.lines.len(),
        statement.transfers.len(),
        took.as_secs_f64()
    );
    let full = entries >= SETTLEMENT_ENTRIES;
    Ok(Figure {
        target: "settlement",
        what: format!(
            "{entries} ledger entries (5 businesses, {MEMBERS} members) closed into a statement"
        ),
        measured: format!("{:.2} s", took.as_secs_f64()),
        verdict: match (full, took <= Duration::from_secs(60)) {
            (false, _) => Verdict::Supporting,
            (true, true) => Verdict::Met,
            (true, false) => Verdict::NotMet(format!("{:.1} s", took.as_secs_f64())),
        },
        comparison: None,
    })
}
