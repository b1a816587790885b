//! `/business/…`: what partners do for their own business — staff, refunds at the counter,
//! their purchases. Roles (DESIGN.md): an owner does everything, staff issue QR codes and
//! give refunds up to the business's `staff_refund_limit`, a viewer reads the dashboard.
//! Every answer is about the caller's own business only.

use crate::{
    audit::{self, Change},
    auth::Auth,
    envelope::{Envelope, Page},
    error::{
        ApiError, ApiResult, BAD_REQUEST, CONFLICT, JSON_BODY, NOT_FOUND, SIGNED_IN, UNPROCESSABLE,
    },
    routes::{page_limit, parse_cursor, positive_money},
    state::AppState,
    wire::{Amount, StaffRole, Text},
};
use domain::local_time::local_date;
use domain::{
    PhoneNumber,
    loyalty::TransactionType,
    phone::mask_phone,
    roles::{self, Right},
};
use poem_openapi::{
    Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::Json,
};
use rust_decimal::Decimal;
use std::sync::Arc;
use storage::{
    businesses, dashboard,
    ledger::{self, CounterRefund, RefundRefusal},
    partners::{self, TransactionFilter},
    users,
};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Partners: their own business.
    Partner,
}

pub struct PartnerApi {
    pub state: Arc<AppState>,
}

/// The business a request acts for and the caller's role there: `business_id` when given
/// (the caller must hold a role there that allows `right`), otherwise the one business
/// where the caller does.
pub async fn acting_for(
    state: &AppState,
    auth: &Auth,
    business_id: Option<Uuid>,
    right: Right,
) -> Result<(Uuid, roles::StaffRole), ApiError> {
    let roles = businesses::roles_of(&state.db, auth.user_id()).await?;
    let mut allowed = roles.into_iter().filter(|(_, role)| role.allows(right));
    match business_id {
        Some(id) => allowed
            .find(|(b, _)| *b == id)
            .ok_or_else(|| ApiError::forbidden("Your role at this business does not allow this.")),
        None => match (allowed.next(), allowed.next()) {
            (None, _) => Err(ApiError::forbidden(
                "No business of yours gives you a role that allows this.",
            )),
            (Some(only), None) => Ok(only),
            (Some(_), Some(_)) => Err(ApiError::unprocessable(
                "business_required",
                "You are on the staff of several businesses: say which one (business_id).",
            )),
        },
    }
}

#[derive(Debug, Object)]
pub struct StaffMemberView {
    pub user_id: Uuid,
    pub phone: String,
    #[oai(nullable)]
    pub first_name: Option<String>,
    #[oai(nullable)]
    pub last_name: Option<String>,
    /// `owner`, `staff` or `viewer`.
    pub role: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Object)]
pub struct StaffList {
    pub business_id: Uuid,
    pub items: Vec<StaffMemberView>,
}

#[derive(Debug, Object)]
pub struct PutStaff {
    #[oai(validator(max_length = 32))]
    pub phone: Text,
    pub role: StaffRole,
    /// Needed only by owners of several businesses.
    #[oai(nullable)]
    pub business_id: Option<Uuid>,
}

#[derive(Debug, Object)]
pub struct StaffChange {
    pub business_id: Uuid,
    pub user_id: Uuid,
    /// The role now held; absent once removed.
    #[oai(nullable)]
    pub role: Option<String>,
    /// The role held before; absent for a newcomer.
    #[oai(nullable)]
    pub previous_role: Option<String>,
}

#[derive(Debug, Object)]
pub struct RefundRequest {
    /// Roubles to refund; all that is left of the purchase when absent.
    #[oai(nullable)]
    pub amount: Option<Amount>,
    /// Why (kept with the refund and in the audit log).
    #[oai(validator(min_length = 1, max_length = 500))]
    pub reason: Text,
}

/// A refund given at the counter.
#[derive(Debug, Object)]
pub struct RefundView {
    /// The refund's own transaction.
    pub id: Uuid,
    /// The purchase refunded.
    pub purchase_id: Uuid,
    pub business_id: Uuid,
    pub amount: Amount,
    /// The cashback taken back from the member.
    pub bonus_reversed: Amount,
    /// The bonuses she paid with, given back.
    pub bonus_returned: Amount,
    pub reason: String,
    pub created_at: OffsetDateTime,
}

