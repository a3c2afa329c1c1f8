//! Normalized tracking events: the versioned contract downstream consumers read.
//!
//! [`normalize`] turns one recognised delivery into a [`NormalizedBatch`]:
//! - for a reference update, one tracking-update event (the whole snapshot with a derived
//!   summary) and one milestone event per distinct milestone;
//! - for an exception alert or a reference event, one pass-through event whose data is
//!   the body as received;
//! - in every case, the raw body byte for byte.
//!
//! Every event is a [`CloudEvent`] (CloudEvents 1.0) that can be written in structured
//! mode ([`CloudEvent::to_structured_json`]) or binary mode ([`CloudEvent::attributes`]
//! and [`CloudEvent::data`]; each broker sink adds its binding's prefixes). The event data
//! is described in `docs/EVENTS.md` and by the JSON Schemas in `schemas/`.
//!
//! What the sinks write is an [`Envelope`]: an update batch, a dead letter or an event of
//! the bridge's own, with where it came from and when.
//!
//! Normalizing is deterministic: the same delivery and `received_at` give the same bytes.
//!
//! [`changes`] derives, from an update and the state last published for its reference,
//! only what changed: milestone changes, ETA moves and the journey's completion.
//!
//! Descriptions missing from the mapping table become `UNKNOWN` milestones that keep their
//! text; [`NormalizedBatch::unknown_descriptions`] counts them so the caller can add the
//! count to its `vizion_bridge_unknown_milestone_descriptions_total` counter.

pub mod changes;
mod cloudevent;
pub mod codes;
mod config;
pub mod envelope;
mod ids;
mod normalize;

use std::sync::Arc;

pub use cloudevent::{CloudEvent, DATA_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE};
pub use codes::{EventCode, Leg, TransportMode};
pub use config::{EventsConfig, MilestoneMode};
pub use envelope::{
    BridgeEventKind, ChangeEvent, Content, DeliveryKind, Envelope, MilestoneEvents, Provenance,
    Publish,
};
pub use normalize::{dead_letter_event, normalize, reference_unsubscribed_event, Unsubscription};

/// Default CloudEvents `source`.
pub const DEFAULT_SOURCE: &str = "urn:vizion-bridge";
/// Default prefix of the CloudEvents `type`.
pub const DEFAULT_TYPE_PREFIX: &str = "com.vizionapi.tracking";
/// `dataschema` of tracking-update events; the `$id` of its schema.
pub const TRACKING_UPDATE_SCHEMA: &str = "urn:vizion-bridge:schema:tracking.update.v1";
/// `dataschema` of milestone events; the `$id` of its schema.
pub const MILESTONE_SCHEMA: &str = "urn:vizion-bridge:schema:tracking.milestone.v1";
/// `dataschema` of dead-letter events; the `$id` of its schema.
pub const DEAD_LETTER_SCHEMA: &str = "urn:vizion-bridge:schema:tracking.dead_letter.v1";
/// `dataschema` of reference-unsubscribed events; the `$id` of its schema.
pub const REFERENCE_UNSUBSCRIBED_SCHEMA: &str =
    "urn:vizion-bridge:schema:reference.unsubscribed.v1";
/// `dataschema` of milestone-changed events; the `$id` of its schema.
pub const MILESTONE_CHANGED_SCHEMA: &str = "urn:vizion-bridge:schema:tracking.milestone.changed.v1";
/// `dataschema` of ETA-changed events; the `$id` of its schema.
pub const ETA_CHANGED_SCHEMA: &str = "urn:vizion-bridge:schema:tracking.eta_changed.v1";
/// `dataschema` of journey-completed events; the `$id` of its schema.
pub const JOURNEY_COMPLETED_SCHEMA: &str = "urn:vizion-bridge:schema:tracking.journey_completed.v1";
/// Extension attribute saying how an update reached the bridge: [`DeliveryMode`].
pub const DELIVERY_MODE_ATTRIBUTE: &str = "deliverymode";

/// How an update reached the bridge; consumers see it in the `deliverymode` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Vizion posted it to the bridge's callback URL.
    Webhook,
    /// The bridge fetched it from Vizion's API (polling or reconciliation).
    Poll,
    /// An operator re-published it with `vizion-bridge replay` from what the bridge
    /// had already written (its `raw.jsonl` or `dead-letters.jsonl`).
    Replay,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Webhook => "webhook",
            DeliveryMode::Poll => "poll",
            DeliveryMode::Replay => "replay",
        }
    }
}

/// Settings shared by all events: the CloudEvents `source` and the `type` prefix, and
/// whether an update's batch gets one event per milestone of its snapshot.
///
/// With the defaults, types are `com.vizionapi.tracking.update.v1`,
/// `….milestone.v1`, `….exception_alert.v1`, `….reference_event.v1` and
/// `….dead_letter.v1`.
#[derive(Debug, Clone)]
pub struct EventContext {
    source: Arc<str>,
    update_type: Arc<str>,
    milestone_type: Arc<str>,
    alert_type: Arc<str>,
    reference_event_type: Arc<str>,
    dead_letter_type: Arc<str>,
    unsubscribed_type: Arc<str>,
    milestone_changed_type: Arc<str>,
    eta_changed_type: Arc<str>,
    journey_completed_type: Arc<str>,
    /// Make the per-milestone snapshot events (`events.milestones = "all"`); the other
    /// modes never publish them, so building them would be wasted.
    milestone_events: bool,
}

