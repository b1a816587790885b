//! The bearer security schemes and role checks of every operation: a token is checked by
//! `jwt::JwtKeys` and refused when its session has ended (`crate::sessions`).

use crate::{error::ApiError, jwt::Claims, state::AppState};
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use std::sync::Arc;
use uuid::Uuid;

/// Any signed-in user (a member, staff or an operator).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct Auth(pub Claims);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let state = req
        .data::<Arc<AppState>>()
        .expect("the app registers its state as request data");
    let claims = state.jwt.verify(&bearer.token)?;
    if state.revoked.contains(claims.sid) {
        // Blocking a member ends her sessions: her tokens then say why they stopped working
        // (only ended sessions pay for this read).
        if storage::users::is_blocked(&state.db, claims.sub)
            .await
            .map_err(ApiError::from)?
        {
            return Err(ApiError::member_blocked().into());
        }
        return Err(ApiError::unauthorized(
            "session_revoked",
            "This session has ended; sign in again.",
        )
        .into());
    }
    Ok(claims)
}

/// An operator (superadmin or moderator): any other valid token gets 403 before the request
/// is even read.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_operator")]
pub struct Operator(pub Claims);

async fn check_operator(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let claims = check_bearer(req, bearer).await?;
    if claims.is_operator() {
        Ok(claims)
    } else {
        Err(ApiError::forbidden("This needs the superadmin or moderator role.").into())
    }
}

impl Operator {
    pub fn user_id(&self) -> Uuid {
        self.0.user_id()
    }
}

/// A superadmin: what changes the coalition (businesses, staff, CRM settings, promo chains,
/// schedules) is theirs alone. A moderator reads everything, retries and discards jobs,
/// approves events and blocks members (DESIGN.md), and gets 403 `forbidden` here.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_superadmin")]
pub struct Superadmin(pub Claims);

async fn check_superadmin(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let claims = check_bearer(req, bearer).await?;
    if claims.is_superadmin() {
        Ok(claims)
    } else {
        Err(ApiError::forbidden("This needs the superadmin role.").into())
    }
}

impl Superadmin {
    pub fn user_id(&self) -> Uuid {
        self.0.user_id()
    }
}

impl Auth {
    pub fn user_id(&self) -> Uuid {
        self.0.user_id()
    }

    /// Superadmins and moderators.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.0.is_operator() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "This needs the superadmin or moderator role.",
            ))
        }
    }
}
