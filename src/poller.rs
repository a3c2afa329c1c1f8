//! Polling: fetches references' updates from Vizion's API and takes each one exactly as
//! a webhook would be taken ([`Pipeline`]), so that an update whose webhook failed (or
//! that has no callback URL at all) still reaches the sinks. Duplicates are dropped by
//! the same update-id deduplication as webhooks.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::events::Provenance;
use crate::pipeline::{Arrival, Outcome, Pipeline};
use crate::telemetry::events::{
    PollRun, PollRunFailed, PollRunResult, PolledUpdate, PolledUpdateNotStored, ReferenceUnreadable,
};
use crate::telemetry::Metrics;
use crate::vizion::api::{ApiError, Reference, ReferenceFilter, VizionApi};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// Poll inside `serve` (once at start, then every `interval`).
    pub enabled: bool,
    /// Which active references to poll.
    pub references: PollScope,
    /// Time between the starts of two passes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// References read at the same time.
    pub concurrency: usize,
    /// Most API requests started per second by the poller (Vizion's own limit answers
    /// 429, which pauses every request for its `Retry-After`).
    pub requests_per_second: f64,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            references: PollScope::WithoutCallback,
            interval: Duration::from_secs(60 * 60),
            concurrency: 4,
            requests_per_second: 5.0,
        }
    }
}

impl PollConfig {
    /// What is wrong with these settings, one sentence each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.interval.is_zero() {
            problems.push("`poll.interval` must be above 0".into());
        }
        if self.concurrency == 0 {
            problems.push("`poll.concurrency` must be above 0".into());
        }
        if !(self.requests_per_second > 0.0 && self.requests_per_second.is_finite()) {
            problems.push("`poll.requests_per_second` must be above 0".into());
        }
        problems
    }
}

/// Which active references a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollScope {
    /// Those without a callback URL: Vizion posts them nowhere, so polling is the only way.
    WithoutCallback,
    /// All of them: a reconciliation that recovers webhooks that failed.
    All,
}

