//! A downstream consumer of the bridge's RabbitMQ exchange, to copy and adapt.
//!
//! Events are CloudEvents in binary mode: the body is the event's `data`, the context
//! attributes are the `cloudEvents:*` message headers (docs/asyncapi.yaml). The consumer
//! - declares a durable queue of its own, bound to the exchange with the routing keys
//!   it wants, so that messages wait there while it is down;
//! - skips an event whose `cloudEvents:id` it handled recently: RabbitMQ redelivers a
//!   message whose ack was lost, and a webhook the bridge takes twice (a resend
//!   reaching another replica, an update fetched again by polling) is published again
//!   with the same ids;
//! - acknowledges a message only after handling it (at least once);
//! - keeps each container's order: one queue read by one consumer on one channel
//!   receives messages in the order they were published.
//!
//! What breaks that order: several consumers on one queue (or several instances of
//! this one). RabbitMQ hands messages out round-robin, and a message one consumer
//! rejects is requeued behind newer ones. To scale out and keep order per container,
//! bind one queue per consumer through a consistent-hash exchange
//! (`rabbitmq_consistent_hash_exchange`, hashing on the `cloudEvents:partitionkey`
//! header) so that one container always lands on the same queue, or keep a single
//! consumer per queue.
//!
//! ```sh
//! cargo run --example rabbitmq_consumer -- --queue my-team.tracking --binding 'update.*' --binding 'milestone.#'
//! cargo run --example rabbitmq_consumer -- --max-events 100 --idle-timeout 30
//! ```

mod consumer_support;

use clap::Parser;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

use consumer_support::{Event, RecentIds, StopWhen, Tally};

#[derive(Parser)]
struct Args {
    /// The broker (the bridge's `rabbitmq.url`).
    #[arg(
        long,
        env = "RABBITMQ_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    url: String,
    /// The topic exchange the bridge publishes to (`rabbitmq.exchange`).
    #[arg(long, env = "RABBITMQ_EXCHANGE", default_value = "vizion.tracking")]
    exchange: String,
    /// This consumer's own durable queue.
    #[arg(
        long,
        env = "RABBITMQ_QUEUE",
        default_value = "vizion.tracking.example"
    )]
    queue: String,
    /// Routing keys to bind the queue with (repeat the option for several).
    #[arg(long = "binding", default_values_t = ["update.*".to_owned(), "milestone.#".to_owned()])]
    bindings: Vec<String>,
    /// Unacknowledged messages the broker may send ahead: enough to keep the consumer
    /// busy, few enough that a crash redelivers little.
    #[arg(long, default_value_t = 100)]
    prefetch: u16,
    /// How many recent event ids to remember for deduplication.
    #[arg(long, default_value_t = 100_000)]
    dedup_capacity: usize,
    #[command(flatten)]
    stop: StopWhen,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let connection = Connection::connect(&args.url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| fail(&format!("rabbitmq connection: {e}")));
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|e| fail(&format!("rabbitmq channel: {e}")));
    channel
        .basic_qos(args.prefetch, BasicQosOptions::default())
        .await
        .unwrap_or_else(|e| fail(&format!("basic.qos: {e}")));
    channel
        .queue_declare(
            args.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| fail(&format!("declare queue {}: {e}", args.queue)));
    for binding in &args.bindings {
        channel
            .queue_bind(
                args.queue.as_str().into(),
                args.exchange.as_str().into(),
                binding.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| fail(&format!("bind {binding} on {}: {e}", args.exchange)));
    }
    let mut deliveries = channel
        .basic_consume(
            args.queue.as_str().into(),
            "vizion-tracking-example".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| fail(&format!("consume {}: {e}", args.queue)));
    // From here on, whatever the bridge publishes with these routing keys is kept.
    println!("ready queue={}", args.queue);

    let mut seen = RecentIds::new(args.dedup_capacity);
    let mut tally = Tally::default();
    while !args.stop.reached(tally.handled) {
        let delivery = match tokio::time::timeout(args.stop.wait(), deliveries.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(error))) => fail(&format!("rabbitmq: {error}")),
            Ok(Some(Ok(delivery))) => delivery,
        };
        let subject = header(&delivery, "cloudEvents:subject");
        match (
            header(&delivery, "cloudEvents:id"),
            header(&delivery, "cloudEvents:type"),
        ) {
            (Some(id), Some(event_type)) => {
                let event = Event {
                    id: &id,
                    event_type: &event_type,
                    subject: subject.as_deref(),
                };
                if seen.first_time(event.id) {
                    handle(&event, &delivery.data);
                    tally.handled(&event);
                } else {
                    tally.duplicate(&event);
                }
            }
            _ => eprintln!(
                "skipped a message without CloudEvents headers (routing key {})",
                delivery.routing_key
            ),
        }
        // Only now is the message done with; a crash before this line redelivers it.
        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
            fail(&format!("ack: {error}"));
        }
    }
    let _ = connection.close(200, "done".into()).await;
    tally.summary();
}

/// Where a real consumer does its work (write to a database, call a service). It must
/// finish, or fail the process, before the message is acknowledged.
fn handle(_event: &Event, _data: &[u8]) {}

fn header(delivery: &Delivery, name: &str) -> Option<String> {
    match delivery.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        AMQPValue::ShortString(value) => Some(value.as_str().into()),
        _ => None,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1);
}
