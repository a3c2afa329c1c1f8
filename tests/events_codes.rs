//! One check per standardized description: the code and the leg it maps to.
//!
//! The expected values are written out here independently of the table in
//! `src/events/codes.rs`; the last test makes sure no table row goes untested.

use vizion_bridge::events::codes::{lookup, DESCRIPTIONS};

/// One `#[test]` per description, so that a failure names the description.
macro_rules! description_tests {
    ($($name:ident: $description:literal => $code:literal, $leg:literal;)*) => {
        $(
            #[test]
            fn $name() {
                check($description, $code, $leg);
            }
        )*
        /// Every description tested above.
        const TESTED: &[&str] = &[$($description),*];
    };
}

fn check(description: &str, code: &str, leg: &str) {
    let entry =
        lookup(description).unwrap_or_else(|| panic!("{description:?} is not in the table"));
    assert_eq!(entry.code.as_str(), code, "{description:?}");
    assert_eq!(
        entry.leg.map_or("-", |l| l.as_str()),
        leg,
        "{description:?}"
    );
}

// description => event code, leg named by the wording ("-" when it names none)
description_tests! {
    available_for_release_delivery: "Available for release / delivery" => "RELS", "-";
    released_by_carrier: "Released by carrier" => "RELS", "-";
    available_for_pickup: "Available for pickup" => "AVPU", "-";
    barge_arrived: "Barge arrived" => "ARRI", "-";
    barge_departed: "Barge departed" => "DEPA", "-";
    car_spot: "Car spot" => "SPOT", "-";
    carrier_release: "Carrier release" => "RELS", "-";
    container_available_for_pickup: "Container available for pickup" => "AVPU", "-";
    customs_hold: "Customs hold" => "HOLD", "-";
    customs_hold_release: "Customs hold release" => "RELS", "-";
    customs_release: "Customs release" => "RELS", "-";
    delivered: "Delivered" => "DROP", "-";
    destuffed_and_reused_for_export: "Destuffed and reused for export" => "STRP", "-";
    discharged_from_barge: "Discharged from barge" => "DISC", "-";
    discharged_from_barge_at_destination_port: "Discharged from barge at destination port" => "DISC", "destination_port";
    picked_up_by_customer: "Picked up by customer" => "PICK", "-";
    out_for_delivery: "Out for delivery" => "GTOT", "-";
    discharged_from_feeder: "Discharged from feeder" => "DISC", "-";
    discharged_from_feeder_at_destination_port: "Discharged from feeder at destination port" => "DISC", "destination_port";
    discharged_from_feeder_at_transshipment_port: "Discharged from feeder at transshipment port" => "DISC", "transshipment";
    discharged_from_rail: "Discharged from rail" => "DISC", "-";
    discharged_from_rail_at_inland_destination: "Discharged from rail at inland destination" => "DISC", "inland_destination";
    discharged_from_rail_at_origin_port: "Discharged from rail at origin port" => "DISC", "origin_port";
    discharged_transshipment: "Discharged transshipment" => "DISC", "transshipment";
    discharged_from_truck: "Discharged from truck" => "DISC", "-";
    discharged_from_vessel: "Discharged from vessel" => "DISC", "-";
    gate_out_from_origin_port: "Gate out from origin port" => "GTOT", "origin_port";
    gate_in_at_origin_port: "Gate in at origin port" => "GTIN", "origin_port";
    loaded_on_vessel_at_origin_port: "Loaded on vessel at origin port" => "LOAD", "origin_port";
    vessel_departure_from_origin_port: "Vessel departure from origin port" => "DEPA", "origin_port";
    vessel_arrived_at_destination_port: "Vessel arrived at destination port" => "ARRI", "destination_port";
    discharged_from_vessel_at_destination_port: "Discharged from vessel at destination port" => "DISC", "destination_port";
    gate_out_from_destination_port: "Gate out from destination port" => "GTOT", "destination_port";
    gate_in_empty_return: "Gate in empty return" => "EMRT", "-";
    free_time_to_expire: "Free time to expire" => "LFDT", "-";
    freight_hold: "Freight hold" => "HOLD", "-";
    freight_hold_release: "Freight hold release" => "RELS", "-";
    terminal_hold: "Terminal hold" => "HOLD", "-";
    terminal_hold_release: "Terminal hold release" => "RELS", "-";
    discharged_from_rail_at_interchange_facility: "Discharged from rail at interchange facility" => "DISC", "-";
    loaded_on_rail: "Loaded on rail" => "LOAD", "-";
    loaded_on_rail_at_destination_port: "Loaded on rail at destination port" => "LOAD", "destination_port";
    loaded_on_rail_at_interchange_facility: "Loaded on rail at interchange facility" => "LOAD", "-";
    rail_arrival: "Rail arrival" => "ARRI", "-";
    rail_arrival_at_inland_destination: "Rail arrival at inland destination" => "ARRI", "inland_destination";
    rail_departure: "Rail departure" => "DEPA", "-";
    gate_in_empty: "Gate in empty" => "EMRT", "-";
    loaded_on_vessel_at_transshipment_port: "Loaded on vessel at transshipment port" => "LOAD", "transshipment";
    loaded_transshipment: "Loaded transshipment" => "LOAD", "transshipment";
    vessel_arrival_at_transshipment_port: "Vessel arrival at transshipment port" => "ARRI", "transshipment";
    vessel_arrived: "Vessel arrived" => "ARRI", "-";
    vessel_departure_from_transshipment_port: "Vessel departure from transshipment port" => "DEPA", "transshipment";
    vessel_departed: "Vessel departed" => "DEPA", "-";
    discharged_from_vessel_at_transshipment_port: "Discharged from vessel at transshipment port" => "DISC", "transshipment";
    gate_out_empty: "Gate out empty" => "EMPO", "-";
    gate_in_full: "Gate in full" => "GTIN", "-";
    gate_in: "Gate in" => "GTIN", "-";
    gate_out: "Gate out" => "GTOT", "-";
    gate_out_to_consignee: "Gate out to consignee" => "GTOT", "-";
    loaded_on_vessel: "Loaded on vessel" => "LOAD", "-";
    loaded: "Loaded" => "LOAD", "-";
    vessel_berthed_in_port: "Vessel berthed in port" => "ARRI", "-";
    vessel_arrival: "Vessel arrival" => "ARRI", "-";
    estimated_arrival_at_destination: "Estimated arrival at destination" => "ARRI", "destination_port";
    estimated_time_of_arrival: "Estimated time of arrival" => "ARRI", "destination_port";
    vessel_arrived_at_origin_port: "Vessel arrived at origin port" => "ARRI", "origin_port";
}

