//! Declares what the sink publishes into. Every declaration is idempotent, so this
//! runs on every connect; a conflicting existing declaration (another type, or no
//! alternate exchange) fails the connect and is logged, rather than being changed.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::config::RabbitmqConfig;

/// The main exchange's argument naming where unmatched messages go.
pub const ALTERNATE_EXCHANGE: &str = "alternate-exchange";

/// Declares the unrouted fanout exchange and its durable queue, then the durable
/// topic exchange with that alternate exchange: a message no binding matches is kept
/// in the unrouted queue instead of being dropped.
pub async fn declare(channel: &Channel, config: &RabbitmqConfig) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            config.unrouted_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            config.unrouted_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            config.unrouted_queue.as_str().into(),
            config.unrouted_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            main_exchange_arguments(config),
        )
        .await
}

fn main_exchange_arguments(config: &RabbitmqConfig) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        ALTERNATE_EXCHANGE.into(),
        AMQPValue::LongString(LongString::from(
            config.unrouted_exchange.clone().into_bytes(),
        )),
    );
    arguments
}
