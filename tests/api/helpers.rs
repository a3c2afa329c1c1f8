//! Starts the real application on random ports and talks to it over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use vizion_bridge::auth::KeyConfig;
use vizion_bridge::config::secret::InlineSecret;
use vizion_bridge::config::Settings;
use vizion_bridge::sinks::file::{DEAD_LETTERS_FILE, EVENTS_FILE, RAW_FILE};
use vizion_bridge::sinks::{self, Sink};
use vizion_bridge::startup::{Application, StopHandle};
use vizion_bridge::telemetry::{init_logging, LogConfig, LogFormat};

pub const SECRET: &str = "test-secret-one";
pub const KEY_ID: &str = "k1";
pub const WEBHOOK_PATH: &str = "/webhooks/vizion";

static LOGGING: Once = Once::new();

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub metrics_address: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    stop: StopHandle,
    task: Option<JoinHandle<()>>,
    // Kept so that the directory lives as long as the app (and is removed after).
    _temp: Option<Arc<tempfile::TempDir>>,
}

/// Settings for tests: loopback listeners on port 0, loopback sources allowed, one
/// secret with a key id, the file sink in a fresh directory.
pub fn test_settings(data_dir: &std::path::Path) -> Settings {
    let mut settings = Settings {
        sinks: vec![sinks::SinkKind::File],
        ..Settings::default()
    };
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.workers = 2;
    settings.metrics.listen = "127.0.0.1:0".parse().unwrap();
    settings.ingest.allowed_sources =
        vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
    settings.auth.secrets = vec![KeyConfig {
        key_id: Some(KEY_ID.into()),
        secret: Some(InlineSecret::new(SECRET)),
        ..Default::default()
    }];
    settings.storage.data_dir = data_dir.to_owned();
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let temp = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(temp.path());
    configure(&mut settings);
    start(settings, None, Some(temp)).await
}

/// Starts the app with the given sinks (in addition to nothing else).
pub async fn spawn_app_with_sinks(
    configure: impl FnOnce(&mut Settings),
    sinks: Vec<Arc<dyn Sink>>,
) -> TestApp {
    let temp = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(temp.path());
    configure(&mut settings);
    start(settings, Some(sinks), Some(temp)).await
}

/// Starts the app on `settings` as given (the caller owns the data directory).
pub async fn spawn_app_from(settings: Settings) -> TestApp {
    start(settings, None, None).await
}

/// Starts the app with the configured sinks, or with `sinks` in their place.
async fn start(
    settings: Settings,
    sinks: Option<Vec<Arc<dyn Sink>>>,
    temp: Option<Arc<tempfile::TempDir>>,
) -> TestApp {
    LOGGING.call_once(|| {
        // Quiet unless TEST_LOG is set, e.g. TEST_LOG=debug cargo test.
        let level = std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into());
        init_logging(&LogConfig {
            format: LogFormat::Text,
            level,
        });
    });
    let ip = settings.server.listen.ip();
    let data_dir = settings.storage.data_dir.clone();
    let app = match sinks {
        Some(sinks) => Application::build_with_sinks(settings, sinks).await,
        None => Application::build(settings).await,
    }
    .expect("the app builds");
    let host = SocketAddr::new(ip, app.port());
    let address = format!("http://{host}");
    let metrics_address = format!("http://127.0.0.1:{}", app.metrics_port());
    let port = app.port();
    let stop = app.stop_handle();
    let task = tokio::spawn(async move {
        app.run_until_stopped()
            .await
            .expect("the app runs and stops cleanly");
    });
    TestApp {
        address,
        port,
        metrics_address,
        data_dir,
        client: reqwest::Client::new(),
        stop,
        task: Some(task),
        _temp: temp,
    }
}

impl TestApp {
    pub fn webhook_url(&self) -> String {
        format!("{}{}", self.address, WEBHOOK_PATH)
    }

    /// Posts `body` with the given extra headers.
    pub async fn post(&self, body: &[u8], headers: &[(String, String)]) -> reqwest::Response {
        self.post_to(&self.webhook_url(), body, headers).await
    }

    pub async fn post_to(
        &self,
        url: &str,
        body: &[u8],
        headers: &[(String, String)],
    ) -> reqwest::Response {
        post_json(&self.client, url, body, headers).await
    }

