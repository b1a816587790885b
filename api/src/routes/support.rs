//! `/admin/users`: member support (DESIGN.md round 2). Operators find a member by phone and
//! read her profile, balance, tier, ledger, purchases, coupons, devices and the messages sent
//! to her; a superadmin corrects her balance (an `adjustment` ledger entry, through
//! `storage::ledger`, idempotent per `Idempotency-Key`); any operator blocks and unblocks her.
//! Every change is written to the audit log in the transaction that makes it.
//!
//! Medical secrecy: operators see a purchase at a medical business like any other — which
//! partner, the amounts and bonuses, flagged `is_medical` — because answering "where are my
//! bonuses from the clinic" is their job; what it was for is never shown (the vendor's check
//! lines are not stored, and the vendor's own visit or invoice id, `external_id`, is left out
//! of every operator view). Messages about medical purchases never name the business in the
//! first place (`notify`).

use crate::{
    audit::{self, Change},
    auth::{Operator, Superadmin},
    envelope::{Envelope, Page},
    error::{
        ApiError, ApiResult, BAD_REQUEST, CONFLICT, JSON_BODY, NOT_FOUND, PAYLOAD_TOO_LARGE,
        SIGNED_IN, UNPROCESSABLE,
    },
    routes::{
        loyalty::LedgerEntryView,
        page_limit, parse_cursor, positive_money,
        users::{RoleView, user_view},
    },
    state::AppState,
    wire::{Amount, Text},
};
use domain::PhoneNumber;
use poem_openapi::{
    Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::Json,
    types::ToJSON,
};
use serde_json::json;
use std::sync::Arc;
use storage::{
    ledger::{self, Adjusted},
    loyalty, support,
    users::{self, User},
};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: member support.
    Support,
}

pub struct SupportApi {
    pub state: Arc<AppState>,
}

/// How many coupons the member view carries (newest first).
const COUPONS_SHOWN: i64 = 50;

/// A member in a list: her phone masked (`+7999***4567`).
#[derive(Debug, Object)]
pub struct MemberSummary {
    pub id: Uuid,
    /// Masked.
    pub phone: String,
    #[oai(nullable)]
    pub first_name: Option<String>,
    #[oai(nullable)]
    pub last_name: Option<String>,
    pub status_tier: String,
    pub blocked: bool,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Object)]
pub struct MemberList {
    pub items: Vec<MemberSummary>,
}

/// Why and since when a member is blocked.
#[derive(Debug, Clone, Object)]
pub struct BlockView {
    pub blocked_at: OffsetDateTime,
    pub reason: String,
}

