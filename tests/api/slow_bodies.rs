//! Requests still sending their body are bounded on their own, so that they cannot hold
//! the places of webhooks whose body has arrived.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;

/// Senders, each from an address of its own on loopback.
const SLOW_ALLOWED: [u8; 4] = [127, 0, 0, 1];
const VIZION: [u8; 4] = [127, 0, 0, 2];
const OUTSIDER: [u8; 4] = [127, 0, 0, 3];

const SLOW_CONNECTIONS: usize = 300;

/// Opens `count` connections from `source` that each send a webhook's headers,
/// announcing a 1000-byte body, and one byte of it, then nothing more.
async fn open_slow_bodies(port: u16, source: [u8; 4], count: usize) -> Vec<TcpStream> {
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\ncontent-type: application/json\r\n\
         content-length: 1000\r\n\r\n{{"
    );
    let opened = (0..count).map(|_| {
        let head = head.clone();
        async move {
            let mut stream = connect_from(IpAddr::from(source), port)
                .await
                .expect("the bridge takes the connection");
            stream.write_all(head.as_bytes()).await.unwrap();
            stream
        }
    });
    join_all(opened).await
}

/// The answers that arrive on `streams` within `within`, by status.
async fn answers(streams: &mut [TcpStream], within: Duration) -> Vec<RawAnswer> {
    join_all(streams.iter_mut().map(|s| read_answer(s, within))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_slow_bodies_do_not_hold_up_a_webhook_from_vizion() {
    let app = spawn_app_with(|s| {
        s.ingest
            .allowed_sources
            .push("127.0.0.2/32".parse().unwrap());
        // Fewer webhook places than slow connections, and bodies that may take all test.
        s.server.max_inflight = 128;
        s.server.body_read_timeout = Duration::from_secs(60);
    })
    .await;

    // Senders outside the allowlist are refused from their headers: no body is read.
    let mut outsiders = open_slow_bodies(app.port, OUTSIDER, SLOW_CONNECTIONS).await;
    let outsider_answers = answers(&mut outsiders, Duration::from_secs(10)).await;
    for answer in &outsider_answers {
        assert_eq!(answer.status(), Some(403), "{answer:?}");
    }
    drop(outsiders);
    assert_eq!(
        app.metric("vizion_bridge_body_reads_in_progress", "").await,
        0.0
    );

    // An allowed address (here the same as a proxy's or a second Vizion address) holds
    // hundreds of slow bodies.
    let mut slow = open_slow_bodies(app.port, SLOW_ALLOWED, SLOW_CONNECTIONS).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metric("vizion_bridge_inflight_requests", "").await < 64.0 {
        assert!(
            Instant::now() < deadline,
            "the slow requests reach the bridge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let vizion = reqwest::Client::builder()
        .local_address(IpAddr::from(VIZION))
        .build()
        .unwrap();
    let body = update_body("u-during-slow-bodies");
    let mut request = vizion
        .post(app.webhook_url())
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in SignatureBuilder::new(&body).headers() {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let response = request.send().await.expect("an answer");
    let latency = started.elapsed();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    eprintln!("webhook during {SLOW_CONNECTIONS} slow bodies: {status} in {latency:?}: {text}");
    assert_eq!(status, 200, "{text}");
    // Far below the 60 s the slow bodies may take: the webhook did not wait for them.
    assert!(latency < Duration::from_secs(10), "{latency:?}");
    assert_eq!(app.update_ids(), ["u-during-slow-bodies"]);

    // The slow sender got its share of body reads, and 503 with Retry-After beyond it.
    let share = app.metric("vizion_bridge_body_reads_in_progress", "").await;
    assert_eq!(share, 64.0, "the default share of one client");
    let refused = answers(&mut slow, Duration::from_secs(2))
        .await
        .into_iter()
        .filter(|answer| answer.status().is_some())
        .collect::<Vec<_>>();
    assert_eq!(refused.len(), SLOW_CONNECTIONS - 64);
    for answer in &refused {
        assert_eq!(answer.status(), Some(503), "{answer:?}");
        assert_eq!(answer.header("retry-after").as_deref(), Some("5"));
        let RawAnswer::Answered { body, .. } = answer else {
            unreachable!()
        };
        assert!(body.contains("\"error\":\"body_reads_full\""), "{body}");
    }
    assert_eq!(
        app.metric(
            "vizion_bridge_webhooks_total",
            "outcome=\"body_reads_full\""
        )
        .await,
        (SLOW_CONNECTIONS - 64) as f64
    );
    drop(slow);
}
