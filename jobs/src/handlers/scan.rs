//! `qr_scan`: turns a member's scan of a staff QR code into a purchase with its bonuses.
//!
//! Scans a worker holds at the same moment are processed together (group commit, gathered by
//! `scan_batcher`): one transaction and set-based statements for all of them, so a burst
//! costs a few commits rather than one per scan.

use crate::{
    env::Env,
    handlers::{
        notify_job::{self, Notify},
        promo::IssueCoupons,
    },
    metrics::{BONUS_ACCRUED, QR_SCANS},
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::fraud::is_outlier;
use domain::{
    loyalty::{DiscountType, RedemptionError, coupon_discount},
    messages::{Message, russian_date},
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};
use storage::{
    businesses::{self, Business},
    cache::QrCode,
    coupons::{self, Coupon},
    fraud,
    ledger::{self, QrPurchase, QrPurchaseRefusal},
    outbox::OutboxJob,
    scans::{self, ScanRequest},
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

impl Job for ScanQr {
    const QUEUE: QueueName = QueueName::QrScan;
}

impl RunJob for ScanQr {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let process =
            |env: Arc<Env>, ids: Vec<Uuid>| async move { process_batch(&env, &ids).await };
        ctx.env.scans.process(&ctx.env, self.scan_id, process).await
    }
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

impl From<QrPurchaseRefusal> for Refusal {
    fn from(refusal: QrPurchaseRefusal) -> Self {
        match refusal {
            QrPurchaseRefusal::CodeUsed => {
                Self::new("code_already_used", "This code has already been used")
            }
            QrPurchaseRefusal::Redemption(RedemptionError::InsufficientBalance { available }) => {
                Self::new(
                    "insufficient_balance",
                    format!("Not enough bonuses: {available} available"),
                )
            }
            QrPurchaseRefusal::Redemption(RedemptionError::OverCap { cap }) => Self::new(
                "redeem_limit_exceeded",
                format!("At most {cap} of this check can be paid with bonuses"),
            ),
            QrPurchaseRefusal::Redemption(other) => Self::new("redeem_refused", other.to_string()),
        }
    }
}

/// A scan that may become a purchase: what was checked before anything is written.
struct Candidate<'a> {
    scan: &'a ScanRequest,
    business: &'a Business,
    qr: QrCode,
    coupon: Option<&'a Coupon>,
}

/// A recorded purchase and what it calls for.
struct Done<'a> {
    scan: &'a ScanRequest,
    business: &'a Business,
    /// The staff member whose code it was.
    issued_by: Uuid,
    result: ScanResult,
    /// The tier this purchase lifted the member to, if it did.
    upgraded_to: Option<domain::Tier>,
    /// When the cashback becomes spendable, if the business holds it.
    held_until: Option<time::OffsetDateTime>,
}

