//! Reloading the configuration of a running bridge: a rotated secret file, a new
//! sending address on SIGHUP, a broken configuration that changes nothing, and
//! requests in flight while reloads happen.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const RELOADS: &str = "vizion_bridge_config_reloads_total";

/// A directory laid out as Kubernetes mounts a Secret: the file is a link into `..data`,
/// itself a link to the current version's directory, which an update swaps in one
/// rename; the file is never written in place.
struct MountedSecret {
    dir: PathBuf,
    name: &'static str,
    version: u32,
}

impl MountedSecret {
    fn new(parent: &Path, name: &'static str, value: &str) -> Self {
        let dir = parent.join("secrets");
        std::fs::create_dir(&dir).unwrap();
        let mut secret = Self {
            dir,
            name,
            version: 0,
        };
        secret.update(value);
        std::os::unix::fs::symlink(format!("..data/{name}"), secret.path()).unwrap();
        secret
    }

    fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    fn update(&mut self, value: &str) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        std::fs::write(self.dir.join(&version).join(self.name), value).unwrap();
        let next = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &next).unwrap();
        std::fs::rename(&next, self.dir.join("..data")).unwrap();
    }
}

/// The `auth` and `ingest` tables: the key `k1` read from `secret_file`, and `ingest`.
fn file_secret_and(secret_file: &Path, ingest: &str) -> String {
    format!(
        "[[auth.secrets]]\nkey_id = \"{KEY_ID}\"\nsecret_file = \"{}\"\n[ingest]\n{ingest}\n",
        secret_file.display()
    )
}

/// The test secret inline as `k1`, and 127.0.0.1 allowed.
fn inline_secret() -> String {
    format!(
        "[[auth.secrets]]\nkey_id = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n\
         [ingest]\nallowed_sources = [\"127.0.0.1/32\"]\n"
    )
}

fn signed_with(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    SignatureBuilder {
        secret: secret.into(),
        ..SignatureBuilder::new(body)
    }
    .headers()
}

async fn status(response: reqwest::Response) -> u16 {
    response.status().as_u16()
}

/// Waits for the log line of the next reload that read a valid configuration.
fn wait_for_reload(app: &BinaryApp) -> Value {
    app.wait_for_log(Duration::from_secs(15), |entry| {
        entry["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("configuration reloaded"))
    })
    .expect("the bridge logs the reload")
}

/// Waits for the log line of the next refused reload.
fn wait_for_refusal(app: &BinaryApp) -> Value {
    app.wait_for_log(Duration::from_secs(15), |entry| {
        entry["message"] == "configuration reload refused, the running configuration stays"
    })
    .expect("the bridge logs the refusal")
}

#[tokio::test]
async fn a_rotated_secret_file_is_taken_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut secret = MountedSecret::new(dir.path(), "webhook-k1", "old-secret");
    let config = binary_config(
        dir.path(),
        "",
        &file_secret_and(&secret.path(), "allowed_sources = [\"127.0.0.1/32\"]"),
        "[reload]\npoll_interval = \"100ms\"\n",
    );
    let mut app = serve_binary(dir, &config).await;
    let pid = app.pid();
    let body = update_body("u-rotate-1");
    assert_eq!(
        status(app.post(&body, &signed_with("old-secret", &body)).await).await,
        200
    );

    secret.update("new-secret");
    let reloaded = wait_for_reload(&app);
    assert_eq!(reloaded["changed"], "auth.secrets", "{reloaded}");
    assert_eq!(reloaded["trigger"], "file", "{reloaded}");

    let body = update_body("u-rotate-2");
    assert_eq!(
        status(app.post(&body, &signed_with("old-secret", &body)).await).await,
        401
    );
    assert_eq!(
        status(app.post(&body, &signed_with("new-secret", &body)).await).await,
        200
    );
    assert!(app.is_running());
    assert_eq!(app.pid(), pid, "the same process serves");
    assert_eq!(app.metric(RELOADS, "result=\"applied\"").await, 1.0);
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"accepted\"")
            .await,
        2.0,
        "what was counted before the reload is still counted: no restart"
    );
}

#[tokio::test]
async fn a_broken_configuration_is_refused_and_the_running_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let sections = "[reload]\npoll_interval = \"100ms\"\n";
    let config = binary_config(&path, "", &inline_secret(), sections);
    let app = serve_binary(dir, &config).await;

    // Not TOML, with a secret on the broken line that must not reach the log.
    let broken = binary_config(
        &path,
        "",
        "[[auth.secrets]]\nkey_id = \"k1\"\nsecret = \"hunter2-leak\n",
        sections,
    );
    std::fs::write(&app.config_path, broken).unwrap();
    let refused = wait_for_refusal(&app);
    assert_eq!(refused["level"], "ERROR", "{refused}");
    assert!(!refused.to_string().contains("hunter2"), "{refused}");
    assert_eq!(app.metric(RELOADS, "result=\"failed\"").await, 1.0);
    assert_eq!(
        status(app.post_signed(&update_body("u-broken-1")).await).await,
        200
    );

    // TOML, but a secret file that is not there: the whole of it is refused.
    let missing = path.join("not-mounted-yet");
    let invalid = binary_config(
        &path,
        "",
        &file_secret_and(&missing, "allowed_sources = [\"0.0.0.0/0\"]"),
        sections,
    );
    std::fs::write(&app.config_path, invalid).unwrap();
    let refused = wait_for_refusal(&app);
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("auth.secrets"), "{refused}");
    assert_eq!(app.metric(RELOADS, "result=\"failed\"").await, 2.0);
    assert_eq!(app.metric(RELOADS, "result=\"applied\"").await, 0.0);
    assert_eq!(
        status(app.post_signed(&update_body("u-broken-2")).await).await,
        200
    );
}

