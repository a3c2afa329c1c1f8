//! The per-reference state that milestone changes are derived from.

use super::InternalEvent;
use crate::telemetry::Metrics;

/// The results a state lookup is counted by, every one present from the start.
pub const STATE_LOOKUP_RESULTS: [&str; 2] = ["hit", "miss"];

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
