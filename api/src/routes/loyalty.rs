//! The member's money: balance, ledger, purchases, and QR scans.

use crate::{
    auth::Auth,
    balances::{BalanceView, ExpiringView, NextTierView},
    envelope::{Envelope, Page},
    error::{
        ApiError, ApiResult, BAD_REQUEST, JSON_BODY, NOT_FOUND, SIGNED_IN, TOO_MANY_REQUESTS,
        UNPROCESSABLE,
    },
    limits::REFUSED,
    routes::{page_limit, parse_cursor},
    state::AppState,
    wire::Amount,
    wire::Text,
};
use domain::local_time::start_of_day;
use domain::{Money, Tier, codes::is_human_code};
use jobs::handlers::scan::ScanQr;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use rust_decimal::Decimal;
use std::sync::Arc;
use storage::{
    fraud,
    limits::{Taken, Window},
    loyalty, scans, tiers, users,
};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// Length of the codes on staff QR screens.
pub const QR_CODE_LEN: usize = 12;

#[derive(Tags)]
enum Tag {
    /// Bonuses and purchases.
    Loyalty,
}

pub struct LoyaltyApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct LedgerEntryView {
    pub id: Uuid,
    /// `accrual`, `redemption`, `reversal`, `expiry`, `adjustment` or `referral`.
    pub kind: String,
    /// Signed: negative for redemptions, reversals and expiries.
    pub amount: Amount,
    #[oai(nullable)]
    pub transaction_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

impl From<storage::loyalty::LedgerEntry> for LedgerEntryView {
    fn from(e: storage::loyalty::LedgerEntry) -> Self {
        Self {
            id: e.id,
            kind: e.kind.as_str().to_owned(),
            amount: e.amount.into(),
            transaction_id: e.transaction_id,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct TransactionView {
    pub id: Uuid,
    pub business_id: Uuid,
    pub amount: Amount,
    pub bonus_accrued: Amount,
    pub bonus_redeemed: Amount,
    /// `purchase` or `refund`.
    pub transaction_type: String,
    pub created_at: OffsetDateTime,
}

// The wire form of `domain::loyalty::TransactionType`, which knows nothing of poem-openapi.
/// A kind of transaction, to filter the history by.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum TransactionType {
    Purchase,
    Refund,
}

impl From<TransactionType> for domain::loyalty::TransactionType {
    fn from(t: TransactionType) -> Self {
        match t {
            TransactionType::Purchase => Self::Purchase,
            TransactionType::Refund => Self::Refund,
        }
    }
}

#[derive(Debug, Object)]
pub struct ScanRequestBody {
    /// The code on the staff member's screen.
    #[oai(validator(max_length = 64))]
    pub code: Text,
    /// Bonuses to spend on this check (1 bonus = 1 ₽).
    #[oai(nullable)]
    pub redeem_bonus: Option<Amount>,
    /// One of `GET /coupons`.
    #[oai(nullable)]
    pub coupon_id: Option<Uuid>,
}

#[derive(Debug, Object)]
pub struct ScanAccepted {
    /// Poll `GET /transactions/scan/{job_id}`.
    pub job_id: Uuid,
}

#[derive(ApiResponse)]
pub enum ScanResponse {
    /// The scan is queued.
    #[oai(status = 202)]
    Accepted(Json<Envelope<ScanAccepted>>),
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ScanState {
    Pending,
    Processing,
    Done,
    Failed,
}

/// What a finished scan came to.
#[derive(Debug, Object)]
pub struct ScanResultView {
    pub transaction_id: Uuid,
    pub business_id: Uuid,
    pub amount: Amount,
    pub bonus_redeemed: Amount,
    pub coupon_discount: Amount,
    pub bonus_accrued: Amount,
    /// The balance after this purchase.
    pub balance: Amount,
    pub status_tier: String,
}

#[derive(Debug, Object)]
pub struct ScanError {
    /// `code_expired`, `code_already_used`, `insufficient_balance`, `redeem_limit_exceeded`, …
    pub code: String,
    pub message: String,
}

#[derive(Debug, Object)]
pub struct ScanStatus {
    pub state: ScanState,
    #[oai(nullable)]
    pub result: Option<ScanResultView>,
    #[oai(nullable)]
    pub error: Option<ScanError>,
}

#[derive(Debug, Object)]
pub struct CouponView {
    pub id: Uuid,
    /// What to name at the counter (or the app sends as `coupon_id` with a scan).
    pub code: String,
    /// Where it can be used.
    pub business_id: Uuid,
    /// `percent`, `fixed` (roubles off) or `bonus` (bonuses credited on use).
    pub discount_type: String,
    pub discount_value: Amount,
    pub expires_at: OffsetDateTime,
    /// Always absent here: used coupons are not listed.
    #[oai(nullable)]
    pub redeemed_at: Option<OffsetDateTime>,
    /// The cross-promo chain that issued it.
    #[oai(nullable)]
    pub source_chain_id: Option<Uuid>,
}

#[derive(Debug, Object)]
pub struct CouponList {
    pub items: Vec<CouponView>,
}

#[OpenApi(tag = "Tag::Loyalty")]
impl LoyaltyApi {
    /// My coupons that can still be used, soonest to expire first.
    #[oai(path = "/coupons", method = "get")]
    async fn coupons(&self, auth: Auth) -> ApiResult<Json<Envelope<CouponList>>, SIGNED_IN> {
        let coupons = storage::coupons::active_for_user(&self.state.db, auth.user_id()).await?;
        Ok(Json(Envelope::new(CouponList {
            items: coupons
                .into_iter()
                .map(|c| CouponView {
                    id: c.id,
                    code: c.code,
                    business_id: c.business_id,
                    discount_type: c.discount_type.as_str().to_owned(),
                    discount_value: c.discount_value.into(),
                    expires_at: c.expires_at,
                    redeemed_at: c.redeemed_at,
                    source_chain_id: c.source_chain_id,
                })
                .collect(),
        })))
    }

    /// Bonus balance, lifetime totals and progress to the next tier.
    #[oai(path = "/loyalty/balance", method = "get")]
    async fn balance(
        &self,
        auth: Auth,
    ) -> ApiResult<Json<Envelope<BalanceView>>, { SIGNED_IN | NOT_FOUND }> {
        let db = &self.state.db;
        let user_id = auth.user_id();
        let (cached, epoch) = self.state.balances.get(user_id);
        if let Some(view) = cached {
            return Ok(Json(Envelope::new(view)));
        }
        let member = [user_id];
        let expiry = domain::lots::ExpiryRule {
            days: self.state.bonus_expiry_days,
        };
        let (user, balance, pending, expiring, stats, rules) = tokio::try_join!(
            users::get(db, user_id),
            loyalty::balance(db, user_id),
            storage::ledger::pending_total(db, user_id),
            storage::ledger::expiring(db, user_id, expiry),
            tiers::member_stats(db, &member),
            tiers::rules(db),
        )?;
        let user = user.ok_or_else(|| {
            ApiError::not_found("user_not_found", "This account no longer exists.")
        })?;
        let tier: Tier = user.tier();
        let stats = stats.get(&user_id).copied().unwrap_or_default();
        let next_tier = rules
            .next(tier, stats.spend, stats.categories)
            .map(|next| NextTierView {
                name: next.tier.as_str().to_owned(),
                spend_needed: next.spend_needed.into(),
                categories_needed: next.categories_needed,
            });
        let view = BalanceView {
            balance: balance.balance.into(),
            pending: pending.into(),
            expiring: expiring.map(|(amount, at)| ExpiringView {
                amount: amount.into(),
                at,
            }),
            lifetime_earned: balance.lifetime_earned.into(),
            lifetime_spent: balance.lifetime_spent.into(),
            status_tier: tier.as_str().to_owned(),
            next_tier,
        };
        self.state.balances.keep(user_id, view.clone(), epoch);
        Ok(Json(Envelope::new(view)))
    }

    /// Bonus ledger, newest first.
    #[oai(path = "/loyalty/ledger", method = "get")]
    async fn ledger(
        &self,
        auth: Auth,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<Page<LedgerEntryView>>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }>
    {
        let (user_id, after, limit) = (
            auth.user_id(),
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        );
        let page = self
            .state
            .history
            .read(|db| async move { loyalty::ledger_page(&db, user_id, after, limit).await })
            .await?;
        Ok(Json(Envelope::new(Page {
            items: page.items.into_iter().map(LedgerEntryView::from).collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Purchases and refunds, newest first. Filters: `business_id`, `from` and `to` (local
    /// dates in `KRUG_TIMEZONE`, both included, of when the purchase happened) and `type`
    /// (`purchase` or `refund`).
    #[oai(path = "/transactions", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn transactions(
        &self,
        auth: Auth,
        business_id: Query<Option<Uuid>>,
        from: Query<Option<Date>>,
        to: Query<Option<Date>>,
        #[oai(name = "type")] transaction_type: Query<Option<TransactionType>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<Page<TransactionView>>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }>
    {
        let tz = self.state.timezone;
        if let (Some(from), Some(to)) = (from.0, to.0)
            && from > to
        {
            return Err(
                ApiError::unprocessable("invalid_range", "from must not be after to").into(),
            );
        }
        let filter = loyalty::HistoryFilter {
            business_id: business_id.0,
            from: from.0.map(|d| start_of_day(tz, d)),
            // `to` is included: the window ends where the next day begins.
            until: to
                .0
                .and_then(Date::next_day)
                .map(|next| start_of_day(tz, next)),
            transaction_type: transaction_type.0.map(Into::into),
        };
        let (user_id, after, limit) = (
            auth.user_id(),
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        );
        let page = self
            .state
            .history
            .read(|db| async move {
                loyalty::transactions_page(&db, user_id, filter, after, limit).await
            })
            .await?;
        Ok(Json(Envelope::new(Page {
            items: page
                .items
                .into_iter()
                .map(|t| TransactionView {
                    id: t.id,
                    business_id: t.business_id,
                    amount: t.amount.into(),
                    bonus_accrued: t.bonus_accrued.into(),
                    bonus_redeemed: t.bonus_redeemed.into(),
                    transaction_type: t.transaction_type.as_str().to_owned(),
                    created_at: t.created_at,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Scan a staff member's QR code: queues the purchase.
    ///
    /// Answers 202 at once; the purchase, redemption and accrual happen in the `qr_scan`
    /// job. Poll `GET /transactions/scan/{job_id}` for the outcome. Refused at once, with
    /// nothing recorded: a code unknown or expired (422 `code_expired`), a code the member
    /// issued herself as staff (422 `self_scan`), more than
    /// `KRUG_SCANS_PER_MEMBER_PER_MINUTE` scans a minute (429 `too_many_scans`).
    #[oai(path = "/transactions/scan", method = "post")]
    async fn scan(
        &self,
        auth: Auth,
        body: Json<ScanRequestBody>,
    ) -> ApiResult<ScanResponse, { SIGNED_IN | JSON_BODY | UNPROCESSABLE | TOO_MANY_REQUESTS }>
    {
        let state = &self.state;
        let code = body.code.trim().to_uppercase();
        if !is_human_code(&code, QR_CODE_LEN) {
            return Err(ApiError::unprocessable(
                "invalid_code",
                "This is not a code from a staff QR screen.",
            )
            .into());
        }
        let redeem = match body.redeem_bonus {
            None => Decimal::ZERO,
            Some(value) => Money::parse(value.value())
                .map_err(|e| {
                    ApiError::unprocessable("invalid_amount", format!("redeem_bonus: {e}"))
                })?
                .amount(),
        };
        let member = auth.user_id();
        let per_minute = Window::requests(
            state.cache.limit_key("scans-minute", &member.to_string()),
            state.limits.scans_per_member_per_minute,
            60,
        );
        let unavailable = |e: redis::RedisError| {
            tracing::warn!(error = %e, "QR store unavailable");
            ApiError::queue_unavailable()
        };
        if let Taken::Refused { retry_after_s, .. } = state
            .cache
            .take(std::slice::from_ref(&per_minute))
            .await
            .map_err(unavailable)?
        {
            REFUSED.with_label_values(&["scans_per_minute"]).inc();
            return Err(ApiError::too_many(
                "too_many_scans",
                format!("Too many scans; try again in {retry_after_s} s."),
                retry_after_s,
            )
            .into());
        }
        // Refused before anything is written: a code nobody issued (or no longer valid)…
        let qr = state
            .cache
            .get_qr(&code)
            .await
            .map_err(unavailable)?
            .filter(|qr| qr.expires_at > OffsetDateTime::now_utc())
            .ok_or_else(|| {
                ApiError::unprocessable("code_expired", "This code is unknown or has expired.")
            })?;
        // …and a code the member issued herself, as staff: cashback and a tier for nothing.
        if qr.issued_by == member {
            REFUSED.with_label_values(&["self_scan"]).inc();
            fraud::record(
                &state.db,
                &[fraud::NewFlag {
                    kind: fraud::FlagKind::SelfScan,
                    business_id: qr.business_id,
                    staff_id: Some(qr.issued_by),
                    member_id: Some(member),
                    amount: qr.amount,
                    transaction_id: None,
                }],
            )
            .await?;
            return Err(ApiError::unprocessable(
                "self_scan",
                "A code you issued cannot be scanned by you.",
            )
            .into());
        }
        // The scan request is its own record of the job: a pending scan is what `reconcile`
        // pushes again if this push is lost (no outbox row needed on the hottest path).
        let scan_id = Uuid::now_v7();
        scans::insert(
            &state.db,
            &scans::NewScan {
                id: scan_id,
                user_id: member,
                code,
                qr: Some(serde_json::to_value(qr).expect("QrCode serializes")),
                redeem_bonus: redeem,
                coupon_id: body.coupon_id,
            },
        )
        .await?;
        if let Err(e) = state.queue.push(scan_id, &ScanQr { scan_id }).await {
            tracing::warn!(error = %e, "could not enqueue qr_scan");
            // The member is told nothing happened, so nothing may happen later either.
            scans::fail(
                &state.db,
                scan_id,
                "queue_unavailable",
                "The scan could not be queued.",
            )
            .await?;
            return Err(ApiError::queue_unavailable().into());
        }
        Ok(ScanResponse::Accepted(Json(Envelope::new(ScanAccepted {
            job_id: scan_id,
        }))))
    }

    /// The outcome of a scan: `pending` → `processing` → `done` with the result, or
    /// `failed` with the reason.
    #[oai(path = "/transactions/scan/:job_id", method = "get")]
    async fn scan_status(
        &self,
        auth: Auth,
        job_id: Path<Uuid>,
    ) -> ApiResult<Json<Envelope<ScanStatus>>, { SIGNED_IN | BAD_REQUEST | NOT_FOUND }> {
        let scan = scans::get_for_user(&self.state.db, job_id.0, auth.user_id())
            .await?
            .ok_or_else(|| {
                ApiError::not_found("scan_not_found", "No scan of yours has this id.")
            })?;
        let state = match scan.state.as_str() {
            "pending" => ScanState::Pending,
            "processing" => ScanState::Processing,
            "done" => {
                // She reads her balance next: not the view from before this purchase.
                self.state.balances.forget([auth.user_id()]);
                ScanState::Done
            }
            _ => ScanState::Failed,
        };
        let result = scan
            .result
            .and_then(|r| serde_json::from_value::<jobs::handlers::scan::ScanResult>(r).ok())
            .map(|r| ScanResultView {
                transaction_id: r.transaction_id,
                business_id: r.business_id,
                amount: r.amount.into(),
                bonus_redeemed: r.bonus_redeemed.into(),
                coupon_discount: r.coupon_discount.into(),
                bonus_accrued: r.bonus_accrued.into(),
                balance: r.balance.into(),
                status_tier: r.status_tier,
            });
        let error = scan.error_code.map(|code| ScanError {
            code,
            message: scan.error_message.unwrap_or_default(),
        });
        Ok(Json(Envelope::new(ScanStatus {
            state,
            result,
            error,
        })))
    }
}
