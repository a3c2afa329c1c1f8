//! The broker ceiling of this machine: publishes the messages the bridge would send
//! for a stream of updates straight to Kafka or RabbitMQ, with the bridge's
//! guarantees (Kafka: idempotent producer, `acks=all`; RabbitMQ: publisher confirms,
//! persistent messages, mandatory, into a durable queue), with no HTTP, no checks and
//! no parsing on the way, and as many updates in flight as asked. Reports confirmed
//! updates per second.
//!
//! The messages are built by the bridge's own code (`vizion::parse`,
//! `events::normalize`, `sinks::messages`, and the sinks' header and property
//! builders) from the same bodies the load tool sends, so the bytes match.
//!
//! ```sh
//! cargo run --release --example broker_ceiling -- kafka --bootstrap 127.0.0.1:29092
//! cargo run --release --example broker_ceiling -- rabbitmq --url amqp://guest:guest@127.0.0.1:5672/%2f
//! ```

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::future::join_all;
use time::OffsetDateTime;
use vizion_bridge::events::{
    self, Content, DeliveryKind, DeliveryMode, Envelope, EventContext, Provenance,
};
use vizion_bridge::vizion;

#[path = "../crates/vizion-sim/src/bodies.rs"]
mod bodies;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    broker: Broker,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 30, global = true)]
    duration: u64,
    /// Seconds of warm-up that are not measured.
    #[arg(long, default_value_t = 5, global = true)]
    warmup: u64,
    /// Updates published at once, each waiting for all its confirms before the next.
    #[arg(long, default_value_t = 256, global = true)]
    in_flight: usize,
    /// Distinct updates built up front and published in turn.
    #[arg(long, default_value_t = 2_000, global = true)]
    distinct: usize,
    /// Print one JSON object instead of a line of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Broker {
    /// Publish to Kafka topics named like the bridge's, with a prefix.
    Kafka {
        #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Prefix of the topic names, so that these messages stay apart from the bridge's.
        #[arg(long, default_value = "ceiling.")]
        topic_prefix: String,
        /// Partitions of each topic when it is created here.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
    /// Publish to a durable topic exchange whose alternate exchange feeds a durable
    /// queue, like the bridge's topology; the queue is deleted at the end.
    Rabbitmq {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long, default_value = "vizion.ceiling")]
        exchange: String,
        /// Channels the publishes are spread over.
        #[arg(long, default_value_t = 8)]
        channels: usize,
    },
}

/// One update as the bridge has it once parsed and normalized.
struct Prepared(Envelope);

impl Prepared {
    fn record(&self) -> &Envelope {
        &self.0
    }
}

fn prepare(count: usize) -> Vec<Prepared> {
    let ctx = EventContext::default();
    let run = std::process::id();
    let templates = bodies::BodyTemplates::new(3, 15);
    (0..count as u64)
        .map(|n| {
            let body = templates.render(n, &format!("ceiling-{run}-{n:010}"));
            let inbound = vizion::parse(&body).expect("the load tool's bodies parse");
            let received_at = OffsetDateTime::now_utc();
            let batch =
                events::normalize(&inbound, &body, received_at, DeliveryMode::Webhook, &ctx);
            Prepared(Envelope::new(
                Content::Updates {
                    batch: Box::new(batch),
                    kind: DeliveryKind::of(&inbound),
                    delivery_id: inbound.dedup_key().map(str::to_owned),
                    publish: Default::default(),
                },
                Provenance::Webhook {
                    request_id: format!("ceiling-{n}"),
                    client_ip: Ipv4Addr::LOCALHOST.into(),
                    key_id: None,
                    traceparent: None,
                },
                received_at,
            ))
        })
        .collect()
}

