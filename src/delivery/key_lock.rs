//! Turns per key: holders of one key go one after the other, in the order they asked;
//! different keys do not wait for each other. An entry lives only while some holder
//! or waiter needs it, so the map stays as small as the work in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Locks = Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>;

#[derive(Default, Clone)]
pub struct KeyLocks {
    locks: Locks,
}

/// The turn of one key, until dropped.
pub struct Turn {
    key: String,
    lock: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
    locks: Locks,
}

impl KeyLocks {
    /// Waits for the turn of `key` (Tokio's mutex serves waiters first come, first
    /// served).
    pub async fn lock(&self, key: &str) -> Turn {
        let lock = {
            let mut locks = self.locks.lock().expect("key lock map poisoned");
            locks.entry(key.to_owned()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        Turn {
            key: key.to_owned(),
            lock,
            guard: Some(guard),
            locks: self.locks.clone(),
        }
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
        // Two holders left (the map and this turn) means nobody else is waiting; clones
        // are only made under the map's lock, so none can appear meanwhile.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.key);
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
}
