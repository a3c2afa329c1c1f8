use std::net::SocketAddr;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

use super::events::{
    AUTH_FAILURE_REASONS, CONFIG_RELOAD_RESULTS, COUNTED_AUTH_MODES, STATE_LOOKUP_RESULTS,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the separate listener that serves `GET /metrics`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

/// How a webhook request ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    DeadLettered,
    Unauthorized,
    Forbidden,
    TooLarge,
    UnsupportedMediaType,
    BadRequest,
    Unavailable,
    /// Refused with 503 because the local spool is full.
    SpoolFull,
    /// Refused with 503 before its body was read: every place for a body being
    /// received, or the client's share of them, was taken.
    BodyReadsFull,
    /// Refused or cut short with 503 because the service is shutting down.
    ShuttingDown,
    /// Answered 400 by the HTTP layer: the request could not be parsed.
    MalformedRequest,
    /// Answered 431 by the HTTP layer: too many headers, or too large.
    HeadersTooLarge,
    /// Answered 408 by the HTTP layer: the request head did not arrive within
    /// `server.client_request_timeout`.
    HeaderTimeout,
}

impl Outcome {
    pub const ALL: [Outcome; 15] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::DeadLettered,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::TooLarge,
        Outcome::UnsupportedMediaType,
        Outcome::BadRequest,
        Outcome::Unavailable,
        Outcome::SpoolFull,
        Outcome::BodyReadsFull,
        Outcome::ShuttingDown,
        Outcome::MalformedRequest,
        Outcome::HeadersTooLarge,
        Outcome::HeaderTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::TooLarge => "too_large",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::BadRequest => "bad_request",
            Outcome::Unavailable => "unavailable",
            Outcome::SpoolFull => "spool_full",
            Outcome::BodyReadsFull => "body_reads_full",
            Outcome::ShuttingDown => "shutting_down",
            Outcome::MalformedRequest => "malformed_request",
            Outcome::HeadersTooLarge => "headers_too_large",
            Outcome::HeaderTimeout => "header_timeout",
        }
    }
}

/// Every metric the bridge exports, in a registry of its own (so that several
/// instances can run in one process, as in tests).
#[derive(Clone)]
pub struct Metrics {
    // Counted in through `telemetry::events` only, so that each fact is counted once.
    registry: Registry,
    /// Every registered family: `render` lists even those without a series yet.
    families: Vec<FamilyMetadata>,
    pub(super) webhooks: IntCounterVec,
    pub(super) auth_failures: IntCounterVec,
    pub(super) request_duration: HistogramVec,
    pub(super) inflight: IntGauge,
    pub(super) body_reads_in_progress: IntGauge,
    pub(super) sink_write_duration: HistogramVec,
    pub(super) sink_write_failures: IntCounterVec,
    pub(super) dead_letters: IntCounterVec,
    pub(super) unknown_descriptions: IntCounter,
    pub(super) events_published: IntCounterVec,
    pub(super) publish_failures: IntCounterVec,
    pub(super) publish_duration: HistogramVec,
    pub(super) sink_up: IntGaugeVec,
    pub(super) vizion_api_requests: IntCounterVec,
    pub(super) poll_updates: IntCounterVec,
    pub(super) poll_runs: IntCounterVec,
    pub(super) unsubscriptions: IntCounterVec,
    pub(super) dedup_breaker_state: IntGauge,
    pub(super) dedup_breaker_transitions: IntCounterVec,
    pub(super) config_reloads: IntCounterVec,
    pub(super) event_state_lookups: IntCounterVec,
    pub(super) event_state_evictions: IntCounter,
    pub(super) event_state_conflicts: IntCounter,
    pub(super) event_state_commit_failures: IntCounter,
    pub(super) spool: SpoolMetrics,
}

