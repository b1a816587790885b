//! `payments`: paid seats at events, settled on ЮKassa's word.
//!
//! Nothing here trusts what a notification says: every decision follows a payment or
//! refund fetched from ЮKassa by its id ([`act_on_payment`], [`act_on_refund`]), and only a
//! payment whose metadata names our own payment and whose amount is ours moves a seat. The
//! webhook (`POST /payments/yookassa`) and the schedule (every 5 minutes) both come here:
//!
//! - an open payment whose 15-minute hold ran out is looked up first: paid → the seat is
//!   hers; canceled → released; still pending (or unknown to ЮKassa) → the hold is released
//!   and the payment marked `expired` (paying it later still gets her a seat if one is
//!   free, or her money back);
//! - refunds requested and not finished are asked again with their own Idempotence-Key
//!   (ЮKassa answers the refund it already made), then followed until they finish.

use crate::{
    client::JobQueue,
    handlers::notify_job::SendEmail,
    outbox,
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use adapters::payments::{
    NewRefund, Payment, PaymentError, PaymentGateway, PaymentStatus, RefundStatus,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use storage::{
    outbox::OutboxJob,
    payments::{self, Confirmation, EventPayment, PaymentState, RefundState},
};
use time::OffsetDateTime;

/// How many lapsed holds and unfinished refunds one run takes on (the next run, five
/// minutes later, takes the rest).
const BATCH: i64 = 200;

/// The schedule's job: settle lapsed holds and unfinished refunds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SettlePayments {}

impl Job for SettlePayments {
    const QUEUE: QueueName = QueueName::Payments;
}

impl RunJob for SettlePayments {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let Some(kassa) = env.payments.as_deref() else {
            tracing::debug!("ЮKassa is not configured; nothing to settle");
            return Ok(());
        };
        let swept = sweep(&env.db, &env.queue, kassa, env.clock.now()).await?;
        tracing::info!(
            holds = swept.holds,
            refunds = swept.refunds,
            "payments settled"
        );
        Ok(())
    }
}

impl From<PaymentError> for JobError {
    fn from(error: PaymentError) -> Self {
        // Even bad credentials are worth another try: an operator fixes them, and a held
        // seat must not stay held because of it.
        JobError::Retry(error.into())
    }
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Swept {
    pub holds: usize,
    pub refunds: usize,
}

/// Settles every open payment whose hold ran out before `now`, and every unfinished refund.
pub async fn sweep(
    db: &PgPool,
    queue: &JobQueue,
    kassa: &dyn PaymentGateway,
    now: OffsetDateTime,
) -> Result<Swept, JobError> {
    let mut swept = Swept::default();
    for payment in payments::lapsed(db, now, BATCH).await? {
        let fetched = match payment.yookassa_id.as_deref() {
            // Created here but never at ЮKassa (the process stopped mid-way): nobody can pay it.
            None => None,
            Some(id) => match kassa.payment(id).await {
                Ok(fetched) => Some(fetched),
                Err(PaymentError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
        };
        match fetched {
            Some(fetched) if belongs(&payment, &fetched) => {
                settle(db, queue, kassa, &payment, &fetched).await?;
                if matches!(
                    fetched.status,
                    PaymentStatus::Pending | PaymentStatus::WaitingForCapture
                ) {
                    payments::end_open(db, payment.id, PaymentState::Expired).await?;
                }
            }
            _ => {
                payments::end_open(db, payment.id, PaymentState::Expired).await?;
            }
        }
        swept.holds += 1;
    }
    for payment in payments::unfinished_refunds(db, BATCH).await? {
        refund(db, queue, kassa, &payment).await?;
        swept.refunds += 1;
    }
    Ok(swept)
}

/// What a notification about a payment came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// ЮKassa (or we) know no such payment: nothing done.
    Unknown,
    /// ЮKassa's payment does not match ours (metadata or amount): nothing done.
    Mismatch,
    /// ЮKassa says it is still waiting for the payer: nothing done.
    StillPending,
    /// Her seat is confirmed (now, or before: a repeated notification changes nothing).
    Confirmed,
    /// The payment came too late for a seat: it is being refunded.
    Refunding,
    /// Canceled: her held seat is free again.
    Canceled,
    /// A refund recorded as ЮKassa says it is.
    RefundRecorded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Mismatch => "mismatch",
            Self::StillPending => "pending",
            Self::Confirmed => "confirmed",
            Self::Refunding => "refunding",
            Self::Canceled => "canceled",
            Self::RefundRecorded => "refund_recorded",
        }
    }
}

/// Fetches ЮKassa's payment `yookassa_id` and acts on what it says.
pub async fn act_on_payment(
    db: &PgPool,
    queue: &JobQueue,
    kassa: &dyn PaymentGateway,
    yookassa_id: &str,
) -> Result<Outcome, JobError> {
    let Some(ours) = payments::by_yookassa_id(db, yookassa_id).await? else {
        return Ok(Outcome::Unknown);
    };
    let fetched = match kassa.payment(yookassa_id).await {
        Ok(fetched) => fetched,
        Err(PaymentError::NotFound) => return Ok(Outcome::Unknown),
        Err(e) => return Err(e.into()),
    };
    if !belongs(&ours, &fetched) {
        tracing::warn!(payment_id = %ours.id, "ЮKassa's payment does not match ours; ignored");
        return Ok(Outcome::Mismatch);
    }
    settle(db, queue, kassa, &ours, &fetched).await
}

/// Whether ЮKassa's payment is the one we created for `ours`: its id, our id in its
/// metadata, our amount.
fn belongs(ours: &EventPayment, fetched: &Payment) -> bool {
    ours.yookassa_id.as_deref() == Some(fetched.id.as_str())
        && fetched.metadata.get("krug_payment_id") == Some(&ours.id.to_string())
        && fetched.amount == ours.amount
}

/// Moves our payment (and its seat) to where ЮKassa's is.
async fn settle(
    db: &PgPool,
    queue: &JobQueue,
    kassa: &dyn PaymentGateway,
    ours: &EventPayment,
    fetched: &Payment,
) -> Result<Outcome, JobError> {
    match fetched.status {
        PaymentStatus::Succeeded => {
            let ticket = [SendEmail::Ticket {
                payment_id: ours.id,
            }
            .outbox_row()];
            match payments::confirm(db, ours.id, &ticket).await? {
                Confirmation::Confirmed(p) | Confirmation::ConfirmedLate(p) => {
                    tracing::info!(payment_id = %p.id, event_id = %p.event_id, "paid seat confirmed");
                    relay(db, queue, &ticket).await;
                    Ok(Outcome::Confirmed)
                }
                Confirmation::RefundDue(p) => {
                    tracing::info!(payment_id = %p.id, "paid too late for a seat; refunding");
                    refund(db, queue, kassa, &p).await?;
                    Ok(Outcome::Refunding)
                }
                Confirmation::Unchanged => Ok(match ours.status {
                    PaymentState::Succeeded => Outcome::Confirmed,
                    _ => Outcome::Mismatch,
                }),
            }
        }
        PaymentStatus::Canceled => {
            if !payments::end_open(db, ours.id, PaymentState::Canceled).await? {
                payments::mark_canceled(db, ours.id).await?;
            }
            Ok(Outcome::Canceled)
        }
        // `capture: true` payments never wait for capture; if one does, it is not ours to
        // capture on a notification's word, so it waits like a pending one.
        PaymentStatus::Pending | PaymentStatus::WaitingForCapture => Ok(Outcome::StillPending),
    }
}

/// Asks ЮKassa to refund `payment` in full (again, if it was asked before: the refund's own
/// Idempotence-Key makes that the same refund) and records what it answers.
pub async fn refund(
    db: &PgPool,
    queue: &JobQueue,
    kassa: &dyn PaymentGateway,
    payment: &EventPayment,
) -> Result<Option<RefundStatus>, JobError> {
    let (Some(yookassa_id), Some(key)) = (payment.yookassa_id.as_deref(), payment.refund_key)
    else {
        return Ok(None);
    };
    let made = match payment.yookassa_refund_id.as_deref() {
        Some(refund_id) => kassa.refund(refund_id).await?,
        None => {
            kassa
                .create_refund(&NewRefund {
                    idempotence_key: key.to_string(),
                    payment_id: yookassa_id.to_owned(),
                    amount: payment.amount,
                    description: "Возврат за отменённую регистрацию на событие".to_owned(),
                })
                .await?
        }
    };
    let status = match made.status {
        RefundStatus::Pending => RefundState::Pending,
        RefundStatus::Succeeded => RefundState::Succeeded,
        RefundStatus::Canceled => RefundState::Canceled,
    };
    let receipt = [SendEmail::Refund {
        payment_id: payment.id,
    }
    .outbox_row()];
    if payments::refund_state(db, payment.id, &made.id, status, &receipt).await?
        && status == RefundState::Succeeded
    {
        relay(db, queue, &receipt).await;
    }
    tracing::info!(payment_id = %payment.id, refund = %status, "refund recorded");
    Ok(Some(made.status))
}

/// Fetches ЮKassa's refund `refund_id` and records what it says, if it is one of ours.
pub async fn act_on_refund(
    db: &PgPool,
    queue: &JobQueue,
    kassa: &dyn PaymentGateway,
    refund_id: &str,
) -> Result<Outcome, JobError> {
    let Some(ours) = payments::by_refund_id(db, refund_id).await? else {
        return Ok(Outcome::Unknown);
    };
    match kassa.refund(refund_id).await {
        Ok(fetched) if Some(fetched.payment_id.as_str()) == ours.yookassa_id.as_deref() => {
            refund(db, queue, kassa, &ours).await?;
            Ok(Outcome::RefundRecorded)
        }
        Ok(_) => Ok(Outcome::Mismatch),
        Err(PaymentError::NotFound) => Ok(Outcome::Unknown),
        Err(e) => Err(e.into()),
    }
}

/// Pushes the e-mail jobs a committed change recorded. A failed push is not the caller's
/// failure: the rows stay in the outbox and `reconcile` pushes them.
async fn relay(db: &PgPool, queue: &JobQueue, rows: &[OutboxJob]) {
    outbox::relay_committed(db, queue, rows, "e-mail job").await;
}
