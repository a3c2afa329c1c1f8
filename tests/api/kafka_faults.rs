//! The invariant of the product, against a Kafka-protocol broker behind a TCP proxy that
//! is cut and restored under load: every webhook answered 2xx is in the broker
//! afterwards, requests during the cut get 503 rather than hang, and the bridge recovers
//! by itself once the broker is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::outage::{self, assert_all_delivered};
use crate::helpers::*;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_2xx_is_delivered_through_a_kafka_cut() {
    let (proxy, _broker) = kafka_behind_proxy().await;
    let brokers = proxy.addr.to_string();
    let mut topics = None;
    let app = spawn_app_with(|s| {
        topics = Some(use_kafka(s, &brokers));
        s.delivery.timeout = DELIVERY_TIMEOUT;
        s.kafka.message_timeout = Duration::from_secs(2);
    })
    .await;
    let topics = topics.unwrap();
    app.wait_until_ready(Duration::from_secs(30)).await;

    let outage = outage::run(Arc::new(app), &proxy, "kafka-oracle").await;
    assert!(
        outage.during_cut().any(|o| o.status == 503),
        "requests during the cut got 503"
    );
    let recovered = outage.assert_answers(
        DELIVERY_TIMEOUT + Duration::from_secs(2),
        Duration::from_secs(10),
    );

    // The oracle. Raw bodies are keyed by update id; a record may come twice (same
    // id), none may be missing.
    let accepted = outage.accepted_ids();
    let consumed = consume_until(
        &brokers,
        &[&topics.raw],
        Duration::from_secs(60),
        |consumed| {
            let seen: HashSet<&str> = consumed.iter().filter_map(|c| c.key.as_deref()).collect();
            accepted.is_subset(&seen)
        },
    )
    .await;
    let delivered: HashSet<&str> = consumed.iter().filter_map(|c| c.key.as_deref()).collect();
    assert_all_delivered(&accepted, &delivered);
    println!(
        "kafka oracle: {} requests, {} accepted, {} answered 503, all accepted delivered ({} records); recovered {recovered:?} after the restore",
        outage.outcomes.len(),
        accepted.len(),
        outage.count(503),
        consumed.len(),
    );
}
