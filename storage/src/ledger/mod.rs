//! The money path: the only code that writes `bonus_ledger` and `bonus_balances`
//! (`only_writer` below fails the build's tests if another file does).
//!
//! Discipline: every balance change is one ledger entry with a unique idempotency key,
//! written in the same statement as the balance it moves, so balance = Σ ledger always
//! holds and a retried write (its key taken) changes nothing. Members' balance rows are
//! locked in user-id order before anything is priced or written, and transactions after
//! them in id order, on every path, so concurrent batches cannot deadlock.
//!
//! - [`lock`] then [`Locked::post`]: any balance change — an expiry, a refund at the
//!   counter (`Locked::default().post(…)` locks by itself).
//! - [`adjust`]: an operator's correction (`POST /admin/users/{id}/adjust`), idempotent.
//! - [`record_qr_purchases`]: QR purchases priced by `domain::price_purchase`, set-based.
//! - [`record_crm_purchases`]: CRM purchases recorded with their accrual, set-based.
//! - [`apply_bonuses`]: the rules applied to recorded (CRM) refunds and purchases, set-based.
//! - [`refund_at_counter`]: a partner's refund of a QR purchase, full or partial.
//! - [`expire_due`], [`expiring`]: lots of bonuses running out (`lots`).
//!
//! The batch paths cost a fixed number of statements whatever the batch size.

mod bonuses;
mod crm_purchases;
mod lots;
mod pending;
mod purchases;
mod refunds;

pub use bonuses::{BonusOutcome, apply_bonuses};
pub use crm_purchases::{CrmPurchase, record_crm_purchases};
pub use lots::{Expired, ExpiryRun, Notice, expire_due, expiring};
pub use pending::{Released, pending_total, release_due};
pub use purchases::{QrPurchase, QrPurchaseRefusal, RecordedPurchase, record_qr_purchases};
pub use refunds::{CounterRefund, Refund, RefundRefusal, Refunded, refund_at_counter};

use crate::{states, tiers};
use domain::{Tier, TierRules, loyalty::EntryKind};
use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

type Tx<'a> = Transaction<'a, Postgres>;

/// One balance change to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub user_id: Uuid,
    pub kind: EntryKind,
    /// Signed: positive credits the member, negative debits her. Zero writes nothing.
    pub amount: Decimal,
    /// The purchase or refund it belongs to, if any.
    pub transaction_id: Option<Uuid>,
    /// The business that funds or gave it (the partner whose check accrued, was paid with
    /// bonuses or refunded; whose coupon credited), for settlement between partners.
    pub business_id: Option<Uuid>,
    /// Unique per effect (`accrual:{transaction}`, `coupon:{coupon}`…): a second entry with
    /// a key already written is skipped.
    pub key: String,
}

/// A member as locked: her balance (kept current by [`Locked::post`]) and tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub balance: Decimal,
    pub tier: Tier,
}

/// Members whose balance rows this database transaction holds locked.
#[derive(Debug, Default)]
pub struct Locked {
    members: HashMap<Uuid, Member>,
}

/// What [`Locked::post`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posted {
    /// Entries written; the others had their keys written before.
    pub written: u64,
}

/// Locks these members' balance rows (creating them at zero), in user-id order, until the
/// transaction ends. Two statements whatever the number of members.
pub async fn lock(tx: &mut Tx<'_>, users: impl IntoIterator<Item = Uuid>) -> sqlx::Result<Locked> {
    let mut locked = Locked::default();
    locked.lock_more(tx, users).await?;
    Ok(locked)
}

impl Locked {
    /// The member's locked state.
    ///
    /// # Panics
    /// If she was not locked: a bug in the caller, who must lock before pricing.
    pub fn member(&self, user_id: Uuid) -> Member {
        *self
            .members
            .get(&user_id)
            .unwrap_or_else(|| panic!("member {user_id} priced without her balance lock"))
    }

    pub fn balance(&self, user_id: Uuid) -> Decimal {
        self.member(user_id).balance
    }

    pub fn tier(&self, user_id: Uuid) -> Tier {
        self.member(user_id).tier
    }

