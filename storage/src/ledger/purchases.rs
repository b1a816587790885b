//! QR purchases: priced here by `domain::price_purchase` against the locked balances, and
//! recorded with their redemption, accrual and bonus-coupon credit in a fixed number of
//! statements per batch.

use super::{
    Entry, Tx, lock,
    pending::{self, Held},
};
use crate::businesses::Business;
use domain::{
    Tier, TierRules,
    loyalty::{BusinessTerms, EntryKind, PricedPurchase, RedemptionError, price_purchase},
};
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// A purchase made by scanning a staff member's QR code.
#[derive(Debug, Clone)]
pub struct QrPurchase<'a> {
    /// The id its transaction gets.
    pub id: Uuid,
    pub user_id: Uuid,
    pub business: &'a Business,
    pub code: &'a str,
    pub amount: Decimal,
    /// Bonuses the member asks to pay with.
    pub redeem: Decimal,
    pub coupon_id: Option<Uuid>,
    /// Roubles the coupon takes off the check.
    pub coupon_discount: Decimal,
    /// Bonuses the coupon credits (a bonus coupon), once per coupon.
    pub coupon_bonus: Decimal,
}

/// Why a QR purchase was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrPurchaseRefusal {
    /// Another scan recorded a purchase with this code first.
    #[error("this code has already been used")]
    CodeUsed,
    #[error(transparent)]
    Redemption(#[from] RedemptionError),
}

/// What a recorded QR purchase came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPurchase {
    pub priced: PricedPurchase,
    /// The member's balance once the whole batch is recorded.
    pub balance: Decimal,
    /// The member's tier once the whole batch is recorded.
    pub tier: Tier,
    /// Set when this batch lifted the member to a higher tier.
    pub upgraded_from: Option<Tier>,
    /// When the accrual becomes spendable, if the business holds it (`bonus_hold_days`).
    pub held_until: Option<OffsetDateTime>,
}

