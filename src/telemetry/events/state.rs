//! The per-reference state that milestone changes are derived from.

use super::InternalEvent;
use crate::telemetry::Metrics;

/// The results a state lookup is counted by, every one present from the start.
pub const STATE_LOOKUP_RESULTS: [&str; 3] = ["hit", "miss", "error"];

/// A reference's state was looked up: found (`hit`) or not (`miss`, never kept, or
/// lost or expired, which republishes its milestones as new).
pub struct StateLookup {
    pub hit: bool,
}

impl InternalEvent for StateLookup {
    fn emit(self, metrics: &Metrics) {
        let result = if self.hit { "hit" } else { "miss" };
        metrics
            .event_state_lookups
            .with_label_values(&[result])
            .inc();
    }
}

/// States dropped for their age or to stay within the capacity.
pub struct StateEvicted {
    pub count: u64,
}

impl InternalEvent for StateEvicted {
    fn emit(self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        metrics.event_state_evictions.inc_by(self.count);
        tracing::debug!(count = self.count, "reference states evicted");
    }
}

/// A state was not committed: it had changed since it was read (another update of the
/// same reference, here or on another replica, committed first).
pub struct StateConflict;

impl InternalEvent for StateConflict {
    fn emit(self, metrics: &Metrics) {
        metrics.event_state_conflicts.inc();
        tracing::debug!("a reference state changed since it was read; not committed");
    }
}

/// A reference's state could not be read (Redis down, its breaker open, a state that
/// does not decode): the update is published as if none were kept, every milestone
/// `new`, rather than not at all.
pub struct StateUnavailable<'a> {
    pub reference: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for StateUnavailable<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .event_state_lookups
            .with_label_values(&["error"])
            .inc();
        tracing::warn!(
            reference = self.reference,
            error = %self.error,
            "cannot read the reference state; publishing every milestone as new"
        );
    }
}

/// A state was not stored after its events were published: the next update of the
/// reference derives from the older state and publishes those changes again.
pub struct StateNotCommitted<'a> {
    pub reference: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for StateNotCommitted<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.event_state_commit_failures.inc();
        tracing::warn!(
            reference = self.reference,
            error = %self.error,
            "cannot store the reference state; its changes will be published again"
        );
    }
}
