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
//! mode ([`CloudEvent::to_structured_json`]) or binary mode ([`CloudEvent::attributes`],
//! [`CloudEvent::kafka_headers`], [`CloudEvent::amqp_application_properties`] and
//! [`CloudEvent::data`]). The event data is described in `docs/EVENTS.md` and by the JSON
//! Schemas in `schemas/`.
//!
//! Normalizing is deterministic: the same delivery and `received_at` give the same bytes.
//!
//! Descriptions missing from the mapping table become `UNKNOWN` milestones that keep their
//! text; [`NormalizedBatch::unknown_descriptions`] counts them so the caller can add the
//! count to its `vizion_bridge_unknown_milestone_descriptions_total` counter.

mod cloudevent;
pub mod codes;
mod config;
mod ids;
mod normalize;

use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use time::OffsetDateTime;

pub use cloudevent::{
    CloudEvent, AMQP_PROPERTY_PREFIX, DATA_CONTENT_TYPE, KAFKA_HEADER_PREFIX,
    STRUCTURED_CONTENT_TYPE,
};
pub use codes::{EventCode, Leg, TransportMode};
pub use config::EventsConfig;

use crate::vizion::{DeadLetter, Inbound, PassThrough, Update};
use normalize::{MilestoneKeys, TrackingUpdateData, SCHEMA_VERSION};

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
/// Extension attribute saying how an update reached the bridge: [`DeliveryMode`].
pub const DELIVERY_MODE_ATTRIBUTE: &str = "deliverymode";

/// How an update reached the bridge; consumers see it in the `deliverymode` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Vizion posted it to the bridge's callback URL.
    Webhook,
    /// The bridge fetched it from Vizion's API (polling or reconciliation).
    Poll,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Webhook => "webhook",
            DeliveryMode::Poll => "poll",
        }
    }
}

/// Settings shared by all events: the CloudEvents `source` and the `type` prefix.
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
        }
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
    /// One event per distinct milestone, in Vizion's list order.
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
    /// Whether the update shows the journey complete (the summary's `journey_complete`:
    /// an actual empty return at or after the arrival at destination).
    pub fn journey_complete(&self) -> bool {
        self.journey_complete
    }
    /// Marks every event with how the update arrived (`webhook` unless set).
    pub fn set_delivery_mode(&mut self, mode: DeliveryMode) {
        for event in self
            .tracking_update
            .iter_mut()
            .chain(&mut self.milestones)
            .chain(&mut self.pass_through)
        {
            event.set_delivery_mode(mode);
        }
    }

    /// Puts a batch back together from its parts, as a durable queue stored them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        tracking_update: Option<CloudEvent>,
        milestones: Vec<CloudEvent>,
        pass_through: Option<CloudEvent>,
        raw: Vec<u8>,
        unknown_descriptions: usize,
        keys: BatchKeys,
        milestone_codes: Vec<MilestoneCode>,
        journey_complete: bool,
    ) -> Self {
        Self {
            tracking_update,
            milestones,
            pass_through,
            raw,
            unknown_descriptions,
            keys,
            milestone_codes,
            journey_complete,
        }
    }
}

