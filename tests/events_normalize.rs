//! Behaviour of the normalizer on the fixture bodies and small bodies written inline.

#[path = "fixtures/support.rs"]
mod support;

use serde_json::{json, Value};
use support::*;
use vizion_bridge::events::{self, DeliveryMode, EventContext, NormalizedBatch};
use vizion_bridge::sinks::{kafka, rabbitmq};
use vizion_bridge::vizion::{self, Inbound};

fn update_data(batch: &NormalizedBatch) -> Value {
    data(batch.tracking_update().expect("a tracking update"))
}

fn milestone_ids(batch: &NormalizedBatch) -> Vec<String> {
    update_data(batch)["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["milestone_id"].as_str().unwrap().to_owned())
        .collect()
}

fn normalize_value(body: &Value) -> NormalizedBatch {
    normalize_bytes(&serde_json::to_vec(body).unwrap())
}

fn sample(name: &str) -> Value {
    serde_json::from_slice(&body(name)).unwrap()
}

#[test]
fn classifier_follows_planned_except_for_estimates_by_nature() {
    let d = update_data(&normalize_bytes(&body("sparse-early-with-nulls.json")));
    let by_description = |desc: &str| {
        d["milestones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["description"] == desc)
            .unwrap()["event_classifier"]
            .clone()
    };
    assert_eq!(by_description("Gate out empty"), "ACT");
    // Always an estimate (Vizion sends it with `planned: null`).
    assert_eq!(by_description("Estimated arrival at destination"), "EST");
    let d = update_data(&normalize_bytes(&body("mid-journey-transshipment.json")));
    assert_eq!(d["milestones"][4]["event_classifier"], "EST");
}

#[test]
fn timestamps_keep_their_offset_and_give_the_same_instant_in_utc() {
    let d = update_data(&normalize_bytes(&body("offsets-east-west.json")));
    let ms = d["milestones"].as_array().unwrap();
    let cases = [
        (0, "2024-05-01T23:30:00+05:45", "2024-05-01T17:45:00Z"),
        (1, "2024-05-06T00:15:00+14:00", "2024-05-05T10:15:00Z"),
        (
            2,
            "2024-05-06T22:00:00.123456+14:00",
            "2024-05-06T08:00:00.123456Z",
        ),
        (3, "2024-05-06T09:00:00-10:00", "2024-05-06T19:00:00Z"),
        (4, "2024-05-20T08:00:00-03:30", "2024-05-20T11:30:00Z"),
        (6, "2024-05-08T06:00:00Z", "2024-05-08T06:00:00Z"),
    ];
    for (i, local, utc) in cases {
        assert_eq!(ms[i]["occurred_at"], local, "milestone {i}");
        assert_eq!(ms[i]["occurred_at_utc"], utc, "milestone {i}");
        assert_eq!(ms[i]["timestamp_valid"], true);
    }
}

#[test]
fn null_and_unparsable_timestamps_are_kept_without_dropping_the_milestone() {
    let d = update_data(&normalize_bytes(&body("unknown-descriptions.json")));
    let last = &d["milestones"][4];
    assert_eq!(last["occurred_at"], Value::Null);
    assert_eq!(last["timestamp_raw"], Value::Null);
    assert_eq!(last["timestamp_valid"], true);

    let batch = normalize_bytes(&body("invalid-timestamps.json"));
    let d = update_data(&batch);
    let ms = d["milestones"].as_array().unwrap();
    assert_eq!(ms.len(), 5);
    assert_eq!(batch.milestones().len(), 5);
    for (i, raw) in [
        "2024-09-01T10:00:00",
        "2024-13-45T99:00:00Z",
        "next Tuesday",
        "",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(ms[i]["timestamp_raw"], *raw);
        assert_eq!(ms[i]["timestamp_valid"], false, "{raw:?}");
        assert_eq!(ms[i]["occurred_at"], Value::Null);
    }
    // The only valid actual becomes the current status.
    assert_eq!(
        d["summary"]["current_status"]["occurred_at"],
        "2024-09-20T10:00:00+01:00"
    );
    // An invalid `updated_at` makes the event time fall back to the reception time.
    assert_eq!(
        batch.tracking_update().unwrap().time(),
        "2024-11-01T12:00:00Z"
    );
}

#[test]
fn locations_get_a_country_code_and_numeric_coordinates() {
    let d = update_data(&normalize_bytes(&body("odd-locations.json")));
    let route = &d["route"];
    assert_eq!(route["origin_port"]["country_code"], "CN", "lowercase code");
    assert_eq!(
        route["origin_port"]["unlocode"], "cnsha",
        "Vizion's value kept"
    );
    assert_eq!(
        route["destination_port"]["country_code"],
        Value::Null,
        "not letters"
    );
    assert_eq!(
        route["destination_port"]["geolocation"],
        Value::Null,
        "out of range"
    );
    assert_eq!(
        route["inland_destination"]["country_code"],
        Value::Null,
        "too short"
    );
    assert_eq!(
        d["milestones"][0]["location"]["geolocation"],
        Value::Null,
        "half a pair"
    );
    assert_eq!(d["milestones"][0]["location"]["country_code"], Value::Null);

    let d = update_data(&normalize_bytes(&body("extra-fields.json")));
    let geo = &d["milestones"][0]["location"]["geolocation"];
    assert_eq!(
        geo,
        &json!({"latitude": 51.95, "longitude": 4.05}),
        "strings read as numbers"
    );
}

#[test]
fn eta_and_ata_follow_vizion_conventions() {
    // Planned arrival at the destination port is the ETA; no ATA yet.
    let d = update_data(&normalize_bytes(&body("mid-journey-transshipment.json")));
    assert_eq!(
        d["summary"]["eta"]["occurred_at"],
        "2021-08-17T11:00:00-07:00"
    );
    assert_eq!(d["summary"]["ata"], Value::Null);
    assert_eq!(d["summary"]["journey_complete"], false);
    assert_eq!(
        d["summary"]["current_status"]["description"],
        "Loaded on vessel at transshipment port"
    );

    // "Estimated arrival at destination" with planned null is an ETA.
    let d = update_data(&normalize_bytes(&body("sparse-early-with-nulls.json")));
    assert_eq!(
        d["summary"]["eta"]["occurred_at_utc"],
        "2021-08-25T23:00:00Z"
    );
    assert_eq!(d["summary"]["ata"], Value::Null);

    // Actual arrival is the ATA; MSC's "Estimated time of arrival" stays the ETA.
    let d = update_data(&normalize_bytes(&body("msc-eta-then-ata.json")));
    let s = &d["summary"];
    assert_eq!(s["ata"]["occurred_at"], "2024-01-20T05:30:00-08:00");
    assert_eq!(s["eta"]["occurred_at"], "2024-01-19T08:00:00-08:00");
    assert_eq!(s["etd"]["occurred_at"], "2024-01-05T18:00:00+09:00");
    assert_eq!(s["atd"]["occurred_at"], "2024-01-06T02:00:00+09:00");
    assert_eq!(s["journey_complete"], true);
    assert_eq!(s["current_status"]["event_code"], "EMRT");
    let ata_id = s["ata"]["milestone_id"].as_str().unwrap();
    let ata = d["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["milestone_id"] == ata_id);
    assert_eq!(
        ata.unwrap()["description"],
        "Vessel arrived at destination port"
    );
}

#[test]
fn journey_completes_only_with_an_actual_empty_return_after_arrival() {
    let d = update_data(&normalize_bytes(&body("bol-child-journey-complete.json")));
    assert_eq!(d["summary"]["journey_complete"], true);
    assert_eq!(
        d["summary"]["ata"]["occurred_at"],
        "2021-07-18T06:00:00-07:00"
    );

    let mut body = sample("bol-child-journey-complete.json");
    let ms = body["payload"]["milestones"].as_array_mut().unwrap();
    ms[7]["planned"] = json!(true);
    assert_eq!(
        update_data(&normalize_value(&body))["summary"]["journey_complete"],
        false,
        "estimated"
    );
    let ms = body["payload"]["milestones"].as_array_mut().unwrap();
    ms[7]["planned"] = json!(false);
    ms[7]["timestamp"] = json!("2021-07-01T00:00:00.000-07:00");
    assert_eq!(
        update_data(&normalize_value(&body))["summary"]["journey_complete"],
        false,
        "before arrival"
    );
}

#[test]
fn unknown_descriptions_keep_their_text_and_are_counted() {
    let batch = normalize_bytes(&body("unknown-descriptions.json"));
    assert_eq!(batch.unknown_descriptions(), 3);
    let d = update_data(&batch);
    let ms = d["milestones"].as_array().unwrap();
    assert_eq!(ms[0]["event_code"], "UNKNOWN");
    assert_eq!(ms[0]["description"], "Positioned In");
    assert_eq!(
        ms[2]["event_code"], "GTIN",
        "odd case and spacing still match"
    );
    assert_eq!(ms[3]["event_code"], "UNKNOWN");
    assert_eq!(
        ms[3]["description"],
        Value::Null,
        "no description is not new wording"
    );
    assert_eq!(d["summary"]["unknown_description_count"], 3);
    assert_eq!(
        normalize_bytes(&body("mid-journey-transshipment.json")).unknown_descriptions(),
        0
    );
}

#[test]
fn identical_milestones_share_an_id_and_other_milestones_never_do() {
    let batch = normalize_bytes(&body("duplicate-milestones.json"));
    let ids = milestone_ids(&batch);
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[1], ids[2], "exact duplicates are one milestone");
    assert_ne!(
        ids[1], ids[3],
        "same place and wording, different vessel and time"
    );
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 4);
    assert_eq!(
        batch.milestones().len(),
        4,
        "one event per distinct milestone"
    );

    let batch = normalize_bytes(&body("large-200-milestones.json"));
    let ids: std::collections::HashSet<_> = milestone_ids(&batch).into_iter().collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(batch.milestones().len(), 200);
}

#[test]
fn milestone_ids_survive_the_next_snapshot() {
    let first = sample("mid-journey-transshipment.json");
    let ids = milestone_ids(&normalize_value(&first));

    // Next update: the ETA moved, then turned into an actual on another vessel, and a
    // new milestone was appended.
    let mut next = first.clone();
    next["id"] = json!("a3c1e0f2-0000-4000-8000-000000000001");
    let ms = next["payload"]["milestones"].as_array_mut().unwrap();
    ms[4]["timestamp"] = json!("2021-08-19T02:00:00.000-07:00");
    ms[4]["planned"] = json!(false);
    ms[4]["vessel"] = json!("ONE COMMITMENT");
    ms[4]["voyage"] = json!("061E");
    let mut discharged = ms[4].clone();
    discharged["description"] = json!("Discharged from vessel at destination port");
    ms.push(discharged);
    let next_ids = milestone_ids(&normalize_value(&next));
    assert_eq!(next_ids[..5], ids[..]);
    assert!(!ids.contains(&next_ids[5]));

    // Another reference tracking the same journey gets its own ids.
    let mut other = first.clone();
    other["reference_id"] = json!("another-reference");
    let other_ids = milestone_ids(&normalize_value(&other));
    assert!(other_ids.iter().all(|id| !ids.contains(id)));
}

#[test]
fn milestone_events_carry_the_shipment_keys() {
    let batch = normalize_bytes(&body("bol-child-journey-complete.json"));
    assert_eq!(batch.milestones().len(), 8);
    let update = update_data(&batch);
    for (i, event) in batch.milestones().iter().enumerate() {
        let d = data(event);
        assert_eq!(d["container_id"], "CAIU9339738");
        assert_eq!(d["carrier_scac"], "MEDU");
        assert_eq!(d["bill_of_lading"], "MEDUCP391013");
        assert_eq!(d["reference_id"], "ab250383-47cf-4679-8fbf-e07ed52e4bfa");
        assert_eq!(d["update_id"], "0b9d7c55-8e21-4d3a-b6f0-5a2e9c1d7f30");
        assert_eq!(d["milestone_id"], update["milestones"][i]["milestone_id"]);
        assert_eq!(d["sequence"], i);
        assert_eq!(event.subject(), Some("CAIU9339738"));
        assert_eq!(event.event_type(), "com.vizionapi.tracking.milestone.v1");
        assert!(event
            .id()
            .starts_with("0b9d7c55-8e21-4d3a-b6f0-5a2e9c1d7f30:"));
    }
    let vessel = &data(&batch.milestones()[3])["vessel"];
    assert_eq!(
        vessel,
        &json!({"name": "MSC CLORINDA", "imo": "7820394", "mmsi": "352890000"})
    );
}

#[test]
fn update_event_carries_ids_times_and_shipment() {
    let batch = normalize_bytes(&body("bol-child-journey-complete.json"));
    let event = batch.tracking_update().unwrap();
    assert_eq!(event.id(), "0b9d7c55-8e21-4d3a-b6f0-5a2e9c1d7f30");
    assert_eq!(event.time(), "2021-08-02T22:54:02.688Z");
    let d = update_data(&batch);
    assert_eq!(
        d["parent_reference_id"],
        "f3a0c1d2-7b64-4e19-8d2a-9c5e0b7a6f11"
    );
    assert_eq!(d["organization_id"], "3670867f-3634-4dd2-9b27-3531b5affe64");
    assert_eq!(d["received_at"], "2024-11-01T12:00:00Z");
    assert_eq!(d["created_at"], "2021-08-02T22:54:02.688Z");
    assert_eq!(d["container_iso"], "42G1");
    assert_eq!(d["route"]["destination_port"]["unlocode"], "USLGB");
    assert_eq!(d["route"]["inland_origin"], Value::Null);

    let d = update_data(&normalize_bytes(&body("msc-eta-then-ata.json")));
    assert_eq!(d["booking_number"], "BK-MSC-1", "older `booking` name");
}

#[test]
fn nothing_sent_is_lost() {
    let d = update_data(&normalize_bytes(&body("extra-fields.json")));
    assert_eq!(
        d["envelope_extra"],
        json!({"webhook_version": "2", "delivery_attempt": 3})
    );
    assert_eq!(
        d["payload_extra"]["carrier_name"],
        "Mediterranean Shipping Company"
    );
    assert_eq!(
        d["payload_extra"]["container_iso"],
        json!(["45G1"]),
        "wrong type kept"
    );
    assert_eq!(d["payload_extra"]["inland_origin"], "unknown");
    assert_eq!(d["unreadable_milestones"], json!([42, "not a milestone"]));
    let m = &d["milestones"][0];
    assert_eq!(m["vizion_extra"]["carrier_event_code"], "VA");
    assert_eq!(m["vessel"]["imo"], "9777242", "numeric IMO read as text");

    let d = update_data(&normalize_bytes(&body("unicode-names.json")));
    assert_eq!(
        d["route"]["destination_port"]["name"],
        "İSTANBUL (AMBARLI) ,TÜRKİYE"
    );
    assert_eq!(
        d["milestones"][0]["raw_description"],
        "装船 – Loaded on “CMA CGM JACQUES SAADÉ” 🚢"
    );
    assert_eq!(d["bill_of_lading"], "CMDU№12345");

    let d = update_data(&normalize_bytes(&body("sparse-early-with-nulls.json")));
    let m = &d["milestones"][1];
    assert_eq!(
        m["vizion_milestone_id"],
        "c1f0a7d2-5e34-4b8f-9d16-2a7e8c0b4f51"
    );
    assert_eq!(m["journey_event"]["event_type"], "LOAD");
    assert_eq!(m["shipment_location"]["type_code"], "POL");
    assert_eq!(m["leg"], "origin_port");
}

#[test]
fn sparse_bodies_give_an_update_with_nulls() {
    let batch = normalize_bytes(&body("all-null-payload.json"));
    let d = update_data(&batch);
    assert_eq!(d["milestones"], json!([]));
    assert_eq!(d["container_id"], Value::Null);
    assert_eq!(d["summary"]["current_status"], Value::Null);
    assert!(batch.milestones().is_empty());
    assert_eq!(batch.tracking_update().unwrap().subject(), None);

    let batch = normalize_bytes(&body("empty-milestones.json"));
    assert_eq!(update_data(&batch)["summary"]["milestone_count"], 0);
    assert_eq!(batch.events().count(), 1);
}

#[test]
fn structured_and_binary_modes_carry_the_same_event() {
    let batch = normalize_bytes(&body("mid-journey-transshipment.json"));
    for event in batch.events() {
        let s = structured(event);
        assert_eq!(s["data"], data(event));
        assert_eq!(s["datacontenttype"], "application/json");
        assert_eq!(event.content_type(), "application/json");
        for (name, value) in event.attributes() {
            assert_eq!(s[name], value, "{name}");
            assert_ne!(name, "datacontenttype");
        }
        let attribute_count = event.attributes().count();
        // specversion id source type subject time dataschema partitionkey deliverymode
        assert_eq!(attribute_count, 9);
        assert!(event
            .attributes()
            .any(|(n, v)| n == "deliverymode" && v == "webhook"));
        let headers: Vec<(String, &str)> = kafka::event_headers(event).collect();
        assert_eq!(headers.len(), attribute_count + 1);
        assert!(headers.contains(&("ce_specversion".into(), "1.0")));
        assert!(headers.contains(&("ce_id".into(), event.id())));
        assert!(headers.contains(&("ce_type".into(), event.event_type())));
        assert!(headers.contains(&("ce_subject".into(), "KKTU7887918")));
        assert!(headers.contains(&("content-type".into(), "application/json")));
        let props: Vec<(String, &str)> = rabbitmq::event_properties(event).collect();
        assert_eq!(props.len(), attribute_count);
        assert!(props.contains(&("cloudEvents:source".into(), "urn:vizion-bridge")));
        assert!(props.contains(&("cloudEvents:time".into(), event.time())));
    }
}

#[test]
fn source_and_type_prefix_are_configurable() {
    let raw = body("mid-journey-transshipment.json");
    let inbound = vizion::parse(&raw).unwrap();
    let ctx = EventContext::new("https://bridge.example.com/vizion", "com.example.logistics");
    let batch = events::normalize(&inbound, &raw, RECEIVED_AT, DeliveryMode::Webhook, &ctx);
    let update = batch.tracking_update().unwrap();
    assert_eq!(update.source(), "https://bridge.example.com/vizion");
    assert_eq!(update.event_type(), "com.example.logistics.update.v1");
    assert_eq!(
        batch.milestones()[0].event_type(),
        "com.example.logistics.milestone.v1"
    );
    assert!(schema_errors(&batch).is_empty());
}

#[test]
fn alerts_and_reference_events_pass_through_whole() {
    for (name, kind, event_type, subject) in [
        (
            "exception-alert.json",
            "exception_alert",
            "com.vizionapi.tracking.exception_alert.v1",
            "r-alert",
        ),
        (
            "reference-event.json",
            "reference_event",
            "com.vizionapi.tracking.reference_event.v1",
            "r-extra",
        ),
    ] {
        let raw = body(name);
        let inbound = vizion::parse(&raw).unwrap();
        assert_eq!(inbound.kind(), kind);
        assert!(matches!(
            inbound,
            Inbound::ExceptionAlert(_) | Inbound::ReferenceEvent(_)
        ));
        let batch = events::normalize(
            &inbound,
            &raw,
            RECEIVED_AT,
            DeliveryMode::Webhook,
            &EventContext::default(),
        );
        assert!(batch.tracking_update().is_none());
        assert!(batch.milestones().is_empty());
        let event = batch.pass_through().unwrap();
        assert_eq!(event.event_type(), event_type);
        assert_eq!(event.subject(), Some(subject));
        assert_eq!(Some(event.id()), inbound.dedup_key());
        assert_eq!(event.data(), &raw[..], "data is the body as received");
        assert_eq!(
            structured(event)["data"],
            serde_json::from_slice::<Value>(&raw).unwrap()
        );
    }
}

#[test]
fn dead_letters_name_a_precise_reason() {
    for (name, reason) in [
        ("dead-not-json.txt", "not_json"),
        ("dead-top-level-array.json", "unknown_shape"),
        ("dead-missing-id.json", "missing_id"),
        ("dead-missing-reference-id.json", "missing_reference_id"),
        ("dead-payload-string.json", "payload_not_object"),
        ("dead-unknown-event-type.json", "unknown_shape"),
    ] {
        let dead = vizion::parse(&body(name)).expect_err(name);
        assert_eq!(dead.reason.as_str(), reason, "{name}: {dead}");
        assert!(!dead.detail.is_empty());
    }
}

#[test]
fn batch_keys_and_milestone_codes_match_the_event_data() {
    let batch = normalize_bytes(&body("mid-journey-transshipment.json"));
    let update = data(batch.tracking_update().unwrap());
    let keys = batch.keys();
    assert_eq!(
        keys.reference_id.as_deref(),
        update["reference_id"].as_str()
    );
    assert_eq!(
        keys.container_id.as_deref(),
        update["container_id"].as_str()
    );
    assert_eq!(
        keys.carrier_scac.as_deref(),
        update["carrier_scac"].as_str()
    );
    assert_eq!(batch.milestone_codes().len(), batch.milestones().len());
    for (code, event) in batch.milestone_codes().iter().zip(batch.milestones()) {
        let milestone = data(event);
        assert_eq!(milestone["event_code"], code.event_code);
        assert_eq!(milestone["event_classifier"], code.event_classifier);
    }
}

fn one_milestone_update(milestone: Value, route: Value) -> Value {
    let mut payload = json!({
        "container_id": "MSCU1234567",
        "carrier_scac": "MSCU",
        "milestones": [milestone]
    });
    for (k, v) in route.as_object().unwrap() {
        payload[k] = v.clone();
    }
    json!({"id": "u", "reference_id": "r", "payload": payload})
}

fn only_milestone(body: &Value) -> Value {
    update_data(&normalize_value(body))["milestones"][0].clone()
}

#[test]
fn estimates_by_nature_stay_estimates_and_dcsa_classifiers_fill_a_null_planned() {
    let m = only_milestone(&one_milestone_update(
        json!({"description": "Estimated time of arrival", "planned": false, "timestamp": "2024-01-01T00:00:00Z"}),
        json!({}),
    ));
    assert_eq!(m["event_classifier"], "EST");
    let m = only_milestone(&one_milestone_update(
        json!({"description": "Gate out empty", "planned": null, "journey_event": {"event_classifier": "ACT"}}),
        json!({}),
    ));
    assert_eq!(m["event_classifier"], "ACT");
    let m = only_milestone(&one_milestone_update(
        json!({"description": "Gate out empty", "planned": null, "journey_event": {"event_classifier": "PLN"}}),
        json!({}),
    ));
    assert_eq!(m["event_classifier"], "EST");
}

#[test]
fn a_locode_written_with_a_space_still_matches_the_route() {
    let body = one_milestone_update(
        json!({"description": "Vessel arrived at destination port", "planned": false,
               "timestamp": "2024-02-01T06:00:00-08:00", "mode": "Vessel",
               "location": {"unlocode": "US LAX"}}),
        json!({"origin_port": {"unlocode": "CNSHA"}, "destination_port": {"unlocode": "USLAX"}}),
    );
    let d = update_data(&normalize_value(&body));
    assert_eq!(d["milestones"][0]["leg"], "destination_port");
    assert_eq!(d["milestones"][0]["location"]["country_code"], "US");
    assert_eq!(
        d["summary"]["ata"]["occurred_at"],
        "2024-02-01T06:00:00-08:00"
    );
}

#[test]
fn an_inland_move_off_the_route_is_not_a_transshipment() {
    let body = one_milestone_update(
        json!({"description": "Loaded", "planned": false, "mode": "Rail", "location": {"unlocode": "USCHI"}}),
        json!({"origin_port": {"unlocode": "CNSHA"}, "destination_port": {"unlocode": "USLAX"}}),
    );
    assert_eq!(only_milestone(&body)["leg"], "unknown");
    // The same move by vessel, between the two ports of the route, is a transshipment.
    let by_vessel = one_milestone_update(
        json!({"description": "Loaded", "planned": false, "mode": "Vessel", "location": {"unlocode": "SGSIN"}}),
        json!({"origin_port": {"unlocode": "CNSHA"}, "destination_port": {"unlocode": "USLAX"}}),
    );
    assert_eq!(only_milestone(&by_vessel)["leg"], "transshipment");
}

#[test]
fn a_country_code_comes_only_from_a_well_formed_locode() {
    for (unlocode, expected) in [
        ("USLAX", json!("US")),
        ("us lax", json!("US")),
        ("DEHA2", json!("DE")),
        ("unknown", Value::Null),
        ("Chittagong", Value::Null),
        ("TBD", Value::Null),
    ] {
        let m = only_milestone(&one_milestone_update(
            json!({"description": "Gate out empty", "location": {"unlocode": unlocode}}),
            json!({}),
        ));
        assert_eq!(
            m["location"]
                .get("country_code")
                .cloned()
                .unwrap_or(Value::Null),
            expected,
            "{unlocode}"
        );
    }
}

#[test]
fn a_timestamp_that_is_not_text_is_flagged() {
    let m = only_milestone(&one_milestone_update(
        json!({"description": "Gate out empty", "timestamp": 1625000000000u64, "planned": false}),
        json!({}),
    ));
    assert_eq!(m["timestamp_valid"], false);
    assert_eq!(m["occurred_at"], Value::Null);
}

#[test]
fn oversized_and_out_of_range_bodies_are_dead_letters_with_precise_reasons() {
    let milestones: Vec<Value> = (0..=vizion::MAX_MILESTONES)
        .map(|i| json!({"a": i}))
        .collect();
    let body = json!({"id": "u", "reference_id": "r", "payload": {"milestones": milestones}});
    let dead = vizion::parse(&serde_json::to_vec(&body).unwrap()).unwrap_err();
    assert_eq!(dead.reason.as_str(), "too_many_milestones");
    let dead =
        vizion::parse(br#"{"id":"u","reference_id":"r","payload":{"score":1e400}}"#).unwrap_err();
    assert_eq!(dead.reason.as_str(), "number_out_of_range");
}

#[test]
fn estimated_date_changes_are_reference_events() {
    let body = br#"{"id":"e1","event_type":"estimated_arrival_changed","reference_id":"r"}"#;
    assert!(matches!(
        vizion::parse(body).unwrap(),
        Inbound::ReferenceEvent(_)
    ));
}

#[test]
fn a_milestone_at_a_named_leg_keeps_its_id_when_its_location_is_filled_in() {
    let sparse = json!({"description": "Loaded on vessel at origin port", "planned": false,
        "timestamp": "2021-07-05T18:30:00.000Z",
        "location": {"name": "Chittagong Port Authority", "facility": "Chittagong Port Authority", "unlocode": null}});
    let enriched = json!({"description": "Loaded on vessel at origin port", "planned": false,
        "timestamp": "2021-07-05T18:30:00.000Z",
        "location": {"name": "Chittagong Port Authority", "facility": "Chittagong Port Authority", "unlocode": "BDCGP"}});
    let route = json!({});
    let before = only_milestone(&one_milestone_update(sparse, route.clone()));
    let after = only_milestone(&one_milestone_update(enriched, route));
    assert_eq!(before["milestone_id"], after["milestone_id"]);

    // Without a named leg the place tells milestones apart: two loads at different
    // transshipment ports are different milestones.
    let at = |port: &str| json!({"description": "Loaded on vessel at transshipment port", "planned": false, "location": {"unlocode": port}});
    let body = json!({"id": "u", "reference_id": "r", "payload": {"milestones": [at("SGSIN"), at("LKCMB")]}});
    let d = update_data(&normalize_value(&body));
    assert_ne!(
        d["milestones"][0]["milestone_id"],
        d["milestones"][1]["milestone_id"]
    );
}

#[test]
fn unknown_location_fields_are_kept() {
    let m = only_milestone(&one_milestone_update(
        json!({"description": "Gate out empty", "location": {
            "unlocode": "USLAX", "un_locode": "USLAX", "location_type_code": "POD", "geolocation": "33.7,-118.2"}}),
        json!({}),
    ));
    let extra = &m["location"]["vizion_extra"];
    assert_eq!(extra["un_locode"], "USLAX");
    assert_eq!(extra["location_type_code"], "POD");
    assert_eq!(
        extra["geolocation"], "33.7,-118.2",
        "a value of an unexpected type is kept as sent"
    );
    let plain = only_milestone(&one_milestone_update(
        json!({"description": "Gate out empty", "location": {"unlocode": "USLAX"}}),
        json!({}),
    ));
    assert!(
        plain["location"].get("vizion_extra").is_none(),
        "absent when there is nothing extra"
    );
}