/// Counts what the workers confirm, from the end of the warm-up on.
struct Tally {
    measuring: AtomicBool,
    updates: AtomicU64,
    messages: AtomicU64,
    failures: AtomicU64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let prepared = Arc::new(prepare(args.distinct));
    let tally = Arc::new(Tally {
        measuring: AtomicBool::new(false),
        updates: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        failures: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let broker_name;
    let workers: Vec<tokio::task::JoinHandle<()>> = match &args.broker {
        Broker::Kafka {
            bootstrap,
            topic_prefix,
            partitions,
        } => {
            broker_name = "kafka";
            let publisher = Arc::new(
                kafka::Publisher::connect(bootstrap, topic_prefix, *partitions)
                    .await
                    .expect("kafka publisher"),
            );
            (0..args.in_flight)
                .map(|_| {
                    let (publisher, prepared, tally, stop, next) = (
                        publisher.clone(),
                        prepared.clone(),
                        tally.clone(),
                        stop.clone(),
                        next.clone(),
                    );
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                            let record = prepared[n % prepared.len()].record();
                            let outcome = publisher.publish(record).await;
                            count(&tally, outcome);
                        }
                    })
                })
                .collect()
        }
        Broker::Rabbitmq {
            url,
            exchange,
            channels,
        } => {
            broker_name = "rabbitmq";
            let publisher = Arc::new(
                rabbitmq::Publisher::connect(url, exchange, *channels)
                    .await
                    .expect("rabbitmq publisher"),
            );
            let workers = (0..args.in_flight)
                .map(|_| {
                    let (publisher, prepared, tally, stop, next) = (
                        publisher.clone(),
                        prepared.clone(),
                        tally.clone(),
                        stop.clone(),
                        next.clone(),
                    );
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                            let record = prepared[n % prepared.len()].record();
                            let outcome = publisher.publish(record).await;
                            count(&tally, outcome);
                        }
                    })
                })
                .collect();
            // The queue is deleted once the workers are done (below).
            RABBIT.set(publisher).ok();
            workers
        }
    };

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    tally.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    tally.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    join_all(workers).await;
    if let Some(publisher) = RABBIT.get() {
        publisher.delete_queue().await;
    }

    let updates = tally.updates.load(Ordering::Relaxed);
    let messages = tally.messages.load(Ordering::Relaxed);
    let failures = tally.failures.load(Ordering::Relaxed);
    let rate = updates as f64 / elapsed;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "broker": broker_name,
                "in_flight": args.in_flight,
                "seconds": elapsed,
                "updates": updates,
                "messages": messages,
                "failures": failures,
                "updates_per_second": rate,
                "messages_per_second": messages as f64 / elapsed,
            })
        );
    } else {
        println!(
            "broker={broker_name} in_flight={} updates={updates} messages={messages} failures={failures} rate={rate:.0} updates/s ({:.0} messages/s)",
            args.in_flight,
            messages as f64 / elapsed
        );
    }
    if failures > 0 {
        std::process::exit(1);
    }
}

static RABBIT: std::sync::OnceLock<Arc<rabbitmq::Publisher>> = std::sync::OnceLock::new();

fn count(tally: &Tally, outcome: Result<usize, String>) {
    if !tally.measuring.load(Ordering::Relaxed) {
        return;
    }
    match outcome {
        Ok(messages) => {
            tally.updates.fetch_add(1, Ordering::Relaxed);
            tally.messages.fetch_add(messages as u64, Ordering::Relaxed);
        }
        Err(error) => {
            if tally.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("publish failed: {error}");
            }
        }
    }
}

mod kafka {
    use std::time::Duration;

    use futures_util::future::join_all;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use vizion_bridge::events::Envelope;
    use vizion_bridge::sinks::kafka::{KafkaConfig, KafkaSink};
    use vizion_bridge::sinks::{messages, MessageKind};

    pub struct Publisher {
        producer: FutureProducer,
        topics: vizion_bridge::sinks::kafka::KafkaTopics,
    }

    impl Publisher {
        /// A producer set up as the bridge's (`[kafka]` defaults), and the topics.
        pub async fn connect(
            bootstrap: &str,
            prefix: &str,
            partitions: i32,
        ) -> Result<Self, String> {
            let defaults = KafkaConfig::default();
            let mut topics = defaults.topics.clone();
            for topic in [
                &mut topics.updates,
                &mut topics.milestones,
                &mut topics.alerts,
                &mut topics.raw,
                &mut topics.dead_letters,
            ] {
                *topic = format!("{prefix}{topic}");
            }
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .create()
                .map_err(|e| e.to_string())?;
            let new: Vec<NewTopic> = topics
                .all()
                .iter()
                .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
                .collect();
            // An existing topic is fine: the results are not looked at.
            let _ = admin
                .create_topics(
                    &new,
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
                )
                .await
                .map_err(|e| e.to_string())?;
            let producer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("compression.type", &defaults.compression)
                .set("linger.ms", defaults.linger.as_millis().to_string())
                .set(
                    "max.in.flight.requests.per.connection",
                    defaults.max_in_flight.to_string(),
                )
                .set(
                    "message.timeout.ms",
                    defaults.message_timeout.as_millis().to_string(),
                )
                .create()
                .map_err(|e| e.to_string())?;
            Ok(Self { producer, topics })
        }

