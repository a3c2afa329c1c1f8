//! One check per standardized description: the code and the leg it maps to.
//!
//! The expected values are written out here independently of the table in
//! `src/events/codes.rs`; the last test makes sure no table row goes untested.

use vizion_bridge::events::codes::{lookup, DESCRIPTIONS};

/// (description, event code, leg named by the wording or "-" when it names none)
const EXPECTED: &[(&str, &str, &str)] = &[
    ("Available for release / delivery", "RELS", "-"),
    ("Released by carrier", "RELS", "-"),
    ("Available for pickup", "AVPU", "-"),
    ("Barge arrived", "ARRI", "-"),
    ("Barge departed", "DEPA", "-"),
    ("Car spot", "SPOT", "-"),
    ("Carrier release", "RELS", "-"),
    ("Container available for pickup", "AVPU", "-"),
    ("Customs hold", "HOLD", "-"),
    ("Customs hold release", "RELS", "-"),
    ("Customs release", "RELS", "-"),
    ("Delivered", "DROP", "-"),
    ("Destuffed and reused for export", "STRP", "-"),
    ("Discharged from barge", "DISC", "-"),
    (
        "Discharged from barge at destination port",
        "DISC",
        "destination_port",
    ),
    ("Picked up by customer", "PICK", "-"),
    ("Out for delivery", "GTOT", "-"),
    ("Discharged from feeder", "DISC", "-"),
    (
        "Discharged from feeder at destination port",
        "DISC",
        "destination_port",
    ),
    (
        "Discharged from feeder at transshipment port",
        "DISC",
        "transshipment",
    ),
    ("Discharged from rail", "DISC", "-"),
    (
        "Discharged from rail at inland destination",
        "DISC",
        "inland_destination",
    ),
    ("Discharged from rail at origin port", "DISC", "origin_port"),
    ("Discharged transshipment", "DISC", "transshipment"),
    ("Discharged from truck", "DISC", "-"),
    ("Discharged from vessel", "DISC", "-"),
    ("Gate out from origin port", "GTOT", "origin_port"),
    ("Gate in at origin port", "GTIN", "origin_port"),
    ("Loaded on vessel at origin port", "LOAD", "origin_port"),
    ("Vessel departure from origin port", "DEPA", "origin_port"),
    (
        "Vessel arrived at destination port",
        "ARRI",
        "destination_port",
    ),
    (
        "Discharged from vessel at destination port",
        "DISC",
        "destination_port",
    ),
    ("Gate out from destination port", "GTOT", "destination_port"),
    ("Gate in empty return", "EMRT", "-"),
    ("Free time to expire", "LFDT", "-"),
    ("Freight hold", "HOLD", "-"),
    ("Freight hold release", "RELS", "-"),
    ("Terminal hold", "HOLD", "-"),
    ("Terminal hold release", "RELS", "-"),
    ("Discharged from rail at interchange facility", "DISC", "-"),
    ("Loaded on rail", "LOAD", "-"),
    (
        "Loaded on rail at destination port",
        "LOAD",
        "destination_port",
    ),
    ("Loaded on rail at interchange facility", "LOAD", "-"),
    ("Rail arrival", "ARRI", "-"),
    (
        "Rail arrival at inland destination",
        "ARRI",
        "inland_destination",
    ),
    ("Rail departure", "DEPA", "-"),
    ("Gate in empty", "EMRT", "-"),
    (
        "Loaded on vessel at transshipment port",
        "LOAD",
        "transshipment",
    ),
    ("Loaded transshipment", "LOAD", "transshipment"),
    (
        "Vessel arrival at transshipment port",
        "ARRI",
        "transshipment",
    ),
    ("Vessel arrived", "ARRI", "-"),
    (
        "Vessel departure from transshipment port",
        "DEPA",
        "transshipment",
    ),
    ("Vessel departed", "DEPA", "-"),
    (
        "Discharged from vessel at transshipment port",
        "DISC",
        "transshipment",
    ),
    ("Gate out empty", "EMPO", "-"),
    ("Gate in full", "GTIN", "-"),
    ("Gate in", "GTIN", "-"),
    ("Gate out", "GTOT", "-"),
    ("Gate out to consignee", "GTOT", "-"),
    ("Loaded on vessel", "LOAD", "-"),
    ("Loaded", "LOAD", "-"),
    ("Vessel berthed in port", "ARRI", "-"),
    ("Vessel arrival", "ARRI", "-"),
    (
        "Estimated arrival at destination",
        "ARRI",
        "destination_port",
    ),
    ("Estimated time of arrival", "ARRI", "destination_port"),
    ("Vessel arrived at origin port", "ARRI", "origin_port"),
];

#[test]
fn every_listed_description_maps_to_its_code_and_leg() {
    let mut wrong = Vec::new();
    for &(description, code, leg) in EXPECTED {
        match lookup(description) {
            None => wrong.push(format!("{description:?}: not in the table")),
            Some(e) => {
                let got_leg = e.leg.map_or("-", |l| l.as_str());
                if e.code.as_str() != code || got_leg != leg {
                    wrong.push(format!(
                        "{description:?}: got {} / {got_leg}, expected {code} / {leg}",
                        e.code.as_str()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
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
            EXPECTED.iter().any(|(d, ..)| *d == e.description),
            "{:?} has no expectation in this file",
            e.description
        );
    }
    assert_eq!(seen.len(), EXPECTED.len());
}
