//! Typed settings: defaults, then a TOML file, then `VIZION_BRIDGE__SECTION__KEY`
//! environment variables. Unknown keys anywhere are an error.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthConfig, KeyRing, Mode, Scheme};
use crate::delivery::poller::PollConfig;
use crate::delivery::{DedupConfig, DeliveryConfig, DeliveryMode, SpoolConfig};
use crate::events::EventsConfig;
use crate::ingest::IngestConfig;
use crate::lifecycle::LifecycleConfig;
use crate::sinks::kafka::KafkaConfig;
use crate::sinks::rabbitmq::RabbitmqConfig;
use crate::sinks::SinkKind;
use crate::startup::ServerConfig;
use crate::telemetry::{LogConfig, MetricsConfig};
use crate::vizion::api::VizionApiConfig;

/// Environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_PATH_ENV: &str = "VIZION_BRIDGE_CONFIG";
/// Prefix of the environment variables that override single keys.
pub const ENV_PREFIX: &str = "VIZION_BRIDGE__";

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
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for everything the bridge keeps on local disk (the file sink's output).
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file `{path}`: {reason}")]
    Unreadable { path: String, reason: String },
    /// Keys with the wrong type or name, or a file that is not TOML. The message
    /// names the key and the expectation but never repeats a value, which could be a
    /// secret.
    #[error("{0}")]
    Load(String),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Something allowed but worth a warning at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning(pub String);

impl Settings {
    /// Loads settings from `path` (or from the file named by `VIZION_BRIDGE_CONFIG`),
    /// then applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env_path = std::env::var_os(CONFIG_PATH_ENV).map(PathBuf::from);
        let path = path.map(Path::to_path_buf).or(env_path);
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &path {
            // Figment treats a missing file as empty; a named file that is missing is a mistake.
            if let Err(e) = std::fs::metadata(path) {
                return Err(ConfigError::Unreadable {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        figment
            .extract()
            .map_err(|e| ConfigError::Load(describe_load_error(e)))
    }

    /// Checks what types alone cannot, including that every secret can be read.
    /// Returns the warnings to log when the settings are valid.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        if self.sinks.is_empty() {
            errors.push("`sinks` is empty: list at least one sink, e.g. [\"file\"]".into());
        }
        if self.ingest.allowed_sources.is_empty() {
            errors.push(
                "`ingest.allowed_sources` is empty: list the sender's addresses, or write out \
                 \"0.0.0.0/0\" and \"::/0\" to allow every address"
                    .into(),
            );
        }
        let allows_all = |net: &IpNet| net.prefix_len() == 0;
        if self.ingest.allowed_sources.iter().any(allows_all) {
            warnings.push(ConfigWarning(
                "ingest.allowed_sources admits every address: the source check is off".into(),
            ));
        }
        if !self.ingest.path.starts_with('/') {
            errors.push("`ingest.path` must start with `/`".into());
        }
        if self.ingest.max_body_bytes == 0 {
            errors.push("`ingest.max_body_bytes` must be above 0".into());
        }
        errors.extend(self.server.problems());
        if self.dedup.capacity == 0 {
            errors.push("`dedup.capacity` must be above 0".into());
        }
        let signature = &self.auth.http_signature;
        if matches!(self.auth.scheme, Scheme::HttpSignature | Scheme::Auto)
            && !signature
                .required_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&signature.digest_header))
        {
            errors.push(format!(
                "`auth.http_signature.required_headers` must include the digest header `{}`: \
                 without it a signature does not bind the body",
                signature.digest_header
            ));
        }
        let source = &self.events.source;
        if source.is_empty() || source.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(
                "`events.source` must be a URI reference (no spaces), e.g. \"urn:vizion-bridge\""
                    .into(),
            );
        }
        let prefix = &self.events.type_prefix;
        if prefix.is_empty()
            || prefix.starts_with('.')
            || prefix.ends_with('.')
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            errors.push(
                "`events.type_prefix` must be a dotted name such as \"com.vizionapi.tracking\""
                    .into(),
            );
        }
        if self.sinks.contains(&SinkKind::Kafka) {
            errors.extend(self.kafka.problems(self.delivery.timeout));
        }
        if self.delivery.timeout.is_zero() {
            errors.push("`delivery.timeout` must be above 0".into());
        }

        if self.sinks.contains(&SinkKind::Rabbitmq) {
            errors.extend(self.rabbitmq.validate());
        }
        errors.extend(self.spool.problems());
        if self.spool.dir.is_none()
            && matches!(
                self.delivery.mode,
                Some(DeliveryMode::Spool | DeliveryMode::BrokerThenSpool)
            )
        {
            errors.push("`delivery.mode` needs a spool: set `spool.dir`".into());
        }
        if self.delivery.broker_deadline.is_zero() {
            errors.push("`delivery.broker_deadline` must be above 0".into());
        }

        let calls_vizion = self.poll.enabled || self.lifecycle.auto_unsubscribe;
        errors.extend(self.vizion_api.problems(calls_vizion));
        errors.extend(self.poll.problems());
        errors.extend(self.dedup.problems());

        match KeyRing::from_config(&self.auth.secrets) {
            Err(e) => errors.push(format!("`auth.secrets`: {e}")),
            Ok(keys) => {
                let needs_secrets = self.auth.mode != Mode::Off && self.auth.scheme != Scheme::None;
                if needs_secrets && keys.is_empty() {
                    errors.push(format!(
                        "`auth.secrets` is empty: scheme `{}` needs at least one secret",
                        self.auth.scheme.as_str()
                    ));
                }
            }
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

        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// The effective settings as TOML, with every secret shown as `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

/// Describes every error figment found, without the rejected values: figment's own
/// messages quote them (`found string "…"`), and TOML syntax errors quote the source
/// line, either of which may hold a secret.
fn describe_load_error(error: figment::Error) -> String {
    use figment::error::{Actual, Kind};

    let kind_of = |actual: &Actual| match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "a value of another type",
    };
    let mut lines = Vec::new();
    for e in error {
        let what = match &e.kind {
            Kind::Message(message) => message
                .lines()
                .map(str::trim)
                // Drop the quoted source lines (`3 | secret = "…`) and their markers.
                .filter(|line| !line.is_empty() && !is_source_excerpt(line))
                .collect::<Vec<_>>()
                .join(": "),
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                format!("found {}, expected {expected}", kind_of(actual))
            }
            Kind::InvalidLength(len, expected) => format!("{len} items, expected {expected}"),
            Kind::UnknownVariant(variant, expected) => {
                format!(
                    "unknown value `{variant}`, expected one of {}",
                    expected.join(", ")
                )
            }
            Kind::UnknownField(field, expected) => {
                format!(
                    "unknown key `{field}`, expected one of {}",
                    expected.join(", ")
                )
            }
            Kind::MissingField(field) => format!("missing key `{field}`"),
            Kind::DuplicateField(field) => format!("duplicate key `{field}`"),
            Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
            Kind::Unsupported(actual) | Kind::UnsupportedKey(actual, _) => {
                format!("{} is not supported here", kind_of(actual))
            }
        };
        let key = if e.path.is_empty() {
            String::new()
        } else {
            format!(" at key `{}`", e.path.join("."))
        };
        let source = e
            .metadata
            .as_ref()
            .map(|m| match &m.source {
                Some(figment::Source::File(path)) => format!(" in {}", path.display()),
                _ => format!(" in {}", m.name),
            })
            .unwrap_or_default();
        lines.push(format!("{what}{key}{source}"));
    }
    format!("invalid configuration:\n  - {}", lines.join("\n  - "))
}

/// A line of a TOML error's excerpt: `|`, `3 | text`, or `  |    ^`.
fn is_source_excerpt(line: &str) -> bool {
    match line.split_once('|') {
        Some((gutter, _)) => gutter.trim().chars().all(|c| c.is_ascii_digit()),
        None => false,
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
}
