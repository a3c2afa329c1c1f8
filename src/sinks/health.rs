//! One sink's health: the single state that `/readyz` reads (through
//! [`Sink::is_ready`](super::Sink::is_ready)) and that `vizion_bridge_sink_up` exports,
//! so that the two never disagree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus::IntGauge;

use crate::telemetry::Metrics;

pub struct SinkHealth {
    up: AtomicBool,
    gauge: IntGauge,
    /// Serialises changes, so that the flag and the gauge are always set as a pair and a
    /// decision taken from a stale observation cannot overwrite a newer one.
    changing: Mutex<()>,
}

impl SinkHealth {
    /// Starts down, and says so in `vizion_bridge_sink_up{sink}`.
    pub fn new(metrics: &Metrics, sink: &str) -> Self {
        let gauge = metrics.health_gauge(sink);
        gauge.set(0);
        Self {
            up: AtomicBool::new(false),
            gauge,
            changing: Mutex::new(()),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Sets the state to what `decide` says. `decide` runs while no other change can
    /// happen, so that it may read flags that other changes set first.
    pub fn set_with(&self, decide: impl FnOnce() -> bool) -> bool {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let up = decide();
        self.up.store(up, Ordering::Release);
        self.gauge.set(i64::from(up));
        up
    }

    pub fn set(&self, up: bool) {
        self.set_with(|| up);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_follows_the_state() {
        let metrics = Metrics::new();
        let health = SinkHealth::new(&metrics, "kafka");
        let gauge = || metrics.health_gauge("kafka").get();
        assert!(!health.is_up());
        assert_eq!(gauge(), 0);
        health.set(true);
        assert!(health.is_up());
        assert_eq!(gauge(), 1);
        health.set_with(|| false);
        assert!(!health.is_up());
        assert_eq!(gauge(), 0);
    }
}
