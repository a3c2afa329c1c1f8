//! Golden tests: every fixture body gives exactly the events recorded next to it.
//!
//! To re-record after an intended change, run with `VIZION_BLESS=1` and review the diff.

#[path = "fixtures/support.rs"]
mod support;

use serde_json::{json, Value};
use support::*;

fn golden_of(batch: &vizion_bridge::events::NormalizedBatch) -> Value {
    json!({
        "events": batch.events().map(structured).collect::<Vec<_>>(),
        "unknown_descriptions": batch.unknown_descriptions(),
        "raw_body_len": batch.raw_body().len(),
    })
}

#[test]
fn every_fixture_matches_its_golden_output() {
    let bless = std::env::var_os("VIZION_BLESS").is_some();
    let mut mismatches = Vec::new();
    for name in accepted_bodies() {
        let raw = body(&name);
        let batch = normalize_bytes(&raw);
        assert_eq!(
            batch.raw_body(),
            &raw[..],
            "{name}: raw output is byte for byte"
        );
        let actual = golden_of(&batch);
        let path = fixtures()
            .join("golden")
            .join(name.replace(".json", ".events.json"));
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut text = serde_json::to_string_pretty(&actual).unwrap();
            text.push('\n');
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let expected: Value = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(e) => panic!("{}: {e} (run with VIZION_BLESS=1)", path.display()),
        };
        if expected != actual {
            mismatches.push(name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden output differs for {mismatches:?}"
    );
}

#[test]
fn the_reference_samples_are_copied_unchanged() {
    // The bodies under tests/fixtures are the shared reference samples, byte for byte.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vizion/samples");
    let Ok(dir) = std::fs::read_dir(&shared) else {
        return; // not every checkout has the shared folder beside it
    };
    for entry in dir {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(std::fs::read(entry.path()).unwrap(), body(&name), "{name}");
    }
}
