//! Settlement statements (DESIGN.md "Settlement"): what a period's ledger entries come to
//! per business, previewed while the period is open and closed once into an immutable
//! statement (`migrations/…_settlement.sql` says which entries a statement covers). Reads
//! the ledger, never writes it.

use crate::states;
use domain::settlement::{self as rules, KindSum, Period, Statement};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// A closed period.
#[derive(Debug, Clone, FromRow)]
pub struct ClosedPeriod {
    pub period: String,
    /// `None`: the first statement, covering everything before `covers_until`.
    pub covers_from: Option<OffsetDateTime>,
    pub covers_until: OffsetDateTime,
    pub operator_funded: Decimal,
    pub total: Decimal,
    pub entries: i64,
    pub closed_at: OffsetDateTime,
    /// `None`: closed by the `settlement` job.
    pub closed_by: Option<Uuid>,
}

macro_rules! period_columns {
    () => {
        "period, covers_from, covers_until, operator_funded, total, entries, closed_at, closed_by"
    };
}

/// A business's line of a closed statement.
#[derive(Debug, Clone, FromRow)]
pub struct StoredLine {
    pub period: String,
    pub business_id: Uuid,
    pub business_name: String,
    pub issued: Decimal,
    pub redeemed: Decimal,
    pub expired: Decimal,
    pub refunded: Decimal,
    pub net: Decimal,
}

/// A transfer of a closed statement.
#[derive(Debug, Clone, FromRow)]
pub struct StoredTransfer {
    pub id: Uuid,
    pub period: String,
    pub business_id: Uuid,
    pub business_name: String,
    /// `to_operator` or `to_business`.
    pub direction: String,
    pub amount: Decimal,
    pub paid_at: Option<OffsetDateTime>,
    pub paid_by: Option<Uuid>,
}

/// A closed statement as stored.
#[derive(Debug, Clone)]
pub struct Closed {
    pub period: ClosedPeriod,
    pub lines: Vec<StoredLine>,
    pub transfers: Vec<StoredTransfer>,
}

/// An open period's live preview.
#[derive(Debug, Clone)]
pub struct Preview {
    pub period: Period,
    pub covers_from: OffsetDateTime,
    pub covers_until: OffsetDateTime,
    pub statement: Statement<Uuid>,
}

/// The instants a month starts and ends in the time zone `tz` (an IANA name), `[start, end)`.
pub async fn month_bounds(
    db: impl PgExecutor<'_>,
    period: Period,
    tz: &str,
) -> sqlx::Result<(OffsetDateTime, OffsetDateTime)> {
    let next = period.next();
    sqlx::query_as(
        "SELECT make_timestamptz($1, $2, 1, 0, 0, 0, $5), make_timestamptz($3, $4, 1, 0, 0, 0, $5)",
    )
    .bind(period.year())
    .bind(i32::from(u8::from(period.month())))
    .bind(next.year())
    .bind(i32::from(u8::from(next.month())))
    .bind(tz)
    .fetch_one(db)
    .await
}

/// The ledger entries created in `[from, until)` (`from` `None`: since the beginning),
/// summed by funder and kind.
async fn sums(
    db: impl PgExecutor<'_>,
    from: Option<OffsetDateTime>,
    until: OffsetDateTime,
) -> sqlx::Result<Vec<KindSum<Uuid>>> {
    // With one entry of each group, for an unknown kind's error to name.
    let rows: Vec<(Option<Uuid>, String, Decimal, i64, String)> = sqlx::query_as(
        "SELECT business_id, kind, SUM(amount), COUNT(*), MIN(id::text) FROM bonus_ledger
         WHERE ($1::timestamptz IS NULL OR created_at >= $1) AND created_at < $2
         GROUP BY business_id, kind",
    )
    .bind(from)
    .bind(until)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(business_id, kind, sum, count, entry)| {
            Ok(KindSum {
                business_id,
                kind: states::parse("bonus_ledger", entry, "kind", &kind)?,
                sum,
                count,
            })
        })
        .collect()
}

pub async fn closed_period(
    db: impl PgExecutor<'_>,
    period: Period,
) -> sqlx::Result<Option<ClosedPeriod>> {
    sqlx::query_as(concat!(
        "SELECT ",
        period_columns!(),
        " FROM settlement_periods WHERE period = $1"
    ))
    .bind(period.to_string())
    .fetch_optional(db)
    .await
}

