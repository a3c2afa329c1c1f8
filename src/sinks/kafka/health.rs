//! Watches the brokers for `/readyz`, creates missing topics when asked, and replaces
//! a producer that failed fatally even when no publish noticed it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

use super::config::KafkaConfig;
use super::producer::ProducerSlot;
use crate::sinks::SinkHealth;

pub(super) async fn watch(
    slot: Arc<ProducerSlot>,
    config: KafkaConfig,
    health: Arc<SinkHealth>,
    recheck: Arc<Notify>,
) {
    let mut topics_ensured = !config.ensure_topics;
    let mut was_ready = false;
    let mut rechecking = false;
    loop {
        let producer = slot.current();
        if ProducerSlot::is_fatal(&producer) {
            slot.replace(&producer);
        }
        let probe = producer.clone();
        // Cleared before the probe, so that a "down" raised during it is kept.
        producer.brokers_down.store(false, Ordering::Release);
        let reachable = tokio::task::spawn_blocking(move || {
            probe
                .producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|m| !m.brokers().is_empty())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if (!reachable || rechecking) && config.ensure_topics {
            // After an outage or a failed publish, the topics may be gone (a broker
            // that lost its storage): check them again.
            topics_ensured = false;
        }
        if reachable && !topics_ensured {
            topics_ensured = ensure_topics(&config).await;
        }
        // A "down" raised by the client since the probe began outranks the probe.
        let now_ready = health.set_with(|| {
            let current = slot.current();
            reachable
                && topics_ensured
                && !ProducerSlot::is_fatal(&current)
                && !current.brokers_down.load(Ordering::Acquire)
        });
        if now_ready != was_ready {
            if now_ready {
                tracing::info!(brokers = %config.brokers, "kafka is reachable");
            } else {
                tracing::error!(brokers = %config.brokers, "kafka is not reachable");
            }
            was_ready = now_ready;
        }
        // Check often while down, so that readiness returns soon after the broker.
        let pause = if now_ready {
            config.health_interval
        } else {
            config.health_interval.min(Duration::from_secs(1))
        };
        rechecking = tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = recheck.notified() => true,
        };
    }
}

/// Creates the configured topics that do not exist yet. Logs an error naming each topic
/// that could not be created, and returns whether all exist now.
async fn ensure_topics(config: &KafkaConfig) -> bool {
    let admin: AdminClient<DefaultClientContext> = match config
        .resolved_properties()
        .map_err(|e| e.to_string())
        .and_then(|properties| {
            let mut client = ClientConfig::new();
            for (key, value) in &properties {
                client.set(key, value);
            }
            client
                .set("bootstrap.servers", &config.brokers)
                .create()
                .map_err(|e| e.to_string())
        }) {
        Ok(admin) => admin,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a kafka admin client");
            return false;
        }
    };
    let topics = config.topics.all();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.topic_partitions,
                TopicReplication::Fixed(config.topic_replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics(&new_topics, &options).await {
        Ok(results) => {
            let mut all = true;
            for result in results {
                match result {
                    Ok(topic) => tracing::info!(topic, "created kafka topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        all = false;
                        tracing::error!(topic, error = %code, "cannot create kafka topic");
                    }
                }
            }
            all
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot create kafka topics");
            false
        }
    }
}
