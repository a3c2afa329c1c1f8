//! Auto-unsubscription: when an update shows a journey complete (an actual empty
//! return after the arrival at destination), the bridge unsubscribes the reference from
//! Vizion once, records that it did (so that neither a resend nor another replica does
//! it again), and tells consumers with a `reference.unsubscribed` event.

mod unsubscribed;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::unsubscribed::{Claimed, UnsubscribedSet, UNSUBSCRIBED_FILE};
use crate::events::{self, BridgeEventKind, EventContext, Unsubscription};
use crate::pipeline::{CompletedJourney, OnComplete, Pipeline};
use crate::retry::RetryPolicy;
use crate::telemetry::events::{UnsubscribeAlreadyGone, UnsubscribeFailed, Unsubscribed};
use crate::telemetry::Metrics;
use crate::vizion::api::VizionApi;

/// The `kind` of the event in the sinks (RabbitMQ routing key `pass_through.<kind>`).
pub const UNSUBSCRIBED_KIND: &str = "reference_unsubscribed";
/// Writing the event while the sinks fail: five attempts, a second apart at first.
const EVENT_RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(8),
    max_attempts: Some(5),
};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Unsubscribe references whose journey is complete (needs `[vizion_api]`).
    pub auto_unsubscribe: bool,
}

/// Unsubscribes completed journeys in the background.
pub struct AutoUnsubscribe {
    api: VizionApi,
    pipeline: Pipeline,
    events: EventContext,
    record: UnsubscribedSet,
    metrics: Metrics,
    tasks: TaskTracker,
    /// Stops unsubscriptions still running, at shutdown.
    cancel: CancellationToken,
    /// The runtime that runs unsubscriptions: the one that built this, which outlives
    /// the HTTP workers that see the completed journeys.
    runtime: tokio::runtime::Handle,
}

impl AutoUnsubscribe {
    /// Call from within the runtime that should run the unsubscriptions. They run on
    /// `tasks` and stop when `cancel` fires; the event goes through `pipeline`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: VizionApi,
        pipeline: Pipeline,
        events: EventContext,
        record: UnsubscribedSet,
        metrics: Metrics,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Self {
            api,
            pipeline,
            events,
            record,
            metrics,
            tasks,
            cancel,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// The hook for [`crate::pipeline::Pipeline::on_complete`]: it starts the
    /// unsubscription without holding up the answer to the update.
    pub fn hook(self: &Arc<Self>) -> OnComplete {
        let this = Arc::downgrade(self);
        Arc::new(move |journey| {
            let Some(this) = this.upgrade() else { return };
            let runner = this.clone();
            this.tasks.spawn_on(
                async move {
                    tokio::select! {
                        _ = runner.cancel.cancelled() => {}
                        _ = runner.unsubscribe(journey) => {}
                    }
                },
                &this.runtime,
            );
        })
    }

    /// Waits up to `within` for unsubscriptions in progress (at shutdown), then stops
    /// those still running.
    pub async fn finish(&self, within: Duration) {
        self.tasks.close();
        if tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("unsubscriptions still running at shutdown were stopped");
            self.cancel.cancel();
            self.tasks.wait().await;
        }
    }

    async fn unsubscribe(&self, journey: CompletedJourney) {
        let reference_id = journey.reference_id.as_str();
        match self.record.claim(reference_id).await {
            Ok(Claimed::Mine) => {}
            Ok(Claimed::Done | Claimed::Elsewhere) => return,
            Err(e) => {
                tracing::warn!(reference_id, error = %e, "cannot record an unsubscription; not unsubscribing now");
                return;
            }
        }
        let message = match self.api.unsubscribe(reference_id).await {
            Ok(answer) => answer.message,
            // A 404 to a retry of ours is a success, told by the client; this one
            // answered the first attempt: someone else removed the reference.
            Err(e) if e.status() == Some(404) => {
                self.metrics.emit(UnsubscribeAlreadyGone { reference_id });
                self.finish_record(reference_id).await;
                return;
            }
            Err(error) => {
                self.metrics.emit(UnsubscribeFailed {
                    reference_id,
                    error: &error,
                });
                if let Err(e) = self.record.release(reference_id).await {
                    tracing::warn!(reference_id, error = %e, "cannot release an unsubscription claim");
                }
                return;
            }
        };
        self.finish_record(reference_id).await;
        self.metrics.emit(Unsubscribed {
            reference_id,
            update_id: &journey.update_id,
        });
        let event = events::reference_unsubscribed_event(
            &Unsubscription {
                reference_id,
                container_id: journey.container_id.as_deref(),
                carrier_scac: journey.carrier_scac.as_deref(),
                update_id: &journey.update_id,
                reason: "journey_complete",
                vizion_message: message.as_deref(),
            },
            OffsetDateTime::now_utc(),
            &self.events,
        );
        self.publish(event).await;
    }

    async fn finish_record(&self, reference_id: &str) {
        if let Err(e) = self.record.finish(reference_id).await {
            tracing::warn!(reference_id, error = %e, "cannot record a finished unsubscription");
        }
    }

    /// Writes the event through the pipeline, retrying for a while if the sinks fail.
    async fn publish(&self, event: events::CloudEvent) {
        let key = format!("unsubscribed:{}", event.id());
        let at = OffsetDateTime::now_utc();
        let mut backoff = EVENT_RETRY.backoff();
        loop {
            let attempt = backoff.attempted();
            let written = self
                .pipeline
                .emit(
                    event.clone(),
                    BridgeEventKind::ReferenceUnsubscribed,
                    &key,
                    at,
                )
                .await;
            match written {
                Ok(_) => return,
                Err(e) if !backoff.exhausted() => {
                    tracing::warn!(error = %e, attempt, "cannot write the unsubscription event yet");
                    if !backoff.wait(&self.cancel).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, event_id = event.id(), "the unsubscription event was not written");
                    return;
                }
            }
        }
    }
}
