//! Accruals that wait out their business's `bonus_hold_days` (DESIGN.md "Pending bonuses"):
//! recorded here instead of the ledger, shrunk or cancelled by refunds inside the window,
//! released into the ledger once due. Every change here happens under the member's balance
//! lock, like the ledger's own.

use super::{Entry, Tx, lock};
use domain::loyalty::EntryKind;
use rust_decimal::Decimal;
use sqlx::PgExecutor;
use std::collections::HashMap;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// An accrual held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Held {
    pub transaction_id: Uuid,
    pub user_id: Uuid,
    pub business_id: Uuid,
    pub amount: Decimal,
    pub release_at: OffsetDateTime,
}

impl Held {
    /// The accrual of a purchase made at `occurred_at` at a business holding `hold_days`;
    /// `None` when it does not wait (no hold, or nothing accrued).
    pub fn of(
        transaction_id: Uuid,
        user_id: Uuid,
        business_id: Uuid,
        amount: Decimal,
        occurred_at: OffsetDateTime,
        hold_days: i32,
    ) -> Option<Self> {
        (hold_days > 0 && amount > Decimal::ZERO).then(|| Self {
            transaction_id,
            user_id,
            business_id,
            amount,
            release_at: occurred_at + Duration::days(hold_days.into()),
        })
    }
}

/// Records held accruals (their members locked by the caller). A purchase is held once.
pub(super) async fn hold(tx: &mut Tx<'_>, held: &[Held]) -> sqlx::Result<()> {
    if held.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO pending_accruals (transaction_id, user_id, business_id, amount, release_at)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::numeric[], $5::timestamptz[])
         ON CONFLICT (transaction_id) DO NOTHING",
    )
    .bind(held.iter().map(|h| h.transaction_id).collect::<Vec<_>>())
    .bind(held.iter().map(|h| h.user_id).collect::<Vec<_>>())
    .bind(held.iter().map(|h| h.business_id).collect::<Vec<_>>())
    .bind(held.iter().map(|h| h.amount).collect::<Vec<_>>())
    .bind(held.iter().map(|h| h.release_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which of these purchases still have their accrual waiting, and how much of it.
pub(super) async fn waiting(
    tx: &mut Tx<'_>,
    purchases: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, Decimal>> {
    if purchases.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "SELECT transaction_id, amount FROM pending_accruals
         WHERE transaction_id = ANY($1) AND released_at IS NULL AND cancelled_at IS NULL",
    )
    .bind(purchases)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A refund inside the hold window: the purchase's waiting accrual shrinks by what the
/// refund takes back, and is cancelled once the purchase is refunded in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shrink {
    pub purchase_id: Uuid,
    pub by: Decimal,
    pub cancel: bool,
}

pub(super) async fn shrink(tx: &mut Tx<'_>, shrinks: &[Shrink]) -> sqlx::Result<()> {
    if shrinks.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE pending_accruals p
         SET amount = GREATEST(p.amount - s.by, 0),
             cancelled_at = CASE WHEN s.cancel THEN now() END
         FROM UNNEST($1::uuid[], $2::numeric[], $3::bool[]) AS s(id, by, cancel)
         WHERE p.transaction_id = s.id AND p.transaction_id = ANY($1)
           AND p.released_at IS NULL AND p.cancelled_at IS NULL",
    )
    .bind(shrinks.iter().map(|s| s.purchase_id).collect::<Vec<_>>())
    .bind(shrinks.iter().map(|s| s.by).collect::<Vec<_>>())
    .bind(shrinks.iter().map(|s| s.cancel).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An accrual that has just entered the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub transaction_id: Uuid,
    pub user_id: Uuid,
    pub business_id: Uuid,
    pub amount: Decimal,
    /// The member's balance once the whole batch is released.
    pub balance: Decimal,
}

/// Releases up to `limit` accruals whose hold ended by `now` (oldest first) into the
/// ledger: an `accrual` entry each, keyed as an immediate accrual would have been, so an
/// accrual enters the ledger once whatever happens.
pub async fn release_due(
    tx: &mut Tx<'_>,
    now: OffsetDateTime,
    limit: i64,
) -> sqlx::Result<Vec<Released>> {
    // Whose: an unlocked read, to learn whom to lock.
    let users: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT user_id FROM (
             SELECT user_id FROM pending_accruals
             WHERE release_at <= $1 AND released_at IS NULL AND cancelled_at IS NULL
             ORDER BY release_at LIMIT $2
         ) due",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut locked = lock(tx, users.iter().copied()).await?;
    // Under their locks: what is still due (a refund may have cancelled some meanwhile).
    let due: Vec<(Uuid, Uuid, Uuid, Decimal)> = sqlx::query_as(
        "UPDATE pending_accruals SET released_at = now()
         WHERE user_id = ANY($1) AND release_at <= $2 AND released_at IS NULL AND cancelled_at IS NULL
         RETURNING transaction_id, user_id, business_id, amount",
    )
    .bind(&users)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let entries: Vec<Entry> = due
        .iter()
        .map(|(transaction_id, user_id, business_id, amount)| Entry {
            user_id: *user_id,
            kind: EntryKind::Accrual,
            amount: *amount,
            transaction_id: Some(*transaction_id),
            business_id: Some(*business_id),
            key: format!("accrual:{transaction_id}"),
        })
        .collect();
    locked.post(tx, &entries).await?;
    Ok(due
        .into_iter()
        .map(|(transaction_id, user_id, business_id, amount)| Released {
            transaction_id,
            user_id,
            business_id,
            amount,
            balance: locked.balance(user_id),
        })
        .collect())
}

/// What a member has accrued that is not spendable yet.
pub async fn pending_total(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Decimal> {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(amount), 0) FROM pending_accruals
         WHERE user_id = $1 AND released_at IS NULL AND cancelled_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
}
