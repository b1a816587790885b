//! What routes call to write the audit log: one [`Change`] per change an operator or an owner
//! makes, recorded in the same transaction as the change, with the actor and the request id.
//!
//! ```ignore
//! let mut tx = state.db.begin().await?;
//! let before = businesses::get_for_update(&mut *tx, id).await?;
//! let after = businesses::update(&mut *tx, …).await?;
//! audit::record(&mut *tx, actor, Change::new("business.update", "business", id)
//!     .before(&business_view(before)).after(&business_view(after))).await?;
//! tx.commit().await?;
//! ```
//!
//! Snapshots are the views the API returns (poem-openapi objects): whatever a view never
//! shows — CRM credentials — never reaches the log either.

use crate::envelope::request_id;
use poem_openapi::types::ToJSON;
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// One change: what was done to what, and the target before and after.
#[derive(Debug, Clone)]
#[must_use = "a change is only logged by `audit::record`"]
pub struct Change {
    action: &'static str,
    target_type: &'static str,
    target_id: String,
    before: Option<Value>,
    after: Option<Value>,
}

impl Change {
    /// `action` is `area.verb` (`business.update`); `target_type` the kind of thing changed.
    pub fn new(action: &'static str, target_type: &'static str, target_id: impl ToString) -> Self {
        Self {
            action,
            target_type,
            target_id: target_id.to_string(),
            before: None,
            after: None,
        }
    }

    pub fn before(mut self, snapshot: &impl ToJSON) -> Self {
        self.before = snapshot.to_json();
        self
    }

    pub fn after(mut self, snapshot: &impl ToJSON) -> Self {
        self.after = snapshot.to_json();
        self
    }

    /// A state that is no view of ours (a job's state, a role), as JSON.
    pub fn after_value(mut self, snapshot: Value) -> Self {
        self.after = Some(snapshot);
        self
    }

    pub fn before_value(mut self, snapshot: Value) -> Self {
        self.before = Some(snapshot);
        self
    }
}

/// Appends `change`, made by `actor` in the current request, to the audit log (pass the
/// transaction of the change itself).
pub async fn record(db: impl PgExecutor<'_>, actor: Uuid, change: Change) -> sqlx::Result<()> {
    let request_id = request_id();
    storage::audit::record(
        db,
        &storage::audit::NewEntry {
            actor_id: Some(actor),
            action: change.action,
            target_type: change.target_type,
            target_id: Some(change.target_id),
            before: change.before,
            after: change.after,
            request_id: Some(request_id.as_str()).filter(|id| !id.is_empty()),
        },
    )
    .await
}
