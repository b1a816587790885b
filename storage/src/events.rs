//! Members-only events: proposals, approval, registrations with a seat limit, reminders.
//!
//! Seats: `events.registered_count` is the one counter of taken seats. A registration is a
//! row in `event_registrations` and the counter's increment in the same transaction; the
//! increment is a conditional `UPDATE … WHERE registered_count < max_participants AND status
//! IN ('approved', 'active')`. Concurrent registrations for the last seat queue on the event
//! row's lock, and each re-checks the condition against the committed count once it gets the
//! lock, so exactly one wins; the others roll their registration row back. No
//! `SELECT … FOR UPDATE` round trip is needed, and the table's CHECK
//! (`registered_count <= max_participants`) stays a backstop that is never hit.

use crate::{
    page::{Cursor, Page},
    states,
};
use domain::Tier;
use rust_decimal::Decimal;
use sqlx::{FromRow, PgExecutor, PgPool, Postgres, Row, Transaction, postgres::PgRow};
use std::{fmt, str::FromStr};
use time::OffsetDateTime;
use uuid::Uuid;

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Proposed by a VIP or Elite member; waits for an operator.
    Proposed,
    /// Published: members see it and register.
    Approved,
    /// Under way: registrations still open.
    Active,
    /// Over. Kept for the record.
    Completed,
    /// Called off (or a proposal turned down).
    Cancelled,
}

impl EventStatus {
    pub const ALL: [EventStatus; 5] = [
        Self::Proposed,
        Self::Approved,
        Self::Active,
        Self::Completed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Approved => "approved",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether an operator may move an event from `self` to `to`. Completed and cancelled
    /// events are final; nothing goes back to `proposed`.
    pub fn can_become(self, to: EventStatus) -> bool {
        use EventStatus::*;
        matches!(
            (self, to),
            (Proposed, Approved | Cancelled)
                | (Approved, Active | Completed | Cancelled)
                | (Active, Completed | Cancelled)
        )
    }

    /// The statuses an event may come from to become `to`.
    pub fn sources(to: EventStatus) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|from| from.can_become(to))
            .map(Self::as_str)
            .collect()
    }

    /// Only published events take (and keep changing) registrations.
    pub fn takes_registrations(self) -> bool {
        matches!(self, Self::Approved | Self::Active)
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an event status.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown status `{0}`; statuses are proposed, approved, active, completed, cancelled")]
pub struct UnknownStatus(pub String);

impl FromStr for EventStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// An event as one user sees it (`is_registered` is that user's).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub date: OffsetDateTime,
    pub location: String,
    pub max_participants: i32,
    pub min_status_tier: Tier,
    pub status: EventStatus,
    pub registered_count: i32,
    pub proposed_by: Option<Uuid>,
    pub reminder_sent_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    /// Roubles a seat costs, paid through ЮKassa; `None`: free.
    pub price: Option<Decimal>,
    /// Whether the viewer holds a confirmed seat (a seat held for a payment is not one yet).
    pub is_registered: bool,
}

impl Event {
    pub fn status(&self) -> EventStatus {
        self.status
    }
}

/// By hand for the tier and the status: a name this build does not know is an error naming
/// the event.
impl FromRow<'_, PgRow> for Event {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        Ok(Self {
            id,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            date: row.try_get("date")?,
            location: row.try_get("location")?,
            max_participants: row.try_get("max_participants")?,
            min_status_tier: states::column(row, "events", id, "min_status_tier")?,
            status: states::column(row, "events", id, "status")?,
            registered_count: row.try_get("registered_count")?,
            proposed_by: row.try_get("proposed_by")?,
            reminder_sent_at: row.try_get("reminder_sent_at")?,
            created_at: row.try_get("created_at")?,
            price: row.try_get("price")?,
            is_registered: row.try_get("is_registered")?,
        })
    }
}

/// The columns of [`Event`] from `events e`; the viewer's registration is always `$1`.
macro_rules! event_columns {
    () => {
        "e.id, e.title, e.description, e.date, e.location, e.max_participants,
    e.min_status_tier, e.status, e.registered_count, e.proposed_by, e.reminder_sent_at,
    e.created_at, e.price,
    EXISTS (SELECT 1 FROM event_registrations r WHERE r.event_id = e.id AND r.user_id = $1
                AND r.status = 'confirmed')
        AS is_registered"
    };
}

/// Members see published and past events, their own proposals, and events they registered
/// for (so that a cancelled event shows as cancelled rather than vanishing). Operators see
/// everything. `$1` is the viewer, `$2` whether they are an operator.
macro_rules! visible_to_viewer {
    () => {
        "($2 OR e.status IN ('approved', 'active', 'completed') OR e.proposed_by = $1
      OR EXISTS (SELECT 1 FROM event_registrations v WHERE v.event_id = e.id AND v.user_id = $1))"
    };
}

/// Who is looking.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub user_id: Uuid,
    pub operator: bool,
}

