//! What CRM polling writes: members found by phone, transactions (once per business and
//! vendor id, however often the vendor delivers them), and the per-business cursor.

use crate::businesses::Business;
use domain::PhoneNumber;
use rust_decimal::Decimal;
use sqlx::{PgExecutor, Postgres, Transaction};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// A purchase or refund ready to record.
#[derive(Debug, Clone)]
pub struct Record {
    pub external_id: String,
    /// The vendor id of the purchase this refunds; `None` for a purchase.
    pub refund_of: Option<String>,
    pub amount: Decimal,
    pub occurred_at: OffsetDateTime,
    /// Needed for purchases; refunds take the member of their purchase when it is known.
    pub phone: Option<PhoneNumber>,
    pub is_medical: bool,
}

/// What one ingest stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Rows new to us (their bonuses are still to apply).
    pub new_transaction_ids: Vec<Uuid>,
    /// Delivered before (or twice in this delivery).
    pub duplicates: usize,
    /// Skipped: a purchase without a usable phone, or a refund of nothing we know with none.
    pub unattributed: usize,
}

/// Stores a window of records in the caller's transaction: set-based, one statement per
/// step, so that a large backfill is a handful of round trips.
pub async fn ingest(
    tx: &mut Transaction<'_, Postgres>,
    business: &Business,
    records: &[Record],
) -> sqlx::Result<Ingested> {
    let mut out = Ingested::default();
    let mut seen = HashSet::new();
    let records: Vec<&Record> = records
        .iter()
        .filter(|r| {
            let first = seen.insert(r.external_id.as_str());
            if !first {
                out.duplicates += 1;
            }
            first
        })
        .collect();

    // Members by phone, created if new.
    let phones: Vec<String> = records
        .iter()
        .filter_map(|r| r.phone.as_ref().map(|p| p.to_string()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    sqlx::query(
        "INSERT INTO users (phone) SELECT unnest($1::text[]) ON CONFLICT (phone) DO NOTHING",
    )
    .bind(&phones)
    .execute(&mut **tx)
    .await?;
    let members: HashMap<String, Uuid> =
        sqlx::query_as::<_, (String, Uuid)>("SELECT phone, id FROM users WHERE phone = ANY($1)")
            .bind(&phones)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();

    // Purchases.
    let mut purchases = Columns::default();
    for r in records.iter().filter(|r| r.refund_of.is_none()) {
        match r.phone.as_ref().and_then(|p| members.get(p.as_ref())) {
            Some(user) => purchases.push(*user, r, None),
            None => out.unattributed += 1,
        }
    }
    let inserted = purchases.insert(tx, business, "purchase").await?;
    out.duplicates += purchases.len() - inserted.len();
    out.new_transaction_ids.extend(inserted);

    // Refunds, tied to their purchases (which may have arrived just now).
    let originals_wanted: Vec<&str> = records
        .iter()
        .filter_map(|r| r.refund_of.as_deref())
        .collect();
    let originals: HashMap<String, (Uuid, Uuid)> = sqlx::query_as::<_, (String, Uuid, Uuid)>(
        "SELECT external_id, id, user_id FROM transactions
         WHERE business_id = $1 AND source = 'crm' AND transaction_type = 'purchase' AND external_id = ANY($2)",
    )
    .bind(business.id)
    .bind(&originals_wanted)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|(external, id, user)| (external, (id, user)))
    .collect();
    let mut refunds = Columns::default();
    for r in records.iter().filter(|r| r.refund_of.is_some()) {
        let original = r.refund_of.as_deref().and_then(|o| originals.get(o));
        let user = original.map(|(_, user)| *user).or_else(|| {
            r.phone
                .as_ref()
                .and_then(|p| members.get(p.as_ref()))
                .copied()
        });
        match user {
            Some(user) => refunds.push(user, r, original.map(|(id, _)| *id)),
            None => out.unattributed += 1,
        }
    }
    let inserted = refunds.insert(tx, business, "refund").await?;
    out.duplicates += refunds.len() - inserted.len();
    out.new_transaction_ids.extend(inserted);
    Ok(out)
}

/// Transactions as columns for `UNNEST`.
#[derive(Default)]
struct Columns {
    users: Vec<Uuid>,
    external_ids: Vec<String>,
    amounts: Vec<Decimal>,
    occurred: Vec<OffsetDateTime>,
    medical: Vec<bool>,
    originals: Vec<Option<Uuid>>,
}

impl Columns {
    fn push(&mut self, user: Uuid, record: &Record, original: Option<Uuid>) {
        self.users.push(user);
        self.external_ids.push(record.external_id.clone());
        self.amounts.push(record.amount);
        self.occurred.push(record.occurred_at);
        self.medical.push(record.is_medical);
        self.originals.push(original);
    }

    fn len(&self) -> usize {
        self.users.len()
    }

    /// Inserts the rows that are new and returns their ids.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        business: &Business,
        kind: &str,
    ) -> sqlx::Result<Vec<Uuid>> {
        if self.users.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "INSERT INTO transactions (user_id, business_id, transaction_type, source, external_id, amount,
                                       occurred_at, is_medical, original_transaction_id)
             SELECT r.user_id, $1, $2, 'crm', r.external_id, r.amount, r.occurred_at, r.is_medical OR $3,
                    r.original_id
             FROM UNNEST($4::uuid[], $5::text[], $6::numeric[], $7::timestamptz[], $8::bool[], $9::uuid[])
                  AS r(user_id, external_id, amount, occurred_at, is_medical, original_id)
             ON CONFLICT (business_id, source, external_id) DO NOTHING
             RETURNING id",
        )
        .bind(business.id)
        .bind(kind)
        .bind(business.is_medical)
        .bind(&self.users)
        .bind(&self.external_ids)
        .bind(&self.amounts)
        .bind(&self.occurred)
        .bind(&self.medical)
        .bind(&self.originals)
        .fetch_all(&mut **tx)
        .await
    }
}

/// Where polling of a business stands.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Cursor {
    pub business_id: Uuid,
    /// Everything changed before this was stored.
    pub polled_until: OffsetDateTime,
    pub last_success_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

pub async fn cursor(db: impl PgExecutor<'_>, business_id: Uuid) -> sqlx::Result<Option<Cursor>> {
    sqlx::query_as("SELECT business_id, polled_until, last_success_at, last_error FROM crm_cursors WHERE business_id = $1")
        .bind(business_id)
        .fetch_optional(db)
        .await
}

/// Moves the cursor forward (never back: an older poll finishing late changes nothing).
pub async fn advance(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
    polled_until: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO crm_cursors (business_id, polled_until, last_success_at, last_error) VALUES ($1, $2, now(), NULL)
         ON CONFLICT (business_id) DO UPDATE SET
             polled_until = GREATEST(crm_cursors.polled_until, EXCLUDED.polled_until),
             last_success_at = now(), last_error = NULL, updated_at = now()",
    )
    .bind(business_id)
    .bind(polled_until)
    .execute(db)
    .await?;
    Ok(())
}

/// Notes a failed poll without moving the cursor.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    business_id: Uuid,
    polled_until: OffsetDateTime,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO crm_cursors (business_id, polled_until, last_error) VALUES ($1, $2, $3)
         ON CONFLICT (business_id) DO UPDATE SET last_error = EXCLUDED.last_error, updated_at = now()",
    )
    .bind(business_id)
    .bind(polled_until)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}
