//! AMQP properties of a message: CloudEvents binary mode (`cloudEvents:*` application
//! properties, `content_type`), the message id, and persistence.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::sinks::Message;

/// `delivery_mode` of a message the broker writes to disk.
pub const PERSISTENT: u8 = 2;
pub const APP_ID: &str = "vizion-bridge";

/// The properties of `message`, published at `timestamp` (Unix seconds).
pub fn properties(message: &Message<'_>, timestamp: u64) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(event) = message.event {
        for (name, value) in event.amqp_application_properties() {
            headers.insert(ShortString::from(name), long(value));
        }
    }
    for (name, value) in &message.headers {
        headers.insert(ShortString::from(*name), long(value));
    }
    BasicProperties::default()
        .with_content_type(message.content_type.into())
        .with_message_id(message.id.into())
        .with_timestamp(timestamp)
        .with_delivery_mode(PERSISTENT)
        .with_app_id(APP_ID.into())
        .with_headers(headers)
}

fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}
