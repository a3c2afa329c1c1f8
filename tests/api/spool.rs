//! The local spool end to end: a broker outage under load answered 200 throughout and
//! drained afterwards, the real binary killed with `kill -9` and restarted, and a full
//! spool refusing with 503.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use vizion_bridge::delivery::AckMode;
use vizion_bridge::secret::InlineSecret;

use crate::helpers::*;

/// An update of its own container, so that the forwarder may send it beside others.
fn update_of_container(id: &str, n: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "status": "data_received",
        "reference_id": format!("ref-{n}"),
        "payload": {
            "container_id": format!("SPLU{:07}", n % 10_000_000),
            "carrier_scac": "OOLU",
            "milestones": []
        },
        "updated_at": "2021-07-31T21:34:09.003Z"
    }))
    .unwrap()
}

/// Message ids of everything that arrives on `consumer` until `wanted` all came, or
/// `within` passed.
async fn collect_ids(
    consumer: &mut lapin::Consumer,
    wanted: &HashSet<String>,
    within: Duration,
) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + within;
    while !wanted.iter().all(|id| seen.contains_key(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(delivery))) = tokio::time::timeout(left, consumer.next()).await else {
            break;
        };
        if let Some(id) = delivery.properties.message_id() {
            *seen.entry(id.to_string()).or_default() += 1;
        }
    }
    seen
}

