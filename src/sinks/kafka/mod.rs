//! Kafka: every event of a webhook is published with an idempotent `acks=all`
//! producer, and the write is confirmed only when the broker acknowledged them all.

mod config;
mod health;
mod producer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use self::config::{KafkaConfig, KafkaTopics};
use self::producer::{failure_reason, is_permanent, ProducerSlot};
use super::{messages, publish_handles, Message, Sink, SinkError, SinkHealth};
use crate::config::BuildContext;
use crate::events::{CloudEvent, Envelope, DATA_CONTENT_TYPE};
use crate::telemetry::events::{MessagePublished, PublishFailed, PublishFinished, PublishHandles};
use crate::telemetry::Metrics;

const SINK: &str = "kafka";

/// Prefix of CloudEvents attributes in Kafka record headers (binary mode).
pub const HEADER_PREFIX: &str = "ce_";

/// Kafka record headers of `event` in binary mode: `ce_<attribute>` for each attribute
/// and `content-type` for the data's content type. The record value is its data.
pub fn event_headers(event: &CloudEvent) -> impl Iterator<Item = (String, &str)> + '_ {
    event
        .attributes()
        .map(|(n, v)| (format!("{HEADER_PREFIX}{n}"), v))
        .chain(std::iter::once((
            "content-type".to_owned(),
            DATA_CONTENT_TYPE,
        )))
}

pub struct KafkaSink {
    slot: Arc<ProducerSlot>,
    topics: KafkaTopics,
    /// Whether a missing topic is created again (so is not a permanent refusal).
    creates_topics: bool,
    health: Arc<SinkHealth>,
    metrics: Metrics,
    publish_handles: PublishHandles,
    /// Stops the health watcher: a child of the application's token, cancelled on close.
    stop: CancellationToken,
    /// Asks the health watcher to look at the brokers and topics now.
    recheck: Arc<Notify>,
}

impl KafkaSink {
    /// Creates the producer and starts watching the brokers in the background (on the
    /// context's tracker, until its token is cancelled or the sink closed). The brokers
    /// need not be reachable yet: the sink reports not ready until they are.
    pub fn start(config: &KafkaConfig, cx: &BuildContext) -> Result<Self, SinkError> {
        let metrics = cx.metrics.clone();
        let properties = config
            .resolved_properties()
            .map_err(|e| SinkError::Broker(format!("kafka properties: {e}")))?;
        let mut client = ClientConfig::new();
        for (key, value) in &properties {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", &config.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &config.compression)
            .set("linger.ms", config.linger.as_millis().to_string())
            .set(
                "max.in.flight.requests.per.connection",
                config.max_in_flight.to_string(),
            )
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            );
        let health = Arc::new(SinkHealth::new(&metrics, SINK));
        let slot = Arc::new(ProducerSlot::new(client, health.clone())?);
        let recheck = Arc::new(Notify::new());
        let stop = cx.shutdown.child_token();
        cx.spawn(stop.clone().run_until_cancelled_owned(health::watch(
            slot.clone(),
            config.clone(),
            health.clone(),
            recheck.clone(),
        )));
        Ok(Self {
            slot,
            topics: config.topics.clone(),
            creates_topics: config.ensure_topics,
            health,
            publish_handles: publish_handles(&metrics, SINK),
            metrics,
            stop,
            recheck,
        })
    }

    pub fn headers(message: &Message<'_>) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(12);
        match message.event {
            Some(event) => {
                for (name, value) in event_headers(event) {
                    headers = headers.insert(Header {
                        key: &name,
                        value: Some(value),
                    });
                }
            }
            None => {
                headers = headers.insert(Header {
                    key: "content-type",
                    value: Some(message.content_type),
                });
            }
        }
        for (name, value) in &message.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        headers
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        SINK
    }

    async fn write(&self, envelope: &Envelope) -> Result<(), SinkError> {
        let messages = messages(envelope);
        let producer = self.slot.current();
        // Every message of the envelope carries its reception time, also when the spool
        // forwards it later: a retry is not a newer fact.
        let timestamp =
            i64::try_from(envelope.received_at().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let started = Instant::now();
        let mut deliveries = Vec::with_capacity(messages.len());
        let mut refused = None;
        for message in &messages {
            let mut future = FutureRecord::to(self.topics.for_kind(message.kind))
                .payload(message.payload)
                .headers(Self::headers(message))
                .timestamp(timestamp);
            if let Some(key) = message.key {
                future = future.key(key);
            }
            match producer.producer.send_result(future) {
                Ok(delivery) => deliveries.push((message.kind, delivery)),
                Err((error, _)) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        // Wait for what was queued even when a later message was refused, so that every
        // outcome is counted.
        // A permanent refusal outranks a transient failure: retrying cannot help.
        let mut failure: Option<(&'static str, String, bool)> = None;
        let mut note = |reason: &'static str, detail: String, permanent: bool| {
            if failure.as_ref().is_none_or(|f| permanent && !f.2) {
                failure = Some((reason, detail, permanent));
            }
        };
        let (kinds, futures): (Vec<_>, Vec<_>) = deliveries.into_iter().unzip();
        for (kind, result) in kinds.into_iter().zip(join_all(futures).await) {
            match result {
                Ok(Ok(_)) => MessagePublished {
                    handles: &self.publish_handles,
                    kind: kind as usize,
                }
                .emit(),
                Ok(Err((error, _))) => note(
                    failure_reason(&error),
                    error.to_string(),
                    is_permanent(&error, self.creates_topics),
                ),
                Err(_) => note("canceled", "the producer was dropped".into(), false),
            }
        }
        if let Some(error) = refused {
            note(
                failure_reason(&error),
                error.to_string(),
                is_permanent(&error, self.creates_topics),
            );
        }
        PublishFinished {
            handles: &self.publish_handles,
            duration: started.elapsed(),
        }
        .emit();
        match failure {
            None => {
                producer.succeeded();
                Ok(())
            }
            Some((reason, detail, permanent)) => {
                self.metrics.emit(PublishFailed { sink: SINK, reason });
                if permanent {
                    // The broker answered: the producer and the brokers are fine.
                    return Err(SinkError::Refused {
                        reason,
                        detail: format!("kafka refused the record: {detail}"),
                    });
                }
                if producer.failed() {
                    self.slot.replace(&producer);
                }
                self.recheck.notify_one();
                Err(SinkError::Broker(format!(
                    "kafka did not confirm: {detail}"
                )))
            }
        }
    }

    fn is_ready(&self) -> bool {
        self.health.is_up()
    }

    async fn close(&self) -> Result<(), SinkError> {
        self.stop.cancel();
        let producer = self.slot.current();
        tokio::task::spawn_blocking(move || producer.producer.flush(Duration::from_secs(5)))
            .await
            .map_err(|e| SinkError::Broker(e.to_string()))?
            .map_err(|e| SinkError::Broker(format!("kafka flush failed: {e}")))
    }
}
