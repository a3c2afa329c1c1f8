//! Publishing to the brokers.

use prometheus::{Histogram, IntCounter, IntGauge};

use super::InternalEvent;
use crate::telemetry::Metrics;

/// A broker sink's metric handles, looked up once: `with_label_values` hashes the
/// labels and takes a lock, which is not worth paying for every message.
pub struct PublishHandles {
    /// By the index of the kind in the list given to [`PublishHandles::new`].
    published: Vec<IntCounter>,
    duration: Histogram,
}

impl PublishHandles {
    /// `kinds` are the values of the `kind` label, in the order messages will name them.
    pub fn new(metrics: &Metrics, sink: &str, kinds: &[&str]) -> Self {
        Self {
            published: kinds
                .iter()
                .map(|kind| metrics.events_published.with_label_values(&[sink, kind]))
                .collect(),
            duration: metrics.publish_duration.with_label_values(&[sink]),
        }
    }
}

/// A broker confirmed one message.
pub struct MessagePublished<'a> {
    pub handles: &'a PublishHandles,
    /// The index of its kind in the list the handles were made with.
    pub kind: usize,
}

impl MessagePublished<'_> {
    /// Counts in the handles, not in `Metrics`: no lookup per message.
    pub fn emit(self) {
        self.handles.published[self.kind].inc();
    }
}

/// A broker answered (or not) for every message of one write.
pub struct PublishFinished<'a> {
    pub handles: &'a PublishHandles,
    pub duration: std::time::Duration,
}

impl PublishFinished<'_> {
    pub fn emit(self) {
        self.handles.duration.observe(self.duration.as_secs_f64());
    }
}

/// A broker did not confirm a write.
pub struct PublishFailed {
    pub sink: &'static str,
    pub reason: &'static str,
}

impl InternalEvent for PublishFailed {
    fn emit(self, metrics: &Metrics) {
        metrics
            .publish_failures
            .with_label_values(&[self.sink, self.reason])
            .inc();
    }
}

impl Metrics {
    /// `vizion_bridge_sink_up{sink}`, for the one place that keeps a sink's health.
    pub fn health_gauge(&self, sink: &str) -> IntGauge {
        self.sink_up.with_label_values(&[sink])
    }
}
