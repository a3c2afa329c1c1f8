//! What must not stall delivery through the spool: a record a sink refuses for good
//! (quarantined, the records behind it go on), a sink that confirmed a record before it
//! was spooled (not sent it again), a second update of a container arriving while the
//! first is on its way to the spool (kept behind it), and a broker cut (`/readyz` and
//! `vizion_bridge_sink_up` say so together).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use vizion_bridge::delivery::AckMode;
use vizion_bridge::secret::InlineSecret;
use vizion_bridge::sinks::SinkKind;

use crate::helpers::*;

/// An update of container `container`, with `padding` bytes of extra data in its body.
fn update_of(id: &str, container: &str, padding: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "status": "data_received",
        "reference_id": format!("ref-{container}"),
        "payload": {
            "container_id": container,
            "carrier_scac": "OOLU",
            "milestones": [],
            "notes": "x".repeat(padding)
        },
        "updated_at": "2021-07-31T21:34:09.003Z"
    }))
    .unwrap()
}

/// Polls `check` every 50 ms until it holds, failing with `what` after `within`.
async fn wait_for<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The JSON notes of the quarantined files under `spool`.
fn quarantine_notes(spool: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(spool.join("quarantine")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rec"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let line = bytes.split(|b| *b == b'\n').next().unwrap();
            serde_json::from_slice(line).expect("a quarantined file starts with a JSON line")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_kafka_refuses_as_too_large_is_quarantined_and_the_ones_behind_it_are_forwarded() {
    let brokers = bootstrap();
    let data = tempfile::tempdir().unwrap();
    let spool = data.path().join("spool");
    let mut settings = test_settings(data.path());
    let topics = use_kafka(&mut settings, &brokers);
    settings.spool.dir = Some(spool.clone());
    settings.spool.retry_initial_backoff = Duration::from_millis(50);
    settings.spool.retry_max_backoff = Duration::from_millis(500);
    settings.delivery.mode = Some(AckMode::Spool);
    let mut small_limit = settings.clone();
    // The producer refuses any message above 20 kB.
    small_limit
        .kafka
        .properties
        .insert("message.max.bytes".into(), "20000".into());
    let app = spawn_app_from(small_limit).await;
    wait_for(Duration::from_secs(30), "kafka is ready", || async {
        let body: Value = app.get("/readyz").await.json().await.unwrap();
        body["sinks"]["kafka"] == "ready"
    })
    .await;

    // One container: the large update first, its later updates queued behind it.
    let container = "QRTU0000001";
    let large = "quarantine-large";
    assert_eq!(
        app.post_signed(&update_of(large, container, 50_000))
            .await
            .status(),
        200
    );
    let behind: Vec<String> = (0..3).map(|n| format!("quarantine-behind-{n}")).collect();
    for id in &behind {
        assert_eq!(
            app.post_signed(&update_of(id, container, 0)).await.status(),
            200
        );
    }

    let consumed = consume_until(&brokers, &[&topics.raw], Duration::from_secs(60), |c| {
        behind
            .iter()
            .all(|id| c.iter().any(|m| m.key.as_deref() == Some(id)))
    })
    .await;
    let keys: Vec<&str> = consumed.iter().filter_map(|c| c.key.as_deref()).collect();
    for id in &behind {
        assert!(
            keys.contains(&id.as_str()),
            "{id} behind the refused record is forwarded; got {keys:?}"
        );
    }
    assert!(!keys.contains(&large), "the refused record is not in Kafka");
    assert_eq!(
        app.metric(
            "vizion_bridge_spool_quarantined_total",
            "sink=\"kafka\",reason=\"too_large\""
        )
        .await,
        1.0
    );
    assert_eq!(app.metric("vizion_bridge_spool_entries", "").await, 0.0);
    let notes = quarantine_notes(&spool);
    assert_eq!(notes.len(), 1, "one quarantined record: {notes:?}");
    assert_eq!(notes[0]["sink"], "kafka");
    assert_eq!(notes[0]["reason"], "too_large");
    assert_eq!(notes[0]["order_key"], container);

    // The command line: it lists it, and will not requeue while the service runs.
    let config = data.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!("[spool]\ndir = {:?}\n", spool.to_str().unwrap()),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (code, stdout, _) = run_cli(&["spool", "quarantine", "list", "--config", config]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("too_large") && stdout.contains(container),
        "{stdout}"
    );
    let (code, _, stderr) = run_cli(&["spool", "quarantine", "requeue", "--config", config]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("in use by a running vizion-bridge"),
        "{stderr}"
    );
    app.stop().await;

    // Stopped: requeued, and forwarded by the next start once Kafka takes it.
    let (code, stdout, stderr) = run_cli(&["spool", "quarantine", "requeue", "--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("requeued 1 record"), "{stdout}");
    assert!(quarantine_notes(&spool).is_empty());
    let app = spawn_app_from(settings).await;
    let consumed = consume_until(&brokers, &[&topics.raw], Duration::from_secs(60), |c| {
        c.iter().any(|m| m.key.as_deref() == Some(large))
    })
    .await;
    assert!(
        consumed.iter().any(|m| m.key.as_deref() == Some(large)),
        "the requeued record is forwarded once Kafka takes it"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_kafka_cut_readyz_and_sink_up_turn_down_together() {
    let (proxy, _broker) = kafka_behind_proxy().await;
    let brokers = proxy.addr.to_string();
    let app = spawn_app_with(|s| {
        use_kafka(s, &brokers);
    })
    .await;
    app.wait_until_ready(Duration::from_secs(30)).await;
    assert_eq!(
        app.metric("vizion_bridge_sink_up", "sink=\"kafka\"").await,
        1.0
    );

    proxy.cut();
    // Each round reads both; the first round where readyz says down must show the
    // gauge at 0 too, or within a very short bound after.
    let deadline = Instant::now() + Duration::from_secs(30);
    let down_at = loop {
        let ready = app.get("/readyz").await.status().as_u16() == 200;
        let up = app.metric("vizion_bridge_sink_up", "sink=\"kafka\"").await;
        if !ready {
            break (Instant::now(), up);
        }
        assert!(Instant::now() < deadline, "readyz turns 503 during the cut");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (readyz_down, up_then) = down_at;
    if up_then != 0.0 {
        wait_for(
            Duration::from_millis(300),
            "sink_up is 0 once /readyz says kafka is down",
            || async { app.metric("vizion_bridge_sink_up", "sink=\"kafka\"").await == 0.0 },
        )
        .await;
        println!(
            "sink_up turned 0 {:?} after /readyz turned 503",
            readyz_down.elapsed()
        );
    }

    proxy.restore();
    app.wait_until_ready(Duration::from_secs(30)).await;
    assert_eq!(
        app.metric("vizion_bridge_sink_up", "sink=\"kafka\"").await,
        1.0,
        "sink_up is 1 when /readyz says ready again"
    );
    app.stop().await;
}

/// RabbitMQ through `proxy`, with the file sink beside it, in `broker_then_spool`.
fn rabbitmq_and_file_through<'a>(
    proxy: &TcpProxy,
    names: &'a Names,
    broker_deadline: Duration,
) -> impl FnOnce(&mut vizion_bridge::settings::Settings) + 'a {
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    move |s| {
        names.configure(s);
        s.sinks = vec![SinkKind::File, SinkKind::Rabbitmq];
        s.rabbitmq.url = Some(InlineSecret::new(url));
        s.spool.dir = Some(s.storage.data_dir.join("spool"));
        s.spool.forward_timeout = Duration::from_secs(1);
        s.spool.retry_initial_backoff = Duration::from_millis(50);
        s.spool.retry_max_backoff = Duration::from_millis(300);
        s.delivery.mode = Some(AckMode::BrokerThenSpool);
        s.delivery.broker_deadline = broker_deadline;
    }
}

async fn wait_for_rabbitmq(app: &TestApp, ready: bool) {
    wait_for(
        Duration::from_secs(20),
        "RabbitMQ's state in /readyz",
        || async {
            let body: Value = app.get("/readyz").await.json().await.unwrap();
            (body["sinks"]["rabbitmq"] == "ready") == ready
        },
    )
    .await;
}

async fn wait_for_empty_spool(app: &TestApp) {
    wait_for(Duration::from_secs(30), "the spool drains", || async {
        app.metric("vizion_bridge_spool_entries", "").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_file_sink_confirmed_before_it_was_spooled_is_written_there_once() {
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:5672".parse().unwrap(),
    )
    .await;
    let names = Names::new("spool-once");
    let app = spawn_app_with(rabbitmq_and_file_through(
        &proxy,
        &names,
        Duration::from_millis(300),
    ))
    .await;
    wait_for_rabbitmq(&app, true).await;
    let reader = Reader::connect().await;
    let mut raw = reader.bind(&names.exchange, "raw").await;

    // RabbitMQ holds every byte: the file sink confirms, RabbitMQ misses the deadline,
    // and the records are spooled.
    proxy.pause();
    let ids: Vec<String> = (0..3).map(|n| format!("once-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let body = update_of(id, &format!("ONCE{n:07}"), 0);
        assert_eq!(app.post_signed(&body).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();
    wait_for_empty_spool(&app).await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in app.raw_records() {
        *seen
            .entry(
                record["delivery_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "the file sink holds {id} exactly once: {seen:?}"
        );
    }
    // RabbitMQ got them all (at least once).
    message_ids_until(&mut raw, "every record reaches RabbitMQ", |arrived| {
        ids.iter().all(|id| arrived.contains(id))
    })
    .await;
    app.stop().await;
    reader.delete(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_update_of_a_container_is_published_after_a_first_that_went_to_the_spool() {
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:5672".parse().unwrap(),
    )
    .await;
    let names = Names::new("spool-order");
    let app = Arc::new(
        spawn_app_with(rabbitmq_and_file_through(
            &proxy,
            &names,
            Duration::from_secs(3),
        ))
        .await,
    );
    wait_for_rabbitmq(&app, true).await;
    let reader = Reader::connect().await;
    let mut raw = reader.bind(&names.exchange, "raw").await;
    let container = "ORDR0000001";

    // The first update's publish is held, then its connection cut: it waits out the
    // broker deadline and goes to the spool.
    proxy.pause();
    let first = tokio::spawn({
        let app = app.clone();
        async move {
            app.post_signed(&update_of("order-first", container, 0))
                .await
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    wait_for_rabbitmq(&app, false).await;
    // The second arrives while the first is still on its way to the spool.
    assert!(
        !first.is_finished(),
        "the first update is still being delivered"
    );
    let second = app
        .post_signed(&update_of("order-second", container, 0))
        .await
        .status();
    assert_eq!(second, 200);
    assert_eq!(first.await.unwrap(), 200);
    proxy.restore();
    wait_for_empty_spool(&app).await;

    let order = message_ids_until(&mut raw, "both updates reach RabbitMQ", |order| {
        order.contains(&"order-first".to_owned()) && order.contains(&"order-second".to_owned())
    })
    .await;
    let position = |id: &str| order.iter().position(|o| o == id).unwrap();
    assert!(
        position("order-first") < position("order-second"),
        "the first update of the container is published before the second: {order:?}"
    );
    reader.delete(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_rabbitmq_refuses_for_want_of_its_exchange_is_quarantined_and_the_file_sink_keeps_it(
) {
    let names = Names::new("spool-not-found");
    let app = spawn_app_with(|s| {
        names.configure(s);
        s.sinks = vec![SinkKind::File, SinkKind::Rabbitmq];
        s.spool.dir = Some(s.storage.data_dir.join("spool"));
        s.spool.retry_initial_backoff = Duration::from_millis(50);
        s.spool.retry_max_backoff = Duration::from_millis(300);
        s.delivery.mode = Some(AckMode::Spool);
    })
    .await;
    wait_for_rabbitmq(&app, true).await;
    // The exchange goes away under the running bridge: RabbitMQ closes the channel of
    // every publish to it with NOT_FOUND.
    Reader::connect().await.delete(&names).await;

    let body = update_of("not-found-1", "NOTF0000001", 0);
    assert_eq!(app.post_signed(&body).await.status(), 200);
    wait_for(
        Duration::from_secs(30),
        "the record is quarantined for RabbitMQ",
        || async {
            app.metric(
                "vizion_bridge_spool_quarantined_total",
                "sink=\"rabbitmq\",reason=\"not_found\"",
            )
            .await
                == 1.0
        },
    )
    .await;
    wait_for_empty_spool(&app).await;
    let kept: Vec<Value> = app
        .raw_records()
        .into_iter()
        .filter(|r| r["delivery_id"] == "not-found-1")
        .collect();
    assert_eq!(kept.len(), 1, "the file sink holds the record once");
    let notes = quarantine_notes(&app.data_dir.join("spool"));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["sink"], "rabbitmq");
    assert_eq!(notes[0]["reason"], "not_found");
    app.stop().await;
}

/// The message ids `consumer` receives, in order, until `enough` holds for them (each
/// message within 20 s, or the test fails saying `what`).
async fn message_ids_until(
    consumer: &mut lapin::Consumer,
    what: &str,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut ids = Vec::new();
    while !enough(&ids) {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{what}"))
            .unwrap()
            .unwrap();
        ids.push(
            delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string(),
        );
    }
    ids
}
