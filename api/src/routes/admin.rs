//! `/admin`: operators (superadmin, moderator) manage partner businesses and their staff.

use crate::{
    audit::{self, Change},
    auth::Superadmin,
    envelope::Envelope,
    error::{ApiError, ApiResult},
    routes::business::{BusinessView, business_view},
    state::AppState,
    wire::Amount,
    wire::Text,
};
use domain::PhoneNumber;
use jobs::{
    handlers::{crm::PollCrm, retention::business_became_medical},
    outbox,
};
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags, param::Path, payload::Json, types::MaybeUndefined,
};
use rust_decimal::{Decimal, prelude::ToPrimitive};
use serde_json::Value;
use std::sync::Arc;
use storage::{
    businesses::{self, BusinessPatch, NewBusiness},
    users,
};
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: partner businesses.
    Admin,
}

pub struct AdminApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum CategoryName {
    Beauty,
    Wellness,
    Gastronomy,
    Health,
}

impl CategoryName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Beauty => "beauty",
            Self::Wellness => "wellness",
            Self::Gastronomy => "gastronomy",
            Self::Health => "health",
        }
    }
}

#[derive(Debug, Clone, Copy, Enum)]
pub enum CrmType {
    #[oai(rename = "yclients")]
    Yclients,
    #[oai(rename = "iiko")]
    Iiko,
    #[oai(rename = "1c")]
    OneC,
    #[oai(rename = "amo_crm")]
    AmoCrm,
    #[oai(rename = "renovatio")]
    Renovatio,
}

impl CrmType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Yclients => "yclients",
            Self::Iiko => "iiko",
            Self::OneC => "1c",
            Self::AmoCrm => "amo_crm",
            Self::Renovatio => "renovatio",
        }
    }

    /// The credential fields each CRM needs (DESIGN.md).
    fn required_credentials(self) -> &'static [&'static str] {
        match self {
            Self::Yclients => &["partner_token", "user_token", "company_id"],
            Self::Iiko => &["api_login", "organization_id"],
            Self::OneC => &["username", "password"],
            Self::AmoCrm => &["access_token"],
            Self::Renovatio => &["api_key", "clinic_id"],
        }
    }
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum StaffRole {
    Owner,
    Staff,
    Viewer,
}

#[derive(Debug, Object)]
pub struct CreateBusiness {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Text,
    pub category: CategoryName,
    pub cashback_percent: Amount,
    /// Default 30.
    #[oai(nullable)]
    pub max_redeem_percent: Option<Amount>,
    /// Medical businesses never reach analytics or cross-promo. Default false.
    #[oai(nullable)]
    pub is_medical: Option<bool>,
    #[oai(nullable)]
    pub crm_type: Option<CrmType>,
    #[oai(validator(max_length = 500))]
    #[oai(nullable)]
    pub crm_base_url: Option<Text>,
    /// By `crm_type` — yclients: `partner_token`, `user_token`, `company_id`; iiko:
    /// `api_login`, `organization_id`; 1c: `username`, `password`, `document`; amo_crm:
    /// `access_token`; renovatio: `api_key`, `clinic_id`. Stored encrypted, never returned.
    #[oai(nullable)]
    pub crm_credentials: Option<Value>,
}

#[derive(Debug, Object)]
pub struct UpdateBusiness {
    #[oai(validator(min_length = 1, max_length = 200))]
    #[oai(nullable)]
    pub name: Option<Text>,
    #[oai(nullable)]
    pub category: Option<CategoryName>,
    #[oai(nullable)]
    pub cashback_percent: Option<Amount>,
    #[oai(nullable)]
    pub max_redeem_percent: Option<Amount>,
    #[oai(nullable)]
    pub is_medical: Option<bool>,
    #[oai(nullable)]
    pub is_active: Option<bool>,
    /// `null` disconnects the CRM.
    #[oai(nullable)]
    pub crm_type: MaybeUndefined<CrmType>,
    #[oai(validator(max_length = 500))]
    #[oai(nullable)]
    pub crm_base_url: MaybeUndefined<Text>,
    #[oai(nullable)]
    pub crm_credentials: MaybeUndefined<Value>,
}

