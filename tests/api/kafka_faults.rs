//! The invariant of the product, against a Kafka-protocol broker behind a TCP proxy that
//! is cut and restored under load: every webhook answered 2xx is in the broker
//! afterwards, requests during the cut get 503 rather than hang, and the bridge recovers
//! by itself once the broker is back.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::kafka::{consume_until, use_kafka, wait_until_ready};
use crate::proxy::{free_port, Child, TcpProxy};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

struct Outcome {
    id: String,
    status: u16,
    sent: Instant,
    took: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_2xx_is_delivered_through_a_broker_cut() {
    // The broker advertises the proxy, so that every connection, bootstrap or not,
    // goes through it.
    let broker_port = free_port();
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        format!("127.0.0.1:{broker_port}").parse().unwrap(),
    )
    .await;
    let _broker = Child(
        Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{broker_port}"),
                "--advertised-listener-url",
                &format!("tcp://{}", proxy.addr),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tansu broker is on PATH (scripts/test.sh installs it)"),
    );
    let brokers = proxy.addr.to_string();
    let mut topics = None;
    let app = spawn_app_with(|s| {
        topics = Some(use_kafka(s, &brokers));
        s.delivery.timeout = DELIVERY_TIMEOUT;
        s.kafka.message_timeout = Duration::from_secs(2);
    })
    .await;
    let topics = topics.unwrap();
    wait_until_ready(&app, Duration::from_secs(30)).await;

    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (app, stop, next, outcomes) =
            (app.clone(), stop.clone(), next.clone(), outcomes.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let id = format!("oracle-{}", next.fetch_add(1, Ordering::Relaxed));
                let sent = Instant::now();
                let status = app.post_signed(&update_body(&id)).await.status().as_u16();
                outcomes.lock().unwrap().push(Outcome {
                    id,
                    status,
                    sent,
                    took: sent.elapsed(),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut_at = Instant::now();
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restored_at = Instant::now();
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let accepted: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 200).collect();
    let before = accepted.iter().filter(|o| o.sent < cut_at).count();
    let during: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.sent > cut_at + Duration::from_millis(500) && o.sent < restored_at)
        .collect();
    assert!(before > 0, "webhooks were accepted before the cut");
    assert!(
        during.iter().any(|o| o.status == 503),
        "requests during the cut got 503: {:?}",
        during.iter().map(|o| o.status).collect::<Vec<_>>()
    );
    assert!(
        outcomes.iter().all(|o| o.status == 200 || o.status == 503),
        "only 200 or 503"
    );
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap();
    assert!(
        slowest < DELIVERY_TIMEOUT + Duration::from_secs(2),
        "no request hung: the slowest took {slowest:?}"
    );
    let recovered = accepted
        .iter()
        .filter(|o| o.sent > restored_at)
        .map(|o| o.sent + o.took)
        .min()
        .expect("webhooks were accepted again after the broker came back");
    assert!(
        recovered - restored_at < Duration::from_secs(10),
        "recovered {:?} after the broker came back",
        recovered - restored_at
    );
    let last_failure = outcomes
        .iter()
        .filter(|o| o.status != 200)
        .map(|o| o.sent)
        .max()
        .unwrap();
    assert!(
        accepted.iter().any(|o| o.sent > last_failure),
        "after recovery, webhooks stay accepted"
    );

    // The oracle: every update answered 200 is in the broker. Raw bodies are keyed by
    // update id; duplicates (same id) are allowed, losses are not.
    let expected: HashSet<&str> = accepted.iter().map(|o| o.id.as_str()).collect();
    let consumed = consume_until(
        &brokers,
        &[&topics.raw],
        Duration::from_secs(60),
        |consumed| {
            let seen: HashSet<&str> = consumed.iter().filter_map(|c| c.key.as_deref()).collect();
            expected.is_subset(&seen)
        },
    )
    .await;
    let delivered: HashSet<&str> = consumed.iter().filter_map(|c| c.key.as_deref()).collect();
    let lost: Vec<&&str> = expected.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "{} of {} accepted updates are missing from the broker: {:?}",
        lost.len(),
        expected.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    println!(
        "oracle: {} requests, {} accepted ({} before the cut), {} answered 503, all accepted delivered ({} records for {} ids); recovered {:?} after restore",
        outcomes.len(),
        accepted.len(),
        before,
        outcomes.iter().filter(|o| o.status == 503).count(),
        consumed.len(),
        expected.len(),
        recovered - restored_at
    );
}
