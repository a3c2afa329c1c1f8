//! The `[rabbitmq]` section.

use std::path::PathBuf;
use std::time::Duration;

use lapin::uri::AMQPUri;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::secret::{self, InlineSecret, SecretError};

/// Used when no URL is configured: a broker on this machine with its stock account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// More channels than this only hold broker resources without adding throughput.
const MAX_CHANNELS: usize = 64;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitmqConfig {
    /// `amqp://` or `amqps://` URL of the broker, with credentials and vhost. A
    /// secret: give one of `url`, `url_env` or `url_file`; none means [`DEFAULT_URL`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<InlineSecret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// Durable topic exchange every message is published to.
    pub exchange: String,
    /// Fanout exchange set as the main exchange's `alternate-exchange`: it receives
    /// what no binding of the main exchange matches.
    pub unrouted_exchange: String,
    /// Durable queue bound to the unrouted exchange, where unmatched messages wait.
    pub unrouted_queue: String,
    /// Declare the exchanges, the unrouted queue and its binding on every connect.
    /// Off when an operator owns the topology (the bridge then needs no configure
    /// permission).
    pub declare_topology: bool,
    /// Channels used for publishing, so that writes do not wait behind one another.
    pub channels: usize,
    /// First wait before reconnecting; doubles after each failed attempt.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest wait between reconnection attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How long one connection attempt (TCP, TLS, AMQP handshake, topology) may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Name of the connection shown by the broker (management UI, `rabbitmqctl`).
    pub connection_name: String,
}

impl Default for RabbitmqConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_env: None,
            url_file: None,
            exchange: "vizion.tracking".into(),
            unrouted_exchange: "vizion.tracking.unrouted".into(),
            unrouted_queue: "vizion.tracking.unrouted".into(),
            declare_topology: true,
            channels: 4,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            connection_name: "vizion-bridge".into(),
        }
    }
}

impl RabbitmqConfig {
    /// The broker URL, from whichever of its forms is given.
    pub fn resolve_url(&self) -> Result<SecretString, SecretError> {
        if self.url.is_none() && self.url_env.is_none() && self.url_file.is_none() {
            return Ok(SecretString::from(DEFAULT_URL));
        }
        secret::resolve(
            "rabbitmq.url",
            self.url.as_ref(),
            self.url_env.as_deref(),
            self.url_file.as_deref(),
        )
    }

    /// The parsed broker URL. Errors never quote the URL, which holds a password.
    pub fn uri(&self) -> Result<AMQPUri, String> {
        let url = self
            .resolve_url()
            .map_err(|e| format!("`rabbitmq.url`: {e}"))?;
        url.expose_secret().parse::<AMQPUri>().map_err(|_| {
            "`rabbitmq.url` is not a valid amqp:// or amqps:// URL \
             (reserved characters in the password must be percent-encoded)"
                .to_string()
        })
    }

    /// Problems with these settings, as messages naming the key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = self.uri() {
            errors.push(e);
        }
        if self.channels == 0 || self.channels > MAX_CHANNELS {
            errors.push(format!(
                "`rabbitmq.channels` must be between 1 and {MAX_CHANNELS}"
            ));
        }
        for (key, name) in [
            ("exchange", &self.exchange),
            ("unrouted_exchange", &self.unrouted_exchange),
            ("unrouted_queue", &self.unrouted_queue),
        ] {
            if name.trim().is_empty() || name.len() > 255 {
                errors.push(format!(
                    "`rabbitmq.{key}` must be between 1 and 255 bytes long"
                ));
            }
            if name.starts_with("amq.") {
                errors.push(format!(
                    "`rabbitmq.{key}` must not start with `amq.`, which the broker reserves"
                ));
            }
        }
        if self.exchange == self.unrouted_exchange {
            errors.push("`rabbitmq.unrouted_exchange` must differ from `rabbitmq.exchange`".into());
        }
        if self.reconnect_min.is_zero() {
            errors.push("`rabbitmq.reconnect_min` must be above 0".into());
        }
        if self.reconnect_max < self.reconnect_min {
            errors
                .push("`rabbitmq.reconnect_max` must be at least `rabbitmq.reconnect_min`".into());
        }
        if self.connect_timeout.is_zero() {
            errors.push("`rabbitmq.connect_timeout` must be above 0".into());
        }
        errors
    }

    /// Where the broker is, for logs: scheme, host, port and vhost, never credentials.
    pub fn describe(&self) -> String {
        match self.uri() {
            Ok(uri) => describe_uri(&uri),
            Err(_) => "an invalid URL".into(),
        }
    }
}

pub(crate) fn describe_uri(uri: &AMQPUri) -> String {
    let scheme = match uri.scheme {
        lapin::uri::AMQPScheme::AMQPS => "amqps",
        _ => "amqp",
    };
    format!(
        "{scheme}://{}:{}/ (vhost `{}`, user `{}`)",
        uri.authority.host, uri.authority.port, uri.vhost, uri.authority.userinfo.username
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_point_at_a_local_broker() {
        let config = RabbitmqConfig::default();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let uri = config.uri().unwrap();
        assert_eq!(
            (uri.authority.host.as_str(), uri.authority.port),
            ("127.0.0.1", 5672)
        );
        assert_eq!(uri.vhost, "/");
    }

    #[test]
    fn bad_values_are_named_and_the_password_never_shown() {
        let config = RabbitmqConfig {
            url: Some(InlineSecret::new("http://user:hunter2@host:99999/")),
            channels: 0,
            reconnect_min: Duration::from_secs(10),
            reconnect_max: Duration::from_secs(1),
            unrouted_exchange: "vizion.tracking".into(),
            ..RabbitmqConfig::default()
        };
        let errors = config.validate().join("\n");
        for key in [
            "rabbitmq.url",
            "rabbitmq.channels",
            "rabbitmq.reconnect_max",
            "rabbitmq.unrouted_exchange",
        ] {
            assert!(errors.contains(key), "{errors}");
        }
        assert!(!errors.contains("hunter2"), "{errors}");
    }

    #[test]
    fn the_description_of_the_url_leaves_out_the_password() {
        let config = RabbitmqConfig {
            url: Some(InlineSecret::new(
                "amqps://bridge:hunter2@mq.example.com:5671/tracking",
            )),
            ..RabbitmqConfig::default()
        };
        let text = config.describe();
        assert!(text.contains("mq.example.com:5671"), "{text}");
        assert!(
            text.contains("tracking") && text.contains("bridge"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_url_takes_a_heartbeat() {
        let config = RabbitmqConfig {
            url: Some(InlineSecret::new(format!("{DEFAULT_URL}?heartbeat=10"))),
            ..RabbitmqConfig::default()
        };
        assert_eq!(config.uri().unwrap().query.heartbeat, Some(10));
    }

    #[test]
    fn more_than_one_form_of_the_url_is_an_error() {
        let config = RabbitmqConfig {
            url: Some(InlineSecret::new(DEFAULT_URL)),
            url_env: Some("RABBITMQ_URL".into()),
            ..RabbitmqConfig::default()
        };
        assert!(config.validate()[0].contains("exactly one"));
    }
}
