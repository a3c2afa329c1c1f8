//! What changed since the last published state of a reference.
//!
//! Vizion sends the whole milestone list of a container with every update. [`derive()`]
//! compares one update with the [`MilestoneState`] last published for its reference and
//! gives the events that say what changed, and the state to keep once they are durable:
//! - `….milestone.changed.v1` for a milestone that is new, or whose published content
//!   changed: its time moved, its classifier changed (an estimate became an actual), its
//!   vessel, voyage, location details, description or code changed;
//! - `….eta_changed.v1` when the estimated arrival at the destination port, or separately
//!   at the inland destination, moved by at least the threshold;
//! - `….journey_completed.v1` once per reference, when the update shows the journey
//!   complete (the rule of the tracking update's `summary.journey_complete`).
//!
//! Rules, also in `docs/EVENTS.md`:
//! - Without a previous state (the first update, or a state that was lost) every
//!   milestone is `new`: a change is published at least once, never not at all.
//! - An update whose `updated_at` is older than the state's is stale: it gives no event
//!   and leaves the state as it was. An update without a valid `updated_at` is never
//!   stale.
//! - The first estimate seen for a destination is not a change: there is nothing it
//!   moved from. The state keeps the estimate last announced (the first one, or the new
//!   one of the last `eta_changed`), so that moves smaller than the threshold add up
//!   until together they reach it. An update without an estimate for a destination
//!   forgets it; the next one seen is a first estimate again.
//! - Milestones missing from an update are dropped from the state: the state describes
//!   the newest update. Should one come back, it is `new` again.
//! - Event ids are hashes of what the event says (the milestone id, its previous and
//!   current content, the update's `updated_at`): the same change derived twice (a
//!   resend, a poll, a retry after a failed write) has the same id, and consumers drop
//!   the copy. `updated_at` is part of it so that a milestone moving back to an earlier
//!   value is a change of its own. `journey_completed` has one id per reference.
//! - Deterministic: the same inputs give the same events, in the same order: milestone
//!   changes in Vizion's list order, then the port ETA, the inland ETA, the completion.
//!
//! Nothing here keeps the state: the caller loads it, calls [`derive()`], publishes the
//! events and, once they are durable, stores [`Derived::next_state`]. A failed attempt
//! must not store it; deriving again from the same state gives the same events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::codes::Leg;
use super::normalize::{
    arrival_estimate, completing_return, milestones, to_json_with_capacity, utc_text, vizion_time,
    MilestoneKeys, MilestoneOut, UpdateAttributes,
};
use super::{
    ids, ChangeEvent, CloudEvent, DeliveryMode, EventContext, ETA_CHANGED_SCHEMA,
    JOURNEY_COMPLETED_SCHEMA, MILESTONE_CHANGED_SCHEMA, TRACKING_UPDATE_SCHEMA,
};
use crate::vizion::{Location, Milestone, Update};

/// How far an estimated arrival must move to be an `eta_changed`, unless configured.
pub const DEFAULT_ETA_CHANGE_THRESHOLD: Duration = Duration::from_secs(3600);

/// Version of [`MilestoneState`] as serialized; a reader meeting a newer one should
/// treat the state as lost rather than guess.
pub const STATE_VERSION: u32 = 1;

/// What was last published for one reference: what the state store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneState {
    /// [`STATE_VERSION`] when written.
    pub version: u32,
    /// The newest `updated_at` seen (RFC 3339, UTC); updates older than it are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Per milestone id, the content last published.
    #[serde(default)]
    pub milestones: BTreeMap<String, MilestoneFacts>,
    /// The estimated arrival at the destination port last announced (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_eta: Option<String>,
    /// The estimated arrival at the inland destination last announced (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inland_eta: Option<String>,
    /// Whether `journey_completed` was published.
    #[serde(default)]
    pub journey_completed: bool,
}

impl Default for MilestoneState {
    fn default() -> Self {
        MilestoneState {
            version: STATE_VERSION,
            updated_at: None,
            milestones: BTreeMap::new(),
            port_eta: None,
            inland_eta: None,
            journey_completed: false,
        }
    }
}

/// The content of a milestone whose change is worth an event. Absent fields are left
/// out of the serialized form to keep the state small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneFacts {
    pub event_code: String,
    pub event_classifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The normalized time with its offset, or the text received when it is not one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vessel_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vessel_imo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voyage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationFacts>,
}