#[test]
fn matching_ignores_case_and_spacing() {
    for text in [
        "gate in EMPTY return",
        "  Gate in empty return ",
        "Gate in\tempty  return",
    ] {
        assert_eq!(
            lookup(text).map(|e| e.code.as_str()),
            Some("EMRT"),
            "{text:?}"
        );
    }
}

#[test]
fn non_standard_carrier_wording_is_not_in_the_table() {
    // Pass-through names seen in real deliveries, and near misses.
    for text in [
        "Positioned In",
        "Positioned Out",
        "Container Vanned",
        "Gate in emptyreturn",
        "",
    ] {
        assert!(lookup(text).is_none(), "{text:?}");
    }
}

#[test]
fn estimate_only_descriptions_are_marked() {
    let estimate_only: Vec<&str> = DESCRIPTIONS
        .iter()
        .filter(|e| e.estimate_only)
        .map(|e| e.description)
        .collect();
    assert_eq!(
        estimate_only,
        [
            "Estimated arrival at destination",
            "Estimated time of arrival"
        ]
    );
}

#[test]
fn every_table_row_is_checked_above_and_none_is_repeated() {
    let mut seen = std::collections::HashSet::new();
    for e in DESCRIPTIONS {
        assert!(
            seen.insert(e.description.to_ascii_lowercase()),
            "{:?} appears twice",
            e.description
        );
        assert!(
            TESTED.contains(&e.description),
            "{:?} has no test in this file",
            e.description
        );
    }
    assert_eq!(seen.len(), TESTED.len());
}
