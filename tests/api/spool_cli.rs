//! `vizion-bridge spool status|drain`: the backlog of a spool left behind by a bridge
//! whose broker was away, forwarded to RabbitMQ by `drain`, then reported empty; and
//! `drain` refused while a bridge holds the directory.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use vizion_bridge::delivery::AckMode;
use vizion_bridge::secret::InlineSecret;

use crate::helpers::*;

/// `spool status --json` of `spool`.
fn status_of(spool: &Path) -> Value {
    let (code, stdout, stderr) = run_cli(&[
        "spool",
        "status",
        "--json",
        "--dir",
        spool.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "spool status succeeds: {stderr}");
    serde_json::from_str(stdout.trim()).expect("spool status --json prints one JSON line")
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_left_behind_is_drained_into_rabbitmq_once_and_then_reports_empty() {
    let names = Names::new("spool_drain");
    let data = tempfile::tempdir().unwrap();
    let spool = data.path().join("spool");
    let mut settings = test_settings(data.path());
    names.configure(&mut settings);
    let unreachable = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    settings.rabbitmq.url = Some(InlineSecret::new(unreachable.clone()));
    settings.spool.dir = Some(spool.clone());
    settings.delivery.mode = Some(AckMode::Spool);

    // A bridge whose broker is away answers from its spool, then goes.
    let app = spawn_app_from(settings).await;
    let ids: Vec<String> = (0..5).map(|n| format!("spool-drain-{n}")).collect();
    for id in &ids {
        let response = app.post_signed(&update_body(id)).await;
        assert_eq!(response.status(), 200, "{id} is accepted into the spool");
    }
    app.stop().await;

    let before = status_of(&spool);
    assert_eq!(before["records"], 5, "{before}");
    assert!(before["bytes"].as_u64().unwrap() > 0, "{before}");
    assert!(before["oldest_spooled_at"].is_string(), "{before}");
    assert_eq!(before["quarantined"], 0, "{before}");

    // One-off runs pointed at the left-behind directory: first with the broker still
    // away, stopped by its timeout, then with the broker reachable.
    let drain_config = |url: &str, name: &str| {
        let config = data.path().join(name);
        std::fs::write(
            &config,
            format!(
                "sinks = [\"rabbitmq\"]\n\
                 [storage]\ndata_dir = {data:?}\n\
                 [rabbitmq]\nurl = {url:?}\nexchange = {exchange:?}\n\
                 unrouted_exchange = {unrouted:?}\nunrouted_queue = {unrouted:?}\n\
                 [spool]\nforward_timeout = \"1s\"\n\
                 retry_initial_backoff = \"50ms\"\nretry_max_backoff = \"300ms\"\n",
                data = data.path().join("drain-data").to_str().unwrap(),
                exchange = names.exchange,
                unrouted = names.unrouted,
            ),
        )
        .unwrap();
        config
    };
    let away = drain_config(&unreachable, "away.toml");
    let (code, _, stderr) = run_cli(&[
        "spool",
        "drain",
        "--config",
        away.to_str().unwrap(),
        "--dir",
        spool.to_str().unwrap(),
        "--timeout",
        "2s",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("5 record(s) left"), "{stderr}");
    assert_eq!(status_of(&spool)["records"], 5, "kept after the timeout");

    let config = drain_config(BROKER_URL, "drain.toml");
    let (code, stdout, stderr) = run_cli(&[
        "spool",
        "drain",
        "--config",
        config.to_str().unwrap(),
        "--dir",
        spool.to_str().unwrap(),
        "--timeout",
        "60s",
    ]);
    assert_eq!(code, 0, "drain succeeds: {stdout}\n{stderr}");
    assert!(stdout.contains("forwarded 5 record(s)"), "{stdout}");

    // No queue was bound: every message waits in the unrouted queue.
    let reader = Reader::connect().await;
    let mut unrouted = reader.consume(&names.unrouted).await;
    let mut raw_by_id: HashMap<String, usize> = HashMap::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(3), unrouted.next()).await
    {
        let message = message.expect("the delivery is good");
        if message.routing_key.as_str() == "raw" {
            let body: Value = serde_json::from_slice(&message.data).unwrap();
            *raw_by_id
                .entry(body["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let expected: HashMap<String, usize> = ids.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(raw_by_id, expected, "every spooled update, exactly once");

    let after = status_of(&spool);
    assert_eq!(after["records"], 0, "{after}");
    assert!(after["oldest_spooled_at"].is_null(), "{after}");
    reader.delete(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_refused_while_a_bridge_holds_the_spool() {
    let data = tempfile::tempdir().unwrap();
    let spool = data.path().join("spool");
    let mut settings = test_settings(data.path());
    settings.spool.dir = Some(spool.clone());
    let app = spawn_app_from(settings).await;

    let (code, _, stderr) = run_cli(&["spool", "drain", "--dir", spool.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("in use by a running vizion-bridge"),
        "{stderr}"
    );
    // Reading the backlog is fine meanwhile.
    assert_eq!(status_of(&spool)["records"], 0);
    app.stop().await;
}
