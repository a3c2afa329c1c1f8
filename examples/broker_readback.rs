//! Reads back what a sink holds after a load run and checks that every update the
//! bridge accepted (answered 2xx) arrived: it consumes the raw-body stream (Kafka's
//! raw topic, the RabbitMQ queue the messages went to, or the file sink's `raw.jsonl`)
//! and looks up each accepted id, one per line in `--accepted-ids`.
//!
//! Counting is by consuming, never by offsets or queue lengths, which a broker may
//! report loosely. Prints one JSON object; exits 1 when an accepted update is missing.
//!
//! ```sh
//! cargo run --release --example broker_readback -- --accepted-ids ids.txt kafka --bootstrap 127.0.0.1:29092
//! cargo run --release --example broker_readback -- --accepted-ids ids.txt rabbitmq
//! cargo run --release --example broker_readback -- --accepted-ids ids.txt file --raw data/raw.jsonl
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    /// Ids of the accepted updates, one per line.
    #[arg(long)]
    accepted_ids: PathBuf,
    /// Stop once nothing new arrived for this many seconds.
    #[arg(long, default_value_t = 10, global = true)]
    idle: u64,
    #[command(subcommand)]
    sink: Sink,
}

#[derive(Subcommand)]
enum Sink {
    /// Consume the raw topic from the beginning, in a consumer group of its own.
    Kafka {
        #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value = "vizion.tracking.raw")]
        topic: String,
    },
    /// Consume (and so empty) the queue the bridge's messages went to; messages with
    /// the routing key `raw` are the raw bodies.
    Rabbitmq {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long, default_value = "vizion.tracking.unrouted")]
        queue: String,
    },
    /// Read the file sink's raw.jsonl.
    File {
        #[arg(long)]
        raw: PathBuf,
    },
}

/// What was read back.
#[derive(Default)]
struct Found {
    /// Accepted ids seen at least once.
    seen: HashSet<String>,
    /// Raw messages read, accepted or not (warm-up requests count here too).
    raw_messages: u64,
    /// Raw messages of an id already seen (a retried publish may repeat one).
    repeats: u64,
    /// Messages read of any kind.
    messages: u64,
}

impl Found {
    fn raw(&mut self, accepted: &HashSet<String>, id: &str) {
        self.raw_messages += 1;
        if accepted.contains(id) && !self.seen.insert(id.to_owned()) {
            self.repeats += 1;
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let accepted: HashSet<String> = std::fs::read_to_string(&args.accepted_ids)
        .unwrap_or_else(|e| panic!("{}: {e}", args.accepted_ids.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let idle = Duration::from_secs(args.idle);
    let started = Instant::now();
    let (name, found) = match &args.sink {
        Sink::Kafka { bootstrap, topic } => ("kafka", kafka(bootstrap, topic, &accepted, idle)),
        Sink::Rabbitmq { url, queue } => ("rabbitmq", rabbitmq(url, queue, &accepted, idle).await),
        Sink::File { raw } => ("file", file(raw, &accepted)),
    };
    let missing = accepted.len() - found.seen.len();
    println!(
        "{}",
        serde_json::json!({
            "sink": name,
            "accepted": accepted.len(),
            "found": found.seen.len(),
            "missing": missing,
            "raw_messages": found.raw_messages,
            "repeats": found.repeats,
            "messages_read": found.messages,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    if missing > 0 {
        std::process::exit(1);
    }
}

fn kafka(bootstrap: &str, topic: &str, accepted: &HashSet<String>, idle: Duration) -> Found {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("readback-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("kafka consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut found = Found::default();
    let mut last_news = Instant::now();
    while found.seen.len() < accepted.len() && last_news.elapsed() < idle {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_news = Instant::now();
                found.messages += 1;
                let id = message
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or_default();
                found.raw(accepted, id);
            }
            Some(Err(error)) => eprintln!("kafka: {error}"),
            None => {}
        }
    }
    found
}

async fn rabbitmq(url: &str, queue: &str, accepted: &HashSet<String>, idle: Duration) -> Found {
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueuePurgeOptions};
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties};

    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("rabbitmq connection");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_qos(2_000, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "readback".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut found = Found::default();
    while found.seen.len() < accepted.len() {
        match tokio::time::timeout(idle, consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                found.messages += 1;
                if delivery.routing_key.as_str() == "raw" {
                    let id = delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|id| id.as_str().to_owned())
                        .unwrap_or_default();
                    found.raw(accepted, &id);
                }
            }
            Ok(Some(Err(error))) => {
                eprintln!("rabbitmq: {error}");
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // What is left (messages of unaccepted requests) would count in the next run.
    let _ = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
    found
}

fn file(raw: &std::path::Path, accepted: &HashSet<String>) -> Found {
    let text = std::fs::read_to_string(raw).unwrap_or_else(|e| panic!("{}: {e}", raw.display()));
    let mut found = Found::default();
    for line in text.lines() {
        found.messages += 1;
        let value: serde_json::Value =
            serde_json::from_str(line).expect("raw.jsonl holds JSON lines");
        let id = value["delivery_id"].as_str().unwrap_or_default();
        found.raw(accepted, id);
    }
    found
}
