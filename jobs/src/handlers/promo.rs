//! `cross_promo`: a purchase at one partner earns a coupon at another.
//!
//! After `bonus_calc` (or a QR scan) settles non-medical purchases, the chains they match
//! (by business or category, and minimum amount) issue coupons for the chains' target
//! businesses, with a push or SMS about each. Medical purchases never trigger a chain, nor
//! do purchases a member made while blocked (a partner's CRM still reports them).
//! Idempotent: a coupon is keyed by (chain, purchase), so a retried job issues nothing twice.

use crate::{
    handlers::notify_job::{self, Notify},
    metrics::CROSS_PROMO_TRIGGERED,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use domain::{codes::human_code, loyalty::discount_label, messages::Message};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use storage::coupons::{self, Coupon, Issued};
use uuid::Uuid;

/// Length of coupon codes: 31^10 codes, so a collision is all but impossible.
pub const COUPON_CODE_LEN: usize = 10;

/// Issue the coupons these settled transactions earn.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssueCoupons {
    pub transaction_ids: Vec<Uuid>,
}

impl Job for IssueCoupons {
    const QUEUE: QueueName = QueueName::CrossPromo;
}

impl RunJob for IssueCoupons {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let mut tx = storage::begin_batch(&env.db).await?;
        let purchases = coupons::promo_purchases(&mut *tx, &self.transaction_ids).await?;
        let chains = coupons::purchase_chains(&mut *tx).await?;
        let mut notices = Vec::new();
        let mut issued = 0;
        for purchase in &purchases {
            let fired = chains
                .iter()
                .filter(|c| c.fires(purchase.business_id, purchase.category, purchase.amount));
            for chain in fired {
                let issue_key = format!("{}:{}", chain.id, purchase.id);
                let code = human_code(&mut rand::rng(), COUPON_CODE_LEN);
                let Issued::New(coupon) =
                    coupons::issue(&mut tx, chain, purchase.user_id, &code, &issue_key).await?
                else {
                    continue;
                };
                issued += 1;
                CROSS_PROMO_TRIGGERED.inc();
                notices.push(coupon_notice(&mut tx, env.timezone, &coupon).await?);
            }
        }
        let follow_ups = notify_job::record_all(&mut tx, notices).await?;
        tx.commit().await?;
        env.committed([], &follow_ups, "coupon notifications").await;
        tracing::info!(
            purchases = purchases.len(),
            coupons = issued,
            "cross-promo done"
        );
        Ok(())
    }
}

/// The member's notice of a new coupon: where, how much, the code and the last day.
pub async fn coupon_notice(
    tx: &mut Transaction<'_, Postgres>,
    timezone: chrono_tz::Tz,
    coupon: &Coupon,
) -> sqlx::Result<Notify> {
    let business = storage::businesses::name(&mut **tx, coupon.business_id).await?;
    let expires = domain::local_time::local_date(timezone, coupon.expires_at);
    Ok(Notify {
        user_id: coupon.user_id,
        message: Message::CouponIssued {
            business,
            discount: discount_label(coupon.discount_type, coupon.discount_value),
            code: coupon.code.clone(),
            expires: format!(
                "{:02}.{:02}.{}",
                expires.day(),
                expires.month() as u8,
                expires.year()
            ),
        },
        dedupe_key: format!("coupon:{}", coupon.id),
    })
}