/// A proposal.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub title: String,
    pub description: String,
    pub date: OffsetDateTime,
    pub location: String,
    pub max_participants: i32,
    pub min_status_tier: Tier,
    pub proposed_by: Uuid,
    /// A paid event's price (operators only).
    pub price: Option<Decimal>,
}

/// Creates an event in status `proposed`.
pub async fn create(db: &PgPool, new: &NewEvent) -> sqlx::Result<Event> {
    sqlx::query_as(concat!(
        "WITH e AS (
            INSERT INTO events (title, description, date, location, max_participants,
                                min_status_tier, status, proposed_by, price)
            VALUES ($2, $3, $4, $5, $6, $7, 'proposed', $1, $8)
            RETURNING *
         )
         SELECT ",
        event_columns!(),
        " FROM e"
    ))
    .bind(new.proposed_by)
    .bind(&new.title)
    .bind(&new.description)
    .bind(new.date)
    .bind(&new.location)
    .bind(new.max_participants)
    .bind(new.min_status_tier.as_str())
    .bind(new.price)
    .fetch_one(db)
    .await
}

/// One event, if `viewer` may see it.
pub async fn get_visible(
    db: impl PgExecutor<'_>,
    id: Uuid,
    viewer: Viewer,
) -> sqlx::Result<Option<Event>> {
    sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events e WHERE e.id = $3 AND ",
        visible_to_viewer!()
    ))
    .bind(viewer.user_id)
    .bind(viewer.operator)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Narrows a list of events.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    /// Events at or after this instant.
    pub from: Option<OffsetDateTime>,
    /// Events before this instant.
    pub until: Option<OffsetDateTime>,
}

/// The events `viewer` may see, soonest first; the cursor is the (date, id) of the last one.
pub async fn list(
    db: &PgPool,
    viewer: Viewer,
    filter: EventFilter,
    after: Option<Cursor>,
    limit: usize,
) -> sqlx::Result<Page<Event>> {
    let rows: Vec<Event> = sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events e WHERE ",
        visible_to_viewer!(),
        " AND ($3::text IS NULL OR e.status = $3)
          AND ($4::timestamptz IS NULL OR e.date >= $4)
          AND ($5::timestamptz IS NULL OR e.date < $5)
          AND ($6::timestamptz IS NULL OR (e.date, e.id) > ($6, $7))
         ORDER BY e.date, e.id LIMIT $8"
    ))
    .bind(viewer.user_id)
    .bind(viewer.operator)
    .bind(filter.status.map(EventStatus::as_str))
    .bind(filter.from)
    .bind(filter.until)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit as i64 + 1)
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, limit, |e| Cursor {
        created_at: e.date,
        id: e.id,
    }))
}

/// What a registration came to.
#[derive(Debug, Clone)]
pub enum Registration {
    /// A seat was taken.
    Registered(Event),
    /// The member already had a seat; nothing changed.
    AlreadyRegistered(Event),
    /// Every seat is taken.
    Full,
    /// The event does not take registrations (proposed, completed or cancelled).
    Closed(EventStatus),
}

/// Takes a seat at event `id` for `user_id`, at most once per member and never beyond
/// `max_participants` (see the module docs). The caller checks the tier gate first.
pub async fn register(db: &PgPool, id: Uuid, user_id: Uuid) -> sqlx::Result<Registration> {
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO event_registrations (event_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        let event = get_for(&mut *tx, id, user_id).await?;
        tx.rollback().await?;
        return Ok(Registration::AlreadyRegistered(event));
    }
    let taken: Option<Event> = sqlx::query_as(concat!(
        "WITH e AS (
            UPDATE events SET registered_count = registered_count + 1
            WHERE id = $2 AND registered_count < max_participants
              AND status IN ('approved', 'active')
            RETURNING *
         )
         SELECT ",
        event_columns!(),
        " FROM e"
    ))
    .bind(user_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    match taken {
        Some(event) => {
            tx.commit().await?;
            Ok(Registration::Registered(event))
        }
        None => {
            // Why not: read the event as it is now, then give the seat row back.
            let event = get_for(&mut *tx, id, user_id).await?;
            tx.rollback().await?;
            Ok(match event.status() {
                status if !status.takes_registrations() => Registration::Closed(status),
                _ => Registration::Full,
            })
        }
    }
}

/// What cancelling a registration came to.
#[derive(Debug, Clone)]
pub enum Cancellation {
    /// The seat is free again.
    Cancelled(Event),
    /// The member had no seat; nothing changed.
    NotRegistered(Event),
    /// The event is over: its attendance is history.
    Completed,
}

