//! The partner catalog, and what business staff do: issue QR codes for checks.

use crate::{
    auth::Auth,
    envelope::Envelope,
    error::{ApiError, ApiResult},
    routes::{loyalty::QR_CODE_LEN, positive_money},
    state::AppState,
    wire::Amount,
};
use domain::codes::human_code;
use poem_openapi::{Object, OpenApi, Tags, param::Path, payload::Json};
use std::{sync::Arc, time::Duration};
use storage::{
    businesses::{self, Business},
    cache::QrCode,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// A QR code is valid five minutes.
pub const QR_VALIDITY: Duration = Duration::from_secs(5 * 60);
/// Redis keeps it a while longer, so that a scan made in time but processed late can still
/// see what it scanned (and be judged by its scan time).
const QR_KEEP_EXTRA: Duration = Duration::from_secs(15 * 60);

#[derive(Tags)]
enum Tag {
    /// Partner businesses.
    Businesses,
}

pub struct BusinessApi {
    pub state: Arc<AppState>,
}

/// The catalog entry members see.
#[derive(Debug, Object)]
pub struct CatalogEntry {
    pub id: Uuid,
    pub name: String,
    pub category: String,
    pub cashback_percent: Amount,
    pub max_redeem_percent: Amount,
}

fn catalog_entry(b: Business) -> CatalogEntry {
    CatalogEntry {
        id: b.id,
        name: b.name,
        category: b.category,
        cashback_percent: b.cashback_percent.into(),
        max_redeem_percent: b.max_redeem_percent.into(),
    }
}

#[derive(Debug, Object)]
pub struct CatalogList {
    pub items: Vec<CatalogEntry>,
}

#[derive(Debug, Object)]
pub struct IssueQrRequest {
    /// The check, roubles.
    pub amount: Amount,
    /// Needed only by people on the staff of several businesses.
    #[oai(nullable)]
    pub business_id: Option<Uuid>,
}

#[derive(Debug, Object)]
pub struct IssuedQr {
    /// Show it as a QR code (or read it out): single use.
    pub code: String,
    pub expires_at: OffsetDateTime,
    pub business_id: Uuid,
    pub amount: Amount,
}

#[OpenApi(tag = "Tag::Businesses")]
impl BusinessApi {
    /// The partner businesses.
    #[oai(path = "/businesses", method = "get")]
    async fn list(&self, _auth: Auth) -> ApiResult<Json<Envelope<CatalogList>>> {
        let items = businesses::list_active(&self.state.db).await?;
        Ok(Json(Envelope::new(CatalogList {
            items: items.into_iter().map(catalog_entry).collect(),
        })))
    }

    /// One partner business.
    #[oai(path = "/businesses/:id", method = "get")]
    async fn get(&self, _auth: Auth, id: Path<Uuid>) -> ApiResult<Json<Envelope<CatalogEntry>>> {
        let business = businesses::get(&self.state.db, id.0)
            .await?
            .filter(|b| b.is_active)
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        Ok(Json(Envelope::new(catalog_entry(business))))
    }

    /// Issue a one-time QR code for a check (owners and staff of the business).
    #[oai(path = "/business/qr", method = "post")]
    async fn issue_qr(
        &self,
        auth: Auth,
        body: Json<IssueQrRequest>,
    ) -> ApiResult<Json<Envelope<IssuedQr>>> {
        let state = &self.state;
        let amount = positive_money(body.amount.value(), "amount")?;
        let mine = businesses::staffed_by(&state.db, auth.user_id(), &["owner", "staff"]).await?;
        let business_id = match (body.business_id, mine.as_slice()) {
            (_, []) => {
                return Err(ApiError::forbidden(
                    "Only owners and staff of a business issue QR codes.",
                ));
            }
            (Some(id), mine) if mine.contains(&id) => id,
            (Some(_), _) => {
                return Err(ApiError::forbidden(
                    "You are not on the staff of this business.",
                ));
            }
            (None, [only]) => *only,
            (None, _) => {
                return Err(ApiError::unprocessable(
                    "business_required",
                    "You are on the staff of several businesses: say which one (business_id).",
                ));
            }
        };
        let business = businesses::get(&state.db, business_id)
            .await?
            .filter(|b| b.is_active)
            .ok_or_else(|| {
                ApiError::not_found("business_not_found", "This business is not active.")
            })?;
        let expires_at = OffsetDateTime::now_utc() + QR_VALIDITY;
        let qr = QrCode {
            business_id: business.id,
            amount: amount.amount(),
            issued_by: auth.user_id(),
            expires_at,
        };
        // 31^12 codes: a collision is all but impossible, and SET NX catches it if it happens.
        for _ in 0..3 {
            let code = human_code(&mut rand::rng(), QR_CODE_LEN);
            let stored = state
                .cache
                .put_qr(&code, &qr, QR_VALIDITY + QR_KEEP_EXTRA)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "QR store unavailable");
                    ApiError::queue_unavailable()
                })?;
            if stored {
                return Ok(Json(Envelope::new(IssuedQr {
                    code,
                    expires_at,
                    business_id: business.id,
                    amount: qr.amount.into(),
                })));
            }
        }
        Err(ApiError::internal(anyhow::anyhow!(
            "three QR code collisions in a row"
        )))
    }
}