#[tokio::test]
async fn sighup_after_adding_an_address_lets_it_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let auth_and_ingest = |allowed: &str| {
        format!(
            "[[auth.secrets]]\nkey_id = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n\
             [ingest]\nallowed_sources = [{allowed}]\ntrusted_proxies = [\"127.0.0.0/8\"]\n"
        )
    };
    // Without watching, only the signal reloads.
    let sections = "[reload]\nwatch = false\n";
    let config = binary_config(&path, "", &auth_and_ingest("\"127.0.0.1/32\""), sections);
    let mut app = serve_binary(dir, &config).await;
    let from_elsewhere = |id: &str| {
        let body = update_body(id);
        let mut headers = SignatureBuilder::new(&body).headers();
        headers.push(("x-forwarded-for".into(), "203.0.113.7".into()));
        (body, headers)
    };
    let (body, headers) = from_elsewhere("u-hup-1");
    assert_eq!(status(app.post(&body, &headers).await).await, 403);

    app.hangup();
    let reloaded = wait_for_reload(&app);
    assert_eq!(
        reloaded["message"],
        "configuration reloaded, nothing to change"
    );
    assert_eq!(app.metric(RELOADS, "result=\"unchanged\"").await, 1.0);

    // The new address applies at once; the new bound on requests waits for a restart.
    let added = auth_and_ingest("\"127.0.0.1/32\", \"203.0.113.0/24\"");
    let sections = format!("max_inflight = 100\n{sections}");
    std::fs::write(
        &app.config_path,
        binary_config(&path, "", &added, &sections),
    )
    .unwrap();
    app.hangup();
    let waiting = app
        .wait_for_log(Duration::from_secs(15), |entry| {
            entry["level"] == "WARN" && entry.get("needs_restart").is_some()
        })
        .expect("a warning names what needs a restart");
    assert_eq!(waiting["needs_restart"], "server.max_inflight", "{waiting}");
    let reloaded = wait_for_reload(&app);
    assert_eq!(reloaded["changed"], "ingest.allowed_sources", "{reloaded}");
    assert_eq!(reloaded["trigger"], "signal", "{reloaded}");

    let (body, headers) = from_elsewhere("u-hup-2");
    assert_eq!(status(app.post(&body, &headers).await).await, 200);
    assert_eq!(app.metric(RELOADS, "result=\"applied\"").await, 1.0);

    // SIGHUP took nothing from SIGTERM.
    app.terminate();
    assert_eq!(app.wait_for_exit(Duration::from_secs(30)).await, Some(0));
}

#[tokio::test]
async fn webhooks_in_flight_while_reloads_happen_are_all_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut rotated = MountedSecret::new(dir.path(), "webhook-k2", "k2-secret-0");
    let auth_and_ingest = format!(
        "{}[[auth.secrets]]\nkey_id = \"k2\"\nsecret_file = \"{}\"\n",
        inline_secret(),
        rotated.path().display()
    );
    // `[[auth.secrets]]` after `[ingest]` is still an entry of `auth.secrets`.
    let config = binary_config(
        dir.path(),
        "",
        &auth_and_ingest,
        "[reload]\npoll_interval = \"20ms\"\n",
    );
    let app = Arc::new(serve_binary(dir, &config).await);

    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..25 {
                    let body = update_body(&format!("u-burst-{sender}-{n}"));
                    statuses.push(status(app.post_signed(&body).await).await);
                }
                statuses
            })
        })
        .collect();
    let mut round = 0;
    while !senders.iter().all(|s| s.is_finished()) {
        round += 1;
        rotated.update(&format!("k2-secret-{round}"));
        if round % 2 == 0 {
            app.hangup();
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut statuses = Vec::new();
    for sender in senders {
        statuses.extend(sender.await.unwrap());
    }
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let applied = app.metric(RELOADS, "result=\"applied\"").await;
    assert!(applied >= 2.0, "reloads happened meanwhile: {applied}");
}

#[tokio::test]
async fn the_log_level_follows_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let sections = "[reload]\nwatch = false\n";
    let config = binary_config(&path, "", &inline_secret(), sections);
    let app = serve_binary(dir, &config).await;
    let with_level = |level: &str, allowed: &str| {
        let auth_and_ingest = format!(
            "[[auth.secrets]]\nkey_id = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n\
             [ingest]\nallowed_sources = [{allowed}]\n"
        );
        binary_config(&path, "", &auth_and_ingest, sections)
            .replace("level = \"info\"", &format!("level = \"{level}\""))
    };

    // Every line logged so far is read past.
    app.hangup();
    wait_for_reload(&app);

    let quiet = with_level("warn", "\"127.0.0.1/32\", \"10.0.0.0/8\"");
    std::fs::write(&app.config_path, quiet).unwrap();
    app.hangup();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.metric(RELOADS, "result=\"applied\"").await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload is counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // At `warn`, neither that reload's line nor this webhook's is written.
    assert_eq!(
        status(app.post_signed(&update_body("u-quiet")).await).await,
        200
    );

    std::fs::write(
        &app.config_path,
        with_level("info", "\"127.0.0.1/32\", \"10.0.0.0/8\""),
    )
    .unwrap();
    app.hangup();
    let first = app
        .wait_for_log(Duration::from_secs(15), |entry| entry["level"] == "INFO")
        .expect("an INFO line once the level is back");
    assert_eq!(first["message"], "configuration reloaded", "{first}");
    assert_eq!(first["changed"], "log.level", "{first}");
}
