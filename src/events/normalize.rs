//! From a recognised delivery to its events: [`normalize`] and the version 1 event data.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::codes::{lookup, EventCode, Leg, TransportMode};
use super::{
    ids, BatchKeys, CloudEvent, DeliveryMode, EventContext, MilestoneCode, NormalizedBatch,
    DEAD_LETTER_SCHEMA, DELIVERY_MODE_ATTRIBUTE, MILESTONE_SCHEMA, REFERENCE_UNSUBSCRIBED_SCHEMA,
    TRACKING_UPDATE_SCHEMA,
};
use crate::vizion::{
    DeadLetter, Inbound, JourneyEvent, Location, Milestone, PassThrough, ShipmentLocation, Update,
};

pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Two ASCII letters, serialized as a string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CountryCode([u8; 2]);

impl Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.0).unwrap_or_default())
    }
}

/// The country of a UN/LOCODE: two letters, an optional space, then three letters or
/// digits 2-9. Anything else (`"unknown"`, a city name) gives none.
fn country_code(unlocode: Option<&str>) -> Option<CountryCode> {
    let b = unlocode?.trim().as_bytes();
    let (country, place) = match b {
        [a, c, b' ', rest @ ..] | [a, c, rest @ ..] => ([*a, *c], rest),
        _ => return None,
    };
    let place_ok = place.len() == 3
        && place
            .iter()
            .all(|x| x.is_ascii_alphabetic() || (b'2'..=b'9').contains(x));
    (country.iter().all(u8::is_ascii_alphabetic) && place_ok)
        .then(|| CountryCode(country.map(|x| x.to_ascii_uppercase())))
}

#[derive(Debug, Serialize)]
pub(crate) struct GeoOut {
    latitude: f64,
    longitude: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LocationOut<'a> {
    name: Option<&'a str>,
    city: Option<&'a str>,
    state: Option<&'a str>,
    country: Option<&'a str>,
    country_code: Option<CountryCode>,
    unlocode: Option<&'a str>,
    facility: Option<&'a str>,
    timezone: Option<&'a str>,
    geolocation: Option<GeoOut>,
    /// Location fields not modelled (or of an unexpected type), as received.
    #[serde(skip_serializing_if = "Map::is_empty")]
    vizion_extra: &'a Map<String, Value>,
}

impl<'a> LocationOut<'a> {
    fn new(l: &'a Location) -> Self {
        let geolocation = l
            .geolocation
            .as_ref()
            .and_then(|g| match (g.latitude, g.longitude) {
                (Some(latitude), Some(longitude))
                    if (-90.0..=90.0).contains(&latitude)
                        && (-180.0..=180.0).contains(&longitude) =>
                {
                    Some(GeoOut {
                        latitude,
                        longitude,
                    })
                }
                _ => None,
            });
        LocationOut {
            name: l.name.as_deref(),
            city: l.city.as_deref(),
            state: l.state.as_deref(),
            country: l.country.as_deref(),
            country_code: country_code(l.unlocode.as_deref()),
            unlocode: l.unlocode.as_deref(),
            facility: l.facility.as_deref(),
            timezone: l.timezone.as_deref(),
            geolocation,
            vizion_extra: &l.extra,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct VesselOut<'a> {
    name: Option<&'a str>,
    imo: Option<&'a str>,
    mmsi: Option<&'a str>,
}

/// One milestone, normalized. Serialized inside the tracking update and, with the
/// shipment keys, as the data of a milestone event.
#[derive(Debug, Serialize)]
pub(crate) struct MilestoneOut<'a> {
    pub milestone_id: String,
    /// Position in Vizion's list, from 0.
    pub sequence: usize,
    pub event_code: EventCode,
    pub event_classifier: &'static str,
    pub leg: Leg,
    pub description: Option<&'a str>,
    pub raw_description: Option<&'a str>,
    pub occurred_at: Option<String>,
    pub occurred_at_utc: Option<String>,
    pub timestamp_raw: Option<&'a str>,
    pub timestamp_valid: bool,
    pub location: Option<LocationOut<'a>>,
    pub vessel: VesselOut<'a>,
    pub voyage: Option<&'a str>,
    pub transport_mode: Option<TransportMode>,
    pub mode: Option<&'a str>,
    pub source: Option<&'a str>,
    pub vizion_milestone_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journey_event: Option<&'a JourneyEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipment_location: Option<&'a ShipmentLocation>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub vizion_extra: &'a Map<String, Value>,
    #[serde(skip)]
    pub instant: Option<OffsetDateTime>,
    #[serde(skip)]
    pub estimate_only: bool,
    /// Index of an identical milestone listed earlier in the same update.
    #[serde(skip)]
    pub duplicate_of: Option<usize>,
}

impl MilestoneOut<'_> {
    /// Its code and classifier: how outputs route the events about it.
    pub fn code(&self) -> MilestoneCode {
        MilestoneCode {
            event_code: self.event_code.as_str(),
            event_classifier: self.event_classifier,
        }
    }

