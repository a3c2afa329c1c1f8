//! What the delivery tests build their records from.

use crate::events::{Content, DeliveryMode, Envelope, EventContext, Provenance};

/// A dead letter of `body` (which must not parse), received under `request_id`.
pub(crate) fn dead_letter(body: &[u8], request_id: &str) -> Envelope {
    let dead = crate::vizion::parse(body).unwrap_err();
    let received_at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let event = crate::events::dead_letter_event(
        &dead,
        body,
        received_at,
        DeliveryMode::Webhook,
        &EventContext::default(),
    );
    Envelope::new(
        Content::DeadLetter {
            event,
            reason: dead.reason.as_str(),
        },
        Provenance::Webhook {
            request_id: request_id.into(),
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            key_id: None,
            traceparent: None,
        },
        received_at,
    )
}
