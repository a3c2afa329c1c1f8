//! Vizion's wire format: recognising what an authentic webhook body is.
//!
//! The data path calls [`parse`] on bytes that have already passed the source and
//! signature checks. The body is read once, straight into a typed model that tolerates
//! nulls, missing fields and values of unexpected types; fields the model does not know
//! are kept in `extra` maps. Anything authentic that is not a usable delivery comes back
//! as a [`DeadLetter`] with a reason, so the caller can keep it instead of dropping it.
//!
//! Three kinds of delivery are recognised:
//! - a reference update (`id`, `reference_id` and a `payload` object), the usual webhook;
//! - an exception alert (estimated-date alerts), and
//! - a reference lifecycle event (`reference_created`, `reference_deactivated`, ...).
//!
//! Vizion has not published the envelope of the last two. They are recognised by an
//! event-type field (`event_type`, `event` or `type`, checked in that order) on the top
//! level: values containing `alert`, and the estimated-date changes
//! (`estimated_arrival_changed`, `estimated_departure_changed`), are exception alerts;
//! the other documented lifecycle names are reference events. Both are passed through
//! whole, as received.

pub mod api;
mod lenient;
mod model;

use serde_json::{Map, Value};

pub use model::{Geolocation, JourneyEvent, Location, Milestone, Payload, ShipmentLocation};

use lenient::Slot;
use model::Envelope;

/// An authentic body that was understood.
// One value per request, moved once: boxing the common kind would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A reference update: the usual webhook, a full snapshot of one container's journey.
    Update(Update),
    /// An exception alert, such as a change of an estimated date.
    ExceptionAlert(PassThrough),
    /// A reference lifecycle event, such as a reference being deactivated.
    ReferenceEvent(PassThrough),
}

impl Inbound {
    /// The key that identifies this delivery for deduplication: Vizion's update id, or the
    /// alert's or event's `id` when it has one.
    pub fn dedup_key(&self) -> Option<&str> {
        match self {
            Inbound::Update(update) => Some(&update.id),
            Inbound::ExceptionAlert(p) | Inbound::ReferenceEvent(p) => p.id.as_deref(),
        }
    }

    /// A short, stable name of the kind of delivery, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Update(_) => "update",
            Inbound::ExceptionAlert(_) => "exception_alert",
            Inbound::ReferenceEvent(_) => "reference_event",
        }
    }
}

/// A reference update envelope with its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Vizion's id of this update; unique per update.
    pub id: String,
    pub reference_id: String,
    /// Always `data_received` for webhook deliveries.
    pub status: Option<String>,
    pub organization_id: Option<String>,
    /// The Bill-of-Lading reference this container reference was created from.
    pub parent_reference_id: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub payload: Payload,
    /// Top-level fields this model does not know, exactly as received.
    pub extra: Map<String, Value>,
}

/// A delivery that is recognised but not modelled field by field: it is kept whole.
#[derive(Debug, Clone, PartialEq)]
pub struct PassThrough {
    /// The delivery's `id`, when it has a non-empty one.
    pub id: Option<String>,
    /// The value of the event-type field that identified it.
    pub event_type: String,
    /// `reference_id` from the top level, or from a `data` or `payload` object.
    pub reference_id: Option<String>,
    /// The whole body.
    pub body: Map<String, Value>,
}

/// Why an authentic body could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Not valid JSON (or not UTF-8).
    NotJson,
    /// Valid JSON but not an object, or an object with an unrecognised event type.
    UnknownShape,
    /// No non-empty string `id`.
    MissingId,
    /// No non-empty string `reference_id`.
    MissingReferenceId,
    /// `payload` absent or null.
    MissingPayload,
    /// `payload` present but not an object.
    PayloadNotObject,
    /// Valid JSON with a number too large for a 64-bit float.
    NumberOutOfRange,
    /// More milestones than any real journey has: refused so that normalizing stays
    /// cheap and its output bounded.
    TooManyMilestones,
}

/// The most milestones an update may carry (real journeys have tens). Every element of
/// `payload.milestones` counts, objects or not.
pub const MAX_MILESTONES: usize = 1000;

