//! Dates and times where the coalition lives (`KRUG_TIMEZONE`): which day it is, when a day
//! begins, and an instant as a member reads it. Schedules, messages, history filters and
//! settlement periods all count days in the coalition's zone, never in UTC.

use chrono::{Offset, TimeZone};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The offset of `timezone` from UTC at the instant `at` (Europe/Moscow: +03:00).
pub fn offset_at(timezone: chrono_tz::Tz, at: OffsetDateTime) -> UtcOffset {
    let utc = chrono::DateTime::from_timestamp(at.unix_timestamp(), 0).unwrap_or_default();
    let seconds = timezone
        .offset_from_utc_datetime(&utc.naive_utc())
        .fix()
        .local_minus_utc();
    UtcOffset::from_whole_seconds(seconds).unwrap_or(UtcOffset::UTC)
}

/// `at` on the wall clocks of `timezone`.
pub fn local(timezone: chrono_tz::Tz, at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(offset_at(timezone, at))
}

/// The calendar day of `at` in `timezone`.
pub fn local_date(timezone: chrono_tz::Tz, at: OffsetDateTime) -> Date {
    local(timezone, at).date()
}

/// Today in `timezone`.
pub fn today(timezone: chrono_tz::Tz) -> Date {
    local_date(timezone, OffsetDateTime::now_utc())
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

/// An instant as a member reads it in `timezone`: `26.11.2026 19:00`.
pub fn local_when(timezone: chrono_tz::Tz, at: OffsetDateTime) -> String {
    local(timezone, at)
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
    fn members_read_local_wall_clock_time_and_dates() {
        let moscow = chrono_tz::Europe::Moscow;
        assert_eq!(
            local_when(moscow, datetime!(2026-11-26 16:00 UTC)),
            "26.11.2026 19:00"
        );
        assert_eq!(
            local_when(moscow, datetime!(2026-11-26 21:05 UTC)),
            "27.11.2026 00:05"
        );
        // 21:05 UTC is already the next day in Moscow.
        assert_eq!(
            local_date(moscow, datetime!(2026-11-26 21:05 UTC)),
            date!(2026 - 11 - 27)
        );
        // The offset of the instant, not of today: Berlin in July is +02:00 whenever asked.
        assert_eq!(
            offset_at(chrono_tz::Europe::Berlin, datetime!(2026-07-01 12:00 UTC)),
            UtcOffset::from_hms(2, 0, 0).unwrap()
        );
    }
}
