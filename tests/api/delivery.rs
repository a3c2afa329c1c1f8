//! What is written, when, and what the answer says about it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::helpers::*;
use crate::test_sinks::{FlakySink, GatedSink};

#[tokio::test]
async fn a_duplicate_is_answered_200_and_not_written_again() {
    let app = spawn_app().await;
    let body = update_body("u-dup");
    assert_eq!(app.post_signed(&body).await.status().as_u16(), 200);
    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"status": "duplicate", "id": "u-dup"})
    );
    assert_eq!(app.updates().len(), 1);
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"duplicate\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_failed_write_is_503_and_the_retry_is_accepted_not_a_duplicate() {
    let sink = Arc::new(FlakySink::new(1));
    let app = spawn_app_with_sinks(|_| {}, vec![sink.clone()]).await;
    let body = update_body("u-retry");

    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "unavailable");
    assert!(sink.written.ids().is_empty());
    assert_eq!(
        app.metric(
            "vizion_bridge_sink_write_failures_total",
            "sink=\"flaky\",reason=\"io\""
        )
        .await,
        1.0
    );

    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    assert_eq!(sink.written.ids(), ["u-retry"]);
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"unavailable\"")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"accepted\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn every_sink_must_confirm_before_the_answer() {
    let flaky = Arc::new(FlakySink::new(1));
    let gated = Arc::new(GatedSink::new());
    gated.gate().add_permits(10);
    let app = spawn_app_with_sinks(|_| {}, vec![gated.clone(), flaky.clone()]).await;
    let body = update_body("u-both");
    assert_eq!(app.post_signed(&body).await.status().as_u16(), 503);
    // The gated sink confirmed the first try, the flaky one did not: not acknowledged.
    assert_eq!(gated.written.ids(), ["u-both"]);
    assert_eq!(app.post_signed(&body).await.status().as_u16(), 200);
    assert_eq!(flaky.written.ids(), ["u-both"]);
}

#[tokio::test]
async fn a_sink_that_does_not_confirm_in_time_gives_503() {
    let gated = Arc::new(GatedSink::new());
    let app = spawn_app_with_sinks(
        |s| s.delivery.timeout = Duration::from_millis(200),
        vec![gated.clone()],
    )
    .await;
    let response = app.post_signed(&update_body("u-timeout")).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        app.metric(
            "vizion_bridge_sink_write_failures_total",
            "sink=\"gated\",reason=\"timeout\""
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn authentic_bodies_that_are_not_updates_are_kept_as_dead_letters() {
    let app = spawn_app().await;
    let cases: [(&[u8], &str); 4] = [
        (b"{not json at all", "not_json"),
        (b"[1,2,3]", "unknown_shape"),
        (br#"{"reference_id":"r","payload":{}}"#, "missing_id"),
        (
            br#"{"id":"u","reference_id":"r","payload":"nope"}"#,
            "missing_payload",
        ),
    ];
    for (body, reason) in cases {
        let response = app.post_signed(body).await;
        assert_eq!(response.status().as_u16(), 200, "{reason}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"status": "dead_lettered", "reason": reason})
        );
    }
    let dead = app.dead_letters();
    assert_eq!(dead.len(), 4);
    for ((body, reason), line) in cases.iter().zip(&dead) {
        assert_eq!(line["reason"], *reason);
        let kept = base64::engine::general_purpose::STANDARD
            .decode(line["body_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(&kept, body, "the body is kept byte for byte");
    }
    assert!(app.updates().is_empty());
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"dead_lettered\"")
            .await,
        4.0
    );
    assert_eq!(
        app.metric("vizion_bridge_dead_letters_total", "reason=\"not_json\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_resent_dead_letter_is_kept_once() {
    let app = spawn_app().await;
    for _ in 0..3 {
        assert_eq!(app.post_signed(b"{broken").await.status().as_u16(), 200);
    }
    assert_eq!(app.dead_letters().len(), 1);
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"duplicate\"")
            .await,
        2.0
    );
}

#[tokio::test]
async fn concurrent_deliveries_of_one_update_are_written_once() {
    let app = Arc::new(spawn_app().await);
    let body = Arc::new(update_body("u-same"));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let response = app.post_signed(&body).await;
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "accepted").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(app.updates().len(), 1);
}

#[tokio::test]
async fn an_unauthentic_body_is_not_dead_lettered() {
    let app = spawn_app().await;
    let response = app.post(b"{not json", &[]).await;
    assert_eq!(response.status().as_u16(), 401);
    assert!(app.dead_letters().is_empty());
}

#[tokio::test]
async fn a_pretty_printed_update_is_stored_as_one_line_with_its_values_intact() {
    let app = spawn_app().await;
    let body = sample("bol-child-journey-complete.json");
    assert!(body.contains(&b'\n'), "the sample is pretty-printed");
    assert_eq!(app.post_signed(&body).await.status().as_u16(), 200);
    let updates = app.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0]["update"],
        serde_json::from_slice::<Value>(&body).unwrap()
    );
}

#[tokio::test]
async fn concurrent_updates_are_all_written() {
    let app = Arc::new(spawn_app().await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.post_signed(&update_body(&format!("u-conc-{i}")))
                .await
                .status()
                .as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let mut ids: Vec<String> = app
        .updates()
        .iter()
        .map(|u| u["update_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..64).map(|i| format!("u-conc-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}
