//! Parsing and normalizing must not panic on any input, and whatever is produced must be
//! well-formed: every event encodes to valid JSON and the raw body is kept unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use vizion_bridge::events::{self, DeliveryMode, EventContext};
use vizion_bridge::vizion;

fuzz_target!(|body: &[u8]| {
    let ctx = EventContext::default();
    let received_at = OffsetDateTime::UNIX_EPOCH;
    match vizion::parse(body) {
        Ok(inbound) => {
            let _ = inbound.dedup_key();
            let _ = inbound.kind();
            let batch = events::normalize(&inbound, body, received_at, DeliveryMode::Webhook, &ctx);
            assert_eq!(batch.raw_body(), body);
            for event in batch.events() {
                let json = event.to_structured_json();
                assert!(
                    serde_json_is_valid(&json),
                    "invalid structured JSON: {}",
                    String::from_utf8_lossy(&json)
                );
                assert_eq!(
                    event.attributes().count() + 1,
                    vizion_bridge::sinks::kafka::event_headers(event).count()
                );
            }
        }
        Err(dead) => {
            let event =
                events::dead_letter_event(&dead, body, received_at, DeliveryMode::Webhook, &ctx);
            assert!(serde_json_is_valid(&event.to_structured_json()));
        }
    }
});

fn serde_json_is_valid(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}
