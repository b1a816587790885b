//! `notify`: a message to a member, by push to each of their devices or, without one, by SMS;
//! and the queue's other jobs, event reminders (`handlers::events`) and e-mail (tickets,
//! receipts, statements: `handlers::email`). The jobs themselves are in `notify_job`.
//!
//! Marketing (coupons) and event reminders wait out quiet hours (22:00–09:00
//! `KRUG_TIMEZONE`): the job schedules a copy of itself for 09:00 instead of sending, so
//! nothing is dropped. Marketing goes only by a channel the member consented to
//! (`/users/me/settings`); refused on every channel she can be reached by, it is recorded as
//! `skipped`, never sent.
//! Every send is a `notifications` row keyed by the message's dedupe key (per device for
//! pushes), so a retried or duplicated job never sends twice. A token FCM calls dead is
//! forgotten; transient provider failures retry with backoff.

use crate::{
    Env,
    client::RawJob,
    handlers::notify_job::{Notify, NotifyJob},
    queue::{JobError, QueueName},
    run::{JobCtx, RunJob},
};
use adapters::{
    push::{PushError, PushMessage},
    sms::SmsError,
};
use domain::messages::quiet_hours_end;
use std::collections::{BTreeMap, HashMap, HashSet};
use storage::{
    devices::{self, Device},
    notifications::{self, Channel, NewNotification, Outcome},
    users::{self, Recipient},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Each job of the queue runs where its work is: messages here, reminders in `events`,
/// e-mail in `email`.
impl RunJob for NotifyJob {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        match self {
            Self::Send(notify) => send_all(&ctx, vec![notify]).await,
            Self::SendAll { messages } => send_all(&ctx, messages).await,
            Self::RemindEvents(remind) => remind.run(ctx).await,
            Self::Email(email) => email.run(ctx).await,
        }
    }
}

/// How one message reaches its member: a push to one of her devices, an SMS to her phone,
/// or nothing (recorded as skipped: she refuses marketing on every channel she has).
enum Delivery {
    Push(Device),
    Sms(String),
    Skipped { channel: Channel },
}

/// Deliveries sent between two records of their outcomes.
const RECORD_EVERY: usize = 16;

/// One delivery of message `notify` (an index into the job's messages), keyed for the
/// `notifications` record.
struct Attempt {
    notify: usize,
    key: String,
    delivery: Delivery,
}