impl Default for EventContext {
    fn default() -> Self {
        Self::new(DEFAULT_SOURCE, DEFAULT_TYPE_PREFIX)
    }
}

impl EventContext {
    /// `source` is the CloudEvents source (a URI reference); `type_prefix` is prepended
    /// to `.update.v1`, `.milestone.v1` and the other type suffixes.
    pub fn new(source: &str, type_prefix: &str) -> Self {
        let t = |suffix: &str| Arc::from(format!("{type_prefix}.{suffix}"));
        EventContext {
            source: Arc::from(source),
            update_type: t("update.v1"),
            milestone_type: t("milestone.v1"),
            alert_type: t("exception_alert.v1"),
            reference_event_type: t("reference_event.v1"),
            dead_letter_type: t("dead_letter.v1"),
            unsubscribed_type: t("reference.unsubscribed.v1"),
            milestone_changed_type: t("milestone.changed.v1"),
            eta_changed_type: t("eta_changed.v1"),
            journey_completed_type: t("journey_completed.v1"),
            milestone_events: true,
        }
    }
    /// The same, but batches get no per-milestone snapshot events, nor their codes (the
    /// milestones stay in the tracking update).
    pub fn without_milestone_events(mut self) -> Self {
        self.milestone_events = false;
        self
    }
    pub fn milestone_events(&self) -> bool {
        self.milestone_events
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn update_type(&self) -> &str {
        &self.update_type
    }
    pub fn milestone_type(&self) -> &str {
        &self.milestone_type
    }
    pub fn exception_alert_type(&self) -> &str {
        &self.alert_type
    }
    pub fn reference_event_type(&self) -> &str {
        &self.reference_event_type
    }
    pub fn dead_letter_type(&self) -> &str {
        &self.dead_letter_type
    }
    pub fn reference_unsubscribed_type(&self) -> &str {
        &self.unsubscribed_type
    }
    /// `….milestone.changed.v1`, see [`changes`].
    pub fn milestone_changed_type(&self) -> &str {
        &self.milestone_changed_type
    }
    /// `….eta_changed.v1`, see [`changes`].
    pub fn eta_changed_type(&self) -> &str {
        &self.eta_changed_type
    }
    /// `….journey_completed.v1`, see [`changes`].
    pub fn journey_completed_type(&self) -> &str {
        &self.journey_completed_type
    }
}

/// Everything produced from one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedBatch {
    tracking_update: Option<CloudEvent>,
    milestones: Vec<CloudEvent>,
    pass_through: Option<CloudEvent>,
    raw: Vec<u8>,
    unknown_descriptions: usize,
    keys: BatchKeys,
    milestone_codes: Vec<MilestoneCode>,
    journey_complete: bool,
}

/// The identifiers that outputs place a batch's events by (partition keys, routing
/// keys), so that they need not read the event data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    pub reference_id: Option<String>,
    pub container_id: Option<String>,
    pub carrier_scac: Option<String>,
}

/// A milestone event's `event_code` and `event_classifier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MilestoneCode {
    pub event_code: &'static str,
    pub event_classifier: &'static str,
}

impl NormalizedBatch {
    /// The tracking-update event, for a reference update.
    pub fn tracking_update(&self) -> Option<&CloudEvent> {
        self.tracking_update.as_ref()
    }
    /// One event per distinct milestone, in Vizion's list order; none when the
    /// context made no milestone events ([`EventContext::without_milestone_events`]).
    pub fn milestones(&self) -> &[CloudEvent] {
        &self.milestones
    }
    /// The event for an exception alert or a reference event.
    pub fn pass_through(&self) -> Option<&CloudEvent> {
        self.pass_through.as_ref()
    }
    /// All events: the tracking update first, then the milestones (or the pass-through).
    pub fn events(&self) -> impl Iterator<Item = &CloudEvent> {
        self.tracking_update
            .iter()
            .chain(&self.milestones)
            .chain(&self.pass_through)
    }
    /// The body exactly as received: the `raw` output.
    pub fn raw_body(&self) -> &[u8] {
        &self.raw
    }
    /// Identifiers of the delivery, for outputs that key or route events.
    pub fn keys(&self) -> &BatchKeys {
        &self.keys
    }
    /// The code and classifier of each milestone event, in the order of [`Self::milestones`].
    pub fn milestone_codes(&self) -> &[MilestoneCode] {
        &self.milestone_codes
    }
    /// Number of milestone events whose description is not in the mapping table. Add it
    /// to `vizion_bridge_unknown_milestone_descriptions_total`.
    pub fn unknown_descriptions(&self) -> usize {
        self.unknown_descriptions
    }
    /// Flags the tracking update as stale (see [`changes::mark_stale`]).
    pub fn mark_stale(&mut self) {
        if let Some(event) = &mut self.tracking_update {
            changes::mark_stale(event);
        }
    }
    /// Whether the update shows the journey complete (the summary's `journey_complete`:
    /// an actual empty return at or after the arrival at destination).
    pub fn journey_complete(&self) -> bool {
        self.journey_complete
    }
}