    pub(crate) fn is_actual(&self) -> bool {
        self.event_classifier == "ACT"
    }
    fn is_estimate(&self) -> bool {
        self.event_classifier == "EST"
    }
    pub(crate) fn has_unknown_description(&self) -> bool {
        self.event_code == EventCode::Unknown
            && self.description.is_some_and(|d| !d.trim().is_empty())
    }
}

/// Parsed timestamp: the original offset kept, and the same instant in UTC.
struct Stamp {
    instant: OffsetDateTime,
    local: String,
    utc: String,
}

fn parse_timestamp(text: &str) -> Option<Stamp> {
    let instant = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    let local = instant.format(&Rfc3339).ok()?;
    let utc = instant
        .checked_to_offset(UtcOffset::UTC)?
        .format(&Rfc3339)
        .ok()?;
    Some(Stamp {
        instant,
        local,
        utc,
    })
}

/// RFC 3339 in UTC, or `None` when the instant cannot be written that way.
pub(crate) fn utc_text(t: OffsetDateTime) -> Option<String> {
    t.checked_to_offset(UtcOffset::UTC)?.format(&Rfc3339).ok()
}

/// Vizion's update time as RFC 3339 UTC, when it is a valid timestamp.
pub(crate) fn vizion_time(text: Option<&str>) -> Option<String> {
    parse_timestamp(text?).map(|s| s.utc)
}

struct RouteCodes<'a> {
    inland_origin: Option<&'a str>,
    origin_port: Option<&'a str>,
    destination_port: Option<&'a str>,
    inland_destination: Option<&'a str>,
}

fn unlocode(l: Option<&Location>) -> Option<&str> {
    l?.unlocode
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The classifier: estimate-only descriptions are estimates whatever `planned` says;
/// else `planned`; else the DCSA classifier of newer payloads; else unknown.
fn classifier(estimate_only: bool, m: &Milestone) -> &'static str {
    if estimate_only {
        return "EST";
    }
    match m.planned {
        Some(false) => "ACT",
        Some(true) => "EST",
        None => match m
            .journey_event
            .as_ref()
            .and_then(|j| j.event_classifier.as_deref())
            .map(str::trim)
        {
            Some(c) if c.eq_ignore_ascii_case("ACT") => "ACT",
            Some(c) if c.eq_ignore_ascii_case("EST") || c.eq_ignore_ascii_case("PLN") => "EST",
            _ => "UNK",
        },
    }
}

/// UN/LOCODEs compared as the code they stand for: `US LAX`, `uslax` and `USLAX` agree.
fn same_locode(a: &str, b: &str) -> bool {
    let letters = |s: &str| {
        s.bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| b.to_ascii_uppercase())
            .collect::<Vec<u8>>()
    };
    letters(a) == letters(b)
}