/// Records the purchases these scans stand for, or why not, in one transaction.
async fn process_batch(env: &Env, ids: &[Uuid]) -> Result<(), JobError> {
    let rules = env.tier_rules().await?;
    let mut tx = storage::begin_batch(&env.db).await?;
    let scans = scans::start(&mut tx, ids).await?;
    if scans.is_empty() {
        // Finished by an earlier delivery of these jobs.
        return Ok(());
    }
    let qrs: Vec<Result<QrCode, Refusal>> = scans.iter().map(qr_of).collect();
    let business_ids: Vec<Uuid> = qrs
        .iter()
        .filter_map(|qr| qr.as_ref().ok().map(|qr| qr.business_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let businesses: HashMap<Uuid, Business> = businesses::get_many(&mut *tx, &business_ids)
        .await?
        .into_iter()
        .map(|b| (b.id, b))
        .collect();
    let coupon_ids: Vec<Uuid> = scans.iter().filter_map(|s| s.coupon_id).collect();
    let coupons: HashMap<Uuid, Coupon> = if coupon_ids.is_empty() {
        HashMap::new()
    } else {
        coupons::lock(&mut tx, &coupon_ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect()
    };

    // Scans a member sent before an operator blocked her: refused, not recorded.
    let members: Vec<Uuid> = scans.iter().map(|s| s.user_id).collect();
    let blocked: HashSet<Uuid> = storage::users::blocked_among(&mut *tx, &members)
        .await?
        .into_iter()
        .collect();

    // What can be refused before anything is written.
    let mut refused: Vec<(Uuid, Refusal)> = Vec::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut coupons_taken = HashSet::new();
    for (scan, qr) in scans.iter().zip(qrs) {
        if blocked.contains(&scan.user_id) {
            refused.push((
                scan.id,
                Refusal::new(
                    "member_blocked",
                    "This account is blocked; contact support.",
                ),
            ));
            continue;
        }
        let checked = qr.and_then(|qr| {
            if !scan.issuer_on_staff {
                // Whoever issued it has left the staff (or may no longer take payments).
                return Err(Refusal::new(
                    "code_revoked",
                    "This code was issued by someone no longer on the staff",
                ));
            }
            let business = match businesses.get(&qr.business_id) {
                Some(business) if business.is_active => business,
                Some(_) => {
                    return Err(Refusal::new(
                        "business_unavailable",
                        "This business is not accepting scans now",
                    ));
                }
                None => {
                    return Err(Refusal::new(
                        "business_unavailable",
                        "This business is not part of the programme",
                    ));
                }
            };
            if qr.issued_by == scan.user_id {
                // The API refuses these; a scan recorded before it did is refused here.
                return Err(Refusal::new(
                    "self_scan",
                    "A code you issued cannot be scanned by you",
                ));
            }
            if qr.amount > business.max_check_amount {
                return Err(Refusal::new(
                    "amount_over_limit",
                    format!(
                        "A check at this business is at most {}",
                        business.max_check_amount
                    ),
                ));
            }
            let coupon = match scan.coupon_id {
                None => None,
                Some(id) => Some(usable_coupon(
                    coupons.get(&id),
                    scan,
                    business,
                    &mut coupons_taken,
                )?),
            };
            Ok(Candidate {
                scan,
                business,
                qr,
                coupon,
            })
        });
        match checked {
            Ok(candidate) => candidates.push(candidate),
            Err(refusal) => refused.push((scan.id, refusal)),
        }
    }

    let purchases: Vec<QrPurchase<'_>> = candidates
        .iter()
        .map(|c| {
            let (coupon_discount, coupon_bonus) =
                c.coupon.map_or((Decimal::ZERO, Decimal::ZERO), |coupon| {
                    let kind = coupon.discount_type;
                    let bonus = if kind == DiscountType::Bonus {
                        coupon.discount_value
                    } else {
                        Decimal::ZERO
                    };
                    (
                        coupon_discount(kind, coupon.discount_value, c.qr.amount),
                        bonus,
                    )
                });
            QrPurchase {
                id: Uuid::now_v7(),
                user_id: c.scan.user_id,
                business: c.business,
                code: &c.scan.code,
                amount: c.qr.amount,
                redeem: c.scan.redeem_bonus,
                coupon_id: c.coupon.map(|coupon| coupon.id),
                coupon_discount,
                coupon_bonus,
            }
        })
        .collect();
    let recorded = ledger::record_qr_purchases(&mut tx, &purchases, &rules).await?;

    let mut done: Vec<Done<'_>> = Vec::new();
    for ((candidate, purchase), recorded) in candidates.iter().zip(&purchases).zip(recorded) {
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(refusal) => {
                refused.push((candidate.scan.id, refusal.into()));
                continue;
            }
        };
        if let Some(coupon) = candidate.coupon {
            coupons::mark_redeemed(&mut tx, coupon.id, purchase.id).await?;
        }
        done.push(Done {
            scan: candidate.scan,
            business: candidate.business,
            issued_by: candidate.qr.issued_by,
            result: ScanResult {
                transaction_id: purchase.id,
                business_id: candidate.business.id,
                amount: recorded.priced.amount,
                bonus_redeemed: recorded.priced.bonus_redeemed,
                coupon_discount: recorded.priced.coupon_discount,
                bonus_accrued: recorded.priced.bonus_accrued,
                balance: recorded.balance,
                status_tier: recorded.tier.as_str().to_owned(),
            },
            upgraded_to: recorded.upgraded_from.map(|_| recorded.tier),
            held_until: recorded.held_until,
        });
    }

    // Purchases near their business's largest allowed check, for operators to look at.
    let outliers: Vec<fraud::NewFlag> = done
        .iter()
        .filter(|d| {
            is_outlier(
                d.result.amount,
                d.business.max_check_amount,
                env.fraud_outlier_percent,
            )
        })
        .map(|d| fraud::NewFlag {
            kind: fraud::FlagKind::OutlierAmount,
            business_id: d.business.id,
            staff_id: Some(d.issued_by),
            member_id: Some(d.scan.user_id),
            amount: d.result.amount,
            transaction_id: Some(d.result.transaction_id),
        })
        .collect();
    fraud::record(&mut *tx, &outliers).await?;
    let follow_ups = follow_ups(&mut tx, &done, env.timezone).await?;
    let completed: Vec<(Uuid, Uuid, serde_json::Value)> = done
        .iter()
        .map(|d| {
            let json = serde_json::to_value(&d.result).expect("ScanResult serializes");
            (d.scan.id, d.result.transaction_id, json)
        })
        .collect();
    scans::complete(&mut tx, &completed).await?;
    let refusals: Vec<(Uuid, &str, &str)> = refused
        .iter()
        .map(|(id, r)| (*id, r.code, r.message.as_str()))
        .collect();
    scans::refuse(&mut tx, &refusals).await?;
    tx.commit().await?;
    env.committed(
        done.iter().map(|d| d.scan.user_id),
        &follow_ups,
        "scan follow-ups",
    )
    .await;
    QR_SCANS
        .with_label_values(&["done"])
        .inc_by(done.len() as u64);
    QR_SCANS
        .with_label_values(&["failed"])
        .inc_by(refused.len() as u64);
    let accrued: Decimal = done.iter().map(|d| d.result.bonus_accrued).sum();
    BONUS_ACCRUED
        .with_label_values(&["qr"])
        .inc_by(f64::try_from(accrued).unwrap_or(0.0));
    for (_, refusal) in &refused {
        tracing::info!(reason = refusal.code, "scan refused");
    }
    Ok(())
}

/// Cross-promo for the non-medical purchases that fire a chain, and the members' messages,
/// recorded in the purchases' transaction.
async fn follow_ups(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    done: &[Done<'_>],
    timezone: chrono_tz::Tz,
) -> sqlx::Result<Vec<OutboxJob>> {
    let mut rows = Vec::new();
    if done.iter().any(|d| !d.business.is_medical) {
        let chains = coupons::purchase_chains(&mut **tx).await?;
        let promo: Vec<Uuid> = done
            .iter()
            .filter(|d| {
                !d.business.is_medical
                    && chains
                        .iter()
                        .any(|c| c.fires(d.business.id, d.business.category, d.result.amount))
            })
            .map(|d| d.result.transaction_id)
            .collect();
        if let Some(first) = promo.first() {
            let id = Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("cross-promo:{first}").as_bytes(),
            );
            rows.push(outbox::row(
                id,
                &IssueCoupons {
                    transaction_ids: promo,
                },
                None,
            ));
        }
    }
    // The members' messages: one job for the batch.
    let mut messages = Vec::new();
    let mut upgraded = HashSet::new();
    for d in done {
        let transaction_id = d.result.transaction_id;
        if d.result.bonus_accrued > Decimal::ZERO {
            // Medical secrecy: a message about a medical purchase never names the business.
            let business = (!d.business.is_medical).then(|| d.business.name.clone());
            let message = match d.held_until {
                Some(at) => Message::BonusPending {
                    amount: d.result.bonus_accrued,
                    business,
                    available: russian_date(domain::local_time::local_date(timezone, at)),
                },
                None => Message::BonusAccrued {
                    amount: d.result.bonus_accrued,
                    business,
                    balance: d.result.balance,
                },
            };
            messages.push(Notify {
                user_id: d.scan.user_id,
                message,
                dedupe_key: format!("accrual:{transaction_id}"),
            });
        }
        if let Some(tier) = d.upgraded_to
            && upgraded.insert(d.scan.user_id)
        {
            messages.push(Notify {
                user_id: d.scan.user_id,
                message: Message::TierUpgraded { tier },
                dedupe_key: format!("tier-up:{transaction_id}"),
            });
        }
    }
    rows.extend(notify_job::outbox_rows(messages));
    outbox::record_all(tx, &rows).await?;
    Ok(rows)
}

/// The QR code as it was when scanned: known, and scanned before it expired.
fn qr_of(scan: &ScanRequest) -> Result<QrCode, Refusal> {
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

/// The member's coupon, if it can pay part of this check: theirs, for this business,
/// unused (also by an earlier scan of this batch), and scanned before it expired. Locked
/// until the batch's transaction ends, so two batches cannot both use it.
fn usable_coupon<'a>(
    coupon: Option<&'a Coupon>,
    scan: &ScanRequest,
    business: &Business,
    taken: &mut HashSet<Uuid>,
) -> Result<&'a Coupon, Refusal> {
    let coupon = match coupon {
        Some(coupon) if coupon.user_id == scan.user_id => coupon,
        _ => return Err(Refusal::new("coupon_invalid", "You have no such coupon")),
    };
    if coupon.business_id != business.id {
        Err(Refusal::new(
            "coupon_wrong_business",
            "This coupon is for another partner",
        ))
    } else if coupon.redeemed_at.is_some() || taken.contains(&coupon.id) {
        Err(Refusal::new(
            "coupon_used",
            "This coupon has already been used",
        ))
    } else if coupon.expired_at.is_some() || coupon.expires_at <= scan.created_at {
        Err(Refusal::new("coupon_expired", "This coupon has expired"))
    } else {
        taken.insert(coupon.id);
        Ok(coupon)
    }
}
