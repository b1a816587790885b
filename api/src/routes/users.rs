//! `/users/me`: the signed-in user's profile.

use crate::{
    auth::Auth,
    envelope::Envelope,
    error::{ApiError, ApiResult, CONFLICT, JSON_BODY, NOT_FOUND, SIGNED_IN, UNPROCESSABLE},
    state::AppState,
    wire::{Platform, Text},
};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, payload::Json, types::MaybeUndefined};
use std::sync::Arc;
use storage::users::{self, ProfilePatch, Role, User};
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// The signed-in user.
    Users,
}

pub struct UserApi {
    pub state: Arc<AppState>,
}

/// A role: platform-wide (`superadmin`, `moderator`) or at one business (`owner`, `staff`, `viewer`).
#[derive(Debug, Clone, Object)]
pub struct RoleView {
    pub role: String,
    /// Set for business roles.
    #[oai(nullable)]
    pub business_id: Option<Uuid>,
}

#[derive(Debug, Clone, Object)]
pub struct UserView {
    pub id: Uuid,
    /// E.164.
    pub phone: String,
    #[oai(nullable)]
    pub first_name: Option<String>,
    #[oai(nullable)]
    pub last_name: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    /// `Insider`, `VIP`, `Elite` or `InnerCircle`.
    pub status_tier: String,
    pub roles: Vec<RoleView>,
}

pub(crate) fn user_view(user: User, roles: &[Role]) -> UserView {
    UserView {
        id: user.id,
        phone: user.phone,
        first_name: user.first_name,
        last_name: user.last_name,
        email: user.email,
        status_tier: user.status_tier.as_str().to_owned(),
        roles: roles
            .iter()
            .map(|r| match r {
                Role::Platform(role) => RoleView {
                    role: role.as_str().to_owned(),
                    business_id: None,
                },
                Role::Business { business_id, role } => RoleView {
                    role: role.as_str().to_owned(),
                    business_id: Some(*business_id),
                },
            })
            .collect(),
    }
}

/// A profile change: absent fields stay, `null` clears.
#[derive(Debug, Object)]
pub struct ProfileChange {
    #[oai(validator(max_length = 100))]
    #[oai(nullable)]
    pub first_name: MaybeUndefined<Text>,
    #[oai(validator(max_length = 100))]
    #[oai(nullable)]
    pub last_name: MaybeUndefined<Text>,
    #[oai(validator(max_length = 254))]
    #[oai(nullable)]
    pub email: MaybeUndefined<Text>,
}

/// Marketing consent per channel, and the e-mail address tickets and receipts go to.
#[derive(Debug, Clone, Object)]
pub struct SettingsView {
    /// Offers by push (coupons, campaigns). Account news is always sent.
    pub push_marketing: bool,
    /// Offers by SMS.
    pub sms_marketing: bool,
    /// Offers by e-mail.
    pub email_marketing: bool,
    #[oai(nullable)]
    pub email: Option<String>,
}

fn settings_view(s: users::Settings) -> SettingsView {
    SettingsView {
        push_marketing: s.push_marketing,
        sms_marketing: s.sms_marketing,
        email_marketing: s.email_marketing,
        email: s.email,
    }
}

/// A change of settings: absent (or null) consents stay as they are; `email: null` clears
/// the address.
#[derive(Debug, Object)]
pub struct SettingsChange {
    #[oai(nullable)]
    pub push_marketing: Option<bool>,
    #[oai(nullable)]
    pub sms_marketing: Option<bool>,
    #[oai(nullable)]
    pub email_marketing: Option<bool>,
    #[oai(validator(max_length = 254))]
    #[oai(nullable)]
    pub email: MaybeUndefined<Text>,
}

/// What deleting the account did.
#[derive(Debug, Object)]
pub struct DeletedView {
    pub deleted_at: time::OffsetDateTime,
    /// Seats given back at events to come.
    pub seats_released: u64,
}

#[derive(Debug, Object)]
pub struct DeviceRegistration {
    /// The push token FCM gave the app.
    #[oai(validator(min_length = 1, max_length = 4096))]
    pub token: Text,
    pub platform: Platform,
}

#[derive(Debug, Object)]
pub struct DeviceView {
    pub id: Uuid,
    pub platform: String,
}

#[derive(ApiResponse)]
pub enum DeviceRegistered {
    #[oai(status = 201)]
    Created(Json<Envelope<DeviceView>>),
}

fn field(value: &MaybeUndefined<Text>) -> Option<Option<String>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v.trim().to_owned()).filter(|v| !v.is_empty())),
    }
}

fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

fn check_email(email: &str) -> Result<(), ApiError> {
    if is_plausible_email(email) {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_email",
            "This does not look like an email address.",
        ))
    }
}

fn account_gone() -> ApiError {
    ApiError::not_found("user_not_found", "This account no longer exists.")
}

#[OpenApi(prefix_path = "/users", tag = "Tag::Users")]
impl UserApi {
    /// The signed-in user's profile and roles.
    #[oai(path = "/me", method = "get")]
    async fn me(
        &self,
        auth: Auth,
    ) -> ApiResult<Json<Envelope<UserView>>, { SIGNED_IN | NOT_FOUND }> {
        let db = &self.state.db;
        let user = users::get(db, auth.user_id())
            .await?
            .ok_or_else(account_gone)?;
        let roles = users::roles(db, user.id).await?;
        Ok(Json(Envelope::new(user_view(user, &roles))))
    }

