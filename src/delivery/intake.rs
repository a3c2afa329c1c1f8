//! The one path every authentic body takes, whether Vizion posted it (webhook) or the
//! bridge fetched it (poll): parse, normalize, deduplicate on the update id, write to
//! every sink, and keep what cannot be used as a dead letter.

use std::sync::Arc;

use crate::delivery::{self, Delivery, DeliveryError};
use crate::events::{self, DeliveryMode, EventContext};
use crate::sinks::{Receipt, Record};
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

/// What became of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Written durably by every sink.
    Accepted { id: Option<String> },
    /// Written before: not written again. `reason` is set for a repeated dead letter.
    Duplicate {
        id: Option<String>,
        reason: Option<&'static str>,
    },
    /// Authentic but unusable: kept as a dead letter with this reason.
    DeadLettered { reason: &'static str, id: String },
}

impl Taken {
    /// The `outcome` label of metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Taken::Accepted { .. } => "accepted",
            Taken::Duplicate { .. } => "duplicate",
            Taken::DeadLettered { .. } => "dead_lettered",
        }
    }
}

/// Shared by the webhook route and the poller. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    delivery: Arc<Delivery>,
    events: EventContext,
    metrics: Metrics,
    on_complete: Option<OnComplete>,
}

impl Intake {
    pub fn new(delivery: Arc<Delivery>, events: EventContext, metrics: Metrics) -> Self {
        Self {
            delivery,
            events,
            metrics,
            on_complete: None,
        }
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
    pub async fn take(
        &self,
        body: &[u8],
        receipt: &Receipt,
        mode: DeliveryMode,
    ) -> Result<Taken, DeliveryError> {
        match vizion::parse(body) {
            Ok(inbound) => self.take_inbound(&inbound, body, receipt, mode).await,
            Err(dead) => self.take_dead_letter(&dead, body, receipt, mode).await,
        }
    }

    async fn take_inbound(
        &self,
        inbound: &Inbound,
        body: &[u8],
        receipt: &Receipt,
        mode: DeliveryMode,
    ) -> Result<Taken, DeliveryError> {
        let id = inbound.dedup_key();
        if let Some(id) = id {
            tracing::Span::current().record("update_id", id);
        }
        let attempt = self.delivery.begin(id).await;
        if attempt.is_duplicate() {
            return Ok(Taken::Duplicate {
                id: id.map(str::to_owned),
                reason: None,
            });
        }
        let mut batch = events::normalize(inbound, body, receipt.received_at, &self.events);
        batch.set_delivery_mode(mode);
        let record = Record::Events {
            batch: &batch,
            kind: inbound.kind(),
            delivery_id: id,
            receipt,
        };
        attempt.write(&record).await?;
        self.metrics
            .unknown_descriptions
            .inc_by(batch.unknown_descriptions() as u64);
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
        Ok(Taken::Accepted {
            id: id.map(str::to_owned),
        })
    }

    async fn take_dead_letter(
        &self,
        dead: &vizion::DeadLetter,
        body: &[u8],
        receipt: &Receipt,
        mode: DeliveryMode,
    ) -> Result<Taken, DeliveryError> {
        let reason = dead.reason.as_str();
        let key = delivery::dead_letter_key(body);
        let attempt = self.delivery.begin(Some(&key)).await;
        if attempt.is_duplicate() {
            return Ok(Taken::Duplicate {
                id: None,
                reason: Some(reason),
            });
        }
        let mut event = events::dead_letter_event(dead, body, receipt.received_at, &self.events);
        event.set_delivery_mode(mode);
        tracing::Span::current().record("update_id", event.id());
        tracing::warn!(
            reason,
            detail = %dead.detail,
            dead_letter_id = event.id(),
            delivery_mode = mode.as_str(),
            "authentic body is not a usable delivery; keeping it as a dead letter"
        );
        let record = Record::DeadLetter {
            event: &event,
            reason,
            receipt,
        };
        attempt.write(&record).await?;
        self.metrics.dead_letters.with_label_values(&[reason]).inc();
        Ok(Taken::DeadLettered {
            reason,
            id: event.id().to_owned(),
        })
    }
}