/// Turns a recognised delivery into events.
///
/// `raw_body` is the body as received (kept byte for byte in the batch) and
/// `received_at` the time it arrived. The CloudEvents `time` of an update's events is
/// Vizion's `updated_at` when it is a valid timestamp, else `received_at`.
pub fn normalize(
    inbound: &Inbound,
    raw_body: &[u8],
    received_at: OffsetDateTime,
    ctx: &EventContext,
) -> NormalizedBatch {
    let received: Arc<str> = Arc::from(normalize::utc_text(received_at).unwrap_or_default());
    match inbound {
        Inbound::Update(update) => normalize_update(update, raw_body, received, ctx),
        Inbound::ExceptionAlert(p) => pass_through(p, &ctx.alert_type, raw_body, received, ctx),
        Inbound::ReferenceEvent(p) => {
            pass_through(p, &ctx.reference_event_type, raw_body, received, ctx)
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    to_json_with_capacity(value, 128)
}

fn to_json_with_capacity<T: Serialize>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    // The data types hold only strings, numbers, booleans and string-keyed maps, which
    // serde_json always serializes; an empty object stands in should that ever change.
    if serde_json::to_writer(&mut out, value).is_err() {
        out.clear();
        out.extend_from_slice(b"{}");
    }
    out
}

/// Joins two serialized JSON objects into one: `{a...}` + `{b...}` gives `{a...,b...}`.
/// Either may be `{}`.
fn join_objects(out: &mut Vec<u8>, a: &[u8], b: &[u8]) {
    if b.len() <= 2 {
        out.extend_from_slice(a);
        return;
    }
    if a.len() <= 2 {
        out.extend_from_slice(b);
        return;
    }
    out.extend_from_slice(&a[..a.len() - 1]);
    out.push(b',');
    out.extend_from_slice(&b[1..]);
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn normalize_update(
    update: &Update,
    raw_body: &[u8],
    received: Arc<str>,
    ctx: &EventContext,
) -> NormalizedBatch {
    let p = &update.payload;
    let milestones = normalize::milestones(update);
    let unknown = milestones
        .iter()
        .filter(|m| m.duplicate_of.is_none() && m.has_unknown_description())
        .count();
    let time: Arc<str> = normalize::vizion_time(update.updated_at.as_deref())
        .map(Arc::from)
        .unwrap_or_else(|| received.clone());
    let subject = non_empty(p.container_id.as_deref());
    let partition = vec![
        ("partitionkey", update.reference_id.clone()),
        (
            DELIVERY_MODE_ATTRIBUTE,
            DeliveryMode::Webhook.as_str().to_owned(),
        ),
    ];
    let event = |id: String, event_type: &Arc<str>, schema, data: Vec<u8>| CloudEvent {
        id,
        source: ctx.source.clone(),
        event_type: event_type.clone(),
        subject: subject.clone(),
        time: time.clone(),
        dataschema: Some(schema),
        extensions: partition.clone(),
        data,
    };

    // Each milestone is serialized once; the bytes go both into its own event, after the
    // shipment keys, and into the tracking update's `milestones` array.
    let milestone_json: Vec<Vec<u8>> = milestones
        .iter()
        .map(|m| to_json_with_capacity(m, 1024))
        .collect();
    let keys = to_json(&MilestoneKeys {
        schema_version: SCHEMA_VERSION,
        update_id: &update.id,
        reference_id: &update.reference_id,
        container_id: p.container_id.as_deref(),
        carrier_scac: p.carrier_scac.as_deref(),
        bill_of_lading: p.bill_of_lading.as_deref(),
    });
    let milestone_events = milestones
        .iter()
        .zip(&milestone_json)
        .filter(|(m, _)| m.duplicate_of.is_none())
        .map(|(m, json)| {
            let mut data = Vec::with_capacity(keys.len() + json.len());
            join_objects(&mut data, &keys, json);
            event(
                format!("{}:{}", update.id, m.milestone_id),
                &ctx.milestone_type,
                MILESTONE_SCHEMA,
                data,
            )
        })
        .collect();

    let head_data = TrackingUpdateData::new(update, &milestones, &received, unknown);
    let journey_complete = head_data.summary.journey_complete;
    let head = to_json_with_capacity(&head_data, 2048);
    let list_len: usize = milestone_json.iter().map(|m| m.len() + 1).sum();
    let mut data = Vec::with_capacity(head.len() + list_len + 20);
    join_objects(&mut data, &head, b"{\"milestones\":[");
    for (i, json) in milestone_json.iter().enumerate() {
        if i > 0 {
            data.push(b',');
        }
        data.extend_from_slice(json);
    }
    data.extend_from_slice(b"]}");
    let tracking_update = event(
        update.id.clone(),
        &ctx.update_type,
        TRACKING_UPDATE_SCHEMA,
        data,
    );
    let milestone_codes = milestones
        .iter()
        .filter(|m| m.duplicate_of.is_none())
        .map(|m| MilestoneCode {
            event_code: m.event_code.as_str(),
            event_classifier: m.event_classifier,
        })
        .collect();
    NormalizedBatch {
        tracking_update: Some(tracking_update),
        milestones: milestone_events,
        pass_through: None,
        raw: raw_body.to_vec(),
        unknown_descriptions: unknown,
        keys: BatchKeys {
            reference_id: Some(update.reference_id.clone()),
            container_id: subject.clone(),
            carrier_scac: non_empty(p.carrier_scac.as_deref()),
        },
        milestone_codes,
        journey_complete,
    }
}

fn pass_through(
    p: &PassThrough,
    event_type: &Arc<str>,
    raw_body: &[u8],
    received: Arc<str>,
    ctx: &EventContext,
) -> NormalizedBatch {
    let id =
        p.id.clone()
            .unwrap_or_else(|| ids::hashed_id(&[b"pass-through", raw_body]));
    let data = if serde_json::from_slice::<serde::de::IgnoredAny>(raw_body).is_ok() {
        raw_body.to_vec()
    } else {
        // Not the body the delivery was parsed from; fall back to the parsed object.
        to_json(&p.body)
    };
    let event = CloudEvent {
        id,
        source: ctx.source.clone(),
        event_type: event_type.clone(),
        subject: p.reference_id.clone(),
        time: received,
        dataschema: None,
        extensions: p
            .reference_id
            .iter()
            .map(|r| ("partitionkey", r.clone()))
            .chain([(
                DELIVERY_MODE_ATTRIBUTE,
                DeliveryMode::Webhook.as_str().to_owned(),
            )])
            .collect(),
        data,
    };
    NormalizedBatch {
        tracking_update: None,
        milestones: Vec::new(),
        pass_through: Some(event),
        raw: raw_body.to_vec(),
        unknown_descriptions: 0,
        keys: BatchKeys {
            reference_id: p.reference_id.clone(),
            ..BatchKeys::default()
        },
        milestone_codes: Vec::new(),
        journey_complete: false,
    }
}

#[derive(Serialize)]
struct DeadLetterData<'a> {
    schema_version: u32,
    reason: &'static str,
    detail: &'a str,
    received_at: &'a str,
    raw_body_base64: String,
}

/// A CloudEvent (`….dead_letter.v1`) for a body that [`crate::vizion::parse`] refused:
/// the reason code, the detail and the raw body in base64. Its id is derived from the
/// body and `received_at`, so retrying the same write gives the same event.
pub fn dead_letter_event(
    dead: &DeadLetter,
    raw_body: &[u8],
    received_at: OffsetDateTime,
    ctx: &EventContext,
) -> CloudEvent {
    let received = normalize::utc_text(received_at).unwrap_or_default();
    let data = DeadLetterData {
        schema_version: SCHEMA_VERSION,
        reason: dead.reason.as_str(),
        detail: &dead.detail,
        received_at: &received,
        raw_body_base64: base64::engine::general_purpose::STANDARD.encode(raw_body),
    };
    CloudEvent {
        id: ids::hashed_id(&[b"dead-letter", raw_body, received.as_bytes()]),
        source: ctx.source.clone(),
        event_type: ctx.dead_letter_type.clone(),
        subject: None,
        time: Arc::from(received.as_str()),
        dataschema: Some(DEAD_LETTER_SCHEMA),
        extensions: vec![(
            DELIVERY_MODE_ATTRIBUTE,
            DeliveryMode::Webhook.as_str().to_owned(),
        )],
        data: to_json(&data),
    }
}

/// A reference the bridge unsubscribed because its journey was complete.
#[derive(Debug, Clone, Serialize)]
pub struct Unsubscription<'a> {
    pub reference_id: &'a str,
    pub container_id: Option<&'a str>,
    pub carrier_scac: Option<&'a str>,
    /// The update that showed the journey complete.
    pub update_id: &'a str,
    /// Why: always `journey_complete` in version 1.
    pub reason: &'static str,
    /// What Vizion answered to the unsubscription, when it said something.
    pub vizion_message: Option<&'a str>,
}