/// The descriptive fields of a milestone's location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlocode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl LocationFacts {
    fn of(l: &Location) -> Self {
        LocationFacts {
            name: l.name.clone(),
            city: l.city.clone(),
            state: l.state.clone(),
            country: l.country.clone(),
            unlocode: l.unlocode.clone(),
            facility: l.facility.clone(),
            timezone: l.timezone.clone(),
        }
    }

    /// Same shape as the location of milestone event data, for `previous`.
    fn to_value(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "city": self.city,
            "state": self.state,
            "country": self.country,
            "unlocode": self.unlocode,
            "facility": self.facility,
            "timezone": self.timezone,
        })
    }
}

impl MilestoneFacts {
    fn of(out: &MilestoneOut<'_>, raw: &Milestone) -> Self {
        MilestoneFacts {
            event_code: out.event_code.as_str().to_owned(),
            event_classifier: out.event_classifier.to_owned(),
            description: out.description.map(str::to_owned),
            occurred_at: out
                .occurred_at
                .clone()
                .or_else(|| out.timestamp_raw.map(str::to_owned)),
            vessel_name: raw.vessel.clone(),
            vessel_imo: raw.vessel_imo.clone(),
            voyage: raw.voyage.clone(),
            location: raw.location.as_ref().map(LocationFacts::of),
        }
    }

    /// The previous values of the fields that differ in `current`, keyed as in milestone
    /// event data; empty when nothing differs.
    fn previous_values(&self, current: &MilestoneFacts) -> Map<String, Value> {
        let mut previous = Map::new();
        let text = |s: &Option<String>| s.as_deref().map_or(Value::Null, Value::from);
        if self.occurred_at != current.occurred_at {
            previous.insert("occurred_at".into(), text(&self.occurred_at));
        }
        if self.event_classifier != current.event_classifier {
            previous.insert(
                "event_classifier".into(),
                Value::from(self.event_classifier.as_str()),
            );
        }
        if self.event_code != current.event_code {
            previous.insert("event_code".into(), Value::from(self.event_code.as_str()));
        }
        if self.description != current.description {
            previous.insert("description".into(), text(&self.description));
        }
        if (&self.vessel_name, &self.vessel_imo) != (&current.vessel_name, &current.vessel_imo) {
            previous.insert(
                "vessel".into(),
                serde_json::json!({"name": self.vessel_name, "imo": self.vessel_imo}),
            );
        }
        if self.voyage != current.voyage {
            previous.insert("voyage".into(), text(&self.voyage));
        }
        if self.location != current.location {
            previous.insert(
                "location".into(),
                self.location
                    .as_ref()
                    .map_or(Value::Null, LocationFacts::to_value),
            );
        }
        previous
    }
}

/// What [`derive()`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The events to publish, in order, each with the milestone it is about; none for a
    /// stale update.
    pub events: Vec<ChangeEvent>,
    /// The state to store once the events are durable; the previous one when stale.
    pub next_state: MilestoneState,
    /// The update is older than the state: the caller flags its tracking update.
    pub stale: bool,
}

/// Which destination an `eta_changed` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    Port,
    Inland,
}

impl Destination {
    fn as_str(self) -> &'static str {
        match self {
            Destination::Port => "port",
            Destination::Inland => "inland",
        }
    }
    fn leg(self) -> Leg {
        match self {
            Destination::Port => Leg::DestinationPort,
            Destination::Inland => Leg::InlandDestination,
        }
    }
}

#[derive(Serialize)]
struct ChangedData<'a> {
    #[serde(flatten)]
    keys: &'a MilestoneKeys<'a>,
    change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Map<String, Value>>,
    #[serde(flatten)]
    milestone: &'a MilestoneOut<'a>,
}

#[derive(Serialize)]
struct EtaChangedData<'a> {
    #[serde(flatten)]
    keys: &'a MilestoneKeys<'a>,
    destination: &'static str,
    milestone_id: &'a str,
    previous_eta: &'a str,
    eta: &'a str,
    difference_seconds: i64,
}

#[derive(Serialize)]
struct JourneyCompletedData<'a> {
    #[serde(flatten)]
    keys: &'a MilestoneKeys<'a>,
    milestone_id: &'a str,
    completed_at: Option<&'a str>,
}

