//! `vizion-bridge replay`: the bodies a bridge kept in `raw.jsonl` and
//! `dead-letters.jsonl` taken through the pipeline again, into a fresh file sink and
//! into Kafka, with `deliverymode` `replay`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const REFERENCE_A: &str = "0b0c5a8e-1d1b-4a7e-9c8e-5f3c2e7d4a10";
const REFERENCE_B: &str = "7e1f9d2c-3a4b-4c5d-8e6f-0a1b2c3d4e5f";
/// Authentic but without a payload: a dead letter today and after a replay.
const DEAD_BODY: &[u8] =
    br#"{"id":"replay-dead","reference_id":"0b0c5a8e-1d1b-4a7e-9c8e-5f3c2e7d4a10"}"#;

/// Runs a bridge with the file sink in `data`, posts two updates of reference A, one
/// of reference B and one dead letter, and stops it.
async fn bridge_that_kept(data: &Path) -> Vec<String> {
    let app = spawn_app_from(test_settings(data)).await;
    let mut ids = Vec::new();
    for (id, reference, container) in [
        ("replay-a1", REFERENCE_A, "MSCU1111111"),
        ("replay-b1", REFERENCE_B, "MSCU2222222"),
        ("replay-a2", REFERENCE_A, "MSCU1111111"),
    ] {
        let response = app
            .post_signed(&update_body_for(id, reference, container))
            .await;
        assert_eq!(response.status(), 200, "{id}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "accepted", "{id}: {answer}");
        ids.push(id.to_owned());
    }
    let response = app.post_signed(DEAD_BODY).await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "dead_lettered", "{answer}");
    app.stop().await;
    ids
}