/// The message with which reading stops at the first milestone beyond
/// [`MAX_MILESTONES`]; [`not_json`] recognises it to name the reason.
const TOO_MANY_MILESTONES: &str = "too many milestones";

impl DeadLetterReason {
    /// The snake_case reason code used in logs, metrics and dead-letter records.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::NotJson => "not_json",
            DeadLetterReason::UnknownShape => "unknown_shape",
            DeadLetterReason::MissingId => "missing_id",
            DeadLetterReason::MissingReferenceId => "missing_reference_id",
            DeadLetterReason::MissingPayload => "missing_payload",
            DeadLetterReason::PayloadNotObject => "payload_not_object",
            DeadLetterReason::NumberOutOfRange => "number_out_of_range",
            DeadLetterReason::TooManyMilestones => "too_many_milestones",
        }
    }
}

/// An authentic body that could not be used, with the reason and a short detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct DeadLetter {
    pub reason: DeadLetterReason,
    pub detail: String,
}

impl DeadLetter {
    fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Event-type fields that mark a delivery other than a reference update.
const DISCRIMINATORS: [&str; 3] = ["event_type", "event", "type"];

/// Reference lifecycle event names that are not exception alerts.
const REFERENCE_EVENTS: [&str; 8] = [
    "estimated_arrival_changed",
    "estimated_departure_changed",
    "reference_created",
    "reference_deactivated",
    "reference_reactivated",
    "reference_update_created",
    "extraction_succeeded",
    "extraction_failed",
];

enum Kind {
    Update,
    Alert,
    ReferenceEvent,
}

fn classify(event_type: &str) -> Option<Kind> {
    let t = event_type.trim().to_ascii_lowercase();
    if t == "reference_update" {
        Some(Kind::Update)
    } else if t.contains("alert") {
        Some(Kind::Alert)
    } else if REFERENCE_EVENTS.contains(&t.as_str()) {
        Some(Kind::ReferenceEvent)
    } else {
        None
    }
}

/// Recognises an authentic webhook body.
pub fn parse(body: &[u8]) -> Result<Inbound, DeadLetter> {
    let top: Slot<Envelope> = serde_json::from_slice(body).map_err(not_json)?;
    let envelope = match top {
        Slot::Typed(envelope) => envelope,
        Slot::Null | Slot::Other(_) => {
            return Err(DeadLetter::new(
                DeadLetterReason::UnknownShape,
                "the body is JSON but not an object",
            ))
        }
    };

    let discriminator = DISCRIMINATORS
        .iter()
        .find_map(|k| match envelope.extra.get(*k) {
            Some(Value::String(s)) => Some((*k, s.as_str())),
            _ => None,
        });
    let mut unrecognised = None;
    if let Some((field, event_type)) = discriminator {
        match classify(event_type) {
            Some(Kind::Alert) => {
                return pass_through(body, event_type).map(Inbound::ExceptionAlert)
            }
            Some(Kind::ReferenceEvent) => {
                return pass_through(body, event_type).map(Inbound::ReferenceEvent)
            }
            Some(Kind::Update) => {}
            None => unrecognised = Some(format!("unrecognised `{field}` value {event_type:?}")),
        }
    }

    let shape_error = |reason, detail: &str| {
        // An unknown event type explains a missing update field better than the field does.
        match &unrecognised {
            Some(what) => DeadLetter::new(DeadLetterReason::UnknownShape, what.clone()),
            None => DeadLetter::new(reason, detail),
        }
    };
    let id = non_empty(envelope.id)
        .ok_or_else(|| shape_error(DeadLetterReason::MissingId, "no non-empty string `id`"))?;
    let reference_id = non_empty(envelope.reference_id).ok_or_else(|| {
        shape_error(
            DeadLetterReason::MissingReferenceId,
            "no non-empty string `reference_id`",
        )
    })?;
    let payload = match envelope.payload {
        Some(Slot::Typed(payload)) => payload,
        None | Some(Slot::Null) => {
            return Err(shape_error(
                DeadLetterReason::MissingPayload,
                "`payload` is absent or null",
            ))
        }
        Some(Slot::Other(v)) => {
            return Err(shape_error(
                DeadLetterReason::PayloadNotObject,
                &format!("`payload` is {}, not an object", json_type(&v)),
            ))
        }
    };
    Ok(Inbound::Update(Update {
        id,
        reference_id,
        status: envelope.status,
        organization_id: envelope.organization_id,
        parent_reference_id: envelope.parent_reference_id,
        created_at: envelope.created_at,
        updated_at: envelope.updated_at,
        payload,
        extra: envelope.extra,
    }))
}

/// A body serde_json refused: not JSON, JSON with a number it cannot hold, or an update
/// whose milestones passed the limit (reading stopped there).
fn not_json(error: serde_json::Error) -> DeadLetter {
    let detail = error.to_string();
    if detail.starts_with(TOO_MANY_MILESTONES) {
        return DeadLetter::new(
            DeadLetterReason::TooManyMilestones,
            format!("`payload.milestones` has more than {MAX_MILESTONES} elements"),
        );
    }
    let reason = if detail.starts_with("number out of range") {
        DeadLetterReason::NumberOutOfRange
    } else {
        DeadLetterReason::NotJson
    };
    DeadLetter::new(reason, detail)
}

/// Re-reads the body as a plain JSON object; only for the rare non-update kinds.
fn pass_through(body: &[u8], event_type: &str) -> Result<PassThrough, DeadLetter> {
    let body: Map<String, Value> = serde_json::from_slice(body).map_err(not_json)?;
    let string = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    let reference_id = string(body.get("reference_id")).or_else(|| {
        ["data", "payload"]
            .iter()
            .find_map(|k| string(body.get(*k).and_then(|d| d.get("reference_id"))))
    });
    Ok(PassThrough {
        id: string(body.get("id")),
        event_type: event_type.to_owned(),
        reference_id,
        body,
    })
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_minimal_update() {
        let inbound = parse(br#"{"id":"u1","reference_id":"r1","payload":{}}"#).unwrap();
        assert_eq!(inbound.dedup_key(), Some("u1"));
        assert_eq!(inbound.kind(), "update");
    }

    #[test]
    fn names_the_reason_for_each_unusable_body() {
        let cases: [(&[u8], &str); 9] = [
            (b"not json", "not_json"),
            (b"", "not_json"),
            (b"\xff\xfe", "not_json"),
            (b"[1,2]", "unknown_shape"),
            (br#"{"reference_id":"r","payload":{}}"#, "missing_id"),
            (
                br#"{"id":"  ","reference_id":"r","payload":{}}"#,
                "missing_id",
            ),
            (br#"{"id":"u","payload":{}}"#, "missing_reference_id"),
            (
                br#"{"id":"u","reference_id":"r","payload":null}"#,
                "missing_payload",
            ),
            (
                br#"{"id":"u","reference_id":"r","payload":[1]}"#,
                "payload_not_object",
            ),
        ];
        for (body, reason) in cases {
            let dead = parse(body).unwrap_err();
            assert_eq!(
                dead.reason.as_str(),
                reason,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn keeps_values_of_unexpected_type_and_unknown_fields() {
        let body = br#"{"id":"u","reference_id":"r","new_top":1,"payload":{
            "container_id":42,"carrier_scac":["x"],"surprise":{"a":true},
            "milestones":[{"planned":"yes","vessel_imo":9388352,"location":"Singapore",
                           "location_hint":"x"}, 7, null]}}"#;
        let Inbound::Update(update) = parse(body).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(update.extra.get("new_top"), Some(&Value::from(1)));
        let p = &update.payload;
        assert_eq!(p.container_id.as_deref(), Some("42"));
        assert_eq!(p.carrier_scac, None);
        assert_eq!(p.extra.get("carrier_scac"), Some(&serde_json::json!(["x"])));
        assert_eq!(
            p.extra.get("surprise"),
            Some(&serde_json::json!({"a": true}))
        );
        let m = &p.milestones[0];
        assert_eq!(m.planned, None);
        assert_eq!(m.extra.get("planned"), Some(&Value::from("yes")));
        assert_eq!(m.vessel_imo.as_deref(), Some("9388352"));
        assert_eq!(m.extra.get("location"), Some(&Value::from("Singapore")));
        assert_eq!(m.extra.get("location_hint"), Some(&Value::from("x")));
        assert_eq!(p.unreadable_milestones, vec![Value::from(7), Value::Null]);
    }

    /// An update whose `payload.milestones` holds `elements`, then `after` verbatim.
    fn update_with_milestones(elements: &[&str], after: &str) -> Vec<u8> {
        format!(
            r#"{{"id":"u","reference_id":"r","payload":{{"milestones":[{}]{after}"#,
            elements.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn every_element_counts_towards_the_milestone_limit() {
        for element in ["{}", "0", "null", "\"x\"", "[]"] {
            let at_limit = update_with_milestones(&[element; MAX_MILESTONES], "}}");
            let Inbound::Update(update) = parse(&at_limit).unwrap() else {
                panic!("not an update")
            };
            let p = &update.payload;
            assert_eq!(
                p.milestones.len() + p.unreadable_milestones.len(),
                MAX_MILESTONES,
                "{element}"
            );

            let over = update_with_milestones(&[element; MAX_MILESTONES + 1], "}}");
            let dead = parse(&over).unwrap_err();
            assert_eq!(
                dead.reason,
                DeadLetterReason::TooManyMilestones,
                "{element}"
            );
            assert!(dead.detail.contains("1000"), "{}", dead.detail);
        }
        let mut mixed = vec!["{}"; 600];
        mixed.extend(["7"; 401]);
        let dead = parse(&update_with_milestones(&mixed, "}}")).unwrap_err();
        assert_eq!(dead.reason, DeadLetterReason::TooManyMilestones);
    }

    #[test]
    fn reading_stops_at_the_first_milestone_beyond_the_limit() {
        // What follows the element past the limit is never read: not even its syntax.
        let body = update_with_milestones(&["0"; MAX_MILESTONES + 1], ", this is not JSON");
        let dead = parse(&body).unwrap_err();
        assert_eq!(dead.reason, DeadLetterReason::TooManyMilestones);
        // Within the limit, the same tail is what it is.
        let body = update_with_milestones(&["0"; 3], ", this is not JSON");
        assert_eq!(parse(&body).unwrap_err().reason, DeadLetterReason::NotJson);
    }

    #[test]
    fn reads_both_names_of_the_booking_number() {
        let old = br#"{"id":"u","reference_id":"r","payload":{"booking":"B1"}}"#;
        let new =
            br#"{"id":"u","reference_id":"r","payload":{"booking_number":"B2","booking":"B1"}}"#;
        for (body, expected) in [(&old[..], "B1"), (&new[..], "B2")] {
            let Inbound::Update(u) = parse(body).unwrap() else {
                panic!("not an update")
            };
            assert_eq!(u.payload.booking_number(), Some(expected));
        }
    }

    #[test]
    fn recognises_alerts_and_reference_events() {
        let alert =
            br#"{"id":"a1","event_type":"estimated_date_alerts","reference_id":"r","data":{}}"#;
        let inbound = parse(alert).unwrap();
        assert_eq!(inbound.kind(), "exception_alert");
        assert_eq!(inbound.dedup_key(), Some("a1"));

        let event = br#"{"type":"reference_deactivated","data":{"reference_id":"r9","deactivate_reason":"auto_unsubscribed"}}"#;
        let inbound = parse(event).unwrap();
        assert_eq!(inbound.kind(), "reference_event");
        assert_eq!(inbound.dedup_key(), None);
        let Inbound::ReferenceEvent(p) = inbound else {
            panic!("not a reference event")
        };
        assert_eq!(p.reference_id.as_deref(), Some("r9"));
        assert_eq!(p.event_type, "reference_deactivated");
    }

    #[test]
    fn an_unknown_event_type_without_an_update_is_an_unknown_shape() {
        let dead = parse(br#"{"id":"x","type":"something_new"}"#).unwrap_err();
        assert_eq!(dead.reason, DeadLetterReason::UnknownShape);
        assert!(dead.detail.contains("something_new"), "{}", dead.detail);
        // A valid update that happens to carry a `type` field is still an update.
        let ok = parse(br#"{"id":"x","reference_id":"r","type":"something_new","payload":{}}"#);
        assert_eq!(ok.unwrap().kind(), "update");
    }
}
