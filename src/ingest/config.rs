//! The `[server]` and `[ingest]` sections: the webhook listener and what it accepts.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::IngestConfig;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the webhook listener.
    pub listen: SocketAddr,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Webhooks handled at once once their body is in; beyond it the answer is 503
    /// with `Retry-After`.
    pub max_inflight: usize,
    /// Requests still sending their body, in all; beyond it the answer is 503 with
    /// `Retry-After` before the body is read.
    pub max_body_reads: usize,
    /// Of those, how many one client address (an IPv6 client: its /64) may hold.
    pub max_body_reads_per_client: usize,
    /// Time a client has to send the request line and headers.
    #[serde(with = "humantime_serde")]
    pub client_request_timeout: Duration,
    /// Time a client has to send the whole body once the headers are in.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// On SIGTERM or SIGINT: how long `/readyz` answers 503 while webhooks are still
    /// taken, so that load balancers stop sending first.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// Then how long webhooks in flight may take: new ones are answered 503, and one
    /// still running near the end is answered 503 before the connections close.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Value of `Retry-After` on 503 answers.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            workers: 0,
            max_inflight: 512,
            max_body_reads: 256,
            max_body_reads_per_client: 64,
            client_request_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(75),
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(25),
            retry_after: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// What is wrong with these settings, one sentence each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_inflight == 0 {
            problems.push("`server.max_inflight` must be above 0".into());
        }
        if self.max_body_reads == 0 {
            problems.push("`server.max_body_reads` must be above 0".into());
        }
        if self.max_body_reads_per_client == 0
            || self.max_body_reads_per_client > self.max_body_reads
        {
            problems.push(
                "`server.max_body_reads_per_client` must be above 0 and at most \
                 `server.max_body_reads`"
                    .into(),
            );
        }
        if self.shutdown_timeout < Duration::from_secs(1) {
            problems.push("`server.shutdown_timeout` must be at least 1s".into());
        }
        problems
    }

    /// When, after the drain begins, a webhook still in flight is answered 503: a
    /// margin before `shutdown_timeout` leaves time to write the answer.
    pub fn answer_window(&self) -> Duration {
        self.shutdown_timeout
            .saturating_sub(ANSWER_MARGIN)
            .max(self.shutdown_timeout / 2)
    }
}

/// Kept at the end of `shutdown_timeout` to write the last answers.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

impl IngestConfig {
    /// What is wrong with these settings, one sentence each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.allowed_sources.is_empty() {
            problems.push(
                "`ingest.allowed_sources` is empty: list the sender's addresses, or write out \
                 \"0.0.0.0/0\" and \"::/0\" to allow every address"
                    .into(),
            );
        }
        if !self.path.starts_with('/') {
            problems.push("`ingest.path` must start with `/`".into());
        }
        if self.max_body_bytes == 0 {
            problems.push("`ingest.max_body_bytes` must be above 0".into());
        }
        problems
    }

    /// Whether the source check admits every address (and so is off).
    pub fn admits_every_source(&self) -> bool {
        self.allowed_sources.iter().any(|net| net.prefix_len() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_share_of_body_reads_beyond_the_total_is_refused() {
        let config = ServerConfig {
            max_body_reads: 8,
            max_body_reads_per_client: 9,
            ..ServerConfig::default()
        };
        let problems = config.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("max_body_reads_per_client"));
        assert!(ServerConfig::default().validate().is_empty());
    }

    #[test]
    fn webhooks_in_flight_are_answered_before_the_shutdown_timeout() {
        let with_timeout = |secs| ServerConfig {
            shutdown_timeout: Duration::from_secs(secs),
            ..ServerConfig::default()
        };
        assert_eq!(with_timeout(25).answer_window(), Duration::from_secs(24));
        assert_eq!(with_timeout(1).answer_window(), Duration::from_millis(500));
    }
}