fn leg_of(
    named: Option<Leg>,
    code: EventCode,
    m: &Milestone,
    mode: Option<TransportMode>,
    route: &RouteCodes,
) -> Leg {
    if let Some(leg) = named {
        return leg;
    }
    let type_code = m
        .shipment_location
        .as_ref()
        .and_then(|s| s.type_code.as_deref());
    if let Some(t) = type_code {
        let t = t.trim();
        for (name, leg) in [
            ("PRE", Leg::InlandOrigin),
            ("POL", Leg::OriginPort),
            ("POD", Leg::DestinationPort),
            ("PDE", Leg::InlandDestination),
        ] {
            if t.eq_ignore_ascii_case(name) {
                return leg;
            }
        }
    }
    let Some(here) = unlocode(m.location.as_ref()) else {
        return Leg::Unknown;
    };
    let same = |c: Option<&str>| c.is_some_and(|c| same_locode(c, here));
    if same(route.origin_port) {
        Leg::OriginPort
    } else if same(route.destination_port) {
        Leg::DestinationPort
    } else if same(route.inland_origin) {
        Leg::InlandOrigin
    } else if same(route.inland_destination) {
        Leg::InlandDestination
    } else if code.is_port_move()
        && matches!(mode, Some(TransportMode::Vessel | TransportMode::Barge))
        && route.origin_port.is_some()
        && route.destination_port.is_some()
    {
        // A port move by water between the two ports; by rail or road it is inland.
        Leg::Transshipment
    } else {
        Leg::Unknown
    }
}

fn transport_mode(m: &Milestone, implied: Option<TransportMode>) -> Option<TransportMode> {
    m.mode
        .as_deref()
        .and_then(TransportMode::from_vizion)
        .or_else(|| {
            m.journey_event
                .as_ref()
                .and_then(|j| j.transport_mode.as_deref())
                .and_then(TransportMode::from_vizion)
        })
        .or(implied)
}

/// Normalizes every milestone of the update, in list order.
pub(crate) fn milestones(update: &Update) -> Vec<MilestoneOut<'_>> {
    let p = &update.payload;
    let route = RouteCodes {
        inland_origin: unlocode(p.inland_origin.as_ref()),
        origin_port: unlocode(p.origin_port.as_ref()),
        destination_port: unlocode(p.destination_port.as_ref()),
        inland_destination: unlocode(p.inland_destination.as_ref()),
    };
    // Distinct milestones seen so far, per id base.
    let mut seen: HashMap<[u8; 32], Vec<usize>> = HashMap::with_capacity(p.milestones.len());
    let mut out: Vec<MilestoneOut> = Vec::with_capacity(p.milestones.len());
    let mut scratch = Vec::with_capacity(256);
    for (sequence, m) in p.milestones.iter().enumerate() {
        let entry = m.description.as_deref().and_then(lookup);
        let code = entry.map_or(EventCode::Unknown, |e| e.code);
        let base = ids::milestone_base(
            &update.reference_id,
            m.description.as_deref(),
            entry
                .and_then(|e| e.leg)
                .filter(|leg| leg.is_single_place())
                .map(Leg::as_str),
            m.location.as_ref(),
            &mut scratch,
        );
        let group = seen.entry(base).or_default();
        let duplicate_of = group
            .iter()
            .copied()
            .find(|&j| p.milestones.get(j) == Some(m));
        let milestone_id = match duplicate_of.and_then(|j| out.get(j)) {
            Some(original) => original.milestone_id.clone(),
            None => {
                let id = ids::milestone_id(&base, group.len());
                group.push(sequence);
                id
            }
        };
        let stamp = m.timestamp.as_deref().and_then(parse_timestamp);
        // A timestamp that is not text (a number, say) lands in `extra`: not usable either.
        let timestamp_valid =
            (m.timestamp.is_none() || stamp.is_some()) && !m.extra.contains_key("timestamp");
        let (instant, occurred_at, occurred_at_utc) = match stamp {
            Some(s) => (Some(s.instant), Some(s.local), Some(s.utc)),
            None => (None, None, None),
        };
        out.push(MilestoneOut {
            milestone_id,
            sequence,
            event_code: code,
            event_classifier: classifier(entry.is_some_and(|e| e.estimate_only), m),
            leg: leg_of(
                entry.and_then(|e| e.leg),
                code,
                m,
                transport_mode(m, entry.and_then(|e| e.mode)),
                &route,
            ),
            description: m.description.as_deref(),
            raw_description: m.raw_description.as_deref(),
            occurred_at,
            occurred_at_utc,
            timestamp_raw: m.timestamp.as_deref(),
            timestamp_valid,
            location: m.location.as_ref().map(LocationOut::new),
            vessel: VesselOut {
                name: m.vessel.as_deref(),
                imo: m.vessel_imo.as_deref(),
                mmsi: m.vessel_mmsi.as_deref(),
            },
            voyage: m.voyage.as_deref(),
            transport_mode: transport_mode(m, entry.and_then(|e| e.mode)),
            mode: m.mode.as_deref(),
            source: m.source.as_deref(),
            vizion_milestone_id: m.id.as_deref(),
            journey_event: m.journey_event.as_ref(),
            shipment_location: m.shipment_location.as_ref(),
            vizion_extra: &m.extra,
            instant,
            estimate_only: entry.is_some_and(|e| e.estimate_only),
            duplicate_of,
        });
    }
    out
}

