//! The mapping from Vizion's standardized milestone descriptions to event codes.
//!
//! Codes follow DCSA track-and-trace where DCSA has one (`GTIN`, `GTOT`, `LOAD`, `DISC`,
//! `ARRI`, `DEPA`, `PICK`, `DROP`, `STRP`, `HOLD`, `RELS`); the rest are this project's
//! own four-letter codes for things DCSA does not cover (`AVPU`, `LFDT`, `EMPO`, `EMRT`,
//! `SPOT`). The whole table is [`DESCRIPTIONS`]; `docs/EVENTS.md` lists the same data.

use serde::Serialize;

/// What happened, independent of the carrier's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventCode {
    /// Gate in (full) at a terminal. DCSA.
    #[serde(rename = "GTIN")]
    GateIn,
    /// Gate out (full) from a terminal. DCSA.
    #[serde(rename = "GTOT")]
    GateOut,
    /// Loaded onto a vessel, barge, rail car or truck. DCSA.
    #[serde(rename = "LOAD")]
    Load,
    /// Discharged from a vessel, barge, rail car or truck. DCSA.
    #[serde(rename = "DISC")]
    Discharge,
    /// Means of transport arrived. DCSA.
    #[serde(rename = "ARRI")]
    Arrival,
    /// Means of transport departed. DCSA.
    #[serde(rename = "DEPA")]
    Departure,
    /// Picked up by the customer. DCSA.
    #[serde(rename = "PICK")]
    PickUp,
    /// Delivered to the customer. DCSA (`DROP`).
    #[serde(rename = "DROP")]
    Delivered,
    /// Destuffed (stripped). DCSA.
    #[serde(rename = "STRP")]
    Stripped,
    /// A customs, freight or terminal hold was placed. DCSA (`HOLD`).
    #[serde(rename = "HOLD")]
    Hold,
    /// A hold was lifted or the cargo was released. DCSA (`RELS`).
    #[serde(rename = "RELS")]
    Release,
    /// Available for pickup at the terminal or ramp.
    #[serde(rename = "AVPU")]
    AvailableForPickup,
    /// Free time (last free day) expires.
    #[serde(rename = "LFDT")]
    FreeTimeExpires,
    /// Empty container released to the shipper.
    #[serde(rename = "EMPO")]
    EmptyOut,
    /// Empty container returned.
    #[serde(rename = "EMRT")]
    EmptyReturn,
    /// Rail car spotted for unloading.
    #[serde(rename = "SPOT")]
    CarSpot,
    /// The description is not in the table; the text is kept.
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl EventCode {
    /// The code as it appears in events.
    pub fn as_str(self) -> &'static str {
        match self {
            EventCode::GateIn => "GTIN",
            EventCode::GateOut => "GTOT",
            EventCode::Load => "LOAD",
            EventCode::Discharge => "DISC",
            EventCode::Arrival => "ARRI",
            EventCode::Departure => "DEPA",
            EventCode::PickUp => "PICK",
            EventCode::Delivered => "DROP",
            EventCode::Stripped => "STRP",
            EventCode::Hold => "HOLD",
            EventCode::Release => "RELS",
            EventCode::AvailableForPickup => "AVPU",
            EventCode::FreeTimeExpires => "LFDT",
            EventCode::EmptyOut => "EMPO",
            EventCode::EmptyReturn => "EMRT",
            EventCode::CarSpot => "SPOT",
            EventCode::Unknown => "UNKNOWN",
        }
    }

    /// Whether the code moves a means of transport through a port, which is what makes a
    /// port outside the origin and destination a transshipment port.
    pub(crate) fn is_port_move(self) -> bool {
        matches!(
            self,
            EventCode::Load | EventCode::Discharge | EventCode::Arrival | EventCode::Departure
        )
    }
}

/// Where on the route a milestone happened; the names follow the payload's route fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    InlandOrigin,
    OriginPort,
    Transshipment,
    DestinationPort,
    InlandDestination,
    Unknown,
}

