//! Restarts and shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_restart_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_from(test_settings(dir.path())).await;
    assert_eq!(
        app.post_signed(&update_body("u-before"))
            .await
            .status()
            .as_u16(),
        200
    );
    app.stop().await;

    let app = spawn_app_from(test_settings(dir.path())).await;
    assert_eq!(
        app.post_signed(&update_body("u-after"))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.update_ids(), ["u-before", "u-after"]);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_then_stops_listening() {
    let sink = Arc::new(GatedSink::new());
    let gate = sink.gate();
    let waiting = sink.waiting.clone();
    let mut app = spawn_app_with_sinks(
        |s| s.delivery.timeout = Duration::from_secs(20),
        vec![sink.clone()],
    )
    .await;
    let url = app.webhook_url();
    let body = update_body("u-inflight");
    let headers = SignatureBuilder::new(&body).headers();
    let client = app.client.clone();
    let in_flight = tokio::spawn(async move {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.map(|r| r.status().as_u16())
    });
    while waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let task = app.take_task();
    app.stop_handle().stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !task.is_finished(),
        "the app waits for the in-flight request"
    );
    gate.add_permits(1);
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sink.written.ids(), ["u-inflight"]);

    let refused = reqwest::Client::new()
        .get(format!("{}/healthz", app.address))
        .send()
        .await;
    assert!(refused.is_err(), "no longer listening after shutdown");
}
