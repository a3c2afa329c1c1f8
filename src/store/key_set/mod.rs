//! A set of keys remembered beyond one process: in memory ([`Keys`], bounded and
//! optionally expiring) and either in a line file under the storage directory
//! ([`KeyFile`]: loaded at start, appended to, compacted in the background) or in Redis
//! ([`RedisStore`]: one shared connection behind a circuit breaker).

mod breaker;
mod file;
mod redis;

use std::time::Duration;

use moka::sync::Cache;

pub use self::file::{FileOptions, KeyFile, LineFormat};
pub use self::redis::{check_url, InvalidRedisUrl, RedisError, RedisOptions, RedisStore};
use crate::clock::unix_seconds;

/// The keys held in memory, each with the unix second it was added at: bounded (the
/// least recently used go first) and, with a time to live, expiring.
#[derive(Clone)]
pub struct Keys {
    added: Cache<String, u64>,
    ttl: Option<Duration>,
}

impl Keys {
    /// At most `capacity` keys (unbounded without), each for `ttl` (for good without).
    pub fn new(capacity: Option<u64>, ttl: Option<Duration>) -> Self {
        let builder = Cache::builder();
        let added = match capacity {
            Some(capacity) => builder.max_capacity(capacity).build(),
            None => builder.build(),
        };
        Self { added, ttl }
    }

    /// Whether `key` is held and has not expired.
    pub fn contains(&self, key: &str) -> bool {
        self.added.get(key).is_some_and(|at| self.is_fresh(at))
    }

    /// Holds `key` as added at `at` (unix seconds).
    pub fn insert(&self, key: String, at: u64) {
        self.added.insert(key, at);
    }

    /// Whether a key added at `at` (unix seconds) is still held.
    pub fn is_fresh(&self, at: u64) -> bool {
        self.ttl
            .is_none_or(|ttl| unix_seconds().saturating_sub(at) < ttl.as_secs().max(1))
    }

    /// Every live key with the time it was added, oldest first.
    fn live(&self) -> Vec<(u64, String)> {
        self.added.run_pending_tasks();
        let mut live: Vec<(u64, String)> = self
            .added
            .iter()
            .filter(|(_, at)| self.is_fresh(*at))
            .map(|(key, at)| (at, key.as_ref().clone()))
            .collect();
        live.sort();
        live
    }
}
