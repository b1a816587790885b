//! Where history reads go (a member's ledger and purchases, a partner's dashboard): a
//! streaming replica when `DATABASE_REPLICA_URL` names one, the primary otherwise — and the
//! primary while the replica does not answer. A replica that is down, restarting or cut off
//! must not take the history screens down with it: a read that finds it unreachable is
//! answered from the primary, and the next reads go there too until a probe in the
//! background finds the replica answering again (so no member waits on its connect timeout
//! more than once).
//!
//! A replica that answers but lags is still read: history may lag a little, by design (see
//! `api::state::AppState::history`).

use sqlx::PgPool;
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// How long a replica found unreachable is left alone before it is probed again.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a read waits for a replica's connection before the primary answers it: the
/// first read after the replica went away pays this once.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// The replica's pool (lazy, as the primary's), quicker than the primary's to give up.
pub fn replica_pool(url: &str, max_connections: u32) -> sqlx::Result<PgPool> {
    crate::pool_waiting(url, max_connections, REPLICA_ACQUIRE_TIMEOUT)
}

/// The pools history is read from (see the module's comment).
#[derive(Clone, Debug)]
pub struct HistoryDb {
    primary: PgPool,
    replica: Option<Replica>,
}

#[derive(Clone, Debug)]
struct Replica {
    pool: PgPool,
    /// False from a failed read until a probe answers.
    up: Arc<AtomicBool>,
}

impl HistoryDb {
    /// History read from `primary`, or from `replica` while it answers.
    pub fn new(primary: PgPool, replica: Option<PgPool>) -> Self {
        Self {
            primary,
            replica: replica.map(|pool| Replica {
                pool,
                up: Arc::new(AtomicBool::new(true)),
            }),
        }
    }

    /// Runs `read` on the replica, or on the primary when there is none, it is known to be
    /// down, or this read finds it unreachable.
    pub async fn read<T, F, Fut>(&self, read: F) -> sqlx::Result<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = sqlx::Result<T>>,
    {
        if let Some(replica) = &self.replica
            && replica.up.load(Ordering::Acquire)
        {
            match read(replica.pool.clone()).await {
                Err(e) if unreachable(&e) => replica.went_down(&e),
                answered => return answered,
            }
        }
        read(self.primary.clone()).await
    }

    /// Whether the replica answers (history is read from it), or `None` without one.
    pub fn replica_answers(&self) -> Option<bool> {
        self.replica.as_ref().map(|r| r.up.load(Ordering::Acquire))
    }

    /// Closes the replica's pool (the primary's belongs to its owner).
    pub async fn close(&self) {
        if let Some(replica) = &self.replica {
            replica.pool.close().await;
        }
    }
}

impl Replica {
    /// Sends the next reads to the primary and starts the probe that brings them back. Of
    /// reads failing together, the first starts the one probe.
    fn went_down(&self, error: &sqlx::Error) {
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(%error, "the replica does not answer: history is read from the primary");
        let replica = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if replica.pool.is_closed() {
                    return;
                }
                if sqlx::query("SELECT 1").execute(&replica.pool).await.is_ok() {
                    replica.up.store(true, Ordering::Release);
                    tracing::info!("the replica answers again: history is read from it");
                    return;
                }
            }
        });
    }
}

/// Whether `error` says the server could not be reached or is going away, rather than
/// something about the query (which the primary would answer the same).
fn unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Shutting down, crashed, starting up (class 57), or a query cancelled because the
        // standby's replay needed what it read (40001 on a standby: a recovery conflict).
        sqlx::Error::Database(e) => matches!(
            e.code().as_deref(),
            Some("57P01" | "57P02" | "57P03" | "40001")
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_out_of_reach_is_unreachable_and_a_bad_query_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(unreachable(&sqlx::Error::Io(refused)));
        assert!(unreachable(&sqlx::Error::PoolTimedOut));
        assert!(!unreachable(&sqlx::Error::RowNotFound));
        assert!(!unreachable(&sqlx::Error::ColumnNotFound("id".into())));
    }
}
