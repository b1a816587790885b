//! `/admin/audit`: what operators and owners changed, for operators to review.

use crate::{
    auth::Operator,
    envelope::{Envelope, Page},
    error::{ApiError, ApiResult},
    routes::{page_limit, parse_cursor},
    state::AppState,
};
use poem_openapi::{Object, OpenApi, Tags, param::Query, payload::Json};
use serde_json::Value;
use std::sync::Arc;
use storage::audit;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: the audit log.
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
    /// `role.grant`, `role.revoke`, …
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
    ) -> ApiResult<Json<Envelope<Page<AuditEntryView>>>> {
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
}
