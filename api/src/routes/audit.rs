//! `/admin/audit` and `/admin/fraud-flags`: what operators and owners changed, and the scans
//! and QR codes that looked like fraud, for operators to review.

use crate::{
    auth::Operator,
    envelope::{Envelope, Page},
    error::{ApiError, ApiResult, BAD_REQUEST, SIGNED_IN, UNPROCESSABLE},
    routes::{page_limit, parse_cursor},
    state::AppState,
    wire::Amount,
};
use poem_openapi::{Object, OpenApi, Tags, param::Query, payload::Json};
use serde_json::Value;
use std::sync::Arc;
use storage::{audit, fraud};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: the audit log and fraud flags.
    Audit,
}

pub struct AuditApi {
    pub state: Arc<AppState>,
}

/// One change.
#[derive(Debug, Object)]
pub struct AuditEntryView {
    pub id: Uuid,
    /// Who made it; absent for the command line (`krug admin …`).
    #[oai(nullable)]
    pub actor_id: Option<Uuid>,
    /// `business.create`, `business.update`, `staff.put`, `promo_chain.create`,
    /// `business.poll`, `job.retry`, `job.discard`, `schedule.trigger`, `event.status`,
    /// `role.grant`, `role.revoke`, `member.adjust`, `member.block`, `member.unblock`, …
    pub action: String,
    pub target_type: String,
    #[oai(nullable)]
    pub target_id: Option<String>,
    /// The target before the change (absent when it was created).
    #[oai(nullable)]
    pub before: Option<Value>,
    #[oai(nullable)]
    pub after: Option<Value>,
    /// The request that made it (`x-request-id`), to find it in the logs.
    #[oai(nullable)]
    pub request_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A scan or QR code that looked like fraud.
#[derive(Debug, Object)]
pub struct FraudFlagView {
    pub id: Uuid,
    /// `self_scan` (a member scanned a code she issued as staff; refused),
    /// `staff_daily_limit` (a staff member's codes of the day would have passed
    /// `KRUG_STAFF_QR_DAILY_TOTAL`; refused) or `outlier_amount` (a purchase at or over
    /// `KRUG_FRAUD_OUTLIER_PERCENT` of the business's `max_check_amount`; recorded).
    pub kind: String,
    pub business_id: Uuid,
    /// The staff member who issued the QR code.
    #[oai(nullable)]
    pub staff_id: Option<Uuid>,
    /// The member who scanned it (absent when nobody did).
    #[oai(nullable)]
    pub member_id: Option<Uuid>,
    pub amount: Amount,
    /// The purchase, when one was recorded.
    #[oai(nullable)]
    pub transaction_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

#[OpenApi(prefix_path = "/admin", tag = "Tag::Audit")]
impl AuditApi {
    /// The audit log, newest first: every change by an operator or an owner.
    #[oai(path = "/audit", method = "get")]
    async fn audit(
        &self,
        _operator: Operator,
        /// Only changes made by this user.
        actor: Query<Option<Uuid>>,
        /// Only changes to this target (a business, user, job, event… id, or a schedule name).
        #[oai(validator(max_length = 100))]
        target: Query<Option<String>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<Page<AuditEntryView>>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }>
    {
        let filter = audit::Filter {
            actor_id: actor.0,
            target_id: target.0.filter(|t| !t.is_empty()),
        };
        let page = audit::page(
            &self.state.db,
            &filter,
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(Envelope::new(Page {
            items: page
                .items
                .into_iter()
                .map(|e| AuditEntryView {
                    id: e.id,
                    actor_id: e.actor_id,
                    action: e.action,
                    target_type: e.target_type,
                    target_id: e.target_id,
                    before: e.before,
                    after: e.after,
                    request_id: e.request_id,
                    created_at: e.created_at,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Fraud flags, newest first: self-scans and staff daily totals refused, and purchases
    /// near their business's largest allowed check.
    #[oai(path = "/fraud-flags", method = "get")]
    async fn fraud_flags(
        &self,
        _operator: Operator,
        /// Only flags of this business.
        business_id: Query<Option<Uuid>>,
        cursor: Query<Option<String>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<Page<FraudFlagView>>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }>
    {
        let page = fraud::page(
            &self.state.db,
            business_id.0,
            parse_cursor(cursor.0.as_deref())?,
            page_limit(limit.0)?,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(Envelope::new(Page {
            items: page
                .items
                .into_iter()
                .map(|f| FraudFlagView {
                    id: f.id,
                    kind: f.kind.as_str().to_owned(),
                    business_id: f.business_id,
                    staff_id: f.staff_id,
                    member_id: f.member_id,
                    amount: f.amount.into(),
                    transaction_id: f.transaction_id,
                    created_at: f.created_at,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }
}
