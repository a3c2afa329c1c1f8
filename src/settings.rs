//! The root of the configuration: every section, loaded from defaults, then a TOML
//! file, then `VIZION_BRIDGE__SECTION__KEY` environment variables (unknown keys
//! anywhere are an error), and checked as a whole.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{AuthConfig, Mode, Scheme};
use crate::config::{self, BuildContext, ConfigError, ConfigWarning, StorageConfig};
use crate::delivery::{AckMode, DedupConfig, DeliveryConfig, SpoolConfig};
use crate::events::EventsConfig;
use crate::ingest::{IngestConfig, ServerConfig};
use crate::lifecycle::LifecycleConfig;
use crate::poller::PollConfig;
use crate::sinks::kafka::KafkaConfig;
use crate::sinks::rabbitmq::RabbitmqConfig;
use crate::sinks::{SinkConfigs, SinkKind};
use crate::telemetry::{LogConfig, Metrics, MetricsConfig};
use crate::vizion::api::VizionApiConfig;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where accepted updates go; every listed sink must confirm before the answer.
    pub sinks: Vec<SinkKind>,
    pub server: ServerConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub ingest: IngestConfig,
    pub auth: AuthConfig,
    pub events: EventsConfig,
    pub dedup: DedupConfig,
    pub delivery: DeliveryConfig,
    pub storage: StorageConfig,
    pub kafka: KafkaConfig,
    pub rabbitmq: RabbitmqConfig,
    pub spool: SpoolConfig,
    pub vizion_api: VizionApiConfig,
    pub poll: PollConfig,
    pub lifecycle: LifecycleConfig,
    pub reload: ReloadConfig,
}

impl Default for Settings {
    fn default() -> Self {
        // The file sink needs no broker, so a bare `serve` works on a fresh machine.
        Self {
            sinks: vec![SinkKind::File],
            server: ServerConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            ingest: IngestConfig::default(),
            auth: AuthConfig::default(),
            events: EventsConfig::default(),
            dedup: DedupConfig::default(),
            delivery: DeliveryConfig::default(),
            storage: StorageConfig::default(),
            kafka: KafkaConfig::default(),
            rabbitmq: RabbitmqConfig::default(),
            spool: SpoolConfig::default(),
            vizion_api: VizionApiConfig::default(),
            poll: PollConfig::default(),
            lifecycle: LifecycleConfig::default(),
            reload: ReloadConfig::default(),
        }
    }
}

/// When `serve` reads its configuration again (it always does on SIGHUP).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Reload when the configuration file, or a secret file it names, changes.
    pub watch: bool,
    /// How often those files are read to see whether they changed. Reading the
    /// content, not waiting for file events, sees a mounted Kubernetes Secret or
    /// ConfigMap change, which swaps a symbolic link rather than writing the file.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl ReloadConfig {
    fn validate(&self) -> Vec<String> {
        if self.watch && self.poll_interval.is_zero() {
            vec!["`reload.poll_interval` must be above 0 while `reload.watch` is on".into()]
        } else {
            Vec::new()
        }
    }
}