impl Leg {
    /// A place a route has only one of: its inland origin, origin port, destination port
    /// or inland destination (not transshipment, which may happen at several ports).
    pub fn is_single_place(self) -> bool {
        matches!(
            self,
            Leg::InlandOrigin | Leg::OriginPort | Leg::DestinationPort | Leg::InlandDestination
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Leg::InlandOrigin => "inland_origin",
            Leg::OriginPort => "origin_port",
            Leg::Transshipment => "transshipment",
            Leg::DestinationPort => "destination_port",
            Leg::InlandDestination => "inland_destination",
            Leg::Unknown => "unknown",
        }
    }
}

/// Normalized means of transport (DCSA mode names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransportMode {
    Vessel,
    Barge,
    Rail,
    Truck,
}

impl TransportMode {
    /// Reads Vizion's display word (`Vessel`, `Feeder`, `Trunk`, `Rail`, `Truck`, `Barge`)
    /// or a DCSA mode name.
    pub fn from_vizion(mode: &str) -> Option<Self> {
        let m = mode.trim();
        let is = |w: &str| m.eq_ignore_ascii_case(w);
        if is("vessel") || is("feeder") || is("trunk") || is("ocean") || is("sea") {
            Some(TransportMode::Vessel)
        } else if is("barge") {
            Some(TransportMode::Barge)
        } else if is("rail") || is("train") {
            Some(TransportMode::Rail)
        } else if is("truck") || is("road") {
            Some(TransportMode::Truck)
        } else {
            None
        }
    }
}

/// One row of the description table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptionEntry {
    /// The standardized description, matched ignoring ASCII case and extra whitespace.
    pub description: &'static str,
    pub code: EventCode,
    /// The leg, only when the wording names it ("at origin port", "transshipment", ...);
    /// otherwise `None`, and the leg is inferred from the milestone's location.
    pub leg: Option<Leg>,
    /// The means of transport the wording implies, used when `mode` is null.
    pub mode: Option<TransportMode>,
    /// Descriptions that are estimates by nature, whatever `planned` says (Vizion keeps
    /// sending them as estimates even after the arrival happened).
    pub estimate_only: bool,
}

const fn row(
    description: &'static str,
    code: EventCode,
    leg: Option<Leg>,
    mode: Option<TransportMode>,
) -> DescriptionEntry {
    DescriptionEntry {
        description,
        code,
        leg,
        mode,
        estimate_only: false,
    }
}

const fn estimate(description: &'static str) -> DescriptionEntry {
    DescriptionEntry {
        description,
        code: EventCode::Arrival,
        leg: Some(Leg::DestinationPort),
        mode: Some(TransportMode::Vessel),
        estimate_only: true,
    }
}

use EventCode as C;
use Leg as L;
use TransportMode as M;

const VES: Option<M> = Some(M::Vessel);
const RAIL: Option<M> = Some(M::Rail);
const BARGE: Option<M> = Some(M::Barge);
const TRUCK: Option<M> = Some(M::Truck);
const POL: Option<L> = Some(L::OriginPort);
const POD: Option<L> = Some(L::DestinationPort);
const TS: Option<L> = Some(L::Transshipment);
const ONC: Option<L> = Some(L::InlandDestination);

