//! One file per endpoint.

mod health;
mod metrics;
mod webhook;

pub use health::{healthz, readyz};
pub use metrics::metrics;
pub use webhook::receive_webhook;
