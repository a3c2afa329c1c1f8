//! Writing updates to the sinks, and what is kept as a dead letter.

use std::fmt::Display;
use std::time::Duration;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// A sink confirmed a write.
pub struct SinkWrite {
    pub sink: &'static str,
    pub duration: Duration,
}

impl InternalEvent for SinkWrite {
    fn emit(self, metrics: &Metrics) {
        metrics
            .sink_write_duration
            .with_label_values(&[self.sink])
            .observe(self.duration.as_secs_f64());
    }
}

impl Metrics {
    /// Writes of `sink` timed by [`SinkWrite`].
    pub fn confirmed_writes(&self, sink: &str) -> u64 {
        self.sink_write_duration
            .with_label_values(&[sink])
            .get_sample_count()
    }

    /// Failures counted by [`SinkWriteFailed`] for `sink` and `reason`.
    pub fn write_failures(&self, sink: &str, reason: &str) -> u64 {
        self.sink_write_failures
            .with_label_values(&[sink, reason])
            .get()
    }
}

/// A sink failed a write, or did not confirm it in time.
pub struct SinkWriteFailed<'a> {
    pub sink: &'static str,
    /// `sinks::SinkError::reason`, `timeout` or `spool`.
    pub reason: &'static str,
    pub error: &'a dyn Display,
}

impl InternalEvent for SinkWriteFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .sink_write_failures
            .with_label_values(&[self.sink, self.reason])
            .inc();
        tracing::error!(sink = self.sink, error = %self.error, "sink write failed");
    }
}

/// An authentic body is not a usable delivery: it is about to be written as a dead
/// letter ([`DeadLettered`] once it is).
pub struct DeadLetterFound<'a> {
    pub reason: &'static str,
    pub detail: &'a dyn Display,
    pub dead_letter_id: &'a str,
    pub delivery_mode: &'static str,
}

impl DeadLetterFound<'_> {
    pub fn emit(self) {
        tracing::warn!(
            reason = self.reason,
            detail = %self.detail,
            dead_letter_id = %self.dead_letter_id,
            delivery_mode = self.delivery_mode,
            "authentic body is not a usable delivery; keeping it as a dead letter"
        );
    }
}

/// A dead letter was written durably.
pub struct DeadLettered {
    pub reason: &'static str,
}

impl InternalEvent for DeadLettered {
    fn emit(self, metrics: &Metrics) {
        metrics.dead_letters.with_label_values(&[self.reason]).inc();
    }
}

/// An accepted update had milestones whose description is not in the event-code table.
pub struct UnknownDescriptions {
    pub count: usize,
}

impl InternalEvent for UnknownDescriptions {
    fn emit(self, metrics: &Metrics) {
        metrics.unknown_descriptions.inc_by(self.count as u64);
    }
}

/// A sink could not flush and close.
pub struct SinkCloseFailed<'a> {
    pub sink: &'static str,
    pub error: &'a dyn Display,
}

impl SinkCloseFailed<'_> {
    pub fn emit(self) {
        tracing::error!(sink = self.sink, error = %self.error, "closing sink failed");
    }
}
