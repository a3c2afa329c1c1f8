//! Authentication of webhooks.

use super::InternalEvent;
use crate::telemetry::Metrics;

/// Every value of the `reason` label of `vizion_bridge_auth_failures_total`: the
/// `as_str` of each `auth::FailureReason` (a test there keeps the two the same). Their
/// series exist from the start, so that alerts read 0 rather than "no data".
pub const AUTH_FAILURE_REASONS: [&str; 13] = [
    "missing_signature",
    "malformed_signature",
    "unknown_algorithm",
    "expired",
    "not_yet_valid",
    "unsigned_header",
    "missing_signed_header",
    "missing_digest",
    "malformed_digest",
    "bad_digest",
    "bad_signature",
    "missing_token",
    "bad_token",
];

/// The values of the `mode` label: in mode `off` nothing is checked, so nothing fails.
pub const COUNTED_AUTH_MODES: [&str; 2] = ["enforce", "shadow"];

/// A webhook failed authentication.
pub struct AuthFailed {
    /// `auth::FailureReason::as_str`.
    pub reason: &'static str,
    /// `auth::Mode::as_str`.
    pub mode: &'static str,
    pub detail: &'static str,
    /// Whether the webhook is refused for it. A refusal is logged with its answer
    /// ([`super::WebhookHandled`]); a failure let through (shadow mode) is logged here.
    pub refused: bool,
}

impl InternalEvent for AuthFailed {
    fn emit(self, metrics: &Metrics) {
        metrics
            .auth_failures
            .with_label_values(&[self.reason, self.mode])
            .inc();
        if !self.refused {
            tracing::warn!(
                reason = self.reason,
                detail = self.detail,
                "authentication failed; accepted because auth.mode is shadow"
            );
        }
    }
}
