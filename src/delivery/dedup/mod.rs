//! Remembers the ids of updates already written, so that a resend is not written twice,
//! also across a restart: the ids are kept in memory and, by default, in an append-only
//! file under the storage directory (loaded at start, compacted in the background as it
//! grows), or in Redis when several replicas share the work.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::clock::unix_seconds;
use crate::config::BuildContext;
use crate::delivery::key_lock::{KeyLocks, Turn};
use crate::secret::{self, InlineSecret, SecretError};
use crate::store::key_set::{self, FileOptions, KeyFile, Keys, LineFormat, RedisOptions};
pub use crate::store::key_set::{RedisError, RedisStore};
use crate::telemetry::events::{DedupIdNotKept, DedupLookupFailed, DedupStore};
use crate::telemetry::Metrics;

/// The file under the storage directory that keeps the ids across restarts.
pub const DEDUP_FILE: &str = "dedup-ids.log";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// How many update ids to remember at most (the oldest added go first).
    pub capacity: u64,
    /// How long an update id is remembered.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Keep the ids in `storage.data_dir`/`dedup-ids.log`, so that a restart does not
    /// forget them. Ignored when Redis is configured.
    pub persist: bool,
    /// Redis URL (`redis://host:6379/0`; this build has no TLS): ids are kept there,
    /// shared by every replica. Inline, or by `redis_url_env` / `redis_url_file`, since
    /// it may hold a password.
    pub redis_url: Option<InlineSecret>,
    pub redis_url_env: Option<String>,
    pub redis_url_file: Option<PathBuf>,
    /// Prefix of every Redis key the bridge writes.
    pub redis_key_prefix: String,
    /// Longest a Redis command may take before the id is treated as unseen.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Failed Redis commands in a row after which Redis is not asked for
    /// `redis_breaker_open` (ids count as unseen meanwhile).
    pub redis_breaker_failures: u32,
    /// How long Redis is not asked once the breaker opened; then one command probes it.
    #[serde(with = "humantime_serde")]
    pub redis_breaker_open: Duration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        // A day of updates for some tens of thousands of tracked containers, at a few
        // updates each, in well under 100 MB.
        Self {
            capacity: 200_000,
            ttl: Duration::from_secs(24 * 60 * 60),
            persist: true,
            redis_url: None,
            redis_url_env: None,
            redis_url_file: None,
            redis_key_prefix: "vizion-bridge:".into(),
            redis_timeout: Duration::from_secs(2),
            // Three timeouts cost a few seconds once; five seconds of not asking keeps
            // a dead Redis from costing more than a probe per period, and a Redis back
            // from a restart is used again within seconds.
            redis_breaker_failures: 3,
            redis_breaker_open: Duration::from_secs(5),
        }
    }
}

impl DedupConfig {
    /// Whether Redis is configured in any of its forms.
    pub fn uses_redis(&self) -> bool {
        self.redis_url.is_some() || self.redis_url_env.is_some() || self.redis_url_file.is_some()
    }

