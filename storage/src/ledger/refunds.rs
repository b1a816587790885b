//! Refunds at the counter (`POST /business/transactions/{id}/refund`): a full or partial
//! refund of a QR purchase takes back the accrual of the refunded part and gives back the
//! bonuses the member paid with, in the same proportion (`domain::loyalty::refund_share`).
//!
//! Idempotent per business and Idempotency-Key: the key is the refund transaction's
//! `external_id` (source `counter`), checked once the member is locked, so a retry — even one
//! racing the first request — finds the refund and replays it.

use super::{
    Entry, Tx, lock, lots,
    pending::{self, Shrink},
};
use crate::states;
use domain::loyalty::{EntryKind, TransactionType, refund_share};
use rust_decimal::Decimal;
use sqlx::{FromRow, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

/// A refund asked for at the counter.
#[derive(Debug, Clone)]
pub struct CounterRefund<'a> {
    /// The id the refund transaction gets if it is new.
    pub id: Uuid,
    pub business_id: Uuid,
    pub purchase_id: Uuid,
    /// Roubles to refund; `None`: all that is left of the purchase.
    pub amount: Option<Decimal>,
    pub reason: &'a str,
    /// The request's Idempotency-Key.
    pub key: &'a str,
    pub refunded_by: Uuid,
    /// The most this person may refund (staff: the business's `staff_refund_limit`);
    /// `None` for owners.
    pub limit: Option<Decimal>,
}

/// Why a refund was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefundRefusal {
    /// No purchase with this id at this business (another business's is as good as absent).
    #[error("no such purchase at this business")]
    NotFound,
    /// The purchase came from the business's CRM, which reports its refunds itself: a
    /// refund here would be taken back twice.
    #[error("this purchase came from the business's CRM: refund it there")]
    FromCrm,
    /// Nothing is left to refund.
    #[error("this purchase has been refunded in full")]
    FullyRefunded,
    /// More than what is left of the purchase.
    #[error("at most {remaining} of this purchase is left to refund")]
    ExceedsPurchase { remaining: Decimal },
    /// More than staff may refund without the owner.
    #[error("refunds above {limit} are given by the owner")]
    OverLimit { limit: Decimal },
    /// The Idempotency-Key was used for a refund of another purchase.
    #[error("this Idempotency-Key was used for a refund of another purchase")]
    KeyReused,
}

/// A refund as given (or as given before, for a replayed key).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Refund {
    /// The refund's own transaction.
    pub id: Uuid,
    pub purchase_id: Uuid,
    pub business_id: Uuid,
    pub user_id: Uuid,
    pub amount: Decimal,
    /// The accrual taken back (positive).
    pub bonus_reversed: Decimal,
    /// The redeemed bonuses given back (positive).
    pub bonus_returned: Decimal,
    pub reason: String,
    #[sqlx(default)]
    pub refunded_by: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

/// What [`refund_at_counter`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refunded {
    pub refund: Refund,
    /// False when the key had been used for this refund before (nothing was written now).
    pub new: bool,
    /// The member's balance after it.
    pub balance: Decimal,
}

#[derive(Debug)]
struct Purchase {
    user_id: Uuid,
    transaction_type: TransactionType,
    source: String,
}

impl FromRow<'_, PgRow> for Purchase {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            user_id: row.try_get("user_id")?,
            transaction_type: states::column(row, "transactions", id, "transaction_type")?,
            source: row.try_get("source")?,
        })
    }
}

#[derive(Debug, FromRow)]
struct Locked {
    amount: Decimal,
    bonus_accrued: Decimal,
    bonus_redeemed: Decimal,
    is_medical: bool,
    refunded: Decimal,
    reversed: Decimal,
    returned: Decimal,
}

macro_rules! refund_columns {
    () => {
        "t.id, t.original_transaction_id AS purchase_id, t.business_id, t.user_id, t.amount,
         t.bonus_accrued AS bonus_reversed, t.bonus_redeemed AS bonus_returned, d.reason,
         d.refunded_by, t.created_at"
    };
}

