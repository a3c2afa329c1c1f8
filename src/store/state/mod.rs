//! The last state published for each Vizion reference, opaque bytes to this module,
//! kept beside the update ids: in Redis when it is configured (one key per reference,
//! shared by every replica), else in a line file under the storage directory
//! ([`StateFile`]). Either way it survives a restart, and a state lost (expired,
//! evicted, or a store replaced) reads as none: what was derived from it is then
//! published again, at least once rather than never.
//!
//! A state advances only once what was derived from it is published: the caller
//! [`StateStore::get`]s the value with its [`Version`], derives and publishes, and then
//! [`StateStore::commit`]s the next value on the version it read. The commit is a
//! compare-and-set: when another update of the same reference committed in between
//! (on another replica, or in this process), it answers [`Commit::Conflict`] and
//! writes nothing; the caller reads again and derives from the newer state.
//!
//! The store does not make two updates of one reference wait for each other; the
//! caller does, in-process, by holding a per-reference lock from the `get` to the
//! `commit`, so that conflicts only arise between replicas. Without that lock nothing
//! wrong is committed either: the loser of a race is told of the conflict.

mod file;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::file::{StateFile, STATE_FILE};
use super::appender::AppendError;
use super::key_set::{RedisError, RedisStore};
use crate::clock::unix_millis;
use crate::telemetry::events::{StateConflict, StateLookup};
use crate::telemetry::Metrics;

/// Which state a value is: it only increases for a reference, and is not reused when
/// a state is written again after it was lost (a new one starts above the clock's
/// milliseconds). Opaque to callers: they hand back what they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// The version that follows `last` (if any), not below `floor`.
    fn next(last: Option<Version>, floor: u64) -> Version {
        Version(last.map_or(0, |v| v.0).saturating_add(1).max(floor))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// A value with the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub version: Version,
    pub value: T,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The value is durable (fsync'd, or written in Redis) under this new version.
    Committed(Version),
    /// Nothing was written: the state is no longer at the expected version.
    Conflict,
}

/// How long and how many states are kept (`events.state_ttl` and
/// `events.state_capacity`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// How long a state is kept after its last commit; in Redis, the key's time to
    /// live, set again on every commit.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How many states a file keeps at most, the least recently committed going first.
    /// Redis bounds its keys by their time to live alone.
    pub capacity: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        // A journey lasts weeks to a few months; a reference quiet for longer than
        // four months has most likely finished, and if not it is published afresh.
        // Some tens of thousands of tracked containers, each with a state of a few
        // kilobytes at most, stay well under a few hundred megabytes.
        Self {
            ttl: Duration::from_secs(120 * 24 * 60 * 60),
            capacity: 100_000,
        }
    }
}

impl StateConfig {
    /// What is wrong with these settings, one sentence each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.ttl < Duration::from_secs(1) {
            problems.push("`events.state_ttl` must be at least 1s".into());
        }
        if self.capacity == 0 {
            problems.push("`events.state_capacity` must be above 0".into());
        }
        problems
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot keep reference states in {path}: {reason}")]
    Open { path: String, reason: String },
    /// The commit may or may not have been written.
    #[error("cannot write a reference state: {0}")]
    Write(#[from] AppendError),
    #[error("cannot read a reference state: {0}")]
    Read(#[from] std::io::Error),
    /// The command may or may not have been carried out.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

#[derive(Clone)]
pub(super) enum Backend {
    File(Arc<StateFile>),
    Redis { redis: RedisStore, ttl: Duration },
}

/// The states of every reference, safe to share between tasks (cloning shares them).
#[derive(Clone)]
pub struct StateStore {
    pub(super) backend: Backend,
    metrics: Metrics,
}

impl StateStore {
    /// States kept in Redis when `redis` is given (the connection deduplication uses),
    /// else in [`STATE_FILE`] under `data_dir`, read back here.
    pub fn open(
        config: &StateConfig,
        data_dir: &Path,
        redis: Option<RedisStore>,
        metrics: &Metrics,
    ) -> Result<Self, StateError> {
        match redis {
            Some(redis) => Ok(Self::in_redis(config, redis, metrics)),
            None => Self::in_file(config, &data_dir.join(STATE_FILE), metrics),
        }
    }

    /// States in the line file at `path`.
    pub fn in_file(
        config: &StateConfig,
        path: &Path,
        metrics: &Metrics,
    ) -> Result<Self, StateError> {
        let file = StateFile::open(path, config, metrics).map_err(|e| StateError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            backend: Backend::File(Arc::new(file)),
            metrics: metrics.clone(),
        })
    }

    /// States in Redis, under `<prefix>state:<reference>`.
    pub fn in_redis(config: &StateConfig, redis: RedisStore, metrics: &Metrics) -> Self {
        Self {
            backend: Backend::Redis {
                redis,
                ttl: config.ttl,
            },
            metrics: metrics.clone(),
        }
    }

    /// The state of `reference` and its version; `None` when none is kept.
    pub async fn get(&self, reference: &str) -> Result<Option<Versioned<Vec<u8>>>, StateError> {
        let found = match &self.backend {
            Backend::File(file) => file.get(reference)?,
            Backend::Redis { redis, .. } => redis
                .get_versioned(&redis_key(redis, reference))
                .await?
                .map(|(version, value)| Versioned {
                    version: Version(version),
                    value,
                }),
        };
        self.metrics.emit(StateLookup {
            hit: found.is_some(),
        });
        Ok(found)
    }

    /// Makes `value` the state of `reference` if it is still at `expected` (`None`:
    /// none was kept when it was read). Returns once the value is durable. On an error
    /// the value may have been committed or not: read it again.
    pub async fn commit(
        &self,
        reference: &str,
        expected: Option<Version>,
        value: Vec<u8>,
    ) -> Result<Commit, StateError> {
        let commit = match &self.backend {
            Backend::File(file) => file.commit(reference, expected, value).await?,
            Backend::Redis { redis, ttl } => {
                let written = redis
                    .set_versioned(
                        &redis_key(redis, reference),
                        expected.map(Version::get),
                        &value,
                        *ttl,
                        unix_millis(),
                    )
                    .await?;
                match written {
                    Some(version) => Commit::Committed(Version(version)),
                    None => Commit::Conflict,
                }
            }
        };
        if commit == Commit::Conflict {
            self.metrics.emit(StateConflict);
        }
        Ok(commit)
    }

    /// Stops taking commits and waits until those queued are written and the file's
    /// compaction, if one is under way, ended; a file can be opened again after this.
    /// Nothing to do for Redis.
    pub async fn close(&self) {
        if let Backend::File(file) = &self.backend {
            file.close().await;
        }
    }
}

fn redis_key(redis: &RedisStore, reference: &str) -> String {
    redis.key(&format!("state:{reference}"))
}
