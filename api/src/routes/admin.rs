//! `/admin`: operators (superadmin, moderator) manage partner businesses, their staff and
//! their CRM integrations (several per business; only a superadmin changes them).

use crate::{
    audit::{self, Change},
    auth::{Operator, Superadmin},
    envelope::Envelope,
    error::{
        ApiError, ApiResult, BAD_REQUEST, CONFLICT, JSON_BODY, NOT_FOUND, SIGNED_IN, UNPROCESSABLE,
    },
    routes::positive_money,
    state::AppState,
    wire::{Amount, CategoryName, CrmType, StaffRole, Text},
};
use adapters::egress::EgressError;
use domain::{PhoneNumber, loyalty::DiscountType};
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
    businesses::{self, Business, BusinessPatch, NewBusiness},
    integrations::{self, Integration, IntegrationPatch, IntegrationStatus, NewIntegration},
    users,
};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: partner businesses.
    Admin,
}

pub struct AdminApi {
    pub state: Arc<AppState>,
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
    /// The largest check its staff may issue a QR code for, roubles. Default 500000.00.
    #[oai(nullable)]
    pub max_check_amount: Option<Amount>,
    /// The business's first CRM integration (superadmin only); more are added through
    /// `/admin/businesses/{id}/integrations`.
    #[oai(nullable)]
    pub crm_type: Option<CrmType>,
    /// https to a public address (plain http and private addresses only for hosts in
    /// `KRUG_CRM_ALLOWED_HOSTS`).
    #[oai(validator(max_length = 500))]
    #[oai(nullable)]
    pub crm_base_url: Option<Text>,
    /// By `crm_type` — yclients: `partner_token`, `user_token`, `company_id`; iiko:
    /// `app_id`, `client_secret`, `api_key` (or the deprecated `api_login`) and
    /// `organization_id`; 1c: `username`, `password`; amo_crm: a long-lived `access_token`,
    /// or `client_id`, `client_secret`, `redirect_uri`, `refresh_token`; renovatio:
    /// `api_key`, `clinic_id`. Stored encrypted, never returned.
    #[oai(nullable)]
    pub crm_credentials: Option<Value>,
    /// The integration's settings (not secret), see `CreateIntegration`.
    #[oai(nullable)]
    pub crm_settings: Option<Value>,
    /// Days an accrual waits before the member can spend it (0–365; a refund inside the
    /// window cancels it). Default 0: at once.
    #[oai(nullable)]
    pub bonus_hold_days: Option<i32>,
    /// The largest refund staff may give; above it, only an owner. Default 5000.00.
    #[oai(nullable)]
    pub staff_refund_limit: Option<Amount>,
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
    /// Once set, it cannot be cleared (422 `medical_flag_permanent`).
    #[oai(nullable)]
    pub is_medical: Option<bool>,
    #[oai(nullable)]
    pub is_active: Option<bool>,
    /// The largest check its staff may issue a QR code for, roubles.
    #[oai(nullable)]
    pub max_check_amount: Option<Amount>,
    /// The first integration's CRM (superadmin only); `null` removes that integration.
    /// Changing the type or `crm_base_url` drops the stored credentials: give them again.
    #[oai(nullable)]
    pub crm_type: MaybeUndefined<CrmType>,
    #[oai(validator(max_length = 500))]
    #[oai(nullable)]
    pub crm_base_url: Option<Text>,
    #[oai(nullable)]
    pub crm_credentials: Option<Value>,
    #[oai(nullable)]
    pub crm_settings: Option<Value>,
    #[oai(nullable)]
    pub bonus_hold_days: Option<i32>,
    #[oai(nullable)]
    pub staff_refund_limit: Option<Amount>,
}

/// A CRM connection of a business.
#[derive(Debug, Object)]
pub struct CreateIntegration {
    pub crm_type: CrmType,
    /// https to a public address (plain http and private addresses only for hosts in
    /// `KRUG_CRM_ALLOWED_HOSTS`).
    #[oai(validator(max_length = 500))]
    pub crm_base_url: Text,
    /// See `CreateBusiness.crm_credentials`. Stored encrypted, never returned.
    pub crm_credentials: Value,
    /// Not secret. 1c: `preset` (`retail_2` default, `ut_11`, `unf`, `retail_1`) and field
    /// names; renovatio: `ca_certificate` (PEM of a self-hosted installation's CA).
    #[oai(nullable)]
    pub settings: Option<Value>,
}