/// Gives a refund at the counter in the caller's transaction (which the caller may use to
/// write the audit log with it).
pub async fn refund_at_counter(
    tx: &mut Tx<'_>,
    ask: &CounterRefund<'_>,
) -> sqlx::Result<Result<Refunded, RefundRefusal>> {
    // Whose purchase it is, to lock her first (balances before transactions, as every path).
    let purchase: Option<Purchase> = sqlx::query_as(
        "SELECT id, user_id, transaction_type, source FROM transactions WHERE id = $1 AND business_id = $2",
    )
    .bind(ask.purchase_id)
    .bind(ask.business_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(purchase) = purchase.filter(|p| p.transaction_type == TransactionType::Purchase)
    else {
        return Ok(Err(RefundRefusal::NotFound));
    };
    let mut locked = lock(tx, [purchase.user_id]).await?;

    // A key seen before: the same refund again, or a mistake.
    let earlier: Option<Refund> = sqlx::query_as(concat!(
        "SELECT ",
        refund_columns!(),
        " FROM transactions t JOIN refund_details d ON d.transaction_id = t.id
         WHERE t.business_id = $1 AND t.source = 'counter' AND t.external_id = $2"
    ))
    .bind(ask.business_id)
    .bind(ask.key)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(refund) = earlier {
        if refund.purchase_id != ask.purchase_id {
            return Ok(Err(RefundRefusal::KeyReused));
        }
        let balance = locked.balance(refund.user_id);
        return Ok(Ok(Refunded {
            refund,
            new: false,
            balance,
        }));
    }
    if purchase.source == "crm" {
        return Ok(Err(RefundRefusal::FromCrm));
    }

    let p: Locked = sqlx::query_as(
        "SELECT p.amount, p.bonus_accrued, p.bonus_redeemed, p.is_medical,
                COALESCE(r.amount, 0) AS refunded, COALESCE(r.reversed, 0) AS reversed,
                COALESCE(r.returned, 0) AS returned
         FROM (SELECT * FROM transactions WHERE id = $1 FOR UPDATE) p
         LEFT JOIN LATERAL (
             SELECT SUM(amount) AS amount, SUM(bonus_accrued) AS reversed, SUM(bonus_redeemed) AS returned
             FROM transactions WHERE original_transaction_id = $1 AND bonus_applied
         ) r ON true",
    )
    .bind(ask.purchase_id)
    .fetch_one(&mut **tx)
    .await?;
    let remaining = p.amount - p.refunded;
    if remaining <= Decimal::ZERO {
        return Ok(Err(RefundRefusal::FullyRefunded));
    }
    let amount = ask.amount.unwrap_or(remaining);
    if amount > remaining {
        return Ok(Err(RefundRefusal::ExceedsPurchase { remaining }));
    }
    if let Some(limit) = ask.limit.filter(|limit| amount > *limit) {
        return Ok(Err(RefundRefusal::OverLimit { limit }));
    }
    let reversed = refund_share(p.amount, p.bonus_accrued, p.refunded, p.reversed, amount);
    let returned = refund_share(p.amount, p.bonus_redeemed, p.refunded, p.returned, amount);

    let created_at: OffsetDateTime = sqlx::query_scalar(
        "WITH refund AS (
             INSERT INTO transactions (id, user_id, business_id, transaction_type, source, external_id, amount,
                                       bonus_redeemed, bonus_accrued, original_transaction_id, is_medical,
                                       bonus_applied)
             VALUES ($1, $2, $3, 'refund', 'counter', $4, $5, $6, $7, $8, $9, true)
             RETURNING id, created_at
         ), details AS (
             INSERT INTO refund_details (transaction_id, reason, refunded_by)
             SELECT id, $10, $11 FROM refund
         )
         SELECT created_at FROM refund",
    )
    .bind(ask.id)
    .bind(purchase.user_id)
    .bind(ask.business_id)
    .bind(ask.key)
    .bind(amount)
    .bind(returned)
    .bind(reversed)
    .bind(ask.purchase_id)
    .bind(p.is_medical)
    .bind(ask.reason)
    .bind(ask.refunded_by)
    .fetch_one(&mut **tx)
    .await?;

    // Inside the hold window the accrual never reached the ledger: it shrinks where it
    // waits (and is cancelled by a refund of the whole purchase).
    let waiting = pending::waiting(tx, &[ask.purchase_id]).await?;
    let in_window = waiting.contains_key(&ask.purchase_id);
    if in_window {
        pending::shrink(
            tx,
            &[Shrink {
                purchase_id: ask.purchase_id,
                by: reversed,
                cancel: amount == remaining,
            }],
        )
        .await?;
    }
    let entry = |kind: EntryKind, amount: Decimal, key: String| Entry {
        user_id: purchase.user_id,
        kind,
        amount,
        transaction_id: Some(ask.id),
        business_id: Some(ask.business_id),
        key,
    };
    locked
        .post(
            tx,
            &[
                entry(
                    EntryKind::Reversal,
                    if in_window { Decimal::ZERO } else { -reversed },
                    format!("reversal:{}", ask.id),
                ),
                // A redemption given back: the discount the business gave shrinks with it.
                entry(
                    EntryKind::Redemption,
                    returned,
                    format!("redemption:{}", ask.id),
                ),
            ],
        )
        .await?;
    if returned > Decimal::ZERO {
        lots::reopen(tx, purchase.user_id).await?;
    }
    Ok(Ok(Refunded {
        refund: Refund {
            id: ask.id,
            purchase_id: ask.purchase_id,
            business_id: ask.business_id,
            user_id: purchase.user_id,
            amount,
            bonus_reversed: reversed,
            bonus_returned: returned,
            reason: ask.reason.to_owned(),
            refunded_by: Some(ask.refunded_by),
            created_at,
        },
        new: true,
        balance: locked.balance(purchase.user_id),
    }))
}