#[derive(Serialize)]
struct UnsubscribedData<'a> {
    schema_version: u32,
    #[serde(flatten)]
    unsubscription: &'a Unsubscription<'a>,
    unsubscribed_at: &'a str,
}

/// A CloudEvent (`….reference.unsubscribed.v1`) saying that the bridge unsubscribed a
/// reference. Its id depends on the reference alone: one reference is unsubscribed once.
pub fn reference_unsubscribed_event(
    unsubscription: &Unsubscription<'_>,
    unsubscribed_at: OffsetDateTime,
    ctx: &EventContext,
) -> CloudEvent {
    let at = normalize::utc_text(unsubscribed_at).unwrap_or_default();
    let data = UnsubscribedData {
        schema_version: SCHEMA_VERSION,
        unsubscription,
        unsubscribed_at: &at,
    };
    CloudEvent {
        id: ids::hashed_id(&[
            b"reference-unsubscribed",
            unsubscription.reference_id.as_bytes(),
        ]),
        source: ctx.source.clone(),
        event_type: ctx.unsubscribed_type.clone(),
        subject: non_empty(unsubscription.container_id),
        time: Arc::from(at.as_str()),
        dataschema: Some(REFERENCE_UNSUBSCRIBED_SCHEMA),
        extensions: vec![("partitionkey", unsubscription.reference_id.to_owned())],
        data: to_json(&data),
    }
}

#[cfg(test)]
mod tests {
    use super::join_objects;

    #[test]
    fn joining_objects_gives_one_valid_object() {
        for (a, b, expected) in [
            (
                &b"{\"a\":1}"[..],
                &b"{\"b\":2}"[..],
                &b"{\"a\":1,\"b\":2}"[..],
            ),
            (b"{}", b"{\"b\":2}", b"{\"b\":2}"),
            (b"{\"a\":1}", b"{}", b"{\"a\":1}"),
            (b"{}", b"{}", b"{}"),
        ] {
            let mut out = Vec::new();
            join_objects(&mut out, a, b);
            assert_eq!(out, expected);
        }
    }
}
