//! `/auth`: SMS login and token rotation.

use crate::{
    auth::Auth,
    client_ip::ClientIp,
    envelope::Envelope,
    error::{
        ApiError, ApiResult, FORBIDDEN, JSON_BODY, SERVER, SIGNED_IN, TOO_MANY_REQUESTS,
        UNAUTHORIZED, UNPROCESSABLE,
    },
    jwt::{ACCESS_TTL_S, REFRESH_TTL_S},
    limits::{REFUSED, SMS_BUDGET_USED},
    routes::users::{UserView, user_view},
    sessions,
    state::AppState,
    wire::Text,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use domain::{PhoneNumber, codes::otp_code};
use jobs::{handlers::otp::SendOtp, outbox};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, payload::Json};
use rand::RngCore;
use std::{net::IpAddr, sync::Arc, time::Duration};
use storage::{
    limits::{Taken, Window},
    otp::{self, MAX_ATTEMPTS},
    secret::constant_time_eq,
    tokens::{self, Rotation},
    users,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// One code a minute per phone.
pub const RESEND_AFTER: Duration = Duration::from_secs(60);
/// A code is valid five minutes.
pub const CODE_TTL: time::Duration = time::Duration::minutes(5);

#[derive(Tags)]
enum Tag {
    /// Sign in with a code sent by SMS.
    Auth,
}

pub struct AuthApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct SendCodeRequest {
    /// Any common Russian form: `+7 999 123-45-67`, `89991234567`.
    #[oai(validator(max_length = 32))]
    pub phone: Text,
}

#[derive(Debug, Object)]
pub struct SendCodeAccepted {
    /// The `otp_send` job that delivers the SMS.
    pub job_id: Uuid,
    /// Seconds before another code can be requested for this phone.
    pub resend_after_s: u64,
}

#[derive(ApiResponse)]
pub enum SendCodeResponse {
    /// The code is on its way.
    #[oai(status = 202)]
    Accepted(Json<Envelope<SendCodeAccepted>>),
}

#[derive(Debug, Object)]
pub struct VerifyCodeRequest {
    #[oai(validator(max_length = 32))]
    pub phone: Text,
    /// The six digits from the SMS.
    #[oai(validator(max_length = 16))]
    pub code: Text,
    /// The code of the member who invited her (taken at sign-up or within 7 days of it).
    #[oai(validator(max_length = 32))]
    #[oai(nullable)]
    pub referral_code: Option<Text>,
}

#[derive(Debug, Object)]
pub struct Session {
    /// RS256 JWT for `Authorization: Bearer …`.
    pub access_token: String,
    /// Single use: `POST /auth/refresh` returns a new pair.
    pub refresh_token: String,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    pub user: UserView,
    /// Present when a `referral_code` was given: whether it was taken, and if not why.
    #[oai(nullable)]
    pub referral: Option<crate::routes::referral::ReferralOutcome>,
}

#[derive(Debug, Object)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

#[derive(Debug, Object)]
pub struct RefreshRequest {
    #[oai(validator(max_length = 128))]
    pub refresh_token: Text,
}

#[derive(Debug, Object)]
pub struct LogoutResult {
    /// False if the token was unknown (already revoked, or never ours).
    pub revoked: bool,
}

fn parse_phone(raw: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(raw).map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[OpenApi(prefix_path = "/auth", tag = "Tag::Auth")]
impl AuthApi {
    /// Send a login code by SMS.
    ///
    /// Mobile numbers (`+79…`) only. One code a minute and five a day per phone, ten an
    /// hour per client address; past a limit the answer is 429 with `Retry-After`. When the
    /// system's hourly SMS budget is spent, 503 `sms_budget_exhausted`.
    #[oai(path = "/send-code", method = "post")]
    async fn send_code(
        &self,
        client: ClientIp,
        body: Json<SendCodeRequest>,
    ) -> ApiResult<SendCodeResponse, { JSON_BODY | UNPROCESSABLE | TOO_MANY_REQUESTS | SERVER }>
    {
        let state = &self.state;
        let phone = parse_phone(&body.phone)?;
        if !phone.is_mobile() {
            return Err(ApiError::unprocessable(
                "invalid_phone",
                "Login codes are sent to mobile numbers only (+7 9…).",
            )
            .into());
        }
        let windows = send_windows(state, &phone, client.0);
        match state.cache.take(&windows).await {
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable");
                return Err(ApiError::queue_unavailable().into());
            }
            Ok(Taken::Refused {
                index,
                retry_after_s,
            }) => return Err(send_refusal(index, retry_after_s, state).into()),
            Ok(Taken::Allowed { counts }) => {
                if let Some(used) = counts.get(SendWindow::Budget as usize) {
                    SMS_BUDGET_USED.set(*used as i64);
                }
            }
        }
        let code = otp_code(&mut rand::rng());
        let otp_id = Uuid::now_v7();
        let job = SendOtp::new(otp_id, phone.to_string(), &code, &state.secrets);
        let recorded = async {
            let mut tx = state.db.begin().await?;
            otp::insert(
                &mut *tx,
                otp_id,
                phone.as_ref(),
                &state.secrets.mac_hex(&[phone.as_ref(), &code]),
                OffsetDateTime::now_utc() + CODE_TTL,
            )
            .await?;
            let row = outbox::record(&mut tx, otp_id, &job, None).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        }
        .await;
        let row = match recorded {
            Ok(row) => row,
            Err(e) => {
                let _ = state.cache.give_back(&windows).await;
                return Err(e.into());
            }
        };
        if let Err(e) = outbox::relay(&state.db, &state.queue, std::slice::from_ref(&row)).await {
            if let outbox::RelayError::Queue(_) = e {
                // Nothing will be sent: take the code back so the member can simply retry.
                tracing::warn!(error = %e, "could not enqueue otp_send");
                let _ = otp::delete(&state.db, otp_id).await;
                let _ = storage::outbox::delete(&state.db, otp_id).await;
                let _ = state.cache.give_back(&windows).await;
                return Err(ApiError::queue_unavailable().into());
            }
            // Pushed, but not marked relayed: reconcile may push again, which is a no-op.
            tracing::warn!(error = %e, "otp_send enqueued but not marked relayed");
        }
        Ok(SendCodeResponse::Accepted(Json(Envelope::new(
            SendCodeAccepted {
                job_id: otp_id,
                resend_after_s: RESEND_AFTER.as_secs(),
            },
        ))))
    }

    /// Exchange the SMS code for tokens.
    ///
    /// A code is valid 5 minutes and allows 5 guesses. Whatever failed — no code, an
    /// expired, used or locked one, a wrong one — the answer is the same 401
    /// `invalid_code`. Failures are counted per client address (past the limit, 429
    /// `too_many_attempts`) and per phone, whose checks then wait longer after each one.
    /// A member blocked by an operator gets 403 `member_blocked` once her code is right.
    #[oai(path = "/verify-code", method = "post")]
    async fn verify_code(
        &self,
        client: ClientIp,
        body: Json<VerifyCodeRequest>,
    ) -> ApiResult<
        Json<Envelope<Session>>,
        { JSON_BODY | UNAUTHORIZED | FORBIDDEN | UNPROCESSABLE | TOO_MANY_REQUESTS | SERVER },
    > {
        let state = &self.state;
        let phone = parse_phone(&body.phone)?;
        let code = body.code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(
                ApiError::unprocessable("invalid_code_format", "The code is six digits.").into(),
            );
        }
        // Checked before the login code is spent: a typo here must not cost a new SMS.
        let referral_code = body
            .referral_code
            .as_deref()
            .map(|raw| raw.trim())
            .filter(|raw| !raw.is_empty())
            .map(crate::routes::referral::parse_code)
            .transpose()?;
        let ip_key = state
            .cache
            .limit_key("verify-fail-ip", &client.0.to_string());
        let phone_key = state.cache.limit_key("verify-fail-phone", phone.as_ref());
        let backoff_key = state.cache.limit_key("verify-backoff", phone.as_ref());
        let limits = &state.limits;
        for (key, limit, name) in [
            (&ip_key, limits.verify_failures_per_ip_per_hour, "verify_ip"),
            (&backoff_key, 1, "verify_backoff"),
        ] {
            match state.cache.blocked_for(key, limit).await {
                Err(e) => {
                    tracing::warn!(error = %e, "rate limiter unavailable");
                    return Err(ApiError::queue_unavailable().into());
                }
                Ok(Some(wait)) => {
                    REFUSED.with_label_values(&[name]).inc();
                    return Err(ApiError::too_many(
                        "too_many_attempts",
                        format!("Too many failed attempts; try again in {wait} s."),
                        wait,
                    )
                    .into());
                }
                Ok(None) => {}
            }
        }
        let mut tx = state.db.begin().await?;
        let otp = otp::latest_for_update(&mut tx, phone.as_ref()).await?;
        let now = OffsetDateTime::now_utc();
        let expected = state.secrets.mac_hex(&[phone.as_ref(), code]);
        let Some(otp) = otp.filter(|otp| {
            otp.consumed_at.is_none() && otp.expires_at > now && otp.attempts < MAX_ATTEMPTS
        }) else {
            drop(tx);
            return Err(failed_check(state, &ip_key, &phone_key, &backoff_key)
                .await
                .into());
        };
        if !constant_time_eq(&expected, &otp.code_hash) {
            otp::record_failed_attempt(&mut tx, otp.id).await?;
            tx.commit().await?;
            return Err(failed_check(state, &ip_key, &phone_key, &backoff_key)
                .await
                .into());
        }
        otp::consume(&mut tx, otp.id).await?;
        let user = users::find_or_create(&mut *tx, &phone).await?;
        if user.blocked_at.is_some() {
            // Told only once the code proved the phone hers; the code is spent either way.
            tx.commit().await?;
            return Err(ApiError::member_blocked().into());
        }
        let refresh_token = new_refresh_token();
        let session_id = Uuid::new_v4();
        tokens::insert(
            &mut tx,
            user.id,
            session_id,
            &refresh_token,
            OffsetDateTime::now_utc() + time::Duration::seconds(REFRESH_TTL_S),
        )
        .await?;
        tx.commit().await?;
        let referral = match &referral_code {
            Some(code) => {
                Some(crate::routes::referral::outcome_at_sign_in(state, user.id, code).await?)
            }
            None => None,
        };
        let roles = users::roles(&state.db, user.id).await?;
        let access_token = state.jwt.issue(user.id, platform_roles(&roles), session_id);
        Ok(Json(Envelope::new(Session {
            access_token,
            refresh_token,
            expires_in: ACCESS_TTL_S,
            user: user_view(user, &roles),
            referral,
        })))
    }

    /// Trade a refresh token for a new pair.
    ///
    /// The old refresh token stops working. Presenting it again revokes every token of
    /// its session: it can only have been stolen.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(
        &self,
        body: Json<RefreshRequest>,
    ) -> ApiResult<Json<Envelope<TokenPair>>, { JSON_BODY | UNAUTHORIZED | SERVER }> {
        let state = &self.state;
        let new_token = new_refresh_token();
        let rotation = tokens::rotate(
            &state.db,
            &body.refresh_token,
            &new_token,
            OffsetDateTime::now_utc() + time::Duration::seconds(REFRESH_TTL_S),
        )
        .await?;
        match rotation {
            Rotation::Rotated { user_id, family_id } => {
                let roles = users::roles(&state.db, user_id).await?;
                Ok(Json(Envelope::new(TokenPair {
                    access_token: state.jwt.issue(user_id, platform_roles(&roles), family_id),
                    refresh_token: new_token,
                    expires_in: ACCESS_TTL_S,
                })))
            }
            Rotation::Reused { family_id } => {
                // Its access tokens too, the thief's and the owner's: both sign in again.
                sessions::end(&state.revoked, &state.cache, &[family_id]).await?;
                Err(ApiError::unauthorized(
                    "refresh_token_reused",
                    "This refresh token was already used; the session is revoked. Sign in again.",
                )
                .into())
            }
            Rotation::Invalid => Err(ApiError::unauthorized(
                "invalid_refresh_token",
                "The refresh token is unknown, expired or revoked.",
            )
            .into()),
        }
    }

    /// Sign out: revokes the refresh token and ends its session, so that its access
    /// tokens stop working within seconds, here and on every server.
    #[oai(path = "/logout", method = "post")]
    async fn logout(
        &self,
        auth: Auth,
        body: Json<RefreshRequest>,
    ) -> ApiResult<Json<Envelope<LogoutResult>>, { SIGNED_IN | JSON_BODY }> {
        let state = &self.state;
        let family = tokens::revoke(&state.db, auth.user_id(), &body.refresh_token).await?;
        // The session of the access token used to sign out ends too.
        tokens::revoke_session(&state.db, auth.user_id(), auth.0.sid).await?;
        let mut ended = vec![auth.0.sid];
        ended.extend(family.filter(|f| *f != auth.0.sid));
        sessions::end(&state.revoked, &state.cache, &ended).await?;
        Ok(Json(Envelope::new(LogoutResult {
            revoked: family.is_some(),
        })))
    }
}

