//! Automatic unsubscription of completed journeys.

use std::fmt::Display;

use super::InternalEvent;
use crate::telemetry::Metrics;

fn count(metrics: &Metrics, outcome: &str) {
    metrics.unsubscriptions.with_label_values(&[outcome]).inc();
}

/// A completed journey's reference was unsubscribed.
pub struct Unsubscribed<'a> {
    pub reference_id: &'a str,
    pub update_id: &'a str,
}

impl InternalEvent for Unsubscribed<'_> {
    fn emit(self, metrics: &Metrics) {
        count(metrics, "unsubscribed");
        tracing::info!(
            reference_id = self.reference_id,
            update_id = %self.update_id,
            "journey complete; reference unsubscribed"
        );
    }
}

/// A completed journey's reference was already gone from Vizion.
pub struct UnsubscribeAlreadyGone<'a> {
    pub reference_id: &'a str,
}

impl InternalEvent for UnsubscribeAlreadyGone<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::info!(
            reference_id = self.reference_id,
            "journey complete; Vizion no longer has the reference"
        );
        count(metrics, "already_gone");
    }
}

/// Unsubscribing a completed journey failed; a later update of it tries again.
pub struct UnsubscribeFailed<'a> {
    pub reference_id: &'a str,
    pub error: &'a dyn Display,
}

impl InternalEvent for UnsubscribeFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::error!(reference_id = self.reference_id, error = %self.error, "cannot unsubscribe a completed journey; a later update tries again");
        count(metrics, "failed");
    }
}