/// A coupon, used or not.
#[derive(Debug, Clone, Object)]
pub struct MemberCouponView {
    pub id: Uuid,
    pub code: String,
    pub business_id: Uuid,
    pub discount_type: String,
    pub discount_value: Amount,
    pub expires_at: OffsetDateTime,
    #[oai(nullable)]
    pub redeemed_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub expired_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub source_chain_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

/// A device she registered for push (never its token).
#[derive(Debug, Clone, Object)]
pub struct MemberDeviceView {
    pub id: Uuid,
    /// `ios` or `android`.
    pub platform: String,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// One member as support sees her.
#[derive(Debug, Clone, Object)]
pub struct MemberView {
    pub id: Uuid,
    /// E.164, in full (lists mask it).
    pub phone: String,
    #[oai(nullable)]
    pub first_name: Option<String>,
    #[oai(nullable)]
    pub last_name: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    /// `Insider`, `VIP` or `Elite`.
    pub status_tier: String,
    pub roles: Vec<RoleView>,
    /// Present while she is blocked.
    #[oai(nullable)]
    pub blocked: Option<BlockView>,
    pub balance: Amount,
    pub lifetime_earned: Amount,
    pub lifetime_spent: Amount,
    /// Her latest 50 coupons, newest first, used and expired ones included.
    pub coupons: Vec<MemberCouponView>,
    pub devices: Vec<MemberDeviceView>,
    pub created_at: OffsetDateTime,
}

/// A purchase or refund, as support sees it.
#[derive(Debug, Object)]
pub struct MemberTransactionView {
    pub id: Uuid,
    pub business_id: Uuid,
    /// A medical business's purchase: shown to operators without what it was for.
    pub is_medical: bool,
    /// `purchase` or `refund`.
    pub transaction_type: String,
    pub amount: Amount,
    pub coupon_discount: Amount,
    pub bonus_redeemed: Amount,
    pub bonus_accrued: Amount,
    /// Whether the bonus rules have been applied (a CRM purchase waits for `bonus_calc`).
    pub bonus_applied: bool,
    /// For a refund: the purchase it refunds.
    #[oai(nullable)]
    pub original_transaction_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

/// A message sent to her (or held, skipped or failed), without the number it went to.
#[derive(Debug, Object)]
pub struct MemberMessageView {
    pub id: Uuid,
    /// `push` or `sms`.
    pub channel: String,
    pub template: String,
    #[oai(nullable)]
    pub title: Option<String>,
    pub body: String,
    /// `sending`, `sent`, `failed`, `scheduled` or `skipped`.
    pub status: String,
    /// Why it failed or was skipped.
    #[oai(nullable)]
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub sent_at: Option<OffsetDateTime>,
}

/// A correction of her balance.
#[derive(Debug, Object)]
pub struct AdjustRequest {
    /// Signed: positive credits her, negative debits her (her balance may go below zero,
    /// which then blocks redemption, as a refund's reversal may).
    pub amount: Amount,
    /// Why: kept in the audit log.
    #[oai(validator(min_length = 1, max_length = 500))]
    pub reason: Text,
}

/// What an adjustment came to.
#[derive(Debug, Object)]
pub struct AdjustmentView {
    /// The `adjustment` ledger entry.
    pub entry_id: Uuid,
    pub user_id: Uuid,
    pub amount: Amount,
    /// Her balance now.
    pub balance: Amount,
    /// True when this `Idempotency-Key` had been used for her before: nothing changed now.
    pub repeated: bool,
}

#[derive(Debug, Object)]
pub struct BlockRequest {
    /// Why: shown to operators and kept in the audit log.
    #[oai(validator(min_length = 1, max_length = 500))]
    pub reason: Text,
}

/// A member's block, after a block or an unblock.
#[derive(Debug, Object)]
pub struct BlockState {
    pub user_id: Uuid,
    pub blocked: bool,
    #[oai(nullable)]
    pub blocked_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub reason: Option<String>,
    /// Her sessions ended by this block (their tokens stop working within a second).
    pub sessions_ended: u64,
}

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;

fn summary(user: User) -> MemberSummary {
    MemberSummary {
        id: user.id,
        phone: domain::phone::mask_phone(&user.phone),
        first_name: user.first_name,
        last_name: user.last_name,
        status_tier: user.status_tier.as_str().to_owned(),
        blocked: user.blocked_at.is_some(),
        created_at: user.created_at,
    }
}

fn block_view(user: &User) -> Option<BlockView> {
    Some(BlockView {
        blocked_at: user.blocked_at?,
        reason: user.blocked_reason.clone().unwrap_or_default(),
    })
}

/// Money in an audit snapshot as the API writes it: a string with two places.
fn money(value: rust_decimal::Decimal) -> serde_json::Value {
    Amount::from(value).to_json().unwrap_or_default()
}

fn no_member() -> ApiError {
    ApiError::not_found("user_not_found", "No such member.")
}

/// The block as the audit log keeps it.
fn block_snapshot(user: &User) -> serde_json::Value {
    json!({"blocked": user.blocked_at.is_some(), "reason": user.blocked_reason})
}

impl SupportApi {
    async fn member_view(&self, user: User) -> Result<MemberView, ApiError> {
        let db = &self.state.db;
        let (roles, balance, coupons, devices) = tokio::try_join!(
            users::roles(db, user.id),
            loyalty::balance(db, user.id),
            support::coupons(db, user.id, COUPONS_SHOWN),
            support::devices(db, user.id),
        )?;
        let blocked = block_view(&user);
        let created_at = user.created_at;
        let profile = user_view(user, &roles);
        Ok(MemberView {
            id: profile.id,
            phone: profile.phone,
            first_name: profile.first_name,
            last_name: profile.last_name,
            email: profile.email,
            status_tier: profile.status_tier,
            roles: profile.roles,
            blocked,
            balance: balance.balance.into(),
            lifetime_earned: balance.lifetime_earned.into(),
            lifetime_spent: balance.lifetime_spent.into(),
            coupons: coupons
                .into_iter()
                .map(|c| MemberCouponView {
                    id: c.id,
                    code: c.code,
                    business_id: c.business_id,
                    discount_type: c.discount_type.as_str().to_owned(),
                    discount_value: c.discount_value.into(),
                    expires_at: c.expires_at,
                    redeemed_at: c.redeemed_at,
                    expired_at: c.expired_at,
                    source_chain_id: c.source_chain_id,
                    created_at: c.created_at,
                })
                .collect(),
            devices: devices
                .into_iter()
                .map(|d| MemberDeviceView {
                    id: d.id,
                    platform: d.platform.as_str().to_owned(),
                    created_at: d.created_at,
                    last_seen_at: d.last_seen_at,
                })
                .collect(),
            created_at,
        })
    }

