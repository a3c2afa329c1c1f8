//! Polling against the simulated Vizion: an update whose webhook failed is recovered by
//! the reconciliation pass before Vizion's next check, and consumers see it once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use vizion_bridge::events::{Content, Envelope};
use vizion_bridge::poller::PollScope;
use vizion_bridge::sinks::{Sink, SinkError};

use crate::helpers::*;

/// A consumer that can be taken down: while down, every write fails. It records each
/// update it confirmed with the `deliverymode` of its events.
#[derive(Default)]
struct SwitchableSink {
    down: AtomicBool,
    written: Mutex<Vec<(String, String)>>,
}

impl SwitchableSink {
    fn written(&self) -> Vec<(String, String)> {
        self.written.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sink for SwitchableSink {
    fn name(&self) -> &'static str {
        "switchable"
    }

    async fn write(&self, record: &Envelope) -> Result<(), SinkError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SinkError::Io("down on purpose".into()));
        }
        if let Content::Updates {
            batch,
            delivery_id: Some(id),
            ..
        } = record.content()
        {
            let mode = batch
                .tracking_update()
                .and_then(|e| e.extension("deliverymode"))
                .unwrap_or_default();
            self.written
                .lock()
                .unwrap()
                .push((id.to_string(), mode.to_owned()));
        }
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }

    async fn close(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_webhook_is_recovered_by_reconciliation_before_the_next_check() {
    let sim = spawn_simulator().await;
    let sink = Arc::new(SwitchableSink::default());
    let app = spawn_app_with_sinks(
        |settings| {
            use_simulator(settings, &sim);
            settings.poll.enabled = true;
            settings.poll.references = PollScope::All;
            settings.poll.interval = Duration::from_millis(300);
            settings.delivery.timeout = Duration::from_secs(1);
        },
        vec![sink.clone()],
    )
    .await;
    let reference = sim.track("MSKU2345678", &app.webhook_url()).await;

    // The consumer is down when Vizion posts: the bridge answers 503.
    sink.down.store(true, Ordering::SeqCst);
    let step = sim.advance(&reference).await;
    let update_id = step["update_id"].as_str().unwrap().to_owned();
    assert_eq!(step["delivery"]["status"], 503, "{step}");

    // Back up: the next reconciliation pass fetches the update from the API.
    sink.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sink.written().iter().any(|(id, _)| *id == update_id) {
        assert!(Instant::now() < deadline, "not recovered by polling");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.written(), [(update_id.clone(), "poll".to_owned())]);
    // Vizion has not retried yet: its next check is 12 hours away.
    let deliveries = sim.deliveries(&reference).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");

    // At its next check Vizion sends the update again: a duplicate, acknowledged.
    let check: Value = sim
        .client
        .post(sim.url(&format!("/_sim/references/{reference}/check")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["delivery"]["status"], 200, "{check}");
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"duplicate\"")
            .await,
        1.0
    );

    // The next step is acknowledged, and each update reached the consumer once
    // (by webhook or by the poller, whichever came first).
    let step = sim.advance(&reference).await;
    assert_eq!(step["delivery"]["status"], 200, "{step}");
    let next_id = step["update_id"].as_str().unwrap().to_owned();
    let mut ids: Vec<String> = sink.written().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut expected = vec![update_id, next_id];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(
        app.metric("vizion_bridge_poll_updates_total", "outcome=\"accepted\"")
            .await
            >= 1.0
    );
    app.stop().await;
}

/// Writes a configuration file for `vizion-bridge poll --once` against the simulator.
fn poll_config(sim: &Simulator, data_dir: &std::path::Path) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        r#"sinks = ["file"]

[storage]
data_dir = "{}"

[auth]
scheme = "none"
mode = "off"

[vizion_api]
base_url = "{}"
api_key_env = "VIZION_TEST_SIM_API_KEY"
retry_backoff = "20ms"

[poll]
references = "without_callback"
"#,
        data_dir.display(),
        sim.base_url
    );
    std::fs::write(file.path(), text).unwrap();
    file
}

fn poll_once(config: &std::path::Path) -> (bool, String) {
    let output = bridge_command()
        .args(["poll", "--once", "--json", "--config"])
        .arg(config)
        .env("VIZION_TEST_SIM_API_KEY", SIM_API_KEY)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn poll_once_reads_references_without_a_callback_and_remembers_across_runs() {
    let sim = spawn_simulator().await;
    let reference = sim
        .create_reference(serde_json::json!({
            "container_id": "MSKU3456789",
            "carrier_code": "MAEU",
        }))
        .await;
    let reference = reference["id"].as_str().unwrap().to_owned();
    let mut played = Vec::new();
    for _ in 0..2 {
        played.push(
            sim.advance(&reference).await["update_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A reference with a callback is left to its webhooks.
    sim.track("MSKU4567890", "http://127.0.0.1:9/none").await;

    let data = tempfile::tempdir().unwrap();
    let config = poll_config(&sim, data.path());
    let (ok, report) = tokio::task::spawn_blocking({
        let path = config.path().to_owned();
        move || poll_once(&path)
    })
    .await
    .unwrap();
    assert!(ok, "{report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["references"], 1, "{report}");
    assert_eq!(report["accepted"], 2, "{report}");

    let events = std::fs::read_to_string(data.path().join("events.jsonl")).unwrap();
    let updates: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"].as_str().unwrap().ends_with(".update.v1"))
        .collect();
    let ids: Vec<&str> = updates.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, played);
    assert!(updates.iter().all(|u| u["deliverymode"] == "poll"));

    // A second run (a new process) remembers what the first one wrote.
    sim.advance(&reference).await;
    let (ok, report) = tokio::task::spawn_blocking({
        let path = config.path().to_owned();
        move || poll_once(&path)
    })
    .await
    .unwrap();
    assert!(ok, "{report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["duplicates"], 2, "{report}");
}
