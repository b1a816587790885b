//! Members-only events: the day-before reminders (schedule `event_reminders`, the `notify`
//! job `notify_job::RemindEvents`).
//!
//! Each event is claimed in its own transaction: `reminder_sent_at` is set and the `notify`
//! jobs sending the registered members their reminders are recorded in the outbox, then the
//! transaction commits and the jobs are relayed. A second run (a retry, a manual trigger, another scheduler) finds the
//! event claimed and does nothing; a crash before the relay leaves the jobs to `reconcile`;
//! and the notify jobs' ids and dedupe keys are per event and member, so nobody is told twice.

use crate::{
    handlers::notify_job::{self, Notify, RemindEvents},
    queue::JobError,
    run::JobCtx,
};
use domain::{
    local_time::{local_when, start_of_day, today},
    messages::Message,
};
use storage::events;

impl RemindEvents {
    pub async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let tz = env.timezone;
        let date = match self.date {
            Some(date) => date,
            None => today(tz)
                .next_day()
                .ok_or_else(|| JobError::permanent("no day after the end of the calendar"))?,
        };
        let next = date
            .next_day()
            .ok_or_else(|| JobError::permanent("no day after the end of the calendar"))?;
        let due =
            events::due_reminders(&env.db, start_of_day(tz, date), start_of_day(tz, next)).await?;
        let mut reminded = 0usize;
        for event in &due {
            let mut tx = env.db.begin().await?;
            let Some(members) = events::claim_reminders(&mut tx, event.id).await? else {
                continue;
            };
            let when = local_when(tz, event.date);
            // The location is optional in a proposal; the message needs words in its place.
            let location = if event.location.trim().is_empty() {
                "место уточним".to_owned()
            } else {
                event.location.clone()
            };
            let reminders = members
                .iter()
                .map(|user_id| Notify {
                    user_id: *user_id,
                    message: Message::EventReminder {
                        title: event.title.clone(),
                        when: when.clone(),
                        location: location.clone(),
                    },
                    dedupe_key: format!("event-reminder:{}:{user_id}", event.id),
                })
                .collect();
            let rows = notify_job::record_all(&mut tx, reminders).await?;
            tx.commit().await?;
            env.committed([], &rows, "event reminders").await;
            reminded += members.len();
            tracing::info!(event_id = %event.id, members = members.len(), "event reminders recorded");
        }
        tracing::info!(%date, events = due.len(), reminded, "event reminders done");
        Ok(())
    }
}
