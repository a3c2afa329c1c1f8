//! What the tests need of the brokers, apart from the bridge: RabbitMQ exchanges and
//! queues of a test's own, declared, bound and consumed with a client of the test's own;
//! Kafka topics of a test's own, read back with a real consumer; a broker behind a proxy.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicConsumeOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::ClientConfig;
use vizion_bridge::secret::InlineSecret;
use vizion_bridge::settings::Settings;
use vizion_bridge::sinks::SinkKind;

use super::process::Child;
use super::proxy::{free_port, TcpProxy};

/// The RabbitMQ broker of the tests (scripts/test.sh starts it).
pub const BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

// ---------------------------------------------------------------- RabbitMQ

/// The names one test publishes into.
pub struct Names {
    pub exchange: String,
    pub unrouted: String,
    pub connection: String,
}

impl Names {
    pub fn new(test: &str) -> Self {
        let exchange = format!("test.{test}.{}", uuid::Uuid::new_v4().simple());
        Self {
            unrouted: format!("{exchange}.unrouted"),
            connection: format!("vizion-bridge-{exchange}"),
            exchange,
        }
    }

    pub fn configure(&self, settings: &mut Settings) {
        settings.sinks = vec![SinkKind::Rabbitmq];
        let rabbitmq = &mut settings.rabbitmq;
        rabbitmq.url = Some(InlineSecret::new(BROKER_URL));
        rabbitmq.exchange = self.exchange.clone();
        rabbitmq.unrouted_exchange = self.unrouted.clone();
        rabbitmq.unrouted_queue = self.unrouted.clone();
        rabbitmq.connection_name = self.connection.clone();
        rabbitmq.reconnect_min = Duration::from_millis(100);
        rabbitmq.reconnect_max = Duration::from_secs(1);
    }
}

/// A client of the test's own, reading what the bridge published.
pub struct Reader {
    connection: Connection,
    /// For what a test declares by itself.
    pub channel: Channel,
}

impl Reader {
    pub async fn connect() -> Self {
        let connection = Connection::connect(BROKER_URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ runs on 127.0.0.1:5672 (scripts/test.sh starts it)");
        let channel = connection.create_channel().await.unwrap();
        Self {
            connection,
            channel,
        }
    }

    /// A fresh exclusive queue bound to `exchange` with `pattern`, consumed.
    pub async fn bind(&self, exchange: &str, pattern: &str) -> Consumer {
        let queue = self
            .channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.consume(queue.name().as_str()).await
    }

    pub async fn consume(&self, queue: &str) -> Consumer {
        self.channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
    }

    pub async fn delete_queue(&self, queue: &str) {
        let _ = self
            .channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }

    pub async fn delete(&self, names: &Names) {
        let _ = self
            .channel
            .exchange_delete(
                names.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self
            .channel
            .exchange_delete(
                names.unrouted.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self
            .channel
            .queue_delete(
                names.unrouted.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

// ---------------------------------------------------------------- Kafka

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").expect(
        "KAFKA_BOOTSTRAP must name a Kafka-protocol broker: run the tests with scripts/test.sh, \
         which starts one",
    )
}

/// Points the app at the test broker, with topics of its own.
pub fn use_kafka(settings: &mut Settings, brokers: &str) -> Topics {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let topics = Topics {
        updates: format!("updates-{suffix}"),
        milestones: format!("milestones-{suffix}"),
        alerts: format!("alerts-{suffix}"),
        raw: format!("raw-{suffix}"),
        dead_letters: format!("dead-letters-{suffix}"),
    };
    topics.configure(settings, brokers);
    topics
}

/// Starts a fresh in-memory tansu broker that advertises a proxy in front of it, so that
/// every connection, bootstrap or not, goes through the proxy.
pub async fn kafka_behind_proxy() -> (TcpProxy, Child) {
    let broker_port = free_port();
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        format!("127.0.0.1:{broker_port}").parse().unwrap(),
    )
    .await;
    let broker = Child(
        Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{broker_port}"),
                "--advertised-listener-url",
                &format!("tcp://{}", proxy.addr),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tansu broker is on PATH (scripts/test.sh installs it)"),
    );
    (proxy, broker)
}

#[derive(Clone)]
pub struct Topics {
    pub updates: String,
    pub milestones: String,
    pub alerts: String,
    pub raw: String,
    pub dead_letters: String,
}

impl Topics {
    /// Points the app at the test broker and these topics (several apps may share them).
    pub fn configure(&self, settings: &mut Settings, brokers: &str) {
        settings.sinks = vec![SinkKind::Kafka];
        settings.kafka.brokers = brokers.to_owned();
        settings.kafka.ensure_topics = true;
        settings.kafka.topic_partitions = 2;
        settings.kafka.health_interval = Duration::from_millis(500);
        settings.kafka.topics.updates = self.updates.clone();
        settings.kafka.topics.milestones = self.milestones.clone();
        settings.kafka.topics.alerts = self.alerts.clone();
        settings.kafka.topics.raw = self.raw.clone();
        settings.kafka.topics.dead_letters = self.dead_letters.clone();
    }
}

/// One consumed record.
#[derive(Debug)]
pub struct Consumed {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads `topics` from the start until `expected` records arrived or `within` passed.
pub async fn consume(
    brokers: &str,
    topics: &[&str],
    expected: usize,
    within: Duration,
) -> Vec<Consumed> {
    consume_until(brokers, topics, within, |consumed| {
        consumed.len() >= expected
    })
    .await
}

/// Reads `topics` from the start until `done` says so or `within` passed.
pub async fn consume_until(
    brokers: &str,
    topics: &[&str],
    within: Duration,
    done: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let deadline = Instant::now() + within;
    let mut consumed = Vec::new();
    while !done(&consumed) && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(message)) = tokio::time::timeout(left, consumer.recv()).await else {
            continue;
        };
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        let value = header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        (header.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        consumed.push(Consumed {
            topic: message.topic().to_owned(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    consumed
}