    /// Locks more members. Prefer one [`lock`] of everyone up front: members locked later
    /// may break the user-id order (Postgres then detects the deadlock and one side retries).
    pub async fn lock_more(
        &mut self,
        tx: &mut Tx<'_>,
        users: impl IntoIterator<Item = Uuid>,
    ) -> sqlx::Result<()> {
        let users: Vec<Uuid> = users
            .into_iter()
            .filter(|u| !self.members.contains_key(u))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO bonus_balances (user_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(&users)
        .execute(&mut **tx)
        .await?;
        let rows: Vec<(Uuid, Decimal, String)> = sqlx::query_as(
            "SELECT b.user_id, b.balance, u.status_tier FROM bonus_balances b JOIN users u ON u.id = b.user_id
             WHERE b.user_id = ANY($1) ORDER BY b.user_id FOR UPDATE OF b",
        )
        .bind(&users)
        .fetch_all(&mut **tx)
        .await?;
        for (user, balance, tier) in rows {
            let tier = states::parse("users", user, "status_tier", &tier)?;
            self.members.insert(user, Member { balance, tier });
        }
        Ok(())
    }

    /// Writes the entries (zero amounts skipped, keys written before skipped) and moves the
    /// balances by them, in one statement. Members not locked yet are locked first.
    pub async fn post(&mut self, tx: &mut Tx<'_>, entries: &[Entry]) -> sqlx::Result<Posted> {
        self.post_settling(tx, entries, &[]).await
    }

    /// [`Locked::post`], also marking transactions as applied with the bonus they accrued
    /// (positive) or reversed (as a positive amount), in the same statement.
    async fn post_settling(
        &mut self,
        tx: &mut Tx<'_>,
        entries: &[Entry],
        settled: &[(Uuid, Decimal)],
    ) -> sqlx::Result<Posted> {
        let entries: Vec<&Entry> = entries.iter().filter(|e| !e.amount.is_zero()).collect();
        if entries.is_empty() && settled.is_empty() {
            return Ok(Posted::default());
        }
        self.lock_more(tx, entries.iter().map(|e| e.user_id))
            .await?;
        // Data-modifying CTEs: ledger, lots, balances and transactions in one round trip. The
        // `= ANY` conditions let the planner use the primary keys (it cannot see into UNNEST).
        let moved: Vec<(Uuid, Decimal, i64)> = sqlx::query_as(
            "WITH ledger AS (
                 INSERT INTO bonus_ledger (user_id, kind, amount, transaction_id, business_id, idempotency_key)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::uuid[], $6::text[])
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING id, user_id, kind, amount, created_at
             ), lots AS (
                 INSERT INTO bonus_lots (entry_id, user_id, spendable_at)
                 SELECT id, user_id, created_at FROM ledger
                 WHERE amount > 0 AND kind IN ('accrual', 'adjustment', 'referral')
             ), moved AS (
                 SELECT user_id, SUM(amount) AS delta,
                        COALESCE(SUM(amount) FILTER (WHERE kind = 'accrual'), 0) AS earned,
                        COALESCE(-SUM(amount) FILTER (WHERE kind = 'redemption'), 0) AS spent
                 FROM ledger GROUP BY user_id
             ), settled AS (
                 UPDATE transactions t SET bonus_accrued = s.amount, bonus_applied = true
                 FROM UNNEST($7::uuid[], $8::numeric[]) AS s(id, amount) WHERE t.id = s.id AND t.id = ANY($7)
             )
             UPDATE bonus_balances b SET balance = b.balance + m.delta, lifetime_earned = b.lifetime_earned + m.earned,
                    lifetime_spent = b.lifetime_spent + m.spent, updated_at = now()
             FROM moved m WHERE b.user_id = m.user_id AND b.user_id = ANY($1)
             RETURNING b.user_id, b.balance, (SELECT count(*) FROM ledger)",
        )
        .bind(entries.iter().map(|e| e.user_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.amount).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.transaction_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.business_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>())
        .bind(settled.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(settled.iter().map(|s| s.1).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await?;
        let mut posted = Posted::default();
        for (user, balance, written) in moved {
            posted.written = written as u64;
            if let Some(member) = self.members.get_mut(&user) {
                member.balance = balance;
            }
        }
        Ok(posted)
    }

    /// Upgrades at once the `buyers` (locked members who just bought) whose year now earns
    /// a higher tier; downgrades happen only at `tier_review`. Returns the upgraded members'
    /// tiers before, and keeps their new tiers.
    async fn upgrade(
        &mut self,
        tx: &mut Tx<'_>,
        buyers: &BTreeSet<Uuid>,
        rules: &TierRules,
    ) -> sqlx::Result<HashMap<Uuid, Tier>> {
        let buyers: Vec<Uuid> = buyers.iter().copied().collect();
        let stats = tiers::member_stats(&mut **tx, &buyers).await?;
        let mut upgraded = Vec::new();
        let mut before = HashMap::new();
        for user in buyers {
            let current = self.tier(user);
            let s = stats.get(&user).copied().unwrap_or_default();
            let after = rules.after_purchase(current, s.spend, s.categories);
            if after != current {
                upgraded.push((user, after));
                before.insert(user, current);
                if let Some(member) = self.members.get_mut(&user) {
                    member.tier = after;
                }
            }
        }
        tiers::set(tx, &upgraded).await?;
        Ok(before)
    }
}

/// What [`adjust`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjusted {
    /// Written now.
    Applied {
        entry_id: Uuid,
        balance_before: Decimal,
        balance: Decimal,
    },
    /// Written before under the same key (a repeated request): nothing changed now.
    Repeated {
        entry_id: Uuid,
        amount: Decimal,
        balance: Decimal,
    },
}