/// Buckets from 0.5 ms to 10 s: an answer is expected in milliseconds, a slow sink in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let mut families = Vec::new();
        let r = &mut Registrar {
            registry: &registry,
            families: &mut families,
        };
        let webhooks = r.counter_vec(
            "vizion_bridge_webhooks_total",
            "Webhook requests, by how they ended.",
            &["outcome"],
        );
        let auth_failures = r.counter_vec(
            "vizion_bridge_auth_failures_total",
            "Webhooks that failed authentication, by reason and by mode (in shadow mode they were still accepted).",
            &["reason", "mode"],
        );
        let request_duration = r.latency_histogram(
            "vizion_bridge_request_duration_seconds",
            "Time from the start of a webhook request to its answer, by outcome.",
            &["outcome"],
        );
        let inflight = r.gauge(
            "vizion_bridge_inflight_requests",
            "Webhook requests being handled now.",
        );
        let body_reads_in_progress = r.gauge(
            "vizion_bridge_body_reads_in_progress",
            "Webhook requests whose body is still being received.",
        );
        let sink_write_duration = r.latency_histogram(
            "vizion_bridge_sink_write_duration_seconds",
            "Time a sink took to confirm a write, by sink.",
            &["sink"],
        );
        let sink_write_failures = r.counter_vec(
            "vizion_bridge_sink_write_failures_total",
            "Writes a sink failed or did not confirm in time, by sink and reason.",
            &["sink", "reason"],
        );
        let dead_letters = r.counter_vec(
            "vizion_bridge_dead_letters_total",
            "Authentic webhooks kept as dead letters because they were not usable, by reason.",
            &["reason"],
        );
        let unknown_descriptions = r.counter(
            "vizion_bridge_unknown_milestone_descriptions_total",
            "Milestones of accepted updates whose description is not in the event-code table (new carrier wording).",
        );
        let events_published = r.counter_vec(
            "vizion_bridge_events_published_total",
            "Messages a broker confirmed, by sink and kind (update, milestone, pass_through, raw, dead_letter).",
            &["sink", "kind"],
        );
        let publish_failures = r.counter_vec(
            "vizion_bridge_publish_failures_total",
            "Messages a broker did not confirm, by sink and reason.",
            &["sink", "reason"],
        );
        let publish_duration = r.latency_histogram(
            "vizion_bridge_publish_duration_seconds",
            "Time from publishing a message to the broker's confirmation, by sink.",
            &["sink"],
        );
        let sink_up = r.gauge_vec(
            "vizion_bridge_sink_up",
            "1 while a sink can take writes (its broker is reachable), else 0.",
            &["sink"],
        );
        let build_info = r.gauge_vec(
            "vizion_bridge_build_info",
            "Always 1; the label carries the version.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let vizion_api_requests = r.counter_vec(
            "vizion_bridge_vizion_api_requests_total",
            "Calls to Vizion's API, by operation and outcome (ok, the HTTP status, or transport_error); retries count again.",
            &["operation", "outcome"],
        );
        let poll_updates = r.counter_vec(
            "vizion_bridge_poll_updates_total",
            "Updates fetched by polling, by what became of them (accepted, duplicate, dead_lettered, unavailable).",
            &["outcome"],
        );
        let poll_runs = r.counter_vec(
            "vizion_bridge_poll_runs_total",
            "Polling passes, by result (ok, or partial when some reference could not be read or written).",
            &["result"],
        );
        let unsubscriptions = r.counter_vec(
            "vizion_bridge_unsubscriptions_total",
            "Automatic unsubscriptions of completed journeys, by outcome (unsubscribed, already_gone, failed).",
            &["outcome"],
        );
        let dedup_breaker_state = r.gauge(
            "vizion_bridge_dedup_breaker_state",
            "The Redis circuit breaker (dedup and unsubscription record): 0 closed (Redis asked), 1 open (not asked; updates count as unseen), 2 half-open (one probe under way). 0 when Redis is not configured.",
        );
        let dedup_breaker_transitions = r.counter_vec(
            "vizion_bridge_dedup_breaker_transitions_total",
            "Changes of the Redis circuit breaker, by the state entered (open, half_open, closed).",
            &["state"],
        );

        let config_reloads = r.counter_vec(
            "vizion_bridge_config_reloads_total",
            "Reloads of the configuration, by result (applied, unchanged, failed).",
            &["result"],
        );

        let event_state_lookups = r.counter_vec(
            "vizion_bridge_event_state_lookups_total",
            "Lookups of a reference's last published milestone state, by result (hit, miss, error).",
            &["result"],
        );
        let event_state_evictions = r.counter(
            "vizion_bridge_event_state_evictions_total",
            "Reference states dropped for their age or to stay within the capacity, oldest first.",
        );
        let event_state_conflicts = r.counter(
            "vizion_bridge_event_state_conflicts_total",
            "Reference states not committed because another update of the same reference committed first.",
        );
        let event_state_commit_failures = r.counter(
            "vizion_bridge_event_state_commit_failures_total",
            "Reference states not stored after their events were published (their changes are published again).",
        );

        let spool = SpoolMetrics::register(r);

        // Series that exist from the start read 0 rather than "no data" in alerts.
        for outcome in Outcome::ALL {
            webhooks.with_label_values(&[outcome.as_str()]);
        }
        for reason in AUTH_FAILURE_REASONS {
            for mode in COUNTED_AUTH_MODES {
                auth_failures.with_label_values(&[reason, mode]);
            }
        }
        for result in CONFIG_RELOAD_RESULTS {
            config_reloads.with_label_values(&[result]);
        }
        for result in STATE_LOOKUP_RESULTS {
            event_state_lookups.with_label_values(&[result]);
        }

        Self {
            registry,
            families,
            webhooks,
            auth_failures,
            request_duration,
            inflight,
            body_reads_in_progress,
            sink_write_duration,
            sink_write_failures,
            dead_letters,
            unknown_descriptions,
            events_published,
            publish_failures,
            publish_duration,
            sink_up,
            vizion_api_requests,
            poll_updates,
            poll_runs,
            unsubscriptions,
            dedup_breaker_state,
            dedup_breaker_transitions,
            config_reloads,
            event_state_lookups,
            event_state_evictions,
            event_state_conflicts,
            event_state_commit_failures,
            spool,
        }
    }

    /// The Prometheus text exposition of every metric. A labelled family without any
    /// series yet (e.g. `sink_up` before a sink reported) is listed by its `# HELP` and
    /// `# TYPE` lines alone, so that every name the bridge exports can be seen.
    pub fn render(&self) -> String {
        let gathered = self.registry.gather();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&gathered, &mut out)
            .expect("text encoding to memory cannot fail");
        let mut text = String::from_utf8(out).expect("the text format is UTF-8");
        for family in &self.families {
            if !gathered.iter().any(|g| g.name() == family.name) {
                text.push_str(&family.header());
            }
        }
        text
    }
}

