//! AMQP properties of a message: CloudEvents binary mode (`cloudEvents:*` application
//! properties, `content_type`), the message id, and persistence.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::events::CloudEvent;
use crate::sinks::Message;

/// Prefix of CloudEvents attributes in AMQP application properties (binary mode).
pub const PROPERTY_PREFIX: &str = "cloudEvents:";

/// AMQP application properties of `event` in binary mode: `cloudEvents:<attribute>`
/// for each attribute. The content type goes into the message's `content-type`
/// property and the body is the event's data.
pub fn event_properties(event: &CloudEvent) -> impl Iterator<Item = (String, &str)> + '_ {
    event
        .attributes()
        .map(|(n, v)| (format!("{PROPERTY_PREFIX}{n}"), v))
}

/// `delivery_mode` of a message the broker writes to disk.
pub const PERSISTENT: u8 = 2;
pub const APP_ID: &str = "vizion-bridge";

/// The properties of `message`, published at `timestamp` (Unix seconds).
pub fn properties(message: &Message<'_>, timestamp: u64) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(event) = message.event {
        for (name, value) in event_properties(event) {
            headers.insert(ShortString::from(name), long(value));
        }
    }
    for (name, value) in &message.headers {
        headers.insert(ShortString::from(*name), long(value));
    }
    BasicProperties::default()
        .with_content_type(message.content_type.into())
        .with_message_id(short(message.id).into())
        .with_timestamp(timestamp)
        .with_delivery_mode(PERSISTENT)
        .with_app_id(APP_ID.into())
        .with_headers(headers)
}

/// `value` cut to AMQP's 255-byte short string, on a character boundary: an id sent
/// in a body can be longer, and the full id stays in `cloudEvents:id`.
fn short(value: &str) -> &str {
    let mut end = value.len().min(255);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{MessageKind, DELIVERY_KIND_HEADER};

    #[test]
    fn a_raw_body_is_persistent_with_its_id_type_and_headers() {
        let message = Message {
            kind: MessageKind::Raw,
            id: "delivery-1",
            key: Some("delivery-1"),
            event: None,
            payload: b"{}",
            content_type: "application/json",
            carrier_scac: None,
            milestone: None,
            headers: vec![(DELIVERY_KIND_HEADER, "update")],
        };
        let properties = properties(&message, 1_700_000_000);
        assert_eq!(*properties.delivery_mode(), Some(PERSISTENT));
        assert_eq!(
            properties.message_id().as_ref().unwrap().as_str(),
            "delivery-1"
        );
        assert_eq!(
            properties.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(*properties.timestamp(), Some(1_700_000_000));
        let headers = properties.headers().as_ref().unwrap().inner();
        assert_eq!(headers.len(), 1);
        assert_eq!(
            headers.get(DELIVERY_KIND_HEADER),
            Some(&AMQPValue::LongString("update".into()))
        );
    }

    #[test]
    fn long_ids_are_cut_to_a_short_string() {
        let id = "é".repeat(200);
        assert_eq!(short(&id).len(), 254);
        assert_eq!(short("abc"), "abc");
    }
}
