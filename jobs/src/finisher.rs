//! Writes jobs' final outcomes to the outbox in batches.
//!
//! Every job relayed from the outbox has its row marked finished when it is done or dead, so
//! that `reconcile` leaves it alone. One UPDATE per job would cost a commit per job; instead
//! outcomes are gathered for a few milliseconds and written together, without waiting for
//! the WAL flush (`synchronous_commit = off`). Losing a batch in a crash only means
//! `reconcile` pushes those jobs again later, and their handlers find their work done.

use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// How long outcomes gather before they are written.
const GATHER: Duration = Duration::from_millis(20);
const MAX_BATCH: usize = 2_000;

enum Message {
    Finished(Uuid, &'static str),
    Flush(oneshot::Sender<()>),
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Finisher {
    tx: mpsc::UnboundedSender<Message>,
}

impl std::fmt::Debug for Finisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Finisher")
    }
}

impl Finisher {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(db: PgPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(db, rx));
        Self { tx }
    }

    /// Notes that job `job_id` reached its final `outcome` (`done`, `dead`).
    pub fn finished(&self, job_id: Uuid, outcome: &'static str) {
        let _ = self.tx.send(Message::Finished(job_id, outcome));
    }

    /// Waits until everything noted so far is written (shutdown, tests).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(db: PgPool, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(first) = rx.recv().await {
        let mut batch: Vec<(Uuid, &'static str)> = Vec::new();
        let mut flushes = Vec::new();
        let flushing = matches!(first, Message::Flush(_));
        let mut next = Some(first);
        if !flushing {
            tokio::time::sleep(GATHER).await;
        }
        while let Some(message) = next.take().or_else(|| rx.try_recv().ok()) {
            match message {
                Message::Finished(id, outcome) => batch.push((id, outcome)),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
        }
        if !batch.is_empty() {
            if let Err(e) = storage::outbox::finish_batch(&db, &batch).await {
                // Reconcile will push these jobs again; their handlers find the work done.
                tracing::warn!(error = %e, jobs = batch.len(), "could not record job outcomes in the outbox");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
