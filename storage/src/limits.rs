//! Rate limits shared by every API process: counters in Redis, each over a window that
//! starts with its first count and lasts a fixed time (a day for a phone's codes, an hour
//! for an address's). All of a request's limits are checked and counted by one Lua script,
//! so several API processes never let through more than a limit between them, and a request
//! refused by one limit counts against none.
//!
//! Every limit key carries the hash tag `{prefix.limits}`: a script's keys must share a
//! Redis Cluster slot.

use crate::cache::Cache;
use redis::Script;
use std::sync::LazyLock;

/// One limit: at most `limit` per `seconds`, on `key`; a request counts `cost` (1 for a
/// request, kopecks for an amount of money).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub key: String,
    pub limit: u64,
    pub seconds: u64,
    pub cost: u64,
}

impl Window {
    /// A window that counts requests.
    pub fn requests(key: String, limit: u64, seconds: u64) -> Self {
        Self {
            key,
            limit,
            seconds,
            cost: 1,
        }
    }
}

/// What checking a request's limits came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Within every limit; each window is counted. `counts` holds each window's count now.
    Allowed { counts: Vec<u64> },
    /// Window `index` is full for `retry_after_s` more seconds; nothing was counted.
    Refused { index: usize, retry_after_s: u64 },
}

/// KEYS: the windows; ARGV: limit, seconds and cost of each. Returns {0, count…} or
/// {index, ttl}.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        for i, key in ipairs(KEYS) do
            local used = tonumber(redis.call('GET', key) or '0')
            if used + tonumber(ARGV[3 * i]) > tonumber(ARGV[3 * i - 2]) then
                local ttl = redis.call('TTL', key)
                if ttl < 1 then ttl = 1 end
                return {i, ttl}
            end
        end
        local out = {0}
        for i, key in ipairs(KEYS) do
            local n = redis.call('INCRBY', key, ARGV[3 * i])
            if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[3 * i - 1]) end
            out[#out + 1] = n
        end
        return out
        "#,
    )
});

/// A failed login-code check. KEYS: the address's failures, the phone's failures, the
/// phone's back-off; ARGV: seconds of the address window, of the phone window, failures
/// before back-off starts, first back-off, longest back-off.
static FAILED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local ip = redis.call('INCR', KEYS[1])
        if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
        local phone = redis.call('INCR', KEYS[2])
        if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
        local free = tonumber(ARGV[3])
        if phone >= free then
            local wait = tonumber(ARGV[4]) * 2 ^ (phone - free)
            if wait > tonumber(ARGV[5]) then wait = tonumber(ARGV[5]) end
            redis.call('SET', KEYS[3], 1, 'EX', math.floor(wait))
        end
        return {ip, phone}
        "#,
    )
});

impl Cache {
    /// The key of a limit: `{prefix.limits}:name:subject`.
    pub fn limit_key(&self, name: &str, subject: &str) -> String {
        format!("{{{}.limits}}:{name}:{subject}", self.prefix())
    }

    /// Checks every window and, if all have room, counts the request in each.
    pub async fn take(&self, windows: &[Window]) -> redis::RedisResult<Taken> {
        let mut invocation = TAKE.prepare_invoke();
        for window in windows {
            invocation
                .key(&window.key)
                .arg(window.limit)
                .arg(window.seconds.max(1))
                .arg(window.cost);
        }
        let reply: Vec<u64> = invocation.invoke_async(&mut self.connection()).await?;
        Ok(match reply.as_slice() {
            [0, counts @ ..] => Taken::Allowed {
                counts: counts.to_vec(),
            },
            [index, ttl, ..] => Taken::Refused {
                index: *index as usize - 1,
                retry_after_s: *ttl,
            },
            _ => Taken::Allowed { counts: Vec::new() },
        })
    }

    /// Gives back what [`Cache::take`] counted (the request did not happen after all).
    pub async fn give_back(&self, windows: &[Window]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for window in windows {
            pipe.cmd("DECRBY")
                .arg(&window.key)
                .arg(window.cost)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.connection()).await
    }

    /// Seconds until `key` (a limit or a back-off) lets requests through again; `None` if it
    /// does now, i.e. fewer than `limit` counts (a back-off key counts as full).
    pub async fn blocked_for(&self, key: &str, limit: u64) -> redis::RedisResult<Option<u64>> {
        let (used, ttl): (Option<u64>, i64) = redis::pipe()
            .get(key)
            .ttl(key)
            .query_async(&mut self.connection())
            .await?;
        Ok(match used {
            Some(used) if used >= limit => Some(ttl.max(1) as u64),
            _ => None,
        })
    }

    /// Counts a failed login-code check against the address and the phone; from the
    /// `backoff.free_failures`-th failure of a phone on, its next check must wait
    /// `first_s × 2^(failures − free)` seconds, at most `longest_s`.
    pub async fn login_failed(
        &self,
        ip_key: &str,
        ip_window_s: u64,
        phone_key: &str,
        backoff_key: &str,
        backoff: &Backoff,
    ) -> redis::RedisResult<()> {
        let _: Vec<u64> = FAILED
            .key(ip_key)
            .key(phone_key)
            .key(backoff_key)
            .arg(ip_window_s)
            .arg(backoff.window_s)
            .arg(backoff.free_failures)
            .arg(backoff.first_s)
            .arg(backoff.longest_s)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(())
    }
}

/// How a phone's failed code checks slow its next ones down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures are counted over this window.
    pub window_s: u64,
    /// Failures allowed before the waits start (a code allows five guesses).
    pub free_failures: u64,
    /// The first wait; each further failure doubles it.
    pub first_s: u64,
    pub longest_s: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            window_s: 24 * 3600,
            free_failures: 5,
            first_s: 30,
            longest_s: 3600,
        }
    }
}
