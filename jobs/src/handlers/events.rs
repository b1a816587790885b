//! Members-only events: the day-before reminders (schedule `event_reminders`).
//!
//! Each event is claimed in its own transaction: `reminder_sent_at` is set and one `notify`
//! job per registered member is recorded in the outbox, then the transaction commits and the
//! jobs are relayed. A second run (a retry, a manual trigger, another scheduler) finds the
//! event claimed and does nothing; a crash before the relay leaves the jobs to `reconcile`;
//! and the notify jobs' ids and dedupe keys are per event and member, so nobody is told twice.

use crate::{
    handlers::notify::Notify,
    outbox,
    queue::{JobCtx, JobError},
};
use chrono::{Offset, TimeZone};
use domain::messages::Message;
use serde::{Deserialize, Serialize};
use storage::events;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Remind the members registered for events on `date` (tomorrow in `KRUG_TIMEZONE` when
/// absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RemindEvents {
    #[serde(default)]
    pub date: Option<Date>,
}

impl RemindEvents {
    pub async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let tz = env.timezone;
        let date = match self.date {
            Some(date) => date,
            None => crate::handlers::analytics::today(tz)
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
            let mut rows = Vec::with_capacity(members.len());
            for user_id in &members {
                let notify = Notify {
                    user_id: *user_id,
                    message: Message::EventReminder {
                        title: event.title.clone(),
                        when: when.clone(),
                        location: location.clone(),
                    },
                    dedupe_key: format!("event-reminder:{}:{user_id}", event.id),
                };
                rows.push(notify.record(&mut tx).await?);
            }
            tx.commit().await?;
            if let Err(e) = outbox::relay(&env.db, &env.queue, &rows).await {
                // Recorded and committed: reconcile relays them.
                tracing::warn!(error = %e, event_id = %event.id, "event reminders recorded but not relayed");
            }
            reminded += members.len();
            tracing::info!(event_id = %event.id, members = members.len(), "event reminders recorded");
        }
        tracing::info!(%date, events = due.len(), reminded, "event reminders done");
        Ok(())
    }
}

/// The offset of `timezone` from UTC at the instant `at`.
fn offset_at(timezone: chrono_tz::Tz, at: OffsetDateTime) -> UtcOffset {
    let utc = chrono::DateTime::from_timestamp(at.unix_timestamp(), 0).unwrap_or_default();
    let seconds = timezone
        .offset_from_utc_datetime(&utc.naive_utc())
        .fix()
        .local_minus_utc();
    UtcOffset::from_whole_seconds(seconds).unwrap_or(UtcOffset::UTC)
}

/// The instant `date` begins in `timezone` (its local midnight). Where a clock change
/// skips midnight, the offset in force at midnight UTC is used: off by at most the change,
/// in a few zones, on one night.
pub fn start_of_day(timezone: chrono_tz::Tz, date: Date) -> OffsetDateTime {
    let midnight = PrimitiveDateTime::new(date, Time::MIDNIGHT);
    let naive = chrono::NaiveDate::from_ymd_opt(
        date.year(),
        u8::from(date.month()).into(),
        date.day().into(),
    )
    .and_then(|d| d.and_hms_opt(0, 0, 0));
    let offset = naive
        .and_then(|n| timezone.from_local_datetime(&n).earliest())
        .and_then(|local| {
            UtcOffset::from_whole_seconds(local.offset().fix().local_minus_utc()).ok()
        })
        .unwrap_or_else(|| offset_at(timezone, midnight.assume_utc()));
    midnight.assume_offset(offset).to_offset(UtcOffset::UTC)
}

/// The local date in `timezone` at the instant `at`.
pub fn local_date(timezone: chrono_tz::Tz, at: OffsetDateTime) -> Date {
    at.to_offset(offset_at(timezone, at)).date()
}

/// An instant as a member reads it in `timezone`: `26.11.2026 19:00`.
pub fn local_when(timezone: chrono_tz::Tz, at: OffsetDateTime) -> String {
    let local = at.to_offset(offset_at(timezone, at));
    local
        .format(time::macros::format_description!(
            "[day].[month].[year] [hour]:[minute]"
        ))
        .expect("the format has only numeric components of a valid date")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn days_begin_at_local_midnight() {
        let moscow = chrono_tz::Europe::Moscow;
        assert_eq!(
            start_of_day(moscow, date!(2026 - 11 - 26)),
            datetime!(2026-11-25 21:00 UTC)
        );
        // Berlin keeps summer time until the last Sunday of October.
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            start_of_day(berlin, date!(2026 - 07 - 01)),
            datetime!(2026-06-30 22:00 UTC)
        );
        assert_eq!(
            start_of_day(berlin, date!(2026 - 12 - 01)),
            datetime!(2026-11-30 23:00 UTC)
        );
    }

    #[test]
    fn reminders_show_local_wall_clock_time() {
        let moscow = chrono_tz::Europe::Moscow;
        assert_eq!(
            local_when(moscow, datetime!(2026-11-26 16:00 UTC)),
            "26.11.2026 19:00"
        );
        assert_eq!(
            local_when(moscow, datetime!(2026-11-26 21:05 UTC)),
            "27.11.2026 00:05"
        );
    }
}
