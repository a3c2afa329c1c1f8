//! Remembers the ids of updates already written, so that a resend is not written twice.

use std::time::Duration;

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// How many update ids to remember at most (the least recently used go first).
    pub capacity: u64,
    /// How long an update id is remembered.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        // A day of updates for some tens of thousands of tracked containers, at a few
        // updates each, in well under 100 MB.
        Self {
            capacity: 200_000,
            ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// A bounded, expiring set of update ids, safe to share between request handlers.
#[derive(Clone)]
pub struct Dedup {
    seen: Cache<String, ()>,
}

impl Dedup {
    pub fn new(config: &DedupConfig) -> Self {
        Self {
            seen: Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build(),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.seen.contains_key(key)
    }

    pub fn remember(&self, key: &str) {
        self.seen.insert(key.to_owned(), ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_the_ttl_passes() {
        let dedup = Dedup::new(&DedupConfig {
            capacity: 10,
            ttl: Duration::from_millis(50),
        });
        assert!(!dedup.contains("a"));
        dedup.remember("a");
        assert!(dedup.contains("a"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!dedup.contains("a"));
    }
}
