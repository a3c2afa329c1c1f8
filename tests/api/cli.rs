//! The binary as a user runs it: check-config, sign, and serve with a signal to stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{run_cli, run_cli_with, BridgeProcess, Log};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_example_configuration_is_valid_and_printed_without_secrets() {
    let example = repo_file("config/vizion-bridge.example.toml");
    let (code, stdout, stderr) = run_cli_with(
        &["check-config", "--config", example.to_str().unwrap()],
        &[("VIZION_WEBHOOK_SECRET", "super-secret-value")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("allowed_sources"));
    assert!(!stdout.contains("super-secret-value"));
    assert!(!stderr.contains("super-secret-value"));
    // The printed configuration is itself a valid configuration.
    let reprinted = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(reprinted.path(), &stdout).unwrap();
    let (code, _, stderr) = run_cli_with(
        &[
            "check-config",
            "--config",
            reprinted.path().to_str().unwrap(),
        ],
        &[("VIZION_WEBHOOK_SECRET", "x")],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_local_configuration_is_valid() {
    let local = repo_file("config/local.toml");
    let (code, _, stderr) = run_cli(&["check-config", "--config", local.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn inline_secrets_are_redacted() {
    let local = repo_file("config/local.toml");
    let (_, stdout, _) = run_cli(&["check-config", "--config", local.to_str().unwrap()]);
    assert!(!stdout.contains("local-development-secret"));
    assert!(stdout.contains("[redacted]"));
    // Saved and loaded again, the placeholder is refused rather than used as a secret.
    let reprinted = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(reprinted.path(), &stdout).unwrap();
    let (code, _, stderr) = run_cli(&[
        "check-config",
        "--config",
        reprinted.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("placeholder"), "{stderr}");
}

#[test]
fn a_missing_secret_variable_is_a_clear_error() {
    let example = repo_file("config/vizion-bridge.example.toml");
    let (code, _, stderr) = run_cli(&["check-config", "--config", example.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("VIZION_WEBHOOK_SECRET"), "{stderr}");
}

#[test]
fn unknown_keys_are_errors_in_files_and_in_the_environment() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n",
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["check-config", "--config", file.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("listne"), "{stderr}");

    let local = repo_file("config/local.toml");
    let (code, _, stderr) = run_cli_with(
        &["check-config", "--config", local.to_str().unwrap()],
        &[("VIZION_BRIDGE__INGEST__MAX_BODY", "5")],
    );
    assert_eq!(code, 1);
    assert!(stderr.to_lowercase().contains("max_body"), "{stderr}");
}

#[test]
fn environment_variables_override_the_file() {
    let local = repo_file("config/local.toml");
    let (code, stdout, stderr) = run_cli_with(
        &["check-config"],
        &[
            ("VIZION_BRIDGE_CONFIG", local.to_str().unwrap()),
            ("VIZION_BRIDGE__SERVER__LISTEN", "127.0.0.1:18080"),
            (
                "VIZION_BRIDGE__INGEST__ALLOWED_SOURCES",
                "[\"10.1.0.0/16\"]",
            ),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("listen = \"127.0.0.1:18080\""), "{stdout}");
    assert!(stdout.contains("10.1.0.0/16"));
    assert!(!stdout.contains("::1/128"));
}

#[test]
fn an_empty_allowlist_is_an_error_and_allow_all_a_warning() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[ingest]\nallowed_sources = []\n[[auth.secrets]]\nsecret = \"s\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["check-config", "--config", file.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("allowed_sources"), "{stderr}");

    std::fs::write(
        file.path(),
        "[ingest]\nallowed_sources = [\"0.0.0.0/0\", \"::/0\"]\n[[auth.secrets]]\nsecret = \"s\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["check-config", "--config", file.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("warning"), "{stderr}");
}

#[test]
fn ipv4_mapped_networks_are_read_as_the_ipv4_networks_they_denote() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[ingest]\nallowed_sources = [\"::ffff:127.0.0.1/128\", \"2001:db8::/32\"]\n\
         trusted_proxies = [\"::ffff:10.0.0.0/104\"]\n[[auth.secrets]]\nsecret = \"s\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) =
        run_cli(&["check-config", "--config", file.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let printed: toml::Value = toml::from_str(&stdout).unwrap();
    assert_eq!(
        printed["ingest"]["allowed_sources"],
        toml::Value::try_from(["127.0.0.1/32", "2001:db8::/32"]).unwrap(),
        "{stdout}"
    );
    assert_eq!(
        printed["ingest"]["trusted_proxies"],
        toml::Value::try_from(["10.0.0.0/8"]).unwrap(),
        "{stdout}"
    );
}

#[test]
fn a_signature_that_need_not_cover_the_digest_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[auth.http_signature]\nrequired_headers = []\n[[auth.secrets]]\nsecret = \"s\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["check-config", "--config", file.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("required_headers"), "{stderr}");
}

#[test]
fn a_missing_configuration_file_is_named() {
    let (code, _, stderr) = run_cli(&["check-config", "--config", "/nonexistent/bridge.toml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/bridge.toml"), "{stderr}");
}

/// Runs `vizion-bridge sign` and returns its headers as (name, value) pairs.
fn sign(body_file: &Path, secret: &str, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["sign", "--secret-env", "TEST_SIGNING_SECRET"];
    args.extend_from_slice(extra);
    args.push(body_file.to_str().unwrap());
    let (code, stdout, stderr) = run_cli_with(&args, &[("TEST_SIGNING_SECRET", secret)]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("name: value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn sign_prints_headers_that_match_an_independent_computation() {
    let body = br#"{"id":"x"}"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let headers = sign(
        file.path(),
        "abc",
        &["--key-id", "k9", "--path", "/hooks/v?x=1", "--ttl", "60"],
    );
    assert_eq!(headers[0].0, "digest");
    let digest = format!("SHA-256={}", hex::encode(Sha256::digest(body)));
    assert_eq!(headers[0].1, digest);
    assert_eq!(headers[1].0, "x-vizion-signature");
    let params = &headers[1].1;
    let field = |name: &str| -> String {
        let start = params.find(&format!("{name}=")).unwrap() + name.len() + 1;
        params[start..]
            .split(',')
            .next()
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    assert_eq!(field("keyId"), "k9");
    let created: i64 = field("created").parse().unwrap();
    let expires: i64 = field("expires").parse().unwrap();
    assert_eq!(expires - created, 60);
    let signing_string = format!(
        "(request-target): post /hooks/v?x=1\n(created): {created}\n(expires): {expires}\ndigest: {digest}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(b"abc").unwrap();
    mac.update(signing_string.as_bytes());
    assert_eq!(field("signature"), hex::encode(mac.finalize().into_bytes()));
}

#[tokio::test]
async fn serve_accepts_a_signed_webhook_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    let secret = "serve-test-secret-XYZ";
    std::fs::write(
        &config,
        format!(
            "sinks = [\"file\"]\n\
             [server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n\
             [ingest]\nallowed_sources = [\"127.0.0.1/32\"]\n\
             [[auth.secrets]]\nsecret_env = \"SERVE_TEST_SECRET\"\n\
             [storage]\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut server = BridgeProcess::serve(&config, &[("SERVE_TEST_SECRET", secret)], Log::Captured);
    let mut log = Vec::new();
    let port = loop {
        let line = server
            .next_log_line(Duration::from_secs(20))
            .expect("the server logs that it listens");
        log.push(line.clone());
        if let Ok(entry) = serde_json::from_str::<Value>(&line) {
            if entry["message"] == "vizion-bridge listening" {
                break entry["port"].as_u64().unwrap();
            }
        }
    };

    let body_file = repo_file("tests/fixtures/bodies/mid-journey-transshipment.json");
    let headers = sign(&body_file, secret, &[]);
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("http://127.0.0.1:{port}/webhooks/vizion"))
        .header("content-type", "application/json")
        .body(std::fs::read(&body_file).unwrap());
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let forged = client
        .post(format!("http://127.0.0.1:{port}/webhooks/vizion"))
        .header("x-vizion-signature", "signature=\"00\"")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    server.terminate();
    let status = server.wait_for_exit(Duration::from_secs(60)).await;
    assert_eq!(status, Some(0), "exit 0 after SIGTERM");
    log.extend(server.rest_of_log());
    let log = log.join("\n");
    assert!(!log.contains(secret), "the secret never reaches the log");
    assert!(log.contains("\"outcome\":\"accepted\""), "{log}");
    assert!(log.contains("\"outcome\":\"unauthorized\""), "{log}");

    let raw = std::fs::read_to_string(dir.path().join("data/raw.jsonl")).unwrap();
    assert_eq!(raw.lines().count(), 1, "one accepted delivery");
    let events = std::fs::read_to_string(dir.path().join("data/events.jsonl")).unwrap();
    let updates = events
        .lines()
        .filter(|l| l.contains("\"type\":\"com.vizionapi.tracking.update.v1\""))
        .count();
    assert_eq!(updates, 1, "{events}");
}
