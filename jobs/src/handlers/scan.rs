//! `qr_scan`: turns a member's scan of a staff QR code into a purchase with its bonuses.

use crate::{
    handlers::{notify::Notify, promo::IssueCoupons},
    outbox,
};
use crate::{
    metrics::{BONUS_ACCRUED, QR_SCANS},
    queue::{Job, JobCtx, JobError, QueueName},
};
use domain::loyalty::RedemptionError;
use domain::{
    TierRules,
    loyalty::{DiscountType, coupon_discount},
    messages::Message,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use storage::{
    businesses::{self, Business},
    cache::QrCode,
    coupons::{self, Coupon},
    loyalty::{self, EntryKind, QrPurchase, QrPurchaseError},
    outbox::OutboxJob,
    scans,
};
use uuid::Uuid;

/// Process scan request `scan_id` (its id is also this job's id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanQr {
    pub scan_id: Uuid,
}

/// What the member sees when a scan is done (`GET /transactions/scan/{job_id}` → `result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResult {
    pub transaction_id: Uuid,
    pub business_id: Uuid,
    pub amount: Decimal,
    pub bonus_redeemed: Decimal,
    pub coupon_discount: Decimal,
    pub bonus_accrued: Decimal,
    pub balance: Decimal,
    pub status_tier: String,
}

/// Why a scan was refused, in the words the member sees.
struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl Job for ScanQr {
    const QUEUE: QueueName = QueueName::QrScan;

    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let rules = env.tier_rules().await?;
        let mut tx = env.db.begin().await?;
        let Some(scan) = scans::start(&mut tx, self.scan_id).await? else {
            // Finished by an earlier delivery of this job.
            return Ok(());
        };
        match purchase(&mut tx, &scan, &rules).await? {
            Ok(done) => {
                let follow_ups = follow_ups(&mut tx, &done).await?;
                let json = serde_json::to_value(&done.result).expect("ScanResult serializes");
                scans::complete(&mut tx, scan.id, done.result.transaction_id, &json).await?;
                tx.commit().await?;
                if let Err(e) = outbox::relay(&env.db, &env.queue, &follow_ups).await {
                    // Recorded with the purchase: reconcile relays them.
                    tracing::warn!(error = %e, "scan follow-ups recorded but not relayed");
                }
                QR_SCANS.with_label_values(&["done"]).inc();
                BONUS_ACCRUED
                    .with_label_values(&["qr"])
                    .inc_by(f64::try_from(done.result.bonus_accrued).unwrap_or(0.0));
                Ok(())
            }
            Err(refusal) => {
                // Nothing of the attempt is kept: the failure is recorded on its own.
                tx.rollback().await?;
                scans::fail(&env.db, scan.id, refusal.code, &refusal.message).await?;
                QR_SCANS.with_label_values(&["failed"]).inc();
                tracing::info!(reason = refusal.code, "scan refused");
                Ok(())
            }
        }
    }
}

/// A recorded purchase and what it calls for.
struct Done {
    result: ScanResult,
    business: Business,
    user_id: Uuid,
    upgraded: bool,
}

