//! The idempotent producer, and its replacement after a fatal error.
//!
//! An idempotent producer stops for good on a fatal error (for example when the broker
//! lost or fenced its producer state after a restart). The bridge then builds a fresh
//! producer by itself: only the publishes in flight fail, and the next ones go through.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer, ProducerContext};
use rdkafka::util::TokioRuntime;

use crate::sinks::{SinkError, SinkHealth};

/// Receives librdkafka's global errors: logs them and notes a fatal one.
pub struct BridgeContext {
    fatal: Arc<AtomicBool>,
    brokers_down: Arc<AtomicBool>,
    health: Arc<SinkHealth>,
}

impl ClientContext for BridgeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => {
                self.fatal.store(true, Ordering::Release);
                tracing::error!(error = %error, reason, "kafka producer hit a fatal error; it will be replaced");
            }
            // Repeated while a broker is away; the readiness watcher logs the change once.
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                // Down at once for `/readyz` and the gauge alike; the watcher's next
                // probe says when the brokers are back.
                self.health.set_with(|| {
                    self.brokers_down.store(true, Ordering::Release);
                    false
                });
                tracing::debug!(error = %error, reason, "kafka brokers down");
            }
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!(error = %error, reason, "kafka connection lost");
            }
            _ => tracing::warn!(error = %error, reason, "kafka client error"),
        }
    }
}

impl ProducerContext for BridgeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A producer and the flag its context raises on a fatal error.
pub struct BridgeProducer {
    pub producer: FutureProducer<BridgeContext, TokioRuntime>,
    fatal: Arc<AtomicBool>,
    /// Raised by librdkafka's "all brokers down"; cleared when metadata comes back.
    pub brokers_down: Arc<AtomicBool>,
    /// Writes that failed in a row.
    failures_in_a_row: AtomicU32,
}

/// Writes that may fail in a row, while the brokers answer, before the producer is
/// replaced. A broker that lost its producer state can leave an idempotent producer
/// retrying forever without a fatal error; a fresh producer gets a fresh identity.
const REPLACE_AFTER_FAILURES: u32 = 3;

impl BridgeProducer {
    pub fn succeeded(&self) {
        self.failures_in_a_row.store(0, Ordering::Release);
    }

    /// Notes a failed write; true when the producer should be replaced.
    pub fn failed(&self) -> bool {
        let failures = self.failures_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
        ProducerSlot::is_fatal(self)
            || (failures >= REPLACE_AFTER_FAILURES && !self.brokers_down.load(Ordering::Acquire))
    }
}

/// The current producer, replaced when it has failed fatally.
pub struct ProducerSlot {
    config: ClientConfig,
    health: Arc<SinkHealth>,
    current: RwLock<Arc<BridgeProducer>>,
}

impl ProducerSlot {
    pub fn new(config: ClientConfig, health: Arc<SinkHealth>) -> Result<Self, SinkError> {
        let producer = create(&config, &health)?;
        Ok(Self {
            config,
            health,
            current: RwLock::new(Arc::new(producer)),
        })
    }

    pub fn current(&self) -> Arc<BridgeProducer> {
        self.current.read().expect("producer lock poisoned").clone()
    }

    /// Whether `producer` has failed fatally and must not be used again.
    pub fn is_fatal(producer: &BridgeProducer) -> bool {
        producer.fatal.load(Ordering::Acquire) || producer.producer.client().fatal_error().is_some()
    }

    /// Replaces `failed` with a fresh producer, unless another caller already did. Only
    /// the publishes in flight on the old one fail.
    pub fn replace(&self, failed: &Arc<BridgeProducer>) {
        let mut current = self.current.write().expect("producer lock poisoned");
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        match create(&self.config, &self.health) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *current, Arc::new(fresh));
                tracing::warn!(
                    fatal = ?old.producer.client().fatal_error(),
                    failures_in_a_row = old.failures_in_a_row.load(Ordering::Acquire),
                    "replaced the kafka producer"
                );
                // Dropping a producer waits for its queue; keep that off the async workers.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => tracing::error!(error = %e, "cannot build a new kafka producer"),
        }
    }
}

fn create(config: &ClientConfig, health: &Arc<SinkHealth>) -> Result<BridgeProducer, SinkError> {
    let fatal = Arc::new(AtomicBool::new(false));
    let brokers_down = Arc::new(AtomicBool::new(false));
    let producer = config
        .create_with_context(BridgeContext {
            fatal: fatal.clone(),
            brokers_down: brokers_down.clone(),
            health: health.clone(),
        })
        .map_err(|e| SinkError::Broker(format!("cannot create kafka producer: {e}")))?;
    Ok(BridgeProducer {
        producer,
        fatal,
        brokers_down,
        failures_in_a_row: AtomicU32::new(0),
    })
}

/// A short, stable label for a publish failure (the `reason` of
/// `vizion_bridge_publish_failures_total`).
pub fn failure_reason(error: &KafkaError) -> &'static str {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => "timeout",
        Some(RDKafkaErrorCode::QueueFull) => "queue_full",
        Some(RDKafkaErrorCode::Fatal) => "fatal",
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            "unknown_topic"
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => "too_large",
        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => "not_authorized",
        Some(RDKafkaErrorCode::InvalidRecord) => "invalid_record",
        Some(RDKafkaErrorCode::InvalidTopic) => "invalid_topic",
        Some(RDKafkaErrorCode::PolicyViolation) => "policy_violation",
        _ => "error",
    }
}

/// Whether Kafka refused a message for a reason that sending it again cannot change:
/// it is too large, malformed, or for a topic the producer may not write to. A missing
/// topic counts only when the bridge does not create topics (`kafka.ensure_topics`
/// off): otherwise it is created again at the next health check.
pub fn is_permanent(error: &KafkaError, bridge_creates_topics: bool) -> bool {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => true,
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            !bridge_creates_topics
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery_error(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(code)
    }

    #[test]
    fn a_refusal_of_the_message_itself_is_permanent() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(is_permanent(&delivery_error(code), true), "{code:?}");
        }
    }

    #[test]
    fn an_unreachable_or_busy_broker_is_transient() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::Fatal,
        ] {
            assert!(!is_permanent(&delivery_error(code), false), "{code:?}");
        }
    }

    #[test]
    fn a_missing_topic_is_permanent_only_when_the_bridge_does_not_create_topics() {
        let missing = delivery_error(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(is_permanent(&missing, false));
        assert!(!is_permanent(&missing, true));
    }
}
