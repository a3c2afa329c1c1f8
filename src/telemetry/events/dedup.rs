//! The record of update ids already written, and the breaker in front of Redis.

use std::fmt::Display;
use std::time::Duration;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// What a circuit breaker does with the next call. It is the `state` label of
/// `vizion_bridge_dedup_breaker_transitions_total` and the value of
/// `vizion_bridge_dedup_breaker_state`, hence kept here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures in a row are counted.
    Closed,
    /// Calls are refused at once.
    Open,
    /// One probe is under way; other calls are refused until it ends.
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value the state gauge shows: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// The Redis breaker was set up (closed).
pub struct DedupBreakerCreated;

impl InternalEvent for DedupBreakerCreated {
    fn emit(self, metrics: &Metrics) {
        metrics
            .dedup_breaker_state
            .set(BreakerState::Closed.gauge_value());
        // Series that exist from the start read 0 rather than "no data" in alerts.
        for entered in BreakerState::ALL {
            metrics
                .dedup_breaker_transitions
                .with_label_values(&[entered.as_str()]);
        }
    }
}

/// The Redis breaker changed state.
pub struct DedupBreakerTransition {
    pub from: BreakerState,
    pub to: BreakerState,
    /// `dedup.redis_breaker_failures`.
    pub failures: u32,
    /// `dedup.redis_breaker_open`.
    pub open_for: Duration,
}

impl InternalEvent for DedupBreakerTransition {
    fn emit(self, metrics: &Metrics) {
        let Self {
            from,
            to,
            failures,
            open_for,
        } = self;
        metrics.dedup_breaker_state.set(to.gauge_value());
        metrics
            .dedup_breaker_transitions
            .with_label_values(&[to.as_str()])
            .inc();
        match (from, to) {
            (BreakerState::Closed, BreakerState::Open) => tracing::warn!(
                failures,
                open_for = ?open_for,
                "Redis failed {failures} times in a row; not asking it for {open_for:?}: \
                 updates count as unseen meanwhile and unsubscriptions wait"
            ),
            (_, BreakerState::Open) => tracing::info!(
                open_for = ?open_for,
                "Redis still not answering; not asking it for another {open_for:?}"
            ),
            (_, BreakerState::HalfOpen) => tracing::info!("asking Redis again (one probe)"),
            (_, BreakerState::Closed) => tracing::info!("Redis answers again; using it"),
        }
    }
}

/// Redis did not say whether an update was seen; it counts as unseen.
pub struct DedupLookupFailed<'a> {
    pub error: &'a dyn Display,
}

impl DedupLookupFailed<'_> {
    pub fn emit(self) {
        tracing::warn!(error = %self.error, "Redis did not answer whether an update was seen; writing it");
    }
}

/// Where update ids are kept beyond the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupStore {
    File,
    Redis,
}

/// An update id written could not be kept beyond memory: after a restart (or on
/// another replica) a resend of it is written again.
pub struct DedupIdNotKept<'a> {
    pub store: DedupStore,
    pub error: &'a dyn Display,
}

impl DedupIdNotKept<'_> {
    pub fn emit(self) {
        match self.store {
            DedupStore::File => {
                tracing::warn!(error = %self.error, "cannot keep an update id on disk")
            }
            DedupStore::Redis => {
                tracing::warn!(error = %self.error, "cannot keep an update id in Redis")
            }
        }
    }
}