/// A change to a CRM connection. A new `crm_type` or `crm_base_url` without new
/// `crm_credentials` drops the stored ones (they were given for the old host).
#[derive(Debug, Object)]
pub struct UpdateIntegration {
    #[oai(nullable)]
    pub crm_type: Option<CrmType>,
    #[oai(validator(max_length = 500))]
    #[oai(nullable)]
    pub crm_base_url: Option<Text>,
    #[oai(nullable)]
    pub crm_credentials: Option<Value>,
    /// Replaces the settings whole.
    #[oai(nullable)]
    pub settings: Option<Value>,
    /// `false` stops polling (`disabled`); `true` resumes it.
    #[oai(nullable)]
    pub enabled: Option<bool>,
}

/// A CRM connection and its health.
#[derive(Debug, Object)]
pub struct IntegrationView {
    pub id: Uuid,
    pub business_id: Uuid,
    /// `yclients`, `iiko`, `1c`, `amo_crm` or `renovatio`.
    pub crm_type: String,
    pub crm_base_url: String,
    /// `ok`; `failing` (see `last_error`: polling waits for an operator); `disabled`
    /// (switched off, or waiting for credentials).
    pub status: String,
    /// Whether credentials are stored (they are never returned).
    pub has_credentials: bool,
    pub settings: Value,
    /// The last poll, successful or not.
    #[oai(nullable)]
    pub last_polled_at: Option<OffsetDateTime>,
    #[oai(nullable)]
    pub last_success_at: Option<OffsetDateTime>,
    /// How far behind the stored records are, seconds (null before the first poll).
    #[oai(nullable)]
    pub lag_s: Option<i64>,
    /// Why the last poll failed; never a vendor's raw reply.
    #[oai(nullable)]
    pub last_error: Option<String>,
    /// Something to know that is not a failure (an incomplete catch-up).
    #[oai(nullable)]
    pub warning: Option<String>,
    /// Checks whose buyer could not be resolved.
    pub unattributed: i64,
    pub created_at: OffsetDateTime,
}

fn integration_view(i: Integration) -> IntegrationView {
    IntegrationView {
        lag_s: i
            .polled_until
            .map(|p| (OffsetDateTime::now_utc() - p).whole_seconds().max(0)),
        id: i.id,
        business_id: i.business_id,
        crm_type: i.crm_type.as_str().to_owned(),
        crm_base_url: i.base_url,
        status: i.status.as_str().to_owned(),
        has_credentials: i.has_credentials,
        settings: i.settings,
        last_polled_at: i.last_polled_at,
        last_success_at: i.last_success_at,
        last_error: i.last_error,
        warning: i.warning,
        unattributed: i.unattributed,
        created_at: i.created_at,
    }
}

/// A partner business as operators see it (never its CRM credentials).
#[derive(Debug, Object)]
pub struct BusinessView {
    pub id: Uuid,
    pub name: String,
    /// `beauty`, `wellness`, `gastronomy` or `health`.
    pub category: String,
    pub cashback_percent: Amount,
    pub max_redeem_percent: Amount,
    pub is_medical: bool,
    pub is_active: bool,
    /// The largest check its staff may issue a QR code for (superadmin only).
    pub max_check_amount: Amount,
    /// The first integration's CRM (`yclients`, `iiko`, `1c`, `amo_crm`, `renovatio`), or
    /// absent; `integrations` has them all.
    #[oai(nullable)]
    pub crm_type: Option<String>,
    #[oai(nullable)]
    pub crm_base_url: Option<String>,
    /// Whether the first integration has credentials (they are never returned).
    pub has_crm_credentials: bool,
    /// The first integration's status (`ok` without one).
    pub integration_status: String,
    #[oai(nullable)]
    pub integration_error: Option<String>,
    pub integrations: Vec<IntegrationView>,
    /// Days an accrual waits before the member can spend it.
    pub bonus_hold_days: i32,
    /// The largest refund staff may give without the owner.
    pub staff_refund_limit: Amount,
    pub created_at: OffsetDateTime,
}

