//! `/admin/users`: operators' changes to one member. Today the Inner Circle: a superadmin
//! grants it and revokes it (`POST /admin/users/{id}/tier`); no purchase earns it and
//! `tier_review` never takes it away.

use crate::{
    audit::{self, Change},
    auth::Superadmin,
    envelope::Envelope,
    error::{ApiError, ApiResult, CONFLICT, JSON_BODY, NOT_FOUND, SIGNED_IN},
    state::AppState,
};
use domain::{Tier, messages::Message};
use jobs::{
    handlers::notify_job::{self, Notify},
    outbox,
};
use poem_openapi::{Enum, Object, OpenApi, Tags, param::Path, payload::Json};
use std::sync::Arc;
use storage::{ledger, tiers, users};
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: members.
    AdminUsers,
}

pub struct AdminUsersApi {
    pub state: Arc<AppState>,
}

/// A status tier as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum TierName {
    Insider,
    #[oai(rename = "VIP")]
    Vip,
    Elite,
    InnerCircle,
}

impl From<TierName> for Tier {
    fn from(name: TierName) -> Self {
        match name {
            TierName::Insider => Tier::Insider,
            TierName::Vip => Tier::Vip,
            TierName::Elite => Tier::Elite,
            TierName::InnerCircle => Tier::InnerCircle,
        }
    }
}

/// `InnerCircle` grants it; any other tier revokes it.
#[derive(Debug, Object)]
pub struct SetTier {
    pub status_tier: TierName,
}

/// A member's tier after the change.
#[derive(Debug, Clone, Object)]
pub struct MemberTierView {
    pub id: Uuid,
    /// `Insider`, `VIP`, `Elite` or `InnerCircle`.
    pub status_tier: String,
    /// What her rolling 365-day spend earns: where a revocation takes her.
    pub earned_tier: String,
}

#[OpenApi(prefix_path = "/admin", tag = "Tag::AdminUsers")]
impl AdminUsersApi {
    /// Grant or revoke the Inner Circle (superadmin). `{"status_tier": "InnerCircle"}`
    /// grants it (the member is told by push or SMS); any other tier revokes it, and the
    /// member returns to the tier her rolling-year spend earns, whichever was named: tiers
    /// below the Inner Circle follow purchases and are never set by hand. Granting to a
    /// member already in it changes nothing; revoking from a member who is not in it is
    /// 409 `not_inner_circle`. Each change is in the audit log (`user.tier`).
    #[oai(path = "/users/:id/tier", method = "post")]
    async fn set_tier(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        body: Json<SetTier>,
    ) -> ApiResult<Json<Envelope<MemberTierView>>, { SIGNED_IN | JSON_BODY | NOT_FOUND | CONFLICT }>
    {
        let state = &self.state;
        let user = id.0;
        let wanted = Tier::from(body.0.status_tier);
        users::get(&state.db, user)
            .await?
            .ok_or_else(|| ApiError::not_found("user_not_found", "No such member."))?;
        let rules = tiers::rules(&state.db).await?;
        let mut tx = state.db.begin().await?;
        // The member's balance row first, as every purchase takes it before it moves her
        // tier: a grant and a purchase are serialized, in the same order (no deadlock).
        ledger::lock(&mut tx, [user]).await?;
        let stats = tiers::member_stats(&mut *tx, &[user])
            .await?
            .remove(&user)
            .unwrap_or_default();
        let earned = rules.earned(stats.spend, stats.categories);
        let snapshot = |tier: Tier| serde_json::json!({"status_tier": tier.as_str()});
        let mut follow_ups = Vec::new();
        let now = if wanted.is_by_invitation() {
            if let Some(before) = tiers::grant_inner_circle(&mut tx, user).await? {
                audit::record(
                    &mut *tx,
                    superadmin.user_id(),
                    Change::new("user.tier", "user", user)
                        .before_value(snapshot(before))
                        .after_value(snapshot(Tier::InnerCircle)),
                )
                .await?;
                let notice = Notify {
                    user_id: user,
                    message: Message::TierUpgraded {
                        tier: Tier::InnerCircle,
                    },
                    dedupe_key: format!("inner-circle:{user}:{}", Uuid::now_v7()),
                };
                follow_ups = notify_job::record_all(&mut tx, vec![notice]).await?;
            }
            Tier::InnerCircle
        } else {
            if !tiers::revoke_inner_circle(&mut tx, user, earned).await? {
                return Err(ApiError::conflict(
                    "not_inner_circle",
                    "This member is not in the Inner Circle; the other tiers follow purchases.",
                )
                .into());
            }
            audit::record(
                &mut *tx,
                superadmin.user_id(),
                Change::new("user.tier", "user", user)
                    .before_value(snapshot(Tier::InnerCircle))
                    .after_value(snapshot(earned)),
            )
            .await?;
            earned
        };
        tx.commit().await?;
        state.balances.forget([user]);
        state.cache.balances_changed([user]).await;
        outbox::relay_committed(&state.db, &state.queue, &follow_ups, "Inner Circle notice").await;
        tracing::info!(user_id = %user, tier = now.as_str(), "tier set by a superadmin");
        Ok(Json(Envelope::new(MemberTierView {
            id: user,
            status_tier: now.as_str().to_owned(),
            earned_tier: earned.as_str().to_owned(),
        })))
    }
}
