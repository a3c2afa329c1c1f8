//! The Kafka sink against a real Kafka-protocol broker (`KAFKA_BOOTSTRAP`, started by
//! scripts/test.sh), read back with a real consumer.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::ClientConfig;
use serde_json::Value;
use vizion_bridge::settings::Settings;
use vizion_bridge::sinks::SinkKind;

use crate::helpers::*;
use crate::proxy::{free_port, Child, TcpProxy};

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

#[tokio::test]
async fn every_event_is_published_with_its_key_and_cloudevents_headers() {
    let brokers = bootstrap();
    let mut topics = None;
    let app = spawn_app_with(|s| topics = Some(use_kafka(s, &brokers))).await;
    let topics = topics.unwrap();
    app.wait_until_ready(Duration::from_secs(20)).await;

    let body = sample("mid-journey-transshipment.json");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut headers = SignatureBuilder::new(&body).headers();
    headers.push(("traceparent".into(), traceparent.into()));
    let response = app.post(&body, &headers).await;
    assert_eq!(response.status().as_u16(), 200);

    let consumed = consume(
        &brokers,
        &[&topics.updates, &topics.milestones, &topics.raw],
        1 + 5 + 1,
        Duration::from_secs(20),
    )
    .await;
    let on = |topic: &str| {
        consumed
            .iter()
            .filter(|c| c.topic == topic)
            .collect::<Vec<_>>()
    };
    let (updates, milestones, raw) = (on(&topics.updates), on(&topics.milestones), on(&topics.raw));
    assert_eq!(
        (updates.len(), milestones.len(), raw.len()),
        (1, 5, 1),
        "{consumed:#?}"
    );

    let envelope: Value = serde_json::from_slice(&body).unwrap();
    let update = updates[0];
    assert_eq!(
        update.key.as_deref(),
        envelope["reference_id"].as_str(),
        "updates are keyed by reference"
    );
    assert_eq!(update.headers["ce_specversion"], "1.0");
    assert_eq!(update.headers["ce_id"], envelope["id"].as_str().unwrap());
    assert!(update.headers["ce_type"].ends_with(".update.v1"));
    assert_eq!(update.headers["content-type"], "application/json");
    let data: Value = serde_json::from_slice(&update.payload).unwrap();
    assert_eq!(data["update_id"], envelope["id"]);

    let container = envelope["payload"]["container_id"].as_str().unwrap();
    for milestone in &milestones {
        assert_eq!(
            milestone.key.as_deref(),
            Some(container),
            "milestones are keyed by container"
        );
        assert!(milestone.headers["ce_type"].ends_with(".milestone.v1"));
        let data: Value = serde_json::from_slice(&milestone.payload).unwrap();
        assert!(
            crate::support::schemas()
                .milestone
                .is_valid(&serde_json::json!({
                    "specversion": "1.0",
                    "id": milestone.headers["ce_id"],
                    "source": milestone.headers["ce_source"],
                    "type": milestone.headers["ce_type"],
                    "subject": milestone.headers["ce_subject"],
                    "time": milestone.headers["ce_time"],
                    "datacontenttype": "application/json",
                    "dataschema": milestone.headers["ce_dataschema"],
                    "partitionkey": milestone.headers["ce_partitionkey"],
                    "data": data,
                })),
            "binary-mode milestone validates as its structured form"
        );
    }
    assert!(
        consumed
            .iter()
            .all(|c| c.headers.get("traceparent").map(String::as_str) == Some(traceparent)),
        "the sender's trace context travels with every message"
    );
    assert_eq!(raw[0].payload, body, "the raw body byte for byte");
    assert_eq!(raw[0].key.as_deref(), envelope["id"].as_str());
    assert_eq!(raw[0].headers["vizion_delivery_kind"], "update");

    assert_eq!(
        app.metric(
            "vizion_bridge_events_published_total",
            "sink=\"kafka\",kind=\"milestone\""
        )
        .await,
        5.0
    );
    assert_eq!(
        app.metric("vizion_bridge_sink_up", "sink=\"kafka\"").await,
        1.0
    );
}

#[tokio::test]
async fn dead_letters_carry_their_reason() {
    let brokers = bootstrap();
    let mut topics = None;
    let app = spawn_app_with(|s| topics = Some(use_kafka(s, &brokers))).await;
    let topics = topics.unwrap();
    app.wait_until_ready(Duration::from_secs(20)).await;

    assert_eq!(app.post_signed(b"{not json").await.status().as_u16(), 200);
    let consumed = consume(
        &brokers,
        &[&topics.dead_letters],
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(consumed.len(), 1);
    assert_eq!(consumed[0].headers["vizion_dead_letter_reason"], "not_json");
    assert!(consumed[0].headers["ce_type"].ends_with(".dead_letter.v1"));
    let data: Value = serde_json::from_slice(&consumed[0].payload).unwrap();
    assert_eq!(decode_base64(&data["raw_body_base64"]), b"{not json");
}

#[tokio::test]
async fn an_unreachable_broker_means_not_ready_and_503_not_a_hang() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = spawn_app_with(|s| {
        use_kafka(s, &closed.to_string());
        s.delivery.timeout = Duration::from_secs(2);
        s.kafka.message_timeout = Duration::from_secs(1);
    })
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sinks"]["kafka"], "not_ready");

    let started = Instant::now();
    let response = app.post_signed(&update_body("u-kafka-down")).await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered within the delivery timeout"
    );
    assert_eq!(
        app.metric("vizion_bridge_sink_up", "sink=\"kafka\"").await,
        0.0
    );
}
