//! The broker-neutral messages one [`Envelope`] becomes: what a broker sink publishes,
//! in which stream (Kafka topic, AMQP routing key) and under which key.

use crate::events::{
    CloudEvent, Content, Envelope, MilestoneCode, MilestoneEvents, DATA_CONTENT_TYPE,
};

/// The streams a broker keeps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Tracking-update events.
    Update,
    /// Milestone events, or the change events published in their place.
    Milestone,
    /// Exception alerts and reference events, passed through.
    PassThrough,
    /// Every accepted body as received.
    Raw,
    /// Dead-letter events.
    DeadLetter,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Update,
        MessageKind::Milestone,
        MessageKind::PassThrough,
        MessageKind::Raw,
        MessageKind::DeadLetter,
    ];

    /// The `kind` label of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Update => "update",
            MessageKind::Milestone => "milestone",
            MessageKind::PassThrough => "pass_through",
            MessageKind::Raw => "raw",
            MessageKind::DeadLetter => "dead_letter",
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub kind: MessageKind,
    /// The message id: the event id, or for raw bodies the delivery id.
    pub id: &'a str,
    /// What orders messages (Kafka's partition key): the reference id for updates and
    /// passed-through events, the container id for milestones (so one container's
    /// milestones stay in order), the delivery id for raw bodies and dead letters.
    pub key: Option<&'a str>,
    /// The CloudEvent, whose attributes travel as headers (binary mode). None for raw.
    pub event: Option<&'a CloudEvent>,
    /// The message body: the event's data, or the raw body.
    pub payload: &'a [u8],
    pub content_type: &'static str,
    /// The carrier (routing of updates).
    pub carrier_scac: Option<&'a str>,
    /// The milestone's code and classifier (routing of milestones).
    pub milestone: Option<MilestoneCode>,
    /// Headers beyond the CloudEvents attributes, e.g. a dead letter's reason.
    pub headers: Vec<(&'static str, &'a str)>,
}

/// Header naming why a dead letter was kept.
pub const REASON_HEADER: &str = "vizion_dead_letter_reason";
/// Header naming the kind of delivery a raw body was (`update`, `exception_alert`, …).
pub const DELIVERY_KIND_HEADER: &str = "vizion_delivery_kind";
/// W3C trace context, when the webhook carried one.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Every message `envelope` becomes, updates first, then milestones in Vizion's order
/// (or the change events in their place, routed by the milestone each is about), then
/// the raw body unless it is not to be published.
pub fn messages(envelope: &Envelope) -> Vec<Message<'_>> {
    let mut messages = messages_without_trace(envelope);
    if let Some(traceparent) = envelope.provenance().traceparent() {
        for message in &mut messages {
            message.headers.push((TRACEPARENT_HEADER, traceparent));
        }
    }
    messages
}

