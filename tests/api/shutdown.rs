//! SIGTERM on the real binary: every request it took gets an answer, and none that it
//! cannot finish in time is cut without one.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;

const LOCAL: [u8; 4] = [127, 0, 0, 1];
const CLIENTS: usize = 16;

/// What the clients saw.
#[derive(Default)]
struct Seen {
    accepted: Mutex<Vec<String>>,
    refused_with_retry_after: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// One client: a new connection per request, until the bridge answers 503 (it then
/// waits `Retry-After`, beyond the test) or refuses the connection (nothing listens).
async fn client(port: u16, n: usize, seen: Arc<Seen>) {
    for i in 0.. {
        let id = format!("u-term-{n}-{i}");
        let answer = raw_request(
            IpAddr::from(LOCAL),
            port,
            &signed_request(&update_body(&id)),
            Duration::from_secs(30),
        )
        .await;
        match answer.status() {
            Some(200) => seen.accepted.lock().unwrap().push(id),
            Some(503) if answer.header("retry-after").is_some() => {
                seen.refused_with_retry_after.fetch_add(1, Ordering::SeqCst);
                return;
            }
            _ if matches!(answer, RawAnswer::Refused) => return,
            _ => {
                seen.failures
                    .lock()
                    .unwrap()
                    .push(format!("{id}: {answer:?}"));
                return;
            }
        }
    }
}

#[tokio::test]
async fn during_the_shutdown_delay_readyz_says_not_ready_and_webhooks_are_still_taken() {
    let mut app = spawn_app_with(|s| s.server.shutdown_delay = Duration::from_secs(2)).await;
    let task = app.take_task();
    app.stop_handle().stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "shutting_down");
    let response = app.post_signed(&update_body("u-during-delay")).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(!task.is_finished());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the app stops after the delay")
        .unwrap();
    assert_eq!(app.update_ids(), ["u-during-delay"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_it_took() {
    // The default `shutdown_delay` (0 s): no load balancer has time to look away.
    let mut app = spawn_binary("", "").await;
    let seen = Arc::new(Seen::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(app.port, n, seen.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.accepted.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "the clients get answers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    app.terminate();
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("every client ends")
            .unwrap();
    }
    assert_eq!(app.wait_for_exit(Duration::from_secs(30)).await, Some(0));

    let failures = seen.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} requests without an answer: {failures:#?}",
        failures.len()
    );
    // Every 200 was written before it was answered.
    let written: HashSet<String> = app
        .raw_records()
        .iter()
        .filter_map(|r| r["delivery_id"].as_str().map(str::to_owned))
        .collect();
    let accepted = seen.accepted.lock().unwrap().clone();
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !written.contains(*id))
        .collect();
    assert!(lost.is_empty(), "answered 200 but not written: {lost:?}");
    eprintln!(
        "{} accepted, {} answered 503 + Retry-After after SIGTERM",
        accepted.len(),
        seen.refused_with_retry_after.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_on_a_slow_sink_at_shutdown_gets_503_with_retry_after() {
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:5672".parse().unwrap(),
    )
    .await;
    let names = Names::new("shutdown_stuck");
    let mut app = spawn_binary(
        "sinks = [\"rabbitmq\"]",
        &format!(
            "shutdown_timeout = \"3s\"\n\
             [delivery]\ntimeout = \"60s\"\n\
             [rabbitmq]\nurl = \"amqp://guest:guest@{proxy}/%2f\"\nexchange = \"{exchange}\"\n\
             unrouted_exchange = \"{unrouted}\"\nunrouted_queue = \"{unrouted}\"\n\
             connection_name = \"{connection}\"\n",
            proxy = proxy.addr,
            exchange = names.exchange,
            unrouted = names.unrouted,
            connection = names.connection,
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{}/readyz", app.port))
            .send()
            .await
            .unwrap();
        if ready.status().as_u16() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the bridge connects to RabbitMQ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The broker hangs: the publish is never confirmed.
    proxy.pause();
    let port = app.port;
    let stuck = tokio::spawn(async move {
        raw_request(
            IpAddr::from(LOCAL),
            port,
            &signed_request(&update_body("u-stuck")),
            Duration::from_secs(30),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metric("vizion_bridge_inflight_requests", "").await < 1.0 {
        assert!(Instant::now() < deadline, "the request reaches the sink");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let terminated = Instant::now();
    app.terminate();
    let answer = stuck.await.unwrap();
    let waited = terminated.elapsed();
    assert_eq!(answer.status(), Some(503), "{answer:?}");
    assert_eq!(answer.header("retry-after").as_deref(), Some("5"));
    let RawAnswer::Answered { body, .. } = &answer else {
        unreachable!()
    };
    assert!(body.contains("\"error\":\"shutting_down\""), "{body}");
    assert!(
        waited < Duration::from_secs(3),
        "answered within shutdown_timeout: {waited:?}"
    );

    proxy.restore();
    assert_eq!(app.wait_for_exit(Duration::from_secs(30)).await, Some(0));
}
