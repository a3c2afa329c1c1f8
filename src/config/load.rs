//! Reads a settings type from its defaults, a TOML file and the environment.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ConfigError;

/// Environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_PATH_ENV: &str = "VIZION_BRIDGE_CONFIG";
/// Prefix of the environment variables that override single keys.
pub const ENV_PREFIX: &str = "VIZION_BRIDGE__";

/// Loads `T` from its defaults, then the file at `path` (or the one named by
/// `VIZION_BRIDGE_CONFIG`), then environment overrides.
pub fn load<T>(path: Option<&Path>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let env_path = std::env::var_os(CONFIG_PATH_ENV).map(PathBuf::from);
    let path = path.map(Path::to_path_buf).or(env_path);
    let mut figment = Figment::from(Serialized::defaults(T::default()));
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
