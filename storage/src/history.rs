//! Where history reads go (a member's ledger and purchases, a partner's dashboard): a
//! streaming replica when `DATABASE_REPLICA_URL` names one, the primary otherwise — and the
//! primary while the replica does not answer. A replica that is down, restarting or cut off
//! must not take the history screens down with it: a read that finds it unreachable is
//! answered from the primary, and the next reads go there too until a probe in the
//! background finds the replica answering again (so no member waits on its connect timeout
//! more than once).
//!
//! History may lag a little, by design (see `api::state::AppState::history`), but not much:
//! a replica more than `MAX_LAG` behind the primary (its replay paused, its link slow, a
//! long query holding replay back) is left alone until it has caught up. A watcher samples
//! the primary's WAL position every second and reads how far the replica has replayed: the
//! replica holds everything the primary had at the last sample its replay has reached, so
//! the time since that sample bounds how stale it is. An idle primary's position does not
//! move, so an idle replica never looks behind.

use sqlx::PgPool;
use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// How long a replica found unreachable is left alone before it is probed again.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a read waits for a replica's connection before the primary answers it: the
/// first read after the replica went away pays this once.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How far behind the primary the replica may be and still be read.
pub const MAX_LAG: Duration = Duration::from_secs(5);
/// How often the watcher samples the two servers' WAL positions.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

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
    /// False while the watcher finds the replica more than `MAX_LAG` behind.
    caught_up: Arc<AtomicBool>,
    /// Starts the watcher on the first read (inside the runtime).
    watching: Arc<Once>,
}

/// The replica's state, as `/ready` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Read.
    Answers,
    /// Answers but is more than `MAX_LAG` behind: the primary is read meanwhile.
    Lagging,
    /// Does not answer: the primary is read meanwhile.
    Unavailable,
}

impl HistoryDb {
    /// History read from `primary`, or from `replica` while it answers.
    pub fn new(primary: PgPool, replica: Option<PgPool>) -> Self {
        Self {
            primary,
            replica: replica.map(|pool| Replica {
                pool,
                up: Arc::new(AtomicBool::new(true)),
                caught_up: Arc::new(AtomicBool::new(true)),
                watching: Arc::new(Once::new()),
            }),
        }
    }

    /// Runs `read` on the replica, or on the primary when there is none, it is known to be
    /// down or too far behind, or this read finds it unreachable.
    pub async fn read<T, F, Fut>(&self, read: F) -> sqlx::Result<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = sqlx::Result<T>>,
    {
        if let Some(replica) = &self.replica
            && replica.state(&self.primary) == ReplicaState::Answers
        {
            match read(replica.pool.clone()).await {
                Err(e) if unreachable(&e) => replica.went_down(&e),
                answered => return answered,
            }
        }
        read(self.primary.clone()).await
    }

    /// The replica's state, or `None` without one.
    pub fn replica_state(&self) -> Option<ReplicaState> {
        self.replica.as_ref().map(|r| r.state(&self.primary))
    }

    /// Closes the replica's pool (the primary's belongs to its owner).
    pub async fn close(&self) {
        if let Some(replica) = &self.replica {
            replica.pool.close().await;
        }
    }
}

impl Replica {
    fn state(&self, primary: &PgPool) -> ReplicaState {
        self.watching.call_once(|| {
            tokio::spawn(watch_lag(primary.clone(), self.clone()));
        });
        if !self.up.load(Ordering::Acquire) {
            ReplicaState::Unavailable
        } else if !self.caught_up.load(Ordering::Acquire) {
            ReplicaState::Lagging
        } else {
            ReplicaState::Answers
        }
    }

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

/// Samples the primary's WAL position and the replica's replay every `SAMPLE_EVERY` until the
/// replica's pool closes, and keeps `caught_up` (see the module's comment). A sample that
/// fails changes nothing: an unreachable replica is the reads' to find.
async fn watch_lag(primary: PgPool, replica: Replica) {
    let mut samples = Samples::default();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !replica.pool.is_closed() {
        tick.tick().await;
        let Ok(position) =
            sqlx::query_scalar::<_, i64>("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&primary)
                .await
        else {
            continue;
        };
        samples.primary_at(Instant::now(), position);
        // NULL from a server that is no standby: it is as fresh as it gets.
        let Ok(replayed) = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
        )
        .fetch_one(&replica.pool)
        .await
        else {
            continue;
        };
        let caught_up = replayed.is_none_or(|r| samples.behind(Instant::now(), r) <= MAX_LAG);
        if replica.caught_up.swap(caught_up, Ordering::AcqRel) != caught_up {
            if caught_up {
                tracing::info!("the replica has caught up: history is read from it");
            } else {
                tracing::warn!(max_lag = ?MAX_LAG, "the replica lags: history is read from the primary");
            }
        }
    }
}

/// The primary's WAL positions of the last few samples, oldest first.
#[derive(Debug, Default)]
struct Samples(VecDeque<(Instant, i64)>);

impl Samples {
    fn primary_at(&mut self, at: Instant, position: i64) {
        self.0.push_back((at, position));
        // Older samples than twice the bound change no answer: `behind` is over it already.
        while self
            .0
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > 2 * MAX_LAG)
        {
            self.0.pop_front();
        }
    }

    /// How stale a replica that has replayed up to `replayed` may be at `now`: the time since
    /// the last sample it has reached (all of the kept span when it has reached none).
    fn behind(&self, now: Instant, replayed: i64) -> Duration {
        let reached = self
            .0
            .iter()
            .rev()
            .find(|(_, position)| *position <= replayed);
        match (reached, self.0.front()) {
            (Some((at, _)), _) => now.duration_since(*at),
            (None, Some((oldest, _))) => now.duration_since(*oldest).max(MAX_LAG + SAMPLE_EVERY),
            (None, None) => Duration::ZERO,
        }
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
    fn a_replica_is_as_stale_as_the_last_primary_position_it_has_replayed() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut samples = Samples::default();
        // An idle primary: the position stays, a replica at it is never further behind than
        // the last sample.
        for s in 0..3 {
            samples.primary_at(at(s), 100);
        }
        assert_eq!(samples.behind(at(3), 100), Duration::from_secs(1));
        // Writes from second 3 on; the replica stopped at 100.
        for s in 3..10 {
            samples.primary_at(at(s), 100 + s as i64);
        }
        assert_eq!(samples.behind(at(10), 100), Duration::from_secs(8));
        assert!(samples.behind(at(10), 100) > MAX_LAG);
        // It replays up to second 8's position: two seconds behind.
        assert_eq!(samples.behind(at(10), 108), Duration::from_secs(2));
        // Samples older than twice the bound are dropped; a replica behind all that are
        // kept is over the bound.
        for s in 10..30 {
            samples.primary_at(at(s), 100 + s as i64);
        }
        assert!(samples.0.len() <= 11, "{}", samples.0.len());
        assert!(samples.behind(at(30), 100) > MAX_LAG);
    }

    #[test]
    fn a_server_out_of_reach_is_unreachable_and_a_bad_query_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(unreachable(&sqlx::Error::Io(refused)));
        assert!(unreachable(&sqlx::Error::PoolTimedOut));
        assert!(!unreachable(&sqlx::Error::RowNotFound));
        assert!(!unreachable(&sqlx::Error::ColumnNotFound("id".into())));
    }
}
