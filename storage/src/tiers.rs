//! Status tiers as stored: the rules, the rolling 365-day spend they are judged on, the
//! statement that moves members between earned tiers (upgrades at purchase, downgrades at
//! `tier_review`), and the only two that move a member into or out of the Inner Circle
//! (a superadmin's grant and revocation).

use crate::states;
use domain::{Tier, TierRule, TierRules};
use rust_decimal::Decimal;
use sqlx::{PgExecutor, Postgres, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

/// The tier rules as stored (DESIGN.md defaults unless edited).
pub async fn rules(db: impl PgExecutor<'_>) -> sqlx::Result<TierRules> {
    let rows: Vec<(String, Decimal, i32, Decimal)> =
        sqlx::query_as("SELECT tier, min_spend, min_categories, multiplier FROM tier_rules")
            .fetch_all(db)
            .await?;
    let rules = rows
        .into_iter()
        .map(|(tier, min_spend, min_categories, multiplier)| {
            Ok(TierRule {
                tier: states::parse("tier_rules", &tier, "tier", &tier)?,
                min_spend,
                min_categories: min_categories.max(0) as u32,
                multiplier,
            })
        })
        .collect::<sqlx::Result<_>>()?;
    Ok(TierRules::new(rules))
}

/// Rolling 365-day spend (purchases minus refunds) and distinct categories bought in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStats {
    pub spend: Decimal,
    pub categories: u32,
}

impl MemberStats {
    fn new(spend: Decimal, categories: i64) -> Self {
        Self {
            spend: spend.max(Decimal::ZERO),
            categories: categories as u32,
        }
    }
}

/// What the tiers are judged on, over transactions `t` joined to their businesses `b`: the
/// year's spend and the categories bought in. Written once, used by both queries below.
macro_rules! year_stats {
    () => {
        "COALESCE(SUM(CASE WHEN t.transaction_type = 'purchase' THEN t.amount ELSE -t.amount END), 0),
         COUNT(DISTINCT b.category) FILTER (WHERE t.transaction_type = 'purchase')"
    };
}
macro_rules! in_year {
    () => {
        "t.occurred_at > now() - interval '365 days'"
    };
}

/// The year's stats of these members (members without purchases in it are left out).
pub async fn member_stats(
    db: impl PgExecutor<'_>,
    users: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, MemberStats>> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Decimal, i64)> = sqlx::query_as(concat!(
        "SELECT t.user_id, ",
        year_stats!(),
        " FROM transactions t JOIN businesses b ON b.id = t.business_id
         WHERE t.user_id = ANY($1) AND ",
        in_year!(),
        " GROUP BY t.user_id"
    ))
    .bind(users)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, spend, categories)| (user, MemberStats::new(spend, categories)))
        .collect())
}

/// Every member above Insider with her tier and the year's stats (for `tier_review`).
pub async fn above_insider(
    db: impl PgExecutor<'_>,
) -> sqlx::Result<Vec<(Uuid, Tier, MemberStats)>> {
    let rows: Vec<(Uuid, String, Decimal, i64)> = sqlx::query_as(concat!(
        "SELECT u.id, u.status_tier, ",
        year_stats!(),
        " FROM users u
         LEFT JOIN transactions t ON t.user_id = u.id AND ",
        in_year!(),
        " LEFT JOIN businesses b ON b.id = t.business_id
         WHERE u.status_tier <> 'Insider'
         GROUP BY u.id, u.status_tier"
    ))
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(user, tier, spend, categories)| {
            Ok((
                user,
                states::parse("users", user, "status_tier", &tier)?,
                MemberStats::new(spend, categories),
            ))
        })
        .collect()
}

/// Moves members to new earned tiers, in one statement. A member in the Inner Circle is left
/// where she is, and nobody is moved into it here: the caller may have read her tier before
/// a superadmin's grant committed (a purchase's row lock does not re-read `users`), and only
/// [`grant_inner_circle`] and [`revoke_inner_circle`] cross that line.
pub async fn set(tx: &mut Transaction<'_, Postgres>, changes: &[(Uuid, Tier)]) -> sqlx::Result<()> {
    let (users, tiers): (Vec<Uuid>, Vec<&str>) = changes
        .iter()
        .filter(|(_, t)| !t.is_by_invitation())
        .map(|(u, t)| (*u, t.as_str()))
        .unzip();
    if users.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE users u SET status_tier = n.tier, tier_changed_at = now(), updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[]) AS n(id, tier)
         WHERE u.id = n.id AND u.status_tier <> 'InnerCircle'",
    )
    .bind(&users)
    .bind(&tiers)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Puts the member in the Inner Circle. Returns the tier she had, or `None` if she was in it
/// already (or is not a member: deleted or unknown), when nothing changed.
pub async fn grant_inner_circle(
    tx: &mut Transaction<'_, Postgres>,
    user: Uuid,
) -> sqlx::Result<Option<Tier>> {
    let before: Option<String> = sqlx::query_scalar(
        "WITH old AS (
             SELECT id, status_tier FROM users
             WHERE id = $1 AND deleted_at IS NULL AND status_tier <> 'InnerCircle'
             FOR UPDATE
         )
         UPDATE users u SET status_tier = 'InnerCircle', tier_changed_at = now(), updated_at = now()
         FROM old WHERE u.id = old.id
         RETURNING old.status_tier",
    )
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    before
        .map(|tier| states::parse("users", user, "status_tier", &tier))
        .transpose()
}

/// Takes the member out of the Inner Circle to `earned` (the tier her year earns). Returns
/// whether she was in it; if not, nothing changed.
pub async fn revoke_inner_circle(
    tx: &mut Transaction<'_, Postgres>,
    user: Uuid,
    earned: Tier,
) -> sqlx::Result<bool> {
    debug_assert!(!earned.is_by_invitation());
    let changed = sqlx::query(
        "UPDATE users SET status_tier = $2, tier_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status_tier = 'InnerCircle' AND deleted_at IS NULL",
    )
    .bind(user)
    .bind(earned.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(changed.rows_affected() == 1)
}
