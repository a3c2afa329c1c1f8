use std::sync::Arc;

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn readyz_reports_each_sink() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sinks"]["file"], "ready");

    let app = spawn_app_with_sinks(|_| {}, vec![Arc::new(GatedSink::not_ready())]).await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["sinks"]["gated"], "not_ready");
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener() {
    let app = spawn_app().await;
    app.post_signed(&update_body("u-metrics")).await;
    let response = app
        .client
        .get(format!("{}/metrics", app.metrics_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for name in [
        "vizion_bridge_webhooks_total",
        "vizion_bridge_auth_failures_total",
        "vizion_bridge_request_duration_seconds_bucket",
        "vizion_bridge_inflight_requests",
        "vizion_bridge_sink_write_duration_seconds_bucket",
        "vizion_bridge_build_info",
    ] {
        assert!(text.contains(name), "{name} is exported");
    }
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        metric_value(&text, "vizion_bridge_build_info", &version),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "vizion_bridge_request_duration_seconds_count",
            "outcome=\"accepted\""
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "vizion_bridge_sink_write_duration_seconds_count",
            "sink=\"file\""
        ),
        1.0
    );
    // Not on the webhook listener.
    let response = app.get("/metrics").await;
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn the_request_id_is_taken_from_the_caller_and_echoed() {
    let app = spawn_app().await;
    let body = update_body("u-rid");
    let mut headers = SignatureBuilder::new(&body).headers();
    headers.push(("x-request-id".into(), "trace-abc-123".into()));
    let response = app.post(&body, &headers).await;
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    assert_eq!(app.raw_records()[0]["request_id"], "trace-abc-123");
}