    /// Change the profile: names and email.
    #[oai(path = "/me", method = "patch")]
    async fn update_me(
        &self,
        auth: Auth,
        body: Json<ProfileChange>,
    ) -> ApiResult<Json<Envelope<UserView>>, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }>
    {
        let patch = ProfilePatch {
            first_name: field(&body.first_name),
            last_name: field(&body.last_name),
            email: field(&body.email),
        };
        if let Some(Some(email)) = &patch.email {
            check_email(email)?;
        }
        let db = &self.state.db;
        let user = users::update_profile(db, auth.user_id(), &patch)
            .await?
            .ok_or_else(account_gone)?;
        let roles = users::roles(db, user.id).await?;
        Ok(Json(Envelope::new(user_view(user, &roles))))
    }

    /// Marketing consent per channel and the e-mail address.
    #[oai(path = "/me/settings", method = "get")]
    async fn settings(
        &self,
        auth: Auth,
    ) -> ApiResult<Json<Envelope<SettingsView>>, { SIGNED_IN | NOT_FOUND }> {
        let settings = users::settings(&self.state.db, auth.user_id())
            .await?
            .ok_or_else(account_gone)?;
        Ok(Json(Envelope::new(settings_view(settings))))
    }

    /// Change marketing consent or the e-mail address. Marketing is never sent on a channel
    /// whose consent is off; news about the member's own account still is.
    #[oai(path = "/me/settings", method = "patch")]
    async fn update_settings(
        &self,
        auth: Auth,
        body: Json<SettingsChange>,
    ) -> ApiResult<
        Json<Envelope<SettingsView>>,
        { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE },
    > {
        let patch = users::SettingsPatch {
            push_marketing: body.push_marketing,
            sms_marketing: body.sms_marketing,
            email_marketing: body.email_marketing,
            email: field(&body.email),
        };
        if let Some(Some(email)) = &patch.email {
            check_email(email)?;
        }
        let settings = users::update_settings(&self.state.db, auth.user_id(), &patch)
            .await?
            .ok_or_else(account_gone)?;
        Ok(Json(Envelope::new(settings_view(settings))))
    }

    /// Everything Свой Круг holds about the signed-in member (152-FZ): profile, settings,
    /// roles, balance, the whole ledger and purchase history, coupons, devices (without
    /// their push tokens), event registrations and the messages sent to her.
    #[oai(path = "/me/export", method = "get")]
    async fn export(
        &self,
        auth: Auth,
    ) -> ApiResult<Json<Envelope<serde_json::Value>>, { SIGNED_IN | NOT_FOUND }> {
        let export = storage::privacy::export(&self.state.db, auth.user_id())
            .await?
            .ok_or_else(account_gone)?;
        Ok(Json(Envelope::new(export)))
    }

    /// Delete the account (152-FZ). Her phone, names and e-mail are erased; devices,
    /// sessions and login codes are removed, so nothing more is sent to her and no refresh
    /// token works; seats at events to come are given back. Her ledger and purchases stay,
    /// under an id that no longer says who she was, so that the coalition's books still add
    /// up. Her access tokens stop working within seconds (her sessions are ended).
    #[oai(path = "/me", method = "delete")]
    async fn delete_me(
        &self,
        auth: Auth,
    ) -> ApiResult<Json<Envelope<DeletedView>>, { SIGNED_IN | NOT_FOUND }> {
        let user_id = auth.user_id();
        // Her sessions end everywhere, not only in Postgres: her access tokens stop working
        // within seconds instead of living their 15 minutes.
        let sessions = storage::tokens::revoke_all(&self.state.db, user_id).await?;
        crate::sessions::end(&self.state.revoked, &self.state.cache, &sessions).await?;
        let erased = storage::privacy::erase(&self.state.db, user_id)
            .await?
            .ok_or_else(account_gone)?;
        self.state.balances.forget([user_id]);
        self.state.cache.balances_changed([user_id]).await;
        tracing::info!(user_id = %user_id, "member deleted her account");
        Ok(Json(Envelope::new(DeletedView {
            deleted_at: erased.deleted_at,
            seats_released: erased.seats_released,
        })))
    }

    /// Register a device for push notifications. Re-registering one of her own tokens
    /// updates it; a token another member has stays hers (409 `device_taken`) unless that
    /// account was deleted; at most `KRUG_MAX_DEVICES_PER_MEMBER` (10) devices a member
    /// (422 `too_many_devices`).
    #[oai(path = "/me/devices", method = "post")]
    async fn register_device(
        &self,
        auth: Auth,
        body: Json<DeviceRegistration>,
    ) -> ApiResult<DeviceRegistered, { SIGNED_IN | JSON_BODY | NOT_FOUND | CONFLICT | UNPROCESSABLE }>
    {
        let platform = body.platform.0;
        let max = self.state.limits.devices_per_member;
        let device = match storage::devices::register(
            &self.state.db,
            auth.user_id(),
            body.token.trim(),
            platform,
            max,
        )
        .await?
        {
            storage::devices::Registered::Device(device) => device,
            storage::devices::Registered::Gone => return Err(account_gone().into()),
            storage::devices::Registered::TakenByAnother => {
                crate::limits::REFUSED
                    .with_label_values(&["device_taken"])
                    .inc();
                return Err(ApiError::conflict(
                    "device_taken",
                    "This push token is registered to another account; sign out of it on the device first.",
                ).into());
            }
            storage::devices::Registered::TooMany => {
                crate::limits::REFUSED
                    .with_label_values(&["too_many_devices"])
                    .inc();
                return Err(ApiError::unprocessable(
                    "too_many_devices",
                    format!("At most {max} devices can be registered to an account."),
                )
                .into());
            }
        };
        Ok(DeviceRegistered::Created(Json(Envelope::new(DeviceView {
            id: device.id,
            platform: device.platform.as_str().to_owned(),
        }))))
    }
}