/// A date from the summary, pointing at the milestone it comes from.
#[derive(Debug, Serialize)]
pub(crate) struct DatePoint<'a> {
    occurred_at: Option<&'a str>,
    occurred_at_utc: Option<&'a str>,
    milestone_id: &'a str,
}

impl<'a> DatePoint<'a> {
    fn of(m: &'a MilestoneOut<'a>) -> Self {
        DatePoint {
            occurred_at: m.occurred_at.as_deref(),
            occurred_at_utc: m.occurred_at_utc.as_deref(),
            milestone_id: &m.milestone_id,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CurrentStatus<'a> {
    milestone_id: &'a str,
    event_code: EventCode,
    leg: Leg,
    description: Option<&'a str>,
    occurred_at: Option<&'a str>,
    occurred_at_utc: Option<&'a str>,
    unlocode: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Summary<'a> {
    current_status: Option<CurrentStatus<'a>>,
    etd: Option<DatePoint<'a>>,
    atd: Option<DatePoint<'a>>,
    eta: Option<DatePoint<'a>>,
    ata: Option<DatePoint<'a>>,
    pub(crate) journey_complete: bool,
    milestone_count: usize,
    unknown_description_count: usize,
}

/// Derives the summary. Rules (also in `docs/EVENTS.md`):
/// - current status: the actual milestone with the latest valid timestamp (the later one
///   in the list on a tie);
/// - ETD / ATD: the last estimated / first actual departure at the origin port;
/// - ETA: the last estimated arrival at the destination port; failing that, the last
///   estimate-only arrival description (`Estimated arrival at destination`, ...);
/// - ATA: the first actual arrival at the destination port that is not estimate-only;
/// - journey complete: an actual empty return at or after the arrival (the ATA, or else
///   the first actual milestone at the destination port).
pub(crate) fn summary<'a>(ms: &'a [MilestoneOut<'a>], unknown: usize) -> Summary<'a> {
    let timed = |m: &&MilestoneOut| m.instant.is_some();
    let current =
        ms.iter()
            .filter(|m| m.is_actual())
            .filter(timed)
            .fold(None::<&MilestoneOut>, |best, m| match best {
                Some(b) if b.instant > m.instant => Some(b),
                _ => Some(m),
            });
    let at =
        |code: EventCode, leg: Leg| move |m: &&MilestoneOut| m.event_code == code && m.leg == leg;
    let etd = latest_estimate(
        ms.iter()
            .filter(at(EventCode::Departure, Leg::OriginPort))
            .filter(|m| m.is_estimate())
            .collect(),
    );
    let atd = ms
        .iter()
        .filter(at(EventCode::Departure, Leg::OriginPort))
        .find(|m| m.is_actual());
    let eta = arrival_estimate(ms, Leg::DestinationPort);
    let ata = actual_arrival(ms);
    let journey_complete = completing_return(ms).is_some();
    Summary {
        current_status: current.map(|m| CurrentStatus {
            milestone_id: &m.milestone_id,
            event_code: m.event_code,
            leg: m.leg,
            description: m.description,
            occurred_at: m.occurred_at.as_deref(),
            occurred_at_utc: m.occurred_at_utc.as_deref(),
            unlocode: m.location.as_ref().and_then(|l| l.unlocode),
        }),
        etd: etd.map(DatePoint::of),
        atd: atd.map(DatePoint::of),
        eta: eta.map(DatePoint::of),
        ata: ata.map(DatePoint::of),
        journey_complete,
        milestone_count: ms.len(),
        unknown_description_count: unknown,
    }
}

/// The latest estimate, preferring one with a usable time.
fn latest_estimate<'a>(candidates: Vec<&'a MilestoneOut<'a>>) -> Option<&'a MilestoneOut<'a>> {
    candidates
        .iter()
        .rev()
        .find(|m| m.instant.is_some())
        .or_else(|| candidates.last())
        .copied()
}

/// The estimated arrival at `leg` (the summary's ETA for the destination port): the last
/// estimated arrival there; failing that, the last estimate-only arrival description.
pub(crate) fn arrival_estimate<'a>(
    ms: &'a [MilestoneOut<'a>],
    leg: Leg,
) -> Option<&'a MilestoneOut<'a>> {
    let arrivals = || {
        ms.iter()
            .filter(move |m| m.event_code == EventCode::Arrival && m.leg == leg)
    };
    latest_estimate(
        arrivals()
            .filter(|m| m.is_estimate() && !m.estimate_only)
            .collect(),
    )
    .or_else(|| latest_estimate(arrivals().filter(|m| m.estimate_only).collect()))
}

