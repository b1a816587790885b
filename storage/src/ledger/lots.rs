//! Lots of bonuses running out (DESIGN.md "Expiry"). What is left of each lot follows from
//! the member's ledger (`domain::lots::replay`, read here under her balance lock); an expiry
//! is an `expiry` entry of what is left, funded by whoever funded the lot, keyed by the lot
//! (`expiry:{lot entry}`; `expiry:{lot entry}:{n}` for the n-th time, when a refund gave
//! bonuses back to a lot already expired). `bonus_lots` says which lots still need a look.

use super::{Entry, Tx, lock};
use crate::states;
use domain::lots::{ExpiryRule, Lots, Move, NOTICE_AHEAD, replay};
use domain::loyalty::EntryKind;
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, Row as _, postgres::PgRow};
use std::collections::{HashMap, HashSet};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// What an [`expire_due`] batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryRun {
    /// Members looked at, in user-id order: the next batch starts after the last.
    pub members: Vec<Uuid>,
    /// Expiry entries written.
    pub expired: Vec<Expired>,
    /// Lots to announce (14 days ahead), each once.
    pub notices: Vec<Notice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub user_id: Uuid,
    pub lot: Uuid,
    pub amount: Decimal,
}

/// A lot that expires within [`NOTICE_AHEAD`] with something left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub user_id: Uuid,
    pub lot: Uuid,
    pub amount: Decimal,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    kind: EntryKind,
    amount: Decimal,
    business_id: Option<Uuid>,
    transaction_id: Option<Uuid>,
    /// The purchase a refund's entries refer to.
    original_transaction_id: Option<Uuid>,
    idempotency_key: String,
    created_at: OffsetDateTime,
}

impl FromRow<'_, PgRow> for Row {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            user_id: row.try_get("user_id")?,
            kind: states::column(row, "bonus_ledger", id, "kind")?,
            amount: row.try_get("amount")?,
            business_id: row.try_get("business_id")?,
            transaction_id: row.try_get("transaction_id")?,
            original_transaction_id: row.try_get("original_transaction_id")?,
            idempotency_key: row.try_get("idempotency_key")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A member's ledger as moves of her lots, and how many expiries each lot has had.
#[derive(Debug, Default)]
struct Ledger {
    moves: Vec<Move<Uuid>>,
    expiries: HashMap<Uuid, usize>,
}

impl Ledger {
    fn push(&mut self, row: Row, accrual_lots: &mut HashMap<Uuid, Uuid>) {
        let amount = row.amount.abs();
        let m = match (row.kind, row.amount > Decimal::ZERO) {
            (EntryKind::Redemption, false) => Move::Spend {
                amount,
                purchase: row.transaction_id,
            },
            (EntryKind::Redemption, true) => Move::GiveBack {
                id: row.id,
                funder: row.business_id,
                purchase: row.original_transaction_id,
                amount,
                at: row.created_at,
            },
            (EntryKind::Reversal, false) => Move::TakeBack {
                lot: row
                    .original_transaction_id
                    .and_then(|p| accrual_lots.get(&p).copied()),
                amount,
            },
            (EntryKind::Expiry, false) => {
                let lot = expired_lot(&row.idempotency_key);
                if let Some(lot) = lot {
                    *self.expiries.entry(lot).or_default() += 1;
                }
                Move::TakeBack { lot, amount }
            }
            (_, true) => {
                if row.kind == EntryKind::Accrual {
                    if let Some(purchase) = row.transaction_id {
                        accrual_lots.insert(purchase, row.id);
                    }
                }
                Move::Lot {
                    id: row.id,
                    funder: row.business_id,
                    amount,
                    spendable_at: row.created_at,
                }
            }
            // A negative correction, anything else taken: from the oldest lots.
            (_, false) => Move::Spend {
                amount,
                purchase: None,
            },
        };
        self.moves.push(m);
    }

    /// The key of the next expiry of `lot`.
    fn expiry_key(&self, lot: Uuid) -> String {
        match self.expiries.get(&lot).copied().unwrap_or(0) {
            0 => format!("expiry:{lot}"),
            n => format!("expiry:{lot}:{n}"),
        }
    }
}

/// The lot an expiry entry's key names.
fn expired_lot(key: &str) -> Option<Uuid> {
    let rest = key.strip_prefix("expiry:")?;
    Uuid::parse_str(rest.split(':').next()?).ok()
}

/// These members' ledgers, in the order written.
async fn ledgers(db: impl PgExecutor<'_>, users: &[Uuid]) -> sqlx::Result<HashMap<Uuid, Ledger>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT l.id, l.user_id, l.kind, l.amount, l.business_id, l.transaction_id,
                t.original_transaction_id, l.idempotency_key, l.created_at
         FROM bonus_ledger l LEFT JOIN transactions t ON t.id = l.transaction_id
         WHERE l.user_id = ANY($1) ORDER BY l.user_id, l.created_at, l.id",
    )
    .bind(users)
    .fetch_all(db)
    .await?;
    let mut ledgers: HashMap<Uuid, Ledger> = HashMap::new();
    let mut accrual_lots = HashMap::new();
    for row in rows {
        ledgers
            .entry(row.user_id)
            .or_default()
            .push(row, &mut accrual_lots);
    }
    Ok(ledgers)
}

