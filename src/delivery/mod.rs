//! From an envelope to a durable write: deduplication, writing to every sink within a
//! deadline (or to the local spool, see `delivery.mode`), and the rule that only a
//! confirmed write is acknowledged.

mod dedup;
mod key_lock;
mod sink_set;
pub mod spool;
#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::dedup::{Claim, Dedup, DedupConfig, DedupError, RedisStore, DEDUP_FILE};
pub use self::key_lock::{KeyLocks, Turn};

pub use self::sink_set::{Purpose, SinkOutcome, SinkSet, SinkWrite};
pub use self::spool::{Spool, SpoolConfig, SpoolError, SpoolState};
use crate::events::Envelope;
use crate::sinks::{Sink, SinkError};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How long every sink together may take to confirm a write before the answer is 503.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Where an update must be before it is answered 200 (see [`AckMode`]). Unset:
    /// `broker_then_spool` when `spool.dir` is set, else `broker`.
    pub mode: Option<AckMode>,
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
    pub fn effective_mode(&self, spool_configured: bool) -> AckMode {
        self.mode.unwrap_or(if spool_configured {
            AckMode::BrokerThenSpool
        } else {
            AckMode::Broker
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

/// What must be durable before the bridge answers 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// Confirmed by every sink within `delivery.timeout`; otherwise 503.
    Broker,
    /// fsync'd to the spool; the spool's forwarder publishes it.
    Spool,
    /// Confirmed by every sink within `delivery.broker_deadline`, or else fsync'd to the
    /// spool. While the spool holds records, new ones go to the spool too, so that they
    /// do not overtake older ones.
    BrokerThenSpool,
}

impl AckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Broker => "broker",
            AckMode::Spool => "spool",
            AckMode::BrokerThenSpool => "broker_then_spool",
        }
    }
}

/// Whether a delivery skips what was delivered before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DedupUse {
    /// A key delivered before is a duplicate and is not written again.
    #[default]
    Check,
    /// Written whatever was delivered before: a deliberate re-publish.
    Bypass,
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

    /// Writes `envelope` to every sink (or to the spool, as `delivery.mode` says); the
    /// key is remembered only once it is durable, so that a failed write can be retried.
    /// A duplicate is not written again.
    pub async fn write(self, envelope: &Envelope) -> Result<(), DeliveryError> {
        if self.duplicate {
            return Ok(());
        }
        self.delivery.deliver(envelope).await?;
        if let Some(key) = self.key {
            self.delivery.dedup.remember(key).await;
        }
        Ok(())
    }
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
    /// An earlier update of the same reference held its turn (it was still being
    /// delivered, a sink being slow or down) for longer than the update may wait.
    #[error("an earlier update of the same reference was still being delivered after {waited:?}")]
    Busy { waited: Duration },
}

impl DeliveryError {
    /// The error a sink's answer amounts to, unless it confirmed.
    pub fn from_outcome(sink: &'static str, outcome: &SinkOutcome) -> Option<Self> {
        match outcome {
            SinkOutcome::Confirmed => None,
            SinkOutcome::Failed(source) => Some(DeliveryError::Sink {
                sink,
                source: source.clone(),
            }),
            SinkOutcome::TimedOut(timeout) => Some(DeliveryError::Timeout {
                sink,
                timeout: *timeout,
            }),
        }
    }

    /// True when the spool refused the record for want of room.
    pub fn is_spool_full(&self) -> bool {
        matches!(self, DeliveryError::Spool(SpoolError::Full { .. }))
    }
}

pub struct Delivery {
    sinks: Arc<SinkSet>,
    dedup: Dedup,
    timeout: Duration,
    mode: AckMode,
    broker_deadline: Duration,
    spool: Option<Spool>,
    /// In `broker_then_spool` mode: one envelope per order key (container) at a time
    /// between arrival and durability, so that the second update of a container never
    /// reaches the brokers while the first is on its way to the spool.
    in_order: KeyLocks,
}

/// What writing one envelope to every sink came to.
struct Written {
    /// The sinks that confirmed it.
    confirmed: Vec<&'static str>,
    /// The first failure, if any sink did not confirm.
    failure: Option<DeliveryError>,
}

