//! The one path every authentic body takes, whether Vizion posted it (webhook) or the
//! bridge fetched it (poll), and the path of the events the bridge produces itself:
//! parse, normalize, deduplicate, make durable, and keep what cannot be used as a dead
//! letter.

mod changes;

use std::sync::Arc;

use bytes::Bytes;
use time::OffsetDateTime;

pub use self::changes::Publishing;
use crate::delivery::{self, DedupUse, Delivery, DeliveryError};
use crate::events::{
    self, BridgeEventKind, CloudEvent, Content, DeliveryKind, Envelope, EventContext, Provenance,
};
use crate::telemetry::events::{DeadLetterFound, DeadLettered, UnknownDescriptions};
use crate::telemetry::Metrics;
use crate::vizion::{self, Inbound};

/// A journey the bridge has just seen completed, for auto-unsubscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedJourney {
    pub reference_id: String,
    pub container_id: Option<String>,
    pub carrier_scac: Option<String>,
    pub update_id: String,
}

/// Called with every newly written update that shows its journey complete.
pub type OnComplete = Arc<dyn Fn(CompletedJourney) + Send + Sync>;

/// One authentic body as it arrived, for [`Pipeline::take`].
#[derive(Debug, Clone)]
pub struct Arrival {
    pub body: Bytes,
    /// Webhook, poll or replay; it also gives the events' `deliverymode`.
    pub provenance: Provenance,
    pub received_at: OffsetDateTime,
}

/// What became of a body, or of an event of the bridge's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Made durable (by every sink, or in the spool).
    Accepted { id: Option<String> },
    /// Written before: not written again. `reason` is set for a repeated dead letter.
    Duplicate {
        id: Option<String>,
        reason: Option<&'static str>,
    },
    /// Authentic but unusable: kept as a dead letter with this reason.
    DeadLettered { reason: &'static str, id: String },
}

impl Outcome {
    /// The `outcome` label of metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::DeadLettered { .. } => "dead_lettered",
        }
    }
}

/// Shared by the webhook route, the poller and the auto-unsubscription. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    delivery: Arc<Delivery>,
    events: EventContext,
    metrics: Metrics,
    on_complete: Option<OnComplete>,
    publishing: Publishing,
}

impl Pipeline {
    pub fn new(delivery: Arc<Delivery>, events: EventContext, metrics: Metrics) -> Self {
        Self {
            delivery,
            events,
            metrics,
            on_complete: None,
            publishing: Publishing::default(),
        }
    }

    /// Publishes updates as `publishing` says (else with every milestone event and
    /// the raw body).
    pub fn publishing(mut self, publishing: Publishing) -> Self {
        self.publishing = publishing;
        self
    }

    /// How updates are published.
    pub fn publishing_in_force(&self) -> &Publishing {
        &self.publishing
    }

    /// Calls `hook` for every newly written update that completes a journey.
    pub fn on_complete(mut self, hook: OnComplete) -> Self {
        self.on_complete = Some(hook);
        self
    }

    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    pub fn events(&self) -> &EventContext {
        &self.events
    }

    /// Takes one authentic body. An error means nothing was acknowledged: the sender
    /// (or the next poll) must try again.
    pub async fn take(&self, arrival: Arrival) -> Result<Outcome, DeliveryError> {
        self.take_with(arrival, DedupUse::Check).await
    }

    /// [`Pipeline::take`], where `dedup` may bypass deduplication (a deliberate
    /// re-publish: the body is written again even if it was written before).
    pub async fn take_with(
        &self,
        arrival: Arrival,
        dedup: DedupUse,
    ) -> Result<Outcome, DeliveryError> {
        match vizion::parse(&arrival.body) {
            Ok(inbound) => self.take_inbound(&inbound, arrival, dedup).await,
            Err(dead) => self.take_dead_letter(&dead, arrival, dedup).await,
        }
    }

