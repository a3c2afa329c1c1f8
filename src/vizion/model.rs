//! Typed model of a reference update. Every field is optional because Vizion sends
//! nulls, omits fields, and adds new ones over time; nothing that was sent is dropped.

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess};
use serde_json::{Map, Value};

use super::lenient::{keep, take, tolerant_struct, Key, Slot, Target};
use super::{MAX_MILESTONES, TOO_MANY_MILESTONES};

tolerant_struct! {
    /// Latitude and longitude of a place. Numbers sent as strings are read as numbers.
    pub struct Geolocation {
        latitude: f64 = "latitude",
        longitude: f64 = "longitude",
    }
}

tolerant_struct! {
    /// A place: a route location of the payload or where a milestone happened.
    pub struct Location {
        name: String = "name",
        city: String = "city",
        state: String = "state",
        /// Full country name as Vizion sends it (not an ISO code).
        country: String = "country",
        /// UN/LOCODE such as `USLAX`.
        unlocode: String = "unlocode",
        /// Terminal or depot.
        facility: String = "facility",
        geolocation: Geolocation = "geolocation",
        /// IANA time zone, when sent.
        timezone: String = "timezone",
    }
}

tolerant_struct! {
    /// DCSA-style classification that newer payloads may carry on a milestone.
    pub struct JourneyEvent {
        journey_type: String = "journey_type",
        event_classifier: String = "event_classifier",
        event_type: String = "event_type",
        transport_mode: String = "transport_mode",
        facility_type: String = "facility_type",
        empty_indicator: String = "empty_indicator",
        document_type: String = "document_type",
    }
}

tolerant_struct! {
    /// Which route location a milestone belongs to, in newer payloads (`PRE`, `POL`, `POD`, `PDE`, ...).
    pub struct ShipmentLocation {
        type_code: String = "type_code",
    }
}

tolerant_struct! {
    /// One element of `payload.milestones`.
    pub struct Milestone {
        /// Vizion's own milestone id, present only in newer payloads.
        id: String = "id",
        /// Vizion's standardized description, or the carrier's text when it has none.
        description: String = "description",
        raw_description: String = "raw_description",
        /// RFC 3339 text, in UTC or with the local offset of the place.
        timestamp: String = "timestamp",
        /// `true` for an estimate, `false` for an actual event, `None` when unknown.
        planned: bool = "planned",
        location: Location = "location",
        vessel: String = "vessel",
        vessel_imo: String = "vessel_imo",
        vessel_mmsi: String = "vessel_mmsi",
        voyage: String = "voyage",
        /// Display word such as `Vessel`, `Feeder`, `Truck` or `Rail`.
        mode: String = "mode",
        /// `carrier`, `ais`, `terminal`, `rail`, ...
        source: String = "source",
        journey_event: JourneyEvent = "journey_event",
        shipment_location: ShipmentLocation = "shipment_location",
    }
}

/// The `payload` object of a reference update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub reference_id: Option<String>,
    pub container_id: Option<String>,
    pub container_iso: Option<String>,
    pub carrier_scac: Option<String>,
    pub bill_of_lading: Option<String>,
    /// The older name of the booking number.
    pub booking: Option<String>,
    pub booking_number: Option<String>,
    pub inland_origin: Option<Location>,
    pub origin_port: Option<Location>,
    pub destination_port: Option<Location>,
    pub inland_destination: Option<Location>,
    pub milestones: Vec<Milestone>,
    /// Elements of `milestones` that were not objects, kept as received.
    pub unreadable_milestones: Vec<Value>,
    /// Fields this model does not know, and known fields whose value had an unexpected
    /// type, exactly as received.
    pub extra: Map<String, Value>,
}

impl Payload {
    /// The booking number under either of its names (`booking_number` wins).
    pub fn booking_number(&self) -> Option<&str> {
        self.booking_number.as_deref().or(self.booking.as_deref())
    }
}