/// Every closed period, the latest first.
pub async fn closed_periods(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<ClosedPeriod>> {
    sqlx::query_as(concat!(
        "SELECT ",
        period_columns!(),
        " FROM settlement_periods ORDER BY period DESC"
    ))
    .fetch_all(db)
    .await
}

async fn last_closed(db: impl PgExecutor<'_>) -> sqlx::Result<Option<ClosedPeriod>> {
    sqlx::query_as(concat!(
        "SELECT ",
        period_columns!(),
        " FROM settlement_periods ORDER BY period DESC LIMIT 1"
    ))
    .fetch_optional(db)
    .await
}

/// A closed statement, whole (`business` set: only that business's line and transfer).
pub async fn closed(
    db: &PgPool,
    period: Period,
    business: Option<Uuid>,
) -> sqlx::Result<Option<Closed>> {
    let Some(row) = closed_period(db, period).await? else {
        return Ok(None);
    };
    let lines = sqlx::query_as(
        "SELECT l.period, l.business_id, b.name AS business_name, l.issued, l.redeemed, l.expired,
                l.refunded, l.net
         FROM settlement_lines l JOIN businesses b ON b.id = l.business_id
         WHERE l.period = $1 AND ($2::uuid IS NULL OR l.business_id = $2)
         ORDER BY b.name, l.business_id",
    )
    .bind(&row.period)
    .bind(business)
    .fetch_all(db)
    .await?;
    let transfers = sqlx::query_as(
        "SELECT t.id, t.period, t.business_id, b.name AS business_name, t.direction, t.amount,
                t.paid_at, t.paid_by
         FROM settlement_transfers t JOIN businesses b ON b.id = t.business_id
         WHERE t.period = $1 AND ($2::uuid IS NULL OR t.business_id = $2)
         ORDER BY b.name, t.business_id",
    )
    .bind(&row.period)
    .bind(business)
    .fetch_all(db)
    .await?;
    Ok(Some(Closed {
        period: row,
        lines,
        transfers,
    }))
}

/// A business's lines in every closed statement, the latest first.
pub async fn lines_of_business(db: &PgPool, business_id: Uuid) -> sqlx::Result<Vec<StoredLine>> {
    sqlx::query_as(
        "SELECT l.period, l.business_id, b.name AS business_name, l.issued, l.redeemed, l.expired,
                l.refunded, l.net
         FROM settlement_lines l JOIN businesses b ON b.id = l.business_id
         WHERE l.business_id = $1 ORDER BY l.period DESC",
    )
    .bind(business_id)
    .fetch_all(db)
    .await
}

/// What a period not closed yet comes to so far: the entries since the previous statement
/// ended (or since the month began, if the previous month is not closed) until the month
/// ends.
pub async fn preview(db: &PgPool, period: Period, tz: &str) -> sqlx::Result<Preview> {
    let (start, end) = month_bounds(db, period, tz).await?;
    let from = match closed_period(db, period.previous()).await? {
        Some(previous) => previous.covers_until,
        None => start,
    };
    let statement = rules::statement(sums(db, Some(from), end).await?);
    Ok(Preview {
        period,
        covers_from: from,
        covers_until: end,
        statement,
    })
}

/// Why a period was not closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseRefusal {
    /// The month has not ended (by the rules' clock).
    #[error("the period {0} has not ended yet")]
    NotEnded(String),
    /// It is closed already.
    #[error("the period {0} is closed already")]
    AlreadyClosed(String),
    /// A later period is closed already: statements close in order.
    #[error("a later period ({0}) is closed already: periods close in order")]
    LaterClosed(String),
    /// The month before is not closed: statements close in order.
    #[error("close {0} first: periods close in order")]
    PreviousOpen(String),
}

