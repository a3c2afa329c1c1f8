//! Remembers the ids of updates already written, so that a resend is not written twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type InFlight = Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>;

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
    in_flight: InFlight,
}

/// Exclusive right to deliver one key; a second delivery of the same key waits until
/// this one is dropped, then finds the key remembered (or retries if this one failed).
pub struct Claim {
    key: String,
    lock: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
    in_flight: InFlight,
}

impl Drop for Claim {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut in_flight = self.in_flight.lock().expect("dedup lock poisoned");
        // Two holders left (the map and this claim) means nobody else is waiting.
        if Arc::strong_count(&self.lock) == 2 {
            in_flight.remove(&self.key);
        }
    }
}

impl Dedup {
    pub fn new(config: &DedupConfig) -> Self {
        Self {
            seen: Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build(),
            in_flight: Arc::default(),
        }
    }

    /// Waits until no other delivery of `key` is in progress and claims it.
    pub async fn claim(&self, key: &str) -> Claim {
        let lock = {
            let mut in_flight = self.in_flight.lock().expect("dedup lock poisoned");
            in_flight.entry(key.to_owned()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        Claim {
            key: key.to_owned(),
            lock,
            guard: Some(guard),
            in_flight: self.in_flight.clone(),
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

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_and_the_map_is_emptied() {
        let dedup = Dedup::new(&DedupConfig::default());
        let first = dedup.claim("k").await;
        let second = {
            let dedup = dedup.clone();
            tokio::spawn(async move {
                let _claim = dedup.claim("k").await;
                dedup.contains("k")
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second claim waits");
        dedup.remember("k");
        drop(first);
        assert!(
            second.await.unwrap(),
            "the second sees what the first remembered"
        );
        assert!(dedup.in_flight.lock().unwrap().is_empty());
    }

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
