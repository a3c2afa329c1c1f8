//! `vizion-sim serve`, the simulated Vizion, as a process of its own on a free port, for
//! any test that needs a Vizion to talk to.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vizion_bridge::secret::InlineSecret;
use vizion_bridge::settings::Settings;
use vizion_bridge::vizion::api::VizionApiConfig;

use super::binaries::sim_binary;
use super::{KEY_ID, SECRET};

pub const SIM_API_KEY: &str = "sim-test-api-key";

/// The journey every reference plays, in order.
pub const JOURNEY: [&str; 12] = [
    "Gate out empty",
    "Gate in full",
    "Loaded on vessel at origin port",
    "Vessel departure from origin port",
    "Vessel arrival at transshipment port",
    "Discharged from vessel at transshipment port",
    "Loaded on vessel at transshipment port",
    "Vessel departure from transshipment port",
    "Vessel arrived at destination port",
    "Discharged from vessel at destination port",
    "Gate out from destination port",
    "Gate in empty return",
];

/// How to start the simulator. The defaults suit deterministic tests: journeys move
/// only on `advance`, failed deliveries wait 12 hours, deliveries are signed with the
/// bridge test helpers' secret and key id.
#[derive(Clone)]
pub struct SimulatorOptions {
    pub step_interval: String,
    pub check_interval: String,
    /// `None`: deliveries are unsigned.
    pub secret: Option<String>,
    pub key_id: Option<String>,
    pub seed: u64,
    /// Further `serve` arguments, e.g. `["--rate-limit", "3"]`.
    pub extra: Vec<String>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        Self {
            step_interval: "0s".into(),
            check_interval: "12h".into(),
            secret: Some(SECRET.into()),
            key_id: Some(KEY_ID.into()),
            seed: 42,
            extra: Vec::new(),
        }
    }
}

/// A running `vizion-sim serve`, killed on drop.
pub struct Simulator {
    pub base_url: String,
    pub api_key: String,
    pub client: reqwest::Client,
    child: Child,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn spawn_simulator() -> Simulator {
    spawn_simulator_with(SimulatorOptions::default()).await
}

pub async fn spawn_simulator_with(options: SimulatorOptions) -> Simulator {
    const SECRET_VAR: &str = "VIZION_SIM_TEST_WEBHOOK_SECRET";
    let mut command = Command::new(sim_binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--api-key", SIM_API_KEY])
        .args(["--step-interval", &options.step_interval])
        .args(["--check-interval", &options.check_interval])
        .args(["--seed", &options.seed.to_string()])
        .args(&options.extra)
        .env_remove("VIZION_SIM_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(secret) = &options.secret {
        command
            .args(["--webhook-secret-env", SECRET_VAR])
            .env(SECRET_VAR, secret);
    }
    if let Some(key_id) = &options.key_id {
        command.args(["--key-id", key_id]);
    }
    match std::env::var("TEST_LOG") {
        Ok(level) => {
            command.env("RUST_LOG", level).stderr(Stdio::inherit());
        }
        Err(_) => {
            command.stderr(Stdio::null());
        }
    }
    let mut child = command.spawn().expect("vizion-sim starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .expect("vizion-sim prints its address");
    let base_url = first_line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_owned();
    Simulator {
        base_url,
        api_key: SIM_API_KEY.into(),
        client: reqwest::Client::new(),
        child,
    }
}

impl Simulator {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET` with the API key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("x-api-key", &self.api_key)
            .send()
            .await
            .expect("the simulator answers")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// `POST` JSON with the API key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("x-api-key", &self.api_key)
            .json(body)
            .send()
            .await
            .expect("the simulator answers")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .header("x-api-key", &self.api_key)
            .send()
            .await
            .expect("the simulator answers")
    }

    /// Creates a reference and returns the `reference` object of the answer.
    pub async fn create_reference(&self, body: Value) -> Value {
        let response = self.post("/references", &body).await;
        assert_eq!(response.status().as_u16(), 201, "POST /references {body}");
        let answer: Value = response.json().await.unwrap();
        answer["reference"].clone()
    }

    /// A container reference whose updates go to `callback_url`; returns its id.
    pub async fn track(&self, container_id: &str, callback_url: &str) -> String {
        let reference = self
            .create_reference(json!({
                "container_id": container_id,
                "carrier_code": "MAEU",
                "callback_url": callback_url,
            }))
            .await;
        reference["id"].as_str().unwrap().to_owned()
    }

    /// Plays the next step of a journey now and returns the simulator's answer
    /// (with the delivery attempt, if any).
    pub async fn advance(&self, reference_id: &str) -> Value {
        let response = self
            .client
            .post(self.url(&format!("/_sim/references/{reference_id}/advance")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "advance {reference_id}");
        response.json().await.unwrap()
    }

    /// Every callback attempt for a reference, oldest first.
    pub async fn deliveries(&self, reference_id: &str) -> Vec<Value> {
        self.client
            .get(self.url(&format!("/_sim/deliveries?reference_id={reference_id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the reference has at least `count` callback attempts.
    pub async fn wait_for_deliveries(
        &self,
        reference_id: &str,
        count: usize,
        within: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let deliveries = self.deliveries(reference_id).await;
            if deliveries.len() >= count {
                return deliveries;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} deliveries within {within:?}: {deliveries:#?}",
                deliveries.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The API requests the simulator received.
    pub async fn requests(&self) -> Vec<Value> {
        self.client
            .get(self.url("/_sim/requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Client settings for the simulator, with short retry waits.
pub fn api_config(sim: &Simulator) -> VizionApiConfig {
    VizionApiConfig {
        base_url: sim.base_url.clone(),
        api_key: Some(InlineSecret::new(SIM_API_KEY)),
        retry_backoff: Duration::from_millis(20),
        max_retry_backoff: Duration::from_secs(3),
        ..VizionApiConfig::default()
    }
}

/// Points the bridge's `[vizion_api]` at the simulator.
pub fn use_simulator(settings: &mut Settings, sim: &Simulator) {
    settings.vizion_api = api_config(sim);
}

/// What a run of `vizion-sim load` reported, and the ids of the updates it saw accepted.
pub struct LoadRun {
    pub report: Value,
    pub accepted_ids: Vec<String>,
}

/// Runs `vizion-sim load` against `webhook_url`, signing with the bridge test helpers'
/// secret and key id, for `duration` without warm-up; `extra` adds arguments (e.g.
/// `["--mode", "journey"]`).
pub async fn run_load(webhook_url: &str, duration: &str, extra: &[&str]) -> LoadRun {
    const SECRET_VAR: &str = "VIZION_SIM_TEST_LOAD_SECRET";
    let dir = tempfile::tempdir().unwrap();
    let ids_file = dir.path().join("accepted");
    let mut command = Command::new(sim_binary());
    command
        .args(["load", "--url", webhook_url, "--key-id", KEY_ID])
        .args(["--secret-env", SECRET_VAR])
        .args(["--duration", duration, "--warmup", "0s", "--json"])
        .arg("--accepted-ids")
        .arg(&ids_file)
        .args(extra)
        .env(SECRET_VAR, SECRET)
        .stdin(Stdio::null());
    // The bridge answers on this test's runtime: wait for the load off it.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("vizion-sim load runs");
    assert!(output.status.success(), "vizion-sim load: {output:?}");
    let report = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let accepted_ids = std::fs::read_to_string(&ids_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    LoadRun {
        report,
        accepted_ids,
    }
}
