//! `vizion-bridge references …` as a user runs it, against the simulated Vizion.

use serde_json::Value;

use crate::helpers::*;

const KEY_VAR: &str = "VIZION_TEST_REFERENCES_API_KEY";

fn config_for(sim: &Simulator) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            "[vizion_api]\nbase_url = \"{}\"\napi_key_env = \"{KEY_VAR}\"\n\
             callback_url = \"https://bridge.example.com/webhooks/vizion\"\n\
             retry_backoff = \"20ms\"\npage_size = 2\n",
            sim.base_url
        ),
    )
    .unwrap();
    file
}

/// Runs the binary with the configuration and returns (exit code, stdout, stderr).
async fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut command = bridge_command();
    command
        .arg("references")
        .args(args)
        .arg("--config")
        .arg(config)
        .env(KEY_VAR, SIM_API_KEY);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_container_is_subscribed_listed_followed_and_unsubscribed() {
    let sim = spawn_simulator().await;
    let config = config_for(&sim);
    let config = config.path();

    let (code, out, err) = cli(
        config,
        &[
            "create",
            "--container",
            "MSKU7890123",
            "--carrier",
            "MAEU",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["reference"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["reference"]["callback_url"], "https://bridge.example.com/webhooks/vizion",
        "the callback URL defaults to vizion_api.callback_url"
    );

    let (code, out, err) = cli(
        config,
        &[
            "create",
            "--container",
            "OOCU7821056",
            "--auto-carrier",
            "--no-callback",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OOLU"), "{out}");
    cli(
        config,
        &[
            "create",
            "--bill-of-lading",
            "MAEU255221188",
            "--carrier",
            "MAEU",
        ],
    )
    .await;

    // A table for people, over several pages, with no progress bar when piped.
    let (code, out, err) = cli(config, &["list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert!(out.contains(&id) && out.contains("MSKU7890123"), "{out}");
    assert!(
        err.is_empty(),
        "nothing on stderr when not a terminal: {err:?}"
    );
    let (_, out, _) = cli(config, &["list", "--json", "--container", "MSKU7890123"]).await;
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    let first = sim.advance(&id).await["update_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, _) = cli(config, &["updates", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&first) && out.contains("Gate out empty"),
        "{out}"
    );
    let (_, out, _) = cli(config, &["updates", &id, "--json"]).await;
    let updates: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(updates[0]["id"], first.as_str());

    let (code, out, _) = cli(config, &["get", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("active") && l.ends_with(" yes")),
        "{out}"
    );
    let (code, _, err) = cli(config, &["unsubscribe", &id]).await;
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(config, &["get", &id, "--json"]).await;
    let reference: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reference["active"], false);
}

#[tokio::test]
async fn vizions_refusals_are_reported_and_the_key_never_printed() {
    let sim = spawn_simulator().await;
    let config = config_for(&sim);
    let (code, out, err) = cli(config.path(), &["get", "no-such-reference"]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("404"), "{err}");

    let (code, _, err) = cli(
        config.path(),
        &["create", "--container", "bad", "--carrier", "MAEU"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("422"), "{err}");
    assert!(!err.contains(SIM_API_KEY));

    let output = bridge_command()
        .args(["references", "list", "--config"])
        .arg(config.path())
        .env_remove(KEY_VAR)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains(KEY_VAR));
}

#[test]
fn check_config_redacts_the_api_key() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[auth]\nscheme = \"none\"\nmode = \"off\"\n\n[vizion_api]\napi_key = \"hunter2-api-key\"\n",
    )
    .unwrap();
    let output = bridge_command()
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("hunter2-api-key"));
    assert!(stdout.contains("api_key = \"[redacted]\""), "{stdout}");
}