/// An operator's correction of a member's balance: one `adjustment` entry of `amount`
/// (signed), funded by the operator (no business), under `key`. A key written before
/// writes nothing and reports the entry it wrote (whatever its amount: the caller compares).
pub async fn adjust(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    amount: Decimal,
    key: &str,
) -> sqlx::Result<Adjusted> {
    let mut locked = lock(tx, [user_id]).await?;
    let balance_before = locked.balance(user_id);
    // Read under her balance lock: a concurrent request with the same key waits here and
    // then finds the entry.
    let existing: Option<(Uuid, Decimal)> =
        sqlx::query_as("SELECT id, amount FROM bonus_ledger WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some((entry_id, amount)) = existing {
        return Ok(Adjusted::Repeated {
            entry_id,
            amount,
            balance: balance_before,
        });
    }
    locked
        .post(
            tx,
            &[Entry {
                user_id,
                kind: EntryKind::Adjustment,
                amount,
                transaction_id: None,
                business_id: None,
                key: key.to_owned(),
            }],
        )
        .await?;
    let entry_id: Uuid =
        sqlx::query_scalar("SELECT id FROM bonus_ledger WHERE idempotency_key = $1")
            .bind(key)
            .fetch_one(&mut **tx)
            .await?;
    Ok(Adjusted::Applied {
        entry_id,
        balance_before,
        balance: locked.balance(user_id),
    })
}

#[cfg(test)]
mod only_writer {
    //! balance = Σ ledger holds because one module writes both (and the lots that say which
    //! bonuses are spendable and when they expire): any other file that writes one of these
    //! tables (code, tests or scripts; the schema in `migrations/` aside) fails here.

    use std::path::{Path, PathBuf};

    const TABLES: [&str; 3] = ["bonus_ledger", "bonus_balances", "bonus_lots"];
    const VERBS: [&str; 6] = [
        "insert into",
        "update",
        "delete from",
        "truncate",
        "truncate table",
        "copy",
    ];

    /// The SQL writes `text` contains, however spaced, cased, quoted or schema-qualified.
    fn writes(text: &str) -> Vec<String> {
        let text = text.to_lowercase().replace('"', "").replace("public.", "");
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        VERBS
            .iter()
            .flat_map(|verb| TABLES.iter().map(move |table| format!("{verb} {table}")))
            .filter(|write| {
                text.match_indices(write.as_str()).any(|(at, _)| {
                    // `bonus_ledger` is not `bonus_ledger_kind_check`, nor `x_update bonus_…`.
                    let after = text[at + write.len()..].chars().next();
                    let before = text[..at].chars().next_back();
                    !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            })
            .collect()
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let skipped = name.starts_with('.')
                    || ["target", "vendor", "node_modules", "migrations"].contains(&name.as_str());
                if !skipped {
                    sources(&path, out);
                }
            } else if [".rs", ".sql", ".sh", ".py", ".js"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_check_sees_a_write_however_it_is_spelled() {
        let cases = [
            ("INSERT INTO bonus_ledger (user_id)", true),
            ("insert\n   into public.\"bonus_balances\" (user_id)", true),
            ("UPDATE  bonus_balances b SET balance = 0", true),
            ("DELETE FROM bonus_lots WHERE true", true),
            ("TRUNCATE bonus_ledger", true),
            ("COPY bonus_ledger FROM STDIN", true),
            ("SELECT balance FROM bonus_balances", false),
            ("JOIN bonus_ledger l ON l.user_id = b.user_id", false),
            ("UPDATE bonus_ledger_archive SET x = 1", false),
        ];
        for (sql, written) in cases {
            assert_eq!(!writes(sql).is_empty(), written, "{sql}");
        }
    }

    #[test]
    fn no_other_file_writes_the_ledger_or_the_balances() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let ledger = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ledger");
        let mut files = Vec::new();
        sources(root, &mut files);
        for reached in ["storage/src/lib.rs", "jobs/src/lib.rs", "api/src/lib.rs"] {
            assert!(
                files.iter().any(|f| f.ends_with(reached)),
                "the walk reached {reached}"
            );
        }
        let offenders: Vec<String> = files
            .iter()
            .filter(|f| !f.starts_with(&ledger))
            .filter_map(|f| {
                let found = writes(&std::fs::read_to_string(f).ok()?);
                (!found.is_empty()).then(|| format!("{}: {found:?}", f.display()))
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "only storage::ledger writes {TABLES:?}: {offenders:?}"
        );
    }
}