/// The windows a code request is counted in, in the order of [`SendWindow`].
fn send_windows(state: &AppState, phone: &PhoneNumber, client: IpAddr) -> Vec<Window> {
    let cache = &state.cache;
    let limits = &state.limits;
    vec![
        Window::requests(
            cache.otp_minute_key(phone.as_ref()),
            1,
            RESEND_AFTER.as_secs(),
        ),
        Window::requests(
            cache.limit_key("otp-phone-day", phone.as_ref()),
            limits.codes_per_phone_per_day,
            24 * 3600,
        ),
        Window::requests(
            cache.limit_key("otp-ip-hour", &client.to_string()),
            limits.codes_per_ip_per_hour,
            3600,
        ),
        Window::requests(
            cache.limit_key("sms-budget", "hour"),
            limits.sms_budget_per_hour,
            3600,
        ),
    ]
}

/// The limits of a code request, by position in [`send_windows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendWindow {
    PhoneMinute,
    PhoneDay,
    Address,
    Budget,
}

fn send_refusal(index: usize, retry_after_s: u64, state: &AppState) -> ApiError {
    let window = [
        SendWindow::PhoneMinute,
        SendWindow::PhoneDay,
        SendWindow::Address,
        SendWindow::Budget,
    ][index.min(3)];
    let (limit, error) = match window {
        SendWindow::PhoneMinute => (
            "otp_phone_minute",
            ApiError::too_many(
                "too_many_requests",
                format!("A code was sent recently; ask again in {retry_after_s} s."),
                retry_after_s,
            ),
        ),
        SendWindow::PhoneDay => (
            "otp_phone_day",
            ApiError::too_many(
                "too_many_requests",
                format!(
                    "At most {} codes a day go to one number; ask again in {retry_after_s} s.",
                    state.limits.codes_per_phone_per_day
                ),
                retry_after_s,
            ),
        ),
        SendWindow::Address => (
            "otp_ip_hour",
            ApiError::too_many(
                "too_many_requests",
                format!("Too many codes requested from here; ask again in {retry_after_s} s."),
                retry_after_s,
            ),
        ),
        SendWindow::Budget => {
            tracing::error!(
                budget = state.limits.sms_budget_per_hour,
                "the hourly SMS budget is spent: login codes refused"
            );
            SMS_BUDGET_USED.set(state.limits.sms_budget_per_hour as i64);
            (
                "sms_budget",
                ApiError::Unavailable(Json(crate::envelope::ErrorEnvelope::new(
                    "sms_budget_exhausted",
                    "Login codes cannot be sent right now; try again later.",
                ))),
            )
        }
    };
    REFUSED.with_label_values(&[limit]).inc();
    error
}

/// Counts a failed code check (against the address, and the phone's back-off) and gives
/// the one answer every failure gets.
async fn failed_check(
    state: &AppState,
    ip_key: &str,
    phone_key: &str,
    backoff_key: &str,
) -> ApiError {
    if let Err(e) = state
        .cache
        .login_failed(
            ip_key,
            3600,
            phone_key,
            backoff_key,
            &state.limits.verify_backoff,
        )
        .await
    {
        tracing::warn!(error = %e, "a failed login check was not counted");
    }
    ApiError::unauthorized(
        "invalid_code",
        "The code is wrong or no longer valid; check it or request a new one.",
    )
}

/// The platform roles that go into access tokens.
pub(crate) fn platform_roles(roles: &[users::Role]) -> Vec<String> {
    roles
        .iter()
        .filter_map(|r| match r {
            users::Role::Platform(role) => Some(role.as_str().to_owned()),
            users::Role::Business { .. } => None,
        })
        .collect()
}