/// Gives `user_id`'s seat at event `id` back.
pub async fn unregister(db: &PgPool, id: Uuid, user_id: Uuid) -> sqlx::Result<Cancellation> {
    let mut tx = db.begin().await?;
    let deleted =
        sqlx::query("DELETE FROM event_registrations WHERE event_id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if deleted == 0 {
        let event = get_for(&mut *tx, id, user_id).await?;
        tx.rollback().await?;
        return Ok(Cancellation::NotRegistered(event));
    }
    let freed: Option<Event> = sqlx::query_as(concat!(
        "WITH e AS (
            UPDATE events SET registered_count = registered_count - 1
            WHERE id = $2 AND status <> 'completed'
            RETURNING *
         )
         SELECT ",
        event_columns!(),
        " FROM e"
    ))
    .bind(user_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    match freed {
        Some(event) => {
            tx.commit().await?;
            Ok(Cancellation::Cancelled(event))
        }
        None => {
            tx.rollback().await?;
            Ok(Cancellation::Completed)
        }
    }
}

/// An event that exists, as `user_id` sees it (no visibility check).
pub async fn get_for(db: impl PgExecutor<'_>, id: Uuid, user_id: Uuid) -> sqlx::Result<Event> {
    sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events e WHERE e.id = $2"
    ))
    .bind(user_id)
    .bind(id)
    .fetch_one(db)
    .await
}

/// What an operator's status change came to.
#[derive(Debug, Clone)]
pub enum StatusChange {
    Changed(Event),
    /// The event already had that status.
    Unchanged(Event),
    /// The event's status cannot become the one asked for.
    NotAllowed(EventStatus),
    NotFound,
}

/// Moves event `id` to `to` if its current status allows it (checked in the `UPDATE`, so a
/// concurrent change cannot slip between the check and the write).
pub async fn set_status(
    db: &mut sqlx::PgConnection,
    id: Uuid,
    to: EventStatus,
    viewer: Viewer,
) -> sqlx::Result<StatusChange> {
    let changed: Option<Event> = sqlx::query_as(concat!(
        "WITH e AS (
            UPDATE events SET status = $3 WHERE id = $2 AND status = ANY($4) RETURNING *
         )
         SELECT ",
        event_columns!(),
        " FROM e"
    ))
    .bind(viewer.user_id)
    .bind(id)
    .bind(to.as_str())
    .bind(EventStatus::sources(to))
    .fetch_optional(&mut *db)
    .await?;
    if let Some(event) = changed {
        return Ok(StatusChange::Changed(event));
    }
    let current: Option<Event> = sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events e WHERE e.id = $2"
    ))
    .bind(viewer.user_id)
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(match current {
        None => StatusChange::NotFound,
        Some(event) if event.status() == to => StatusChange::Unchanged(event),
        Some(event) => StatusChange::NotAllowed(event.status()),
    })
}

/// An event whose members are due a reminder.
#[derive(Debug, Clone, FromRow)]
pub struct DueReminder {
    pub id: Uuid,
    pub title: String,
    pub date: OffsetDateTime,
    pub location: String,
}

/// Published events in `[from, until)` whose reminders have not gone out.
pub async fn due_reminders(
    db: impl PgExecutor<'_>,
    from: OffsetDateTime,
    until: OffsetDateTime,
) -> sqlx::Result<Vec<DueReminder>> {
    sqlx::query_as(
        "SELECT id, title, date, location FROM events
         WHERE date >= $1 AND date < $2 AND status IN ('approved', 'active')
           AND reminder_sent_at IS NULL
         ORDER BY date, id",
    )
    .bind(from)
    .bind(until)
    .fetch_all(db)
    .await
}

/// Marks event `id`'s reminders as sent, in the caller's transaction, and returns the
/// members to remind; `None` if another run got there first (or the event was cancelled
/// meanwhile). The row lock taken here makes a concurrent run wait, then find nothing.
pub async fn claim_reminders(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> sqlx::Result<Option<Vec<Uuid>>> {
    let claimed: Option<Uuid> = sqlx::query_scalar(
        "UPDATE events SET reminder_sent_at = now()
         WHERE id = $1 AND reminder_sent_at IS NULL AND status IN ('approved', 'active')
         RETURNING id",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if claimed.is_none() {
        return Ok(None);
    }
    let members = sqlx::query_scalar(
        "SELECT user_id FROM event_registrations WHERE event_id = $1 AND status = 'confirmed'
         ORDER BY created_at, user_id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Some(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_move_forward_only_and_final_ones_stay() {
        use EventStatus::*;
        let allowed = [
            (Proposed, Approved),
            (Proposed, Cancelled),
            (Approved, Active),
            (Approved, Completed),
            (Approved, Cancelled),
            (Active, Completed),
            (Active, Cancelled),
        ];
        for from in EventStatus::ALL {
            for to in EventStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
        assert_eq!(
            EventStatus::sources(Cancelled),
            ["proposed", "approved", "active"]
        );
        assert!(EventStatus::sources(Proposed).is_empty());
    }

    #[test]
    fn statuses_round_trip_and_unknown_names_are_refused() {
        for status in EventStatus::ALL {
            assert_eq!(status.as_str().parse::<EventStatus>().unwrap(), status);
        }
        assert!("Approved".parse::<EventStatus>().is_err());
        assert!(!EventStatus::Proposed.takes_registrations());
        assert!(EventStatus::Active.takes_registrations());
    }
}
