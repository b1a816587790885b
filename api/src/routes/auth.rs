//! `/auth`: SMS login and token rotation.

use crate::{
    auth::{ACCESS_TTL_S, Auth, REFRESH_TTL_S},
    envelope::Envelope,
    error::{ApiError, ApiResult},
    routes::users::{UserView, user_view},
    state::AppState,
    wire::Text,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use domain::{PhoneNumber, codes::otp_code};
use jobs::{handlers::otp::SendOtp, outbox};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, payload::Json};
use rand::RngCore;
use std::{sync::Arc, time::Duration};
use storage::{
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
    /// One code a minute per phone; a second request within that minute is answered 429
    /// with `Retry-After`.
    #[oai(path = "/send-code", method = "post")]
    async fn send_code(&self, body: Json<SendCodeRequest>) -> ApiResult<SendCodeResponse> {
        let state = &self.state;
        let phone = parse_phone(&body.phone)?;
        match state
            .cache
            .claim_otp_send(phone.as_ref(), RESEND_AFTER)
            .await
        {
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable");
                return Err(ApiError::queue_unavailable());
            }
            Ok(Some(wait)) => {
                return Err(ApiError::too_many(
                    "too_many_requests",
                    format!("A code was sent recently; ask again in {wait} s."),
                    wait,
                ));
            }
            Ok(None) => {}
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
                let _ = state.cache.release_otp_send(phone.as_ref()).await;
                return Err(e.into());
            }
        };
        if let Err(e) = outbox::relay(&state.db, &state.queue, std::slice::from_ref(&row)).await {
            if let outbox::RelayError::Queue(_) = e {
                // Nothing will be sent: take the code back so the member can simply retry.
                tracing::warn!(error = %e, "could not enqueue otp_send");
                let _ = otp::delete(&state.db, otp_id).await;
                let _ = storage::outbox::delete(&state.db, otp_id).await;
                let _ = state.cache.release_otp_send(phone.as_ref()).await;
                return Err(ApiError::queue_unavailable());
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
    /// A code is valid 5 minutes; 5 wrong attempts lock it (request a new one).
    #[oai(path = "/verify-code", method = "post")]
    async fn verify_code(
        &self,
        body: Json<VerifyCodeRequest>,
    ) -> ApiResult<Json<Envelope<Session>>> {
        let state = &self.state;
        let phone = parse_phone(&body.phone)?;
        let code = body.code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::unprocessable(
                "invalid_code_format",
                "The code is six digits.",
            ));
        }
        let mut tx = state.db.begin().await?;
        let Some(otp) = otp::latest_for_update(&mut tx, phone.as_ref()).await? else {
            return Err(ApiError::unauthorized(
                "invalid_code",
                "No code was sent to this number.",
            ));
        };
        if otp.consumed_at.is_some() || otp.expires_at <= OffsetDateTime::now_utc() {
            return Err(ApiError::unauthorized(
                "code_expired",
                "The code has expired; request a new one.",
            ));
        }
        if otp.attempts >= MAX_ATTEMPTS {
            return Err(ApiError::too_many(
                "too_many_attempts",
                "Too many wrong attempts; request a new code.",
                RESEND_AFTER.as_secs(),
            ));
        }
        let expected = state.secrets.mac_hex(&[phone.as_ref(), code]);
        if !constant_time_eq(&expected, &otp.code_hash) {
            let attempts = otp::record_failed_attempt(&mut tx, otp.id).await?;
            tx.commit().await?;
            let left = MAX_ATTEMPTS - attempts;
            return Err(if left <= 0 {
                ApiError::too_many(
                    "too_many_attempts",
                    "Too many wrong attempts; request a new code.",
                    RESEND_AFTER.as_secs(),
                )
            } else {
                ApiError::unauthorized("invalid_code", format!("Wrong code; {left} attempts left."))
            });
        }
        otp::consume(&mut tx, otp.id).await?;
        let user = users::find_or_create(&mut *tx, &phone).await?;
        let refresh_token = new_refresh_token();
        tokens::insert(
            &mut tx,
            user.id,
            Uuid::new_v4(),
            &refresh_token,
            OffsetDateTime::now_utc() + time::Duration::seconds(REFRESH_TTL_S),
        )
        .await?;
        tx.commit().await?;
        let roles = users::roles(&state.db, user.id).await?;
        let access_token = state.jwt.issue(user.id, platform_roles(&roles));
        Ok(Json(Envelope::new(Session {
            access_token,
            refresh_token,
            expires_in: ACCESS_TTL_S,
            user: user_view(user, &roles),
        })))
    }

    /// Trade a refresh token for a new pair.
    ///
    /// The old refresh token stops working. Presenting it again revokes every token of
    /// its session: it can only have been stolen.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(&self, body: Json<RefreshRequest>) -> ApiResult<Json<Envelope<TokenPair>>> {
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
            Rotation::Rotated { user_id } => {
                let roles = users::roles(&state.db, user_id).await?;
                Ok(Json(Envelope::new(TokenPair {
                    access_token: state.jwt.issue(user_id, platform_roles(&roles)),
                    refresh_token: new_token,
                    expires_in: ACCESS_TTL_S,
                })))
            }
            Rotation::Reused => Err(ApiError::unauthorized(
                "refresh_token_reused",
                "This refresh token was already used; the session is revoked. Sign in again.",
            )),
            Rotation::Invalid => Err(ApiError::unauthorized(
                "invalid_refresh_token",
                "The refresh token is unknown, expired or revoked.",
            )),
        }
    }

    /// Sign out: revokes the refresh token (and its session).
    #[oai(path = "/logout", method = "post")]
    async fn logout(
        &self,
        auth: Auth,
        body: Json<RefreshRequest>,
    ) -> ApiResult<Json<Envelope<LogoutResult>>> {
        let revoked = tokens::revoke(&self.state.db, auth.user_id(), &body.refresh_token).await?;
        Ok(Json(Envelope::new(LogoutResult { revoked })))
    }
}

/// The platform roles that go into access tokens.
pub(crate) fn platform_roles(roles: &[users::Role]) -> Vec<String> {
    roles
        .iter()
        .filter_map(|r| match r {
            users::Role::Platform(name) => Some(name.clone()),
            users::Role::Business { .. } => None,
        })
        .collect()
}