/// Records the purchase a scan stands for, or says why not.
async fn purchase(
    tx: &mut Transaction<'_, Postgres>,
    scan: &scans::ScanRequest,
    rules: &TierRules,
) -> Result<Result<Done, Refusal>, JobError> {
    let qr = match qr_of(scan) {
        Ok(qr) => qr,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let business = match businesses::get(&mut **tx, qr.business_id).await? {
        Some(business) if business.is_active => business,
        Some(_) => {
            return Ok(Err(Refusal::new(
                "business_unavailable",
                "This business is not accepting scans now",
            )));
        }
        None => {
            return Ok(Err(Refusal::new(
                "business_unavailable",
                "This business is not part of the programme",
            )));
        }
    };
    let coupon = match scan.coupon_id {
        None => None,
        Some(id) => match usable_coupon(tx, id, scan, &business).await? {
            Ok(coupon) => Some(coupon),
            Err(refusal) => return Ok(Err(refusal)),
        },
    };
    let coupon_discount = coupon.as_ref().map_or(Decimal::ZERO, |c| {
        coupon_discount(
            c.discount_type.parse().unwrap_or(DiscountType::Percent),
            c.discount_value,
            qr.amount,
        )
    });
    let purchase = QrPurchase {
        user_id: scan.user_id,
        business: &business,
        code: &scan.code,
        amount: qr.amount,
        redeem: scan.redeem_bonus,
        coupon_id: coupon.as_ref().map(|c| c.id),
        coupon_discount,
    };
    let recorded = match loyalty::record_qr_purchase(tx, &purchase, rules).await {
        Ok(recorded) => recorded,
        Err(QrPurchaseError::CodeUsed) => {
            return Ok(Err(Refusal::new(
                "code_already_used",
                "This code has already been used",
            )));
        }
        Err(QrPurchaseError::Redemption(RedemptionError::InsufficientBalance { available })) => {
            return Ok(Err(Refusal::new(
                "insufficient_balance",
                format!("Not enough bonuses: {available} available"),
            )));
        }
        Err(QrPurchaseError::Redemption(RedemptionError::OverCap { cap })) => {
            return Ok(Err(Refusal::new(
                "redeem_limit_exceeded",
                format!("At most {cap} of this check can be paid with bonuses"),
            )));
        }
        Err(QrPurchaseError::Redemption(other)) => {
            return Ok(Err(Refusal::new("redeem_refused", other.to_string())));
        }
        Err(QrPurchaseError::Db(e)) => return Err(e.into()),
    };
    let transaction_id = recorded.bonus.transaction_id;
    let mut balance = recorded.bonus.balance;
    if let Some(coupon) = &coupon {
        coupons::mark_redeemed(tx, coupon.id, transaction_id).await?;
        if coupon.discount_type == DiscountType::Bonus.as_str() {
            // A bonus coupon pays in bonuses instead of taking money off the check.
            balance = loyalty::credit(
                tx,
                scan.user_id,
                EntryKind::Adjustment,
                coupon.discount_value,
                transaction_id,
                &format!("coupon:{}", coupon.id),
            )
            .await?;
        }
    }
    Ok(Ok(Done {
        result: ScanResult {
            transaction_id,
            business_id: business.id,
            amount: recorded.priced.amount,
            bonus_redeemed: recorded.priced.bonus_redeemed,
            coupon_discount: recorded.priced.coupon_discount,
            bonus_accrued: recorded.bonus.bonus_change,
            balance,
            status_tier: recorded.bonus.tier.as_str().to_owned(),
        },
        upgraded: recorded.bonus.upgraded_from.is_some(),
        user_id: scan.user_id,
        business,
    }))
}

/// The member's coupon, if it can pay part of this check: theirs, for this business,
/// unused, and scanned before it expired. Locked until the scan's transaction ends, so two
/// scans cannot both use it.
async fn usable_coupon(
    tx: &mut Transaction<'_, Postgres>,
    coupon_id: Uuid,
    scan: &scans::ScanRequest,
    business: &Business,
) -> Result<Result<Coupon, Refusal>, JobError> {
    let coupon = match coupons::lock(tx, coupon_id).await? {
        Some(coupon) if coupon.user_id == scan.user_id => coupon,
        _ => {
            return Ok(Err(Refusal::new(
                "coupon_invalid",
                "You have no such coupon",
            )));
        }
    };
    Ok(if coupon.business_id != business.id {
        Err(Refusal::new(
            "coupon_wrong_business",
            "This coupon is for another partner",
        ))
    } else if coupon.redeemed_at.is_some() {
        Err(Refusal::new(
            "coupon_used",
            "This coupon has already been used",
        ))
    } else if coupon.expired_at.is_some() || coupon.expires_at <= scan.created_at {
        Err(Refusal::new("coupon_expired", "This coupon has expired"))
    } else {
        Ok(coupon)
    })
}

/// Cross-promo for a non-medical purchase that triggers a chain, and the member's messages,
/// recorded in the purchase's transaction.
async fn follow_ups(
    tx: &mut Transaction<'_, Postgres>,
    done: &Done,
) -> sqlx::Result<Vec<OutboxJob>> {
    let mut rows = Vec::new();
    let transaction_id = done.result.transaction_id;
    let promo = !done.business.is_medical
        && coupons::any_chain_matches(
            &mut **tx,
            done.business.id,
            &done.business.category,
            done.result.amount,
        )
        .await?;
    if promo {
        let job = IssueCoupons {
            transaction_ids: vec![transaction_id],
        };
        rows.push(
            outbox::record(
                tx,
                Uuid::new_v5(
                    &Uuid::NAMESPACE_OID,
                    format!("cross-promo:{transaction_id}").as_bytes(),
                ),
                &job,
                None,
            )
            .await?,
        );
    }
    if done.result.bonus_accrued > Decimal::ZERO {
        let notify = Notify {
            user_id: done.user_id,
            message: Message::BonusAccrued {
                amount: done.result.bonus_accrued,
                business: done.business.name.clone(),
                balance: done.result.balance,
            },
            dedupe_key: format!("accrual:{transaction_id}"),
        };
        rows.push(notify.record(tx).await?);
    }
    if done.upgraded {
        let tier = done
            .result
            .status_tier
            .parse()
            .unwrap_or(domain::Tier::Insider);
        let notify = Notify {
            user_id: done.user_id,
            message: Message::TierUpgraded { tier },
            dedupe_key: format!("tier-up:{transaction_id}"),
        };
        rows.push(notify.record(tx).await?);
    }
    Ok(rows)
}

/// The QR code as it was when scanned: known, and scanned before it expired.
fn qr_of(scan: &scans::ScanRequest) -> Result<QrCode, Refusal> {
    let qr: QrCode = scan
        .qr
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| Refusal::new("code_expired", "This code is unknown or has expired"))?;
    if scan.created_at > qr.expires_at {
        return Err(Refusal::new("code_expired", "This code has expired"));
    }
    Ok(qr)
}