#[derive(ApiResponse)]
pub enum CreatedBusiness {
    #[oai(status = 201)]
    Created(Json<Envelope<BusinessView>>),
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum DiscountTypeName {
    Percent,
    Fixed,
    Bonus,
}

/// A cross-promo rule: a purchase matching the trigger issues a coupon at the target. A
/// win-back chain is triggered instead by the nightly RFM snapshot: members whose churn
/// risk newly reached `trigger_churn_risk` get its coupon.
#[derive(Debug, Object)]
pub struct CreatePromoChain {
    /// The trigger, one of three: one business, every business of a category, or a churn
    /// risk (0.001–1).
    #[oai(nullable)]
    pub trigger_business_id: Option<Uuid>,
    #[oai(nullable)]
    pub trigger_category: Option<CategoryName>,
    #[oai(nullable)]
    pub trigger_churn_risk: Option<f64>,
    /// Smallest purchase that triggers it. Default 0.
    #[oai(nullable)]
    pub min_amount: Option<Amount>,
    pub target_business_id: Uuid,
    pub discount_type: DiscountTypeName,
    /// Percent (1–100), roubles, or bonuses.
    pub discount_value: Amount,
    /// How long a coupon is valid, days (1–365).
    pub valid_days: i32,
    /// No new coupon of this chain for the same member within this many days. Default 0.
    #[oai(nullable)]
    pub cooldown_days: Option<i32>,
}

#[derive(Debug, Object)]
pub struct PromoChainView {
    pub id: Uuid,
    #[oai(nullable)]
    pub trigger_business_id: Option<Uuid>,
    #[oai(nullable)]
    pub trigger_category: Option<String>,
    #[oai(nullable)]
    pub trigger_churn_risk: Option<f64>,
    pub min_amount: Amount,
    pub target_business_id: Uuid,
    pub discount_type: String,
    pub discount_value: Amount,
    pub valid_days: i32,
    pub cooldown_days: i32,
    pub is_active: bool,
}

#[derive(ApiResponse)]
pub enum CreatedPromoChain {
    #[oai(status = 201)]
    Created(Json<Envelope<PromoChainView>>),
}

#[derive(Debug, Object)]
pub struct PollQueued {
    /// The `crm_poll` job.
    pub job_id: Uuid,
}

#[derive(ApiResponse)]
pub enum PollAccepted {
    /// The poll is queued.
    #[oai(status = 202)]
    Accepted(Json<Envelope<PollQueued>>),
}

#[derive(Debug, Object)]
pub struct AddStaff {
    #[oai(validator(max_length = 32))]
    pub phone: Text,
    pub role: StaffRole,
}

#[derive(Debug, Object)]
pub struct StaffView {
    pub business_id: Uuid,
    pub user_id: Uuid,
    pub phone: String,
    pub role: String,
}

#[derive(ApiResponse)]
pub enum AddedStaff {
    #[oai(status = 201)]
    Created(Json<Envelope<StaffView>>),
}

fn percent(value: Decimal, field: &str) -> Result<Decimal, ApiError> {
    if value < Decimal::ZERO || value > Decimal::ONE_HUNDRED || value.normalize().scale() > 2 {
        return Err(ApiError::unprocessable(
            "invalid_percent",
            format!("{field} must be between 0 and 100 with at most two decimals"),
        ));
    }
    Ok(value.round_dp(2))
}

fn base_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.len() < 10
        || url.contains(char::is_whitespace)
    {
        return Err(ApiError::unprocessable(
            "invalid_url",
            "crm_base_url must be an http(s) URL",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn credentials(crm_type: CrmType, value: &Value) -> Result<Value, ApiError> {
    let Some(object) = value.as_object() else {
        return Err(ApiError::unprocessable(
            "invalid_credentials",
            "crm_credentials must be an object",
        ));
    };
    for field in crm_type.required_credentials() {
        let present = match object.get(*field) {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Number(_)) => true,
            _ => false,
        };
        if !present {
            return Err(ApiError::unprocessable(
                "invalid_credentials",
                format!(
                    "crm_credentials.{field} is required for {}",
                    crm_type.as_str()
                ),
            ));
        }
    }
    Ok(value.clone())
}

#[OpenApi(prefix_path = "/admin", tag = "Tag::Admin")]
impl AdminApi {
    /// Add a partner business, with its CRM connection.
    #[oai(path = "/businesses", method = "post")]
    async fn create_business(
        &self,
        superadmin: Superadmin,
        body: Json<CreateBusiness>,
    ) -> ApiResult<CreatedBusiness> {
        let body = body.0;
        let (crm_base_url, crm_credentials) = match body.crm_type {
            None => (None, None),
            Some(crm) => {
                let url = body.crm_base_url.as_deref().ok_or_else(|| {
                    ApiError::unprocessable("invalid_url", "crm_base_url is required with crm_type")
                })?;
                let creds = body.crm_credentials.as_ref().ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_credentials",
                        "crm_credentials are required with crm_type",
                    )
                })?;
                (Some(base_url(url)?), Some(credentials(crm, creds)?))
            }
        };
        let new = NewBusiness {
            name: body.name.trim().to_owned(),
            category: body.category.as_str().to_owned(),
            cashback_percent: percent(body.cashback_percent.value(), "cashback_percent")?,
            max_redeem_percent: percent(
                body.max_redeem_percent
                    .map_or(Decimal::from(30), Amount::value),
                "max_redeem_percent",
            )?,
            is_medical: body.is_medical.unwrap_or(false),
            crm_type: body.crm_type.map(|c| c.as_str().to_owned()),
            crm_base_url,
            crm_credentials,
        };
        let mut tx = self.state.db.begin().await?;
        let business =
            business_view(businesses::create(&mut *tx, &self.state.secrets, &new).await?);
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("business.create", "business", business.id).after(&business),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(business_id = %business.id, "business created");
        Ok(CreatedBusiness::Created(Json(Envelope::new(business))))
    }