/// The milestone array: objects become milestones, anything else is kept aside.
///
/// Every element counts towards [`MAX_MILESTONES`], whatever it is, and reading stops at
/// the first element beyond it: what one body can make the model hold is bounded while it
/// is read, not checked after.
struct MilestoneList(Vec<Milestone>, Vec<Value>);

impl Target for MilestoneList {
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Result<Self, Value>, A::Error> {
        let mut items = Vec::new();
        let mut unreadable = Vec::new();
        for _ in 0..MAX_MILESTONES {
            match seq.next_element::<Slot<Milestone>>()? {
                Some(Slot::Typed(m)) => items.push(m),
                Some(Slot::Null) => unreadable.push(Value::Null),
                Some(Slot::Other(v)) => unreadable.push(v),
                None => return Ok(Ok(MilestoneList(items, unreadable))),
            }
        }
        // One more element, of any kind, is one too many; it is skipped over, not kept.
        match seq.next_element::<IgnoredAny>()? {
            Some(_) => Err(de::Error::custom(TOO_MANY_MILESTONES)),
            None => Ok(Ok(MilestoneList(items, unreadable))),
        }
    }
}

impl Target for Payload {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Result<Self, Value>, A::Error> {
        let mut out = Payload::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let extra = &mut out.extra;
            match key.as_str() {
                "reference_id" => out.reference_id = take(&mut map, key, extra)?,
                "container_id" => out.container_id = take(&mut map, key, extra)?,
                "container_iso" => out.container_iso = take(&mut map, key, extra)?,
                "carrier_scac" => out.carrier_scac = take(&mut map, key, extra)?,
                "bill_of_lading" => out.bill_of_lading = take(&mut map, key, extra)?,
                "booking" => out.booking = take(&mut map, key, extra)?,
                "booking_number" => out.booking_number = take(&mut map, key, extra)?,
                "inland_origin" => out.inland_origin = take(&mut map, key, extra)?,
                "origin_port" => out.origin_port = take(&mut map, key, extra)?,
                "destination_port" => out.destination_port = take(&mut map, key, extra)?,
                "inland_destination" => out.inland_destination = take(&mut map, key, extra)?,
                "milestones" => {
                    if let Some(MilestoneList(items, unreadable)) = take(&mut map, key, extra)? {
                        out.milestones = items;
                        out.unreadable_milestones = unreadable;
                    }
                }
                _ => keep(&mut map, key, extra)?,
            }
        }
        Ok(Ok(out))
    }
}

/// The top-level object of any delivery, read in one pass. Which kind of delivery it is
/// gets decided afterwards from these fields.
#[derive(Debug, Default)]
pub(crate) struct Envelope {
    pub id: Option<String>,
    pub status: Option<String>,
    pub reference_id: Option<String>,
    pub organization_id: Option<String>,
    pub parent_reference_id: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub payload: Option<Slot<Payload>>,
    pub extra: Map<String, Value>,
}

impl Target for Envelope {
    /// A top-level array is never a delivery, and the raw body is kept anyway: it is
    /// read through without building it.
    fn from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Result<Self, Value>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(Value::Null))
    }

    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Result<Self, Value>, A::Error> {
        let mut out = Envelope::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let extra = &mut out.extra;
            match key.as_str() {
                "id" => out.id = take(&mut map, key, extra)?,
                "status" => out.status = take(&mut map, key, extra)?,
                "reference_id" => out.reference_id = take(&mut map, key, extra)?,
                "organization_id" => out.organization_id = take(&mut map, key, extra)?,
                "parent_reference_id" => out.parent_reference_id = take(&mut map, key, extra)?,
                "created_at" => out.created_at = take(&mut map, key, extra)?,
                "updated_at" => out.updated_at = take(&mut map, key, extra)?,
                "payload" => out.payload = Some(map.next_value::<Slot<Payload>>()?),
                _ => keep(&mut map, key, extra)?,
            }
        }
        Ok(Ok(out))
    }
}
