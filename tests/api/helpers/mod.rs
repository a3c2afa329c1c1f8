//! Starts the real application on random ports and talks to it over HTTP.
//!
//! Everything the test modules share lives under this module, and the test modules take
//! what they need from here only, never from one another: the binaries under test
//! (`binaries`, `process`), the simulated Vizion (`simulator`), the brokers as a test
//! sees them (`topology`), a TCP proxy to cut them off (`proxy`), the outage driver
//! (`outage`) and sinks that misbehave on purpose (`test_sinks`).

mod binaries;
pub mod outage;
mod process;
mod proxy;
mod simulator;
mod test_sinks;
mod topology;

pub use process::*;
pub use proxy::*;
pub use simulator::*;
pub use test_sinks::*;
pub use topology::*;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use vizion_bridge::auth::KeyConfig;
use vizion_bridge::secret::InlineSecret;
use vizion_bridge::settings::Settings;
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
    update_body_for(id, "57428aec-560d-466b-a87c-ea7f049d7a0c", "OOCU7821056")
}

/// A valid Vizion update body with the given id, of one reference tracking one container.
pub fn update_body_for(id: &str, reference_id: &str, container_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "status": "data_received",
        "reference_id": reference_id,
        "organization_id": "3670867f-3634-4dd2-9b27-3531b5affe64",
        "payload": {
            "container_id": container_id,
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

/// How one request on a raw TCP connection ended.
#[derive(Debug)]
pub enum RawAnswer {
    /// A complete HTTP answer.
    Answered {
        status: u16,
        head: String,
        body: String,
    },
    /// Nothing listened: the connection was never established, so nothing was sent.
    Refused,
    /// The connection was established, then closed or reset without a complete answer.
    Cut(String),
}

impl std::fmt::Display for RawAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawAnswer::Answered { head, body, .. } => write!(f, "{head}\n\n{body}"),
            RawAnswer::Refused => f.write_str("connection refused"),
            RawAnswer::Cut(reason) => write!(f, "cut without an answer: {reason}"),
        }
    }
}

impl RawAnswer {
    pub fn status(&self) -> Option<u16> {
        match self {
            RawAnswer::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The value of header `name` in the answer.
    pub fn header(&self, name: &str) -> Option<String> {
        let RawAnswer::Answered { head, .. } = self else {
            return None;
        };
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Opens a connection to `port` on 127.0.0.1 from the local address `source` (every
/// address of 127.0.0.0/8 is local, so tests can play several clients).
pub async fn connect_from(source: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// Sends `request` on a new connection from `source` and reads one answer.
pub async fn raw_request(source: IpAddr, port: u16, request: &[u8], within: Duration) -> RawAnswer {
    let mut stream = match connect_from(source, port).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return RawAnswer::Refused,
        Err(e) => return RawAnswer::Cut(format!("connect: {e}")),
    };
    if let Err(e) = stream.write_all(request).await {
        return RawAnswer::Cut(format!("write: {e}"));
    }
    read_answer(&mut stream, within).await
}

/// Reads one HTTP answer from `stream`, up to the end of its body (the server may keep
/// the connection open after it).
pub async fn read_answer(stream: &mut TcpStream, within: Duration) -> RawAnswer {
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => return Err("closed".to_owned()),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(e) => return Err(e.to_string()),
            }
            if let Some(answer) = complete_answer(&received) {
                return Ok(answer);
            }
        }
    };
    match tokio::time::timeout(within, read).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => RawAnswer::Cut(format!(
            "{e} after {:?}",
            String::from_utf8_lossy(&received)
        )),
        Err(_) => RawAnswer::Cut(format!(
            "no answer within {within:?} after {:?}",
            String::from_utf8_lossy(&received)
        )),
    }
}

fn complete_answer(received: &[u8]) -> Option<RawAnswer> {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    (body.len() >= length).then(|| RawAnswer::Answered {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// A signed webhook carrying `body`, as the bytes of one HTTP/1.1 request that asks to
/// close the connection after the answer.
pub fn signed_request(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in SignatureBuilder::new(body).headers() {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

impl TestApp {
    /// Waits until the metric series reaches `at_least` (metrics of a connection are
    /// counted when it closes, a moment after the answer), and returns its value.
    pub async fn wait_for_metric(&self, name: &str, labels: &str, at_least: f64) -> f64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.metric(name, labels).await;
            if value >= at_least || std::time::Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