    async fn existing(&self, id: Uuid) -> Result<User, ApiError> {
        users::get(&self.state.db, id).await?.ok_or_else(no_member)
    }

    /// Blocks (`Some(reason)`) or unblocks a member, ending her sessions on a block.
    async fn set_block(
        &self,
        actor: &crate::jwt::Claims,
        id: Uuid,
        reason: Option<String>,
        unblock_reason: Option<String>,
    ) -> Result<BlockState, ApiError> {
        let state = &self.state;
        if reason.is_some() && actor.user_id() == id {
            return Err(ApiError::unprocessable(
                "cannot_block_self",
                "An operator cannot block herself.",
            ));
        }
        let mut tx = state.db.begin().await?;
        let before = users::get_for_update(&mut *tx, id)
            .await?
            .ok_or_else(no_member)?;
        if !actor.is_superadmin() {
            let target_roles = users::roles(&state.db, id).await?;
            if target_roles
                .iter()
                .any(|r| matches!(r, users::Role::Platform(_)))
            {
                return Err(ApiError::forbidden(
                    "Only a superadmin blocks or unblocks an operator.",
                ));
            }
        }
        let after = users::set_blocked(&mut *tx, id, reason.as_deref())
            .await?
            .ok_or_else(no_member)?;
        let sessions = if reason.is_some() {
            storage::tokens::revoke_all(&mut *tx, id).await?
        } else {
            Vec::new()
        };
        let action = if reason.is_some() {
            "member.block"
        } else {
            "member.unblock"
        };
        audit::record(
            &mut *tx,
            actor.user_id(),
            Change::new(action, "user", id)
                .before_value(block_snapshot(&before))
                .after_value(match &unblock_reason {
                    Some(why) => json!({"blocked": false, "reason": null, "unblock_reason": why}),
                    None => block_snapshot(&after),
                }),
        )
        .await?;
        tx.commit().await?;
        if reason.is_some() {
            // Every token she holds ends here and on every API process within a second;
            // her tokens then answer 403 `member_blocked` (`auth::check_bearer`).
            crate::sessions::end(&state.revoked, &state.cache, &sessions).await?;
            tracing::info!(user_id = %id, sessions = sessions.len(), "member blocked");
        } else {
            tracing::info!(user_id = %id, "member unblocked");
        }
        Ok(BlockState {
            user_id: id,
            blocked: after.blocked_at.is_some(),
            blocked_at: after.blocked_at,
            reason: after.blocked_reason,
            sessions_ended: sessions.len() as u64,
        })
    }
}

#[OpenApi(prefix_path = "/admin/users", tag = "Tag::Support")]
impl SupportApi {
    /// Find a member by phone (any common Russian form). Phones in the list are masked.
    #[oai(path = "/", method = "get")]
    async fn find(
        &self,
        _operator: Operator,
        #[oai(validator(max_length = 32))] phone: Query<String>,
    ) -> ApiResult<Json<Envelope<MemberList>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }> {
        let phone = PhoneNumber::parse(&phone.0)
            .map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))?;
        let found = users::search_by_phone(&self.state.db, &phone).await?;
        Ok(Json(Envelope::new(MemberList {
            items: found.into_iter().map(summary).collect(),
        })))
    }

