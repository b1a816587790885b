//! The jobs of the `notify` queue as they are recorded and pushed: a message to a member
//! (`Notify`), the day's event reminders (`RemindEvents`) and an e-mail (`SendEmail`), with
//! the outbox rows that carry them.
//!
//! What each does when it runs is in `notify`, `events` and `email`. The payloads live here,
//! apart from that work, so that those three — and every handler that records a message —
//! can name them without importing one another.

use crate::{
    outbox,
    queue::{Job, QueueName},
};
use domain::{messages::Message, settlement::Period};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use storage::outbox::OutboxJob;
use time::Date;
use uuid::Uuid;

/// The jobs of the `notify` queue: a message to send, the day's event reminders to fan out
/// as messages, or an e-mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum NotifyJob {
    Send(Notify),
    /// Several messages, sent as `Send` sends each with the reads and records of all in a few
    /// statements: what one transaction recorded for many members (a scan batch's accruals).
    SendAll {
        messages: Vec<Notify>,
    },
    /// The schedule `event_reminders`: reminders for events of the next day.
    RemindEvents(RemindEvents),
    /// An e-mail: a ticket, a refund receipt or a monthly statement.
    Email(SendEmail),
}

impl Default for NotifyJob {
    /// What the schedule enqueues.
    fn default() -> Self {
        Self::RemindEvents(Default::default())
    }
}

impl NotifyJob {
    /// The job that sends these messages: `Send` for one, `SendAll` for more.
    pub fn of(mut notifies: Vec<Notify>) -> Self {
        if notifies.len() == 1 {
            Self::Send(notifies.remove(0))
        } else {
            Self::SendAll { messages: notifies }
        }
    }
}

impl Job for NotifyJob {
    const QUEUE: QueueName = QueueName::Notify;
}

/// Tell `user_id` the `message`; `dedupe_key` names this message once and for all.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notify {
    pub user_id: Uuid,
    pub message: Message,
    pub dedupe_key: String,
}

/// At most this many messages in one job: a job's sends are a few seconds of work, and an
/// event's reminders to all its guests are several jobs.
const MESSAGES_PER_JOB: usize = 100;

/// The outbox rows of the jobs sending these messages (none for none, one per
/// [`MESSAGES_PER_JOB`]), each job's id derived from its messages' dedupe keys, so that
/// recording them twice enqueues them once.
pub fn outbox_rows(mut notifies: Vec<Notify>) -> Vec<OutboxJob> {
    let mut rows = Vec::with_capacity(notifies.len().div_ceil(MESSAGES_PER_JOB));
    while !notifies.is_empty() {
        let rest = notifies.split_off(notifies.len().min(MESSAGES_PER_JOB));
        let keys: Vec<&str> = notifies.iter().map(|n| n.dedupe_key.as_str()).collect();
        let id = Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("notify:{}", keys.join(",")).as_bytes(),
        );
        rows.push(outbox::row(id, &NotifyJob::of(notifies), None));
        notifies = rest;
    }
    rows
}

/// Records the jobs sending all these messages in the caller's transaction (see
/// [`outbox_rows`]) and returns their rows to relay after the commit.
pub async fn record_all(
    tx: &mut Transaction<'_, Postgres>,
    notifies: Vec<Notify>,
) -> sqlx::Result<Vec<OutboxJob>> {
    let rows = outbox_rows(notifies);
    outbox::record_all(tx, &rows).await?;
    Ok(rows)
}

/// An e-mail to send, named by what it is about (the job reads the rest when it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mail", rename_all = "snake_case")]
pub enum SendEmail {
    /// The ticket (and receipt of payment) for a confirmed paid seat.
    Ticket { payment_id: Uuid },
    /// The receipt of a paid seat's refund.
    Refund { payment_id: Uuid },
    /// A business's statement of a closed period, to each of its owners.
    Statement { period: String, business_id: Uuid },
}

impl SendEmail {
    /// The outbox row of this e-mail; its job id follows from what it is about, so that
    /// recording it twice enqueues it once.
    pub fn outbox_row(self) -> OutboxJob {
        let name = match &self {
            Self::Ticket { payment_id } => format!("email:ticket:{payment_id}"),
            Self::Refund { payment_id } => format!("email:refund:{payment_id}"),
            Self::Statement {
                period,
                business_id,
            } => format!("email:statement:{period}:{business_id}"),
        };
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
        outbox::row(id, &NotifyJob::Email(self), None)
    }

    /// The statements of every business of a period just closed.
    pub fn statements(
        period: Period,
        business_ids: impl IntoIterator<Item = Uuid>,
    ) -> Vec<OutboxJob> {
        business_ids
            .into_iter()
            .map(|business_id| {
                Self::Statement {
                    period: period.to_string(),
                    business_id,
                }
                .outbox_row()
            })
            .collect()
    }
}

/// Remind the members registered for events on `date` (tomorrow in `KRUG_TIMEZONE` when
/// absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RemindEvents {
    #[serde(default)]
    pub date: Option<Date>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Tier;

    #[test]
    fn job_ids_follow_from_what_the_mail_is_about() {
        let payment_id = Uuid::now_v7();
        let a = SendEmail::Ticket { payment_id }.outbox_row();
        let b = SendEmail::Ticket { payment_id }.outbox_row();
        let c = SendEmail::Refund { payment_id }.outbox_row();
        assert_eq!(a.job_id, b.job_id, "the same ticket is one job");
        assert_ne!(a.job_id, c.job_id, "its refund receipt is another");
        assert_eq!(a.queue, "notify");
        assert_eq!(a.payload["job"], "email");
        assert_eq!(a.payload["mail"], "ticket");
    }

    #[test]
    fn the_job_payload_reads_back() {
        let job = SendEmail::Statement {
            period: "2026-11".to_owned(),
            business_id: Uuid::now_v7(),
        };
        let row = job.clone().outbox_row();
        let back: NotifyJob = serde_json::from_value(row.payload).unwrap();
        assert!(matches!(back, NotifyJob::Email(j) if j == job));
    }

    fn notice(key: &str) -> Notify {
        Notify {
            user_id: Uuid::now_v7(),
            message: Message::TierUpgraded { tier: Tier::Vip },
            dedupe_key: key.to_owned(),
        }
    }

    #[test]
    fn one_message_is_a_send_and_several_a_send_all_and_both_round_trip() {
        for (messages, expected) in [(vec![notice("a")], 1), (vec![notice("a"), notice("b")], 2)] {
            let payload = serde_json::to_value(NotifyJob::of(messages)).unwrap();
            let sent = match serde_json::from_value(payload).unwrap() {
                NotifyJob::Send(_) => 1,
                NotifyJob::SendAll { messages } => messages.len(),
                other => panic!("not a message: {other:?}"),
            };
            assert_eq!(sent, expected);
        }
        assert!(outbox_rows(Vec::new()).is_empty());
    }

    #[test]
    fn many_messages_are_jobs_of_at_most_a_hundred_and_the_same_messages_the_same_jobs() {
        let keys: Vec<String> = (0..250).map(|i| format!("m{i}")).collect();
        let messages = || keys.iter().map(|k| notice(k)).collect::<Vec<_>>();
        let rows = outbox_rows(messages());
        let sizes: Vec<usize> = rows
            .iter()
            .map(|r| r.payload["messages"].as_array().map_or(1, Vec::len))
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        let ids = |rows: &[OutboxJob]| rows.iter().map(|r| r.job_id).collect::<Vec<_>>();
        assert_eq!(ids(&rows), ids(&outbox_rows(messages())));
        assert_ne!(rows[0].job_id, rows[1].job_id);
    }
}
