//! What the bridge reports about itself, one type per fact. Emitting an event does
//! everything the fact is owed: its log line (level, message and fields are what
//! operators search for, so they do not change) and its metrics. A fact is thus logged
//! and counted in one place, and cannot be counted twice by two layers.
//!
//! An event that only logs has an inherent `emit(self)`; one that also counts
//! implements [`InternalEvent`] and takes the [`Metrics`] it counts in.

mod auth;
mod dedup;
mod delivery;
mod ingest;
mod lifecycle;
mod poll;
mod reload;
mod sinks;
mod spool;
mod state;
mod vizion_api;

pub use self::auth::{AuthFailed, AUTH_FAILURE_REASONS, COUNTED_AUTH_MODES};
pub use self::dedup::{
    BreakerState, DedupBreakerCreated, DedupBreakerTransition, DedupIdNotKept, DedupLookupFailed,
    DedupStore,
};
pub use self::delivery::{
    DeadLetterFound, DeadLettered, SinkCloseFailed, SinkWrite, SinkWriteFailed, UnknownDescriptions,
};
pub use self::ingest::{
    ConnectionEndedEarly, ConnectionFailed, ConnectionRefused, WebhookFailure, WebhookHandled,
    WebhookStarted,
};
pub use self::lifecycle::{UnsubscribeAlreadyGone, UnsubscribeFailed, Unsubscribed};
pub use self::poll::{
    PollRun, PollRunFailed, PollRunResult, PolledUpdate, PolledUpdateNotStored, ReferenceUnreadable,
};
pub use self::reload::{ConfigReloadFailed, ConfigReloaded, CONFIG_RELOAD_RESULTS};
pub use self::sinks::{MessagePublished, PublishFailed, PublishFinished, PublishHandles};
pub use self::spool::{
    SpoolBytes, SpoolEntries, SpoolEntryUndecodable, SpoolForwardFailed, SpoolForwarded,
    SpoolOldestEntryAge, SpoolPositionStoreFailed, SpoolQuarantineFailed, SpoolQuarantined,
    SpoolRecovered, SpoolUndecodableKeepFailed, SpoolUndecodableKept,
};
pub use self::state::{
    StateConflict, StateEvicted, StateLookup, StateNotCommitted, StateUnavailable,
    STATE_LOOKUP_RESULTS,
};
pub use self::vizion_api::{UnsubscribeAnswerLost, VizionApiRequest, VizionApiRetrying};
use super::Metrics;

/// A fact that is logged and counted.
pub trait InternalEvent {
    fn emit(self, metrics: &Metrics);
}

impl Metrics {
    /// Emits `event`: `metrics.emit(WebhookStarted)`.
    pub fn emit(&self, event: impl InternalEvent) {
        event.emit(self);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::telemetry::Outcome;

    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} in {text}"))
    }

    #[test]
    fn a_webhook_is_in_flight_until_handled_then_counted_once_with_its_duration() {
        let metrics = Metrics::new();
        metrics.emit(WebhookStarted);
        assert_eq!(metrics.inflight.get(), 1);
        metrics.emit(WebhookHandled {
            outcome: Outcome::Accepted,
            duration: Duration::from_millis(3),
            failure: None,
        });
        let text = metrics.render();
        assert_eq!(metrics.inflight.get(), 0);
        assert_eq!(
            sample(&text, "vizion_bridge_webhooks_total{outcome=\"accepted\"}"),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                "vizion_bridge_request_duration_seconds_count{outcome=\"accepted\"}"
            ),
            1.0
        );
    }

    #[test]
    fn an_auth_failure_counts_by_reason_and_mode_whether_refused_or_not() {
        let metrics = Metrics::new();
        for (mode, refused) in [("enforce", true), ("shadow", false)] {
            metrics.emit(AuthFailed {
                reason: "bad_signature",
                mode,
                detail: "the signature does not match",
                refused,
            });
        }
        let text = metrics.render();
        for mode in COUNTED_AUTH_MODES {
            let series = format!(
                "vizion_bridge_auth_failures_total{{mode=\"{mode}\",reason=\"bad_signature\"}}"
            );
            assert_eq!(sample(&text, &series), 1.0, "{mode}");
        }
    }

    #[test]
    fn breaker_transitions_set_the_state_and_count_the_state_entered() {
        let metrics = Metrics::new();
        metrics.emit(DedupBreakerCreated);
        let text = metrics.render();
        assert_eq!(
            sample(
                &text,
                "vizion_bridge_dedup_breaker_transitions_total{state=\"open\"}"
            ),
            0.0,
            "series exist from the start"
        );
        metrics.emit(DedupBreakerTransition {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            failures: 3,
            open_for: Duration::from_secs(5),
        });
        let text = metrics.render();
        assert_eq!(sample(&text, "vizion_bridge_dedup_breaker_state"), 1.0);
        assert_eq!(
            sample(
                &text,
                "vizion_bridge_dedup_breaker_transitions_total{state=\"open\"}"
            ),
            1.0
        );
    }
}
