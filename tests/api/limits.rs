//! Size, type, time and concurrency limits.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// Sends raw bytes and returns the status code and the whole answer.
async fn raw_exchange(port: u16, head: &str, body_part: &[u8]) -> (u16, String) {
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(body_part);
    let local = IpAddr::from([127, 0, 0, 1]);
    match raw_request(local, port, &request, Duration::from_secs(10)).await {
        RawAnswer::Answered { status, head, body } => (status, format!("{head}\r\n\r\n{body}")),
        other => panic!("no HTTP answer: {other:?}"),
    }
}

#[tokio::test]
async fn a_declared_oversized_body_gets_413_before_it_is_sent() {
    let app = spawn_app_with(|s| s.ingest.max_body_bytes = 1024).await;
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        50 * 1024 * 1024
    );
    // Only the headers go out; the answer must come without the 50 MiB.
    let (status, text) = raw_exchange(app.port, &head, b"").await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"));
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"too_large\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let app = spawn_app_with(|s| s.ingest.max_body_bytes = 1024).await;
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let chunk = format!("800\r\n{}\r\n", "a".repeat(0x800));
    let (status, _) = raw_exchange(app.port, &head, chunk.as_bytes()).await;
    assert_eq!(status, 413);
    assert!(app.updates().is_empty() && app.dead_letters().is_empty());
}

#[tokio::test]
async fn a_broken_chunked_body_gets_400() {
    let app = spawn_app().await;
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let (status, text) = raw_exchange(app.port, &head, b"zz\r\nabc\r\n").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"error\":\"bad_request\""));
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"bad_request\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_body_at_the_limit_is_read() {
    let body = update_body("u-limit");
    let app = spawn_app_with(|s| s.ingest.max_body_bytes = body.len()).await;
    assert_eq!(app.post_signed(&body).await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_non_json_content_type_gets_415() {
    let app = spawn_app().await;
    let body = update_body("u-type");
    let headers = SignatureBuilder::new(&body).headers();
    let response = app
        .client
        .post(app.webhook_url())
        .header("content-type", "text/plain")
        .header("x-vizion-signature", &headers[0].1)
        .header("digest", &headers[1].1)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "unsupported_media_type");
    assert_eq!(
        app.metric(
            "vizion_bridge_webhooks_total",
            "outcome=\"unsupported_media_type\""
        )
        .await,
        1.0
    );

    // No content type at all is fine.
    let body = update_body("u-type-none");
    let headers = SignatureBuilder::new(&body).headers();
    let response = app
        .client
        .post(app.webhook_url())
        .header("x-vizion-signature", &headers[0].1)
        .header("digest", &headers[1].1)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // A JSON type with parameters, or a +json type, are fine.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.vizion+json",
    ] {
        let body = update_body(&format!("u-type-{content_type}"));
        let headers = SignatureBuilder::new(&body).headers();
        let response = app
            .client
            .post(app.webhook_url())
            .header("content-type", content_type)
            .header("x-vizion-signature", &headers[0].1)
            .header("digest", &headers[1].1)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{content_type}");
    }
}

#[tokio::test]
async fn a_slow_body_is_cut_off_with_408() {
    let app = spawn_app_with(|s| s.server.body_read_timeout = Duration::from_millis(300)).await;
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    );
    let started = Instant::now();
    let (status, text) = raw_exchange(app.port, &head, b"{\"id\":").await;
    assert_eq!(status, 408, "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"bad_request\"")
            .await,
        1.0
    );
    assert!(app.updates().is_empty());
}

#[tokio::test]
async fn beyond_max_inflight_the_answer_is_503_with_retry_after() {
    let sink = Arc::new(GatedSink::new());
    let gate = sink.gate();
    let waiting = sink.waiting.clone();
    let app = Arc::new(
        spawn_app_with_sinks(
            |s| {
                s.server.max_inflight = 1;
                s.delivery.timeout = Duration::from_secs(20);
            },
            vec![sink.clone()],
        )
        .await,
    );
    let first = {
        let app = app.clone();
        tokio::spawn(async move {
            app.post_signed(&update_body("u-slow"))
                .await
                .status()
                .as_u16()
        })
    };
    while waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = app.post_signed(&update_body("u-second")).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "overloaded");
    assert_eq!(app.metric("vizion_bridge_inflight_requests", "").await, 1.0);

    gate.add_permits(1);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(sink.written.ids(), ["u-slow"]);
    assert_eq!(app.metric("vizion_bridge_inflight_requests", "").await, 0.0);
}

/// A sender that keeps sending a body the bridge has already refused is not reset at
/// once: a reset can overtake the answer on its way and lose it, so the connection
/// lingers, taking the rest of the body, before it closes.
#[tokio::test]
async fn a_sender_still_sending_a_refused_body_is_not_reset_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(|s| s.ingest.max_body_bytes = 1024).await;
    let stream = connect_from(IpAddr::from([127, 0, 0, 1]), app.port)
        .await
        .unwrap();
    let (mut reading, mut writing) = stream.into_split();
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    writing.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), reading.read_exact(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    // The body keeps coming after the answer: for the next half second none of it is
    // met with a reset.
    let answered = Instant::now();
    let chunk = vec![b' '; 16 * 1024];
    while answered.elapsed() < Duration::from_millis(500) {
        if let Err(e) = writing.write_all(&chunk).await {
            panic!("reset {:?} after the answer: {e}", answered.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
