//! The `vizion-bridge` binary run as a user runs it: one-shot commands to their end, and
//! `serve` as a process of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use vizion_bridge::sinks::file::{DEAD_LETTERS_FILE, RAW_FILE};

use super::binaries::bridge_binary;
use super::{post_json, read_lines, scrape_metric, SignatureBuilder};
use super::{KEY_ID, SECRET, WEBHOOK_PATH};

/// A command that runs the `vizion-bridge` binary, without the configuration path of
/// the environment the tests run in.
pub fn bridge_command() -> Command {
    let mut command = Command::new(bridge_binary());
    command.env_remove("VIZION_BRIDGE_CONFIG");
    command
}

/// Runs the `vizion-bridge` binary with `args` to its end (a one-shot command); returns
/// its exit code, stdout and stderr.
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    run_cli_with(args, &[])
}

/// [`run_cli`] with `env` added to the environment.
pub fn run_cli_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = bridge_command();
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What becomes of a served process's log (its stderr).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// Read line by line, for [`BridgeProcess::next_log_line`] and the like.
    Captured,
    Discarded,
}

/// `vizion-bridge serve` as a process of its own. Killed on drop, so that a failed
/// assertion leaves no server behind.
pub struct BridgeProcess {
    child: std::process::Child,
    /// Behind a mutex so that the process can be shared between tasks.
    log: Option<Mutex<Receiver<String>>>,
}

