//! The HTTP front door: where a webhook came from, how big it is, and the answer it gets.

pub mod body;
mod body_reads;
mod config;
pub mod connection;
mod error;
pub mod routes;
mod shutdown;
mod source;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

pub use self::body_reads::{BodyRead, BodyReads, BodyReadsFull};
pub use self::config::{ServerConfig, ANSWER_MARGIN};
pub use self::error::IngestError;
pub use self::shutdown::ShutdownState;
pub use self::source::{ForwardedHeader, SourcePolicy};
use crate::auth::{AuthConfig, Authenticator, KeyRing};
use crate::delivery::Delivery;
use crate::pipeline::Pipeline;
use crate::telemetry::Metrics;

/// Vizion's published sending address.
pub const VIZION_SOURCE: &str = "54.164.144.86/32";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Path that receives Vizion's POSTs.
    pub path: String,
    /// Client networks allowed to send webhooks (IPv4 and IPv6 CIDRs).
    #[serde(deserialize_with = "source::canonical_networks")]
    pub allowed_sources: Vec<IpNet>,
    /// Proxies whose forwarding header is believed.
    #[serde(deserialize_with = "source::canonical_networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// The one header the trusted proxies write; the other is never read, since a
    /// proxy passes through whatever the client sent in it.
    pub forwarded_header: ForwardedHeader,
    /// Largest body accepted; larger ones get 413 without being read to the end.
    pub max_body_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            path: "/webhooks/vizion".into(),
            allowed_sources: vec![VIZION_SOURCE.parse().expect("valid CIDR")],
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// What a reload of the configuration may change while the service runs: who may
/// send, and how a webhook proves it is authentic. A request reads it once, so that it
/// is judged by one whole configuration, the old or the new, never by a mix of both.
pub struct LiveConfig {
    pub sources: SourcePolicy,
    pub auth: Authenticator,
}

impl LiveConfig {
    pub fn new(ingest: &IngestConfig, auth: AuthConfig, keys: KeyRing) -> Self {
        Self {
            sources: SourcePolicy::new(
                ingest.allowed_sources.clone(),
                ingest.trusted_proxies.clone(),
                ingest.forwarded_header,
            ),
            auth: Authenticator::new(auth, keys),
        }
    }
}

/// Everything a webhook request needs, shared by all workers.
pub struct IngestState {
    /// Swapped whole by a reload of the configuration.
    pub live: ArcSwap<LiveConfig>,
    pub delivery: Arc<Delivery>,
    /// Parses, normalizes and delivers authentic bodies (shared with the poller).
    pub pipeline: Pipeline,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub retry_after: Duration,
    /// Bounds the requests still sending their body, in all and per client; beyond it
    /// the answer is 503.
    pub body_reads: Arc<BodyReads>,
    /// Bounds the webhooks handled at once once their body is in; beyond it the answer
    /// is 503.
    pub inflight: Arc<Semaphore>,
    /// Where the shutdown is: `/readyz` turns away new traffic once it begins, and
    /// webhooks in flight are answered before the connections close.
    pub shutdown: ShutdownState,
}
