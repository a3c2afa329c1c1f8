//! From a recognised webhook to a durable write: deduplication, writing to every sink
//! within a deadline (or to the local spool, see `delivery.mode`), and the rule that
//! only a confirmed write is acknowledged.

mod dedup;
mod intake;
mod key_lock;
pub mod poller;
pub mod spool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

pub use self::dedup::{Claim, Dedup, DedupConfig, DedupError, RedisStore, DEDUP_FILE};
pub use self::intake::{CompletedJourney, Intake, OnComplete, Taken};
use self::key_lock::KeyLocks;
pub use self::spool::{Spool, SpoolConfig, SpoolError, SpoolState};
use crate::sinks::{Record, Sink, SinkError};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How long every sink together may take to confirm a write before the answer is 503.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Where an update must be before it is answered 200 (see [`DeliveryMode`]). Unset:
    /// `broker_then_spool` when `spool.dir` is set, else `broker`.
    pub mode: Option<DeliveryMode>,
    /// In `broker_then_spool` mode: how long the sinks get to confirm before the update
    /// goes to the spool instead.
    #[serde(with = "humantime_serde")]
    pub broker_deadline: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            mode: None,
            broker_deadline: Duration::from_millis(500),
        }
    }
}

impl DeliveryConfig {
    /// The mode in force, given whether a spool is configured.
    pub fn effective_mode(&self, spool_configured: bool) -> DeliveryMode {
        self.mode.unwrap_or(if spool_configured {
            DeliveryMode::BrokerThenSpool
        } else {
            DeliveryMode::Broker
        })
    }

    /// What is wrong with these settings, one sentence each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.timeout.is_zero() {
            problems.push("`delivery.timeout` must be above 0".into());
        }
        if self.broker_deadline.is_zero() {
            problems.push("`delivery.broker_deadline` must be above 0".into());
        }
        problems
    }
}

/// Where an update must be before the bridge answers 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Confirmed by every sink within `delivery.timeout`; otherwise 503.
    Broker,
    /// fsync'd to the spool; the spool's forwarder publishes it.
    Spool,
    /// Confirmed by every sink within `delivery.broker_deadline`, or else fsync'd to the
    /// spool. While the spool holds records, new ones go to the spool too, so that they
    /// do not overtake older ones.
    BrokerThenSpool,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Broker => "broker",
            DeliveryMode::Spool => "spool",
            DeliveryMode::BrokerThenSpool => "broker_then_spool",
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

    /// Writes `record` to every sink (or to the spool, as `delivery.mode` says); the key
    /// is remembered only once the record is durable, so a failed write can be retried.
    pub async fn write(self, record: &Record<'_>) -> Result<Delivered, DeliveryError> {
        if self.duplicate {
            return Ok(Delivered::Duplicate);
        }
        self.delivery.deliver(record).await?;
        if let Some(key) = self.key {
            self.delivery.dedup.remember(key).await;
        }
        Ok(Delivered::Accepted)
    }
}

/// What happened to a delivered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Written durably by every sink, or to the spool.
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
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl DeliveryError {
    /// True when the spool refused the record for want of room.
    pub fn is_spool_full(&self) -> bool {
        matches!(self, DeliveryError::Spool(SpoolError::Full { .. }))
    }
}

pub struct Delivery {
    sinks: Vec<Arc<dyn Sink>>,
    dedup: Dedup,
    timeout: Duration,
    metrics: Metrics,
    mode: DeliveryMode,
    broker_deadline: Duration,
    spool: Option<Spool>,
    /// In `broker_then_spool` mode: one record per order key (container) at a time
    /// between arrival and durability, so that the second update of a container never
    /// reaches the brokers while the first is on its way to the spool.
    in_order: KeyLocks,
}

/// What writing one record to every sink came to.
struct Written {
    /// The sinks that confirmed it.
    confirmed: Vec<&'static str>,
    /// The first failure, if any sink did not confirm.
    failure: Option<DeliveryError>,
}

impl Written {
    fn into_result(self) -> Result<(), DeliveryError> {
        self.failure.map_or(Ok(()), Err)
    }
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
            mode: DeliveryMode::Broker,
            broker_deadline: config.broker_deadline,
            spool: None,
            in_order: KeyLocks::default(),
        }
    }

    /// Puts `spool` behind the sinks, in `mode`, and starts forwarding what it holds.
    pub fn with_spool(mut self, spool: Spool, mode: DeliveryMode) -> Self {
        spool.start_forwarding(self.sinks.clone());
        self.spool = Some(spool);
        self.mode = mode;
        self
    }

    pub fn mode(&self) -> DeliveryMode {
        self.mode
    }

    /// Writes `record` where the mode says.
    async fn deliver(&self, record: &Record<'_>) -> Result<(), DeliveryError> {
        match (&self.spool, self.mode) {
            (Some(spool), DeliveryMode::Spool) => Ok(spool.append(record).await?),
            (Some(spool), DeliveryMode::BrokerThenSpool) => {
                let _turn = self.in_order.lock(&spool::entry::order_key(record)).await;
                // Older records wait in the spool: this one queues behind them. With a sink
                // known to be down, trying it would only add the deadline to the answer.
                if spool.has_backlog() || !self.sinks.iter().all(|s| s.is_ready()) {
                    return Ok(spool.append(record).await?);
                }
                let written = self.write_all(record, self.broker_deadline).await;
                let Some(error) = written.failure else {
                    return Ok(());
                };
                tracing::warn!(error = %error, confirmed_by = ?written.confirmed, "sinks did not confirm in time; spooling");
                // The forwarder sends it only to the sinks that did not confirm it.
                Ok(spool.append_confirmed_by(record, written.confirmed).await?)
            }
            _ => self.write_all(record, self.timeout).await.into_result(),
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

    async fn write_all(&self, record: &Record<'_>, timeout: Duration) -> Written {
        let writes = self
            .sinks
            .iter()
            .map(|sink| self.write_one(sink.as_ref(), record, timeout));
        // Every write is awaited, even after one fails, so that no write is left
        // running unobserved; the first failure is reported.
        let results = join_all(writes).await;
        let mut written = Written {
            confirmed: Vec::with_capacity(results.len()),
            failure: None,
        };
        for (sink, result) in self.sinks.iter().zip(results) {
            match result {
                Ok(()) => written.confirmed.push(sink.name()),
                Err(error) => {
                    written.failure.get_or_insert(error);
                }
            }
        }
        written
    }

    async fn write_one(
        &self,
        sink: &dyn Sink,
        record: &Record<'_>,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let name = sink.name();
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, sink.write(record)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(DeliveryError::Sink { sink: name, source }),
            Err(_) => Err(DeliveryError::Timeout {
                sink: name,
                timeout,
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
                    DeliveryError::Spool(_) => "spool",
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

    /// True when an update can be made durable now: every sink can take writes, or in
    /// a spool mode, the spool has room.
    pub fn is_ready(&self) -> bool {
        match (&self.spool, self.mode) {
            (Some(spool), DeliveryMode::Spool | DeliveryMode::BrokerThenSpool) => {
                spool.is_accepting()
            }
            _ => self.sinks.iter().all(|s| s.is_ready()),
        }
    }

    /// The spool's state, for `/readyz`, when there is a spool.
    pub fn spool_state(&self) -> Option<SpoolState> {
        self.spool.as_ref().map(Spool::state)
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

    /// Stops forwarding and closes the spool (its records stay for the next run), then
    /// flushes and closes every sink.
    pub async fn close(&self) {
        if let Some(spool) = &self.spool {
            spool.close(self.timeout).await;
        }
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