/// Every standardized description this project knows.
pub const DESCRIPTIONS: &[DescriptionEntry] = &[
    // Empty equipment and gates.
    row("Gate out empty", C::EmptyOut, None, None),
    row("Gate in empty", C::EmptyReturn, None, None),
    row("Gate in empty return", C::EmptyReturn, None, None),
    row("Gate in full", C::GateIn, None, None),
    row("Gate in", C::GateIn, None, None),
    row("Gate in at origin port", C::GateIn, POL, None),
    row("Gate out", C::GateOut, None, None),
    row("Gate out from origin port", C::GateOut, POL, None),
    row("Gate out from destination port", C::GateOut, POD, None),
    row("Gate out to consignee", C::GateOut, None, None),
    // Vessel.
    row("Loaded", C::Load, None, None),
    row("Loaded on vessel", C::Load, None, VES),
    row("Loaded on vessel at origin port", C::Load, POL, VES),
    row("Loaded on vessel at transshipment port", C::Load, TS, VES),
    row("Loaded transshipment", C::Load, TS, VES),
    row("Discharged from vessel", C::Discharge, None, VES),
    row(
        "Discharged from vessel at destination port",
        C::Discharge,
        POD,
        VES,
    ),
    row(
        "Discharged from vessel at transshipment port",
        C::Discharge,
        TS,
        VES,
    ),
    row("Discharged transshipment", C::Discharge, TS, VES),
    row("Vessel departure from origin port", C::Departure, POL, VES),
    row(
        "Vessel departure from transshipment port",
        C::Departure,
        TS,
        VES,
    ),
    row("Vessel departed", C::Departure, None, VES),
    row("Vessel arrived at origin port", C::Arrival, POL, VES),
    row("Vessel arrival at transshipment port", C::Arrival, TS, VES),
    row("Vessel arrived at destination port", C::Arrival, POD, VES),
    row("Vessel arrived", C::Arrival, None, VES),
    row("Vessel arrival", C::Arrival, None, VES),
    row("Vessel berthed in port", C::Arrival, None, VES),
    estimate("Estimated arrival at destination"),
    estimate("Estimated time of arrival"),
    // Feeder and barge.
    row("Discharged from feeder", C::Discharge, None, VES),
    row(
        "Discharged from feeder at destination port",
        C::Discharge,
        POD,
        VES,
    ),
    row(
        "Discharged from feeder at transshipment port",
        C::Discharge,
        TS,
        VES,
    ),
    row("Barge arrived", C::Arrival, None, BARGE),
    row("Barge departed", C::Departure, None, BARGE),
    row("Discharged from barge", C::Discharge, None, BARGE),
    row(
        "Discharged from barge at destination port",
        C::Discharge,
        POD,
        BARGE,
    ),
    // Rail.
    row("Loaded on rail", C::Load, None, RAIL),
    row("Loaded on rail at destination port", C::Load, POD, RAIL),
    row(
        "Loaded on rail at interchange facility",
        C::Load,
        None,
        RAIL,
    ),
    row("Discharged from rail", C::Discharge, None, RAIL),
    row(
        "Discharged from rail at inland destination",
        C::Discharge,
        ONC,
        RAIL,
    ),
    row(
        "Discharged from rail at origin port",
        C::Discharge,
        POL,
        RAIL,
    ),
    row(
        "Discharged from rail at interchange facility",
        C::Discharge,
        None,
        RAIL,
    ),
    row("Rail arrival", C::Arrival, None, RAIL),
    row("Rail arrival at inland destination", C::Arrival, ONC, RAIL),
    row("Rail departure", C::Departure, None, RAIL),
    row("Car spot", C::CarSpot, None, RAIL),
    // Truck.
    row("Discharged from truck", C::Discharge, None, TRUCK),
    // Holds and releases.
    row("Customs hold", C::Hold, None, None),
    row("Customs hold release", C::Release, None, None),
    row("Customs release", C::Release, None, None),
    row("Freight hold", C::Hold, None, None),
    row("Freight hold release", C::Release, None, None),
    row("Terminal hold", C::Hold, None, None),
    row("Terminal hold release", C::Release, None, None),
    row("Carrier release", C::Release, None, None),
    row("Released by carrier", C::Release, None, None),
    row("Available for release / delivery", C::Release, None, None),
    // Availability and delivery.
    row("Available for pickup", C::AvailableForPickup, None, None),
    row(
        "Container available for pickup",
        C::AvailableForPickup,
        None,
        None,
    ),
    row("Free time to expire", C::FreeTimeExpires, None, None),
    row("Picked up by customer", C::PickUp, None, None),
    row("Out for delivery", C::GateOut, None, TRUCK),
    row("Delivered", C::Delivered, None, None),
    row("Destuffed and reused for export", C::Stripped, None, None),
];

/// Finds the table row for a description, ignoring ASCII case, surrounding whitespace and
/// repeated inner whitespace.
pub fn lookup(description: &str) -> Option<&'static DescriptionEntry> {
    let d = description.trim();
    let found = DESCRIPTIONS
        .iter()
        .find(|e| e.description.eq_ignore_ascii_case(d));
    if found.is_some() || !d.contains(char::is_whitespace) {
        return found;
    }
    let collapsed = d.split_whitespace().collect::<Vec<_>>().join(" ");
    DESCRIPTIONS
        .iter()
        .find(|e| e.description.eq_ignore_ascii_case(&collapsed))
}
