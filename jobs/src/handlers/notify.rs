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
use std::collections::BTreeMap;
use storage::{
    devices,
    notifications::{self, Channel, NewNotification, Outcome},
    users,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Each job of the queue runs where its work is: a message here, reminders in `events`,
/// e-mail in `email`.
impl RunJob for NotifyJob {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        match self {
            Self::Send(notify) => notify.send(ctx).await,
            Self::RemindEvents(remind) => remind.run(ctx).await,
            Self::Email(email) => email.run(ctx).await,
        }
    }
}

impl Notify {
    async fn send(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        if self.message.waits_for_quiet_hours() {
            if let Some(until) = quiet_until(env.timezone) {
                return postpone(&ctx, &self, until).await;
            }
        }
        let Some(consent) = users::settings(&env.db, self.user_id).await? else {
            tracing::info!(user_id = %self.user_id, "no such member any more; message dropped");
            return Ok(());
        };
        let marketing = self.message.is_marketing();
        let (title, body) = self.message.render();
        let template = self.message.template();
        let devices = devices::of_user(&env.db, self.user_id).await?;
        // Push to her devices; SMS when she has none, or when she refuses marketing by
        // push but not by SMS; nothing when she refuses it on both.
        if devices.is_empty() || (marketing && !consent.push_marketing) {
            if !marketing || consent.sms_marketing {
                return send_sms(&ctx, &self, template, &body).await;
            }
            let record = NewNotification {
                user_id: Some(self.user_id),
                phone: None,
                email: None,
                channel: if devices.is_empty() {
                    Channel::Sms
                } else {
                    Channel::Push
                },
                template,
                title: Some(&title),
                body: &body,
                dedupe_key: &format!("{}:no-consent", self.dedupe_key),
                provider: "none",
            };
            notifications::record(
                &env.db,
                &record,
                Outcome::Skipped {
                    reason: "the member does not accept marketing on this channel",
                },
            )
            .await?;
            return Ok(());
        }
        let mut retry = None;
        // The longest wait a provider asked for (429/503 with a long `Retry-After`).
        let mut throttled: Option<std::time::Duration> = None;
        for device in devices {
            let key = format!("{}:push:{}", self.dedupe_key, device.id);
            if notifications::sent_before(&env.db, &key).await? {
                continue;
            }
            let record = NewNotification {
                user_id: Some(self.user_id),
                phone: None,
                email: None,
                channel: Channel::Push,
                template,
                title: Some(&title),
                body: &body,
                dedupe_key: &key,
                provider: env.push.name(),
            };
            let message = PushMessage {
                token: &device.token,
                title: &title,
                body: &body,
                data: BTreeMap::from([("template".to_owned(), template.to_owned())]),
            };
            match env.push.send(&message).await {
                Ok(receipt) => {
                    notifications::record(
                        &env.db,
                        &record,
                        Outcome::Sent {
                            reply: &receipt.reply,
                        },
                    )
                    .await?;
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
                    match e {
                        PushError::TokenInvalid(_) => {
                            devices::forget(&env.db, device.id).await?;
                            tracing::info!(device_id = %device.id, "push token is dead; device forgotten");
                        }
                        PushError::Transient(_) => retry = Some(e),
                        PushError::Throttled { retry_after } => {
                            throttled = throttled.max(Some(retry_after));
                        }
                        _ => tracing::warn!(error = %e, "push refused"),
                    }
                }
            }
        }
        if let Some(wait) = throttled {
            // As told: the devices that got it are recorded as sent and skipped then.
            let until = OffsetDateTime::now_utc() + wait;
            return retry_at(&ctx, &self, until).await;
        }
        match retry {
            // The devices that got it are recorded as sent and skipped on the retry.
            Some(e) => Err(JobError::Retry(e.into())),
            None => Ok(()),
        }
    }
}

/// Schedules this message again at `until`, when the push provider asked us to come back.
async fn retry_at(ctx: &JobCtx, notify: &Notify, until: OffsetDateTime) -> Result<(), JobError> {
    let job = RawJob {
        id: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!(
                "notify-retry-after:{}:{}",
                notify.dedupe_key,
                until.unix_timestamp()
            )
            .as_bytes(),
        ),
        payload: serde_json::to_vec(&NotifyJob::Send(notify.clone()))
            .expect("job payloads serialize"),
        max_attempts: QueueName::Notify.max_attempts(),
        run_at: Some(until),
        idempotency_key: None,
        from_outbox: false,
    };
    ctx.env
        .queue
        .push_raw(QueueName::Notify, &[job])
        .await
        .map_err(|e| JobError::Retry(e.into()))?;
    tracing::info!(until = %until, "push provider asked to retry later: message rescheduled");
    Ok(())
}

async fn send_sms(
    ctx: &JobCtx,
    notify: &Notify,
    template: &str,
    body: &str,
) -> Result<(), JobError> {
    let env = &ctx.env;
    let Some(user) = storage::users::get(&env.db, notify.user_id).await? else {
        return Ok(());
    };
    let key = format!("{}:sms", notify.dedupe_key);
    if notifications::sent_before(&env.db, &key).await? {
        return Ok(());
    }
    let record = NewNotification {
        user_id: Some(user.id),
        phone: Some(&user.phone),
        email: None,
        channel: Channel::Sms,
        template,
        title: None,
        body,
        dedupe_key: &key,
        provider: env.sms.name(),
    };
    sms_and_record(env, &user.phone, body, &record).await
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
    let job = RawJob {
        id: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!(
                "notify-after-quiet:{}:{}",
                notify.dedupe_key,
                until.unix_timestamp()
            )
            .as_bytes(),
        ),
        payload: serde_json::to_vec(&NotifyJob::Send(notify.clone()))
            .expect("job payloads serialize"),
        max_attempts: QueueName::Notify.max_attempts(),
        run_at: Some(until),
        idempotency_key: None,
        from_outbox: false,
    };
    env.queue
        .push_raw(QueueName::Notify, &[job])
        .await
        .map_err(|e| JobError::Retry(e.into()))?;
    tracing::info!(until = %until, template = notify.message.template(), "quiet hours: message postponed");
    Ok(())
}
