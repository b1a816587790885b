//! E-mail (the `notify` job `notify_job::SendEmail`): a ticket when a paid seat is confirmed,
//! a receipt when its refund succeeds, and each owner's copy of her business's monthly
//! statement once the period closes.
//!
//! Each is recorded in the job outbox by the write that calls for it (the payment's
//! confirmation, the refund's success, the period's close), in the same transaction, so
//! none is lost and none is sent from an API request. The job reads everything it says
//! afresh, and sends only to the address the person gave (`users.email`) while her account
//! exists: a deleted member (her address erased) gets nothing. These are transactional, not
//! marketing, so `email_marketing` does not gate them. Every message is a `notifications`
//! row (channel `email`) keyed by its dedupe key, checked before sending, so a retried or
//! duplicated job sends nothing twice (as for SMS and pushes: only a crash between the
//! server's "250 OK" and that row's commit could repeat one).
//!
//! Nothing medical is said: a ticket names the event, its date, place and price, never who
//! else is there or any business's purchases.

use crate::{Env, handlers::notify_job::SendEmail, queue::JobError, run::JobCtx};
use adapters::email::{Attachment, EmailError, EmailMessage};
use domain::{settlement::Period, statement_csv};
use rust_decimal::Decimal;
use storage::{
    businesses, events,
    notifications::{self, Channel, NewNotification, Outcome},
    payments::{self, PaymentState, RefundState},
    settlement, users,
};
use time::OffsetDateTime;
use uuid::Uuid;