/// The first actual arrival at the destination port that is not estimate-only.
fn actual_arrival<'a>(ms: &'a [MilestoneOut<'a>]) -> Option<&'a MilestoneOut<'a>> {
    ms.iter().find(|m| {
        m.event_code == EventCode::Arrival
            && m.leg == Leg::DestinationPort
            && m.is_actual()
            && !m.estimate_only
    })
}

/// The milestone that shows the journey complete: the first actual empty return at or
/// after the arrival (the ATA, or else the first actual milestone at the destination
/// port).
pub(crate) fn completing_return<'a>(ms: &'a [MilestoneOut<'a>]) -> Option<&'a MilestoneOut<'a>> {
    let arrived = actual_arrival(ms).and_then(|m| m.instant).or_else(|| {
        ms.iter()
            .filter(|m| m.is_actual() && m.leg == Leg::DestinationPort)
            .filter_map(|m| m.instant)
            .min()
    })?;
    ms.iter().find(|m| {
        m.event_code == EventCode::EmptyReturn
            && m.is_actual()
            && m.instant.is_some_and(|t| t >= arrived)
    })
}

#[derive(Debug, Serialize)]
pub(crate) struct Route<'a> {
    inland_origin: Option<LocationOut<'a>>,
    origin_port: Option<LocationOut<'a>>,
    destination_port: Option<LocationOut<'a>>,
    inland_destination: Option<LocationOut<'a>>,
}

/// Data of a tracking update event.
#[derive(Debug, Serialize)]
pub(crate) struct TrackingUpdateData<'a> {
    pub schema_version: u32,
    pub update_id: &'a str,
    pub reference_id: &'a str,
    pub parent_reference_id: Option<&'a str>,
    pub organization_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub created_at: Option<&'a str>,
    pub updated_at: Option<&'a str>,
    pub received_at: &'a str,
    pub container_id: Option<&'a str>,
    pub container_iso: Option<&'a str>,
    pub carrier_scac: Option<&'a str>,
    pub bill_of_lading: Option<&'a str>,
    pub booking_number: Option<&'a str>,
    pub route: Route<'a>,
    // `milestones` is spliced in after serialization; see `events::normalize_update`.
    pub summary: Summary<'a>,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    pub unreadable_milestones: &'a [Value],
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub envelope_extra: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub payload_extra: &'a Map<String, Value>,
}

