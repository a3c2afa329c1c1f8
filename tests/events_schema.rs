//! Every event produced from every fixture body validates against its JSON Schema.

#[path = "fixtures/support.rs"]
mod support;

use serde_json::json;
use support::*;
use vizion_bridge::events::{self, EventContext};
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
        let event = events::dead_letter_event(&dead, &raw, RECEIVED_AT, &EventContext::default());
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