    /// Posts `body` signed with the test secret, as Vizion would.
    pub async fn post_signed(&self, body: &[u8]) -> reqwest::Response {
        self.post(body, &SignatureBuilder::new(body).headers())
            .await
    }

    /// `GET` a path of the webhook listener.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the request reaches the app")
    }

    /// Waits until `/readyz` answers 200 (a broker sink connects in the background).
    pub async fn wait_until_ready(&self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let response = self.get("/readyz").await;
            if response.status().as_u16() == 200 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not ready within {within:?}: {}",
                response.text().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of one metric series, 0 when absent. `labels` like `outcome="accepted"`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        scrape_metric(&self.client, &self.metrics_address, name, labels).await
    }

    /// Every event in the file sink's `events.jsonl`, in CloudEvents structured mode.
    pub fn events(&self) -> Vec<Value> {
        read_lines(&self.data_dir.join(EVENTS_FILE))
    }

    /// The tracking-update events written so far.
    pub fn updates(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| {
                e["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(".update.v1"))
            })
            .collect()
    }

    /// The ids of the updates written so far, in order.
    pub fn update_ids(&self) -> Vec<String> {
        self.updates()
            .iter()
            .map(|u| u["data"]["update_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The lines of `raw.jsonl`: every accepted body with how it was received.
    pub fn raw_records(&self) -> Vec<Value> {
        read_lines(&self.data_dir.join(RAW_FILE))
    }

    /// The dead-letter events written so far.
    pub fn dead_letters(&self) -> Vec<Value> {
        read_lines(&self.data_dir.join(DEAD_LETTERS_FILE))
    }

    /// Shuts the app down as SIGTERM would and waits until it has stopped.
    pub async fn stop(mut self) {
        self.stop.stop();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the app stops in time")
                .expect("the app task does not panic");
        }
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    pub fn take_task(&mut self) -> JoinHandle<()> {
        self.task.take().expect("the app is running")
    }
}

/// Posts `body` as JSON with the given extra headers.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    headers: &[(String, String)],
) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request.send().await.expect("the request reaches the app")
}

/// The value of one metric series on a metrics listener, 0 when absent.
async fn scrape_metric(
    client: &reqwest::Client,
    metrics_address: &str,
    name: &str,
    labels: &str,
) -> f64 {
    let text = client
        .get(format!("{metrics_address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, name, labels)
}

/// Finds `name{labels}` (labels in any order) in Prometheus text.
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let have: Vec<&str> = series_labels.split(',').filter(|l| !l.is_empty()).collect();
            (series_name == name
                && wanted.iter().all(|w| have.contains(w))
                && have.len() == wanted.len())
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .next()
        .unwrap_or(0.0)
}

fn read_lines(path: &std::path::Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A valid Vizion update body with the given id.
pub fn update_body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "status": "data_received",
        "reference_id": "57428aec-560d-466b-a87c-ea7f049d7a0c",
        "organization_id": "3670867f-3634-4dd2-9b27-3531b5affe64",
        "payload": {
            "container_id": "OOCU7821056",
            "carrier_scac": "OOLU",
            "milestones": []
        },
        "created_at": "2021-07-31T21:34:09.003Z",
        "updated_at": "2021-07-31T21:34:09.003Z",
        "parent_reference_id": null
    }))
    .unwrap()
}