    /// What is wrong with these settings, one sentence each (Redis is checked without
    /// connecting).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.capacity == 0 {
            problems.push("`dedup.capacity` must be above 0".into());
        }
        if !self.uses_redis() {
            return problems;
        }
        let checked = self.redis_url().and_then(|url| {
            key_set::check_url(url.expose_secret()).map_err(|e| DedupError::BadRedisUrl(e.0))
        });
        if let Err(e) = checked {
            problems.push(e.to_string());
        }
        if self.redis_timeout.is_zero() {
            problems.push("`dedup.redis_timeout` must be above 0".into());
        }
        if self.redis_breaker_failures == 0 {
            problems.push("`dedup.redis_breaker_failures` must be above 0".into());
        }
        if self.redis_breaker_open.is_zero() {
            problems.push("`dedup.redis_breaker_open` must be above 0".into());
        }
        problems
    }

    fn redis_url(&self) -> Result<secrecy::SecretString, DedupError> {
        Ok(secret::resolve(
            "redis_url",
            self.redis_url.as_ref(),
            self.redis_url_env.as_deref(),
            self.redis_url_file.as_deref(),
        )?)
    }

    /// The deduplication these settings describe, its ids kept under the context's
    /// data directory (see [`Dedup::open`]).
    pub fn build(&self, cx: &BuildContext) -> Result<Dedup, DedupError> {
        Dedup::open(self, &cx.data_dir, &cx.metrics)
    }

    /// The Redis store, when Redis is configured. It connects on first use.
    pub fn redis(&self, metrics: &Metrics) -> Result<Option<RedisStore>, DedupError> {
        if !self.uses_redis() {
            return Ok(None);
        }
        let url = self.redis_url()?;
        let options = RedisOptions {
            key_prefix: self.redis_key_prefix.clone(),
            timeout: self.redis_timeout,
            breaker_failures: self.redis_breaker_failures,
            breaker_open: self.redis_breaker_open,
        };
        RedisStore::new(url.expose_secret(), &options, metrics)
            .map(Some)
            .map_err(|e| DedupError::BadRedisUrl(e.0))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("`dedup.redis_url`: {0}")]
    RedisUrl(#[from] SecretError),
    #[error("`dedup.redis_url` is not a usable Redis URL: {0}")]
    BadRedisUrl(String),
    #[error("cannot keep update ids in {path}: {reason}")]
    File { path: String, reason: String },
}

/// Where remembered ids live beyond this process.
#[derive(Clone)]
enum Store {
    Memory,
    File(Arc<KeyFile>),
    Redis(RedisStore),
}

/// A bounded, expiring set of update ids, safe to share between request handlers.
#[derive(Clone)]
pub struct Dedup {
    /// The ids written, with when (unix seconds).
    seen: Keys,
    ttl: Duration,
    store: Store,
    in_flight: KeyLocks,
}

/// Exclusive right to deliver one key; a second delivery of the same key waits until
/// this one is dropped, then finds the key remembered (or retries if this one failed).
pub type Claim = Turn;

impl Dedup {
    /// Ids kept in memory only: a restart forgets them.
    pub fn new(config: &DedupConfig) -> Self {
        Self {
            seen: Keys::new(Some(config.capacity), Some(config.ttl)),
            ttl: config.ttl,
            store: Store::Memory,
            in_flight: KeyLocks::default(),
        }
    }