impl PollScope {
    fn includes(self, reference: &Reference) -> bool {
        reference.is_active() && (self == PollScope::All || !reference.has_callback())
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PollReport {
    pub references: usize,
    pub updates: usize,
    pub accepted: usize,
    pub duplicates: usize,
    pub dead_lettered: usize,
    /// Updates the sinks could not take; fetched again on the next pass.
    pub unavailable: usize,
    /// References whose updates could not be read.
    pub failed_references: usize,
    /// Updates older than `dedup.ttl`, not taken: their ids may be forgotten already, so
    /// taking them would publish them again on every pass.
    pub older_than_dedup: usize,
}

/// When an update was last changed (`updated_at`, else `created_at`), if it says.
fn update_time(update: &str) -> Option<OffsetDateTime> {
    #[derive(Deserialize)]
    struct Stamps<'a> {
        #[serde(borrow, default)]
        updated_at: Option<&'a str>,
        #[serde(borrow, default)]
        created_at: Option<&'a str>,
    }
    let stamps: Stamps<'_> = serde_json::from_str(update).ok()?;
    let text = stamps.updated_at.or(stamps.created_at)?;
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

impl PollReport {
    pub fn is_complete(&self) -> bool {
        self.unavailable == 0 && self.failed_references == 0
    }

    fn add(&mut self, other: &PollReport) {
        self.updates += other.updates;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.dead_lettered += other.dead_lettered;
        self.unavailable += other.unavailable;
        self.failed_references += other.failed_references;
        self.older_than_dedup += other.older_than_dedup;
    }
}

#[derive(Clone)]
pub struct Poller {
    api: VizionApi,
    pipeline: Pipeline,
    config: PollConfig,
    metrics: Metrics,
    /// Fires on shutdown: a pass stops before its next update.
    halt: Option<CancellationToken>,
}

impl Poller {
    /// `api` should carry the poller's rate limit ([`VizionApi::with_rate_limit`]).
    pub fn new(api: VizionApi, pipeline: Pipeline, config: PollConfig, metrics: Metrics) -> Self {
        Self {
            api,
            pipeline,
            config,
            metrics,
            halt: None,
        }
    }

    fn halted(&self) -> bool {
        self.halt
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// One pass over the references of `poll.references`. Fails only when the list of
    /// references cannot be read.
    pub async fn run_once(&self) -> Result<PollReport, ApiError> {
        let filter = ReferenceFilter::default();
        let references = self.api.list_all_references(&filter, |_| {}).await?;
        let ids: Vec<String> = references
            .into_iter()
            .filter(|r| self.config.references.includes(r))
            .map(|r| r.id)
            .collect();
        Ok(self.poll_references(&ids).await)
    }

    /// One pass over the given references, whatever their state.
    pub async fn poll_references(&self, ids: &[String]) -> PollReport {
        let mut report = PollReport {
            references: ids.len(),
            ..PollReport::default()
        };
        let mut passes = stream::iter(ids.to_vec())
            .map(|id| {
                let poller = self.clone();
                async move { poller.poll_reference(&id).await }
            })
            .buffer_unordered(self.config.concurrency.max(1));
        while let Some(one) = passes.next().await {
            report.add(&one);
        }
        let result = if report.is_complete() {
            PollRunResult::Ok
        } else {
            PollRunResult::Partial
        };
        self.metrics.emit(PollRun {
            result,
            references: report.references,
            updates: report.updates,
            accepted: report.accepted,
            duplicates: report.duplicates,
            unavailable: report.unavailable,
            failed_references: report.failed_references,
            older_than_dedup: report.older_than_dedup,
        });
        report
    }

    async fn poll_reference(&self, reference_id: &str) -> PollReport {
        let mut report = PollReport::default();
        let (updates, peer) = match self.api.list_updates(reference_id).await {
            Ok(found) => found,
            Err(e) => {
                ReferenceUnreadable {
                    reference_id,
                    error: &e,
                }
                .emit();
                report.failed_references = 1;
                return report;
            }
        };
        let peer = peer.map(|p| p.ip());
        let horizon = OffsetDateTime::now_utc() - self.pipeline.delivery().dedup().ttl();
        for update in &updates {
            if self.halted() {
                break;
            }
            report.updates += 1;
            if update_time(update.get()).is_some_and(|at| at < horizon) {
                report.older_than_dedup += 1;
                self.metrics.emit(PolledUpdate {
                    outcome: "older_than_dedup",
                });
                continue;
            }
            let request_id = format!("poll-{}", uuid::Uuid::new_v4());
            let span = tracing::info_span!(
                "poll",
                request_id = %request_id,
                reference_id,
                update_id = tracing::field::Empty,
            );
            let arrival = Arrival {
                body: Bytes::copy_from_slice(update.get().as_bytes()),
                provenance: Provenance::Poll { request_id, peer },
                received_at: OffsetDateTime::now_utc(),
            };
            let taken = self.pipeline.take(arrival).instrument(span).await;
            let outcome = match &taken {
                Ok(Outcome::Accepted { .. }) => {
                    report.accepted += 1;
                    "accepted"
                }
                Ok(Outcome::Duplicate { .. }) => {
                    report.duplicates += 1;
                    "duplicate"
                }
                Ok(Outcome::DeadLettered { .. }) => {
                    report.dead_lettered += 1;
                    "dead_lettered"
                }
                Err(error) => {
                    report.unavailable += 1;
                    self.metrics.emit(PolledUpdateNotStored {
                        reference_id,
                        error,
                    });
                    // The sinks are failing: the rest waits for the next pass.
                    break;
                }
            };
            self.metrics.emit(PolledUpdate { outcome });
        }
        report
    }

    /// Passes at `poll.interval`, the first at once, until `stop` fires.
    pub async fn run(mut self, stop: CancellationToken) {
        self.halt = Some(stop.clone());
        loop {
            match self.run_once().await {
                Ok(_) => {}
                Err(error) => self.metrics.emit(PollRunFailed { error: &error }),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(json: &str) -> Reference {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_scope_picks_active_references() {
        let with = reference(r#"{"id":"a","callback_url":"https://x/webhooks/vizion"}"#);
        let without = reference(r#"{"id":"b","callback_url":null}"#);
        let inactive = reference(r#"{"id":"c","active":false}"#);
        assert!(!PollScope::WithoutCallback.includes(&with));
        assert!(PollScope::WithoutCallback.includes(&without));
        assert!(PollScope::All.includes(&with));
        assert!(!PollScope::All.includes(&inactive));
    }

    #[test]
    fn an_update_is_dated_by_updated_at_else_created_at() {
        let both = r#"{"id":"u","created_at":"2021-07-31T21:34:09.003Z","updated_at":"2021-08-01T00:00:00Z"}"#;
        let created = r#"{"id":"u","created_at":"2021-07-31T21:34:09.003Z","payload":{}}"#;
        assert_eq!(
            update_time(both).map(|t| t.unix_timestamp()),
            Some(1_627_776_000)
        );
        assert_eq!(
            update_time(created).map(|t| t.unix_timestamp()),
            Some(1_627_767_249)
        );
        assert!(update_time(r#"{"id":"u","updated_at":"yesterday"}"#).is_none());
        assert!(update_time("not json").is_none());
    }
}
