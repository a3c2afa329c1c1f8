//! Generic configuration pieces that every component may use: the errors of loading
//! and checking settings, the loader itself (defaults, then a TOML file, then
//! `VIZION_BRIDGE__SECTION__KEY` environment variables, unknown keys being an error),
//! the storage section, and the [`BuildContext`] components are built with. The root
//! aggregate of every section is [`crate::settings::Settings`].

mod context;
mod load;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use self::context::BuildContext;
pub use self::load::{load, CONFIG_PATH_ENV, ENV_PREFIX};

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

/// Asserts that one of the problems a `validate` found names `what`.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_names(problems: &[String], what: &str) {
    assert!(problems.iter().any(|p| p.contains(what)), "{problems:?}");
}