    async fn take_inbound(
        &self,
        inbound: &Inbound,
        arrival: Arrival,
        dedup: DedupUse,
    ) -> Result<Outcome, DeliveryError> {
        let id = inbound.dedup_key();
        if let Some(id) = id {
            tracing::Span::current().record("update_id", id);
        }
        let attempt = self.delivery.begin_with(id, dedup).await;
        if attempt.is_duplicate() {
            return Ok(Outcome::Duplicate {
                id: id.map(str::to_owned),
                reason: None,
            });
        }
        let Arrival {
            body,
            provenance,
            received_at,
        } = arrival;
        let mode = provenance
            .arrival()
            .unwrap_or(events::DeliveryMode::Webhook);
        let mut batch = events::normalize(inbound, &body, received_at, mode, &self.events);
        let unknown = batch.unknown_descriptions();
        let update = match inbound {
            Inbound::Update(update) => Some(update),
            _ => None,
        };
        let prepared = self
            .publishing
            .prepare(update, &mut batch, received_at, mode, &self.events)
            .await?;
        let envelope = Envelope::new(
            Content::Updates {
                batch: Box::new(batch),
                kind: DeliveryKind::of(inbound),
                delivery_id: id.map(str::to_owned),
                publish: prepared.publish.clone(),
            },
            provenance,
            received_at,
        );
        attempt.write(&envelope).await?;
        prepared.commit().await;
        self.metrics.emit(UnknownDescriptions { count: unknown });
        let batch = envelope.batch().expect("an update envelope holds a batch");
        if let (Inbound::Update(update), Some(hook)) = (inbound, &self.on_complete) {
            if batch.journey_complete() {
                hook(CompletedJourney {
                    reference_id: update.reference_id.clone(),
                    container_id: batch.keys().container_id.clone(),
                    carrier_scac: batch.keys().carrier_scac.clone(),
                    update_id: update.id.clone(),
                });
            }
        }
        Ok(Outcome::Accepted {
            id: id.map(str::to_owned),
        })
    }

    async fn take_dead_letter(
        &self,
        dead: &vizion::DeadLetter,
        arrival: Arrival,
        dedup: DedupUse,
    ) -> Result<Outcome, DeliveryError> {
        let reason = dead.reason.as_str();
        let key = delivery::dead_letter_key(&arrival.body);
        let attempt = self.delivery.begin_with(Some(&key), dedup).await;
        if attempt.is_duplicate() {
            return Ok(Outcome::Duplicate {
                id: None,
                reason: Some(reason),
            });
        }
        let mode = arrival
            .provenance
            .arrival()
            .unwrap_or(events::DeliveryMode::Webhook);
        let event =
            events::dead_letter_event(dead, &arrival.body, arrival.received_at, mode, &self.events);
        let id = event.id().to_owned();
        tracing::Span::current().record("update_id", id.as_str());
        DeadLetterFound {
            reason,
            detail: &dead.detail,
            dead_letter_id: &id,
            delivery_mode: mode.as_str(),
        }
        .emit();
        let envelope = Envelope::new(
            Content::DeadLetter { event, reason },
            arrival.provenance,
            arrival.received_at,
        );
        attempt.write(&envelope).await?;
        self.metrics.emit(DeadLettered { reason });
        Ok(Outcome::DeadLettered { reason, id })
    }

    /// Makes an event of the bridge's own durable, once per `dedup_key`.
    pub async fn emit(
        &self,
        event: CloudEvent,
        kind: BridgeEventKind,
        dedup_key: &str,
        at: OffsetDateTime,
    ) -> Result<Outcome, DeliveryError> {
        let id = Some(event.id().to_owned());
        let attempt = self.delivery.begin(Some(dedup_key)).await;
        if attempt.is_duplicate() {
            return Ok(Outcome::Duplicate { id, reason: None });
        }
        let envelope = Envelope::new(Content::BridgeEvent { event, kind }, Provenance::Bridge, at);
        attempt.write(&envelope).await?;
        Ok(Outcome::Accepted { id })
    }
}
