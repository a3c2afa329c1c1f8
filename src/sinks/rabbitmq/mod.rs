//! The RabbitMQ sink: every message of an envelope is published persistent and
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

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::{join_all, maybe_done};
use lapin::options::BasicPublishOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::{Confirmation, ErrorKind};

pub use self::config::{RabbitmqConfig, DEFAULT_URL};
use self::connection::{ConnectionManager, Session};
pub use self::properties::{event_properties, properties, APP_ID, PERSISTENT, PROPERTY_PREFIX};
pub use self::routing::routing_key;
pub use self::topology::ALTERNATE_EXCHANGE;
use super::{messages, publish_handles, Message, Sink, SinkError, SinkHealth};
use crate::config::BuildContext;
use crate::events::Envelope;
use crate::telemetry::events::{MessagePublished, PublishFailed, PublishFinished, PublishHandles};
use crate::telemetry::Metrics;

const NAME: &str = "rabbitmq";

/// How long a failed publish waits to learn whether the connection is going down.
const SETTLE: Duration = Duration::from_millis(200);

pub struct RabbitmqSink {
    exchange: String,
    connection: ConnectionManager,
    health: Arc<SinkHealth>,
    metrics: Metrics,
    publish_handles: PublishHandles,
}

impl RabbitmqSink {
    /// Checks the settings and starts connecting in the background (on the context's
    /// tracker, until its token is cancelled or the sink closed): the sink exists (not
    /// ready) while the broker is unreachable. Needs a Tokio runtime.
    pub fn start(config: &RabbitmqConfig, cx: &BuildContext) -> Result<Self, SinkError> {
        let metrics = &cx.metrics;
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(SinkError::Broker(errors.join("; ")));
        }
        let uri = config.uri().map_err(SinkError::Io)?;
        tracing::info!(broker = %config.describe(), exchange = %config.exchange, "RabbitMQ sink starting");
        let health = Arc::new(SinkHealth::new(metrics, NAME));
        Ok(Self {
            exchange: config.exchange.clone(),
            connection: ConnectionManager::start(config.clone(), uri, health.clone(), cx),
            health,
            metrics: metrics.clone(),
            publish_handles: publish_handles(metrics, NAME),
        })
    }

    fn count_failure(&self, reason: &'static str) {
        self.metrics.emit(PublishFailed { sink: NAME, reason });
    }

    /// Publishes every message on one channel of `session`, then waits for all the
    /// confirms together (one round trip, not one per message).
    async fn publish(
        &self,
        session: &Session,
        messages: &[Message<'_>],
        delivery_kind: Option<&str>,
        timestamp: u64,
    ) -> Result<(), Failure> {
        let lost = |what: String| Failure {
            reason: if session.is_connected() {
                "error"
            } else {
                "disconnected"
            },
            message: what,
        };
        let channel = session
            .channel()
            .await
            .map_err(|e| lost(format!("cannot open a RabbitMQ channel: {e}")))?;
        // All the publishes are started together: each queues its frames on its
        // first poll, in order, and the connection writes them in one go, instead of
        // one trip through the I/O loop per message.
        let keys: Vec<String> = messages
            .iter()
            .map(|message| routing_key(message, delivery_kind))
            .collect();
        let publishes = messages.iter().zip(&keys).map(|(message, key)| {
            channel.basic_publish(
                self.exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                message.payload,
                properties::properties(message, timestamp),
            )
        });
        let confirms = in_order(publishes)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| lost(format!("cannot publish to RabbitMQ: {e}")))?;
        let pending = messages
            .iter()
            .zip(keys)
            .zip(join_all(confirms).await)
            .map(|((message, key), confirm)| (message.kind, key, confirm));
        let mut failure = None;
        for (kind, key, confirm) in pending {
            let problem = match confirm {
                Ok(Confirmation::Ack(None)) => {
                    MessagePublished {
                        handles: &self.publish_handles,
                        kind: kind as usize,
                    }
                    .emit();
                    continue;
                }
                Ok(Confirmation::Ack(Some(returned))) => Failure {
                    reason: "returned",
                    message: format!(
                        "RabbitMQ returned the `{key}` message as unroutable: {} {}",
                        returned.reply_code, returned.reply_text
                    ),
                },
                Ok(Confirmation::Nack(_)) => Failure {
                    reason: "nack",
                    message: format!("RabbitMQ refused the `{key}` message (nack)"),
                },
                Ok(Confirmation::NotRequested) => Failure {
                    reason: "error",
                    message: "the channel is not in confirm mode".into(),
                },
                Err(e) => match refusal(&e) {
                    Some(reason) => Failure {
                        reason,
                        message: format!("RabbitMQ refused the `{key}` message: {e}"),
                    },
                    None => lost(format!("no confirm for the `{key}` message: {e}")),
                },
            };
            // A lost connection outranks a nack: only it is worth publishing again.
            if failure
                .as_ref()
                .is_none_or(|f: &Failure| f.reason != "disconnected")
            {
                failure = Some(problem);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Runs `futures` to completion together, polling them in order each time, so that
/// the first poll of each (where a publish queues its frames and takes its confirm
/// sequence number) happens in order: the broker sees the messages in that order.
async fn in_order<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut all: Vec<_> = futures
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    poll_fn(|cx| {
        let mut done = true;
        for future in &mut all {
            done &= future.as_mut().poll(cx).is_ready();
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    all.iter_mut()
        .map(|future| future.as_mut().take_output().expect("polled to completion"))
        .collect()
}

/// Why a publish failed: the `reason` label, and a message for the log.
struct Failure {
    reason: &'static str,
    message: String,
}

/// Reasons of [`refusal`]: the broker closed the channel over this publish, and
/// publishing it again would close the next channel the same way.
const REFUSALS: [&str; 2] = ["not_found", "access_refused"];

/// The `reason` when `error` is the broker refusing a publish for good: the exchange
/// does not exist (`NOT_FOUND`) or the user may not write to it (`ACCESS_REFUSED`).
/// A message returned as unroutable is not one: a binding may be added any time, and
/// the alternate exchange normally takes it.
fn refusal(error: &lapin::Error) -> Option<&'static str> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => Some(REFUSALS[0]),
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some(REFUSALS[1]),
            _ => None,
        },
        _ => None,
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
            self.metrics.emit(PublishFailed {
                sink: NAME,
                reason: "disconnected",
            });
        }
    }
}

#[async_trait]
impl Sink for RabbitmqSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn write(&self, envelope: &Envelope) -> Result<(), SinkError> {
        let started = Instant::now();
        let delivery_kind = envelope.kind_name();
        let timestamp = u64::try_from(envelope.received_at().unix_timestamp()).unwrap_or(0);
        let messages = messages(envelope);
        let result = loop {
            let mut waiting = WaitingForConnection {
                metrics: &self.metrics,
                armed: true,
            };
            let Some(session) = self.connection.session().await else {
                break Err(SinkError::Closed);
            };
            waiting.armed = false;
            let mut outcome = self
                .publish(&session, &messages, delivery_kind, timestamp)
                .await;
            if let Err(failure) = &mut outcome {
                // A client error can come a moment before the connection reports closed.
                if failure.reason == "error" && session.closes_within(SETTLE).await {
                    failure.reason = "disconnected";
                }
            }
            match outcome {
                Ok(()) => break Ok(()),
                // The connection went away mid-write: publish everything again on the
                // next one, within the caller's deadline. Messages confirmed before
                // may arrive twice, with the same ids, as after a sender's retry.
                Err(Failure {
                    reason: "disconnected",
                    message,
                }) => {
                    self.count_failure("disconnected");
                    tracing::debug!(%message, "RabbitMQ connection lost during a write; retrying");
                }
                Err(Failure { reason, message }) if REFUSALS.contains(&reason) => {
                    self.count_failure(reason);
                    break Err(SinkError::Refused {
                        reason,
                        detail: message,
                    });
                }
                Err(Failure { reason, message }) => {
                    self.count_failure(reason);
                    break Err(SinkError::Broker(message));
                }
            }
        };
        PublishFinished {
            handles: &self.publish_handles,
            duration: started.elapsed(),
        }
        .emit();
        result
    }

    fn is_ready(&self) -> bool {
        // Down while disconnected and while the broker blocks publishing (writes would
        // only wait out their deadline): the connection task keeps it.
        self.health.is_up()
    }

    async fn close(&self) -> Result<(), SinkError> {
        self.connection.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use lapin::protocol::{AMQPError, AMQPHardError};

    use super::*;

    fn protocol_error(kind: AMQPErrorKind) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(kind, "closed by the broker".into())).into()
    }

    #[test]
    fn a_missing_exchange_or_a_forbidden_one_is_a_refusal() {
        let not_found = protocol_error(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND));
        assert_eq!(refusal(&not_found), Some("not_found"));
        let refused = protocol_error(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED));
        assert_eq!(refusal(&refused), Some("access_refused"));
    }

    #[test]
    fn a_lost_connection_or_another_channel_error_is_not_a_refusal() {
        let closed = protocol_error(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED));
        assert_eq!(refusal(&closed), None);
        let precondition = protocol_error(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED));
        assert_eq!(refusal(&precondition), None);
        let io: lapin::Error = std::io::Error::other("reset").into();
        assert_eq!(refusal(&io), None);
    }
}