/// What the text format says of a family before its samples.
#[derive(Clone)]
struct FamilyMetadata {
    name: String,
    help: String,
    kind: &'static str,
}

impl FamilyMetadata {
    fn of(family: &prometheus::proto::MetricFamily) -> Self {
        use prometheus::proto::MetricType;
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "untyped",
        };
        Self {
            name: family.name().to_owned(),
            help: family.help().to_owned(),
            kind,
        }
    }

    fn header(&self) -> String {
        // Escaping as the text format requires for HELP: backslash and line feed.
        let help = self.help.replace('\\', "\\\\").replace('\n', "\\n");
        format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n",
            name = self.name,
            kind = self.kind
        )
    }
}

/// The local spool (`[spool]`): its size, its backlog and its forwarding.
#[derive(Clone)]
pub(super) struct SpoolMetrics {
    pub(super) bytes: IntGauge,
    pub(super) entries: IntGauge,
    pub(super) oldest_entry_age_seconds: Gauge,
    pub(super) forwarded: IntCounter,
    pub(super) forward_failures: IntCounterVec,
    pub(super) recovered_entries: IntCounter,
    pub(super) torn_tails: IntCounter,
    pub(super) undecodable: IntCounter,
    pub(super) quarantined: IntCounterVec,
}

impl SpoolMetrics {
    fn register(r: &mut Registrar<'_>) -> Self {
        Self {
            bytes: r.gauge(
                "vizion_bridge_spool_bytes",
                "Bytes of spool segments on disk.",
            ),
            entries: r.gauge(
                "vizion_bridge_spool_entries",
                "Spooled records not yet confirmed by every sink.",
            ),
            oldest_entry_age_seconds: r.float_gauge(
                "vizion_bridge_spool_oldest_entry_age_seconds",
                "Age of the oldest spooled record not yet forwarded; 0 when none.",
            ),
            forwarded: r.counter(
                "vizion_bridge_spool_forwarded_total",
                "Spooled records confirmed by every sink and released.",
            ),
            forward_failures: r.counter_vec(
                "vizion_bridge_spool_forward_failures_total",
                "Failed attempts to forward a spooled record, by sink; each is retried unless the record is quarantined.",
                &["sink"],
            ),
            recovered_entries: r.counter(
                "vizion_bridge_spool_recovered_entries_total",
                "Records found in the spool at start-up, still to forward.",
            ),
            torn_tails: r.counter(
                "vizion_bridge_spool_torn_tails_total",
                "Incomplete records cut from the end of a spool segment at start-up.",
            ),
            undecodable: r.counter(
                "vizion_bridge_spool_undecodable_total",
                "Spooled records that could not be decoded, kept under undecodable/ in the spool directory and skipped.",
            ),
            quarantined: r.counter_vec(
                "vizion_bridge_spool_quarantined_total",
                "Spooled records a sink refused for good (or past spool.max_attempts), kept under quarantine/ in the spool directory, by sink and reason.",
                &["sink", "reason"],
            ),
        }
    }
}

/// Makes each metric and registers it at once, noting its families, so that `/metrics`
/// lists each of them even before its first series.
struct Registrar<'a> {
    registry: &'a Registry,
    families: &'a mut Vec<FamilyMetadata>,
}

impl Registrar<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&mut self, collector: C) -> C {
        self.families
            .extend(collector.collect().iter().map(FamilyMetadata::of));
        self.registry
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        collector
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn float_gauge(&mut self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help).expect("valid metric"))
    }

    fn latency_histogram(&mut self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_without_series_are_listed_by_name_and_type() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert!(
            !text.contains("vizion_bridge_sink_up{"),
            "no sink reported yet"
        );
        assert!(
            text.contains("# TYPE vizion_bridge_sink_up gauge\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE vizion_bridge_publish_duration_seconds histogram\n"));

        metrics.sink_up.with_label_values(&["file"]).set(1);
        let text = metrics.render();
        assert!(
            text.contains("vizion_bridge_sink_up{sink=\"file\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE vizion_bridge_sink_up gauge").count(),
            1,
            "{text}"
        );
    }
}
