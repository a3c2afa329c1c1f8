//! A set of keys remembered beyond one process: in memory ([`Keys`], bounded and
//! optionally expiring) and either in a line file under the storage directory
//! ([`KeyFile`]: loaded at start, appended to, compacted in the background) or in Redis
//! ([`RedisStore`]: one shared connection behind a circuit breaker).

mod breaker;
mod file;
mod redis;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use self::file::{FileOptions, KeyFile, LineFormat};
pub use self::redis::{check_url, InvalidRedisUrl, RedisError, RedisOptions, RedisStore};
use crate::clock::unix_seconds;

/// The keys held in memory, each with the unix second it was added at: bounded (the
/// oldest added go first) and, with a time to live, expiring. Clones share the keys.
///
/// A key is held as 128 bits of its SHA-256, not as text: about 75 bytes a key at the
/// default dedup capacity (a map slot and a place in the order of addition; 60 to 105
/// with the tables' spare room) and no allocation of its own,
/// where a general-purpose concurrent cache took 380 bytes for an update id; at the
/// default dedup capacity that was the bulk of the process's memory. Two ids would
/// have to share those 128 bits for one to be taken for the other; the ids come from
/// authenticated senders, and finding such a pair takes about 2^64 hashes. The file
/// beside the keys ([`KeyFile`]) keeps their text.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<Mutex<Added>>,
    capacity: Option<usize>,
    ttl: Option<Duration>,
}

/// What a key is held as.
type KeyHash = [u64; 2];

fn key_hash(key: &str) -> KeyHash {
    let digest = Sha256::digest(key.as_bytes());
    let half = |range: std::ops::Range<usize>| {
        u64::from_le_bytes(digest[range].try_into().expect("8 bytes"))
    };
    [half(0..8), half(8..16)]
}

/// Every key held, and the order they were added in.
#[derive(Default)]
struct Added {
    held: HashMap<KeyHash, Held>,
    /// Oldest first, by place. A key added again is listed again: its earlier place
    /// no longer matches its `Held::place` and is skipped when it comes to the front.
    order: VecDeque<(u64, KeyHash)>,
    next_place: u64,
}

#[derive(Clone, Copy)]
struct Held {
    /// Unix seconds.
    at: u64,
    place: u64,
}

impl Keys {
    /// At most `capacity` keys (unbounded without), each for `ttl` (for good without).
    pub fn new(capacity: Option<u64>, ttl: Option<Duration>) -> Self {
        Self {
            inner: Arc::default(),
            capacity: capacity.map(|c| usize::try_from(c).unwrap_or(usize::MAX)),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Added> {
        // Nothing under the lock can panic but an allocation failing, which aborts; a
        // poisoned lock would only mean a key held without a place, never evicted.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `key` is held and has not expired.
    pub fn contains(&self, key: &str) -> bool {
        self.added_at(key).is_some()
    }

    /// When `key` was added (unix seconds), if it is held and has not expired.
    fn added_at(&self, key: &str) -> Option<u64> {
        self.added_at_hash(key_hash(key))
    }

    fn added_at_hash(&self, hash: KeyHash) -> Option<u64> {
        let held = self.lock().held.get(&hash).copied();
        held.map(|held| held.at).filter(|at| self.is_fresh(*at))
    }

    /// Holds `key` as added at `at` (unix seconds), then lets go of the expired keys
    /// and of the oldest beyond the capacity.
    pub fn insert(&self, key: &str, at: u64) {
        let hash = key_hash(key);
        let mut added = self.lock();
        let place = added.next_place;
        added.next_place += 1;
        added.held.insert(hash, Held { at, place });
        added.order.push_back((place, hash));
        let now = unix_seconds();
        while let Some(&(place, first)) = added.order.front() {
            let Some(held) = added.held.get(&first).copied().filter(|h| h.place == place) else {
                // An earlier place of a key added again, or of one already let go of.
                added.order.pop_front();
                continue;
            };
            let over = self.capacity.is_some_and(|c| added.held.len() > c);
            if !over && self.is_fresh_at(held.at, now) {
                break;
            }
            added.order.pop_front();
            added.held.remove(&first);
        }
        // Keys added again and again within the bounds leave places behind: drop them
        // before they outnumber the keys.
        if added.order.len() > 2 * added.held.len() + 1024 {
            let Added { held, order, .. } = &mut *added;
            order.retain(|(place, hash)| held.get(hash).is_some_and(|h| h.place == *place));
        }
    }

    /// Whether a key added at `at` (unix seconds) is still held.
    pub fn is_fresh(&self, at: u64) -> bool {
        self.is_fresh_at(at, unix_seconds())
    }

    fn is_fresh_at(&self, at: u64, now: u64) -> bool {
        self.ttl
            .is_none_or(|ttl| now.saturating_sub(at) < ttl.as_secs().max(1))
    }

    /// How many keys are held, expired ones not yet let go of included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_capacity_the_oldest_added_go_first() {
        let keys = Keys::new(Some(2), None);
        let now = unix_seconds();
        keys.insert("a", now);
        keys.insert("b", now);
        // Looking a key up does not keep it: the window is of the latest additions.
        assert!(keys.contains("a"));
        keys.insert("c", now);
        assert!(!keys.contains("a"));
        assert!(keys.contains("b") && keys.contains("c"));
    }

    #[test]
    fn a_key_added_again_takes_its_new_place_in_the_order() {
        let keys = Keys::new(Some(2), None);
        let now = unix_seconds();
        keys.insert("a", now - 1);
        keys.insert("b", now);
        keys.insert("a", now);
        keys.insert("c", now);
        assert!(keys.contains("a") && keys.contains("c"));
        assert!(!keys.contains("b"));
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn expired_keys_are_not_held_and_are_let_go_of() {
        let keys = Keys::new(None, Some(Duration::from_secs(60)));
        let now = unix_seconds();
        keys.insert("old", now - 120);
        assert!(!keys.contains("old"));
        keys.insert("new", now);
        assert!(keys.contains("new"));
        assert_eq!(keys.len(), 1, "the expired key is dropped");
    }

    #[test]
    fn repeated_additions_of_a_few_keys_leave_a_bounded_order() {
        let keys = Keys::new(Some(10), None);
        let now = unix_seconds();
        for i in 0..10_000 {
            keys.insert(&format!("k{}", i % 3), now);
        }
        let added = keys.lock();
        assert_eq!(added.held.len(), 3);
        assert!(
            added.order.len() <= 2 * 3 + 1024 + 1,
            "{}",
            added.order.len()
        );
    }
}
