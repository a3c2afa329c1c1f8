//! Which references the bridge has unsubscribed: a file under the storage directory
//! for one instance, or Redis (`SET NX`) so that several replicas issue one `DELETE`.
//! The Redis record shares deduplication's connection, and so its timeout and its
//! circuit breaker: while Redis is not asked, nothing is claimed and a later update of
//! the completed journey tries again.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::unix_seconds;
use crate::store::key_set::{FileOptions, KeyFile, Keys, LineFormat, RedisStore};

/// The file under the storage directory listing unsubscribed references.
pub const UNSUBSCRIBED_FILE: &str = "unsubscribed.log";
/// How long another replica's claim holds before it counts as abandoned.
const CLAIM_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a finished unsubscription is remembered in Redis.
const DONE_TTL: Duration = Duration::from_secs(400 * 24 * 60 * 60);

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This caller unsubscribes.
    Mine,
    /// Already unsubscribed.
    Done,
    /// Another caller (or replica) is unsubscribing it now.
    Elsewhere,
}

/// The set of references unsubscribed (or being unsubscribed now), kept in
/// `unsubscribed.log` or in Redis.
pub enum UnsubscribedSet {
    File(FileSet),
    Redis(RedisStore),
}

pub struct FileSet {
    file: KeyFile,
    /// The references unsubscribed, changed only under `pending`'s lock.
    done: Keys,
    /// The references being unsubscribed now.
    pending: Mutex<HashSet<String>>,
}

impl UnsubscribedSet {
    /// Reads back `data_dir/unsubscribed.log`.
    pub fn file(data_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let options = FileOptions {
            format: LineFormat::Bare,
            // A finished unsubscription must outlive a crash, or it would be issued again.
            sync_each_append: true,
            compact_after: None,
            name: "unsubscribed references",
            compactor: "unsubscribed-compactor",
        };
        let done = Keys::new(None, None);
        let file = KeyFile::open(&data_dir.join(UNSUBSCRIBED_FILE), options, &done)?;
        Ok(Self::File(FileSet {
            file,
            done,
            pending: Mutex::default(),
        }))
    }

    pub fn redis(store: RedisStore) -> Self {
        Self::Redis(store)
    }

    pub async fn claim(&self, reference_id: &str) -> Result<Claimed, String> {
        match self {
            UnsubscribedSet::File(file) => {
                let mut pending = file.pending.lock().expect("record lock poisoned");
                Ok(if file.done.contains(reference_id) {
                    Claimed::Done
                } else if !pending.insert(reference_id.to_owned()) {
                    Claimed::Elsewhere
                } else {
                    Claimed::Mine
                })
            }
            UnsubscribedSet::Redis(redis) => {
                let key = redis_key(redis, reference_id);
                let claimed = redis
                    .set_if_absent(&key, "pending", CLAIM_TTL)
                    .await
                    .map_err(|e| e.to_string())?;
                if claimed {
                    Ok(Claimed::Mine)
                } else {
                    Ok(Claimed::Elsewhere)
                }
            }
        }
    }

    pub async fn finish(&self, reference_id: &str) -> Result<(), String> {
        match self {
            UnsubscribedSet::File(file) => {
                let mut pending = file.pending.lock().expect("record lock poisoned");
                let now = unix_seconds();
                file.file
                    .append(reference_id, now)
                    .map_err(|e| e.to_string())?;
                pending.remove(reference_id);
                file.done.insert(reference_id, now);
                Ok(())
            }
            UnsubscribedSet::Redis(redis) => redis
                .set(&redis_key(redis, reference_id), "done", DONE_TTL)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Gives a claim up after a failure, so that a later update tries again.
    pub async fn release(&self, reference_id: &str) -> Result<(), String> {
        match self {
            UnsubscribedSet::File(file) => {
                let mut pending = file.pending.lock().expect("record lock poisoned");
                pending.remove(reference_id);
                Ok(())
            }
            UnsubscribedSet::Redis(redis) => redis
                .delete(&redis_key(redis, reference_id))
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

fn redis_key(redis: &RedisStore, reference_id: &str) -> String {
    redis.key(&format!("unsubscribed:{reference_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reference_is_claimed_once_and_remembered_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let record = UnsubscribedSet::file(dir.path()).unwrap();
        assert_eq!(record.claim("r1").await.unwrap(), Claimed::Mine);
        assert_eq!(record.claim("r1").await.unwrap(), Claimed::Elsewhere);
        record.release("r1").await.unwrap();
        assert_eq!(record.claim("r1").await.unwrap(), Claimed::Mine);
        record.finish("r1").await.unwrap();
        assert_eq!(record.claim("r1").await.unwrap(), Claimed::Done);
        drop(record);
        let again = UnsubscribedSet::file(dir.path()).unwrap();
        assert_eq!(again.claim("r1").await.unwrap(), Claimed::Done);
        assert_eq!(again.claim("r2").await.unwrap(), Claimed::Mine);
    }
}