    /// How long an id is remembered.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Ids kept as configured: in Redis when `dedup.redis_url` is set, else in
    /// `data_dir` unless `dedup.persist` is off. A file is read back here.
    pub fn open(
        config: &DedupConfig,
        data_dir: &Path,
        metrics: &Metrics,
    ) -> Result<Self, DedupError> {
        let mut dedup = Self::new(config);
        if let Some(redis) = config.redis(metrics)? {
            dedup.store = Store::Redis(redis);
        } else if config.persist {
            let path = data_dir.join(DEDUP_FILE);
            let options = FileOptions {
                format: LineFormat::Stamped,
                // Written before the answer, not fsync'd: a crash forgets at most the
                // last ids, and their updates are written twice rather than lost.
                sync_each_append: false,
                compact_after: Some(config.capacity),
                name: "update ids",
                compactor: "dedup-compactor",
            };
            let log = KeyFile::open(&path, options, &dedup.seen).map_err(|e| DedupError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            dedup.store = Store::File(Arc::new(log));
        }
        Ok(dedup)
    }

    /// Waits until no other delivery of `key` is in progress and claims it.
    pub async fn claim(&self, key: &str) -> Claim {
        self.in_flight.lock(key).await
    }

    /// Whether `key` was written within the TTL. When Redis cannot answer (or is not
    /// asked, its breaker being open), the key counts as unseen: writing an update
    /// twice beats losing it.
    pub async fn contains(&self, key: &str) -> bool {
        if self.seen.contains(key) {
            return true;
        }
        let Store::Redis(redis) = &self.store else {
            return false;
        };
        match redis.exists(&redis.key(&format!("dedup:{key}"))).await {
            Ok(true) => {
                self.seen.insert(key, unix_seconds());
                true
            }
            Ok(false) => false,
            // Counted and logged once by the breaker, not per update.
            Err(RedisError::BreakerOpen) => false,
            Err(e) => {
                DedupLookupFailed { error: &e }.emit();
                false
            }
        }
    }

    /// Remembers `key` as written now.
    pub async fn remember(&self, key: &str) {
        let now = unix_seconds();
        self.seen.insert(key, now);
        match &self.store {
            Store::Memory => {}
            Store::File(log) => {
                if let Err(e) = log.append(key, now) {
                    DedupIdNotKept {
                        store: DedupStore::File,
                        error: &e,
                    }
                    .emit();
                }
            }
            Store::Redis(redis) => {
                match redis
                    .set(&redis.key(&format!("dedup:{key}")), "1", self.ttl)
                    .await
                {
                    Ok(()) | Err(RedisError::BreakerOpen) => {}
                    Err(e) => DedupIdNotKept {
                        store: DedupStore::Redis,
                        error: &e,
                    }
                    .emit(),
                }
            }
        }
    }

    /// The Redis store, when ids are kept there (shared by other per-replica records).
    pub fn redis(&self) -> Option<&RedisStore> {
        match &self.store {
            Store::Redis(redis) => Some(redis),
            _ => None,
        }
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
                dedup.contains("k").await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second claim waits");
        dedup.remember("k").await;
        drop(first);
        assert!(
            second.await.unwrap(),
            "the second sees what the first remembered"
        );
        assert!(dedup.in_flight.is_idle());
    }

    #[test]
    fn the_breaker_settings_are_checked_when_redis_is_configured() {
        let config = DedupConfig {
            redis_url: Some(InlineSecret::new("redis://127.0.0.1:6379/0")),
            redis_breaker_failures: 0,
            redis_breaker_open: Duration::ZERO,
            ..DedupConfig::default()
        };
        let problems = config.validate();
        crate::config::assert_names(&problems, "redis_breaker_failures");
        crate::config::assert_names(&problems, "redis_breaker_open");
        assert!(DedupConfig {
            redis_url: Some(InlineSecret::new("redis://127.0.0.1:6379/0")),
            ..DedupConfig::default()
        }
        .validate()
        .is_empty());
    }

    #[tokio::test]
    async fn remembers_until_the_ttl_passes() {
        let dedup = Dedup::new(&DedupConfig {
            capacity: 10,
            ttl: Duration::from_secs(1),
            ..DedupConfig::default()
        });
        assert!(!dedup.contains("a").await);
        dedup.remember("a").await;
        assert!(dedup.contains("a").await);
        dedup.seen.insert("a", unix_seconds() - 2);
        assert!(!dedup.contains("a").await);
    }

    #[tokio::test]
    async fn the_file_is_read_back_without_expired_ids_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let config = DedupConfig {
            capacity: 5,
            ttl: Duration::from_secs(3600),
            ..DedupConfig::default()
        };
        let path = dir.path().join(DEDUP_FILE);
        std::fs::write(
            &path,
            format!(
                "{} \"old\"\n{} \"recent\"\nnot a line\n{} \"cut",
                unix_seconds() - 7200,
                unix_seconds() - 60,
                unix_seconds()
            ),
        )
        .unwrap();
        let dedup = Dedup::open(&config, dir.path(), &Metrics::new()).unwrap();
        assert!(dedup.contains("recent").await);
        assert!(!dedup.contains("old").await);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted at start: {text}");

        // The fifth line written since the start wakes the compactor, which has
        // rewritten the file by the time the dedup is dropped.
        for key in ["a\nb", "c", "d", "e", "c"] {
            dedup.remember(key).await;
        }
        drop(dedup);
        let again = Dedup::open(&config, dir.path(), &Metrics::new()).unwrap();
        for key in ["recent", "a\nb", "c", "d", "e"] {
            assert!(again.contains(key).await, "{key}");
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 5, "compacted: {lines} lines");
    }
}
