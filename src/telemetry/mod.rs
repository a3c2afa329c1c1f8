//! Logs and metrics.

mod logging;
mod metrics;

pub use logging::{init_logging, LogConfig, LogFormat};
pub use metrics::{Metrics, MetricsConfig, Outcome};
