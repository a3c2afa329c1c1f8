//! From a recognised webhook to a durable write: deduplication, writing to every sink
//! within a deadline, and the rule that only a confirmed write is acknowledged.

mod dedup;
mod intake;
pub mod poller;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

pub use self::dedup::{Claim, Dedup, DedupConfig, DedupError, RedisStore, DEDUP_FILE};
pub use self::intake::{CompletedJourney, Intake, OnComplete, Taken};
use crate::sinks::{Record, Sink, SinkError};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How long every sink together may take to confirm a write before the answer is 503.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
        }
    }
}

/// One delivery in progress, holding its dedup key.
pub struct Attempt<'d> {
    delivery: &'d Delivery,
    key: Option<&'d str>,
    duplicate: bool,
    _claim: Option<Claim>,
}

impl Attempt<'_> {
    /// The key was delivered before: nothing needs writing.
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Writes `record` to every sink; the key is remembered only once every sink
    /// confirmed, so a failed write can be retried.
    pub async fn write(self, record: &Record<'_>) -> Result<Delivered, DeliveryError> {
        if self.duplicate {
            return Ok(Delivered::Duplicate);
        }
        self.delivery.write_all(record).await?;
        if let Some(key) = self.key {
            self.delivery.dedup.remember(key).await;
        }
        Ok(Delivered::Accepted)
    }
}

/// What happened to a delivered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Written durably by every sink.
    Accepted,
    /// Seen and written before: not written again.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("sink `{sink}` failed: {source}")]
    Sink {
        sink: &'static str,
        #[source]
        source: SinkError,
    },
    #[error("sink `{sink}` did not confirm within {timeout:?}")]
    Timeout {
        sink: &'static str,
        timeout: Duration,
    },
}

pub struct Delivery {
    sinks: Vec<Arc<dyn Sink>>,
    dedup: Dedup,
    timeout: Duration,
    metrics: Metrics,
}

impl Delivery {
    pub fn new(
        sinks: Vec<Arc<dyn Sink>>,
        dedup: Dedup,
        config: &DeliveryConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            sinks,
            dedup,
            timeout: config.timeout,
            metrics,
        }
    }

    /// Starts delivering what `dedup_key` identifies. While the returned [`Attempt`]
    /// lives, another delivery of the same key waits, so that one update arriving twice
    /// at once is written once.
    pub async fn begin<'d>(&'d self, dedup_key: Option<&'d str>) -> Attempt<'d> {
        let (claim, duplicate) = match dedup_key {
            Some(key) => {
                let claim = self.dedup.claim(key).await;
                (Some(claim), self.dedup.contains(key).await)
            }
            None => (None, false),
        };
        Attempt {
            delivery: self,
            key: dedup_key,
            duplicate,
            _claim: claim,
        }
    }

    async fn write_all(&self, record: &Record<'_>) -> Result<(), DeliveryError> {
        let writes = self
            .sinks
            .iter()
            .map(|sink| self.write_one(sink.as_ref(), record));
        // Every write is awaited, even after one fails, so that no write is left
        // running unobserved; the first failure is reported.
        let results = join_all(writes).await;
        results.into_iter().collect()
    }

    async fn write_one(&self, sink: &dyn Sink, record: &Record<'_>) -> Result<(), DeliveryError> {
        let name = sink.name();
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, sink.write(record)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(DeliveryError::Sink { sink: name, source }),
            Err(_) => Err(DeliveryError::Timeout {
                sink: name,
                timeout: self.timeout,
            }),
        };
        match &result {
            Ok(()) => self
                .metrics
                .sink_write_duration
                .with_label_values(&[name])
                .observe(started.elapsed().as_secs_f64()),
            Err(error) => {
                let reason = match error {
                    DeliveryError::Sink { source, .. } => source.reason(),
                    DeliveryError::Timeout { .. } => "timeout",
                };
                self.metrics
                    .sink_write_failures
                    .with_label_values(&[name, reason])
                    .inc();
                tracing::error!(sink = name, error = %error, "sink write failed");
            }
        }
        result
    }

    /// True when every sink can take writes.
    pub fn is_ready(&self) -> bool {
        self.sinks.iter().all(|s| s.is_ready())
    }

    /// Each sink's name and whether it is ready, for `/readyz`.
    pub fn sink_states(&self) -> Vec<(&'static str, bool)> {
        self.sinks
            .iter()
            .map(|s| (s.name(), s.is_ready()))
            .collect()
    }

    /// The dedup store, for records that share it (such as unsubscriptions).
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    /// Flushes and closes every sink.
    pub async fn close(&self) {
        for sink in &self.sinks {
            if let Err(e) = sink.close().await {
                tracing::error!(sink = sink.name(), error = %e, "closing sink failed");
            }
        }
    }
}

/// The dedup key of a dead letter: a hash of its bytes, since it has no usable id.
/// Vizion resends a refused body at every check; it is kept once.
pub fn dead_letter_key(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("dead-letter:{}", hex::encode(Sha256::digest(body)))
}