/// Closes `period` into its statement: its lines, its totals and its transfers, written
/// once. `now` is the rules' clock (the month must have ended by it).
///
/// Closes are serialized (an advisory lock). If the month ended less than an hour ago by
/// the database's clock, or not at all (a clock moved ahead), ledger writes wait while the
/// close reads (a SHARE lock on `bonus_ledger`): an entry that a writer has not committed
/// yet then cannot be dated inside the statement and yet missing from it.
pub async fn close(
    tx: &mut Transaction<'_, Postgres>,
    period: Period,
    tz: &str,
    now: OffsetDateTime,
    closed_by: Option<Uuid>,
) -> sqlx::Result<Result<Statement<Uuid>, CloseRefusal>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('krug_settlement_close'))")
        .execute(&mut **tx)
        .await?;
    let name = period.to_string();
    if closed_period(&mut **tx, period).await?.is_some() {
        return Ok(Err(CloseRefusal::AlreadyClosed(name)));
    }
    let (_, end) = month_bounds(&mut **tx, period, tz).await?;
    if now < end {
        return Ok(Err(CloseRefusal::NotEnded(name)));
    }
    let from = match last_closed(&mut **tx).await? {
        Some(last) if last.period > name => return Ok(Err(CloseRefusal::LaterClosed(last.period))),
        Some(last) if last.period != period.previous().to_string() => {
            return Ok(Err(CloseRefusal::PreviousOpen(
                period.previous().to_string(),
            )));
        }
        Some(last) => Some(last.covers_until),
        None => None,
    };
    let recent: bool = sqlx::query_scalar("SELECT $1 > now() - interval '1 hour'")
        .bind(end)
        .fetch_one(&mut **tx)
        .await?;
    if recent {
        sqlx::query("LOCK TABLE bonus_ledger IN SHARE MODE")
            .execute(&mut **tx)
            .await?;
    }
    let until: OffsetDateTime = sqlx::query_scalar("SELECT LEAST($1, clock_timestamp())")
        .bind(end)
        .fetch_one(&mut **tx)
        .await?;
    let statement = rules::statement(sums(&mut **tx, from, until).await?);
    sqlx::query(
        "INSERT INTO settlement_periods (period, covers_from, covers_until, operator_funded, total,
                                         entries, closed_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&name)
    .bind(from)
    .bind(until)
    .bind(statement.operator_funded)
    .bind(statement.total)
    .bind(statement.entries)
    .bind(closed_by)
    .execute(&mut **tx)
    .await?;
    let lines = &statement.lines;
    sqlx::query(
        "INSERT INTO settlement_lines (period, business_id, issued, redeemed, expired, refunded, net)
         SELECT $1, * FROM UNNEST($2::uuid[], $3::numeric[], $4::numeric[], $5::numeric[],
                                  $6::numeric[], $7::numeric[])",
    )
    .bind(&name)
    .bind(lines.iter().map(|l| l.business_id).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.issued).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.redeemed).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.expired).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.refunded).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.net).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    let transfers = &statement.transfers;
    sqlx::query(
        "INSERT INTO settlement_transfers (period, business_id, direction, amount)
         SELECT $1, * FROM UNNEST($2::uuid[], $3::text[], $4::numeric[])",
    )
    .bind(&name)
    .bind(transfers.iter().map(|t| t.business_id).collect::<Vec<_>>())
    .bind(
        transfers
            .iter()
            .map(|t| t.direction.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(transfers.iter().map(|t| t.amount).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(Ok(statement))
}

/// Why a transfer was not marked paid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaidRefusal {
    /// No such transfer in this period.
    #[error("no such transfer in this period")]
    NotFound,
    /// Marked paid before.
    #[error("this transfer is marked paid already")]
    AlreadyPaid,
}

/// Marks a transfer of a closed statement paid (once).
pub async fn mark_paid(
    db: &PgPool,
    period: Period,
    transfer_id: Uuid,
    by: Uuid,
) -> sqlx::Result<Result<StoredTransfer, PaidRefusal>> {
    let marked: Option<StoredTransfer> = sqlx::query_as(
        "WITH t AS (
             UPDATE settlement_transfers SET paid_at = now(), paid_by = $3
             WHERE id = $1 AND period = $2 AND paid_at IS NULL
             RETURNING *
         )
         SELECT t.id, t.period, t.business_id, b.name AS business_name, t.direction, t.amount,
                t.paid_at, t.paid_by
         FROM t JOIN businesses b ON b.id = t.business_id",
    )
    .bind(transfer_id)
    .bind(period.to_string())
    .bind(by)
    .fetch_optional(db)
    .await?;
    if let Some(marked) = marked {
        return Ok(Ok(marked));
    }
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM settlement_transfers WHERE id = $1 AND period = $2)",
    )
    .bind(transfer_id)
    .bind(period.to_string())
    .fetch_one(db)
    .await?;
    Ok(Err(if exists {
        PaidRefusal::AlreadyPaid
    } else {
        PaidRefusal::NotFound
    }))
}

/// The period an instant falls in, in the time zone `tz`.
pub async fn period_at(
    db: impl PgExecutor<'_>,
    at: OffsetDateTime,
    tz: &str,
) -> sqlx::Result<Period> {
    let name: String = sqlx::query_scalar("SELECT to_char($1 AT TIME ZONE $2, 'YYYY-MM')")
        .bind(at)
        .bind(tz)
        .fetch_one(db)
        .await?;
    Period::parse(&name).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