/// Sends each message as the module's comment says: the members, their devices and what was
/// sent before are read for all of them at once, and the outcomes recorded a chunk per
/// statement.
/// Each message still succeeds or fails on its own: a retry of the job sends only what was
/// not sent (the records are keyed).
async fn send_all(ctx: &JobCtx, notifies: Vec<Notify>) -> Result<(), JobError> {
    let env = &ctx.env;
    let quiet = quiet_until(env.timezone);
    let mut seen = HashSet::new();
    let mut now = Vec::with_capacity(notifies.len());
    for notify in notifies {
        if !seen.insert(notify.dedupe_key.clone()) {
            continue;
        }
        match quiet {
            Some(until) if notify.message.waits_for_quiet_hours() => {
                postpone(ctx, &notify, until).await?;
            }
            _ => now.push(notify),
        }
    }
    if now.is_empty() {
        return Ok(());
    }
    let members: Vec<Uuid> = now.iter().map(|n| n.user_id).collect();
    // Whom to reach and what went out before, read together and planned for these ids (a
    // batch's statements, see `storage::begin_batch`); nothing is held during the sends.
    let mut reads = storage::begin_batch(&env.db).await?;
    let recipients: HashMap<Uuid, Recipient> = users::recipients(&mut *reads, &members)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let mut devices_of: HashMap<Uuid, Vec<Device>> = HashMap::new();
    for device in devices::of_users(&mut *reads, &members).await? {
        devices_of.entry(device.user_id).or_default().push(device);
    }

    // Push to her devices; SMS when she has none, or when she refuses marketing by push but
    // not by SMS; nothing when she refuses it on both.
    let mut attempts = Vec::new();
    for (index, notify) in now.iter().enumerate() {
        let Some(recipient) = recipients.get(&notify.user_id) else {
            tracing::info!(user_id = %notify.user_id, "no such member any more; message dropped");
            continue;
        };
        let marketing = notify.message.is_marketing();
        let devices = devices_of.get(&notify.user_id).cloned().unwrap_or_default();
        if devices.is_empty() || (marketing && !recipient.push_marketing) {
            let (suffix, delivery) = if !marketing || recipient.sms_marketing {
                ("sms", Delivery::Sms(recipient.phone.clone()))
            } else {
                let channel = if devices.is_empty() {
                    Channel::Sms
                } else {
                    Channel::Push
                };
                ("no-consent", Delivery::Skipped { channel })
            };
            attempts.push(Attempt {
                notify: index,
                key: format!("{}:{suffix}", notify.dedupe_key),
                delivery,
            });
        } else {
            attempts.extend(devices.into_iter().map(|device| Attempt {
                notify: index,
                key: format!("{}:push:{}", notify.dedupe_key, device.id),
                delivery: Delivery::Push(device),
            }));
        }
    }
    let keys: Vec<String> = attempts.iter().map(|a| a.key.clone()).collect();
    let sent: HashSet<String> = notifications::sent_among(&mut *reads, &keys)
        .await?
        .into_iter()
        .collect();
    reads.commit().await?;
    attempts.retain(|a| !sent.contains(&a.key));

    let rendered: Vec<(String, String)> = now.iter().map(|n| n.message.render()).collect();
    let mut troubles = Troubles::default();
    // Recorded as they go, a few at a time: a worker that dies mid-job leaves at most one
    // chunk sent and unrecorded (sent again by the retry), not the whole job.
    for chunk in attempts.chunks(RECORD_EVERY) {
        let mut outcomes = Vec::with_capacity(chunk.len());
        for attempt in chunk {
            let (notify, text) = (&now[attempt.notify], &rendered[attempt.notify]);
            outcomes.push(deliver(env, attempt, notify, text, &mut troubles).await);
        }
        let records: Vec<(NewNotification<'_>, Outcome<'_>)> = chunk
            .iter()
            .zip(&outcomes)
            .map(|(attempt, outcome)| {
                record_of(
                    env,
                    attempt,
                    &now[attempt.notify],
                    &rendered[attempt.notify],
                    outcome,
                )
            })
            .collect();
        notifications::record_all(&env.db, &records).await?;
        if troubles.throttled.is_some() {
            // The provider wants a pause: the rest wait with the whole job (below).
            break;
        }
    }
    for device in troubles.forgotten {
        devices::forget(&env.db, device).await?;
        tracing::info!(device_id = %device, "push token is dead; device forgotten");
    }
    if let Some(wait) = troubles.throttled {
        // As told: the whole job again then; what was sent is recorded and skipped then.
        let until = OffsetDateTime::now_utc() + wait;
        send_later(ctx, "notify-retry-after", now, until).await?;
        tracing::info!(until = %until, "push provider asked to retry later: messages rescheduled");
        return Ok(());
    }
    if let Some(error) = troubles.retry {
        return Err(JobError::Retry(anyhow::anyhow!(error)));
    }
    match troubles.refused {
        Some(error) => Err(JobError::Permanent(anyhow::anyhow!(error))),
        None => Ok(()),
    }
}

/// What went wrong in a job's sends, beyond each delivery's own record.
#[derive(Default)]
struct Troubles {
    /// A transient provider failure: the job is worth a retry.
    retry: Option<String>,
    /// A final refusal (SMS): the job fails after the others were sent.
    refused: Option<String>,
    /// The longest wait a provider asked for (429/503 with a long `Retry-After`).
    throttled: Option<std::time::Duration>,
    /// Devices whose token the provider called dead.
    forgotten: Vec<Uuid>,
}

/// Sends one delivery of `notify` (rendered as `(title, body)`): the provider's reply, or
/// the error (recorded as failed), with what it means for the job noted in `troubles`.
async fn deliver(
    env: &Env,
    attempt: &Attempt,
    notify: &Notify,
    (title, body): &(String, String),
    troubles: &mut Troubles,
) -> Result<String, String> {
    match &attempt.delivery {
        Delivery::Skipped { .. } => Ok(String::new()),
        Delivery::Push(device) => {
            let message = PushMessage {
                token: &device.token,
                title,
                body,
                data: BTreeMap::from([(
                    "template".to_owned(),
                    notify.message.template().to_owned(),
                )]),
            };
            env.push.send(&message).await.map(|r| r.reply).map_err(|e| {
                let error = e.to_string();
                match e {
                    PushError::TokenInvalid(_) => troubles.forgotten.push(device.id),
                    PushError::Transient(_) => troubles.retry = Some(error.clone()),
                    PushError::Throttled { retry_after } => {
                        troubles.throttled = troubles.throttled.max(Some(retry_after));
                    }
                    _ => tracing::warn!(error = %error, "push refused"),
                }
                error
            })
        }
        Delivery::Sms(phone) => env
            .sms
            .send(phone.trim_start_matches('+'), body)
            .await
            .map(|r| r.reply)
            .map_err(|e| {
                let error = e.to_string();
                match e {
                    SmsError::Transient(_) => troubles.retry = Some(error.clone()),
                    _ => troubles.refused = Some(error.clone()),
                }
                error
            }),
    }
}