impl SendEmail {
    pub(crate) async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        match self {
            Self::Ticket { payment_id } => paid_seat(env, payment_id, Kind::Ticket).await,
            Self::Refund { payment_id } => paid_seat(env, payment_id, Kind::Refund).await,
            Self::Statement {
                period,
                business_id,
            } => {
                let period = Period::parse(&period).map_err(JobError::permanent)?;
                statement(env, period, business_id).await
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ticket,
    Refund,
}

/// The address `user_id` gave, while her account exists.
async fn address_of(env: &Env, user_id: Uuid) -> sqlx::Result<Option<(String, Option<String>)>> {
    let Some(user) = users::get(&env.db, user_id).await? else {
        return Ok(None);
    };
    Ok(user
        .email
        .filter(|e| !e.trim().is_empty())
        .map(|e| (e.trim().to_owned(), user.first_name)))
}

/// A ticket or a refund receipt for payment `payment_id`.
async fn paid_seat(env: &Env, payment_id: Uuid, kind: Kind) -> Result<(), JobError> {
    let Some(payment) = payments::get(&env.db, payment_id).await? else {
        tracing::warn!(%payment_id, "no such payment any more; no e-mail");
        return Ok(());
    };
    let due = match kind {
        Kind::Ticket => payment.status == PaymentState::Succeeded,
        Kind::Refund => payment.refund_status == Some(RefundState::Succeeded),
    };
    if !due {
        tracing::warn!(%payment_id, ?kind, status = %payment.status, "the payment is not where this e-mail says; none sent");
        return Ok(());
    }
    let Some((to, first_name)) = address_of(env, payment.user_id).await? else {
        tracing::debug!(%payment_id, "the member gave no e-mail address (or is gone); none sent");
        return Ok(());
    };
    let event = match events::get_for(&env.db, payment.event_id, payment.user_id).await {
        Ok(event) => event,
        Err(sqlx::Error::RowNotFound) => {
            tracing::warn!(%payment_id, "the event is gone; no e-mail");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let when = local_date_time(env, event.date);
    let hello = greeting(first_name.as_deref());
    let (template, subject, text) = match kind {
        Kind::Ticket => (
            "email_ticket",
            format!("Билет: {}", event.title),
            format!(
                "{hello}\n\nОплата получена, место за вами.\n\n\
                 Событие: {}\nКогда: {when}\nГде: {}\nОплачено: {} ₽\nНомер платежа: {}\n\n\
                 Это письмо — ваш билет и чек об оплате. Отменить регистрацию с возвратом денег \
                 можно в приложении не позже чем за 48 часов до начала.\n\n— Свой Круг\n",
                event.title,
                event.location,
                money(payment.amount),
                payment.id
            ),
        ),
        Kind::Refund => (
            "email_refund",
            format!("Возврат: {}", event.title),
            format!(
                "{hello}\n\nМы вернули {} ₽ за регистрацию на «{}» ({when}).\n\
                 Номер платежа: {}\n\nДеньги придут тем же способом, которым вы платили; \
                 срок зачисления зависит от банка.\n\n— Свой Круг\n",
                money(payment.amount),
                event.title,
                payment.id
            ),
        ),
    };
    let key = format!("email:{template}:{payment_id}");
    let message = EmailMessage {
        to,
        subject,
        text,
        attachments: vec![],
        message_id: Some(message_id(&key)),
    };
    send_once(env, Some(payment.user_id), template, &key, &message).await
}

/// A business's statement of `period`, to each of its owners who gave an address.
async fn statement(env: &Env, period: Period, business_id: Uuid) -> Result<(), JobError> {
    let Some(closed) = settlement::closed(&env.db, period, Some(business_id)).await? else {
        tracing::warn!(%period, "the period is not closed; no statement sent");
        return Ok(());
    };
    let Some(business) = businesses::get(&env.db, business_id).await? else {
        return Ok(());
    };
    // As `GET /business/settlements/{period}?format=csv` answers it: its line (zeros if it
    // had none), its transfer, no coalition totals.
    let line = closed.lines.first();
    let transfer = closed.transfers.first();
    let zero = Decimal::ZERO;
    let row = statement_csv::Row {
        business_id,
        business_name: line.map_or(business.name.as_str(), |l| l.business_name.as_str()),
        issued: line.map_or(zero, |l| l.issued),
        redeemed: line.map_or(zero, |l| l.redeemed),
        expired: line.map_or(zero, |l| l.expired),
        refunded: line.map_or(zero, |l| l.refunded),
        net: line.map_or(zero, |l| l.net),
        transfer: transfer.map(|t| {
            (
                t.direction.as_str(),
                t.amount,
                t.paid_at.map(|p| p.to_string()),
            )
        }),
    };
    let csv = statement_csv::write(&period.to_string(), "closed", &[row], None);
    let settle = match transfer {
        Some(t) if t.direction == "to_operator" => {
            format!("К оплате оператору коалиции: {} ₽.", money(t.amount))
        }
        Some(t) => format!("Оператор коалиции переведёт вам: {} ₽.", money(t.amount)),
        None => "Переводов по этому периоду нет.".to_owned(),
    };
    let subject = format!("Сверка за {period}: {}", business.name);
    let filename = format!("svoy-krug-{period}.csv");
    for (user_id, to) in businesses::owner_addresses(&env.db, business_id).await? {
        let text = format!(
            "Здравствуйте!\n\nПериод {period} закрыт. Итог для «{}»: {} ₽ \
             (начислено − возвращено − сгорело − списано).\n{settle}\n\n\
             Выписка во вложении ({filename}) и в кабинете партнёра.\n\n— Свой Круг\n",
            business.name,
            money(line.map_or(zero, |l| l.net)),
        );
        let key = format!("email:statement:{period}:{business_id}:{user_id}");
        let message = EmailMessage {
            to,
            subject: subject.clone(),
            text,
            attachments: vec![Attachment {
                filename: filename.clone(),
                content_type: "text/csv; charset=utf-8".to_owned(),
                content: csv.clone().into_bytes(),
            }],
            message_id: Some(message_id(&key)),
        };
        // One owner's failure must not cost the others theirs: the retry skips the sent.
        send_once(env, Some(user_id), "email_statement", &key, &message).await?;
    }
    Ok(())
}

/// Sends `message` unless a message of `key` was sent before, and records how it went.
async fn send_once(
    env: &Env,
    user_id: Option<Uuid>,
    template: &str,
    key: &str,
    message: &EmailMessage,
) -> Result<(), JobError> {
    if notifications::sent_before(&env.db, key).await? {
        tracing::info!(template, "e-mail sent before; not again");
        return Ok(());
    }
    let record = NewNotification {
        user_id,
        phone: None,
        email: Some(&message.to),
        channel: Channel::Email,
        template,
        title: Some(&message.subject),
        body: &message.text,
        dedupe_key: key,
        provider: env.email.name(),
    };
    match env.email.send(message).await {
        Ok(receipt) => {
            notifications::record(
                &env.db,
                &record,
                Outcome::Sent {
                    reply: &receipt.reply,
                },
            )
            .await?;
            tracing::info!(template, "e-mail sent");
            Ok(())
        }
        Err(e) => {
            notifications::record(
                &env.db,
                &record,
                Outcome::Failed {
                    error: &e.to_string(),
                },
            )
            .await?;
            Err(match e {
                EmailError::Transient(_) => JobError::Retry(e.into()),
                _ => JobError::Permanent(e.into()),
            })
        }
    }
}

/// A `Message-ID` of ours for a dedupe key.
fn message_id(key: &str) -> String {
    format!(
        "{}@svoykrug.ru",
        Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()).simple()
    )
}

fn greeting(first_name: Option<&str>) -> String {
    match first_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => format!("Здравствуйте, {name}!"),
        None => "Здравствуйте!".to_owned(),
    }
}

fn money(amount: Decimal) -> String {
    format!("{amount:.2}")
}

/// `dd.mm.yyyy HH:MM` in `KRUG_TIMEZONE`.
fn local_date_time(env: &Env, at: OffsetDateTime) -> String {
    let local = domain::local_time::local(env.timezone, at);
    format!(
        "{:02}.{:02}.{} {:02}:{:02}",
        local.day(),
        u8::from(local.month()),
        local.year(),
        local.hour(),
        local.minute()
    )
}