    /// One member: profile, roles, block, balance and tier, coupons and devices.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _operator: Operator,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<MemberView>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND }> {
        let user = self.existing(id.0).await?;
        Ok(Json(Envelope::new(self.member_view(user).await?)))
    }

    /// Her bonus ledger, newest first.
    #[oai(path = "/:id/ledger", method = "get")]
    async fn ledger(
        &self,
        _operator: Operator,
        id: Path<Uuid>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<
        Json<Envelope<Page<LedgerEntryView>>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | UNPROCESSABLE },
    > {
        let user = self.existing(id.0).await?;
        let page = loyalty::ledger_page(
            &self.state.db,
            user.id,
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        )
        .await?;
        Ok(Json(Envelope::new(Page {
            items: page.items.into_iter().map(LedgerEntryView::from).collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Her purchases and refunds, newest first (medical ones without what they were for).
    #[oai(path = "/:id/transactions", method = "get")]
    async fn transactions(
        &self,
        _operator: Operator,
        id: Path<Uuid>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<
        Json<Envelope<Page<MemberTransactionView>>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | UNPROCESSABLE },
    > {
        let user = self.existing(id.0).await?;
        let page = loyalty::transactions_page(
            &self.state.db,
            user.id,
            loyalty::HistoryFilter::default(),
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        )
        .await?;
        Ok(Json(Envelope::new(Page {
            items: page
                .items
                .into_iter()
                .map(|t| MemberTransactionView {
                    id: t.id,
                    business_id: t.business_id,
                    is_medical: t.is_medical,
                    transaction_type: t.transaction_type.as_str().to_owned(),
                    amount: t.amount.into(),
                    coupon_discount: t.coupon_discount.into(),
                    bonus_redeemed: t.bonus_redeemed.into(),
                    bonus_accrued: t.bonus_accrued.into(),
                    bonus_applied: t.bonus_applied,
                    original_transaction_id: t.original_transaction_id,
                    created_at: t.created_at,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// The messages sent to her (push and SMS, sent, held, skipped or failed), newest first.
    #[oai(path = "/:id/messages", method = "get")]
    async fn messages(
        &self,
        _operator: Operator,
        id: Path<Uuid>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<
        Json<Envelope<Page<MemberMessageView>>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | UNPROCESSABLE },
    > {
        let user = self.existing(id.0).await?;
        let page = support::messages_page(
            &self.state.db,
            user.id,
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        )
        .await?;
        Ok(Json(Envelope::new(Page {
            items: page
                .items
                .into_iter()
                .map(|m| MemberMessageView {
                    id: m.id,
                    channel: m.channel.as_str().to_owned(),
                    template: m.template,
                    title: m.title,
                    body: m.body,
                    status: m.status.as_str().to_owned(),
                    error: m.error,
                    created_at: m.created_at,
                    sent_at: m.sent_at,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Correct her balance (superadmin): one signed `adjustment` ledger entry, funded by the
    /// operator. `Idempotency-Key` is required: a request repeated with the same key changes
    /// nothing and answers the entry it made (`repeated: true`); the same key with another
    /// amount is 409 `idempotency_key_reused`.
    #[oai(path = "/:id/adjust", method = "post")]
    async fn adjust(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: Json<AdjustRequest>,
    ) -> ApiResult<
        Json<Envelope<AdjustmentView>>,
        { SIGNED_IN | JSON_BODY | NOT_FOUND | CONFLICT | UNPROCESSABLE },
    > {
        let state = &self.state;
        let key = idempotency_key
            .0
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "idempotency_key_required",
                    "Send an Idempotency-Key header (1 to 200 characters) with an adjustment.",
                )
            })?;
        let amount = body.amount.value();
        let magnitude = positive_money(amount.abs(), "amount")?.amount();
        let amount = if amount.is_sign_negative() {
            -magnitude
        } else {
            magnitude
        };
        let reason = body.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_reason",
                "Say why the balance is corrected.",
            )
            .into());
        }
        let user = self.existing(id.0).await?;
        // Keys are the member's: the same key for two members is two adjustments.
        let ledger_key = format!("adjustment:{}:{key}", user.id);
        let mut tx = state.db.begin().await?;
        let view = match ledger::adjust(&mut tx, user.id, amount, &ledger_key).await? {
            Adjusted::Repeated {
                entry_id,
                amount: written,
                balance,
            } => {
                if written != amount {
                    return Err(ApiError::conflict(
                        "idempotency_key_reused",
                        "This Idempotency-Key was used for an adjustment of another amount.",
                    )
                    .into());
                }
                AdjustmentView {
                    entry_id,
                    user_id: user.id,
                    amount: written.into(),
                    balance: balance.into(),
                    repeated: true,
                }
            }
            Adjusted::Applied {
                entry_id,
                balance_before,
                balance,
            } => {
                audit::record(
                    &mut *tx,
                    superadmin.user_id(),
                    Change::new("member.adjust", "user", user.id)
                        .before_value(json!({"balance": money(balance_before)}))
                        .after_value(json!({
                            "balance": money(balance),
                            "amount": money(amount),
                            "reason": reason,
                            "ledger_entry_id": entry_id,
                            "idempotency_key": key,
                        })),
                )
                .await?;
                AdjustmentView {
                    entry_id,
                    user_id: user.id,
                    amount: amount.into(),
                    balance: balance.into(),
                    repeated: false,
                }
            }
        };
        tx.commit().await?;
        if !view.repeated {
            state.balances.forget([user.id]);
            state.cache.balances_changed([user.id]).await;
            tracing::info!(user_id = %user.id, entry_id = %view.entry_id, "balance adjusted");
        }
        Ok(Json(Envelope::new(view)))
    }

    /// Block her (superadmin or moderator): she cannot sign in, scan or register for events
    /// (403 `member_blocked`), her sessions end at once, and scans she sent that are still
    /// queued are refused. Blocking a blocked member changes only the reason.
    #[oai(path = "/:id/block", method = "post")]
    async fn block(
        &self,
        operator: Operator,
        id: Path<Uuid>,
        body: Json<BlockRequest>,
    ) -> ApiResult<Json<Envelope<BlockState>>, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }>
    {
        let reason = body.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_reason",
                "Say why the member is blocked.",
            )
            .into());
        }
        let state = self
            .set_block(&operator.0, id.0, Some(reason), None)
            .await?;
        Ok(Json(Envelope::new(state)))
    }

    /// Unblock her: she may sign in again (her old sessions stay ended). The body is
    /// optional: `{"reason": "…"}` (up to 500 characters) is kept in the audit log beside the
    /// block's own reason.
    #[oai(path = "/:id/unblock", method = "post")]
    async fn unblock(
        &self,
        operator: Operator,
        id: Path<Uuid>,
        body: poem::Body,
    ) -> ApiResult<
        Json<Envelope<BlockState>>,
        { SIGNED_IN | BAD_REQUEST | PAYLOAD_TOO_LARGE | NOT_FOUND | UNPROCESSABLE },
    > {
        let reason = unblock_reason(body).await?;
        let state = self.set_block(&operator.0, id.0, None, reason).await?;
        Ok(Json(Envelope::new(state)))
    }
}

/// The optional `{"reason": "…"}` of an unblock (DESIGN.md gives the route no body, so none
/// is required).
async fn unblock_reason(body: poem::Body) -> Result<Option<String>, ApiError> {
    let bytes = body
        .into_bytes()
        .await
        .map_err(|_| ApiError::bad_request("bad_request", "The request could not be read."))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let invalid = || {
        ApiError::unprocessable(
            "invalid_reason",
            "The body, if any, is {\"reason\": \"…\"} with up to 500 characters.",
        )
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match value.get("reason") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(r)) if r.chars().count() <= 500 => {
            Ok(Some(r.trim().to_owned()).filter(|r| !r.is_empty()))
        }
        Some(_) => Err(invalid()),
    }
}