/// The `notifications` record of one delivery of `notify` and how it went.
fn record_of<'a>(
    env: &'a Env,
    attempt: &'a Attempt,
    notify: &'a Notify,
    (title, body): &'a (String, String),
    outcome: &'a Result<String, String>,
) -> (NewNotification<'a>, Outcome<'a>) {
    let (channel, phone, provider) = match &attempt.delivery {
        Delivery::Push(_) => (Channel::Push, None, env.push.name()),
        Delivery::Sms(phone) => (Channel::Sms, Some(phone.as_str()), env.sms.name()),
        Delivery::Skipped { channel } => (*channel, None, "none"),
    };
    let record = NewNotification {
        user_id: Some(notify.user_id),
        phone,
        email: None,
        channel,
        template: notify.message.template(),
        title: (channel == Channel::Push).then_some(title.as_str()),
        body,
        dedupe_key: &attempt.key,
        provider,
    };
    let outcome = match (&attempt.delivery, outcome) {
        (Delivery::Skipped { .. }, _) => Outcome::Skipped {
            reason: "the member does not accept marketing on this channel",
        },
        (_, Ok(reply)) => Outcome::Sent { reply },
        (_, Err(error)) => Outcome::Failed { error },
    };
    (record, outcome)
}

/// Pushes a job sending `notifies` at `until`. Its id follows from `why`, the messages'
/// dedupe keys and the time, so every copy of the job that asks for the same moment pushes
/// one job.
async fn send_later(
    ctx: &JobCtx,
    why: &str,
    notifies: Vec<Notify>,
    until: OffsetDateTime,
) -> Result<(), JobError> {
    let keys: Vec<&str> = notifies.iter().map(|n| n.dedupe_key.as_str()).collect();
    let job = RawJob {
        id: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{why}:{}:{}", keys.join(","), until.unix_timestamp()).as_bytes(),
        ),
        payload: serde_json::to_vec(&NotifyJob::of(notifies)).expect("job payloads serialize"),
        max_attempts: QueueName::Notify.max_attempts(),
        run_at: Some(until),
        idempotency_key: None,
        from_outbox: false,
    };
    ctx.env
        .queue
        .push_raw(QueueName::Notify, &[job])
        .await
        .map_err(|e| JobError::Retry(e.into()))
}

/// Sends `text` by SMS to `phone` (E.164) and records how it went as `record`; a transient
/// provider failure is worth a retry, any other is final.
pub(crate) async fn sms_and_record(
    env: &Env,
    phone: &str,
    text: &str,
    record: &NewNotification<'_>,
) -> Result<(), JobError> {
    let outcome = env.sms.send(phone.trim_start_matches('+'), text).await;
    match &outcome {
        Ok(receipt) => {
            notifications::record(
                &env.db,
                record,
                Outcome::Sent {
                    reply: &receipt.reply,
                },
            )
            .await?;
        }
        Err(e) => {
            notifications::record(
                &env.db,
                record,
                Outcome::Failed {
                    error: &e.to_string(),
                },
            )
            .await?;
        }
    }
    outcome.map(|_| ()).map_err(|e| match e {
        SmsError::Transient(_) => JobError::Retry(e.into()),
        _ => JobError::Permanent(e.into()),
    })
}

/// When quiet hours end, if they are on now (in `timezone`).
fn quiet_until(timezone: chrono_tz::Tz) -> Option<OffsetDateTime> {
    let now = domain::local_time::local(timezone, OffsetDateTime::now_utc());
    let offset = now.offset();
    let end = quiet_hours_end(time::PrimitiveDateTime::new(now.date(), now.time()))?;
    Some(end.assume_offset(offset).to_offset(time::UtcOffset::UTC))
}

/// Schedules this message again for the end of quiet hours (a delayed job with an id of its
/// own, the same for every copy of this message) and records that it waits.
async fn postpone(ctx: &JobCtx, notify: &Notify, until: OffsetDateTime) -> Result<(), JobError> {
    let env = &ctx.env;
    let (title, body) = notify.message.render();
    let key = format!("{}:quiet", notify.dedupe_key);
    let record = NewNotification {
        user_id: Some(notify.user_id),
        phone: None,
        email: None,
        channel: Channel::Push,
        template: notify.message.template(),
        title: Some(&title),
        body: &body,
        dedupe_key: &key,
        provider: env.push.name(),
    };
    notifications::record(&env.db, &record, Outcome::Scheduled { send_after: until }).await?;
    // The delayed copy runs after quiet hours, when `quiet_until` is None.
    send_later(ctx, "notify-after-quiet", vec![notify.clone()], until).await?;
    tracing::info!(until = %until, template = notify.message.template(), "quiet hours: message postponed");
    Ok(())
}