pub fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bodies")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The bytes of a `body_base64` field.
pub fn decode_base64(value: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// Builds Vizion-style signature headers, written from the signature description
/// independently of the code under test.
#[derive(Clone)]
pub struct SignatureBuilder {
    pub body: Vec<u8>,
    pub secret: String,
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
    pub target: String,
    pub created: Option<i64>,
    pub expires: Option<i64>,
    pub covered: String,
    /// Replaces the digest header's value when set.
    pub digest_override: Option<String>,
    pub with_digest: bool,
}

impl SignatureBuilder {
    pub fn new(body: &[u8]) -> Self {
        let now = unix_now();
        Self {
            body: body.to_vec(),
            secret: SECRET.into(),
            key_id: Some(KEY_ID.into()),
            algorithm: Some("hmac-sha256".into()),
            target: format!("post {WEBHOOK_PATH}"),
            created: Some(now),
            expires: Some(now + 300),
            covered: "(request-target) (created) (expires) digest".into(),
            digest_override: None,
            with_digest: true,
        }
    }

    pub fn digest_value(&self) -> String {
        self.digest_override
            .clone()
            .unwrap_or_else(|| format!("SHA-256={}", hex::encode(Sha256::digest(&self.body))))
    }

    pub fn signing_string(&self) -> String {
        self.covered
            .split_whitespace()
            .map(|entry| match entry {
                "(request-target)" => format!("(request-target): {}", self.target),
                "(created)" => format!("(created): {}", self.created.unwrap()),
                "(expires)" => format!("(expires): {}", self.expires.unwrap()),
                "digest" => format!("digest: {}", self.digest_value()),
                other => panic!("the test builder does not sign {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn signature_hex(&self) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).unwrap();
        mac.update(self.signing_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn signature_header(&self) -> String {
        let mut params = Vec::new();
        if let Some(key_id) = &self.key_id {
            params.push(format!("keyId=\"{key_id}\""));
        }
        if let Some(algorithm) = &self.algorithm {
            params.push(format!("algorithm=\"{algorithm}\""));
        }
        if let Some(created) = self.created {
            params.push(format!("created={created}"));
        }
        if let Some(expires) = self.expires {
            params.push(format!("expires={expires}"));
        }
        params.push(format!("headers=\"{}\"", self.covered));
        params.push(format!("signature=\"{}\"", self.signature_hex()));
        params.join(",")
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![("x-vizion-signature".to_string(), self.signature_header())];
        if self.with_digest {
            headers.push(("digest".into(), self.digest_value()));
        }
        headers
    }
}

/// HMAC-SHA256 of the body, hex (the `body-hmac` reading).
pub fn body_hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn body_hmac_base64(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The real binary, serving on loopback ports it picks itself, for tests that look at
/// the serving process (its memory) rather than at an in-process app. Killed on drop,
/// so that a failed assertion leaves no server behind.
pub struct BinaryApp {
    pub address: String,
    pub metrics_address: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    child: std::process::Child,
    _temp: tempfile::TempDir,
}

impl BinaryApp {
    /// Starts `vizion-bridge serve` with the file sink, two workers, loopback sources
    /// allowed and the test secret, then `extra_toml` (whole sections) appended.
    pub async fn start(extra_toml: &str) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("data");
        let config = temp.path().join("bridge.toml");
        std::fs::write(
            &config,
            format!(
                "sinks = [\"file\"]\n\
                 [server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
                 [metrics]\nlisten = \"127.0.0.1:0\"\n\
                 [log]\nformat = \"json\"\nlevel = \"info\"\n\
                 [ingest]\nallowed_sources = [\"127.0.0.1/32\"]\n\
                 [[auth.secrets]]\nkey_id = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n\
                 [storage]\ndata_dir = \"{}\"\n{extra_toml}",
                data_dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vizion-bridge"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("VIZION_BRIDGE_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // The log is read to its end, so that the server never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (ports_tx, ports_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["message"] == "vizion-bridge listening" {
                    let _ = ports_tx.send((entry["port"].as_u64(), entry["metrics_port"].as_u64()));
                }
            }
        });
        let (Some(port), Some(metrics_port)) = tokio::task::spawn_blocking(move || {
            ports_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the binary logs that it listens")
        })
        .await
        .unwrap() else {
            panic!("the listening line names both ports");
        };
        Self {
            address: format!("http://127.0.0.1:{port}"),
            metrics_address: format!("http://127.0.0.1:{metrics_port}"),
            data_dir,
            client: reqwest::Client::new(),
            child,
            _temp: temp,
        }
    }

    pub fn webhook_url(&self) -> String {
        format!("{}{}", self.address, WEBHOOK_PATH)
    }

    /// Posts `body` with the given headers, on a connection of its own.
    pub async fn post(&self, body: &[u8], headers: &[(String, String)]) -> reqwest::Response {
        post_json(&self.client, &self.webhook_url(), body, headers).await
    }

    pub async fn post_signed(&self, body: &[u8]) -> reqwest::Response {
        self.post(body, &SignatureBuilder::new(body).headers())
            .await
    }

    /// The value of one metric series, 0 when absent.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        scrape_metric(&self.client, &self.metrics_address, name, labels).await
    }

    /// The most memory the process has held resident so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process is alive");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("/proc/<pid>/status has VmHWM");
        kib * 1024
    }

    /// The dead-letter events written so far.
    pub fn dead_letters(&self) -> Vec<Value> {
        read_lines(&self.data_dir.join(DEAD_LETTERS_FILE))
    }
}

impl Drop for BinaryApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
