//! The examples in docs/EVENTS.md are real output and valid against the schemas.

#[path = "fixtures/support.rs"]
mod support;

use serde_json::Value;
use support::*;

fn doc_examples() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/EVENTS.md");
    let text = std::fs::read_to_string(path).unwrap();
    text.split("```json\n")
        .skip(1)
        .map(|block| {
            let json = block.split("\n```").next().unwrap();
            serde_json::from_str(json).expect("example is JSON")
        })
        .collect()
}

#[test]
fn examples_are_the_current_output_and_validate() {
    let examples = doc_examples();
    assert_eq!(
        examples.len(),
        5,
        "one tracking update, one milestone and one example per change event"
    );
    let batch = normalize_bytes(&body("mid-journey-transshipment.json"));
    let update = structured(batch.tracking_update().unwrap());
    let arrival = structured(&batch.milestones()[4]);
    assert_eq!(examples[0], update, "tracking update example is stale");
    assert_eq!(examples[1], arrival, "milestone example is stale");
    assert!(schemas().update.is_valid(&examples[0]));
    assert!(schemas().milestone.is_valid(&examples[1]));

    let changes = change_examples();
    let kinds = [
        ".milestone.changed.v1",
        ".eta_changed.v1",
        ".journey_completed.v1",
    ];
    assert_eq!(changes.len(), kinds.len());
    for ((event, kind), example) in changes.iter().zip(kinds).zip(&examples[2..]) {
        assert!(event.event_type().ends_with(kind), "{}", event.event_type());
        assert_eq!(*example, structured(event), "{kind} example is stale");
        assert!(change_schema(event).is_valid(example), "{kind} example");
    }
}

#[test]
fn every_code_in_the_table_is_documented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/EVENTS.md");
    let text = std::fs::read_to_string(path).unwrap();
    for entry in vizion_bridge::events::codes::DESCRIPTIONS {
        let row = format!("| {} | {}", entry.description, entry.code.as_str());
        assert!(
            text.contains(&row),
            "docs/EVENTS.md lacks the row for {:?}",
            entry.description
        );
    }
}