fn refund_view(r: ledger::Refund) -> RefundView {
    RefundView {
        id: r.id,
        purchase_id: r.purchase_id,
        business_id: r.business_id,
        amount: r.amount.into(),
        bonus_reversed: r.bonus_reversed.into(),
        bonus_returned: r.bonus_returned.into(),
        reason: r.reason,
        created_at: r.created_at,
    }
}

/// A purchase or refund at the business.
#[derive(Debug, Object)]
pub struct BusinessTransactionView {
    pub id: Uuid,
    /// The member's phone, masked.
    pub member_phone: String,
    /// `purchase` or `refund`.
    pub transaction_type: String,
    /// `qr`, `crm` or `counter` (a refund given here).
    pub source: String,
    pub amount: Amount,
    pub coupon_discount: Amount,
    pub bonus_redeemed: Amount,
    pub bonus_accrued: Amount,
    /// For purchases: refunded so far.
    pub refunded: Amount,
    #[oai(nullable)]
    pub original_transaction_id: Option<Uuid>,
    #[oai(nullable)]
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
}

/// The longest range the dashboard reads at once: a year, leap day included.
const MAX_DASHBOARD_DAYS: i64 = 366;

/// One local day of the dashboard (every day of the range is listed, quiet ones as zeros).
#[derive(Debug, Object)]
pub struct DashboardDay {
    /// The local date in `KRUG_TIMEZONE`.
    pub date: Date,
    /// Σ of the check amounts of the purchases that happened that day.
    pub sales: Amount,
    /// Purchases that happened that day.
    pub purchases: i64,
    /// Σ of the refunds given that day (at the counter or reported by the CRM).
    pub refunds: Amount,
    /// Cashback the day's purchases earned.
    pub bonus_issued: Amount,
    /// Bonuses members paid the day's purchases with.
    pub bonus_redeemed: Amount,
    /// The day's purchases paid with a coupon.
    pub coupons_used: i64,
}

/// What happened at the business from `from` to `to` (local dates in `KRUG_TIMEZONE`, both
/// included), by when each purchase happened (a CRM purchase: the CRM's own time). Only
/// this business's own purchases, refunds and coupons are counted.
#[derive(Debug, Object)]
pub struct DashboardView {
    pub business_id: Uuid,
    pub from: Date,
    pub to: Date,
    /// Σ of the check amounts of the purchases (before bonuses and coupons; refunds not
    /// deducted, see `refunds`).
    pub sales: Amount,
    /// Number of purchases.
    pub purchases: i64,
    /// Σ of the refunds given in the range, whenever their purchases were made.
    pub refunds: Amount,
    /// Distinct members with at least one purchase.
    pub members: i64,
    /// Members whose first purchase at this business ever falls in the range.
    pub new_members: i64,
    /// Cashback the purchases earned, held (pending) or already spendable; refunds'
    /// reversals not deducted. Settlement statements count ledger entries by when they were
    /// written instead, bonus coupons included, so the two can differ.
    pub bonus_issued: Amount,
    /// Bonuses members paid the purchases with.
    pub bonus_redeemed: Amount,
    /// Coupons valid at this business issued in the range (by promo chains).
    pub coupons_issued: i64,
    /// Purchases paid with a coupon.
    pub coupons_used: i64,
    /// Purchases paid with a cross-promo coupon: one issued by a chain targeting this
    /// business and triggered by purchases elsewhere (another business, or a category) —
    /// members who came through another partner. Win-back coupons (churn risk) and chains
    /// triggered by this business itself are not counted.
    pub promo_arrivals: i64,
    /// Every day of the range, in order.
    pub by_day: Vec<DashboardDay>,
}

