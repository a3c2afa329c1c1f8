//! Polling Vizion for updates that no webhook brought.

use std::fmt::Display;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// How a polling pass ended: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollRunResult {
    /// Every reference was read and every update taken.
    Ok,
    /// Some reference could not be read, or some update not written.
    Partial,
}

impl PollRunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PollRunResult::Ok => "ok",
            PollRunResult::Partial => "partial",
        }
    }
}

/// A polling pass went over the references.
pub struct PollRun {
    pub result: PollRunResult,
    pub references: usize,
    pub updates: usize,
    pub accepted: usize,
    pub duplicates: usize,
    pub unavailable: usize,
    pub failed_references: usize,
    pub older_than_dedup: usize,
}

impl InternalEvent for PollRun {
    fn emit(self, metrics: &Metrics) {
        metrics
            .poll_runs
            .with_label_values(&[self.result.as_str()])
            .inc();
        tracing::info!(
            references = self.references,
            updates = self.updates,
            accepted = self.accepted,
            duplicates = self.duplicates,
            unavailable = self.unavailable,
            failed_references = self.failed_references,
            older_than_dedup = self.older_than_dedup,
            "poll pass done"
        );
    }
}

/// A polling pass could not even list the references.
pub struct PollRunFailed<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for PollRunFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.poll_runs.with_label_values(&["failed"]).inc();
        tracing::error!(error = %self.error, "cannot list references to poll");
    }
}

/// A polled update was taken, or left: `accepted`, `duplicate`, `dead_lettered` or
/// `older_than_dedup` (one not written is [`PolledUpdateNotStored`]).
pub struct PolledUpdate {
    pub outcome: &'static str,
}

impl InternalEvent for PolledUpdate {
    fn emit(self, metrics: &Metrics) {
        metrics
            .poll_updates
            .with_label_values(&[self.outcome])
            .inc();
    }
}

/// A polled update could not be written; the next pass tries again.
pub struct PolledUpdateNotStored<'a> {
    pub reference_id: &'a str,
    pub error: &'a dyn Display,
}

impl InternalEvent for PolledUpdateNotStored<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::error!(reference_id = self.reference_id, error = %self.error, "polled update not stored; next pass retries");
        metrics
            .poll_updates
            .with_label_values(&["unavailable"])
            .inc();
    }
}

/// A reference's updates could not be read.
pub struct ReferenceUnreadable<'a> {
    pub reference_id: &'a str,
    pub error: &'a dyn Display,
}

impl ReferenceUnreadable<'_> {
    pub fn emit(self) {
        tracing::warn!(reference_id = self.reference_id, error = %self.error, "cannot read a reference's updates");
    }
}
