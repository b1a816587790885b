//! Paid seats at events: a seat held while the member pays through ЮKassa, confirmed once
//! ЮKassa says the payment succeeded, released when it is canceled or the hold runs out, and
//! refunded when she cancels early enough.
//!
//! A held seat is an `event_registrations` row in status `held` counted in
//! `events.registered_count` like any other (so a full event stays full while someone pays);
//! each change of a payment and of its seat is one transaction, and every change is
//! conditional on the state it leaves, so a repeated notification or a second sweep finds
//! nothing to do.

use crate::{
    events::{self, EventStatus},
    outbox::{self, OutboxJob},
    states,
};
use rust_decimal::Decimal;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool, Row, postgres::PgRow};
use std::fmt;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where our record of a payment stands (ЮKassa's own status is the adapter's
/// `PaymentStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// Recorded; ЮKassa not asked yet.
    Creating,
    /// Created at ЮKassa; the member may pay.
    Pending,
    Succeeded,
    Canceled,
    Failed,
    /// Its hold ran out (or she cancelled) before she paid.
    Expired,
}

impl PaymentState {
    pub const ALL: [PaymentState; 6] = [
        Self::Creating,
        Self::Pending,
        Self::Succeeded,
        Self::Canceled,
        Self::Failed,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Canceled => "canceled",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// Where the refund of a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    /// To be asked of ЮKassa (or asked, with no answer yet).
    Requested,
    Pending,
    Succeeded,
    Canceled,
}

impl RefundState {
    pub const ALL: [RefundState; 4] = [
        Self::Requested,
        Self::Pending,
        Self::Succeeded,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Canceled => "canceled",
        }
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for RefundState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a seat at a paid event stands (`event_registrations.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatState {
    /// Held while she pays.
    Held,
    Confirmed,
}

impl SeatState {
    pub const ALL: [SeatState; 2] = [Self::Held, Self::Confirmed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
        }
    }
}

domain::parse_by_name!(PaymentState, RefundState, SeatState);

/// One attempt to pay for a seat.
#[derive(Debug, Clone)]
pub struct EventPayment {
    /// Ours: the Idempotence-Key of its creation and `krug_payment_id` in its metadata.
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub amount: Decimal,
    pub status: PaymentState,
    pub yookassa_id: Option<String>,
    pub confirmation_url: Option<String>,
    pub hold_until: OffsetDateTime,
    pub paid_at: Option<OffsetDateTime>,
    /// `None`: no refund.
    pub refund_status: Option<RefundState>,
    pub refund_key: Option<Uuid>,
    pub yookassa_refund_id: Option<String>,
}

/// By hand for the two states: a name this build does not know is an error naming the
/// payment.
impl FromRow<'_, PgRow> for EventPayment {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        let id: Uuid = row.try_get("id")?;
        let refund_status: Option<String> = row.try_get("refund_status")?;
        Ok(Self {
            id,
            event_id: row.try_get("event_id")?,
            user_id: row.try_get("user_id")?,
            amount: row.try_get("amount")?,
            status: states::column(row, "event_payments", id, "status")?,
            yookassa_id: row.try_get("yookassa_id")?,
            confirmation_url: row.try_get("confirmation_url")?,
            hold_until: row.try_get("hold_until")?,
            paid_at: row.try_get("paid_at")?,
            refund_status: refund_status
                .map(|value| states::parse("event_payments", id, "refund_status", &value))
                .transpose()?,
            refund_key: row.try_get("refund_key")?,
            yookassa_refund_id: row.try_get("yookassa_refund_id")?,
        })
    }
}

/// The columns of [`EventPayment`].
macro_rules! columns {
    () => {
        "id, event_id, user_id, amount, status, yookassa_id, confirmation_url, hold_until,
         paid_at, refund_status, refund_key, yookassa_refund_id"
    };
}

/// What asking for a paid seat came to.
#[derive(Debug, Clone)]
pub enum Hold {
    /// A seat is held and a payment recorded (`creating`): ask ЮKassa for it now.
    Held(EventPayment),
    /// She is already paying for this event: the same payment again.
    Open(EventPayment),
    /// She already has a confirmed seat.
    AlreadyRegistered,
    Full,
    Closed(EventStatus),
}

/// Holds a seat at `event_id` for `user_id` until `hold_until` and records a payment of
/// `amount` for it, unless she already pays for one or holds one.
pub async fn hold_seat(
    db: &PgPool,
    event_id: Uuid,
    user_id: Uuid,
    amount: Decimal,
    hold_until: OffsetDateTime,
) -> sqlx::Result<Hold> {
    let mut tx = db.begin().await?;
    let open: Option<EventPayment> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM event_payments
         WHERE event_id = $1 AND user_id = $2 AND status IN ('creating', 'pending')"
    ))
    .bind(event_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(open) = open {
        return Ok(Hold::Open(open));
    }
    let inserted = sqlx::query(
        "INSERT INTO event_registrations (event_id, user_id, status, hold_until)
         VALUES ($1, $2, 'held', $3) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(user_id)
    .bind(hold_until)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Hold::AlreadyRegistered);
    }
    let taken = sqlx::query(
        "UPDATE events SET registered_count = registered_count + 1
         WHERE id = $1 AND registered_count < max_participants AND status IN ('approved', 'active')",
    )
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if taken == 0 {
        let event = events::get_for(&mut *tx, event_id, user_id).await?;
        tx.rollback().await?;
        return Ok(match event.status() {
            status if !status.takes_registrations() => Hold::Closed(status),
            _ => Hold::Full,
        });
    }
    let payment: EventPayment = sqlx::query_as(concat!(
        "INSERT INTO event_payments (id, event_id, user_id, amount, status, hold_until)
         VALUES ($1, $2, $3, $4, 'creating', $5) RETURNING ",
        columns!(),
        ""
    ))
    .bind(Uuid::now_v7())
    .bind(event_id)
    .bind(user_id)
    .bind(amount)
    .bind(hold_until)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Hold::Held(payment))
}

/// ЮKassa created the payment: the member may pay it at `confirmation_url`.
pub async fn created(
    db: &PgPool,
    id: Uuid,
    yookassa_id: &str,
    confirmation_url: Option<&str>,
) -> sqlx::Result<Option<EventPayment>> {
    sqlx::query_as(concat!(
        "UPDATE event_payments SET status = 'pending', yookassa_id = $2, confirmation_url = $3,
                updated_at = now()
         WHERE id = $1 AND status = 'creating' RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(yookassa_id)
    .bind(confirmation_url)
    .fetch_optional(db)
    .await
}

/// Gives a held seat back (the one counter of seats goes down with it).
async fn release_hold(tx: &mut PgConnection, event_id: Uuid, user_id: Uuid) -> sqlx::Result<bool> {
    let released = sqlx::query(
        "WITH gone AS (
            DELETE FROM event_registrations
            WHERE event_id = $1 AND user_id = $2 AND status = 'held'
            RETURNING event_id
         )
         UPDATE events e SET registered_count = registered_count - 1
         FROM gone WHERE e.id = gone.event_id",
    )
    .bind(event_id)
    .bind(user_id)
    .execute(tx)
    .await?
    .rows_affected();
    Ok(released > 0)
}

/// Ends an open payment as `to` (`Failed`, `Canceled` or `Expired`) and gives its held
/// seat back. False if the payment was no longer open (someone else ended it).
pub async fn end_open(db: &PgPool, id: Uuid, to: PaymentState) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    let ended: Option<EventPayment> = sqlx::query_as(concat!(
        "UPDATE event_payments SET status = $2, updated_at = now()
         WHERE id = $1 AND status IN ('creating', 'pending') RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(to.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(payment) = ended else {
        return Ok(false);
    };
    release_hold(&mut tx, payment.event_id, payment.user_id).await?;
    tx.commit().await?;
    Ok(true)
}

/// ЮKassa says a payment we let lapse (`expired`) was canceled after all: recorded, nothing
/// else to do (its seat is already free).
pub async fn mark_canceled(db: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE event_payments SET status = 'canceled', updated_at = now()
         WHERE id = $1 AND status = 'expired'",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}

/// What a succeeded payment came to.
#[derive(Debug, Clone)]
pub enum Confirmation {
    /// Her held seat is confirmed.
    Confirmed(EventPayment),
    /// Her hold had run out; a free seat was taken for her.
    ConfirmedLate(EventPayment),
    /// Her hold had run out and no seat is left (or the event closed, or she already
    /// holds a paid seat): the payment is to be refunded.
    RefundDue(EventPayment),
    /// Recorded before: nothing changed.
    Unchanged,
}

/// Records that payment `id` succeeded and gives her the seat; when it does, `on_seat` (the
/// ticket e-mail's job) is recorded in the job outbox in the same transaction.
pub async fn confirm(db: &PgPool, id: Uuid, on_seat: &[OutboxJob]) -> sqlx::Result<Confirmation> {
    let mut tx = db.begin().await?;
    let paid: Option<EventPayment> = sqlx::query_as(concat!(
        "UPDATE event_payments SET status = 'succeeded', paid_at = now(), updated_at = now()
         WHERE id = $1 AND status IN ('creating', 'pending', 'expired') RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(payment) = paid else {
        return Ok(Confirmation::Unchanged);
    };
    let confirmed = sqlx::query(
        "UPDATE event_registrations SET status = 'confirmed', hold_until = NULL
         WHERE event_id = $1 AND user_id = $2 AND status = 'held'",
    )
    .bind(payment.event_id)
    .bind(payment.user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if confirmed > 0 {
        outbox::insert(&mut tx, on_seat).await?;
        tx.commit().await?;
        return Ok(Confirmation::Confirmed(payment));
    }
    // The hold ran out before she paid: a seat if one is free and she has none.
    let has_seat: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM event_registrations WHERE event_id = $1 AND user_id = $2)",
    )
    .bind(payment.event_id)
    .bind(payment.user_id)
    .fetch_one(&mut *tx)
    .await?;
    let taken = !has_seat
        && sqlx::query(
            "UPDATE events SET registered_count = registered_count + 1
             WHERE id = $1 AND registered_count < max_participants
               AND status IN ('approved', 'active')",
        )
        .bind(payment.event_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
    if taken {
        sqlx::query("INSERT INTO event_registrations (event_id, user_id) VALUES ($1, $2)")
            .bind(payment.event_id)
            .bind(payment.user_id)
            .execute(&mut *tx)
            .await?;
        outbox::insert(&mut tx, on_seat).await?;
        tx.commit().await?;
        return Ok(Confirmation::ConfirmedLate(payment));
    }
    let payment = request_refund(&mut tx, payment.id).await?;
    tx.commit().await?;
    Ok(Confirmation::RefundDue(payment))
}

/// Marks a succeeded payment to be refunded, with the Idempotence-Key of its refund.
async fn request_refund(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<EventPayment> {
    sqlx::query_as(concat!(
        "UPDATE event_payments
         SET refund_status = COALESCE(refund_status, 'requested'),
             refund_key = COALESCE(refund_key, $2), updated_at = now()
         WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(Uuid::now_v7())
    .fetch_one(tx)
    .await
}

/// What cancelling a seat at a paid event came to.
#[derive(Debug, Clone)]
pub enum PaidCancellation {
    /// She had no seat (held or confirmed).
    NotRegistered,
    /// The event is over: its attendance is history.
    Completed,
    /// A seat held for a payment she had not made was given back (a payment made later is
    /// still honoured, as a late one).
    HoldReleased,
    /// Her paid seat was given back; `refund` is the payment to refund when she cancelled
    /// early enough, `None` otherwise.
    Cancelled {
        payment: Option<EventPayment>,
        refund: bool,
    },
}

/// Gives `user_id`'s seat at paid event `event_id` back; with `refund`, her payment is
/// marked for a refund in the same transaction (the caller then asks ЮKassa; the `payments`
/// job retries what is left).
pub async fn unregister_paid(
    db: &PgPool,
    event_id: Uuid,
    user_id: Uuid,
    refund: bool,
) -> sqlx::Result<PaidCancellation> {
    let mut tx = db.begin().await?;
    let seat: Option<String> = sqlx::query_scalar(
        "DELETE FROM event_registrations WHERE event_id = $1 AND user_id = $2 RETURNING status",
    )
    .bind(event_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(seat) = seat else {
        return Ok(PaidCancellation::NotRegistered);
    };
    let seat: SeatState = states::parse(
        "event_registrations",
        format!("event {event_id} user {user_id}"),
        "status",
        &seat,
    )?;
    let freed = sqlx::query(
        "UPDATE events SET registered_count = registered_count - 1
         WHERE id = $1 AND status <> 'completed'",
    )
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if freed == 0 {
        tx.rollback().await?;
        return Ok(PaidCancellation::Completed);
    }
    if seat == SeatState::Held {
        sqlx::query(
            "UPDATE event_payments SET status = 'expired', updated_at = now()
             WHERE event_id = $1 AND user_id = $2 AND status IN ('creating', 'pending')",
        )
        .bind(event_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(PaidCancellation::HoldReleased);
    }
    let paid: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM event_payments
         WHERE event_id = $1 AND user_id = $2 AND status = 'succeeded' AND refund_status IS NULL
         ORDER BY paid_at DESC LIMIT 1",
    )
    .bind(event_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let payment = match (paid, refund) {
        (Some(id), true) => Some(request_refund(&mut tx, id).await?),
        (Some(id), false) => Some(get(&mut *tx, id).await?.expect("selected above")),
        (None, _) => None,
    };
    tx.commit().await?;
    Ok(PaidCancellation::Cancelled {
        refund: refund && payment.is_some(),
        payment,
    })
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<EventPayment>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM event_payments WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Our payment of ЮKassa's payment `yookassa_id`.
pub async fn by_yookassa_id(db: &PgPool, yookassa_id: &str) -> sqlx::Result<Option<EventPayment>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM event_payments WHERE yookassa_id = $1"
    ))
    .bind(yookassa_id)
    .fetch_optional(db)
    .await
}

/// Our payment whose refund is ЮKassa's `refund_id`.
pub async fn by_refund_id(db: &PgPool, refund_id: &str) -> sqlx::Result<Option<EventPayment>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM event_payments WHERE yookassa_refund_id = $1"
    ))
    .bind(refund_id)
    .fetch_optional(db)
    .await
}

/// Open payments whose hold ran out before `now`, oldest first.
pub async fn lapsed(
    db: &PgPool,
    now: OffsetDateTime,
    limit: i64,
) -> sqlx::Result<Vec<EventPayment>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM event_payments
         WHERE status IN ('creating', 'pending') AND hold_until < $1
         ORDER BY hold_until LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Refunds requested and not finished, oldest first.
pub async fn unfinished_refunds(db: &PgPool, limit: i64) -> sqlx::Result<Vec<EventPayment>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM event_payments
         WHERE refund_status IN ('requested', 'pending') ORDER BY updated_at LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Records what ЮKassa said of payment `id`'s refund: `Pending`, `Succeeded` or `Canceled`.
/// A finished refund is never moved back. When this records its success, `on_success` (the
/// receipt e-mail's job) is recorded in the job outbox in the same transaction.
pub async fn refund_state(
    db: &PgPool,
    id: Uuid,
    yookassa_refund_id: &str,
    status: RefundState,
    on_success: &[OutboxJob],
) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    let changed = sqlx::query(
        "UPDATE event_payments
         SET refund_status = $3, yookassa_refund_id = $2, updated_at = now(),
             refunded_at = CASE WHEN $3 = 'succeeded' THEN now() END
         WHERE id = $1 AND refund_status IN ('requested', 'pending')
           AND (refund_status <> $3 OR yookassa_refund_id IS DISTINCT FROM $2)",
    )
    .bind(id)
    .bind(yookassa_refund_id)
    .bind(status.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if changed && status == RefundState::Succeeded {
        outbox::insert(&mut tx, on_success).await?;
    }
    tx.commit().await?;
    Ok(changed)
}
