//! Members-only events: the day-before reminders (schedule `event_reminders`).

use crate::queue::{JobCtx, JobError};
use serde::{Deserialize, Serialize};
use time::Date;

/// Remind the members registered for events on `date` (tomorrow in `KRUG_TIMEZONE` when
/// absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RemindEvents {
    #[serde(default)]
    pub date: Option<Date>,
}

impl RemindEvents {
    pub async fn run(self, _ctx: JobCtx) -> Result<(), JobError> {
        Ok(())
    }
}
