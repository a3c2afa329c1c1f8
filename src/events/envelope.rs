//! What one accepted body (or one event of the bridge's own) becomes on its way to the
//! sinks: its content, where it came from and when. It owns everything it refers to,
//! so that the spool can store it and give back the very same thing.

pub mod codec;

use std::net::IpAddr;

use time::OffsetDateTime;

use super::{CloudEvent, DeliveryMode, MilestoneCode, NormalizedBatch};

/// The kind of Vizion delivery an update batch was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    Update,
    ExceptionAlert,
    ReferenceEvent,
}

impl DeliveryKind {
    pub const ALL: [DeliveryKind; 3] = [
        DeliveryKind::Update,
        DeliveryKind::ExceptionAlert,
        DeliveryKind::ReferenceEvent,
    ];

    /// The name consumers see (`vizion_delivery_kind` header, RabbitMQ routing keys).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Update => "update",
            DeliveryKind::ExceptionAlert => "exception_alert",
            DeliveryKind::ReferenceEvent => "reference_event",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn of(inbound: &crate::vizion::Inbound) -> Self {
        match inbound {
            crate::vizion::Inbound::Update(_) => DeliveryKind::Update,
            crate::vizion::Inbound::ExceptionAlert(_) => DeliveryKind::ExceptionAlert,
            crate::vizion::Inbound::ReferenceEvent(_) => DeliveryKind::ReferenceEvent,
        }
    }
}

/// The kind of an event the bridge produces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BridgeEventKind {
    /// `reference.unsubscribed`: the bridge unsubscribed a completed journey.
    ReferenceUnsubscribed,
}

impl BridgeEventKind {
    pub const ALL: [BridgeEventKind; 1] = [BridgeEventKind::ReferenceUnsubscribed];

    /// The name consumers see (RabbitMQ routing key `pass_through.<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeEventKind::ReferenceUnsubscribed => "reference_unsubscribed",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Which of an update's events reach the sinks. The default is what every update was
/// published with before change events existed, and what older spool records read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub milestones: MilestoneEvents,
    /// Whether the brokers get the body as received (the file sink keeps it anyway).
    pub raw: bool,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            milestones: MilestoneEvents::Snapshots,
            raw: true,
        }
    }
}

/// The milestone events published with an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilestoneEvents {
    /// The batch's milestone events, one per milestone.
    Snapshots,
    /// These change events in their place (none: no milestone event at all).
    Changes(Vec<ChangeEvent>),
}

/// A change event, with the code of the milestone it is about (its routing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub event: CloudEvent,
    pub milestone: Option<MilestoneCode>,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A recognised delivery: its normalized events and the body as received.
    Updates {
        batch: Box<NormalizedBatch>,
        kind: DeliveryKind,
        /// Vizion's id of the delivery, when it has one.
        delivery_id: Option<String>,
        /// Which of its events are published.
        publish: Publish,
    },
    /// An authentic body that could not be used, kept whole in its dead-letter event.
    DeadLetter {
        event: CloudEvent,
        /// Why it could not be used (`vizion::DeadLetterReason::as_str`).
        reason: &'static str,
    },
    /// An event the bridge produces itself, written with the passed-through events.
    BridgeEvent {
        event: CloudEvent,
        kind: BridgeEventKind,
    },
}

/// Where an envelope came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Vizion posted it to the callback URL.
    Webhook {
        request_id: String,
        client_ip: IpAddr,
        /// Id of the secret that verified the webhook, when it has one.
        key_id: Option<String>,
        /// The sender's W3C `traceparent`, passed on with every message so that
        /// consumers can join the trace.
        traceparent: Option<String>,
    },
    /// The bridge fetched it from Vizion's API.
    Poll {
        request_id: String,
        /// The address Vizion's API answered from, when the client saw it.
        peer: Option<IpAddr>,
    },
    /// `vizion-bridge replay` read it back from a file the bridge wrote earlier.
    Replay {
        /// The request id it was first received with, when the file kept it; else one
        /// made for the replay.
        request_id: String,
    },
    /// The bridge produced it itself.
    Bridge,
}

