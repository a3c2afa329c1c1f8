//! Every event produced from every fixture body validates against its JSON Schema.

#[path = "fixtures/support.rs"]
mod support;

use serde_json::json;
use support::*;
use vizion_bridge::events::{self, DeliveryMode, EventContext};
use vizion_bridge::vizion;

#[test]
fn every_event_from_every_fixture_validates() {
    let mut checked = 0;
    for name in accepted_bodies() {
        let batch = normalize_bytes(&body(&name));
        let errors = schema_errors(&batch);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        checked += batch.tracking_update().iter().count() + batch.milestones().len();
    }
    assert!(checked > 250, "only {checked} events were checked");
}

#[test]
fn the_schemas_reject_events_that_break_the_contract() {
    let batch = normalize_bytes(&body("mid-journey-transshipment.json"));
    let s = schemas();

    let mut update = structured(batch.tracking_update().unwrap());
    assert!(s.update.is_valid(&update));
    update["data"]["milestones"][0]["event_code"] = json!("GATE_IN");
    assert!(!s.update.is_valid(&update), "unknown event code accepted");

    let mut milestone = structured(&batch.milestones()[0]);
    assert!(s.milestone.is_valid(&milestone));
    milestone["data"]["occurred_at"] = json!("last Tuesday");
    assert!(
        !s.milestone.is_valid(&milestone),
        "non-RFC 3339 time accepted"
    );

    let mut milestone = structured(&batch.milestones()[0]);
    milestone["data"]
        .as_object_mut()
        .unwrap()
        .remove("milestone_id");
    assert!(
        !s.milestone.is_valid(&milestone),
        "missing milestone_id accepted"
    );

    let mut milestone = structured(&batch.milestones()[0]);
    milestone["data"]["undocumented"] = json!(1);
    assert!(
        !s.milestone.is_valid(&milestone),
        "undocumented field accepted"
    );
}

