//! Property tests over generated updates.

#[path = "fixtures/support.rs"]
mod support;

use proptest::prelude::*;
use serde_json::{json, Value};
use support::*;
use vizion_bridge::events::codes::DESCRIPTIONS;
use vizion_bridge::events::{self, DeliveryMode, EventContext};
use vizion_bridge::vizion;

fn description() -> impl Strategy<Value = Value> {
    let known: Vec<&'static str> = DESCRIPTIONS.iter().map(|e| e.description).collect();
    prop_oneof![
        8 => prop::sample::select(known).prop_map(Value::from),
        2 => "[A-Za-z ]{0,24}".prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

fn timestamp() -> impl Strategy<Value = Value> {
    let valid = (
        1990i32..2040,
        1u8..=12,
        1u8..=28,
        0u8..24,
        0u8..60,
        -12i8..=14,
        prop::sample::select(vec![0u8, 30, 45]),
        any::<bool>(),
    )
        .prop_map(|(y, mo, d, h, mi, oh, om, zulu)| {
            let offset = if zulu && oh == 0 {
                "Z".to_owned()
            } else {
                format!(
                    "{}{:02}:{:02}",
                    if oh < 0 { '-' } else { '+' },
                    oh.unsigned_abs(),
                    om
                )
            };
            Value::from(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00.000{offset}"
            ))
        });
    prop_oneof![
        8 => valid,
        1 => Just(Value::Null),
        1 => "[0-9T:. -]{0,26}".prop_map(Value::from),
    ]
}

fn location() -> impl Strategy<Value = Value> {
    let place = |name: &str, code: &str, lat: f64, lon: f64| {
        json!({"name": name, "city": name, "state": null, "country": "X", "unlocode": code,
               "facility": null, "geolocation": {"latitude": lat, "longitude": lon}})
    };
    prop_oneof![
        Just(place("SHANGHAI", "CNSHA", 31.23, 121.47)),
        Just(place("SINGAPORE", "SGSIN", 1.27, 103.77)),
        Just(place("ROTTERDAM", "NLRTM", 51.92, 4.48)),
        Just(place("LOS ANGELES", "USLAX", 34.05, -118.24)),
        Just(Value::Null),
        ("[A-Za-z]{0,6}", "[A-Za-z ]{0,12}")
            .prop_map(|(code, name)| json!({"unlocode": code, "name": name})),
    ]
}

fn milestone() -> impl Strategy<Value = Value> {
    (
        description(),
        timestamp(),
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from)],
        location(),
        prop::option::of("[A-Z ]{1,12}"),
        prop::sample::select(vec![
            "Vessel",
            "Feeder",
            "Truck",
            "Rail",
            "Barge",
            "Hovercraft",
        ]),
    )
        .prop_map(
            |(description, timestamp, planned, location, vessel, mode)| {
                json!({"description": description, "raw_description": "carrier text",
                   "timestamp": timestamp, "planned": planned, "location": location,
                   "vessel": vessel, "vessel_imo": null, "vessel_mmsi": null, "voyage": "001E",
                   "mode": mode, "source": "carrier"})
            },
        )
}

fn update() -> impl Strategy<Value = Value> {
    (
        "[a-f0-9]{8}-[a-f0-9]{4}",
        "[a-z0-9-]{1,12}",
        location(),
        location(),
        prop::collection::vec(milestone(), 0..24),
    )
        .prop_map(|(id, reference_id, origin, destination, mut milestones)| {
            // Every milestone distinct, as in real snapshots, so that no edit below can
            // turn two milestones into one.
            for (i, m) in milestones.iter_mut().enumerate() {
                m["raw_description"] = json!(format!("carrier text {i}"));
            }
            json!({"id": id, "status": "data_received", "reference_id": reference_id,
                   "organization_id": "org", "created_at": "2024-01-01T00:00:00.000Z",
                   "updated_at": "2024-01-01T00:00:00.000Z", "parent_reference_id": null,
                   "payload": {"container_id": "ABCU1234560", "carrier_scac": "ABCD",
                               "origin_port": origin, "destination_port": destination,
                               "milestones": milestones}})
        })
}

fn ids(body: &Value) -> Vec<String> {
    let batch = normalize_bytes(&serde_json::to_vec(body).unwrap());
    data(batch.tracking_update().unwrap())["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["milestone_id"].as_str().unwrap().to_owned())
        .collect()
}

fn events_json(raw: &[u8]) -> Vec<Vec<u8>> {
    normalize_bytes(raw)
        .events()
        .map(|e| e.to_structured_json())
        .collect()
}

proptest! {
    #[test]
    fn normalization_is_deterministic(body in update()) {
        let compact = serde_json::to_vec(&body).unwrap();
        let pretty = serde_json::to_vec_pretty(&body).unwrap();
        prop_assert_eq!(normalize_bytes(&compact), normalize_bytes(&compact));
        // Formatting of the body does not change the events, only the raw output.
        prop_assert_eq!(events_json(&compact), events_json(&pretty));
    }

    #[test]
    fn ids_do_not_move_when_an_estimate_moves(
        body in update(),
        new_time in timestamp(),
        pick in any::<prop::sample::Index>(),
    ) {
        let estimates: Vec<usize> = body["payload"]["milestones"].as_array().unwrap().iter()
            .enumerate().filter(|(_, m)| m["planned"] == true).map(|(i, _)| i).collect();
        prop_assume!(!estimates.is_empty());
        let i = estimates[pick.index(estimates.len())];
        let mut moved = body.clone();
        moved["payload"]["milestones"][i]["timestamp"] = new_time;
        moved["id"] = json!("the-next-update");
        prop_assert_eq!(ids(&body), ids(&moved));
    }

    #[test]
    fn ids_are_unique_within_an_update(body in update()) {
        let ids = ids(&body);
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        prop_assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn every_event_validates_against_its_schema(body in update()) {
        let batch = normalize_bytes(&serde_json::to_vec(&body).unwrap());
        let errors = schema_errors(&batch);
        prop_assert!(errors.is_empty(), "{:#?}", errors);
        let n = body["payload"]["milestones"].as_array().unwrap().len();
        prop_assert_eq!(batch.milestones().len(), n);
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(inbound) = vizion::parse(&raw) {
            let batch = events::normalize(&inbound, &raw, RECEIVED_AT, DeliveryMode::Webhook, &EventContext::default());
            prop_assert_eq!(batch.raw_body(), &raw[..]);
        }
    }

    #[test]
    fn mangled_updates_never_panic(body in update(), path in prop::collection::vec(any::<prop::sample::Index>(), 1..4), junk in junk()) {
        // Replace a value somewhere in a valid update by something of another type.
        let mut pointer = String::new();
        let mut at = &body;
        for step in &path {
            match at {
                Value::Object(m) if !m.is_empty() => {
                    let key = m.keys().nth(step.index(m.len())).unwrap();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    at = &m[key];
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = step.index(a.len());
                    pointer.push_str(&format!("/{i}"));
                    at = &a[i];
                }
                _ => break,
            }
        }
        let mut mangled = body.clone();
        *mangled.pointer_mut(&pointer).unwrap() = junk;
        let raw = serde_json::to_vec(&mangled).unwrap();
        match vizion::parse(&raw) {
            Ok(inbound) => {
                let batch = events::normalize(&inbound, &raw, RECEIVED_AT, DeliveryMode::Webhook, &EventContext::default());
                let errors = schema_errors(&batch);
                prop_assert!(errors.is_empty(), "{:#?}", errors);
            }
            Err(dead) => prop_assert!(!dead.reason.as_str().is_empty()),
        }
    }
}

fn junk() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
