//! Where accepted updates and dead letters are written. Each kind of output is one
//! module behind the [`Sink`] trait; a write counts only once the sink confirms it is
//! durable.

mod build;
pub mod file;
mod health;
pub mod kafka;
mod message;
pub mod rabbitmq;

use std::net::IpAddr;

use async_trait::async_trait;
use prometheus::{Histogram, IntCounter};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use self::build::{build, SinkConfig, SinkConfigs};
pub use self::health::SinkHealth;
pub use self::message::{Message, MessageKind, DELIVERY_KIND_HEADER, REASON_HEADER};
use crate::events::{CloudEvent, NormalizedBatch};
use crate::telemetry::Metrics;

/// The sinks that configuration can name in `sinks = [...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON lines under `storage.data_dir`, fsync'd before the answer.
    File,
    /// Kafka, with an idempotent `acks=all` producer (`[kafka]`).
    Kafka,
    /// A RabbitMQ topic exchange, with publisher confirms.
    Rabbitmq,
}

/// Facts about how an update was received, written beside it.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub request_id: String,
    pub received_at: OffsetDateTime,
    pub client_ip: IpAddr,
    /// Id of the secret that verified the webhook, when it has one.
    pub key_id: Option<String>,
    /// The sender's W3C `traceparent`, passed on with every message so that consumers
    /// can join the trace.
    pub traceparent: Option<String>,
}

/// What one webhook produces, for the sinks to write durably.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// A recognised delivery: its normalized events and the body as received.
    Events {
        batch: &'a NormalizedBatch,
        /// `update`, `exception_alert` or `reference_event`.
        kind: &'static str,
        /// Vizion's id of the delivery, when it has one.
        delivery_id: Option<&'a str>,
        receipt: &'a Receipt,
    },
    /// An authentic body that could not be used, kept whole in its dead-letter event.
    DeadLetter {
        event: &'a CloudEvent,
        reason: &'static str,
        receipt: &'a Receipt,
    },
    /// An event the bridge produces itself, such as `reference.unsubscribed`: written
    /// with the passed-through events, under `kind`.
    BridgeEvent {
        event: &'a CloudEvent,
        kind: &'static str,
        receipt: &'a Receipt,
    },
}

/// Why a sink did not take a record. [`SinkError::Refused`] is the one permanent
/// answer: sending that record to that sink again cannot succeed. Every other error is
/// transient (a broker away, a disk error, a timeout) and worth retrying.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("write failed: {0}")]
    Io(String),
    #[error("the sink is closed")]
    Closed,
    #[error("{0}")]
    Broker(String),
    /// The broker refused this record for good: too large, not authorized, no such
    /// topic or exchange.
    #[error("refused ({reason}): {detail}")]
    Refused {
        reason: &'static str,
        detail: String,
    },
}

impl SinkError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::Io(_) => "io",
            SinkError::Closed => "closed",
            SinkError::Broker(_) => "broker",
            SinkError::Refused { reason, .. } => reason,
        }
    }

    /// True when retrying the same record cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkError::Refused { .. })
    }
}

#[async_trait]
pub trait Sink: Send + Sync {
    /// Stable name, used as the `sink` label of metrics.
    fn name(&self) -> &'static str;

    /// Writes one record and returns once it is durable.
    async fn write(&self, record: &Record<'_>) -> Result<(), SinkError>;

    /// Whether the sink can take writes now.
    fn is_ready(&self) -> bool;

    /// Flushes what is pending and stops taking writes.
    async fn close(&self) -> Result<(), SinkError>;
}

/// A broker sink's metric handles, looked up once: `with_label_values` hashes the
/// labels and takes a lock, which is not worth paying for every message.
pub(crate) struct PublishMetrics {
    published: [IntCounter; MessageKind::ALL.len()],
    pub duration: Histogram,
}

impl PublishMetrics {
    pub(crate) fn new(metrics: &Metrics, sink: &str) -> Self {
        Self {
            published: MessageKind::ALL.map(|kind| {
                metrics
                    .events_published
                    .with_label_values(&[sink, kind.as_str()])
            }),
            duration: metrics.publish_duration.with_label_values(&[sink]),
        }
    }

    /// `vizion_bridge_events_published_total` for messages of `kind`.
    pub fn published(&self, kind: MessageKind) -> &IntCounter {
        &self.published[kind as usize]
    }
}
