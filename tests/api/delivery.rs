//! What is written, when, and what the answer says about it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use vizion_bridge::events::MilestoneMode;

use crate::helpers::*;

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
    let cases: [(&[u8], &str); 5] = [
        (b"{not json at all", "not_json"),
        (b"[1,2,3]", "unknown_shape"),
        (br#"{"reference_id":"r","payload":{}}"#, "missing_id"),
        (br#"{"id":"u","reference_id":"r"}"#, "missing_payload"),
        (
            br#"{"id":"u","reference_id":"r","payload":"nope"}"#,
            "payload_not_object",
        ),
    ];
    for (body, reason) in cases {
        let response = app.post_signed(body).await;
        assert_eq!(response.status().as_u16(), 200, "{reason}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "dead_lettered");
        assert_eq!(answer["reason"], reason);
    }
    let dead = app.dead_letters();
    assert_eq!(dead.len(), 5);
    for ((body, reason), event) in cases.iter().zip(&dead) {
        assert!(event["type"].as_str().unwrap().ends_with(".dead_letter.v1"));
        assert_eq!(event["data"]["reason"], *reason);
        let kept = decode_base64(&event["data"]["raw_body_base64"]);
        assert_eq!(&kept, body, "the body is kept byte for byte");
    }
    assert!(app.updates().is_empty());
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"dead_lettered\"")
            .await,
        5.0
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
async fn the_file_sink_writes_events_that_validate_against_their_schemas() {
    // One milestone event per milestone: what `events.milestones = "all"` publishes.
    let app = spawn_app_with(|s| s.events.milestones = MilestoneMode::All).await;
    for name in [
        "mid-journey-transshipment.json",
        "bol-child-journey-complete.json",
        "sparse-early-with-nulls.json",
    ] {
        assert_eq!(app.post_signed(&sample(name)).await.status().as_u16(), 200);
    }
    assert_eq!(app.post_signed(b"{not json").await.status().as_u16(), 200);

    let schemas = crate::support::schemas();
    let (mut updates, mut milestones) = (0, 0);
    for event in app.events() {
        let event_type = event["type"].as_str().unwrap();
        let validator = if event_type.ends_with(".update.v1") {
            updates += 1;
            &schemas.update
        } else {
            assert!(event_type.ends_with(".milestone.v1"), "{event_type}");
            milestones += 1;
            &schemas.milestone
        };
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{event_type}: {errors:?}");
    }
    assert_eq!(updates, 3);
    assert!(milestones >= 10, "{milestones} milestone events");
    let dead = app.dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(schemas.dead_letter.is_valid(&dead[0]));
}

#[tokio::test]
async fn an_exception_alert_is_passed_through_not_dead_lettered() {
    let app = spawn_app().await;
    let body = sample("exception-alert.json");
    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    assert!(app.dead_letters().is_empty());
    let events = app.events();
    assert_eq!(events.len(), 1);
    assert!(events[0]["type"]
        .as_str()
        .unwrap()
        .ends_with(".exception_alert.v1"));
    assert_eq!(app.raw_records()[0]["kind"], "exception_alert");
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
    assert_eq!(app.updates().len(), 1);
    // Every event is one line of JSON, and the raw output keeps the body as sent.
    let events = std::fs::read_to_string(app.data_dir.join("events.jsonl")).unwrap();
    assert!(
        events.lines().count() > 1,
        "the update event and its milestones"
    );
    for line in events.lines() {
        serde_json::from_str::<Value>(line).expect("each line is one JSON value");
    }
    assert_eq!(decode_base64(&app.raw_records()[0]["body_base64"]), body);
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
    let mut ids = app.update_ids();
    ids.sort();
    let mut expected: Vec<String> = (0..64).map(|i| format!("u-conc-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}
