//! Turns per key: holders of one key go one after the other, in the order they asked;
//! different keys do not wait for each other. An entry lives only while some holder
//! or waiter needs it, so the map stays as small as the work in progress, also when a
//! waiter gives up (its request was dropped) before its turn came.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per key: the lock, and how many turns (held or awaited) need it.
type Locks = Arc<Mutex<HashMap<String, (Arc<AsyncMutex<()>>, usize)>>>;

#[derive(Default, Clone)]
pub struct KeyLocks {
    locks: Locks,
}

/// The turn of one key, until dropped (also while still waiting for it).
pub struct Turn {
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
    locks: Locks,
}

impl KeyLocks {
    /// Waits for the turn of `key` (Tokio's mutex serves waiters first come, first
    /// served).
    pub async fn lock(&self, key: &str) -> Turn {
        let lock = {
            let mut locks = self.locks.lock().expect("key lock map poisoned");
            let (lock, users) = locks.entry(key.to_owned()).or_default();
            *users += 1;
            lock.clone()
        };
        // Counted from here on: dropping this future while it waits releases the count.
        let mut turn = Turn {
            key: key.to_owned(),
            guard: None,
            locks: self.locks.clone(),
        };
        turn.guard = Some(lock.lock_owned().await);
        turn
    }

    /// Whether no key has a holder or a waiter now.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.locks.lock().expect("key lock map poisoned").is_empty()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, users)) = locks.get_mut(&self.key) {
            *users -= 1;
            if *users == 0 {
                locks.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_key_waits_for_its_holder_and_another_key_does_not() {
        let locks = KeyLocks::default();
        let first = locks.lock("MSCU1").await;
        let other = tokio::time::timeout(Duration::from_secs(1), locks.lock("MSCU2")).await;
        assert!(other.is_ok(), "a different key does not wait");
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("MSCU1").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the same key waits for its holder");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the waiter gets its turn once the holder is done")
            .unwrap();
        drop(second);
        drop(other);
        assert!(locks.is_idle(), "no entry outlives its holders");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_no_entry_behind() {
        let locks = KeyLocks::default();
        let holder = locks.lock("MSCU1").await;
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("MSCU1").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The holder leaves first, then the waiter is dropped before it runs again.
        drop(holder);
        waiter.abort();
        let _ = waiter.await;
        assert!(
            locks.is_idle(),
            "the abandoned wait left its key in the map"
        );
        // Given up before the holder left, too.
        let holder = locks.lock("MSCU2").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), locks.lock("MSCU2")).await;
        assert!(gave_up.is_err());
        drop(holder);
        assert!(locks.is_idle(), "a timed-out wait left its key in the map");
    }
}
