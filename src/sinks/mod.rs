//! Where accepted updates and dead letters are written. Each kind of output is one
//! module behind the [`Sink`] trait, which takes one [`Envelope`] at a time; a write
//! counts only once the sink confirms it is durable.

mod build;
pub mod file;
mod health;
pub mod kafka;
mod message;
pub mod rabbitmq;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::build::{build, SinkConfig, SinkConfigs};
pub use self::health::SinkHealth;
pub use self::message::{
    messages, Message, MessageKind, DELIVERY_KIND_HEADER, REASON_HEADER, TRACEPARENT_HEADER,
};
use crate::events::Envelope;
use crate::telemetry::events::PublishHandles;
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

    /// Writes one envelope and returns once it is durable.
    async fn write(&self, envelope: &Envelope) -> Result<(), SinkError>;

    /// Whether the sink can take writes now.
    fn is_ready(&self) -> bool;

    /// Flushes what is pending and stops taking writes.
    async fn close(&self) -> Result<(), SinkError>;
}

/// A broker sink's publish metric handles, with a `kind` label for each [`MessageKind`]
/// (a message names its kind by its index in [`MessageKind::ALL`]).
fn publish_handles(metrics: &Metrics, sink: &str) -> PublishHandles {
    PublishHandles::new(metrics, sink, &MessageKind::ALL.map(MessageKind::as_str))
}