fn business_view(b: Business, integrations: Vec<Integration>) -> BusinessView {
    let first = integrations.first();
    BusinessView {
        crm_type: first.map(|i| i.crm_type.as_str().to_owned()),
        crm_base_url: first.map(|i| i.base_url.clone()),
        has_crm_credentials: first.is_some_and(|i| i.has_credentials),
        integration_status: first
            .map_or(IntegrationStatus::Ok, |i| i.status)
            .as_str()
            .to_owned(),
        integration_error: first.and_then(|i| i.last_error.clone()),
        integrations: integrations.into_iter().map(integration_view).collect(),
        id: b.id,
        name: b.name,
        category: b.category.as_str().to_owned(),
        cashback_percent: b.cashback_percent.into(),
        max_redeem_percent: b.max_redeem_percent.into(),
        is_medical: b.is_medical,
        is_active: b.is_active,
        max_check_amount: b.max_check_amount.into(),
        bonus_hold_days: b.bonus_hold_days,
        staff_refund_limit: b.staff_refund_limit.into(),
        created_at: b.created_at,
    }
}

#[derive(Debug, Object)]
pub struct BusinessList {
    pub items: Vec<BusinessView>,
}

#[derive(ApiResponse)]
pub enum CreatedIntegration {
    #[oai(status = 201)]
    Created(Json<Envelope<IntegrationView>>),
}

#[derive(ApiResponse)]
pub enum DeletedIntegration {
    /// Deleted: its credentials are erased; the purchases it recorded stay.
    #[oai(status = 204)]
    Deleted,
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

impl From<DiscountTypeName> for DiscountType {
    fn from(name: DiscountTypeName) -> Self {
        match name {
            DiscountTypeName::Percent => Self::Percent,
            DiscountTypeName::Fixed => Self::Fixed,
            DiscountTypeName::Bonus => Self::Bonus,
        }
    }
}

impl From<DiscountType> for DiscountTypeName {
    fn from(kind: DiscountType) -> Self {
        match kind {
            DiscountType::Percent => Self::Percent,
            DiscountType::Fixed => Self::Fixed,
            DiscountType::Bonus => Self::Bonus,
        }
    }
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

#[derive(Debug, Clone, PartialEq, Object)]
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
    /// False while paused: a paused chain issues no coupon.
    pub is_active: bool,
    pub created_at: OffsetDateTime,
}

fn chain_view(chain: storage::coupons::PromoChain) -> PromoChainView {
    PromoChainView {
        id: chain.id,
        trigger_business_id: chain.trigger_business_id,
        trigger_category: chain.trigger_category.map(|c| c.as_str().to_owned()),
        trigger_churn_risk: chain.trigger_churn_risk.and_then(|r| r.to_f64()),
        min_amount: chain.min_amount.into(),
        target_business_id: chain.target_business_id,
        discount_type: chain.discount_type.as_str().to_owned(),
        discount_value: chain.discount_value.into(),
        valid_days: chain.valid_days,
        cooldown_days: chain.cooldown_days,
        is_active: chain.is_active,
        created_at: chain.created_at,
    }
}

#[derive(ApiResponse)]
pub enum CreatedPromoChain {
    #[oai(status = 201)]
    Created(Json<Envelope<PromoChainView>>),
}

#[derive(Debug, Object)]
pub struct PromoChainList {
    /// Every chain, paused ones included, newest first.
    pub items: Vec<PromoChainView>,
}

/// An edit of a promo chain: the fields given replace the chain's, validated as when it was
/// created. Giving one trigger field replaces the trigger (the other two are cleared).
/// `is_active: false` pauses the chain, `true` resumes it.
#[derive(Debug, Object)]
pub struct UpdatePromoChain {
    #[oai(nullable)]
    pub trigger_business_id: Option<Uuid>,
    #[oai(nullable)]
    pub trigger_category: Option<CategoryName>,
    #[oai(nullable)]
    pub trigger_churn_risk: Option<f64>,
    #[oai(nullable)]
    pub min_amount: Option<Amount>,
    #[oai(nullable)]
    pub target_business_id: Option<Uuid>,
    #[oai(nullable)]
    pub discount_type: Option<DiscountTypeName>,
    #[oai(nullable)]
    pub discount_value: Option<Amount>,
    #[oai(nullable)]
    pub valid_days: Option<i32>,
    #[oai(nullable)]
    pub cooldown_days: Option<i32>,
    #[oai(nullable)]
    pub is_active: Option<bool>,
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

fn hold_days(days: i32) -> Result<i32, ApiError> {
    if !(0..=365).contains(&days) {
        return Err(ApiError::unprocessable(
            "invalid_hold_days",
            "bonus_hold_days must be between 0 and 365",
        ));
    }
    Ok(days)
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

/// A CRM URL, if the egress rule lets us reach it (scheme, credentials in the URL, and
/// the address, written or resolved).
async fn crm_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    match state.egress.check_url_resolved(url).await {
        Ok(_) => Ok(url.trim().trim_end_matches('/').to_owned()),
        Err(EgressError::Invalid) => Err(ApiError::unprocessable(
            "invalid_url",
            "crm_base_url must be an http(s) URL",
        )),
        Err(e) => Err(ApiError::unprocessable(
            "crm_url_not_allowed",
            e.to_string(),
        )),
    }
}

/// A JSON object, or `{}` for none.
fn object(value: Option<&Value>, field: &str) -> Result<Value, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(ApiError::unprocessable(
            "invalid_credentials",
            format!("{field} must be an object"),
        )),
    }
}