impl BridgeProcess {
    /// Starts `vizion-bridge serve --config <config>` with `env` added to the environment
    /// (and `RUST_LOG` taken out of it, so that the file's `[log]` level holds, and
    /// `MIMALLOC_ALLOW_THP`, so that the process's own memory settings hold).
    pub fn serve(config: &Path, env: &[(&str, &str)], log: Log) -> Self {
        let mut command = bridge_command();
        command
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("MIMALLOC_ALLOW_THP")
            .stdout(Stdio::null())
            .stderr(match log {
                Log::Captured => Stdio::piped(),
                Log::Discarded => Stdio::null(),
            });
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let log = child.stderr.take().map(|stderr| {
            let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = lines_tx.send(line);
                }
            });
            Mutex::new(lines)
        });
        Self { child, log }
    }

    fn log(&self) -> &Mutex<Receiver<String>> {
        self.log
            .as_ref()
            .expect("the process was started with its log captured")
    }

    /// The next line of the log, within `within`.
    pub fn next_log_line(&self, within: Duration) -> Option<String> {
        self.log().lock().unwrap().recv_timeout(within).ok()
    }

    /// The next log entry (JSON) that `wanted` picks, within `within`.
    pub fn wait_for_log(
        &self,
        within: Duration,
        mut wanted: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next_log_line(left)?;
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                if wanted(&entry) {
                    return Some(entry);
                }
            }
        }
    }

    /// The lines of the log not read yet, up to its end once the process has exited
    /// (the reader may still be passing them on when the exit is seen).
    pub fn rest_of_log(&self) -> Vec<String> {
        let log = self.log().lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => {
                    lines.extend(log.try_iter());
                    return lines;
                }
            }
        }
    }

    /// The most memory the process has held resident so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let kib =
            proc_field(&self.proc_file("status"), "VmHWM").expect("/proc/<pid>/status has VmHWM");
        kib * 1024
    }

    /// The text of `/proc/<pid>/<name>` (`status`, `smaps_rollup`).
    pub fn proc_file(&self, name: &str) -> String {
        let path = format!("/proc/{}/{name}", self.child.id());
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGHUP, as `kill -HUP` does to reload the configuration.
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL: no shutdown, no flush, no checkpoint. Returns once the process is gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit, and returns its exit code.
    pub async fn wait_for_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the binary exits within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real binary, serving until the test ends (killed on drop).
/// For tests that look at the serving process itself (its memory, its log, its signals)
/// rather than at an in-process app.
pub struct BinaryApp {
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub metrics_address: String,
    pub client: reqwest::Client,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The configuration file it serves.
    pub config_path: PathBuf,
    process: BridgeProcess,
    _dir: tempfile::TempDir,
}

/// Starts `vizion-bridge serve` on loopback ports chosen by the system, with the test
/// secret, JSON logs at `info`, 127.0.0.1 allowed, `top_level` keys (e.g. `sinks`; the
/// file sink by default) and the TOML in `sections`, which may begin with `[server]`
/// keys and go on with sections of its own.
pub async fn spawn_binary(top_level: &str, sections: &str) -> BinaryApp {
    let dir = tempfile::tempdir().unwrap();
    let auth_and_ingest = format!(
        "[[auth.secrets]]\nkey_id = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n\
         [ingest]\nallowed_sources = [\"127.0.0.1/32\"]\n"
    );
    let config = binary_config(dir.path(), top_level, &auth_and_ingest, sections);
    serve_binary(dir, &config).await
}

/// The configuration [`spawn_binary`] serves from `dir`, with `auth_and_ingest` (the
/// `auth` and `ingest` tables) in place of the test secret and the loopback allowlist.
pub fn binary_config(dir: &Path, top_level: &str, auth_and_ingest: &str, sections: &str) -> String {
    format!(
        "{top_level}\n[log]\nformat = \"json\"\nlevel = \"info\"\n\
         [storage]\ndata_dir = \"{data}\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         {auth_and_ingest}\n\
         [server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n{sections}\n",
        data = dir.join("data").display(),
    )
}

/// Writes `config` to `bridge.toml` in `dir` (see [`binary_config`]) and serves it.
pub async fn serve_binary(dir: tempfile::TempDir, config: &str) -> BinaryApp {
    let data_dir = dir.path().join("data");
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(&config_path, config).unwrap();
    let process = BridgeProcess::serve(&config_path, &[], Log::Captured);
    let listening = process
        .wait_for_log(Duration::from_secs(30), |entry| {
            entry["message"] == "vizion-bridge listening"
        })
        .expect("the binary logs that it listens");
    let port = listening["port"].as_u64().unwrap() as u16;
    let metrics_port = listening["metrics_port"].as_u64().unwrap() as u16;
    BinaryApp {
        port,
        address: format!("http://127.0.0.1:{port}"),
        metrics_address: format!("http://127.0.0.1:{metrics_port}"),
        client: reqwest::Client::new(),
        data_dir,
        config_path,
        process,
        _dir: dir,
    }
}

impl BinaryApp {
    /// The next log entry (JSON) that `wanted` picks, within `within`.
    pub fn wait_for_log(
        &self,
        within: Duration,
        wanted: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        self.process.wait_for_log(within, wanted)
    }

    /// The value of one metric series, 0 when absent.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        scrape_metric(&self.client, &self.metrics_address, name, labels).await
    }

    pub fn webhook_url(&self) -> String {
        format!("{}{}", self.address, WEBHOOK_PATH)
    }

    /// Posts `body` with the given headers.
    pub async fn post(&self, body: &[u8], headers: &[(String, String)]) -> reqwest::Response {
        post_json(&self.client, &self.webhook_url(), body, headers).await
    }

    pub async fn post_signed(&self, body: &[u8]) -> reqwest::Response {
        self.post(body, &SignatureBuilder::new(body).headers())
            .await
    }

    /// The most memory the process has held resident so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.process.peak_rss_bytes()
    }

    /// The dead-letter events written so far.
    pub fn dead_letters(&self) -> Vec<Value> {
        read_lines(&self.data_dir.join(DEAD_LETTERS_FILE))
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Sends SIGHUP, as `kill -HUP` does to reload the configuration.
    pub fn hangup(&self) {
        self.process.hangup();
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The text of `/proc/<pid>/<name>` (`status`, `smaps_rollup`).
    pub fn proc_file(&self, name: &str) -> String {
        self.process.proc_file(name)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Waits for the process to exit, and returns its exit code.
    pub async fn wait_for_exit(&mut self, within: Duration) -> Option<i32> {
        self.process.wait_for_exit(within).await
    }

    /// The lines of `raw.jsonl`: every accepted body.
    pub fn raw_records(&self) -> Vec<Value> {
        read_lines(&self.data_dir.join(RAW_FILE))
    }
}

/// Keeps a child process for the length of a test and kills it at the end.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The number of a `/proc` file's `field` line (`VmHWM:   1234 kB`, `THP_enabled: 1`).
pub fn proc_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
