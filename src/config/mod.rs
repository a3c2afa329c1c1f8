//! Typed settings: defaults, then a TOML file, then `VIZION_BRIDGE__SECTION__KEY`
//! environment variables. Unknown keys anywhere are an error.

pub mod secret;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthConfig, KeyRing, Mode, Scheme};
use crate::delivery::{DedupConfig, DeliveryConfig};
use crate::ingest::IngestConfig;
use crate::sinks::SinkKind;
use crate::startup::ServerConfig;
use crate::telemetry::{LogConfig, MetricsConfig};

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
    pub dedup: DedupConfig,
    pub delivery: DeliveryConfig,
    pub storage: StorageConfig,
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
            dedup: DedupConfig::default(),
            delivery: DeliveryConfig::default(),
            storage: StorageConfig::default(),
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
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
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
            .map_err(|e| ConfigError::Load(Box::new(e)))
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
        if self.server.max_inflight == 0 {
            errors.push("`server.max_inflight` must be above 0".into());
        }
        if self.dedup.capacity == 0 {
            errors.push("`dedup.capacity` must be above 0".into());
        }
        if self.delivery.timeout.is_zero() {
            errors.push("`delivery.timeout` must be above 0".into());
        }

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
