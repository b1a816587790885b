//! The partner catalog, and what business staff do: issue QR codes for checks.

use crate::{
    auth::Auth,
    envelope::Envelope,
    error::{ApiError, ApiResult, BAD_REQUEST, JSON_BODY, NOT_FOUND, SIGNED_IN, UNPROCESSABLE},
    limits::REFUSED,
    routes::{
        loyalty::QR_CODE_LEN,
        media::{ImageView, image_views},
        partner::acting_for,
        positive_money,
    },
    state::AppState,
    wire::Amount,
};
use domain::{codes::human_code, media::Purpose, roles::Right};
use poem_openapi::{Object, OpenApi, Tags, param::Path, payload::Json};
use rust_decimal::{Decimal, prelude::ToPrimitive};
use std::{sync::Arc, time::Duration};
use storage::{
    businesses::{self, Business},
    cache::QrCode,
    fraud,
    limits::{Taken, Window},
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
    /// The logo (first) and photos.
    pub images: Vec<ImageView>,
}

fn catalog_entry(b: Business, images: Vec<ImageView>) -> CatalogEntry {
    CatalogEntry {
        id: b.id,
        name: b.name,
        category: b.category.as_str().to_owned(),
        cashback_percent: b.cashback_percent.into(),
        max_redeem_percent: b.max_redeem_percent.into(),
        images,
    }
}

impl BusinessApi {
    /// Catalog entries with their ready images, logo first.
    async fn catalog(&self, businesses: Vec<Business>) -> Result<Vec<CatalogEntry>, ApiError> {
        let ids: Vec<Uuid> = businesses.iter().map(|b| b.id).collect();
        let mut media = storage::media::of_businesses(&self.state.db, &ids).await?;
        media.sort_by_key(|m| m.purpose != Purpose::BusinessLogo);
        let mut entries = Vec::with_capacity(businesses.len());
        for business in businesses {
            let own: Vec<_> = media
                .iter()
                .filter(|m| m.business_id == Some(business.id))
                .cloned()
                .collect();
            let images = image_views(&self.state.objects, &own).await;
            entries.push(catalog_entry(business, images));
        }
        Ok(entries)
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
    async fn list(&self, _auth: Auth) -> ApiResult<Json<Envelope<CatalogList>>, SIGNED_IN> {
        let items = businesses::list_active(&self.state.db).await?;
        Ok(Json(Envelope::new(CatalogList {
            items: self.catalog(items).await?,
        })))
    }

    /// One partner business.
    #[oai(path = "/businesses/:id", method = "get")]
    async fn get(
        &self,
        _auth: Auth,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<CatalogEntry>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND }> {
        let business = businesses::get(&self.state.db, id.0)
            .await?
            .filter(|b| b.is_active)
            .ok_or_else(|| ApiError::not_found("business_not_found", "No such business."))?;
        let entry = self.catalog(vec![business]).await?.remove(0);
        Ok(Json(Envelope::new(entry)))
    }

    /// Issue a one-time QR code for a check (owners and staff of the business).
    #[oai(path = "/business/qr", method = "post")]
    async fn issue_qr(
        &self,
        auth: Auth,
        body: Json<IssueQrRequest>,
    ) -> ApiResult<Json<Envelope<IssuedQr>>, { SIGNED_IN | JSON_BODY | NOT_FOUND | UNPROCESSABLE }>
    {
        let state = &self.state;
        let amount = positive_money(body.amount.value(), "amount")?;
        let (business_id, _) = acting_for(state, &auth, body.business_id, Right::IssueQr).await?;
        let business = businesses::get(&state.db, business_id)
            .await?
            .filter(|b| b.is_active)
            .ok_or_else(|| {
                ApiError::not_found("business_not_found", "This business is not active.")
            })?;
        if amount.amount() > business.max_check_amount {
            return Err(ApiError::unprocessable(
                "amount_over_limit",
                format!(
                    "A check at this business is at most {} ₽.",
                    business.max_check_amount
                ),
            )
            .into());
        }
        // The day's total of this staff member's codes at this business, in kopecks.
        let today = domain::local_time::today(state.timezone);
        let day_total = Window {
            key: state.cache.limit_key(
                "qr-staff-day",
                &format!("{}:{}:{today}", business.id, auth.user_id()),
            ),
            limit: kopecks(state.limits.staff_qr_daily_total),
            seconds: 2 * 24 * 3600,
            cost: kopecks(amount.amount()),
        };
        match state.cache.take(std::slice::from_ref(&day_total)).await {
            Err(e) => {
                tracing::warn!(error = %e, "QR store unavailable");
                return Err(ApiError::queue_unavailable().into());
            }
            Ok(Taken::Refused { .. }) => {
                REFUSED.with_label_values(&["staff_qr_daily_total"]).inc();
                fraud::record(
                    &state.db,
                    &[fraud::NewFlag {
                        kind: fraud::FlagKind::StaffDailyLimit,
                        business_id: business.id,
                        staff_id: Some(auth.user_id()),
                        member_id: None,
                        amount: amount.amount(),
                        transaction_id: None,
                    }],
                )
                .await?;
                return Err(ApiError::unprocessable(
                    "staff_daily_limit",
                    format!(
                        "Your QR codes of today would pass {} ₽; an owner or operator can help.",
                        state.limits.staff_qr_daily_total
                    ),
                )
                .into());
            }
            Ok(Taken::Allowed { .. }) => {}
        }
        let issued = issue_code(state, &business, amount.amount(), auth.user_id()).await;
        if issued.is_err() {
            let _ = state
                .cache
                .give_back(std::slice::from_ref(&day_total))
                .await;
        }
        Ok(issued?)
    }
}

/// Whole kopecks of an amount (money has at most two decimals).
fn kopecks(amount: Decimal) -> u64 {
    (amount * Decimal::ONE_HUNDRED)
        .trunc()
        .to_u64()
        .unwrap_or(u64::MAX)
}

/// Stores a new one-time code for `amount` at `business`, issued by `staff`.
async fn issue_code(
    state: &AppState,
    business: &Business,
    amount: Decimal,
    staff: Uuid,
) -> Result<Json<Envelope<IssuedQr>>, ApiError> {
    let expires_at = OffsetDateTime::now_utc() + QR_VALIDITY;
    let qr = QrCode {
        business_id: business.id,
        amount,
        issued_by: staff,
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