/// Records QR purchases in the caller's transaction, in the order given: the purchase rows
/// (unique per business and code, which makes a code single-use even under concurrent
/// scans), their ledger entries and balances, and immediate tier upgrades. Returns one
/// result per purchase.
///
/// Purchases of one member are priced one after the other against her balance as the earlier
/// ones' redemptions left it. An earlier purchase's accrual is not counted in (it is written
/// with the batch), so a redemption that only that accrual would cover is refused: a
/// refusal the member can retry, never money given away.
pub async fn record_qr_purchases(
    tx: &mut Tx<'_>,
    purchases: &[QrPurchase<'_>],
    rules: &TierRules,
) -> sqlx::Result<Vec<Result<RecordedPurchase, QrPurchaseRefusal>>> {
    if purchases.is_empty() {
        return Ok(Vec::new());
    }
    let mut locked = lock(tx, purchases.iter().map(|p| p.user_id)).await?;

    let mut balances: HashMap<Uuid, Decimal> = HashMap::new();
    let mut codes = HashSet::new();
    let results: Vec<Result<PricedPurchase, QrPurchaseRefusal>> = purchases
        .iter()
        .map(|p| {
            if !codes.insert((p.business.id, p.code)) {
                return Err(QrPurchaseRefusal::CodeUsed);
            }
            let balance = balances
                .entry(p.user_id)
                .or_insert_with(|| locked.balance(p.user_id));
            let terms = BusinessTerms {
                cashback_percent: p.business.cashback_percent,
                max_redeem_percent: p.business.max_redeem_percent,
            };
            let priced = price_purchase(
                p.amount,
                p.coupon_discount,
                p.redeem,
                *balance,
                terms,
                rules.multiplier(locked.tier(p.user_id)),
            )?;
            *balance -= priced.bonus_redeemed;
            Ok(priced)
        })
        .collect();

    // The purchase rows, applied as they are written; a code another scan used first
    // inserts nothing.
    let priced: Vec<(&QrPurchase<'_>, &PricedPurchase)> = purchases
        .iter()
        .zip(&results)
        .filter_map(|(p, r)| r.as_ref().ok().map(|priced| (p, priced)))
        .collect();
    let inserted: HashMap<Uuid, OffsetDateTime> = sqlx::query_as::<_, (Uuid, OffsetDateTime)>(
        "INSERT INTO transactions (id, user_id, business_id, transaction_type, source, external_id, amount,
                                   coupon_discount, coupon_id, bonus_redeemed, bonus_accrued, is_medical,
                                   bonus_applied)
         SELECT id, user_id, business_id, 'purchase', 'qr', code, amount, coupon_discount, coupon_id, redeemed,
                accrued, medical, true
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::numeric[], $6::numeric[], $7::uuid[],
                     $8::numeric[], $9::numeric[], $10::bool[])
              AS p(id, user_id, business_id, code, amount, coupon_discount, coupon_id, redeemed, accrued, medical)
         ON CONFLICT (business_id, external_id) WHERE source = 'qr' DO NOTHING RETURNING id, occurred_at",
    )
    .bind(priced.iter().map(|(p, _)| p.id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.user_id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.business.id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.code).collect::<Vec<_>>())
    .bind(priced.iter().map(|(_, q)| q.amount).collect::<Vec<_>>())
    .bind(priced.iter().map(|(_, q)| q.coupon_discount).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.coupon_id).collect::<Vec<_>>())
    .bind(priced.iter().map(|(_, q)| q.bonus_redeemed).collect::<Vec<_>>())
    .bind(priced.iter().map(|(_, q)| q.bonus_accrued).collect::<Vec<_>>())
    .bind(priced.iter().map(|(p, _)| p.business.is_medical).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();

    let mut entries = Vec::new();
    let mut held = Vec::new();
    for (p, q) in priced.iter().filter(|(p, _)| inserted.contains_key(&p.id)) {
        let entry = |kind: EntryKind, amount: Decimal, key: String| Entry {
            user_id: p.user_id,
            kind,
            amount,
            transaction_id: Some(p.id),
            business_id: Some(p.business.id),
            key,
        };
        entries.push(entry(
            EntryKind::Redemption,
            -q.bonus_redeemed,
            format!("redemption:{}", p.id),
        ));
        // A business that holds accruals: the cashback waits outside the ledger.
        match Held::of(
            p.id,
            p.user_id,
            p.business.id,
            q.bonus_accrued,
            inserted[&p.id],
            p.business.bonus_hold_days,
        ) {
            Some(h) => held.push(h),
            None => entries.push(entry(
                EntryKind::Accrual,
                q.bonus_accrued,
                format!("accrual:{}", p.id),
            )),
        }
        if let Some(coupon) = p.coupon_id {
            // A bonus coupon pays in bonuses instead of taking money off the check.
            entries.push(entry(
                EntryKind::Adjustment,
                p.coupon_bonus,
                format!("coupon:{coupon}"),
            ));
        }
    }
    locked.post(tx, &entries).await?;
    pending::hold(tx, &held).await?;
    let buyers: BTreeSet<Uuid> = priced
        .iter()
        .filter(|(p, _)| inserted.contains_key(&p.id))
        .map(|(p, _)| p.user_id)
        .collect();
    let upgraded = locked.upgrade(tx, &buyers, rules).await?;

    Ok(purchases
        .iter()
        .zip(results)
        .map(|(p, result)| {
            let priced = result?;
            if !inserted.contains_key(&p.id) {
                return Err(QrPurchaseRefusal::CodeUsed);
            }
            let member = locked.member(p.user_id);
            Ok(RecordedPurchase {
                priced,
                balance: member.balance,
                tier: member.tier,
                upgraded_from: upgraded.get(&p.user_id).copied(),
                held_until: held
                    .iter()
                    .find(|h| h.transaction_id == p.id)
                    .map(|h| h.release_at),
            })
        })
        .collect())
}