fn messages_without_trace(envelope: &Envelope) -> Vec<Message<'_>> {
    match envelope.content() {
        Content::Updates {
            batch,
            kind,
            delivery_id,
            publish,
        } => {
            let delivery_id = delivery_id.as_deref();
            let keys = batch.keys();
            let mut messages = Vec::with_capacity(batch.milestones().len() + 2);
            let event_message = |kind, event, key| Message {
                kind,
                id: CloudEvent::id(event),
                key,
                event: Some(event),
                payload: event.data(),
                content_type: DATA_CONTENT_TYPE,
                carrier_scac: keys.carrier_scac.as_deref(),
                milestone: None,
                headers: Vec::new(),
            };
            let reference_id = keys.reference_id.as_deref();
            if let Some(update) = batch.tracking_update() {
                messages.push(event_message(MessageKind::Update, update, reference_id));
            }
            let container_id = keys.container_id.as_deref().or(reference_id);
            match &publish.milestones {
                MilestoneEvents::Snapshots => {
                    for (event, code) in batch.milestones().iter().zip(batch.milestone_codes()) {
                        let mut message =
                            event_message(MessageKind::Milestone, event, container_id);
                        message.milestone = Some(*code);
                        messages.push(message);
                    }
                }
                MilestoneEvents::Changes(changes) => {
                    for change in changes {
                        let mut message =
                            event_message(MessageKind::Milestone, &change.event, container_id);
                        message.milestone = change.milestone;
                        messages.push(message);
                    }
                }
            }
            if let Some(event) = batch.pass_through() {
                messages.push(event_message(MessageKind::PassThrough, event, reference_id));
            }
            if !publish.raw {
                return messages;
            }
            let raw_id = delivery_id
                .or_else(|| batch.events().next().map(CloudEvent::id))
                .unwrap_or_default();
            messages.push(Message {
                kind: MessageKind::Raw,
                id: raw_id,
                key: delivery_id,
                event: None,
                payload: batch.raw_body(),
                content_type: DATA_CONTENT_TYPE,
                carrier_scac: keys.carrier_scac.as_deref(),
                milestone: None,
                headers: vec![(DELIVERY_KIND_HEADER, kind.as_str())],
            });
            messages
        }
        Content::DeadLetter { event, reason } => vec![Message {
            kind: MessageKind::DeadLetter,
            id: event.id(),
            key: Some(event.id()),
            event: Some(event),
            payload: event.data(),
            content_type: DATA_CONTENT_TYPE,
            carrier_scac: None,
            milestone: None,
            headers: vec![(REASON_HEADER, reason)],
        }],
        Content::BridgeEvent { event, .. } => vec![Message {
            kind: MessageKind::PassThrough,
            id: event.id(),
            key: event.extension("partitionkey"),
            event: Some(event),
            payload: event.data(),
            content_type: DATA_CONTENT_TYPE,
            carrier_scac: None,
            milestone: None,
            headers: Vec::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use time::OffsetDateTime;

    use super::*;
    use crate::events::{self, DeliveryKind, DeliveryMode, EventContext, Provenance};
    use crate::vizion;

    const BODY: &str = r#"{"id":"u1","reference_id":"r1","payload":{"container_id":"MSCU1234567","carrier_scac":"MSCU","milestones":[
        {"description":"Gate out empty","timestamp":"2024-01-01T00:00:00Z","planned":false},
        {"description":"Vessel arrived at destination port","timestamp":"2024-02-01T00:00:00Z","planned":true}]}}"#;

    #[test]
    fn an_update_becomes_its_events_and_the_raw_body_with_their_keys() {
        let inbound = vizion::parse(BODY.as_bytes()).unwrap();
        let batch = events::normalize(
            &inbound,
            BODY.as_bytes(),
            OffsetDateTime::now_utc(),
            DeliveryMode::Webhook,
            &EventContext::default(),
        );
        let provenance = Provenance::Webhook {
            request_id: "req".into(),
            client_ip: Ipv4Addr::LOCALHOST.into(),
            key_id: None,
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let envelope = Envelope::new(
            Content::Updates {
                batch: Box::new(batch),
                kind: DeliveryKind::of(&inbound),
                delivery_id: inbound.dedup_key().map(str::to_owned),
                publish: Default::default(),
            },
            provenance,
            OffsetDateTime::now_utc(),
        );
        let messages = messages(&envelope);
        let kinds: Vec<_> = messages.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MessageKind::Update,
                MessageKind::Milestone,
                MessageKind::Milestone,
                MessageKind::Raw
            ]
        );
        assert_eq!(messages[0].key, Some("r1"));
        assert_eq!(messages[0].carrier_scac, Some("MSCU"));
        assert_eq!(messages[1].key, Some("MSCU1234567"));
        let second = messages[2].milestone.unwrap();
        assert_eq!(
            (second.event_code, second.event_classifier),
            ("ARRI", "EST")
        );
        assert_eq!(messages[3].payload, BODY.as_bytes());
        assert_eq!(messages[3].key, Some("u1"));
        assert_eq!(messages[3].headers[0], (DELIVERY_KIND_HEADER, "update"));
        for message in &messages {
            assert!(message.headers.iter().any(|(n, v)| *n == TRACEPARENT_HEADER
                && *v == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        }
        assert!(messages[..3].iter().all(|m| m.event.is_some()));
    }

    /// Spooled records written before the envelope existed become, once read back, the
    /// very messages (ids, keys, payloads, headers and properties) they became then.
    #[test]
    fn records_spooled_by_earlier_releases_become_the_same_messages() {
        use crate::events::envelope::codec;
        use crate::sinks::{kafka, rabbitmq};

        let fixtures = [
            (
                &include_bytes!("../events/envelope/fixtures/v1_webhook_update.bin")[..],
                include_str!("../events/envelope/fixtures/v1_webhook_update.messages.txt"),
            ),
            (
                include_bytes!("../events/envelope/fixtures/v1_poll_update.bin"),
                include_str!("../events/envelope/fixtures/v1_poll_update.messages.txt"),
            ),
            (
                include_bytes!("../events/envelope/fixtures/v1_webhook_pass_through.bin"),
                include_str!("../events/envelope/fixtures/v1_webhook_pass_through.messages.txt"),
            ),
            (
                include_bytes!("../events/envelope/fixtures/v1_webhook_dead_letter.bin"),
                include_str!("../events/envelope/fixtures/v1_webhook_dead_letter.messages.txt"),
            ),
            (
                include_bytes!("../events/envelope/fixtures/v1_bridge_event.bin"),
                include_str!("../events/envelope/fixtures/v1_bridge_event.messages.txt"),
            ),
        ];
        for (bytes, expected) in fixtures {
            let envelope = codec::decode(bytes).unwrap();
            let mut out = String::new();
            for m in messages(&envelope) {
                out.push_str(&format!(
                    "{:?} id={} key={:?} ct={} scac={:?} ms={:?}\n",
                    m.kind,
                    m.id,
                    m.key,
                    m.content_type,
                    m.carrier_scac,
                    m.milestone.map(|c| (c.event_code, c.event_classifier))
                ));
                out.push_str(&format!(
                    "  payload={}\n",
                    String::from_utf8_lossy(m.payload)
                ));
                if let Some(e) = m.event {
                    for (n, v) in kafka::event_headers(e) {
                        out.push_str(&format!("  kafka {n}={v}\n"));
                    }
                    for (n, v) in rabbitmq::event_properties(e) {
                        out.push_str(&format!("  amqp {n}={v}\n"));
                    }
                    out.push_str(&format!(
                        "  structured={}\n",
                        String::from_utf8_lossy(&e.to_structured_json())
                    ));
                }
                for (n, v) in &m.headers {
                    out.push_str(&format!("  header {n}={v}\n"));
                }
            }
            assert_eq!(out, expected);
        }
    }
}
