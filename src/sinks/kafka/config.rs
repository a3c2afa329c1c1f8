use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize, Serializer};

use crate::secret::{self, SecretError, REDACTED};
use crate::sinks::MessageKind;

/// Producer properties the bridge sets itself: its delivery guarantee rests on them.
const RESERVED_PROPERTIES: &[&str] = &[
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "bootstrap.servers",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    pub client_id: String,
    pub topics: KafkaTopics,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// How long the producer waits to fill a batch; concurrent webhooks share batches.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// How long the producer tries to deliver one message; below `delivery.timeout`, so
    /// that a failure is known before the webhook is answered.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Requests in flight per broker connection (at most 5 with idempotence).
    pub max_in_flight: u32,
    /// Create the topics at start when they are missing.
    pub ensure_topics: bool,
    pub topic_partitions: i32,
    pub topic_replication_factor: i32,
    /// How often the broker connection is checked for `/readyz`.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Any other librdkafka property (TLS, SASL, …). Values of keys that look secret
    /// are printed redacted; better still, give secrets with `properties_env` or
    /// `properties_file`.
    #[serde(serialize_with = "redact_secret_looking")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose value is read from the named environment variable.
    pub properties_env: BTreeMap<String, String>,
    /// librdkafka properties whose value is read from the named file.
    pub properties_file: BTreeMap<String, PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "vizion-bridge".into(),
            topics: KafkaTopics::default(),
            compression: "lz4".into(),
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(3),
            max_in_flight: 5,
            ensure_topics: false,
            topic_partitions: 3,
            topic_replication_factor: 1,
            health_interval: Duration::from_secs(5),
            properties: BTreeMap::new(),
            properties_env: BTreeMap::new(),
            properties_file: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTopics {
    /// Tracking-update events, keyed by reference id.
    pub updates: String,
    /// Milestone events, keyed by container id.
    pub milestones: String,
    /// Exception alerts and reference events, keyed by reference id.
    pub alerts: String,
    /// Every accepted body as received, keyed by delivery id.
    pub raw: String,
    /// Dead-letter events, keyed by event id, with the reason in a header.
    pub dead_letters: String,
}

impl Default for KafkaTopics {
    fn default() -> Self {
        Self {
            updates: "vizion.tracking.updates".into(),
            milestones: "vizion.tracking.milestones".into(),
            alerts: "vizion.tracking.alerts".into(),
            raw: "vizion.tracking.raw".into(),
            dead_letters: "vizion.tracking.dead-letters".into(),
        }
    }
}

impl KafkaTopics {
    pub fn for_kind(&self, kind: MessageKind) -> &str {
        match kind {
            MessageKind::Update => &self.updates,
            MessageKind::Milestone => &self.milestones,
            MessageKind::PassThrough => &self.alerts,
            MessageKind::Raw => &self.raw,
            MessageKind::DeadLetter => &self.dead_letters,
        }
    }

    pub fn all(&self) -> [&str; 5] {
        [
            &self.updates,
            &self.milestones,
            &self.alerts,
            &self.raw,
            &self.dead_letters,
        ]
    }
}

fn looks_secret(key: &str) -> bool {
    ["password", "secret", "key"]
        .iter()
        .any(|w| key.contains(w))
        && !key.ends_with(".location")
}

fn redact_secret_looking<S: Serializer>(
    properties: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = properties
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if looks_secret(k) {
                    REDACTED
                } else {
                    v.as_str()
                },
            )
        })
        .collect();
    shown.serialize(serializer)
}

impl KafkaConfig {
    /// What is wrong with these settings, one sentence each. That a failed publish is
    /// known before the webhook is answered depends on `delivery.timeout` as well:
    /// [`answers_within`](Self::answers_within) checks it.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push("`kafka.brokers` is empty".into());
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.compression.as_str()) {
            problems.push("`kafka.compression` must be none, gzip, snappy, lz4 or zstd".into());
        }
        if !(1..=5).contains(&self.max_in_flight) {
            problems
                .push("`kafka.max_in_flight` must be between 1 and 5 (idempotent producer)".into());
        }
        for key in self
            .properties
            .keys()
            .chain(self.properties_env.keys())
            .chain(self.properties_file.keys())
        {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                problems.push(format!(
                    "`kafka.properties` may not set `{key}`: the bridge sets it (see `kafka.*`)"
                ));
            }
        }
        if let Err(e) = self.resolved_properties() {
            problems.push(format!("`kafka.properties_env` / `properties_file`: {e}"));
        }
        problems
    }

    /// What is wrong with `message_timeout` when webhooks are answered within
    /// `delivery_timeout`.
    pub fn answers_within(&self, delivery_timeout: Duration) -> Vec<String> {
        if self.message_timeout < delivery_timeout {
            return Vec::new();
        }
        vec![
            "`kafka.message_timeout` must be below `delivery.timeout`, so that a failed \
             publish is known before the webhook is answered"
                .into(),
        ]
    }

    /// Every extra property, with the values of `properties_env` and `properties_file` read.
    pub fn resolved_properties(&self) -> Result<BTreeMap<String, String>, SecretError> {
        let mut all = self.properties.clone();
        for (key, var) in &self.properties_env {
            let value = secret::resolve("kafka property", None, Some(var), None)?;
            all.insert(key.clone(), value.expose_secret().to_owned());
        }
        for (key, path) in &self.properties_file {
            let value = secret::resolve("kafka property", None, None, Some(path))?;
            all.insert(key.clone(), value.expose_secret().to_owned());
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_properties_are_printed_redacted() {
        let mut config = KafkaConfig::default();
        config
            .properties
            .insert("sasl.password".into(), "hunter2".into());
        config
            .properties
            .insert("sasl.username".into(), "bridge".into());
        config
            .properties
            .insert("ssl.key.location".into(), "/k.pem".into());
        let text = toml::to_string(&config).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("bridge") && text.contains("/k.pem"), "{text}");
    }

    #[test]
    fn the_delivery_guarantee_cannot_be_configured_away() {
        let mut config = KafkaConfig::default();
        config.properties.insert("acks".into(), "1".into());
        let problems = config.validate();
        crate::config::assert_names(&problems, "`acks`");
    }

    #[test]
    fn the_message_timeout_must_end_before_the_answer() {
        let config = KafkaConfig::default();
        assert!(config.validate().is_empty());
        assert!(config.answers_within(Duration::from_secs(5)).is_empty());
        let problems = config.answers_within(Duration::from_secs(2));
        crate::config::assert_names(&problems, "message_timeout");
    }

    #[test]
    fn secret_properties_are_read_from_the_environment() {
        let mut config = KafkaConfig::default();
        config.properties_env.insert(
            "sasl.password".into(),
            "VIZION_BRIDGE_TEST_UNSET_KAFKA_PW".into(),
        );
        let problems = config.validate();
        crate::config::assert_names(&problems, "VIZION_BRIDGE_TEST_UNSET_KAFKA_PW");
    }
}
