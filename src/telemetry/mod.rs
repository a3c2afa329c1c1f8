//! Logs and metrics. What the bridge reports about itself is emitted as an event of
//! [`events`], which logs and counts it in one place.

pub mod events;
mod logging;
mod metrics;

pub use events::{BreakerState, InternalEvent};
pub use logging::{check_log_level, init_logging, set_log_level, LogConfig, LogFormat};
pub use metrics::{Metrics, MetricsConfig, Outcome};
