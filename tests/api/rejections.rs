//! Requests the HTTP layer refuses before they reach a route (malformed, too many or
//! too large headers, headers too slow) are counted and logged like any other answer.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::helpers::*;

const LOCAL: [u8; 4] = [127, 0, 0, 1];

/// A header line without a colon.
fn malformed() -> Vec<u8> {
    format!("POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\nno colon here\r\n\r\n").into_bytes()
}

/// 100 headers, more than the HTTP layer parses.
fn too_many_headers() -> Vec<u8> {
    let mut request = format!("POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\n");
    for n in 0..100 {
        request.push_str(&format!("x-filler-{n}: {n}\r\n"));
    }
    request.push_str("content-length: 0\r\n\r\n");
    request.into_bytes()
}

/// One header of 200 KiB, beyond the HTTP layer's buffer for a request head.
fn oversized_header() -> Vec<u8> {
    format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\nx-filler: {}\r\ncontent-length: 0\r\n\r\n",
        "a".repeat(200 * 1024)
    )
    .into_bytes()
}

/// Sends `request` from 127.0.0.1 and returns the answer (the server may reset the
/// connection after answering when part of the request was left unread).
async fn send(port: u16, request: &[u8]) -> RawAnswer {
    raw_request(IpAddr::from(LOCAL), port, request, Duration::from_secs(10)).await
}

async fn assert_counted(app: &TestApp, outcome: &str) {
    let labels = format!("outcome=\"{outcome}\"");
    assert_eq!(
        app.wait_for_metric("vizion_bridge_webhooks_total", &labels, 1.0)
            .await,
        1.0,
        "{outcome}"
    );
}

#[tokio::test]
async fn a_malformed_request_is_answered_400_and_counted() {
    let app = spawn_app().await;
    let answer = send(app.port, &malformed()).await;
    assert_eq!(answer.status(), Some(400), "{answer:?}");
    assert_counted(&app, "malformed_request").await;
}

#[tokio::test]
async fn more_than_96_headers_are_answered_431_and_counted() {
    let app = spawn_app().await;
    let answer = send(app.port, &too_many_headers()).await;
    assert_eq!(answer.status(), Some(431), "{answer:?}");
    assert_counted(&app, "headers_too_large").await;
}

#[tokio::test]
async fn an_oversized_header_is_refused_and_counted() {
    let app = spawn_app().await;
    // The answer is 431, but the connection may be reset before the client reads it
    // (what it sent beyond the limit was never read): the count is what is sure.
    let answer = send(app.port, &oversized_header()).await;
    assert!(matches!(answer.status(), Some(431) | None), "{answer:?}");
    assert_counted(&app, "headers_too_large").await;
}

#[tokio::test]
async fn headers_that_arrive_too_slowly_are_answered_408_and_counted() {
    let app =
        spawn_app_with(|s| s.server.client_request_timeout = Duration::from_millis(300)).await;
    let mut stream = connect_from(IpAddr::from(LOCAL), app.port).await.unwrap();
    stream
        .write_all(format!("POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(answer.status(), Some(408), "{answer:?}");
    drop(stream);
    assert_counted(&app, "header_timeout").await;
    // The route's own 408 (a slow body) is not counted as one of these.
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"bad_request\"")
            .await,
        0.0
    );
}

#[tokio::test]
async fn refusals_of_the_http_layer_are_logged_as_warnings_with_the_peer_address() {
    let app = spawn_binary("", "client_request_timeout = \"300ms\"").await;
    for request in [malformed(), too_many_headers()] {
        let answer = send(app.port, &request).await;
        assert!(answer.status().is_some(), "{answer:?}");
    }
    let mut slow = connect_from(IpAddr::from(LOCAL), app.port).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
    let answer = read_answer(&mut slow, Duration::from_secs(10)).await;
    assert_eq!(answer.status(), Some(408), "{answer:?}");
    drop(slow);

    let outcomes = ["malformed_request", "headers_too_large", "header_timeout"];
    let mut entries: Vec<Value> = Vec::new();
    app.wait_for_log(Duration::from_secs(5), |entry| {
        entries.push(entry.clone());
        outcomes
            .iter()
            .all(|outcome| entries.iter().any(|e| e["outcome"] == *outcome))
    });
    for outcome in outcomes {
        let entry = entries
            .iter()
            .find(|e| e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("a log line for {outcome}: {entries:?}"));
        assert_eq!(entry["level"], "WARN", "{entry}");
        assert_eq!(entry["peer"], "127.0.0.1", "{entry}");
    }
    let errors: Vec<&Value> = entries.iter().filter(|e| e["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "{errors:?}");
}
