//! The RabbitMQ sink: every message of a record is published persistent and
//! `mandatory` to a durable topic exchange on a confirm-mode channel, and the write
//! is confirmed only when the broker has acknowledged every one of them.
//!
//! Routing keys are described in [`routing`]; unmatched messages go to the alternate
//! exchange's queue (see [`topology`]); the connection is kept by [`connection`].

mod config;
mod connection;
mod properties;
mod routing;
mod topology;

use std::time::Instant;

use async_trait::async_trait;
use lapin::options::BasicPublishOptions;
use lapin::Confirmation;

pub use self::config::{RabbitmqConfig, DEFAULT_URL};
use self::connection::ConnectionManager;
pub use self::properties::{APP_ID, PERSISTENT};
pub use self::routing::routing_key;
pub use self::topology::ALTERNATE_EXCHANGE;
use super::{Record, Sink, SinkError};
use crate::telemetry::Metrics;

const NAME: &str = "rabbitmq";

pub struct RabbitmqSink {
    exchange: String,
    connection: ConnectionManager,
    metrics: Metrics,
}

impl RabbitmqSink {
    /// Checks the settings and starts connecting in the background: the sink exists
    /// (not ready) while the broker is unreachable. Needs a Tokio runtime.
    pub fn start(config: &RabbitmqConfig, metrics: &Metrics) -> Result<Self, SinkError> {
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(SinkError::Io(errors.join("; ")));
        }
        let uri = config.uri().map_err(SinkError::Io)?;
        tracing::info!(broker = %config.describe(), exchange = %config.exchange, "RabbitMQ sink starting");
        let up = metrics.sink_up.with_label_values(&[NAME]);
        Ok(Self {
            exchange: config.exchange.clone(),
            connection: ConnectionManager::start(config.clone(), uri, up),
            metrics: metrics.clone(),
        })
    }

    fn fail(&self, reason: &'static str, message: String) -> SinkError {
        self.metrics
            .publish_failures
            .with_label_values(&[NAME, reason])
            .inc();
        SinkError::Io(message)
    }
}

/// Counts a write abandoned while waiting for a connection (its deadline passed).
struct WaitingForConnection<'a> {
    metrics: &'a Metrics,
    armed: bool,
}

impl Drop for WaitingForConnection<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.metrics
                .publish_failures
                .with_label_values(&[NAME, "disconnected"])
                .inc();
        }
    }
}

#[async_trait]
impl Sink for RabbitmqSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn write(&self, record: &Record<'_>) -> Result<(), SinkError> {
        let started = Instant::now();
        let (delivery_kind, receipt) = match record {
            Record::Events { kind, receipt, .. } => (Some(*kind), *receipt),
            Record::DeadLetter { receipt, .. } => (None, *receipt),
        };
        let timestamp = u64::try_from(receipt.received_at.unix_timestamp()).unwrap_or(0);
        let messages = record.messages();

        let mut waiting = WaitingForConnection {
            metrics: &self.metrics,
            armed: true,
        };
        let Some(session) = self.connection.session().await else {
            return Err(SinkError::Closed);
        };
        waiting.armed = false;
        let channel = session
            .channel()
            .await
            .map_err(|e| self.fail("error", format!("cannot open a RabbitMQ channel: {e}")))?;

        // Publish everything, then wait for the confirms together: one round trip.
        let mut pending = Vec::with_capacity(messages.len());
        for message in &messages {
            let key = routing_key(message, delivery_kind);
            let published = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    message.payload,
                    properties::properties(message, timestamp),
                )
                .await;
            match published {
                Ok(confirm) => pending.push((message.kind, key, confirm)),
                Err(e) => {
                    let reason = if session.is_connected() {
                        "error"
                    } else {
                        "disconnected"
                    };
                    return Err(self.fail(reason, format!("cannot publish to RabbitMQ: {e}")));
                }
            }
        }
        let mut failure = None;
        for (kind, key, confirm) in pending {
            let problem = match confirm.await {
                Ok(Confirmation::Ack(None)) => {
                    self.metrics
                        .events_published
                        .with_label_values(&[NAME, kind.as_str()])
                        .inc();
                    continue;
                }
                Ok(Confirmation::Ack(Some(returned))) => (
                    "returned",
                    format!(
                        "RabbitMQ returned the `{key}` message as unroutable: {} {}",
                        returned.reply_code, returned.reply_text
                    ),
                ),
                Ok(Confirmation::Nack(_)) => (
                    "nack",
                    format!("RabbitMQ refused the `{key}` message (nack)"),
                ),
                Ok(Confirmation::NotRequested) => {
                    ("error", "the channel is not in confirm mode".to_string())
                }
                Err(e) => {
                    let reason = if session.is_connected() {
                        "error"
                    } else {
                        "disconnected"
                    };
                    (reason, format!("no confirm for the `{key}` message: {e}"))
                }
            };
            let error = self.fail(problem.0, problem.1);
            failure.get_or_insert(error);
        }
        self.metrics
            .publish_duration
            .with_label_values(&[NAME])
            .observe(started.elapsed().as_secs_f64());
        match failure {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    fn is_ready(&self) -> bool {
        self.connection.session_now().is_some()
    }

    async fn close(&self) -> Result<(), SinkError> {
        self.connection.close().await;
        Ok(())
    }
}
