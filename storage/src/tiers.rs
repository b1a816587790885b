//! Status tiers as stored: the rules, the rolling 365-day spend they are judged on, and the
//! one statement that moves members between tiers (upgrades at purchase, downgrades at
//! `tier_review`).

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

/// Moves members to new tiers, in one statement.
pub async fn set(tx: &mut Transaction<'_, Postgres>, changes: &[(Uuid, Tier)]) -> sqlx::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let (users, tiers): (Vec<Uuid>, Vec<&str>) =
        changes.iter().map(|(u, t)| (*u, t.as_str())).unzip();
    sqlx::query(
        "UPDATE users u SET status_tier = n.tier, tier_changed_at = now(), updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[]) AS n(id, tier) WHERE u.id = n.id",
    )
    .bind(&users)
    .bind(&tiers)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