/// With a spool `/readyz` is 200 before the broker is connected; the test's reader
/// needs the exchange the bridge declares once it is.
async fn wait_for_broker(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
        if body["sinks"]["rabbitmq"] == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "the bridge connects to RabbitMQ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 8 clients post updates of distinct containers, one after the other, for 2 s, through
/// a 5 s cut of the broker and for 5 s after it. Returns each update id's status.
async fn run_outage(app: Arc<TestApp>, proxy: &TcpProxy) -> HashMap<String, u16> {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(HashMap::new()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (app, stop, next, outcomes) =
            (app.clone(), stop.clone(), next.clone(), outcomes.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let id = format!("spool-outage-{n}");
                let status = app
                    .post_signed(&update_of_container(&id, n))
                    .await
                    .status()
                    .as_u16();
                outcomes.lock().unwrap().insert(id, status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_outage_is_answered_200_and_the_spool_drains_after_it() {
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:5672".parse().unwrap(),
    )
    .await;
    let names = Names::new("spool-outage");
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let app = spawn_app_with(|s| {
        names.configure(s);
        s.rabbitmq.url = Some(InlineSecret::new(url));
        s.spool.dir = Some(s.storage.data_dir.join("spool"));
        s.spool.retry_max_backoff = Duration::from_millis(500);
        s.delivery.mode = Some(AckMode::BrokerThenSpool);
    })
    .await;
    wait_for_broker(&app).await;
    let reader = Reader::connect().await;
    let mut raw = reader.bind(&names.exchange, "raw").await;
    let app = Arc::new(app);

    let outcomes = run_outage(app.clone(), &proxy).await;
    let refused: Vec<u16> = outcomes
        .values()
        .copied()
        .filter(|status| *status != 200)
        .collect();
    assert!(
        refused.is_empty(),
        "every webhook answered 200 while the spool has room; {} of {} were not: {:?}",
        refused.len(),
        outcomes.len(),
        refused.iter().take(5).collect::<Vec<_>>()
    );

    // The spool drains once the broker is back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.metric("vizion_bridge_spool_entries", "").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the spool drains: {} left, {} forwarded, {} failures",
            app.metric("vizion_bridge_spool_entries", "").await,
            app.metric("vizion_bridge_spool_forwarded_total", "").await,
            app.metric(
                "vizion_bridge_spool_forward_failures_total",
                "sink=\"rabbitmq\""
            )
            .await,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["spool"]["entries"], 0);
    assert_eq!(ready["delivery_mode"], "broker_then_spool");

    let accepted: HashSet<String> = outcomes.keys().cloned().collect();
    let seen = collect_ids(&mut raw, &accepted, Duration::from_secs(30)).await;
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "every accepted update arrived; missing {missing:?}"
    );
    let forwarded = app.metric("vizion_bridge_spool_forwarded_total", "").await;
    assert!(forwarded > 0.0, "the outage went through the spool");
    println!(
        "spool outage: {} requests all 200, {forwarded} forwarded from the spool",
        outcomes.len()
    );
    reader.delete(&names).await;
}

#[tokio::test]
async fn a_full_spool_answers_503_with_retry_after_and_counts_it() {
    let sink = Arc::new(GatedSink::new());
    let app = spawn_app_with_sinks(
        |s| {
            s.spool.dir = Some(s.storage.data_dir.join("spool"));
            s.spool.segment_bytes = 4096;
            s.spool.max_bytes = 8192;
            s.delivery.mode = Some(AckMode::Spool);
        },
        vec![sink.clone()],
    )
    .await;
    // The sink never confirms: every accepted update stays in the spool.
    let mut statuses = Vec::new();
    for n in 0..40 {
        let response = app.post_signed(&update_body(&format!("full-{n}"))).await;
        let status = response.status().as_u16();
        if status == 503 {
            let retry_after = response.headers().get("retry-after").cloned();
            assert!(retry_after.is_some(), "503 carries Retry-After");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"], "spool_full");
        }
        statuses.push(status);
    }
    let accepted = statuses.iter().take_while(|s| **s == 200).count();
    assert!(
        accepted > 0,
        "the spool took updates until full: {statuses:?}"
    );
    assert!(
        statuses[accepted..].iter().all(|s| *s == 503),
        "then refused every one: {statuses:?}"
    );
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"spool_full\"")
            .await,
        (40 - accepted) as f64
    );
    assert!(app.metric("vizion_bridge_spool_bytes", "").await <= 8192.0);
    assert_eq!(
        app.metric("vizion_bridge_spool_entries", "").await,
        accepted as f64
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503, "not ready while full");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["spool"]["accepting"], false);

    // Once the sink confirms, the spool empties, frees its segments and takes updates
    // again.
    sink.gate().add_permits(10_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.metric("vizion_bridge_spool_entries", "").await > 0.0
        || app.get("/readyz").await.status().as_u16() != 200
    {
        assert!(Instant::now() < deadline, "the spool drains");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut written = sink.written.ids();
    written.sort();
    let mut expected: Vec<String> = (0..accepted).map(|n| format!("full-{n}")).collect();
    expected.sort();
    assert_eq!(
        written, expected,
        "exactly the accepted updates were forwarded"
    );
    assert_eq!(
        app.post_signed(&update_body("full-after"))
            .await
            .status()
            .as_u16(),
        200
    );
}

/// Starts the real binary on `port` with a spool in `dir`, publishing to RabbitMQ at
/// `amqp` in `spool` mode.
fn start_binary(dir: &Path, port: u16, amqp: &str, names: &Names) -> BridgeProcess {
    let config = format!(
        r#"
sinks = ["rabbitmq"]
[server]
listen = "127.0.0.1:{port}"
workers = 2
[metrics]
listen = "127.0.0.1:{metrics}"
[log]
level = "warn"
[ingest]
allowed_sources = ["127.0.0.1/32"]
[[auth.secrets]]
key_id = "{KEY_ID}"
secret = "{SECRET}"
[delivery]
mode = "spool"
[storage]
data_dir = "{data}"
[spool]
dir = "{spool}"
retry_max_backoff = "500ms"
[rabbitmq]
url = "{amqp}"
exchange = "{exchange}"
unrouted_exchange = "{unrouted}"
unrouted_queue = "{unrouted}"
connection_name = "{connection}"
reconnect_min = "100ms"
reconnect_max = "1s"
"#,
        metrics = free_port(),
        spool = dir.join("spool").display(),
        data = dir.join("data").display(),
        exchange = names.exchange,
        unrouted = names.unrouted,
        connection = names.connection,
    );
    let path = dir.join("bridge.toml");
    std::fs::write(&path, config).unwrap();
    BridgeProcess::serve(&path, &[], Log::Discarded)
}

async fn wait_for_rabbitmq(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if let Ok(response) = ready {
            let body: serde_json::Value = response.json().await.unwrap();
            if body["sinks"]["rabbitmq"] == "ready" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the binary connects to RabbitMQ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_2xx_survives_kill_9_and_arrives_after_the_restart() {
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:5672".parse().unwrap(),
    )
    .await;
    let names = Names::new("spool-crash");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let through_proxy = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let mut bridge = start_binary(dir.path(), port, &through_proxy, &names);
    let client = reqwest::Client::new();
    wait_for_rabbitmq(&client, port).await;
    // The bridge declared its exchange: bind the oracle's queue, then cut the broker off.
    let reader = Reader::connect().await;
    let mut raw = reader.bind(&names.exchange, "raw").await;
    proxy.cut();

    // Clients post without pause until the process dies under them.
    let url = format!("http://127.0.0.1:{port}{WEBHOOK_PATH}");
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let sent = Arc::new(Mutex::new(HashSet::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (client, url, stop, next, accepted, sent) = (
            client.clone(),
            url.clone(),
            stop.clone(),
            next.clone(),
            accepted.clone(),
            sent.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let id = format!("crash-{n}");
                let body = update_of_container(&id, n);
                sent.lock().unwrap().insert(id.clone());
                let mut request = client.post(&url).body(body.clone());
                for (name, value) in SignatureBuilder::new(&body).headers() {
                    request = request.header(name, value);
                }
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        accepted.lock().unwrap().insert(id);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SIGKILL: no shutdown, no flush, no checkpoint.
    bridge.kill();
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > 100,
        "the binary accepted updates with the broker cut off: {}",
        accepted.len()
    );

    // Restart with the broker reachable: the spool is forwarded.
    let direct = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let bridge = start_binary(dir.path(), port, direct, &names);
    let seen = collect_ids(&mut raw, &accepted, Duration::from_secs(60)).await;
    drop(bridge);
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "every update answered 2xx arrived after the restart; {} of {} missing, e.g. {:?}",
        missing.len(),
        accepted.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let sent = sent.lock().unwrap().clone();
    assert!(
        seen.keys().all(|id| sent.contains(id)),
        "only updates that were sent arrived"
    );
    let duplicates = seen.values().filter(|n| **n > 1).count();
    println!(
        "spool crash: {} accepted before kill -9, all delivered after restart; {duplicates} delivered twice (same ids)",
        accepted.len()
    );
    reader.delete(&names).await;
}

#[tokio::test]
async fn a_dead_letter_goes_through_the_spool_to_the_sink() {
    let app = spawn_app_with(|s| {
        s.spool.dir = Some(s.storage.data_dir.join("spool"));
        s.delivery.mode = Some(AckMode::Spool);
    })
    .await;
    let response = app.post_signed(b"{\"not\": \"a delivery\"}").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "dead_lettered");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.dead_letters().is_empty() {
        assert!(Instant::now() < deadline, "the dead letter is forwarded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = app.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], body["id"], "the same event id as answered");
}

#[tokio::test]
async fn records_left_at_shutdown_are_forwarded_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let configure = |s: &mut vizion_bridge::settings::Settings| {
        s.spool.dir = Some(dir.path().join("spool"));
        s.delivery.mode = Some(AckMode::Spool);
        s.delivery.timeout = Duration::from_millis(500);
    };
    let stuck = Arc::new(GatedSink::new());
    let first = spawn_app_with_sinks(configure, vec![stuck.clone()]).await;
    for n in 0..5 {
        let response = first.post_signed(&update_body(&format!("kept-{n}"))).await;
        assert_eq!(response.status().as_u16(), 200);
    }
    first.stop().await;
    assert!(stuck.written.ids().is_empty(), "nothing was confirmed");

    let working = Arc::new(crate::helpers::FlakySink::new(0));
    let second = spawn_app_with_sinks(configure, vec![working.clone()]).await;
    assert_eq!(
        second
            .metric("vizion_bridge_spool_recovered_entries_total", "")
            .await,
        5.0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while working.written.ids().len() < 5 {
        assert!(Instant::now() < deadline, "the kept records are forwarded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected: Vec<String> = (0..5).map(|n| format!("kept-{n}")).collect();
    assert_eq!(
        working.written.ids(),
        expected,
        "in the order they were accepted"
    );
}
