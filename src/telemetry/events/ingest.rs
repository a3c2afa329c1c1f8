//! The webhook route and the connections it is served on.

use std::fmt::Display;
use std::time::Duration;

use prometheus::IntGauge;

use super::InternalEvent;
use crate::telemetry::{Metrics, Outcome};

impl Metrics {
    /// Webhook requests in flight now, which the shutdown waits for.
    pub fn requests_in_flight(&self) -> i64 {
        self.inflight.get()
    }

    /// `vizion_bridge_body_reads_in_progress`, kept by the bound on bodies being read:
    /// it changes with every place taken or given back, so the handle is looked up once.
    pub fn bodies_being_read_gauge(&self) -> IntGauge {
        self.body_reads_in_progress.clone()
    }
}

/// A webhook request reached the route: it is in flight until [`WebhookHandled`].
pub struct WebhookStarted;

impl InternalEvent for WebhookStarted {
    fn emit(self, metrics: &Metrics) {
        metrics.inflight.inc();
    }
}

/// Why a webhook was not taken, as its log line tells it.
pub enum WebhookFailure<'a> {
    /// The update could not be made durable.
    NotStored { cause: &'a dyn Display },
    /// The request was refused; `auth_reason` when authentication failed.
    Rejected {
        error: &'a dyn Display,
        auth_reason: Option<&'static str>,
    },
}

/// A webhook request was answered. Emitted inside the request's span, whose `outcome`
/// and `latency_ms` are recorded first, so that its line carries them.
pub struct WebhookHandled<'a> {
    pub outcome: Outcome,
    pub duration: Duration,
    /// `None` when the webhook was taken (accepted, duplicate or dead-lettered).
    pub failure: Option<WebhookFailure<'a>>,
}

impl InternalEvent for WebhookHandled<'_> {
    fn emit(self, metrics: &Metrics) {
        let outcome = self.outcome.as_str();
        metrics.inflight.dec();
        metrics.webhooks.with_label_values(&[outcome]).inc();
        metrics
            .request_duration
            .with_label_values(&[outcome])
            .observe(self.duration.as_secs_f64());
        match self.failure {
            None => tracing::info!("webhook {}", outcome),
            Some(WebhookFailure::NotStored { cause }) => {
                tracing::error!(error = %cause, "webhook not stored")
            }
            Some(WebhookFailure::Rejected {
                error,
                auth_reason: Some(reason),
            }) => tracing::warn!(reason, error = %error, "webhook rejected"),
            Some(WebhookFailure::Rejected {
                error,
                auth_reason: None,
            }) => tracing::warn!(error = %error, "webhook rejected"),
        }
    }
}

/// The HTTP layer answered a request on its own, before any route saw it.
pub struct ConnectionRefused<'a> {
    /// The connecting address, or `unknown`.
    pub peer: &'a str,
    /// One of the outcomes the HTTP layer answers.
    pub outcome: Outcome,
    pub error: &'a str,
}

impl InternalEvent for ConnectionRefused<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .webhooks
            .with_label_values(&[self.outcome.as_str()])
            .inc();
        tracing::warn!(
            peer = %self.peer,
            outcome = self.outcome.as_str(),
            error = %self.error,
            "request refused before it reached a route"
        );
    }
}

/// The client went away (or stopped reading) before its exchange was done: not an
/// error of the bridge's.
pub struct ConnectionEndedEarly<'a> {
    pub peer: &'a str,
    pub error: &'a dyn Display,
}

impl ConnectionEndedEarly<'_> {
    pub fn emit(self) {
        tracing::debug!(peer = %self.peer, error = %self.error, "connection ended early");
    }
}

/// A connection ended on an error of the HTTP layer's.
pub struct ConnectionFailed<'a> {
    pub peer: &'a str,
    pub error: &'a dyn Display,
}

impl ConnectionFailed<'_> {
    pub fn emit(self) {
        tracing::error!(peer = %self.peer, error = %self.error, "connection failed");
    }
}