/// Checks that a connection of `crm_type` can be built from these credentials and
/// settings (no network call; what is wrong is named, never a value).
fn check_connection(
    state: &AppState,
    crm_type: domain::crm::CrmType,
    url: &str,
    credentials: &Value,
    settings: &Value,
) -> Result<(), ApiError> {
    jobs::handlers::crm::check_connection(crm_type, url, credentials, settings, &state.egress)
        .map_err(|e| ApiError::unprocessable("invalid_credentials", e.0))
}

async fn existing_business(state: &AppState, id: Uuid) -> Result<Business, ApiError> {
    businesses::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))
}

/// A new integration, checked.
async fn new_integration(
    state: &AppState,
    crm_type: CrmType,
    url: &str,
    credentials: &Value,
    settings: Option<&Value>,
) -> Result<NewIntegration, ApiError> {
    let base_url = crm_url(state, url).await?;
    let credentials = object(Some(credentials), "crm_credentials")?;
    let settings = object(settings, "settings")?;
    check_connection(state, crm_type.0, &base_url, &credentials, &settings)?;
    Ok(NewIntegration {
        crm_type: crm_type.0,
        base_url,
        credentials: Some(credentials),
        settings,
    })
}

/// The patch a change to an integration makes, checked: what will be used together (the
/// type, the URL, the credentials and the settings) must make a working client.
async fn integration_patch(
    state: &AppState,
    current: &Integration,
    change: &UpdateIntegration,
) -> Result<IntegrationPatch, ApiError> {
    let base_url = match &change.crm_base_url {
        Some(url) => Some(crm_url(state, url).await?),
        None => None,
    };
    let credentials = change
        .crm_credentials
        .as_ref()
        .map(|c| object(Some(c), "crm_credentials"))
        .transpose()?;
    let settings = change
        .settings
        .as_ref()
        .map(|s| object(Some(s), "settings"))
        .transpose()?;
    let crm_type = change.crm_type.map(|t| t.0);
    let moved = crm_type.is_some_and(|t| t != current.crm_type)
        || base_url.as_ref().is_some_and(|u| *u != current.base_url);
    // The credentials the integration will use: new ones, or (if it stays where it is) the
    // stored ones, checked with the new settings.
    let effective = match &credentials {
        Some(given) => Some(given.clone()),
        None if !moved && settings.is_some() => {
            integrations::credentials(&state.db, &state.secrets, current.id)
                .await
                .map_err(ApiError::internal)?
        }
        None => None,
    };
    if let Some(effective) = &effective {
        check_connection(
            state,
            crm_type.unwrap_or(current.crm_type),
            base_url.as_deref().unwrap_or(&current.base_url),
            effective,
            settings.as_ref().unwrap_or(&current.settings),
        )?;
    }
    Ok(IntegrationPatch {
        crm_type,
        base_url,
        credentials: credentials.map(Some),
        settings,
        enabled: change.enabled,
    })
}

/// What the `crm_*` fields of `PATCH /admin/businesses/{id}` do to its first integration.
enum FirstIntegration {
    Unchanged,
    Remove(Uuid),
    Create(NewIntegration),
    Change(Uuid, IntegrationPatch),
}

