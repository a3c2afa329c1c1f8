//! The RabbitMQ sink against the broker on 127.0.0.1:5672 (guest/guest). Every test
//! uses exchanges and queues of its own, deleted at the end.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Consumer;
use serde_json::Value;
use vizion_bridge::secret::InlineSecret;

use crate::helpers::{sample, spawn_app_with, update_body, Names, Reader, TestApp};

const WAIT: Duration = Duration::from_secs(10);

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a message arrives in time")
        .expect("the consumer is open")
        .expect("the delivery is good")
}

/// The messages up to and including the raw body, which comes last.
async fn until_raw(consumer: &mut Consumer) -> Vec<Delivery> {
    let mut messages = Vec::new();
    loop {
        let message = next(consumer).await;
        let last = message.routing_key.as_str() == "raw";
        messages.push(message);
        if last {
            return messages;
        }
    }
}

fn header(message: &Delivery, name: &str) -> Option<String> {
    let headers = message.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        AMQPValue::ShortString(value) => Some(value.as_str().into()),
        other => panic!("header {name} is {other:?}"),
    }
}

async fn readyz(app: &TestApp) -> u16 {
    app.get("/readyz").await.status().as_u16()
}

#[tokio::test]
async fn an_update_is_published_with_its_routing_keys_and_cloudevents_headers() {
    let names = Names::new("update");
    let app = spawn_app_with(|s| names.configure(s)).await;
    app.wait_until_ready(WAIT).await;
    assert_eq!(
        app.metric("vizion_bridge_sink_up", "sink=\"rabbitmq\"")
            .await,
        1.0
    );
    let reader = Reader::connect().await;
    let mut consumer = reader.bind(&names.exchange, "#").await;

    let body = sample("msc-eta-then-ata.json");
    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);

    let messages = until_raw(&mut consumer).await;
    let keys: Vec<&str> = messages.iter().map(|m| m.routing_key.as_str()).collect();
    assert_eq!(keys[0], "update.MSCU", "{keys:?}");
    let milestones = &messages[1..messages.len() - 1];
    assert!(!milestones.is_empty(), "{keys:?}");
    for message in milestones {
        let words: Vec<&str> = message.routing_key.as_str().split('.').collect();
        assert_eq!(words.len(), 3, "{keys:?}");
        assert_eq!(words[0], "milestone");
        assert!(
            words[1..].iter().all(|w| !w.is_empty() && *w != "unknown"),
            "{keys:?}"
        );
    }

    for message in &messages {
        let properties = &message.properties;
        assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
        assert_eq!(
            properties.content_type().as_ref().map(|c| c.as_str()),
            Some("application/json")
        );
        assert!(properties.timestamp().is_some());
    }
    for event in &messages[..messages.len() - 1] {
        let id = header(event, "cloudEvents:id").expect("an event id");
        assert_eq!(
            event.properties.message_id().as_ref().map(|m| m.as_str()),
            Some(id.as_str())
        );
        assert_eq!(
            header(event, "cloudEvents:specversion").as_deref(),
            Some("1.0")
        );
        assert!(header(event, "cloudEvents:source").is_some());
        let data: Value = serde_json::from_slice(&event.data).expect("the body is JSON");
        assert!(data.is_object());
    }
    let update = &messages[0];
    assert!(header(update, "cloudEvents:type")
        .unwrap()
        .ends_with(".update.v1"));
    let data: Value = serde_json::from_slice(&update.data).unwrap();
    assert_eq!(data["update_id"], "7d0f8a60-0012-4c8e-8f00-000000000012");

    let raw = messages.last().unwrap();
    assert_eq!(raw.data, body, "the raw body byte for byte");
    assert_eq!(
        raw.properties.message_id().as_ref().map(|m| m.as_str()),
        Some("7d0f8a60-0012-4c8e-8f00-000000000012")
    );
    assert_eq!(
        header(raw, "vizion_delivery_kind").as_deref(),
        Some("update")
    );
    assert!(header(raw, "cloudEvents:id").is_none());

    let published = |kind: &'static str| {
        let app = &app;
        async move {
            app.metric(
                "vizion_bridge_events_published_total",
                &format!("sink=\"rabbitmq\",kind=\"{kind}\""),
            )
            .await
        }
    };
    assert_eq!(published("update").await, 1.0);
    assert_eq!(published("milestone").await, milestones.len() as f64);
    assert_eq!(published("raw").await, 1.0);

    app.stop().await;
    reader.delete(&names).await;
}

#[tokio::test]
async fn dead_letters_and_passed_through_events_have_their_own_routing_keys() {
    let names = Names::new("dead");
    let app = spawn_app_with(|s| names.configure(s)).await;
    app.wait_until_ready(WAIT).await;
    let reader = Reader::connect().await;
    let mut dead = reader.bind(&names.exchange, "dead_letter").await;
    let mut passed = reader.bind(&names.exchange, "pass_through.*").await;

    let response = app.post_signed(b"{not json at all").await;
    assert_eq!(response.status().as_u16(), 200);
    let message = next(&mut dead).await;
    assert_eq!(message.routing_key.as_str(), "dead_letter");
    assert_eq!(
        header(&message, "vizion_dead_letter_reason").as_deref(),
        Some("not_json")
    );
    assert!(header(&message, "cloudEvents:type")
        .unwrap()
        .ends_with(".dead_letter.v1"));
    assert_eq!(*message.properties.delivery_mode(), Some(2));
    let data: Value = serde_json::from_slice(&message.data).unwrap();
    assert_eq!(data["reason"], "not_json");

    let response = app.post_signed(&sample("exception-alert.json")).await;
    assert_eq!(response.status().as_u16(), 200);
    let message = next(&mut passed).await;
    assert_eq!(message.routing_key.as_str(), "pass_through.exception_alert");
    assert!(header(&message, "cloudEvents:id").is_some());

    assert_eq!(
        app.metric(
            "vizion_bridge_events_published_total",
            "sink=\"rabbitmq\",kind=\"dead_letter\""
        )
        .await,
        1.0
    );
    app.stop().await;
    reader.delete(&names).await;
}

