//! The Redis connection shared by deduplication and the auto-unsubscription record:
//! every command is bounded by a timeout (`dedup.redis_timeout`) and goes through one
//! circuit breaker, so that an unreachable Redis holds answers up only until the
//! breaker opens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::breaker::{Breaker, Observer, Transition};
use crate::telemetry::events::{DedupBreakerCreated, DedupBreakerTransition};
use crate::telemetry::Metrics;

/// How the connection behaves (from the `dedup.redis_*` settings).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Put in front of every key.
    pub key_prefix: String,
    /// Longest a command may take.
    pub timeout: Duration,
    /// Failed commands in a row after which Redis is not asked for `breaker_open`.
    pub breaker_failures: u32,
    /// How long Redis is not asked once the breaker opened.
    pub breaker_open: Duration,
}

/// What is wrong with a Redis URL; it names only what is wrong, never the URL (which
/// may hold a password).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRedisUrl(pub String);

/// Whether `url` is a usable Redis URL, checked without connecting.
pub fn check_url(url: &str) -> Result<(), InvalidRedisUrl> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| InvalidRedisUrl(format!("{:?}", e.kind())))
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Redis failed repeatedly and is not asked until the breaker probes it again.
    #[error("Redis is not asked for now: it failed repeatedly")]
    BreakerOpen,
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Command(String),
}

/// A shared Redis connection that connects on first use and reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

impl RedisStore {
    pub fn new(
        url: &str,
        options: &RedisOptions,
        metrics: &Metrics,
    ) -> Result<Self, InvalidRedisUrl> {
        // The URL may hold a password: the error names only what is wrong.
        let client =
            redis::Client::open(url).map_err(|e| InvalidRedisUrl(format!("{:?}", e.kind())))?;
        let timeout = options.timeout;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2);
        let connection = client
            .get_connection_manager_lazy(manager)
            .map_err(|e| InvalidRedisUrl(format!("{:?}", e.kind())))?;
        let breaker = Breaker::new(
            options.breaker_failures,
            options.breaker_open,
            report_transitions(metrics, options),
        );
        Ok(Self {
            connection,
            prefix: options.key_prefix.clone(),
            timeout,
            breaker: Arc::new(breaker),
        })
    }

    /// The full key of `name` (the configured prefix in front).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue + Send + 'static>(
        &self,
        command: redis::Cmd,
    ) -> Result<T, RedisError> {
        let breaker = self.breaker.clone();
        let mut connection = self.connection.clone();
        let timeout = self.timeout;
        // On a task of its own: a request dropped meanwhile (its client went away) does
        // not abandon the command, so that its outcome, a probe's above all, still
        // reaches the breaker.
        let call = tokio::spawn(async move {
            let permit = breaker
                .admit(Instant::now())
                .map_err(|_| RedisError::BreakerOpen)?;
            let answer = tokio::time::timeout(timeout, command.query_async(&mut connection)).await;
            // Any error counts against Redis: an error answer that repeats (a wrong
            // password, a full memory) would hold up every request just the same.
            match answer {
                Ok(Ok(value)) => {
                    permit.succeeded(Instant::now());
                    Ok(value)
                }
                Ok(Err(e)) => {
                    permit.failed(Instant::now());
                    Err(RedisError::Command(e.to_string()))
                }
                Err(_) => {
                    permit.failed(Instant::now());
                    Err(RedisError::Timeout(timeout))
                }
            }
        });
        call.await
            .unwrap_or_else(|e| Err(RedisError::Command(format!("the Redis call failed: {e}"))))
    }

    pub async fn exists(&self, key: &str) -> Result<bool, RedisError> {
        self.run(redis::cmd("EXISTS").arg(key).clone()).await
    }

    /// `SET key value EX ttl`.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), RedisError> {
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
    ) -> Result<bool, RedisError> {
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

    pub async fn delete(&self, key: &str) -> Result<(), RedisError> {
        self.run::<()>(redis::cmd("DEL").arg(key).clone()).await
    }

    /// The version and value of a versioned key (a hash of `v` and `d`, written by
    /// [`RedisStore::set_versioned`]), if there is one.
    pub async fn get_versioned(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, RedisError> {
        let mut command = redis::cmd("HMGET");
        command.arg(key).arg("v").arg("d");
        let (version, value): (Option<u64>, Option<Vec<u8>>) = self.run(command).await?;
        Ok(version.zip(value))
    }

    /// Writes `value` under `key` if its version is still `expected` (`None`: no such
    /// key), and sets its time to live to `ttl`, atomically. Returns the new version, or
    /// `None` when the version was another one. New versions are above both the last
    /// one and `floor`, so that a key written again after it expired does not reuse the
    /// versions it had.
    pub async fn set_versioned(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &[u8],
        ttl: Duration,
        floor: u64,
    ) -> Result<Option<u64>, RedisError> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(SET_VERSIONED)
            .arg(1)
            .arg(key)
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(value)
            .arg(ttl.as_secs().max(1))
            .arg(floor);
        let answer: i64 = self.run(command).await?;
        Ok(u64::try_from(answer).ok())
    }
}

/// The compare-and-set of [`RedisStore::set_versioned`]: one script, so that no other
/// client writes between the comparison and the write. Answers -1 on a conflict.
const SET_VERSIONED: &str = r"
local current = redis.call('HGET', KEYS[1], 'v')
if current == false then current = '' end
if current ~= ARGV[1] then return -1 end
local next = math.max((tonumber(current) or 0) + 1, tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'v', next, 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return next
";

/// Each transition of the breaker: the state gauge, the transitions counter, and one
/// log line.
fn report_transitions(metrics: &Metrics, options: &RedisOptions) -> Observer {
    let metrics = metrics.clone();
    let failures = options.breaker_failures;
    let open_for = options.breaker_open;
    metrics.emit(DedupBreakerCreated);
    Arc::new(move |Transition { from, to }| {
        metrics.emit(DedupBreakerTransition {
            from,
            to,
            failures,
            open_for,
        })
    })
}