        /// Queues every message of `record`, then waits for every acknowledgement.
        pub async fn publish(&self, record: &Envelope) -> Result<usize, String> {
            let messages = messages(record);
            let timestamp =
                i64::try_from(record.received_at().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            let mut deliveries = Vec::with_capacity(messages.len());
            for message in &messages {
                let topic = self.topics.for_kind(message.kind);
                let mut future = FutureRecord::to(topic)
                    .payload(message.payload)
                    .headers(KafkaSink::headers(message))
                    .timestamp(timestamp);
                if let Some(key) = message.key {
                    future = future.key(key);
                }
                let delivery = self
                    .producer
                    .send_result(future)
                    .map_err(|(e, _)| e.to_string())?;
                deliveries.push(delivery);
            }
            for result in join_all(deliveries).await {
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => return Err(error.to_string()),
                    Err(_) => return Err("the producer was dropped".into()),
                }
            }
            debug_assert!(messages.iter().any(|m| m.kind == MessageKind::Raw));
            Ok(messages.len())
        }
    }
}

mod rabbitmq {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::{join_all, try_join_all};
    use lapin::options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
    use vizion_bridge::events::Envelope;
    use vizion_bridge::sinks::messages;
    use vizion_bridge::sinks::rabbitmq::{properties, routing_key, ALTERNATE_EXCHANGE};

    pub struct Publisher {
        _connection: Connection,
        channels: Vec<Channel>,
        next: AtomicUsize,
        exchange: String,
        queue: String,
    }

    impl Publisher {
        /// Declares the topology as the bridge does (durable topic exchange, fanout
        /// alternate exchange, durable queue) and opens confirm-mode channels.
        pub async fn connect(url: &str, exchange: &str, channels: usize) -> Result<Self, String> {
            let connection = Connection::connect(url, ConnectionProperties::default())
                .await
                .map_err(|e| e.to_string())?;
            let setup = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            let unrouted = format!("{exchange}.unrouted");
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            setup
                .exchange_declare(
                    unrouted.as_str().into(),
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut arguments = FieldTable::default();
            arguments.insert(
                ALTERNATE_EXCHANGE.into(),
                AMQPValue::LongString(LongString::from(unrouted.as_bytes().to_vec())),
            );
            setup
                .exchange_declare(exchange.into(), ExchangeKind::Topic, durable, arguments)
                .await
                .map_err(|e| e.to_string())?;
            setup
                .queue_declare(
                    unrouted.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            setup
                .queue_bind(
                    unrouted.as_str().into(),
                    unrouted.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut open = Vec::with_capacity(channels);
            for _ in 0..channels {
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| e.to_string())?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                open.push(channel);
            }
            Ok(Self {
                _connection: connection,
                channels: open,
                next: AtomicUsize::new(0),
                exchange: exchange.to_owned(),
                queue: unrouted,
            })
        }

        /// Publishes every message of `record` on one channel without waiting in
        /// between, then waits for all the confirms.
        pub async fn publish(&self, record: &Envelope) -> Result<usize, String> {
            let channel =
                &self.channels[self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len()];
            let delivery_kind = record.kind_name();
            let timestamp = u64::try_from(record.received_at().unix_timestamp()).unwrap_or(0);
            let messages = messages(record);
            let publishes = messages.iter().map(|message| {
                let key = routing_key(message, delivery_kind);
                channel.basic_publish(
                    self.exchange.as_str().into(),
                    key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    message.payload,
                    properties(message, timestamp),
                )
            });
            let confirms = try_join_all(publishes).await.map_err(|e| e.to_string())?;
            for confirm in join_all(confirms).await {
                match confirm {
                    Ok(Confirmation::Ack(None)) => {}
                    Ok(other) => return Err(format!("not confirmed: {other:?}")),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(messages.len())
        }

        pub async fn delete_queue(&self) {
            let _ = self.channels[0]
                .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}
