//! Calls to Vizion's API.

use std::fmt::Display;
use std::time::Duration;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// One call to Vizion's API was answered, or not (each retry is one more).
pub struct VizionApiRequest<'a> {
    /// A short name of what the call does: `list_updates`, `unsubscribe`, …
    pub operation: &'a str,
    /// `ok`, the HTTP status, or `transport_error`.
    pub outcome: &'a str,
}

impl InternalEvent for VizionApiRequest<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .vizion_api_requests
            .with_label_values(&[self.operation, self.outcome])
            .inc();
    }
}

/// A call to Vizion's API failed and is tried again after `wait`.
pub struct VizionApiRetrying<'a> {
    /// The method and path, e.g. `GET /references`.
    pub operation: &'a str,
    /// The attempt that failed, from 1.
    pub attempt: u32,
    pub wait: Duration,
    pub error: &'a dyn Display,
}

impl VizionApiRetrying<'_> {
    pub fn emit(self) {
        tracing::warn!(
            operation = %self.operation,
            attempt = self.attempt,
            wait_ms = self.wait.as_millis() as u64,
            error = %self.error,
            "Vizion API call failed; retrying"
        );
    }
}

/// A retried unsubscription found the reference gone: the attempt whose answer was
/// lost had removed it.
pub struct UnsubscribeAnswerLost<'a> {
    pub reference_id: &'a str,
}

impl UnsubscribeAnswerLost<'_> {
    pub fn emit(self) {
        tracing::info!(
            reference_id = self.reference_id,
            "unsubscribed: an earlier attempt, whose answer was lost, removed the reference"
        );
    }
}