impl Provenance {
    /// How the content reached the bridge: the CloudEvents `deliverymode` attribute. An
    /// event of the bridge's own did not arrive at all.
    pub fn arrival(&self) -> Option<DeliveryMode> {
        match self {
            Provenance::Webhook { .. } => Some(DeliveryMode::Webhook),
            Provenance::Poll { .. } => Some(DeliveryMode::Poll),
            Provenance::Replay { .. } => Some(DeliveryMode::Replay),
            Provenance::Bridge => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Provenance::Webhook { request_id, .. }
            | Provenance::Poll { request_id, .. }
            | Provenance::Replay { request_id } => Some(request_id),
            Provenance::Bridge => None,
        }
    }

    pub fn traceparent(&self) -> Option<&str> {
        match self {
            Provenance::Webhook { traceparent, .. } => traceparent.as_deref(),
            _ => None,
        }
    }
}

/// One unit of durable work: every sink takes it whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    content: Content,
    provenance: Provenance,
    received_at: OffsetDateTime,
}

impl Envelope {
    pub fn new(content: Content, provenance: Provenance, received_at: OffsetDateTime) -> Self {
        Self {
            content,
            provenance,
            received_at,
        }
    }

    pub fn content(&self) -> &Content {
        &self.content
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// When the bridge received (or produced) it; brokers stamp messages with it.
    pub fn received_at(&self) -> OffsetDateTime {
        self.received_at
    }

    /// How it arrived (`deliverymode`); none for an event of the bridge's own.
    pub fn arrival(&self) -> Option<DeliveryMode> {
        self.provenance.arrival()
    }

    /// The batch of an update envelope.
    pub fn batch(&self) -> Option<&NormalizedBatch> {
        match &self.content {
            Content::Updates { batch, .. } => Some(batch),
            _ => None,
        }
    }

    /// The events the sinks publish, in order: for an update, its tracking update, then
    /// its milestone events or the change events in their place, then the passed-through
    /// event; else the one event the envelope holds.
    pub fn events(&self) -> Box<dyn Iterator<Item = &CloudEvent> + '_> {
        match &self.content {
            Content::Updates { batch, publish, .. } => {
                let milestones: Box<dyn Iterator<Item = &CloudEvent>> = match &publish.milestones {
                    MilestoneEvents::Snapshots => Box::new(batch.milestones().iter()),
                    MilestoneEvents::Changes(changes) => Box::new(changes.iter().map(|c| &c.event)),
                };
                Box::new(
                    batch
                        .tracking_update()
                        .into_iter()
                        .chain(milestones)
                        .chain(batch.pass_through()),
                )
            }
            Content::DeadLetter { event, .. } | Content::BridgeEvent { event, .. } => {
                Box::new(std::iter::once(event))
            }
        }
    }

    /// Vizion's id of the delivery, for an update envelope that has one.
    pub fn delivery_id(&self) -> Option<&str> {
        match &self.content {
            Content::Updates { delivery_id, .. } => delivery_id.as_deref(),
            _ => None,
        }
    }

    /// The kind of delivery, or of bridge event, the envelope carries (RabbitMQ routes
    /// passed-through events by it); a dead letter has none.
    pub fn kind_name(&self) -> Option<&'static str> {
        match &self.content {
            Content::Updates { kind, .. } => Some(kind.as_str()),
            Content::BridgeEvent { kind, .. } => Some(kind.as_str()),
            Content::DeadLetter { .. } => None,
        }
    }

    /// What keeps envelopes in order: envelopes with the same key are written one after
    /// the other; the container (or else the reference) of an update, the id of a dead
    /// letter, and the subject (the container) of an event of the bridge's own, so that
    /// a `reference.unsubscribed` follows the update that completed the journey.
    pub fn order_key(&self) -> &str {
        match &self.content {
            Content::Updates {
                batch, delivery_id, ..
            } => {
                let keys = batch.keys();
                // With nothing to order by, the envelope's own first event id: it then
                // waits for nobody, rather than for every other envelope without a key.
                keys.container_id
                    .as_deref()
                    .or(keys.reference_id.as_deref())
                    .or(delivery_id.as_deref())
                    .or_else(|| batch.events().next().map(CloudEvent::id))
                    .unwrap_or_default()
            }
            Content::DeadLetter { event, .. } => event.id(),
            Content::BridgeEvent { event, .. } => event.subject().unwrap_or(event.id()),
        }
    }
}
