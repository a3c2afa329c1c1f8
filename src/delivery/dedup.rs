//! Remembers the ids of updates already written, so that a resend is not written twice,
//! also across a restart: the ids are kept in memory and, by default, in an append-only
//! file under the storage directory (loaded at start, compacted as it grows), or in
//! Redis when several replicas share the work.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::config::secret::{self, InlineSecret, SecretError};

type InFlight = Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>;

/// The file under the storage directory that keeps the ids across restarts.
pub const DEDUP_FILE: &str = "dedup-ids.log";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// How many update ids to remember at most (the least recently used go first).
    pub capacity: u64,
    /// How long an update id is remembered.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Keep the ids in `storage.data_dir`/`dedup-ids.log`, so that a restart does not
    /// forget them. Ignored when Redis is configured.
    pub persist: bool,
    /// Redis URL (`redis://host:6379/0`, `rediss://…` for TLS): ids are kept there,
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
        }
    }
}

impl DedupConfig {
    /// Whether Redis is configured in any of its forms.
    pub fn uses_redis(&self) -> bool {
        self.redis_url.is_some() || self.redis_url_env.is_some() || self.redis_url_file.is_some()
    }

    /// What is wrong with the Redis settings (checked without connecting).
    pub fn problems(&self) -> Vec<String> {
        if !self.uses_redis() {
            return Vec::new();
        }
        let checked = self.redis_url().and_then(|url| {
            redis::Client::open(url.expose_secret())
                .map(drop)
                .map_err(|e| DedupError::BadRedisUrl(format!("{:?}", e.kind())))
        });
        match checked {
            Ok(()) if self.redis_timeout.is_zero() => {
                vec!["`dedup.redis_timeout` must be above 0".into()]
            }
            Ok(()) => Vec::new(),
            Err(e) => vec![e.to_string()],
        }
    }

    fn redis_url(&self) -> Result<secrecy::SecretString, DedupError> {
        Ok(secret::resolve(
            "redis_url",
            self.redis_url.as_ref(),
            self.redis_url_env.as_deref(),
            self.redis_url_file.as_deref(),
        )?)
    }

    /// The Redis store, when Redis is configured. It connects on first use.
    pub fn redis(&self) -> Result<Option<RedisStore>, DedupError> {
        if !self.uses_redis() {
            return Ok(None);
        }
        let url = self.redis_url()?;
        RedisStore::new(
            url.expose_secret(),
            &self.redis_key_prefix,
            self.redis_timeout,
        )
        .map(Some)
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

/// A shared Redis connection that connects on first use and reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl RedisStore {
    fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, DedupError> {
        // The URL may hold a password: the error names only what is wrong.
        let client = redis::Client::open(url)
            .map_err(|e| DedupError::BadRedisUrl(format!("{:?}", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2);
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(|e| DedupError::BadRedisUrl(format!("{:?}", e.kind())))?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    /// The full key of `name` (the configured prefix in front).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, String> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, command.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, String> {
        self.run(redis::cmd("EXISTS").arg(key).clone()).await
    }

    /// `SET key value EX ttl`.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), String> {
        let mut command = redis::cmd("SET");
        command
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        self.run::<()>(command).await
    }

    /// `SET key value NX EX ttl`: true when this call set it.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, String> {
        let mut command = redis::cmd("SET");
        command
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        let answer: Option<String> = self.run(command).await?;
        Ok(answer.is_some())
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        self.run::<()>(redis::cmd("DEL").arg(key).clone()).await
    }
}

/// Where remembered ids live beyond this process.
#[derive(Clone)]
enum Store {
    Memory,
    File(Arc<IdLog>),
    Redis(RedisStore),
}

/// A bounded, expiring set of update ids, safe to share between request handlers.
#[derive(Clone)]
pub struct Dedup {
    /// Id → when it was written (unix seconds).
    seen: Cache<String, u64>,
    ttl: Duration,
    store: Store,
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
    /// Ids kept in memory only: a restart forgets them.
    pub fn new(config: &DedupConfig) -> Self {
        Self {
            seen: Cache::builder().max_capacity(config.capacity).build(),
            ttl: config.ttl,
            store: Store::Memory,
            in_flight: Arc::default(),
        }
    }

    /// How long an id is remembered.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Ids kept as configured: in Redis when `dedup.redis_url` is set, else in
    /// `data_dir` unless `dedup.persist` is off. A file is read back here.
    pub fn open(config: &DedupConfig, data_dir: &Path) -> Result<Self, DedupError> {
        let mut dedup = Self::new(config);
        if let Some(redis) = config.redis()? {
            dedup.store = Store::Redis(redis);
        } else if config.persist {
            let log = IdLog::open(&data_dir.join(DEDUP_FILE), config.capacity, &dedup)?;
            dedup.store = Store::File(Arc::new(log));
        }
        Ok(dedup)
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

    /// Whether `key` was written within the TTL. When Redis cannot answer, the key
    /// counts as unseen: writing an update twice beats losing it.
    pub async fn contains(&self, key: &str) -> bool {
        if self.seen.get(key).is_some_and(|at| self.is_fresh(at)) {
            return true;
        }
        let Store::Redis(redis) = &self.store else {
            return false;
        };
        match redis.exists(&redis.key(&format!("dedup:{key}"))).await {
            Ok(true) => {
                self.seen.insert(key.to_owned(), unix_now());
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "Redis did not answer whether an update was seen; writing it");
                false
            }
        }
    }

