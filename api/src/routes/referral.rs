//! Referral: `GET /users/me/referral` (the member's code, link and counts) and
//! `POST /users/me/referrer` (naming who invited her, within 7 days of sign-up; also taken as
//! `referral_code` at `POST /auth/verify-code`).

use crate::{
    auth::Auth,
    envelope::Envelope,
    error::{ApiError, ApiResult, CONFLICT, JSON_BODY, NOT_FOUND, SIGNED_IN, UNPROCESSABLE},
    state::AppState,
    wire::Text,
};
use domain::referral::ReferralCode;
use poem_openapi::{Object, OpenApi, Tags, payload::Json};
use std::sync::Arc;
use storage::{
    referrals::{self, TakeRefusal},
    users,
};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// The signed-in user.
    Users,
}

pub struct ReferralApi {
    pub state: Arc<AppState>,
}

/// The member's invitation: her code, a link carrying it, and what came of it.
#[derive(Debug, Object)]
pub struct ReferralView {
    pub code: String,
    pub link: String,
    /// Members who named her as their inviter.
    pub invited: i64,
    /// Of those, invitations rewarded (both sides got the referral bonus).
    pub rewarded: i64,
}

#[derive(Debug, Object)]
pub struct TakeReferrer {
    /// The inviter's referral code (8 letters and digits; case and spaces do not matter).
    #[oai(validator(max_length = 32))]
    pub code: Text,
}

/// The inviter now on record.
#[derive(Debug, Object)]
pub struct ReferrerView {
    pub code: String,
}

/// What became of a `referral_code` given at sign-in.
#[derive(Debug, Object)]
pub struct ReferralOutcome {
    pub taken: bool,
    /// Why not: `referral_code_not_found`, `own_referral_code`, `referrer_already_set`,
    /// `referral_window_closed`.
    #[oai(nullable)]
    pub error: Option<String>,
}

/// Reads a code as typed; 422 `invalid_referral_code` otherwise.
pub(crate) fn parse_code(raw: &str) -> Result<ReferralCode, ApiError> {
    ReferralCode::parse(raw)
        .map_err(|e| ApiError::unprocessable("invalid_referral_code", e.to_string()))
}

fn refusal_error(refusal: TakeRefusal) -> ApiError {
    match refusal {
        TakeRefusal::UnknownCode => ApiError::not_found(
            "referral_code_not_found",
            "No member has this referral code.",
        ),
        TakeRefusal::OwnCode => {
            ApiError::unprocessable("own_referral_code", "This is your own referral code.")
        }
        TakeRefusal::AlreadyTaken => {
            ApiError::conflict("referrer_already_set", "You already named who invited you.")
        }
        TakeRefusal::WindowClosed => ApiError::conflict(
            "referral_window_closed",
            "An inviter can be named only within 7 days of signing up.",
        ),
    }
}

fn refusal_code(refusal: TakeRefusal) -> &'static str {
    match refusal {
        TakeRefusal::UnknownCode => "referral_code_not_found",
        TakeRefusal::OwnCode => "own_referral_code",
        TakeRefusal::AlreadyTaken => "referrer_already_set",
        TakeRefusal::WindowClosed => "referral_window_closed",
    }
}

/// Records that the owner of `code` invited `invitee`.
pub(crate) async fn take(
    state: &AppState,
    invitee: Uuid,
    code: &ReferralCode,
) -> Result<Result<Uuid, TakeRefusal>, ApiError> {
    let (rules, _) = referrals::rules(&state.db).await?;
    let mut tx = state.db.begin().await?;
    let taken = referrals::take(&mut tx, invitee, code, &rules, OffsetDateTime::now_utc()).await?;
    if taken.is_ok() {
        tx.commit().await?;
    }
    Ok(taken)
}

/// What sign-in answers about the code it was given (sign-in itself never fails for it).
pub(crate) async fn outcome_at_sign_in(
    state: &AppState,
    invitee: Uuid,
    code: &ReferralCode,
) -> Result<ReferralOutcome, ApiError> {
    Ok(match take(state, invitee, code).await? {
        Ok(_) => ReferralOutcome {
            taken: true,
            error: None,
        },
        Err(refusal) => ReferralOutcome {
            taken: false,
            error: Some(refusal_code(refusal).to_owned()),
        },
    })
}

#[OpenApi(prefix_path = "/users", tag = "Tag::Users")]
impl ReferralApi {
    /// The member's referral code and link, how many she invited and how many of those
    /// invitations were rewarded. The code is made the first time she asks.
    #[oai(path = "/me/referral", method = "get")]
    async fn referral(
        &self,
        auth: Auth,
    ) -> ApiResult<Json<Envelope<ReferralView>>, { SIGNED_IN | NOT_FOUND }> {
        let state = &self.state;
        let user = users::get(&state.db, auth.user_id())
            .await?
            .ok_or_else(|| {
                ApiError::not_found("user_not_found", "This account no longer exists.")
            })?;
        let (_, link_base) = referrals::rules(&state.db).await?;
        let code = referrals::code_of(&state.db, user.id).await?;
        let (invited, rewarded) = referrals::counts(&state.db, user.id).await?;
        Ok(Json(Envelope::new(ReferralView {
            link: format!("{link_base}{code}"),
            code,
            invited,
            rewarded,
        })))
    }

    /// Name who invited you, by their code, within 7 days of signing up. Naming the same
    /// inviter again changes nothing; another one is 409 `referrer_already_set`, after the
    /// window 409 `referral_window_closed`, your own code 422 `own_referral_code`, an
    /// unknown one 404 `referral_code_not_found`.
    #[oai(path = "/me/referrer", method = "post")]
    async fn referrer(
        &self,
        auth: Auth,
        body: Json<TakeReferrer>,
    ) -> ApiResult<
        Json<Envelope<ReferrerView>>,
        { SIGNED_IN | JSON_BODY | NOT_FOUND | CONFLICT | UNPROCESSABLE },
    > {
        let code = parse_code(&body.code)?;
        match take(&self.state, auth.user_id(), &code).await? {
            Ok(_) => Ok(Json(Envelope::new(ReferrerView {
                code: code.as_ref().to_owned(),
            }))),
            Err(refusal) => Err(refusal_error(refusal).into()),
        }
    }
}
