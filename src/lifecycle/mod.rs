//! Auto-unsubscription: when an update shows a journey complete (an actual empty
//! return after the arrival at destination), the bridge unsubscribes the reference from
//! Vizion once, records that it did (so that neither a resend nor another replica does
//! it again), and tells consumers with a `reference.unsubscribed` event.

mod record;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::task::JoinSet;

pub use self::record::{Claimed, UnsubscribeRecord, UNSUBSCRIBED_FILE};
use crate::delivery::{CompletedJourney, Delivery, OnComplete};
use crate::events::{self, EventContext, Unsubscription};
use crate::sinks::{Receipt, Record};
use crate::telemetry::Metrics;
use crate::vizion::api::VizionApi;

/// The `kind` of the event in the sinks (RabbitMQ routing key `pass_through.<kind>`).
pub const UNSUBSCRIBED_KIND: &str = "reference_unsubscribed";
/// Attempts at writing the event while the sinks fail.
const EVENT_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Unsubscribe references whose journey is complete (needs `[vizion_api]`).
    pub auto_unsubscribe: bool,
}

/// Unsubscribes completed journeys in the background.
pub struct AutoUnsubscribe {
    api: VizionApi,
    delivery: Arc<Delivery>,
    events: EventContext,
    record: UnsubscribeRecord,
    metrics: Metrics,
    tasks: Mutex<JoinSet<()>>,
    /// The runtime that runs unsubscriptions: the one that built this, which outlives
    /// the HTTP workers that see the completed journeys.
    runtime: tokio::runtime::Handle,
}

impl AutoUnsubscribe {
    /// Call from within the runtime that should run the unsubscriptions.
    pub fn new(
        api: VizionApi,
        delivery: Arc<Delivery>,
        events: EventContext,
        record: UnsubscribeRecord,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            api,
            delivery,
            events,
            record,
            metrics,
            tasks: Mutex::new(JoinSet::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// The hook for [`crate::delivery::Intake::on_complete`]: it starts the
    /// unsubscription without holding up the answer to the update.
    pub fn hook(self: &Arc<Self>) -> OnComplete {
        let this = Arc::downgrade(self);
        Arc::new(move |journey| {
            let Some(this) = this.upgrade() else { return };
            let runner = this.clone();
            let mut tasks = this.tasks.lock().expect("task lock poisoned");
            // Reap what has finished, so the set stays small.
            while tasks.try_join_next().is_some() {}
            tasks.spawn_on(
                async move { runner.unsubscribe(journey).await },
                &this.runtime,
            );
        })
    }

    /// Waits up to `within` for unsubscriptions in progress (at shutdown).
    pub async fn finish(&self, within: Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("task lock poisoned"));
        let drained =
            tokio::time::timeout(within, async { while tasks.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            tracing::warn!("unsubscriptions still running at shutdown were stopped");
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
                tracing::info!(
                    reference_id,
                    "journey complete; Vizion no longer has the reference"
                );
                self.finish_record(reference_id).await;
                self.count("already_gone");
                return;
            }
            Err(e) => {
                tracing::error!(reference_id, error = %e, "cannot unsubscribe a completed journey; a later update tries again");
                if let Err(e) = self.record.release(reference_id).await {
                    tracing::warn!(reference_id, error = %e, "cannot release an unsubscription claim");
                }
                self.count("failed");
                return;
            }
        };
        self.finish_record(reference_id).await;
        self.count("unsubscribed");
        tracing::info!(
            reference_id,
            update_id = %journey.update_id,
            "journey complete; reference unsubscribed"
        );
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
        self.publish(&event).await;
    }

    async fn finish_record(&self, reference_id: &str) {
        if let Err(e) = self.record.finish(reference_id).await {
            tracing::warn!(reference_id, error = %e, "cannot record a finished unsubscription");
        }
    }

    /// Writes the event to the sinks, retrying for a while if they fail.
    async fn publish(&self, event: &events::CloudEvent) {
        let receipt = Receipt {
            request_id: format!("unsubscribe-{}", uuid::Uuid::new_v4()),
            received_at: OffsetDateTime::now_utc(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            key_id: None,
            traceparent: None,
        };
        let key = format!("unsubscribed:{}", event.id());
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=EVENT_ATTEMPTS {
            let record = Record::BridgeEvent {
                event,
                kind: UNSUBSCRIBED_KIND,
                receipt: &receipt,
            };
            match self.delivery.begin(Some(&key)).await.write(&record).await {
                Ok(_) => return,
                Err(e) if attempt < EVENT_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "cannot write the unsubscription event yet");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, event_id = event.id(), "the unsubscription event was not written");
                }
            }
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .unsubscriptions
            .with_label_values(&[outcome])
            .inc();
    }
}
