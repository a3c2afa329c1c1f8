//! A downstream consumer of the bridge's Kafka topics, to copy and adapt.
//!
//! Events are CloudEvents in binary mode: the body is the event's `data`, the context
//! attributes are the `ce_*` headers (docs/asyncapi.yaml). The consumer
//! - skips an event whose `ce_id` it handled recently: a webhook the bridge takes
//!   twice (a resend reaching another replica, an update fetched again by polling)
//!   is published again with the same ids, and Kafka redelivers after a crash;
//! - keeps each container's order: the bridge keys records by reference (updates) or
//!   container (milestones), so one container's events sit in one partition, in order,
//!   and this loop handles one message at a time;
//! - commits an offset only after its message was handled (at least once).
//!
//! ```sh
//! cargo run --example kafka_consumer -- --bootstrap 127.0.0.1:9092 --group my-team
//! cargo run --example kafka_consumer -- --max-events 100 --idle-timeout 30
//! ```

mod consumer_support;

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use consumer_support::{Event, RecentIds, StopWhen, Tally};

#[derive(Parser)]
struct Args {
    /// Kafka bootstrap servers (the bridge's `kafka.brokers`).
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topics to read (the bridge's `kafka.topics.updates` and `.milestones`).
    #[arg(
        long,
        env = "KAFKA_TOPICS",
        value_delimiter = ',',
        default_value = "vizion.tracking.updates,vizion.tracking.milestones"
    )]
    topics: Vec<String>,
    /// Consumer group: every instance of one application shares it, so that each
    /// partition has a single reader.
    #[arg(long, env = "KAFKA_GROUP", default_value = "vizion-tracking-example")]
    group: String,
    /// How many recent event ids to remember for deduplication.
    #[arg(long, default_value_t = 100_000)]
    dedup_capacity: usize,
    #[command(flatten)]
    stop: StopWhen,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        // A new group starts at the oldest record kept rather than missing the backlog.
        .set("auto.offset.reset", "earliest")
        // Offsets are stored by hand once a message is handled, and committed in the
        // background from that store: a crash replays what was not handled, never skips.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .create()
        .unwrap_or_else(|e| fail(&format!("kafka consumer: {e}")));
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .unwrap_or_else(|e| fail(&format!("subscribe to {topics:?}: {e}")));

    let mut seen = RecentIds::new(args.dedup_capacity);
    let mut tally = Tally::default();
    // One message at a time keeps each partition's order. To go faster, run more
    // instances in the group (Kafka spreads partitions) or handle partitions in
    // parallel (`split_partition_queue`), never one partition's messages in parallel.
    while !args.stop.reached(tally.handled) {
        let message = match tokio::time::timeout(args.stop.wait(), consumer.recv()).await {
            Err(_idle) => break,
            Ok(Err(error)) => {
                // librdkafka retries on its own; the error is worth a line, not an exit.
                eprintln!("kafka: {error}");
                continue;
            }
            Ok(Ok(message)) => message,
        };
        match (header(&message, "ce_id"), header(&message, "ce_type")) {
            (Some(id), Some(event_type)) => {
                let event = Event {
                    id,
                    event_type,
                    subject: header(&message, "ce_subject"),
                };
                if seen.first_time(event.id) {
                    handle(&event, message.payload().unwrap_or_default());
                    tally.handled(&event);
                } else {
                    tally.duplicate(&event);
                }
            }
            _ => eprintln!(
                "skipped a record without CloudEvents headers at {}/{}/{}",
                message.topic(),
                message.partition(),
                message.offset()
            ),
        }
        // Only now is the message done with: store its offset for the next commit.
        if let Err(error) = consumer.store_offset_from_message(&message) {
            eprintln!("kafka: storing the offset: {error}");
        }
    }
    // Commit what was handled before leaving, so the next run starts after it.
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        eprintln!("kafka: final commit: {error}");
    }
    tally.summary();
}

/// Where a real consumer does its work (write to a database, call a service). It must
/// finish, or fail the process, before the offset is stored.
fn handle(_event: &Event, _data: &[u8]) {}

fn header<'a>(message: &'a BorrowedMessage, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)?
        .value
        .and_then(|value| std::str::from_utf8(value).ok())
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1);
}
