//! What time it is for the rules that wait: a hold that ends, a lot of bonuses that expires,
//! a settlement period that is over. Production reads the system clock; a test moves its
//! clock forward to see a hold pass or a month end without waiting. Rows are stamped by the
//! database's own clock either way: this clock only decides what is due.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};
use time::{Duration, OffsetDateTime};

/// The system clock, possibly moved ahead (clones share the same offset).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    ahead_s: Arc<AtomicI64>,
}

impl Clock {
    /// Now, as the waiting rules see it.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::seconds(self.ahead_s.load(Ordering::Relaxed))
    }

    /// Moves this clock (and its clones) forward by `by`, for tests.
    pub fn advance(&self, by: Duration) {
        self.ahead_s
            .fetch_add(by.whole_seconds().max(0), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together_and_only_forward() {
        let clock = Clock::default();
        let other = clock.clone();
        clock.advance(Duration::days(31));
        assert!(other.now() - OffsetDateTime::now_utc() > Duration::days(30));
        clock.advance(Duration::days(-100));
        assert!(other.now() - OffsetDateTime::now_utc() > Duration::days(30));
    }
}