/// A configuration for the replay: the file sink in `data_dir` (a directory of its own),
/// with `extra` appended.
fn replay_config(dir: &Path, data_dir: &Path, top: &str, extra: &str) -> PathBuf {
    let config = dir.join(format!("replay-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &config,
        format!(
            "{top}\n[storage]\ndata_dir = {:?}\n\n[auth]\nscheme = \"none\"\nmode = \"off\"\n{extra}",
            data_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    config
}

/// Runs `replay --json` with `args`; its exit code, summary and stderr.
fn replay(config: &Path, from: &Path, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec![
        "replay",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "--from",
        from.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run_cli(&all);
    let summary = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON summary ({e}): {stdout}\n{stderr}"));
    (code, summary, stderr)
}

fn summary(
    read: u64,
    published: u64,
    duplicate: u64,
    still_dead: u64,
    skipped: u64,
    unreadable: u64,
) -> Value {
    serde_json::json!({
        "read": read,
        "published": published,
        "duplicate": duplicate,
        "still_dead": still_dead,
        "skipped": skipped,
        "unreadable": unreadable,
        "failed": 0,
        "incomplete": false,
    })
}

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn update_ids_in(data_dir: &Path) -> Vec<String> {
    lines_of(&data_dir.join("events.jsonl"))
        .iter()
        .filter(|e| e["type"].as_str().unwrap().ends_with(".update.v1"))
        .map(|e| e["data"]["update_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_the_selected_bodies_once_unless_told_otherwise() {
    let kept = tempfile::tempdir().unwrap();
    bridge_that_kept(kept.path()).await;
    let raw = kept.path().join("raw.jsonl");
    let original = lines_of(&raw);
    assert_eq!(original.len(), 3);

    // raw.jsonl with a line that is not one of its own.
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("input.jsonl");
    let mut text = std::fs::read_to_string(&raw).unwrap();
    text.push_str("{\"half a line\n");
    std::fs::write(&input, text).unwrap();
    let out = work.path().join("out");
    let config = replay_config(work.path(), &out, "sinks = [\"file\"]", "");

    let (code, report, stderr) = replay(&config, &input, &["--reference", REFERENCE_A]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report, summary(4, 2, 0, 0, 1, 1), "{stderr}");
    assert!(
        stderr.contains("line 4"),
        "the unreadable line is named: {stderr}"
    );
    assert_eq!(update_ids_in(&out), ["replay-a1", "replay-a2"]);
    let events = lines_of(&out.join("events.jsonl"));
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["deliverymode"] == "replay"),
        "{events:#?}"
    );
    // The same bodies, received when they first were: the same events, ids included.
    let replayed_raw = lines_of(&out.join("raw.jsonl"));
    let bodies = |lines: &[Value]| {
        lines
            .iter()
            .map(|l| (l["body_base64"].clone(), l["received_at"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        bodies(&replayed_raw),
        bodies(&[original[0].clone(), original[2].clone()])
    );

    // Again: what was published is a duplicate.
    let (code, report, stderr) = replay(&config, &input, &["--reference", REFERENCE_A]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report, summary(4, 0, 2, 0, 1, 1));
    assert_eq!(update_ids_in(&out), ["replay-a1", "replay-a2"]);

    // A deliberate re-publish of one update, selected by id and time together.
    let (code, report, stderr) = replay(
        &config,
        &raw,
        &[
            "--no-dedup",
            "--update-id",
            "replay-a2",
            "--update-id",
            "replay-b1",
            "--reference",
            REFERENCE_A,
            "--since",
            original[2]["received_at"].as_str().unwrap(),
            "--until",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report, summary(3, 1, 0, 0, 2, 0));
    assert_eq!(update_ids_in(&out), ["replay-a1", "replay-a2", "replay-a2"]);

    // The output's own raw.jsonl, replayed into itself: only the three lines it holds
    // at the start are read, not the ones the replay appends.
    let own = out.join("raw.jsonl");
    let (code, report, stderr) = replay(&config, &own, &["--no-dedup"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report, summary(3, 3, 0, 0, 0, 0));
    assert_eq!(lines_of(&own).len(), 6);

    // Nothing was received before then.
    let (code, report, _) = replay(&config, &raw, &["--until", "2000-01-01T00:00:00Z"]);
    assert_eq!(code, 0);
    assert_eq!(report, summary(3, 0, 0, 0, 3, 0));

    // The dead letter is still unusable: dead-lettered again, as a replay.
    let dead = kept.path().join("dead-letters.jsonl");
    let (code, report, stderr) = replay(&config, &dead, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report, summary(1, 0, 0, 1, 0, 0));
    let again = lines_of(&out.join("dead-letters.jsonl"));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["deliverymode"], "replay");
    assert_eq!(again[0]["data"]["reason"], "missing_payload");
    assert_eq!(
        decode_base64(&again[0]["data"]["raw_body_base64"]),
        DEAD_BODY
    );

    // Plain lines without --json.
    let (code, stdout, stderr) = run_cli(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--from",
        dead.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("read: 1\n"), "{stdout}");
    assert!(stdout.contains("still dead: 0\n"), "{stdout}");
    assert!(stdout.contains("duplicate: 1\n"), "{stdout}");

    // A sink that never confirms: every write failed, to be replayed again.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let away = replay_config(
        work.path(),
        &work.path().join("away"),
        "sinks = [\"rabbitmq\"]",
        &format!(
            "\n[delivery]\ntimeout = \"300ms\"\n\
             [rabbitmq]\nurl = \"amqp://guest:guest@127.0.0.1:{closed}/%2f\"\n"
        ),
    );
    let (code, report, stderr) = replay(&away, &raw, &["--reference", REFERENCE_B]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["published"], 0, "{report}");
    assert!(stderr.contains("replay them again"), "{stderr}");
}

#[test]
fn replay_refuses_a_file_it_cannot_open_and_a_bad_time() {
    let work = tempfile::tempdir().unwrap();
    let config = replay_config(
        work.path(),
        &work.path().join("out"),
        "sinks = [\"file\"]",
        "",
    );
    let missing = work.path().join("missing.jsonl");
    let (code, stdout, stderr) = run_cli(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--from",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("cannot open"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    let (code, _, stderr) = run_cli(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--from",
        missing.to_str().unwrap(),
        "--since",
        "yesterday",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_into_kafka_with_the_replay_delivery_mode() {
    let brokers = bootstrap();
    let kept = tempfile::tempdir().unwrap();
    let ids = bridge_that_kept(kept.path()).await;

    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let topic = |name: &str| format!("replay-{name}-{suffix}");
    let work = tempfile::tempdir().unwrap();
    let config = replay_config(
        work.path(),
        &work.path().join("out"),
        "sinks = [\"kafka\"]",
        &format!(
            "\n[kafka]\nbrokers = {brokers:?}\nensure_topics = true\ntopic_partitions = 2\n\
             [kafka.topics]\nupdates = {:?}\nmilestones = {:?}\nalerts = {:?}\nraw = {:?}\n\
             dead_letters = {:?}\n",
            topic("updates"),
            topic("milestones"),
            topic("alerts"),
            topic("raw"),
            topic("dead-letters"),
        ),
    );
    let raw = kept.path().join("raw.jsonl");
    let (code, report, stderr) = tokio::task::spawn_blocking(move || replay(&config, &raw, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report, summary(3, 3, 0, 0, 0, 0));

    let (updates, raw) = (topic("updates"), topic("raw"));
    let consumed = consume_until(&brokers, &[&updates, &raw], Duration::from_secs(20), |c| {
        c.len() >= 6
    })
    .await;
    // A little longer, so that a record too many would show.
    let consumed = if consumed.len() == 6 {
        consume_until(&brokers, &[&updates, &raw], Duration::from_secs(2), |c| {
            c.len() > 6
        })
        .await
    } else {
        consumed
    };
    let mut published: Vec<&str> = consumed
        .iter()
        .filter(|c| c.topic == updates)
        .map(|c| c.headers["ce_id"].as_str())
        .collect();
    published.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(published, expected, "{consumed:#?}");
    assert_eq!(consumed.iter().filter(|c| c.topic == raw).count(), 3);
    for record in consumed.iter().filter(|c| c.topic == updates) {
        assert_eq!(record.headers["ce_deliverymode"], "replay", "{record:#?}");
    }
}