impl<'a> TrackingUpdateData<'a> {
    pub(crate) fn new(
        update: &'a Update,
        milestones: &'a [MilestoneOut<'a>],
        received_at: &'a str,
        unknown: usize,
    ) -> Self {
        let p = &update.payload;
        let loc = |l: &'a Option<Location>| l.as_ref().map(LocationOut::new);
        TrackingUpdateData {
            schema_version: SCHEMA_VERSION,
            update_id: &update.id,
            reference_id: &update.reference_id,
            parent_reference_id: update.parent_reference_id.as_deref(),
            organization_id: update.organization_id.as_deref(),
            status: update.status.as_deref(),
            created_at: update.created_at.as_deref(),
            updated_at: update.updated_at.as_deref(),
            received_at,
            container_id: p.container_id.as_deref(),
            container_iso: p.container_iso.as_deref(),
            carrier_scac: p.carrier_scac.as_deref(),
            bill_of_lading: p.bill_of_lading.as_deref(),
            booking_number: p.booking_number(),
            route: Route {
                inland_origin: loc(&p.inland_origin),
                origin_port: loc(&p.origin_port),
                destination_port: loc(&p.destination_port),
                inland_destination: loc(&p.inland_destination),
            },
            summary: summary(milestones, unknown),
            unreadable_milestones: &p.unreadable_milestones,
            envelope_extra: &update.extra,
            payload_extra: &p.extra,
        }
    }
}

/// The shipment keys that open the data of every milestone event; the milestone's own
/// fields follow them.
#[derive(Debug, Serialize)]
pub(crate) struct MilestoneKeys<'a> {
    pub schema_version: u32,
    pub update_id: &'a str,
    pub reference_id: &'a str,
    pub container_id: Option<&'a str>,
    pub carrier_scac: Option<&'a str>,
    pub bill_of_lading: Option<&'a str>,
}

impl<'a> MilestoneKeys<'a> {
    pub fn of(update: &'a Update) -> Self {
        let p = &update.payload;
        MilestoneKeys {
            schema_version: SCHEMA_VERSION,
            update_id: &update.id,
            reference_id: &update.reference_id,
            container_id: p.container_id.as_deref(),
            carrier_scac: p.carrier_scac.as_deref(),
            bill_of_lading: p.bill_of_lading.as_deref(),
        }
    }
}

