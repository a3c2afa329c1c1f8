//! Secrets in configuration: given inline, by environment variable name, or by file path.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What stands in for a secret wherever settings are printed.
pub const REDACTED: &str = "[redacted]";

/// A secret value written inline in configuration. It prints as `[redacted]`
/// everywhere (Debug, check-config output), and is zeroed when dropped.
#[derive(Clone)]
pub struct InlineSecret(SecretString);

impl InlineSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }
}

impl fmt::Debug for InlineSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for InlineSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(InlineSecret::new)
    }
}

impl Serialize for InlineSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("give exactly one of `{0}`, `{0}_env` or `{0}_file`")]
    NotExactlyOne(&'static str),
    #[error("environment variable `{0}` is not set or not valid UTF-8")]
    MissingEnv(String),
    #[error("cannot read secret file `{path}`: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the secret `{0}` is empty")]
    Empty(&'static str),
    #[error("the secret `{0}` is the placeholder \"[redacted]\" from check-config's output, not a secret")]
    Redacted(&'static str),
}

/// Reads a secret given by exactly one of its three forms: `NAME` (inline), `NAME_env`
/// (the name of an environment variable) or `NAME_file` (a path, e.g. a mounted
/// Kubernetes Secret). A file's trailing line break is dropped, since the tools that
/// write such files commonly add one.
pub fn resolve(
    name: &'static str,
    inline: Option<&InlineSecret>,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<SecretString, SecretError> {
    let value = match (inline, env, file) {
        (Some(inline), None, None) => inline.0.expose_secret().to_owned(),
        (None, Some(var), None) => {
            std::env::var(var).map_err(|_| SecretError::MissingEnv(var.to_owned()))?
        }
        (None, None, Some(path)) => {
            let mut text = std::fs::read_to_string(path).map_err(|e| SecretError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let kept = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .map_or(text.len(), str::len);
            text.truncate(kept);
            text
        }
        _ => return Err(SecretError::NotExactlyOne(name)),
    };
    if value.is_empty() {
        return Err(SecretError::Empty(name));
    }
    // What `check-config` prints in place of a secret must never work as one, should
    // its output be saved and deployed.
    if value == REDACTED {
        return Err(SecretError::Redacted(name));
    }
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug, Serialize)]
    struct Holder {
        secret: InlineSecret,
    }

    #[test]
    fn inline_secret_never_prints() {
        let holder = Holder {
            secret: InlineSecret::new("hunter2"),
        };
        assert!(!format!("{holder:?}").contains("hunter2"));
        let text = toml::to_string(&holder).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[redacted]"));
    }

    #[test]
    fn file_secret_drops_one_trailing_line_break() {
        for (content, expected) in [
            (&b" s3cret \n"[..], " s3cret "),
            (b"s3cret\r\n", "s3cret"),
            (b"s3cret\n\n", "s3cret\n"),
            (b"s3cret", "s3cret"),
        ] {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            file.write_all(content).unwrap();
            let secret = resolve("secret", None, None, Some(file.path())).unwrap();
            assert_eq!(secret.expose_secret(), expected);
        }
    }

    #[test]
    fn the_redaction_placeholder_is_refused_as_a_secret() {
        let inline = InlineSecret::new(REDACTED);
        assert_eq!(
            resolve("secret", Some(&inline), None, None).unwrap_err(),
            SecretError::Redacted("secret")
        );
    }

    #[test]
    fn exactly_one_source_is_required() {
        assert_eq!(
            resolve("secret", None, None, None).unwrap_err(),
            SecretError::NotExactlyOne("secret")
        );
        let inline = InlineSecret::new("a");
        assert_eq!(
            resolve("secret", Some(&inline), Some("B"), None).unwrap_err(),
            SecretError::NotExactlyOne("secret")
        );
    }

    #[test]
    fn a_missing_environment_variable_is_named() {
        let err = resolve(
            "secret",
            None,
            Some("VIZION_BRIDGE_TEST_SURELY_UNSET"),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("VIZION_BRIDGE_TEST_SURELY_UNSET"));
    }
}