/// The member's lots as her ledger leaves them.
pub async fn lots_of(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    rule: ExpiryRule,
) -> sqlx::Result<Lots<Uuid>> {
    let ledger = ledgers(db, &[user_id])
        .await?
        .remove(&user_id)
        .unwrap_or_default();
    Ok(replay(&ledger.moves, rule))
}

/// The next lot of hers to expire: what is left of it and when (`GET /loyalty/balance`).
pub async fn expiring(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    rule: ExpiryRule,
) -> sqlx::Result<Option<(Decimal, OffsetDateTime)>> {
    if rule.days == 0 {
        return Ok(None);
    }
    Ok(lots_of(db, user_id, rule).await?.next_expiring())
}

/// Looks at up to `limit` members (after `after`, in user-id order) with a lot whose time
/// has come by `now` or that is to be announced: writes an `expiry` entry for what is left
/// of each lot due, and returns the lots to announce. Under the members' balance locks, so
/// a re-run (or a concurrent one) finds the lots already expired and writes nothing.
pub async fn expire_due(
    tx: &mut Tx<'_>,
    rule: ExpiryRule,
    now: OffsetDateTime,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<ExpiryRun> {
    if rule.days == 0 {
        return Ok(ExpiryRun::default());
    }
    // A lot that became spendable by `due` has expired; by `soon`, it is announced.
    let due = now - Duration::days(rule.days.into());
    let soon = due + NOTICE_AHEAD;
    // Whose: an unlocked read, to learn whom to lock.
    let users: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT user_id FROM bonus_lots
         WHERE closed_at IS NULL AND (spendable_at <= $1 OR (spendable_at <= $2 AND notified_at IS NULL))
           AND ($3::uuid IS NULL OR user_id > $3)
         ORDER BY user_id LIMIT $4",
    )
    .bind(due)
    .bind(soon)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    if users.is_empty() {
        return Ok(ExpiryRun::default());
    }
    let mut locked = lock(tx, users.iter().copied()).await?;
    let ledgers = ledgers(&mut **tx, &users).await?;
    let unannounced: HashSet<Uuid> = sqlx::query_scalar(
        "SELECT entry_id FROM bonus_lots
         WHERE user_id = ANY($1) AND notified_at IS NULL AND spendable_at <= $2",
    )
    .bind(&users)
    .bind(soon)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();

    let mut run = ExpiryRun {
        members: users.clone(),
        ..Default::default()
    };
    let mut entries = Vec::new();
    for (user_id, ledger) in &ledgers {
        let lots = replay(&ledger.moves, rule);
        for lot in lots.due(now) {
            entries.push(Entry {
                user_id: *user_id,
                kind: EntryKind::Expiry,
                amount: -lot.left,
                transaction_id: None,
                business_id: lot.funder,
                key: ledger.expiry_key(lot.id),
            });
            run.expired.push(Expired {
                user_id: *user_id,
                lot: lot.id,
                amount: lot.left,
            });
        }
        run.notices.extend(
            lots.expiring_soon(now)
                .filter(|lot| unannounced.contains(&lot.id))
                .filter_map(|lot| {
                    Some(Notice {
                        user_id: *user_id,
                        lot: lot.id,
                        amount: lot.left,
                        expires_at: lot.expires_at?,
                    })
                }),
        );
    }
    locked.post(tx, &entries).await?;
    // Every lot due now has nothing left; every lot in the window has been looked at.
    sqlx::query(
        "UPDATE bonus_lots SET
             closed_at = CASE WHEN spendable_at <= $2 THEN now() END,
             notified_at = COALESCE(notified_at, now())
         WHERE user_id = ANY($1) AND closed_at IS NULL AND spendable_at <= $3",
    )
    .bind(&users)
    .bind(due)
    .bind(soon)
    .execute(&mut **tx)
    .await?;
    run.notices
        .sort_by_key(|n| (n.user_id, n.expires_at, n.lot));
    Ok(run)
}

/// A refund gave the member bonuses back: they may return to lots whose time has passed,
/// so her lots are looked at again by the next `expire` run.
pub(super) async fn reopen(tx: &mut Tx<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE bonus_lots SET closed_at = NULL WHERE user_id = $1 AND closed_at IS NOT NULL",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_key_names_its_lot() {
        let lot = Uuid::new_v4();
        assert_eq!(expired_lot(&format!("expiry:{lot}")), Some(lot));
        assert_eq!(expired_lot(&format!("expiry:{lot}:2")), Some(lot));
        assert_eq!(expired_lot("expiry:coupon"), None);
        assert_eq!(expired_lot(&format!("accrual:{lot}")), None);
    }
}