#[tokio::test]
async fn with_no_queue_bound_messages_wait_in_the_unrouted_queue() {
    let names = Names::new("unrouted");
    let app = spawn_app_with(|s| names.configure(s)).await;
    app.wait_until_ready(WAIT).await;
    // Declaring again over the same topology is harmless.
    let second = spawn_app_with(|s| names.configure(s)).await;
    second.wait_until_ready(WAIT).await;
    second.stop().await;

    let body = update_body("u-unrouted");
    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);

    let reader = Reader::connect().await;
    let mut unrouted = reader.consume(&names.unrouted).await;
    let messages = until_raw(&mut unrouted).await;
    let keys: Vec<&str> = messages.iter().map(|m| m.routing_key.as_str()).collect();
    assert_eq!(keys, ["update.OOLU", "raw"]);
    assert_eq!(messages[1].data, body);
    assert_eq!(
        app.metric(
            "vizion_bridge_publish_failures_total",
            "sink=\"rabbitmq\",reason=\"returned\""
        )
        .await,
        0.0
    );
    app.stop().await;
    reader.delete(&names).await;
}

#[tokio::test]
async fn an_unreachable_broker_means_not_ready_and_a_prompt_503() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let names = Names::new("unreachable");
    let app = spawn_app_with(|s| {
        names.configure(s);
        s.rabbitmq.url = Some(InlineSecret::new(format!(
            "amqp://guest:not-logged-pw@127.0.0.1:{closed_port}/%2f"
        )));
        s.delivery.timeout = Duration::from_secs(1);
    })
    .await;
    assert_eq!(readyz(&app).await, 503);
    assert_eq!(
        app.metric("vizion_bridge_sink_up", "sink=\"rabbitmq\"")
            .await,
        0.0
    );

    let started = Instant::now();
    let response = app.post_signed(&update_body("u-down")).await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        app.metric(
            "vizion_bridge_publish_failures_total",
            "sink=\"rabbitmq\",reason=\"disconnected\""
        )
        .await,
        1.0
    );
    app.stop().await;
}

/// Closes the bridge's connection from the broker's side.
fn close_connection_named(name: &str) {
    let listing = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&listing.stdout);
    let pids: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(name))
        .filter_map(|line| line.split('\t').next())
        .collect();
    assert!(
        !pids.is_empty(),
        "the bridge's connection is listed:\n{text}"
    );
    for pid in pids {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "closed by a test"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success());
    }
}

#[tokio::test]
async fn the_bridge_reconnects_after_the_broker_closes_its_connection() {
    let names = Names::new("reconnect");
    let app = spawn_app_with(|s| names.configure(s)).await;
    app.wait_until_ready(WAIT).await;
    let reader = Reader::connect().await;
    let mut consumer = reader.bind(&names.exchange, "update.*").await;
    assert_eq!(
        app.post_signed(&update_body("u-before"))
            .await
            .status()
            .as_u16(),
        200
    );
    next(&mut consumer).await;

    close_connection_named(&names.connection);

    // The write waits for the new connection (or publishes again on it) within the
    // delivery timeout, so even the first webhook after the cut succeeds.
    let closed = Instant::now();
    let response = app.post_signed(&update_body("u-after")).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        closed.elapsed() < Duration::from_secs(4),
        "{:?}",
        closed.elapsed()
    );
    let message = next(&mut consumer).await;
    let data: Value = serde_json::from_slice(&message.data).unwrap();
    assert_eq!(data["update_id"], "u-after");
    app.wait_until_ready(WAIT).await;
    assert_eq!(
        app.metric("vizion_bridge_sink_up", "sink=\"rabbitmq\"")
            .await,
        1.0
    );

    app.stop().await;
    reader.delete(&names).await;
}

#[tokio::test]
async fn a_returned_message_fails_the_write() {
    // An exchange declared elsewhere without an alternate exchange, and no queue bound:
    // the broker returns the mandatory messages, which must not count as written.
    let names = Names::new("returned");
    let reader = Reader::connect().await;
    reader
        .channel
        .exchange_declare(
            names.exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let app = spawn_app_with(|s| {
        names.configure(s);
        s.rabbitmq.declare_topology = false;
    })
    .await;
    app.wait_until_ready(WAIT).await;

    let response = app.post_signed(&update_body("u-returned")).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        app.metric(
            "vizion_bridge_publish_failures_total",
            "sink=\"rabbitmq\",reason=\"returned\""
        )
        .await,
        1.0,
        "one failed write"
    );
    assert_eq!(
        app.metric(
            "vizion_bridge_events_published_total",
            "sink=\"rabbitmq\",kind=\"update\""
        )
        .await,
        0.0
    );
    app.stop().await;
    reader.delete(&names).await;
}