#[test]
fn dead_letter_events_validate_and_carry_the_body() {
    use base64::Engine as _;
    for name in [
        "dead-not-json.txt",
        "dead-top-level-array.json",
        "dead-missing-id.json",
        "dead-missing-reference-id.json",
        "dead-payload-string.json",
        "dead-unknown-event-type.json",
    ] {
        let raw = body(name);
        let dead = vizion::parse(&raw).expect_err(name);
        let event = events::dead_letter_event(
            &dead,
            &raw,
            RECEIVED_AT,
            DeliveryMode::Webhook,
            &EventContext::default(),
        );
        let json = structured(&event);
        let errors: Vec<String> = schemas()
            .dead_letter
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert_eq!(json["data"]["reason"], dead.reason.as_str());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(json["data"]["raw_body_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, raw, "{name}");
        assert_eq!(json["type"], "com.vizionapi.tracking.dead_letter.v1");
    }
}

#[test]
fn polled_updates_and_unsubscriptions_validate() {
    use vizion_bridge::events::{reference_unsubscribed_event, Unsubscription};

    let raw = body("bol-child-journey-complete.json");
    let inbound = vizion::parse(&raw).unwrap();
    let batch = events::normalize(
        &inbound,
        &raw,
        RECEIVED_AT,
        DeliveryMode::Poll,
        &EventContext::default(),
    );
    assert!(batch.journey_complete());
    assert!(
        schema_errors(&batch).is_empty(),
        "{:?}",
        schema_errors(&batch)
    );
    for event in batch.events() {
        assert_eq!(structured(event)["deliverymode"], "poll");
    }
    assert!(!normalize_bytes(&body("mid-journey-transshipment.json")).journey_complete());

    let event = reference_unsubscribed_event(
        &Unsubscription {
            reference_id: "d7d86c23-b74f-463a-8a7e-c517c302b1ef",
            container_id: Some("KKTU7887918"),
            carrier_scac: None,
            update_id: "6f1c2a9e-3b0d-4f7e-9a51-0c8f2d7b1e44",
            reason: "journey_complete",
            vizion_message: Some("Reference unsubscribed"),
        },
        time::OffsetDateTime::now_utc(),
        &EventContext::default(),
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/reference-unsubscribed.v1.schema.json");
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let json = structured(&event);
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        json["type"],
        "com.vizionapi.tracking.reference.unsubscribed.v1"
    );
    assert_eq!(json["data"]["reason"], "journey_complete");
    let mut broken = json.clone();
    broken["data"]["reference_id"] = serde_json::Value::Null;
    assert!(!validator.is_valid(&broken));
}

#[test]
fn replayed_updates_and_dead_letters_validate() {
    let raw = body("mid-journey-transshipment.json");
    let inbound = vizion::parse(&raw).unwrap();
    let batch = events::normalize(
        &inbound,
        &raw,
        RECEIVED_AT,
        DeliveryMode::Replay,
        &EventContext::default(),
    );
    let errors = schema_errors(&batch);
    assert!(errors.is_empty(), "{errors:?}");
    for event in batch.events() {
        assert_eq!(structured(event)["deliverymode"], "replay");
    }

    let raw = body("dead-missing-id.json");
    let dead = vizion::parse(&raw).unwrap_err();
    let event = events::dead_letter_event(
        &dead,
        &raw,
        RECEIVED_AT,
        DeliveryMode::Replay,
        &EventContext::default(),
    );
    let json = structured(&event);
    assert_eq!(json["deliverymode"], "replay");
    assert!(schemas().dead_letter.is_valid(&json), "{json}");
}

#[test]
fn change_events_validate_and_the_schemas_hold_them_to_the_contract() {
    let mut checked = 0;
    for name in accepted_bodies() {
        let Ok(vizion::Inbound::Update(update)) = vizion::parse(&body(&name)) else {
            continue;
        };
        for event in derive_changes(None, &update)
            .events
            .into_iter()
            .map(|c| c.event)
        {
            let json = structured(&event);
            let errors: Vec<String> = change_schema(&event)
                .iter_errors(&json)
                .map(|e| format!("{} at {}: {e}", event.event_type(), e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:#?}");
            checked += 1;
        }
    }
    assert!(checked > 250, "only {checked} events were checked");

    let examples = change_examples();
    for event in &examples {
        let errors: Vec<String> = change_schema(event)
            .iter_errors(&structured(event))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", event.event_type());
    }
    let s = schemas();

    let mut updated = structured(&examples[0]);
    assert_eq!(updated["data"]["change"], "updated");
    updated["data"].as_object_mut().unwrap().remove("previous");
    assert!(
        !s.milestone_changed.is_valid(&updated),
        "update without previous accepted"
    );
    let mut new = structured(&examples[0]);
    new["data"]["change"] = json!("new");
    assert!(
        !s.milestone_changed.is_valid(&new),
        "new milestone with previous accepted"
    );
    let mut moved = structured(&examples[0]);
    moved["data"]["previous"]["undocumented"] = json!(1);
    assert!(
        !s.milestone_changed.is_valid(&moved),
        "undocumented field accepted"
    );

    let mut eta = structured(&examples[1]);
    assert!(s.eta_changed.is_valid(&eta));
    eta["data"]["eta"] = json!("tomorrow");
    assert!(!s.eta_changed.is_valid(&eta), "non-RFC 3339 ETA accepted");

    let mut done = structured(&examples[2]);
    assert!(s.journey_completed.is_valid(&done));
    done["data"].as_object_mut().unwrap().remove("milestone_id");
    assert!(
        !s.journey_completed.is_valid(&done),
        "missing milestone_id accepted"
    );
}

#[test]
fn a_tracking_update_flagged_stale_validates() {
    let batch = normalize_bytes(&body("mid-journey-transshipment.json"));
    let mut update = batch.tracking_update().unwrap().clone();
    let before = structured(&update);
    events::changes::mark_stale(&mut update);
    let after = structured(&update);
    assert_eq!(after["data"]["stale"], true);
    let mut without = after.clone();
    without["data"].as_object_mut().unwrap().remove("stale");
    assert_eq!(without, before, "only the flag is added");
    let errors: Vec<String> = schemas()
        .update
        .iter_errors(&after)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut not_stale = after;
    not_stale["data"]["stale"] = json!(false);
    assert!(!schemas().update.is_valid(&not_stale));
}
