//! Cross-promo chains and the coupons they issue.

use crate::states;
use domain::{Category, loyalty::DiscountType};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, Row, Transaction, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

macro_rules! coupon_columns {
    () => {
        "id, code, user_id, business_id, discount_type, discount_value, expires_at, redeemed_at, expired_at,
         source_chain_id, created_at"
    };
}

#[derive(Debug, Clone)]
pub struct Coupon {
    pub id: Uuid,
    pub code: String,
    pub user_id: Uuid,
    pub business_id: Uuid,
    pub discount_type: DiscountType,
    pub discount_value: Decimal,
    pub expires_at: OffsetDateTime,
    pub redeemed_at: Option<OffsetDateTime>,
    pub expired_at: Option<OffsetDateTime>,
    pub source_chain_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

/// By hand for the discount type: one this build does not know is an error naming the coupon.
impl FromRow<'_, PgRow> for Coupon {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            code: row.try_get("code")?,
            user_id: row.try_get("user_id")?,
            business_id: row.try_get("business_id")?,
            discount_type: states::column(row, "coupons", id, "discount_type")?,
            discount_value: row.try_get("discount_value")?,
            expires_at: row.try_get("expires_at")?,
            redeemed_at: row.try_get("redeemed_at")?,
            expired_at: row.try_get("expired_at")?,
            source_chain_id: row.try_get("source_chain_id")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A member's coupons that can still be used, soonest to expire first.
pub async fn active_for_user(db: &PgPool, user_id: Uuid) -> sqlx::Result<Vec<Coupon>> {
    sqlx::query_as(concat!(
        "SELECT ",
        coupon_columns!(),
        " FROM coupons WHERE user_id = $1 AND redeemed_at IS NULL AND expired_at IS NULL AND expires_at > now()
         ORDER BY expires_at, id"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Locks coupons for use by scans (in id order; concurrent scans with one wait here, one by
/// one).
pub async fn lock(tx: &mut Transaction<'_, Postgres>, ids: &[Uuid]) -> sqlx::Result<Vec<Coupon>> {
    sqlx::query_as(concat!(
        "SELECT ",
        coupon_columns!(),
        " FROM coupons WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await
}

pub async fn mark_redeemed(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    transaction_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE coupons SET redeemed_at = now(), redeemed_transaction_id = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(transaction_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PromoChain {
    pub id: Uuid,
    pub trigger_business_id: Option<Uuid>,
    pub trigger_category: Option<Category>,
    /// A win-back chain: fired by the nightly RFM snapshot for members whose churn risk
    /// newly reached this level, not by purchases.
    pub trigger_churn_risk: Option<Decimal>,
    pub min_amount: Decimal,
    pub target_business_id: Uuid,
    pub discount_type: DiscountType,
    pub discount_value: Decimal,
    pub valid_days: i32,
    pub cooldown_days: i32,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
}

/// By hand for the discount type and the trigger category, as [`Coupon`]'s.
impl FromRow<'_, PgRow> for PromoChain {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        let trigger_category: Option<String> = row.try_get("trigger_category")?;
        Ok(Self {
            id,
            trigger_business_id: row.try_get("trigger_business_id")?,
            trigger_category: trigger_category
                .map(|name| states::parse("promo_chains", id, "trigger_category", &name))
                .transpose()?,
            trigger_churn_risk: row.try_get("trigger_churn_risk")?,
            min_amount: row.try_get("min_amount")?,
            target_business_id: row.try_get("target_business_id")?,
            discount_type: states::column(row, "promo_chains", id, "discount_type")?,
            discount_value: row.try_get("discount_value")?,
            valid_days: row.try_get("valid_days")?,
            cooldown_days: row.try_get("cooldown_days")?,
            is_active: row.try_get("is_active")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

macro_rules! chain_columns {
    () => {
        "id, trigger_business_id, trigger_category, trigger_churn_risk, min_amount, target_business_id, discount_type, discount_value,
         valid_days, cooldown_days, is_active, created_at"
    };
}

/// A chain as validated by the API.
#[derive(Debug, Clone)]
pub struct NewChain {
    pub trigger_business_id: Option<Uuid>,
    pub trigger_category: Option<Category>,
    pub trigger_churn_risk: Option<Decimal>,
    pub min_amount: Decimal,
    pub target_business_id: Uuid,
    pub discount_type: DiscountType,
    pub discount_value: Decimal,
    pub valid_days: i32,
    pub cooldown_days: i32,
}

pub async fn create_chain(db: impl PgExecutor<'_>, chain: &NewChain) -> sqlx::Result<PromoChain> {
    sqlx::query_as(concat!(
        "INSERT INTO promo_chains (trigger_business_id, trigger_category, trigger_churn_risk, min_amount,
                                   target_business_id, discount_type, discount_value, valid_days, cooldown_days)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
        chain_columns!()
    ))
    .bind(chain.trigger_business_id)
    .bind(chain.trigger_category.map(Category::as_str))
    .bind(chain.trigger_churn_risk)
    .bind(chain.min_amount)
    .bind(chain.target_business_id)
    .bind(chain.discount_type.as_str())
    .bind(chain.discount_value)
    .bind(chain.valid_days)
    .bind(chain.cooldown_days)
    .fetch_one(db)
    .await
}

/// Every chain, paused ones included, newest first (operators' list; there are few).
pub async fn all_chains(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<PromoChain>> {
    sqlx::query_as(concat!(
        "SELECT ",
        chain_columns!(),
        " FROM promo_chains ORDER BY created_at DESC, id"
    ))
    .fetch_all(db)
    .await
}

/// One chain, locked until the caller's transaction ends (an edit reads, merges, writes).
pub async fn chain_for_update(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<PromoChain>> {
    sqlx::query_as(concat!(
        "SELECT ",
        chain_columns!(),
        " FROM promo_chains WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Replaces every field of chain `id` (validated by the API) and whether it is active. A
/// paused chain issues nothing from then on: the jobs that issue coupons read the active
/// chains as they run. Coupons it issued before stay valid.
pub async fn update_chain(
    db: impl PgExecutor<'_>,
    id: Uuid,
    chain: &NewChain,
    is_active: bool,
) -> sqlx::Result<PromoChain> {
    sqlx::query_as(concat!(
        "UPDATE promo_chains SET trigger_business_id = $2, trigger_category = $3, trigger_churn_risk = $4,
                min_amount = $5, target_business_id = $6, discount_type = $7, discount_value = $8,
                valid_days = $9, cooldown_days = $10, is_active = $11
         WHERE id = $1 RETURNING ",
        chain_columns!()
    ))
    .bind(id)
    .bind(chain.trigger_business_id)
    .bind(chain.trigger_category.map(Category::as_str))
    .bind(chain.trigger_churn_risk)
    .bind(chain.min_amount)
    .bind(chain.target_business_id)
    .bind(chain.discount_type.as_str())
    .bind(chain.discount_value)
    .bind(chain.valid_days)
    .bind(chain.cooldown_days)
    .bind(is_active)
    .fetch_one(db)
    .await
}

/// The active chains that purchases trigger (win-back chains are fired by the RFM snapshot
/// instead), oldest first. There are few: callers match purchases against them in memory.
pub async fn purchase_chains(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<PromoChain>> {
    sqlx::query_as(concat!(
        "SELECT ",
        chain_columns!(),
        " FROM promo_chains WHERE is_active AND trigger_churn_risk IS NULL ORDER BY created_at"
    ))
    .fetch_all(db)
    .await
}

/// The active win-back chains, which the nightly RFM snapshot fires.
pub async fn winback_chains(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<PromoChain>> {
    sqlx::query_as(concat!(
        "SELECT ",
        chain_columns!(),
        " FROM promo_chains WHERE is_active AND trigger_churn_risk IS NOT NULL ORDER BY created_at"
    ))
    .fetch_all(db)
    .await
}

impl PromoChain {
    /// Whether a purchase of `amount` at `business_id` (of `category`) triggers this chain.
    pub fn fires(&self, business_id: Uuid, category: Category, amount: Decimal) -> bool {
        amount >= self.min_amount
            && (self.trigger_business_id == Some(business_id)
                || self.trigger_category == Some(category))
    }
}

/// What issuing from a chain came to.
#[derive(Debug, Clone)]
pub enum Issued {
    New(Coupon),
    /// This purchase already issued from this chain (a retried job).
    Before,
    /// The member holds an active coupon of this chain, or got one within the cool-down.
    NotNow,
}

/// Issues a coupon from `chain` to `user_id` for the purchase `issue_key` names: at most one
/// active coupon per chain and member (a unique index), none within the cool-down, and
/// never twice for the same purchase.
pub async fn issue(
    tx: &mut Transaction<'_, Postgres>,
    chain: &PromoChain,
    user_id: Uuid,
    code: &str,
    issue_key: &str,
) -> sqlx::Result<Issued> {
    let inserted: Option<Coupon> = sqlx::query_as(concat!(
        "INSERT INTO coupons (code, user_id, business_id, discount_type, discount_value, expires_at, source_chain_id, issue_key)
         SELECT $1, $2, $3, $4, $5, now() + make_interval(days => $6), $7, $8
         WHERE NOT EXISTS (
             SELECT 1 FROM coupons
             WHERE source_chain_id = $7 AND user_id = $2 AND created_at > now() - make_interval(days => $9))
         ON CONFLICT DO NOTHING
         RETURNING ",
        coupon_columns!()
    ))
    .bind(code)
    .bind(user_id)
    .bind(chain.target_business_id)
    .bind(chain.discount_type.as_str())
    .bind(chain.discount_value)
    .bind(chain.valid_days)
    .bind(chain.id)
    .bind(issue_key)
    .bind(chain.cooldown_days)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(coupon) = inserted {
        return Ok(Issued::New(coupon));
    }
    let before: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM coupons WHERE issue_key = $1)")
            .bind(issue_key)
            .fetch_one(&mut **tx)
            .await?;
    Ok(if before {
        Issued::Before
    } else {
        Issued::NotNow
    })
}

/// A settled purchase as cross-promo chains judge it.
#[derive(Debug, Clone)]
pub struct PromoPurchase {
    pub id: Uuid,
    pub user_id: Uuid,
    pub business_id: Uuid,
    /// Its business's.
    pub category: Category,
    pub amount: Decimal,
}

impl FromRow<'_, PgRow> for PromoPurchase {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let business_id: Uuid = row.try_get("business_id")?;
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            business_id,
            category: states::column(row, "businesses", business_id, "category")?,
            amount: row.try_get("amount")?,
        })
    }
}

/// Those of `transaction_ids` that may fire a chain: purchases, not medical (by the
/// transaction or its business), and not made while the member was blocked.
pub async fn promo_purchases(
    db: impl PgExecutor<'_>,
    transaction_ids: &[Uuid],
) -> sqlx::Result<Vec<PromoPurchase>> {
    sqlx::query_as(
        "SELECT t.id, t.user_id, t.business_id, b.category, t.amount
         FROM transactions t JOIN businesses b ON b.id = t.business_id JOIN users u ON u.id = t.user_id
         WHERE t.id = ANY($1) AND t.transaction_type = 'purchase' AND NOT t.is_medical AND NOT b.is_medical
           AND NOT (u.blocked_at IS NOT NULL AND t.occurred_at >= u.blocked_at)",
    )
    .bind(transaction_ids)
    .fetch_all(db)
    .await
}

/// Marks every coupon due by `now` and still unused as expired; how many were.
pub async fn expire_due(db: impl PgExecutor<'_>, now: OffsetDateTime) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE coupons SET expired_at = now()
         WHERE expires_at <= $1 AND redeemed_at IS NULL AND expired_at IS NULL",
    )
    .bind(now)
    .execute(db)
    .await?
    .rows_affected())
}