/// Turns a recognised delivery into events.
///
/// `raw_body` is the body as received (kept byte for byte in the batch),
/// `received_at` the time it arrived and `arrival` how (every event's `deliverymode`).
/// The CloudEvents `time` of an update's events is Vizion's `updated_at` when it is a
/// valid timestamp, else `received_at`.
pub fn normalize(
    inbound: &Inbound,
    raw_body: &[u8],
    received_at: OffsetDateTime,
    arrival: DeliveryMode,
    ctx: &EventContext,
) -> NormalizedBatch {
    let received: Arc<str> = Arc::from(utc_text(received_at).unwrap_or_default());
    match inbound {
        Inbound::Update(update) => normalize_update(update, raw_body, received, arrival, ctx),
        Inbound::ExceptionAlert(p) => {
            pass_through(p, &ctx.alert_type, raw_body, received, arrival, ctx)
        }
        Inbound::ReferenceEvent(p) => pass_through(
            p,
            &ctx.reference_event_type,
            raw_body,
            received,
            arrival,
            ctx,
        ),
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    to_json_with_capacity(value, 128)
}

pub(crate) fn to_json_with_capacity<T: Serialize>(value: &T, capacity: usize) -> Vec<u8> {
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

/// The attributes every event made from one update shares: the bridge as `source`, the
/// container as `subject`, the update's time, the reference as partition key and how
/// the update arrived.
pub(crate) struct UpdateAttributes {
    source: Arc<str>,
    subject: Option<String>,
    time: Arc<str>,
    extensions: Vec<(&'static str, String)>,
}

impl UpdateAttributes {
    pub(crate) fn new(
        update: &Update,
        time: Arc<str>,
        arrival: DeliveryMode,
        ctx: &EventContext,
    ) -> Self {
        Self {
            source: ctx.source.clone(),
            subject: non_empty(update.payload.container_id.as_deref()),
            time,
            extensions: vec![
                ("partitionkey", update.reference_id.clone()),
                (DELIVERY_MODE_ATTRIBUTE, arrival.as_str().to_owned()),
            ],
        }
    }

    /// One event of the update, with its own id, type, schema and data.
    pub(crate) fn event(
        &self,
        id: String,
        event_type: &Arc<str>,
        schema: &'static str,
        data: Vec<u8>,
    ) -> CloudEvent {
        CloudEvent {
            id,
            source: self.source.clone(),
            event_type: event_type.clone(),
            subject: self.subject.clone(),
            time: self.time.clone(),
            dataschema: Some(schema),
            extensions: self.extensions.clone(),
            data,
        }
    }
}

pub(crate) fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn normalize_update(
    update: &Update,
    raw_body: &[u8],
    received: Arc<str>,
    arrival: DeliveryMode,
    ctx: &EventContext,
) -> NormalizedBatch {
    let p = &update.payload;
    let milestones = milestones(update);
    let unknown = milestones
        .iter()
        .filter(|m| m.duplicate_of.is_none() && m.has_unknown_description())
        .count();
    let time: Arc<str> = vizion_time(update.updated_at.as_deref())
        .map(Arc::from)
        .unwrap_or_else(|| received.clone());
    let attributes = UpdateAttributes::new(update, time, arrival, ctx);
    let event =
        |id, event_type: &Arc<str>, schema, data| attributes.event(id, event_type, schema, data);

    // Each milestone is serialized once; the bytes go both into its own event, after the
    // shipment keys, and into the tracking update's `milestones` array.
    let milestone_json: Vec<Vec<u8>> = milestones
        .iter()
        .map(|m| to_json_with_capacity(m, 1024))
        .collect();
    // The events and, for the outputs' routing, the code of each.
    let (milestone_events, milestone_codes) = if ctx.milestone_events() {
        let keys = to_json(&MilestoneKeys::of(update));
        milestones
            .iter()
            .zip(&milestone_json)
            .filter(|(m, _)| m.duplicate_of.is_none())
            .map(|(m, json)| {
                let mut data = Vec::with_capacity(keys.len() + json.len());
                join_objects(&mut data, &keys, json);
                let event = event(
                    format!("{}:{}", update.id, m.milestone_id),
                    &ctx.milestone_type,
                    MILESTONE_SCHEMA,
                    data,
                );
                (event, m.code())
            })
            .unzip()
    } else {
        (Vec::new(), Vec::new())
    };

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
    NormalizedBatch {
        tracking_update: Some(tracking_update),
        milestones: milestone_events,
        pass_through: None,
        raw: raw_body.to_vec(),
        unknown_descriptions: unknown,
        keys: BatchKeys {
            reference_id: Some(update.reference_id.clone()),
            container_id: attributes.subject.clone(),
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
    arrival: DeliveryMode,
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
            .chain([(DELIVERY_MODE_ATTRIBUTE, arrival.as_str().to_owned())])
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
/// body and `received_at`, so retrying the same write gives the same event; `arrival`
/// is its `deliverymode`.
pub fn dead_letter_event(
    dead: &DeadLetter,
    raw_body: &[u8],
    received_at: OffsetDateTime,
    arrival: DeliveryMode,
    ctx: &EventContext,
) -> CloudEvent {
    let received = utc_text(received_at).unwrap_or_default();
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
        extensions: vec![(DELIVERY_MODE_ATTRIBUTE, arrival.as_str().to_owned())],
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
    let at = utc_text(unsubscribed_at).unwrap_or_default();
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