    /// Remembers `key` as written now.
    pub async fn remember(&self, key: &str) {
        let now = unix_now();
        self.seen.insert(key.to_owned(), now);
        match &self.store {
            Store::Memory => {}
            Store::File(log) => {
                if let Err(e) = log.append(key, now, self) {
                    tracing::warn!(error = %e, "cannot keep an update id on disk");
                }
            }
            Store::Redis(redis) => {
                if let Err(e) = redis
                    .set(&redis.key(&format!("dedup:{key}")), "1", self.ttl)
                    .await
                {
                    tracing::warn!(error = %e, "cannot keep an update id in Redis");
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

    fn is_fresh(&self, seen_at: u64) -> bool {
        unix_now().saturating_sub(seen_at) < self.ttl.as_secs().max(1)
    }
}

/// The append-only file of remembered ids: one `<unix seconds> <id as JSON string>`
/// line each. Rewritten with only the live ids when it has grown by `capacity` lines.
struct IdLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    appended: AtomicU64,
    capacity: u64,
}

impl IdLog {
    fn open(path: &Path, capacity: u64, into: &Dedup) -> Result<Self, DedupError> {
        let fail = |e: std::io::Error| DedupError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut loaded = 0u64;
        match std::fs::File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    // A line cut short by a crash ends the useful part.
                    let Ok(line) = line else { break };
                    let Some((at, key)) = parse_line(&line) else {
                        continue;
                    };
                    if into.is_fresh(at) {
                        into.seen.insert(key, at);
                        loaded += 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        let log = Self {
            path: path.to_owned(),
            file: Mutex::new(open_append(path).map_err(fail)?),
            appended: AtomicU64::new(0),
            capacity,
        };
        {
            let mut file = log.file.lock().expect("dedup file lock poisoned");
            log.compact(&mut file, into).map_err(fail)?;
        }
        tracing::info!(path = %path.display(), loaded, "update ids read back");
        Ok(log)
    }

    fn append(&self, key: &str, at: u64, dedup: &Dedup) -> std::io::Result<()> {
        let mut line = format!("{at} ");
        line.push_str(&serde_json::to_string(key).unwrap_or_default());
        line.push('\n');
        let mut file = self.file.lock().expect("dedup file lock poisoned");
        file.write_all(line.as_bytes())?;
        if self.appended.fetch_add(1, Ordering::Relaxed) + 1 >= self.capacity {
            self.compact(&mut file, dedup)?;
        }
        Ok(())
    }

    /// Rewrites the file with the live ids only, oldest first, and appends from there.
    fn compact(&self, file: &mut std::fs::File, dedup: &Dedup) -> std::io::Result<()> {
        dedup.seen.run_pending_tasks();
        let mut live: Vec<(u64, String)> = dedup
            .seen
            .iter()
            .filter(|(_, at)| dedup.is_fresh(*at))
            .map(|(key, at)| (at, key.as_ref().clone()))
            .collect();
        live.sort();
        let temp = self.path.with_extension("log.tmp");
        {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
            for (at, key) in &live {
                writeln!(
                    out,
                    "{at} {}",
                    serde_json::to_string(key).unwrap_or_default()
                )?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&temp, &self.path)?;
        *file = open_append(&self.path)?;
        self.appended.store(0, Ordering::Relaxed);
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn parse_line(line: &str) -> Option<(u64, String)> {
    let (at, key) = line.split_once(' ')?;
    Some((at.parse().ok()?, serde_json::from_str(key).ok()?))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        assert!(dedup.in_flight.lock().unwrap().is_empty());
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
        dedup.seen.insert("a".into(), unix_now() - 2);
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
                unix_now() - 7200,
                unix_now() - 60,
                unix_now()
            ),
        )
        .unwrap();
        let dedup = Dedup::open(&config, dir.path()).unwrap();
        assert!(dedup.contains("recent").await);
        assert!(!dedup.contains("old").await);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted at start: {text}");

        // The fifth line written since the start compacts the file again.
        for key in ["a\nb", "c", "d", "e", "c"] {
            dedup.remember(key).await;
        }
        drop(dedup);
        let again = Dedup::open(&config, dir.path()).unwrap();
        for key in ["recent", "a\nb", "c", "d", "e"] {
            assert!(again.contains(key).await, "{key}");
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 5, "bounded by compaction: {lines} lines");
    }
}
