use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `vizion_bridge=debug,info`. `RUST_LOG`,
    /// when set, takes precedence.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

/// Where the level of the installed subscriber is changed, once it is installed by
/// this process and `RUST_LOG` does not set it.
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber. A second call (as in tests) keeps the first one.
pub fn init_logging(config: &LogConfig) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let follows_config = from_env.is_none();
    let level = from_env
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (level, handle) = reload::Layer::new(level);
    let filter = level.and(filter_fn(|metadata| !reported_by_the_bridge(metadata)));
    let layer = fmt::layer().with_writer(std::io::stderr);
    let layer = match config.format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => layer.with_filter(filter).boxed(),
    };
    if tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_ok()
        && follows_config
    {
        let _ = LEVEL.set(handle);
    }
}

/// Checks a `log.level` filter as [`set_log_level`] would take it.
pub fn check_log_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| format!("`log.level`: {e}"))
}

/// Makes `level` the filter of the running subscriber. Returns false when the level is
/// not this configuration's to set: `RUST_LOG` set it, or no subscriber was installed
/// here.
pub fn set_log_level(level: &str) -> Result<bool, String> {
    let Some(handle) = LEVEL.get() else {
        return Ok(false);
    };
    let filter = EnvFilter::try_new(level).map_err(|e| format!("`log.level`: {e}"))?;
    handle
        .reload(filter)
        .map(|()| true)
        .map_err(|e| format!("cannot change the log level: {e}"))
}

/// The HTTP layer logs every connection it ends on an error at ERROR, without the
/// peer's address, even when the client is at fault (a malformed request, headers too
/// large). Each of those errors is reported once by `ingest::connection`, with the peer
/// and at the level it deserves, so its own lines are left out.
fn reported_by_the_bridge(metadata: &Metadata<'_>) -> bool {
    metadata.target() == "actix_http::h1::dispatcher" && *metadata.level() == Level::ERROR
}
