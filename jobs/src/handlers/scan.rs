//! `qr_scan`: turns a member's scan of a staff QR code into a purchase with its bonuses.

use crate::{
    metrics::{BONUS_ACCRUED, QR_SCANS},
    queue::{Job, JobCtx, JobError, QueueName},
};
use domain::loyalty::RedemptionError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use storage::{
    businesses,
    cache::QrCode,
    loyalty::{self, QrPurchase, QrPurchaseError},
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
        let db = &ctx.env.db;
        let rules = loyalty::tier_rules(db).await?;
        let mut tx = db.begin().await?;
        let Some(scan) = scans::start(&mut tx, self.scan_id).await? else {
            // Finished by an earlier delivery of this job.
            return Ok(());
        };
        let refusal = match qr_of(&scan) {
            Err(refusal) => refusal,
            Ok(qr) => match businesses::get(&mut *tx, qr.business_id).await? {
                None => Refusal::new(
                    "business_unavailable",
                    "This business is not part of the programme",
                ),
                Some(business) if !business.is_active => Refusal::new(
                    "business_unavailable",
                    "This business is not accepting scans now",
                ),
                Some(_) if scan.coupon_id.is_some() => {
                    Refusal::new("coupon_invalid", "Coupons cannot be applied to scans yet")
                }
                Some(business) => {
                    let purchase = QrPurchase {
                        user_id: scan.user_id,
                        business: &business,
                        code: &scan.code,
                        amount: qr.amount,
                        redeem: scan.redeem_bonus,
                        coupon_id: None,
                        coupon_discount: Decimal::ZERO,
                    };
                    match loyalty::record_qr_purchase(&mut tx, &purchase, &rules).await {
                        Ok(recorded) => {
                            let result = ScanResult {
                                transaction_id: recorded.bonus.transaction_id,
                                business_id: business.id,
                                amount: recorded.priced.amount,
                                bonus_redeemed: recorded.priced.bonus_redeemed,
                                coupon_discount: recorded.priced.coupon_discount,
                                bonus_accrued: recorded.bonus.bonus_change,
                                balance: recorded.bonus.balance,
                                status_tier: recorded.bonus.tier.as_str().to_owned(),
                            };
                            let json =
                                serde_json::to_value(&result).expect("ScanResult serializes");
                            scans::complete(&mut tx, scan.id, result.transaction_id, &json).await?;
                            tx.commit().await?;
                            QR_SCANS.with_label_values(&["done"]).inc();
                            BONUS_ACCRUED
                                .with_label_values(&["qr"])
                                .inc_by(f64::try_from(result.bonus_accrued).unwrap_or(0.0));
                            if let Some(from) = recorded.bonus.upgraded_from {
                                tracing::info!(from = %from, to = %recorded.bonus.tier, "member upgraded");
                            }
                            return Ok(());
                        }
                        Err(QrPurchaseError::CodeUsed) => {
                            Refusal::new("code_already_used", "This code has already been used")
                        }
                        Err(QrPurchaseError::Redemption(
                            RedemptionError::InsufficientBalance { available },
                        )) => Refusal::new(
                            "insufficient_balance",
                            format!("Not enough bonuses: {available} available"),
                        ),
                        Err(QrPurchaseError::Redemption(RedemptionError::OverCap { cap })) => {
                            Refusal::new(
                                "redeem_limit_exceeded",
                                format!("At most {cap} of this check can be paid with bonuses"),
                            )
                        }
                        Err(QrPurchaseError::Redemption(other)) => {
                            Refusal::new("redeem_refused", other.to_string())
                        }
                        Err(QrPurchaseError::Db(e)) => return Err(e.into()),
                    }
                }
            },
        };
        // Nothing of the attempt is kept: the failure is recorded on its own.
        tx.rollback().await?;
        scans::fail(db, scan.id, refusal.code, &refusal.message).await?;
        QR_SCANS.with_label_values(&["failed"]).inc();
        tracing::info!(reason = refusal.code, "scan refused");
        Ok(())
    }
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