    /// Change a partner business. Credentials are replaced whole, never merged or returned.
    #[oai(path = "/businesses/:id", method = "patch")]
    async fn update_business(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        body: Json<UpdateBusiness>,
    ) -> ApiResult<Json<Envelope<BusinessView>>> {
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let current = businesses::get_for_update(&mut *tx, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        let body = body.0;
        if current.is_medical && body.is_medical == Some(false) {
            // Medical secrecy covers the visits already made: no operator may lift it.
            return Err(ApiError::unprocessable(
                "medical_flag_permanent",
                "A medical business stays medical: the flag cannot be cleared.",
            ));
        }
        let crm_type = match &body.crm_type {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(crm) => Some(Some(*crm)),
        };
        // Credentials are checked against the CRM type they will be used with.
        let effective_crm = match crm_type {
            Some(crm) => crm,
            None => current.crm_type.as_deref().and_then(|name| match name {
                "yclients" => Some(CrmType::Yclients),
                "iiko" => Some(CrmType::Iiko),
                "1c" => Some(CrmType::OneC),
                "amo_crm" => Some(CrmType::AmoCrm),
                "renovatio" => Some(CrmType::Renovatio),
                _ => None,
            }),
        };
        let crm_credentials = match &body.crm_credentials {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(value) => {
                let crm = effective_crm.ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_credentials",
                        "set crm_type before crm_credentials",
                    )
                })?;
                Some(Some(credentials(crm, value)?))
            }
        };
        let crm_base_url = match &body.crm_base_url {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(url) => Some(Some(base_url(url)?)),
        };
        let patch = BusinessPatch {
            name: body.name.map(|n| n.trim().to_owned()),
            category: body.category.map(|c| c.as_str().to_owned()),
            cashback_percent: body
                .cashback_percent
                .map(|p| percent(p.value(), "cashback_percent"))
                .transpose()?,
            max_redeem_percent: body
                .max_redeem_percent
                .map(|p| percent(p.value(), "max_redeem_percent"))
                .transpose()?,
            is_medical: body.is_medical,
            is_active: body.is_active,
            crm_type: crm_type.map(|c| c.map(|c| c.as_str().to_owned())),
            crm_base_url,
            crm_credentials,
        };
        let business = businesses::update(&mut *tx, &state.secrets, id.0, &patch)
            .await?
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        let mut follow_ups = Vec::new();
        if business.is_medical && !current.is_medical {
            follow_ups.push(business_became_medical(&mut tx, business.id).await?);
        }
        let business = business_view(business);
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("business.update", "business", business.id)
                .before(&business_view(current))
                .after(&business),
        )
        .await?;
        tx.commit().await?;
        if let Err(e) = outbox::relay(&state.db, &state.queue, &follow_ups).await {
            tracing::warn!(error = %e, "medical facts purge recorded but not relayed");
        }
        Ok(Json(Envelope::new(business)))
    }

    /// Add a staff member to a business (the user is created if new), or change their role.
    #[oai(path = "/businesses/:id/staff", method = "post")]
    async fn add_staff(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        body: Json<AddStaff>,
    ) -> ApiResult<AddedStaff> {
        let state = &self.state;
        let phone = PhoneNumber::parse(&body.phone)
            .map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))?;
        businesses::get(&state.db, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        let role = match body.role {
            StaffRole::Owner => "owner",
            StaffRole::Staff => "staff",
            StaffRole::Viewer => "viewer",
        };
        let mut tx = state.db.begin().await?;
        let user = users::find_or_create(&mut *tx, &phone).await?;
        let before = businesses::staff_role(&mut *tx, id.0, user.id).await?;
        businesses::put_staff(&mut *tx, id.0, user.id, role).await?;
        let snapshot = |role: &str| serde_json::json!({"business_id": id.0, "role": role});
        let mut change = Change::new("staff.put", "user", user.id).after_value(snapshot(role));
        if let Some(before) = before {
            change = change.before_value(snapshot(&before));
        }
        audit::record(&mut *tx, superadmin.user_id(), change).await?;
        tx.commit().await?;
        Ok(AddedStaff::Created(Json(Envelope::new(StaffView {
            business_id: id.0,
            user_id: user.id,
            phone: user.phone,
            role: role.to_owned(),
        }))))
    }

    /// Poll this business's CRM now (also when its integration is marked failing).
    #[oai(path = "/businesses/:id/poll", method = "post")]
    async fn poll_now(&self, superadmin: Superadmin, id: Path<Uuid>) -> ApiResult<PollAccepted> {
        let state = &self.state;
        let business = businesses::get(&state.db, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        if business.crm_type.is_none() {
            return Err(ApiError::conflict(
                "no_crm",
                "This business has no CRM to poll.",
            ));
        }
        let job_id = Uuid::now_v7();
        let job = PollCrm {
            business_id: Some(business.id),
            force: true,
        };
        state.queue.push(job_id, &job).await.map_err(|e| {
            tracing::warn!(error = %e, "could not enqueue crm_poll");
            ApiError::queue_unavailable()
        })?;
        // An action, not a change of state: recorded once the poll is queued.
        audit::record(
            &state.db,
            superadmin.user_id(),
            Change::new("business.poll", "business", business.id)
                .after_value(serde_json::json!({"job_id": job_id})),
        )
        .await?;
        Ok(PollAccepted::Accepted(Json(Envelope::new(PollQueued {
            job_id,
        }))))
    }

    /// Add a cross-promo chain.
    #[oai(path = "/promo-chains", method = "post")]
    async fn create_promo_chain(
        &self,
        superadmin: Superadmin,
        body: Json<CreatePromoChain>,
    ) -> ApiResult<CreatedPromoChain> {
        let body = body.0;
        let state = &self.state;
        let triggers = [
            body.trigger_business_id.is_some(),
            body.trigger_category.is_some(),
            body.trigger_churn_risk.is_some(),
        ];
        if triggers.iter().filter(|given| **given).count() != 1 {
            return Err(ApiError::unprocessable(
                "invalid_trigger",
                "give one of trigger_business_id, trigger_category or trigger_churn_risk",
            ));
        }
        let trigger_churn_risk = body
            .trigger_churn_risk
            .map(|risk| {
                Decimal::from_f64_retain(risk)
                    .map(|r| r.round_dp(3))
                    .filter(|r| *r > Decimal::ZERO && *r <= Decimal::ONE)
                    .ok_or_else(|| {
                        ApiError::unprocessable(
                            "invalid_trigger",
                            "trigger_churn_risk must be between 0.001 and 1",
                        )
                    })
            })
            .transpose()?;
        let known = |id: Uuid| async move {
            businesses::get(&state.db, id).await?.ok_or_else(|| {
                ApiError::unprocessable("business_not_found", format!("no business {id}"))
            })
        };
        if let Some(trigger) = body.trigger_business_id {
            if known(trigger).await?.is_medical {
                return Err(ApiError::unprocessable(
                    "medical_trigger",
                    "A visit to a medical business never triggers cross-promo (medical secrecy).",
                ));
            }
        }
        known(body.target_business_id).await?;
        let min_amount = crate::routes::non_negative_money(
            body.min_amount.map_or(Decimal::ZERO, Amount::value),
            "min_amount",
        )?;
        let value =
            crate::routes::positive_money(body.discount_value.value(), "discount_value")?.amount();
        let discount_type = match body.discount_type {
            DiscountTypeName::Percent if value > Decimal::ONE_HUNDRED => {
                return Err(ApiError::unprocessable(
                    "invalid_amount",
                    "a percent discount is at most 100",
                ));
            }
            DiscountTypeName::Percent => "percent",
            DiscountTypeName::Fixed => "fixed",
            DiscountTypeName::Bonus => "bonus",
        };
        if !(1..=365).contains(&body.valid_days) {
            return Err(ApiError::unprocessable(
                "invalid_valid_days",
                "valid_days must be between 1 and 365",
            ));
        }
        let cooldown_days = body.cooldown_days.unwrap_or(0);
        if !(0..=365).contains(&cooldown_days) {
            return Err(ApiError::unprocessable(
                "invalid_cooldown",
                "cooldown_days must be between 0 and 365",
            ));
        }
        let mut tx = state.db.begin().await?;
        let chain = storage::coupons::create_chain(
            &mut *tx,
            &storage::coupons::NewChain {
                trigger_business_id: body.trigger_business_id,
                trigger_category: body.trigger_category.map(|c| c.as_str().to_owned()),
                trigger_churn_risk,
                min_amount,
                target_business_id: body.target_business_id,
                discount_type: discount_type.to_owned(),
                discount_value: value,
                valid_days: body.valid_days,
                cooldown_days,
            },
        )
        .await?;
        let view = PromoChainView {
            id: chain.id,
            trigger_business_id: chain.trigger_business_id,
            trigger_category: chain.trigger_category,
            trigger_churn_risk: chain.trigger_churn_risk.and_then(|r| r.to_f64()),
            min_amount: chain.min_amount.into(),
            target_business_id: chain.target_business_id,
            discount_type: chain.discount_type,
            discount_value: chain.discount_value.into(),
            valid_days: chain.valid_days,
            cooldown_days: chain.cooldown_days,
            is_active: chain.is_active,
        };
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("promo_chain.create", "promo_chain", view.id).after(&view),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedPromoChain::Created(Json(Envelope::new(view))))
    }
}