impl Written {
    fn new(writes: Vec<SinkWrite>) -> Self {
        let mut written = Written {
            confirmed: Vec::with_capacity(writes.len()),
            failure: None,
        };
        for write in writes {
            match DeliveryError::from_outcome(write.sink, &write.outcome) {
                None => written.confirmed.push(write.sink),
                Some(error) => {
                    written.failure.get_or_insert(error);
                }
            }
        }
        written
    }

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
            sinks: Arc::new(SinkSet::new(sinks, metrics)),
            dedup,
            timeout: config.timeout,
            mode: AckMode::Broker,
            broker_deadline: config.broker_deadline,
            spool: None,
            in_order: KeyLocks::default(),
        }
    }

    /// Puts `spool` behind the sinks, in `mode`, and starts forwarding what it holds on
    /// `tracker` until `cancel` fires or the delivery closes.
    pub fn with_spool(
        mut self,
        spool: Spool,
        mode: AckMode,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        spool.start_forwarding(self.sinks.clone(), cancel, tracker);
        self.spool = Some(spool);
        self.mode = mode;
        self
    }

    pub fn mode(&self) -> AckMode {
        self.mode
    }

    /// Writes `envelope` where the mode says.
    async fn deliver(&self, envelope: &Envelope) -> Result<(), DeliveryError> {
        match (&self.spool, self.mode) {
            (Some(spool), AckMode::Spool) => Ok(spool.append(envelope).await?),
            (Some(spool), AckMode::BrokerThenSpool) => {
                let _turn = self.in_order.lock(envelope.order_key()).await;
                // Older envelopes wait in the spool: this one queues behind them. With a
                // sink known to be down, trying it would only add the deadline to the answer.
                if spool.has_backlog() || !self.sinks.is_ready() {
                    return Ok(spool.append(envelope).await?);
                }
                let written = self.write_all(envelope, self.broker_deadline).await;
                let Some(error) = written.failure else {
                    return Ok(());
                };
                tracing::warn!(error = %error, confirmed_by = ?written.confirmed, "sinks did not confirm in time; spooling");
                // The forwarder sends it only to the sinks that did not confirm it.
                Ok(spool
                    .append_confirmed_by(envelope, written.confirmed)
                    .await?)
            }
            _ => self.write_all(envelope, self.timeout).await.into_result(),
        }
    }

    /// Starts delivering what `dedup_key` identifies. While the returned [`Attempt`]
    /// lives, another delivery of the same key waits, so that one update arriving twice
    /// at once is written once.
    pub async fn begin<'d>(&'d self, dedup_key: Option<&'d str>) -> Attempt<'d> {
        self.begin_with(dedup_key, DedupUse::Check).await
    }

    /// [`Delivery::begin`], where [`DedupUse::Bypass`] writes the key even when it was
    /// delivered before. The key is still claimed and remembered once written.
    pub async fn begin_with<'d>(
        &'d self,
        dedup_key: Option<&'d str>,
        dedup_use: DedupUse,
    ) -> Attempt<'d> {
        let (claim, duplicate) = match dedup_key {
            Some(key) => {
                let claim = self.dedup.claim(key).await;
                let duplicate = match dedup_use {
                    DedupUse::Check => self.dedup.contains(key).await,
                    DedupUse::Bypass => false,
                };
                (Some(claim), duplicate)
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

    async fn write_all(&self, envelope: &Envelope, timeout: Duration) -> Written {
        Written::new(
            self.sinks
                .write(envelope, |_| true, timeout, Purpose::Acknowledge)
                .await,
        )
    }

    /// True when an update can be made durable now: every sink can take writes, or in
    /// a spool mode, the spool has room.
    pub fn is_ready(&self) -> bool {
        match (&self.spool, self.mode) {
            (Some(spool), AckMode::Spool | AckMode::BrokerThenSpool) => spool.is_accepting(),
            _ => self.sinks.is_ready(),
        }
    }

    /// The spool's state, for `/readyz`, when there is a spool.
    pub fn spool_state(&self) -> Option<SpoolState> {
        self.spool.as_ref().map(Spool::state)
    }

    /// Each sink's name and whether it is ready, for `/readyz`.
    pub fn sink_states(&self) -> Vec<(&'static str, bool)> {
        self.sinks.states()
    }

    /// The dedup store, for records that share it (such as unsubscriptions).
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    /// Stops forwarding and closes the spool (its records stay for the next run), then
    /// flushes and closes every sink.
    /// Stops the spool forwarder (records in flight get up to `within`, and no more
    /// than a sink write may take), then flushes and closes the sinks.
    pub async fn close(&self, within: Duration) {
        if let Some(spool) = &self.spool {
            spool.close(within.min(self.timeout)).await;
        }
        self.sinks.close().await;
    }
}

/// The dedup key of a dead letter: a hash of its bytes, since it has no usable id.
/// Vizion resends a refused body at every check; it is kept once.
pub fn dead_letter_key(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("dead-letter:{}", hex::encode(Sha256::digest(body)))
}