fn parse_utc(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Whether an update with this `updated_at` is older than the state.
pub fn is_stale(previous: Option<&MilestoneState>, update: &Update) -> bool {
    let seen = previous
        .and_then(|s| s.updated_at.as_deref())
        .and_then(parse_utc);
    let now = vizion_time(update.updated_at.as_deref())
        .as_deref()
        .and_then(parse_utc);
    matches!((seen, now), (Some(seen), Some(now)) if now < seen)
}

/// Flags a tracking-update event as stale: adds `"stale": true` to its data. Meant for
/// the tracking update of an update that [`derive()`] found stale; other events, or data
/// that is not a JSON object, are left alone.
pub fn mark_stale(event: &mut CloudEvent) {
    if event.dataschema != Some(TRACKING_UPDATE_SCHEMA) {
        return;
    }
    let data = &mut event.data;
    let Some(end) = data.iter().rposition(|b| !b.is_ascii_whitespace()) else {
        return;
    };
    if data.first() != Some(&b'{') || data[end] != b'}' {
        return;
    }
    data.truncate(end);
    if data.len() > 1 {
        data.push(b',');
    }
    data.extend_from_slice(b"\"stale\":true}");
}

/// Derives the change events of `update` against `previous`, the state last stored for
/// its reference (`None` when there is none). `received_at` stands in for the events'
/// `time` when `updated_at` is not a valid timestamp, `arrival` is their `deliverymode`,
/// and `threshold` is the smallest move of an estimated arrival that is a change.
pub fn derive(
    previous: Option<&MilestoneState>,
    update: &Update,
    received_at: OffsetDateTime,
    arrival: DeliveryMode,
    ctx: &EventContext,
    threshold: Duration,
) -> Derived {
    if is_stale(previous, update) {
        return Derived {
            events: Vec::new(),
            next_state: previous.cloned().unwrap_or_default(),
            stale: true,
        };
    }
    let empty = MilestoneState::default();
    let before = previous.unwrap_or(&empty);
    let p = &update.payload;
    let ms = milestones(update);
    let updated_at = vizion_time(update.updated_at.as_deref());
    let stamp = updated_at.as_deref().unwrap_or_default();
    let time: Arc<str> = Arc::from(
        updated_at
            .clone()
            .or_else(|| utc_text(received_at))
            .unwrap_or_default(),
    );
    let attributes = UpdateAttributes::new(update, time, arrival, ctx);
    // Each change event is routed as the milestone it is about.
    let changed = |id, event_type: &Arc<str>, schema, data, about: &MilestoneOut| ChangeEvent {
        event: attributes.event(id, event_type, schema, data),
        milestone: Some(about.code()),
    };
    let keys = MilestoneKeys::of(update);

    let mut events = Vec::new();
    let mut next = MilestoneState {
        version: STATE_VERSION,
        updated_at: newest(before.updated_at.as_deref(), updated_at.as_deref()),
        ..MilestoneState::default()
    };
    for m in ms.iter().filter(|m| m.duplicate_of.is_none()) {
        let Some(raw) = p.milestones.get(m.sequence) else {
            continue;
        };
        let facts = MilestoneFacts::of(m, raw);
        let (change, previous_values, previous_json) = match before.milestones.get(&m.milestone_id)
        {
            None => ("new", None, Vec::new()),
            Some(old) if *old == facts => {
                next.milestones.insert(m.milestone_id.clone(), facts);
                continue;
            }
            Some(old) => (
                "updated",
                Some(old.previous_values(&facts)),
                to_json_with_capacity(old, 256),
            ),
        };
        let facts_json = to_json_with_capacity(&facts, 256);
        let id = ids::hashed_id(&[
            b"milestone-changed",
            m.milestone_id.as_bytes(),
            &previous_json,
            &facts_json,
            stamp.as_bytes(),
        ]);
        let data = ChangedData {
            keys: &keys,
            change,
            previous: previous_values,
            milestone: m,
        };
        events.push(changed(
            id,
            &ctx.milestone_changed_type,
            MILESTONE_CHANGED_SCHEMA,
            to_json_with_capacity(&data, 1280),
            m,
        ));
        next.milestones.insert(m.milestone_id.clone(), facts);
    }

    for destination in [Destination::Port, Destination::Inland] {
        let current =
            arrival_estimate(&ms, destination.leg()).and_then(|m| Some((m, utc_text(m.instant?)?)));
        let last = match destination {
            Destination::Port => &before.port_eta,
            Destination::Inland => &before.inland_eta,
        };
        let kept = match (current, last.as_deref()) {
            (None, _) => None,
            (Some((_, now)), None) => Some(now),
            (Some((m, now)), Some(last)) => {
                let moved = parse_utc(last)
                    .zip(m.instant)
                    .map(|(last, now)| now - last)
                    .filter(|moved| !moved.is_zero() && moved.unsigned_abs() >= threshold);
                match moved {
                    None => Some(last.to_owned()),
                    Some(moved) => {
                        let data = EtaChangedData {
                            keys: &keys,
                            destination: destination.as_str(),
                            milestone_id: &m.milestone_id,
                            previous_eta: last,
                            eta: &now,
                            difference_seconds: moved.whole_seconds(),
                        };
                        let id = ids::hashed_id(&[
                            b"eta-changed",
                            update.reference_id.as_bytes(),
                            destination.as_str().as_bytes(),
                            last.as_bytes(),
                            now.as_bytes(),
                            stamp.as_bytes(),
                        ]);
                        events.push(changed(
                            id,
                            &ctx.eta_changed_type,
                            ETA_CHANGED_SCHEMA,
                            to_json_with_capacity(&data, 512),
                            m,
                        ));
                        Some(now)
                    }
                }
            }
        };
        match destination {
            Destination::Port => next.port_eta = kept,
            Destination::Inland => next.inland_eta = kept,
        }
    }

    next.journey_completed = before.journey_completed;
    if let Some(m) = completing_return(&ms) {
        if !before.journey_completed {
            let data = JourneyCompletedData {
                keys: &keys,
                milestone_id: &m.milestone_id,
                completed_at: m.occurred_at_utc.as_deref(),
            };
            let id = ids::hashed_id(&[b"journey-completed", update.reference_id.as_bytes()]);
            events.push(changed(
                id,
                &ctx.journey_completed_type,
                JOURNEY_COMPLETED_SCHEMA,
                to_json_with_capacity(&data, 512),
                m,
            ));
        }
        next.journey_completed = true;
    }

    Derived {
        events,
        next_state: next,
        stale: false,
    }
}

/// The later of two RFC 3339 UTC times; either may be missing or unreadable.
fn newest(a: Option<&str>, b: Option<&str>) -> Option<String> {
    match (
        a.and_then(|t| Some((t, parse_utc(t)?))),
        b.and_then(|t| Some((t, parse_utc(t)?))),
    ) {
        (Some((a, ta)), Some((b, tb))) => Some(if tb > ta { b } else { a }.to_owned()),
        (Some((a, _)), None) => Some(a.to_owned()),
        (None, Some((b, _))) => Some(b.to_owned()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_time_wins_and_unreadable_times_do_not_count() {
        let (a, b) = ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z");
        assert_eq!(newest(Some(a), Some(b)).as_deref(), Some(b));
        assert_eq!(newest(Some(b), Some(a)).as_deref(), Some(b));
        assert_eq!(newest(Some("soon"), Some(a)).as_deref(), Some(a));
        assert_eq!(newest(Some(a), None).as_deref(), Some(a));
        assert_eq!(newest(None, Some("soon")), None);
    }

    #[test]
    fn previous_values_name_only_what_changed() {
        let facts = MilestoneFacts {
            event_code: "ARRI".into(),
            event_classifier: "EST".into(),
            description: Some("Vessel arrived".into()),
            occurred_at: Some("2024-01-01T00:00:00Z".into()),
            vessel_name: Some("A".into()),
            vessel_imo: None,
            voyage: Some("1E".into()),
            location: None,
        };
        assert!(facts.previous_values(&facts).is_empty());
        let later = MilestoneFacts {
            event_classifier: "ACT".into(),
            vessel_imo: Some("9388352".into()),
            ..facts.clone()
        };
        let previous = facts.previous_values(&later);
        assert_eq!(
            Value::Object(previous),
            serde_json::json!({"event_classifier": "EST", "vessel": {"name": "A", "imo": null}})
        );
    }

    #[test]
    fn the_state_is_compact() {
        let state = MilestoneState::default();
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            r#"{"version":1,"milestones":{},"journey_completed":false}"#
        );
        let read: MilestoneState = serde_json::from_str(r#"{"version":1}"#).unwrap();
        assert_eq!(read, state);
    }

    fn tracking_update(data: &[u8]) -> CloudEvent {
        CloudEvent {
            id: "u".into(),
            source: Arc::from("urn:test"),
            event_type: Arc::from("t.update.v1"),
            subject: None,
            time: Arc::from("2024-01-01T00:00:00Z"),
            dataschema: Some(TRACKING_UPDATE_SCHEMA),
            extensions: Vec::new(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn marking_stale_adds_the_flag_to_tracking_updates_only() {
        let mut e = tracking_update(br#"{"a":1}"#);
        mark_stale(&mut e);
        assert_eq!(e.data, br#"{"a":1,"stale":true}"#);
        let mut e = tracking_update(b"{}");
        mark_stale(&mut e);
        assert_eq!(e.data, br#"{"stale":true}"#);
        let mut e = tracking_update(b"[1]");
        mark_stale(&mut e);
        assert_eq!(e.data, b"[1]");
        let mut other = tracking_update(br#"{"a":1}"#);
        other.dataschema = Some(MILESTONE_CHANGED_SCHEMA);
        mark_stale(&mut other);
        assert_eq!(other.data, br#"{"a":1}"#);
    }
}