#[OpenApi(prefix_path = "/business", tag = "Tag::Partner")]
impl PartnerApi {
    /// The business's staff (owners).
    #[oai(path = "/staff", method = "get")]
    async fn staff(
        &self,
        auth: Auth,
        business_id: Query<Option<Uuid>>,
    ) -> ApiResult<Json<Envelope<StaffList>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }> {
        let (business_id, _) = acting_for(&self.state, &auth, business_id.0, Right::Manage).await?;
        let staff = businesses::list_staff(&self.state.db, business_id).await?;
        Ok(Json(Envelope::new(StaffList {
            business_id,
            items: staff
                .into_iter()
                .map(|s| StaffMemberView {
                    user_id: s.user_id,
                    phone: s.phone,
                    first_name: s.first_name,
                    last_name: s.last_name,
                    role: s.role.as_str().to_owned(),
                    created_at: s.created_at,
                })
                .collect(),
        })))
    }

    /// Add a person to the staff (the user is created if new) or change their role (owners).
    #[oai(path = "/staff", method = "post")]
    async fn put_staff(
        &self,
        auth: Auth,
        body: Json<PutStaff>,
    ) -> ApiResult<Json<Envelope<StaffChange>>, { SIGNED_IN | JSON_BODY | CONFLICT | UNPROCESSABLE }>
    {
        let state = &self.state;
        let (business_id, _) = acting_for(state, &auth, body.business_id, Right::Manage).await?;
        let phone = PhoneNumber::parse(&body.phone)
            .map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))?;
        let role = body.role.0;
        let mut tx = state.db.begin().await?;
        let owners = businesses::lock_owners(&mut *tx, business_id).await?;
        let user = users::find_or_create(&mut *tx, &phone).await?;
        let before = businesses::staff_role(&mut *tx, business_id, user.id).await?;
        if owners == [user.id] && role != roles::StaffRole::Owner {
            return Err(last_owner().into());
        }
        businesses::put_staff(&mut *tx, business_id, user.id, role).await?;
        audit::record(
            &mut *tx,
            auth.user_id(),
            staff_change("staff.put", business_id, user.id, before, Some(role)),
        )
        .await?;
        tx.commit().await?;
        Ok(Json(Envelope::new(StaffChange {
            business_id,
            user_id: user.id,
            role: Some(role.as_str().to_owned()),
            previous_role: before.map(|role| role.as_str().to_owned()),
        })))
    }

    /// Take a person off the staff (owners). The QR codes they issued and nobody has used
    /// stop working at once.
    #[oai(path = "/staff/:user_id", method = "delete")]
    async fn remove_staff(
        &self,
        auth: Auth,
        user_id: Path<Uuid>,
        business_id: Query<Option<Uuid>>,
    ) -> ApiResult<
        Json<Envelope<StaffChange>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT | UNPROCESSABLE },
    > {
        let state = &self.state;
        let (business_id, _) = acting_for(state, &auth, business_id.0, Right::Manage).await?;
        let removed = take_off_staff(state, auth.user_id(), business_id, user_id.0).await?;
        Ok(Json(Envelope::new(removed)))
    }

    /// The business's dashboard (owners and viewers): sales, purchases, members, bonuses and
    /// coupons from `from` to `to` (local dates in `KRUG_TIMEZONE`, both included; by
    /// default this month so far), with every day of the range. At most 366 days at once.
    #[oai(path = "/dashboard", method = "get")]
    async fn dashboard(
        &self,
        auth: Auth,
        business_id: Query<Option<Uuid>>,
        from: Query<Option<Date>>,
        to: Query<Option<Date>>,
    ) -> ApiResult<Json<Envelope<DashboardView>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }> {
        let state = &self.state;
        let (business_id, _) = acting_for(state, &auth, business_id.0, Right::Dashboard).await?;
        let tz = state.timezone;
        let to = to.0.unwrap_or_else(|| local_date(tz, state.clock.now()));
        let from = from.0.unwrap_or_else(|| to.replace_day(1).unwrap_or(to));
        if from > to {
            return Err(
                ApiError::unprocessable("invalid_range", "from must not be after to").into(),
            );
        }
        let days = (to - from).whole_days() + 1;
        if days > MAX_DASHBOARD_DAYS {
            return Err(ApiError::unprocessable(
                "range_too_long",
                format!("the dashboard covers at most {MAX_DASHBOARD_DAYS} days at once"),
            )
            .into());
        }
        let figures =
            state
                .history
                .read(|db| async move {
                    dashboard::dashboard(&db, business_id, from, to, tz.name()).await
                })
                .await?;
        let by_day: Vec<DashboardDay> = figures
            .days
            .into_iter()
            .map(|d| DashboardDay {
                date: d.day,
                sales: d.sales.into(),
                purchases: d.purchases,
                refunds: d.refunds.into(),
                bonus_issued: d.bonus_issued.into(),
                bonus_redeemed: d.bonus_redeemed.into(),
                coupons_used: d.coupons_used,
            })
            .collect();
        let total = |f: fn(&DashboardDay) -> Decimal| by_day.iter().map(f).sum::<Decimal>();
        Ok(Json(Envelope::new(DashboardView {
            business_id,
            from,
            to,
            sales: total(|d| d.sales.0).into(),
            purchases: by_day.iter().map(|d| d.purchases).sum(),
            refunds: total(|d| d.refunds.0).into(),
            members: figures.members,
            new_members: figures.new_members,
            bonus_issued: total(|d| d.bonus_issued.0).into(),
            bonus_redeemed: total(|d| d.bonus_redeemed.0).into(),
            coupons_issued: figures.coupons_issued,
            coupons_used: by_day.iter().map(|d| d.coupons_used).sum(),
            promo_arrivals: figures.promo_arrivals,
            by_day,
        })))
    }

    /// The business's purchases and refunds, newest first (owners and staff). `code` finds
    /// the purchase made with a QR code.
    #[oai(path = "/transactions", method = "get")]
    async fn transactions(
        &self,
        auth: Auth,
        business_id: Query<Option<Uuid>>,
        code: Query<Option<String>>,
        #[oai(name = "type")] transaction_type: Query<Option<String>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<
        Json<Envelope<Page<BusinessTransactionView>>>,
        { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE },
    > {
        let (business_id, _) = acting_for(&self.state, &auth, business_id.0, Right::Refund).await?;
        let transaction_type = match transaction_type.0.as_deref() {
            None | Some("") => None,
            Some(t) => Some(t.parse::<TransactionType>().map_err(|_| {
                ApiError::unprocessable("invalid_type", "type is `purchase` or `refund`")
            })?),
        };
        let filter = TransactionFilter {
            code: code
                .0
                .map(|c| c.trim().to_uppercase())
                .filter(|c| !c.is_empty()),
            transaction_type,
        };
        let page = partners::transactions_page(
            &self.state.db,
            business_id,
            &filter,
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        )
        .await?;
        Ok(Json(Envelope::new(Page {
            items: page
                .items
                .into_iter()
                .map(|t| BusinessTransactionView {
                    id: t.id,
                    member_phone: mask_phone(&t.phone),
                    transaction_type: t.transaction_type.as_str().to_owned(),
                    source: t.source,
                    amount: t.amount.into(),
                    coupon_discount: t.coupon_discount.into(),
                    bonus_redeemed: t.bonus_redeemed.into(),
                    bonus_accrued: t.bonus_accrued.into(),
                    refunded: t.refunded.into(),
                    original_transaction_id: t.original_transaction_id,
                    reason: t.reason,
                    created_at: t.created_at,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Refund a QR purchase at this business, in full or in part (owners; staff up to the
    /// business's `staff_refund_limit`): the cashback of the refunded part is taken back and
    /// the bonuses the member paid with are given back, in the same proportion. Idempotent:
    /// the same `Idempotency-Key` answers the same refund again.
    #[oai(path = "/transactions/:id/refund", method = "post")]
    async fn refund(
        &self,
        auth: Auth,
        id: Path<Uuid>,
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 200))]
        idempotency_key: Header<String>,
        body: Json<RefundRequest>,
    ) -> ApiResult<
        Json<Envelope<RefundView>>,
        { SIGNED_IN | JSON_BODY | NOT_FOUND | CONFLICT | UNPROCESSABLE },
    > {
        let state = &self.state;
        let not_found = || {
            ApiError::not_found(
                "transaction_not_found",
                "No purchase of your business has this id.",
            )
        };
        let business_id = partners::business_of_transaction(&state.db, id.0)
            .await?
            .ok_or_else(not_found)?;
        let role = businesses::staff_role(&state.db, business_id, auth.user_id())
            .await?
            .ok_or_else(not_found)?;
        if !role.allows(Right::Refund) {
            return Err(ApiError::forbidden(
                "Refunds are given by the business's owners and staff.",
            )
            .into());
        }
        let business = businesses::get(&state.db, business_id)
            .await?
            .ok_or_else(not_found)?;
        let amount = body
            .amount
            .map(|a| positive_money(a.value(), "amount").map(|m| m.amount()))
            .transpose()?;
        let mut tx = state.db.begin().await?;
        let refunded = ledger::refund_at_counter(
            &mut tx,
            &CounterRefund {
                id: Uuid::now_v7(),
                business_id,
                purchase_id: id.0,
                amount,
                reason: body.reason.trim(),
                key: &idempotency_key.0,
                refunded_by: auth.user_id(),
                limit: (role != roles::StaffRole::Owner).then_some(business.staff_refund_limit),
            },
        )
        .await?
        .map_err(|refusal| match refusal {
            RefundRefusal::NotFound => not_found(),
            RefundRefusal::OverLimit { .. } => ApiError::forbidden(refusal.to_string()),
            RefundRefusal::FullyRefunded => {
                ApiError::conflict("already_refunded", refusal.to_string())
            }
            RefundRefusal::KeyReused => {
                ApiError::unprocessable("idempotency_key_reused", refusal.to_string())
            }
            RefundRefusal::ExceedsPurchase { .. } => {
                ApiError::unprocessable("refund_exceeds_purchase", refusal.to_string())
            }
            RefundRefusal::FromCrm => ApiError::unprocessable("refund_in_crm", refusal.to_string()),
            other => ApiError::unprocessable("refund_refused", other.to_string()),
        })?;
        let user_id = refunded.refund.user_id;
        let view = refund_view(refunded.refund);
        if refunded.new {
            audit::record(
                &mut *tx,
                auth.user_id(),
                Change::new("refund.create", "transaction", view.id).after(&view),
            )
            .await?;
        }
        tx.commit().await?;
        if refunded.new {
            // This process forgets her view at once; the others hear the announcement.
            state.balances.forget([user_id]);
            state.cache.balances_changed([user_id]).await;
        }
        Ok(Json(Envelope::new(view)))
    }
}

/// Takes `user_id` off the staff of `business_id`, for an owner at her business and for a
/// superadmin (`DELETE /admin/businesses/{id}/staff/{user_id}`) alike: the business keeps at
/// least one owner (409 `last_owner`), the removal is audited in the same transaction, and
/// from the commit on the QR codes the person issued and nobody used are refused (`qr_scan`
/// checks the issuer's role as it processes a scan).
pub(crate) async fn take_off_staff(
    state: &AppState,
    actor: Uuid,
    business_id: Uuid,
    user_id: Uuid,
) -> Result<StaffChange, ApiError> {
    let mut tx = state.db.begin().await?;
    let owners = businesses::lock_owners(&mut *tx, business_id).await?;
    if owners == [user_id] {
        return Err(last_owner());
    }
    let removed = businesses::remove_staff(&mut *tx, business_id, user_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "staff_not_found",
                "This person is not on the business's staff.",
            )
        })?;
    audit::record(
        &mut *tx,
        actor,
        staff_change("staff.remove", business_id, user_id, Some(removed), None),
    )
    .await?;
    tx.commit().await?;
    Ok(StaffChange {
        business_id,
        user_id,
        role: None,
        previous_role: Some(removed.as_str().to_owned()),
    })
}

fn last_owner() -> ApiError {
    ApiError::conflict(
        "last_owner",
        "A business keeps at least one owner: name another owner first.",
    )
}

/// A staff change as the audit log keeps it.
fn staff_change(
    action: &'static str,
    business_id: Uuid,
    user_id: Uuid,
    before: Option<roles::StaffRole>,
    after: Option<roles::StaffRole>,
) -> Change {
    let snapshot = |role: roles::StaffRole| serde_json::json!({"business_id": business_id, "role": role.as_str()});
    let mut change = Change::new(action, "user", user_id);
    if let Some(before) = before {
        change = change.before_value(snapshot(before));
    }
    if let Some(after) = after {
        change = change.after_value(snapshot(after));
    }
    change
}