impl Settings {
    /// Loads settings from `path` (or from the file named by `VIZION_BRIDGE_CONFIG`),
    /// then applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        config::load(path)
    }

    /// Checks what types alone cannot, including that every secret can be read: each
    /// section checks itself, and what spans sections is checked here. Returns the
    /// warnings to log when the settings are valid.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut errors = Vec::new();
        if self.sinks.is_empty() {
            errors.push("`sinks` is empty: list at least one sink, e.g. [\"file\"]".into());
        }
        errors.extend(self.ingest.validate());
        errors.extend(self.server.validate());
        errors.extend(self.auth.validate());
        errors.extend(self.events.validate());
        errors.extend(self.dedup.validate());
        errors.extend(self.delivery.validate());
        if self.sinks.contains(&SinkKind::Kafka) {
            errors.extend(self.kafka.validate());
            errors.extend(self.kafka.answers_within(self.delivery.timeout));
        }
        if self.sinks.contains(&SinkKind::Rabbitmq) {
            errors.extend(self.rabbitmq.validate());
        }
        errors.extend(self.spool.validate());
        if self.spool.dir.is_none()
            && matches!(
                self.delivery.mode,
                Some(AckMode::Spool | AckMode::BrokerThenSpool)
            )
        {
            errors.push("`delivery.mode` needs a spool: set `spool.dir`".into());
        }
        errors.extend(self.vizion_api.validate());
        if self.poll.enabled || self.lifecycle.auto_unsubscribe {
            errors.extend(self.vizion_api.require_key());
        }
        errors.extend(self.poll.validate());
        errors.extend(self.reload.validate());

        if errors.is_empty() {
            Ok(self.warnings())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// What valid settings allow but is worth a warning at start-up.
    fn warnings(&self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        if self.ingest.admits_every_source() {
            warnings.push(ConfigWarning(
                "ingest.allowed_sources admits every address: the source check is off".into(),
            ));
        }
        if self.auth.scheme == Scheme::None || self.auth.mode == Mode::Off {
            warnings.push(ConfigWarning(
                "webhook authentication is off (auth.scheme = \"none\" or auth.mode = \"off\"): \
                 for local development only"
                    .into(),
            ));
        } else if self.auth.mode == Mode::Shadow {
            warnings.push(ConfigWarning(
                "auth.mode = \"shadow\": failed signatures are logged and counted but accepted"
                    .into(),
            ));
        }
        warnings
    }

    /// The sections of the sinks, for [`crate::sinks::build`].
    pub fn sink_configs(&self) -> SinkConfigs<'_> {
        SinkConfigs {
            file: &self.storage,
            kafka: &self.kafka,
            rabbitmq: &self.rabbitmq,
        }
    }

    /// A context to build components with, for an application of its own (its own
    /// token and tracker), with `server.shutdown_timeout` as the grace at shutdown.
    pub fn build_context(&self, metrics: Metrics) -> BuildContext {
        BuildContext::new(
            metrics,
            self.storage.data_dir.clone(),
            self.server.shutdown_timeout,
        )
    }

    /// The effective settings as TOML, with every secret shown as `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_file(text: &str) -> Result<Settings, ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Settings::load(Some(file.path()))
    }

    #[test]
    fn errors_never_repeat_the_rejected_value() {
        for text in [
            "[[auth.secrets]]\nsecret = 123456789\n",
            "[[auth.secrets]]\nsecret = \"hunter2-secret\n",
            "[auth]\nsecrets = \"hunter2-secret\"\n",
        ] {
            let message = load_file(text).unwrap_err().to_string();
            assert!(!message.contains("hunter2-secret"), "{message}");
            assert!(!message.contains("123456789"), "{message}");
            assert!(message.contains("invalid configuration"), "{message}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let message = load_file("[auth]\nsecrets = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("auth.secrets"), "{message}");
        assert!(message.contains("found a string"), "{message}");
        let message = load_file("[server]\nlistne = 1\n").unwrap_err().to_string();
        assert!(message.contains("unknown key `listne`"), "{message}");
    }

    fn invalid(settings: &Settings) -> String {
        match settings.validate() {
            Err(ConfigError::Invalid(errors)) => errors.join("\n"),
            _ => String::new(),
        }
    }

    #[test]
    fn the_rabbitmq_section_is_checked_only_when_the_sink_is_used() {
        let mut settings = Settings::default();
        settings.rabbitmq.channels = 0;
        assert!(!invalid(&settings).contains("rabbitmq"));
        settings.sinks = vec![SinkKind::Rabbitmq];
        assert!(invalid(&settings).contains("`rabbitmq.channels`"));
    }

    #[test]
    fn the_kafka_message_timeout_must_end_before_the_answer() {
        let mut settings = Settings {
            sinks: vec![SinkKind::Kafka],
            ..Settings::default()
        };
        assert!(!invalid(&settings).contains("message_timeout"));
        settings.delivery.timeout = std::time::Duration::from_secs(2);
        assert!(invalid(&settings).contains("message_timeout"));
        settings.sinks = vec![SinkKind::File];
        assert!(!invalid(&settings).contains("message_timeout"));
    }
}