async fn first_integration_change(
    state: &AppState,
    business_id: Uuid,
    body: &UpdateBusiness,
) -> Result<FirstIntegration, ApiError> {
    let touched = !matches!(body.crm_type, MaybeUndefined::Undefined)
        || body.crm_base_url.is_some()
        || body.crm_credentials.is_some()
        || body.crm_settings.is_some();
    if !touched {
        return Ok(FirstIntegration::Unchanged);
    }
    let first = integrations::of_business(&state.db, business_id)
        .await?
        .into_iter()
        .next();
    Ok(match (&body.crm_type, first) {
        (MaybeUndefined::Null, Some(first)) => FirstIntegration::Remove(first.id),
        (MaybeUndefined::Null, None) => FirstIntegration::Unchanged,
        (crm_type, Some(first)) => {
            let change = UpdateIntegration {
                crm_type: crm_type.value().copied(),
                crm_base_url: body.crm_base_url.clone(),
                crm_credentials: body.crm_credentials.clone(),
                settings: body.crm_settings.clone(),
                enabled: None,
            };
            FirstIntegration::Change(first.id, integration_patch(state, &first, &change).await?)
        }
        (crm_type, None) => {
            let crm = crm_type.value().copied().ok_or_else(|| {
                ApiError::unprocessable("invalid_credentials", "set crm_type to connect a CRM")
            })?;
            let url = body.crm_base_url.as_deref().ok_or_else(|| {
                ApiError::unprocessable("invalid_url", "crm_base_url is required with crm_type")
            })?;
            let credentials = body.crm_credentials.as_ref().ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_credentials",
                    "crm_credentials are required with crm_type",
                )
            })?;
            FirstIntegration::Create(
                new_integration(state, crm, url, credentials, body.crm_settings.as_ref()).await?,
            )
        }
    })
}

/// The chain `body` describes, validated (POST creates it; PATCH merges its fields into the
/// chain's and validates the result the same way). `new_trigger`: the trigger is being set.
async fn validated_chain(
    state: &AppState,
    body: &CreatePromoChain,
    new_trigger: bool,
) -> Result<storage::coupons::NewChain, ApiError> {
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
        // Checked when the trigger is set: a chain whose trigger business became medical
        // later fires no more (its purchases are medical) and may still be paused or edited.
        if known(trigger).await?.is_medical && new_trigger {
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
    let discount_type = DiscountType::from(body.discount_type);
    if discount_type == DiscountType::Percent && value > Decimal::ONE_HUNDRED {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            "a percent discount is at most 100",
        ));
    }
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
    Ok(storage::coupons::NewChain {
        trigger_business_id: body.trigger_business_id,
        trigger_category: body.trigger_category.map(|c| c.0),
        trigger_churn_risk,
        min_amount,
        target_business_id: body.target_business_id,
        discount_type,
        discount_value: value,
        valid_days: body.valid_days,
        cooldown_days,
    })
}

/// `chain` with the fields `patch` gives put in, as a creation would describe it; and
/// whether the patch sets the trigger.
fn merged_chain(
    chain: &storage::coupons::PromoChain,
    patch: &UpdatePromoChain,
) -> (CreatePromoChain, bool) {
    let new_trigger = patch.trigger_business_id.is_some()
        || patch.trigger_category.is_some()
        || patch.trigger_churn_risk.is_some();
    let (trigger_business_id, trigger_category, trigger_churn_risk) = if new_trigger {
        (
            patch.trigger_business_id,
            patch.trigger_category,
            patch.trigger_churn_risk,
        )
    } else {
        (
            chain.trigger_business_id,
            chain.trigger_category.map(CategoryName),
            chain.trigger_churn_risk.and_then(|r| r.to_f64()),
        )
    };
    let discount_type = patch.discount_type.unwrap_or(chain.discount_type.into());
    let merged = CreatePromoChain {
        trigger_business_id,
        trigger_category,
        trigger_churn_risk,
        min_amount: Some(patch.min_amount.unwrap_or(chain.min_amount.into())),
        target_business_id: patch.target_business_id.unwrap_or(chain.target_business_id),
        discount_type,
        discount_value: patch.discount_value.unwrap_or(chain.discount_value.into()),
        valid_days: patch.valid_days.unwrap_or(chain.valid_days),
        cooldown_days: Some(patch.cooldown_days.unwrap_or(chain.cooldown_days)),
    };
    (merged, new_trigger)
}

#[OpenApi(prefix_path = "/admin", tag = "Tag::Admin")]
impl AdminApi {
    /// Every business, with its integrations' health.
    #[oai(path = "/businesses", method = "get")]
    async fn list_businesses(
        &self,
        _operator: Operator,
    ) -> ApiResult<Json<Envelope<BusinessList>>, SIGNED_IN> {
        let state = &self.state;
        let all = businesses::list_all(&state.db).await?;
        let ids: Vec<Uuid> = all.iter().map(|b| b.id).collect();
        let mut by_business: std::collections::HashMap<Uuid, Vec<Integration>> =
            std::collections::HashMap::new();
        for integration in integrations::of_businesses(&state.db, &ids).await? {
            by_business
                .entry(integration.business_id)
                .or_default()
                .push(integration);
        }
        let items = all
            .into_iter()
            .map(|b| {
                let list = by_business.remove(&b.id).unwrap_or_default();
                business_view(b, list)
            })
            .collect();
        Ok(Json(Envelope::new(BusinessList { items })))
    }

