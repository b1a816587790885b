//! What CRM polling writes: members found by phone, transactions (once per integration and
//! vendor id, however often the vendor delivers them) — purchases with their bonuses
//! (`ledger::record_crm_purchases`), refunds for `bonus_calc` to reverse — and the checks
//! nobody could be found for. The cursor lives with the integration (`integrations`).

use crate::{
    businesses::Business,
    ledger::{self, BonusOutcome, CrmPurchase},
};
use domain::{PhoneNumber, TierRules};
use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};
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
    /// Purchases new to us, recorded with their bonuses.
    pub purchases: Vec<BonusOutcome>,
    /// Refunds new to us: what they take back is still to apply (`bonus_calc`).
    pub new_refund_ids: Vec<Uuid>,
    /// Delivered before (or twice in this delivery).
    pub duplicates: usize,
    /// Purchases without a usable phone, new to the integration's list of unattributed
    /// checks (operators see the count).
    pub unattributed: usize,
    /// Refunds of a purchase we never recorded, without a phone: nothing to reverse.
    pub orphan_refunds: usize,
}

/// Stores a batch of records in the caller's transaction: set-based, one statement per
/// step, so that a large backfill is a handful of round trips. Purchases come before the
/// refunds of the batch, which may refund them.
pub async fn ingest(
    tx: &mut Transaction<'_, Postgres>,
    business: &Business,
    integration_id: Uuid,
    records: &[Record],
    rules: &TierRules,
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

    // Purchases, with their bonuses.
    let mut purchases = Vec::new();
    let mut unattributed = Vec::new();
    for r in records.iter().filter(|r| r.refund_of.is_none()) {
        match r.phone.as_ref().and_then(|p| members.get(p.as_ref())) {
            Some(user) => purchases.push(CrmPurchase {
                user_id: *user,
                external_id: r.external_id.clone(),
                amount: r.amount,
                occurred_at: r.occurred_at,
                is_medical: r.is_medical,
            }),
            None => unattributed.push(*r),
        }
    }
    out.unattributed = record_unattributed(tx, integration_id, &unattributed).await?;
    out.purchases =
        ledger::record_crm_purchases(tx, business, integration_id, &purchases, rules).await?;
    out.duplicates += purchases.len() - out.purchases.len();

    // Refunds, tied to their purchases (which may have arrived just now).
    let originals_wanted: Vec<&str> = records
        .iter()
        .filter_map(|r| r.refund_of.as_deref())
        .collect();
    let originals: HashMap<String, (Uuid, Uuid)> = if originals_wanted.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (String, Uuid, Uuid)>(
            "SELECT external_id, id, user_id FROM transactions
             WHERE integration_id = $1 AND source = 'crm' AND transaction_type = 'purchase' AND external_id = ANY($2)",
        )
        .bind(integration_id)
        .bind(&originals_wanted)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(external, id, user)| (external, (id, user)))
        .collect()
    };
    let mut refunds = Refunds::default();
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
            None => out.orphan_refunds += 1,
        }
    }
    out.new_refund_ids = refunds.insert(tx, business, integration_id).await?;
    out.duplicates += refunds.len() - out.new_refund_ids.len();
    Ok(out)
}

/// Keeps the purchases nobody could be found for, once each; returns how many are new.
async fn record_unattributed(
    tx: &mut Transaction<'_, Postgres>,
    integration_id: Uuid,
    records: &[&Record],
) -> sqlx::Result<usize> {
    if records.is_empty() {
        return Ok(0);
    }
    let inserted = sqlx::query(
        "INSERT INTO crm_unattributed (integration_id, external_id, amount, occurred_at)
         SELECT $1, r.external_id, r.amount, r.occurred_at
         FROM UNNEST($2::text[], $3::numeric[], $4::timestamptz[]) AS r(external_id, amount, occurred_at)
         ON CONFLICT (integration_id, external_id) DO NOTHING",
    )
    .bind(integration_id)
    .bind(records.iter().map(|r| r.external_id.clone()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.amount).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() as usize)
}

/// Refunds as columns for `UNNEST`.
#[derive(Default)]
struct Refunds {
    users: Vec<Uuid>,
    external_ids: Vec<String>,
    amounts: Vec<Decimal>,
    occurred: Vec<OffsetDateTime>,
    medical: Vec<bool>,
    originals: Vec<Option<Uuid>>,
}

impl Refunds {
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

    /// Inserts the refunds that are new and returns their ids.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        business: &Business,
        integration_id: Uuid,
    ) -> sqlx::Result<Vec<Uuid>> {
        if self.users.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "INSERT INTO transactions (user_id, business_id, integration_id, transaction_type, source, external_id,
                                       amount, occurred_at, is_medical, original_transaction_id)
             SELECT r.user_id, $1, $9, 'refund', 'crm', r.external_id, r.amount, r.occurred_at, r.is_medical OR $2,
                    r.original_id
             FROM UNNEST($3::uuid[], $4::text[], $5::numeric[], $6::timestamptz[], $7::bool[], $8::uuid[])
                  AS r(user_id, external_id, amount, occurred_at, is_medical, original_id)
             ON CONFLICT (integration_id, external_id) WHERE source = 'crm' DO NOTHING
             RETURNING id",
        )
        .bind(business.id)
        .bind(business.is_medical)
        .bind(&self.users)
        .bind(&self.external_ids)
        .bind(&self.amounts)
        .bind(&self.occurred)
        .bind(&self.medical)
        .bind(&self.originals)
        .bind(integration_id)
        .fetch_all(&mut **tx)
        .await
    }
}
