//! The Kafka sink against a real Kafka-protocol broker (`KAFKA_BOOTSTRAP`, started by
//! scripts/test.sh), read back with a real consumer.

use std::time::{Duration, Instant};

use serde_json::Value;
use vizion_bridge::events::MilestoneMode;

use crate::helpers::*;

#[tokio::test]
async fn every_event_is_published_with_its_key_and_cloudevents_headers() {
    let brokers = bootstrap();
    let mut topics = None;
    // One milestone event per milestone: what `events.milestones = "all"` publishes.
    let app = spawn_app_with(|s| {
        s.events.milestones = MilestoneMode::All;
        topics = Some(use_kafka(s, &brokers));
    })
    .await;
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