    /// Add a partner business, with its first CRM integration.
    #[oai(path = "/businesses", method = "post")]
    async fn create_business(
        &self,
        superadmin: Superadmin,
        body: Json<CreateBusiness>,
    ) -> ApiResult<CreatedBusiness, { SIGNED_IN | JSON_BODY | UNPROCESSABLE }> {
        let body = body.0;
        let state = &self.state;
        let integration = match body.crm_type {
            None => None,
            Some(crm) => {
                let url = body.crm_base_url.as_deref().ok_or_else(|| {
                    ApiError::unprocessable("invalid_url", "crm_base_url is required with crm_type")
                })?;
                let credentials = body.crm_credentials.as_ref().ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_credentials",
                        "crm_credentials are required with crm_type",
                    )
                })?;
                Some(
                    new_integration(state, crm, url, credentials, body.crm_settings.as_ref())
                        .await?,
                )
            }
        };
        let new = NewBusiness {
            name: body.name.trim().to_owned(),
            category: body.category.0,
            cashback_percent: percent(body.cashback_percent.value(), "cashback_percent")?,
            max_redeem_percent: percent(
                body.max_redeem_percent
                    .map_or(Decimal::from(30), Amount::value),
                "max_redeem_percent",
            )?,
            is_medical: body.is_medical.unwrap_or(false),
            max_check_amount: match body.max_check_amount {
                None => businesses::DEFAULT_MAX_CHECK_AMOUNT,
                Some(amount) => positive_money(amount.value(), "max_check_amount")?.amount(),
            },
            bonus_hold_days: hold_days(body.bonus_hold_days.unwrap_or(0))?,
            staff_refund_limit: crate::routes::non_negative_money(
                body.staff_refund_limit
                    .map_or(businesses::DEFAULT_STAFF_REFUND_LIMIT, Amount::value),
                "staff_refund_limit",
            )?,
        };
        let mut tx = state.db.begin().await?;
        let business = businesses::create(&mut *tx, &new).await?;
        if let Some(integration) = &integration {
            integrations::create(&mut tx, &state.secrets, business.id, integration).await?;
        }
        let list = integrations::of_business(&mut *tx, business.id).await?;
        let business = business_view(business, list);
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

    /// Change a partner business. `crm_*` fields manage its first integration: credentials
    /// are replaced whole, never merged or returned, and a new type or URL drops them.
    #[oai(path = "/businesses/:id", method = "patch")]
    async fn update_business(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        body: Json<UpdateBusiness>,
    ) -> ApiResult<
        Json<Envelope<BusinessView>>,
        { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE },
    > {
        let state = &self.state;
        let body = body.0;
        // Checked before the transaction: the URL check may wait on DNS.
        let first_change = first_integration_change(state, id.0, &body).await?;
        let mut tx = state.db.begin().await?;
        let current = businesses::get_for_update(&mut *tx, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        let before = business_view(
            current.clone(),
            integrations::of_business(&mut *tx, id.0).await?,
        );
        if current.is_medical && body.is_medical == Some(false) {
            // Medical secrecy covers the visits already made: no operator may lift it.
            return Err(ApiError::unprocessable(
                "medical_flag_permanent",
                "A medical business stays medical: the flag cannot be cleared.",
            )
            .into());
        }
        match first_change {
            FirstIntegration::Unchanged => {}
            FirstIntegration::Remove(integration) => {
                integrations::delete(&mut *tx, id.0, integration).await?;
            }
            FirstIntegration::Create(new) => {
                integrations::create(&mut tx, &state.secrets, id.0, &new).await?;
            }
            FirstIntegration::Change(integration, patch) => {
                integrations::update(&mut tx, &state.secrets, id.0, integration, &patch).await?;
            }
        }
        let patch = BusinessPatch {
            name: body.name.map(|n| n.trim().to_owned()),
            category: body.category.map(|c| c.0),
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
            max_check_amount: body
                .max_check_amount
                .map(|a| positive_money(a.value(), "max_check_amount").map(|m| m.amount()))
                .transpose()?,
            bonus_hold_days: body.bonus_hold_days.map(hold_days).transpose()?,
            staff_refund_limit: body
                .staff_refund_limit
                .map(|l| crate::routes::non_negative_money(l.value(), "staff_refund_limit"))
                .transpose()?,
        };
        let business = businesses::update(&mut *tx, id.0, &patch)
            .await?
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        let mut follow_ups = Vec::new();
        if business.is_medical && !current.is_medical {
            follow_ups.push(business_became_medical(&mut tx, business.id).await?);
        }
        let list = integrations::of_business(&mut *tx, id.0).await?;
        let business = business_view(business, list);
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("business.update", "business", business.id)
                .before(&before)
                .after(&business),
        )
        .await?;
        tx.commit().await?;
        outbox::relay_committed(&state.db, &state.queue, &follow_ups, "medical facts purge").await;
        Ok(Json(Envelope::new(business)))
    }

    /// Connect another CRM to a business.
    #[oai(path = "/businesses/:id/integrations", method = "post")]
    async fn create_integration(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        body: Json<CreateIntegration>,
    ) -> ApiResult<CreatedIntegration, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }> {
        let state = &self.state;
        existing_business(state, id.0).await?;
        let body = body.0;
        let new = new_integration(
            state,
            body.crm_type,
            &body.crm_base_url,
            &body.crm_credentials,
            body.settings.as_ref(),
        )
        .await?;
        let mut tx = state.db.begin().await?;
        let created =
            integration_view(integrations::create(&mut tx, &state.secrets, id.0, &new).await?);
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("integration.create", "integration", created.id).after(&created),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(business_id = %id.0, integration_id = %created.id, crm_type = %created.crm_type, "integration created");
        Ok(CreatedIntegration::Created(Json(Envelope::new(created))))
    }

    /// Change a CRM integration. A new `crm_type` or `crm_base_url` without new
    /// `crm_credentials` drops the stored credentials: the integration waits, `disabled`,
    /// until they are given again.
    #[oai(path = "/businesses/:id/integrations/:iid", method = "patch")]
    async fn update_integration(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        iid: Path<Uuid>,
        body: Json<UpdateIntegration>,
    ) -> ApiResult<
        Json<Envelope<IntegrationView>>,
        { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE },
    > {
        let state = &self.state;
        let current = integrations::get(&state.db, iid.0)
            .await?
            .filter(|i| i.business_id == id.0)
            .ok_or_else(|| ApiError::not_found("integration_not_found", "No such integration."))?;
        let patch = integration_patch(state, &current, &body.0).await?;
        let mut tx = state.db.begin().await?;
        let updated = integrations::update(&mut tx, &state.secrets, id.0, current.id, &patch)
            .await?
            .ok_or_else(|| ApiError::not_found("integration_not_found", "No such integration."))?;
        let updated = integration_view(updated);
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("integration.update", "integration", current.id)
                .before(&integration_view(current))
                .after(&updated),
        )
        .await?;
        tx.commit().await?;
        Ok(Json(Envelope::new(updated)))
    }

    /// Remove a CRM integration: its credentials are erased, its purchases stay.
    #[oai(path = "/businesses/:id/integrations/:iid", method = "delete")]
    async fn delete_integration(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        iid: Path<Uuid>,
    ) -> ApiResult<DeletedIntegration, { SIGNED_IN | BAD_REQUEST | NOT_FOUND }> {
        let state = &self.state;
        let current = integrations::get(&state.db, iid.0)
            .await?
            .filter(|i| i.business_id == id.0)
            .ok_or_else(|| ApiError::not_found("integration_not_found", "No such integration."))?;
        let mut tx = state.db.begin().await?;
        if !integrations::delete(&mut *tx, id.0, iid.0).await? {
            return Err(
                ApiError::not_found("integration_not_found", "No such integration.").into(),
            );
        }
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("integration.delete", "integration", iid.0)
                .before(&integration_view(current)),
        )
        .await?;
        tx.commit().await?;
        Ok(DeletedIntegration::Deleted)
    }

    /// Add a staff member to a business (the user is created if new), or change their role.
    #[oai(path = "/businesses/:id/staff", method = "post")]
    async fn add_staff(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        body: Json<AddStaff>,
    ) -> ApiResult<AddedStaff, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }> {
        let state = &self.state;
        let phone = PhoneNumber::parse(&body.phone)
            .map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))?;
        businesses::get(&state.db, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        let role = body.role.0;
        let mut tx = state.db.begin().await?;
        let user = users::find_or_create(&mut *tx, &phone).await?;
        let before = businesses::staff_role(&mut *tx, id.0, user.id).await?;
        businesses::put_staff(&mut *tx, id.0, user.id, role).await?;
        let snapshot = |role: domain::roles::StaffRole| serde_json::json!({"business_id": id.0, "role": role.as_str()});
        let mut change = Change::new("staff.put", "user", user.id).after_value(snapshot(role));
        if let Some(before) = before {
            change = change.before_value(snapshot(before));
        }
        audit::record(&mut *tx, superadmin.user_id(), change).await?;
        tx.commit().await?;
        Ok(AddedStaff::Created(Json(Envelope::new(StaffView {
            business_id: id.0,
            user_id: user.id,
            phone: user.phone,
            role: role.as_str().to_owned(),
        }))))
    }

    /// Take a person off a business's staff (superadmin), as its owner would: the business
    /// keeps an owner, and the QR codes they issued and nobody has used stop working at once.
    #[oai(path = "/businesses/:id/staff/:user_id", method = "delete")]
    async fn remove_staff(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        user_id: Path<Uuid>,
    ) -> ApiResult<
        Json<Envelope<crate::routes::partner::StaffChange>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT },
    > {
        let state = &self.state;
        existing_business(state, id.0).await?;
        let removed =
            crate::routes::partner::take_off_staff(state, superadmin.user_id(), id.0, user_id.0)
                .await?;
        Ok(Json(Envelope::new(removed)))
    }

    /// Poll this business's CRMs now (also integrations marked failing).
    #[oai(path = "/businesses/:id/poll", method = "post")]
    async fn poll_now(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
    ) -> ApiResult<PollAccepted, { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT }> {
        let state = &self.state;
        let business = existing_business(state, id.0).await?;
        if integrations::of_business(&state.db, business.id)
            .await?
            .is_empty()
        {
            return Err(ApiError::conflict("no_crm", "This business has no CRM to poll.").into());
        }
        let job_id = Uuid::now_v7();
        let job = PollCrm {
            integration_id: None,
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
    ) -> ApiResult<CreatedPromoChain, { SIGNED_IN | JSON_BODY | UNPROCESSABLE }> {
        let new = validated_chain(&self.state, &body.0, true).await?;
        let mut tx = self.state.db.begin().await?;
        let view = chain_view(storage::coupons::create_chain(&mut *tx, &new).await?);
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("promo_chain.create", "promo_chain", view.id).after(&view),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedPromoChain::Created(Json(Envelope::new(view))))
    }

    /// Every promo chain, paused ones included, newest first.
    #[oai(path = "/promo-chains", method = "get")]
    async fn list_promo_chains(
        &self,
        _operator: Operator,
    ) -> ApiResult<Json<Envelope<PromoChainList>>, SIGNED_IN> {
        let chains = storage::coupons::all_chains(&self.state.db).await?;
        Ok(Json(Envelope::new(PromoChainList {
            items: chains.into_iter().map(chain_view).collect(),
        })))
    }

    /// Edit a promo chain, or pause (`is_active: false`) and resume it (superadmin). The
    /// fields given are validated as in `POST /admin/promo-chains`. A paused chain issues no
    /// coupon; those it issued stay valid.
    #[oai(path = "/promo-chains/:id", method = "patch")]
    async fn update_promo_chain(
        &self,
        superadmin: Superadmin,
        id: Path<Uuid>,
        body: Json<UpdatePromoChain>,
    ) -> ApiResult<
        Json<Envelope<PromoChainView>>,
        { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE },
    > {
        let state = &self.state;
        let mut tx = state.db.begin().await?;
        let current = storage::coupons::chain_for_update(&mut *tx, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("promo_chain_not_found", "No such promo chain."))?;
        let (merged, new_trigger) = merged_chain(&current, &body);
        let fields = validated_chain(state, &merged, new_trigger).await?;
        let is_active = body.is_active.unwrap_or(current.is_active);
        let before = chain_view(current);
        let after =
            chain_view(storage::coupons::update_chain(&mut *tx, id.0, &fields, is_active).await?);
        let edited = PromoChainView {
            is_active: before.is_active,
            ..after.clone()
        };
        // Pausing and resuming are named as such in the audit log; anything else is an edit.
        let action = match (before.is_active, after.is_active) {
            (true, false) if edited == before => "promo_chain.pause",
            (false, true) if edited == before => "promo_chain.resume",
            _ => "promo_chain.update",
        };
        if after != before {
            audit::record(
                &mut *tx,
                superadmin.user_id(),
                Change::new(action, "promo_chain", id.0)
                    .before(&before)
                    .after(&after),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Json(Envelope::new(after)))
    }
}
