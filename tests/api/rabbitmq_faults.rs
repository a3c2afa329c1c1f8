//! The invariant of the product against RabbitMQ behind a TCP proxy that is cut and
//! restored under load: every webhook answered 2xx reaches a bound queue, requests
//! during the cut get 503 rather than hang, and the bridge reconnects by itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use vizion_bridge::secret::InlineSecret;

use crate::helpers::outage::{self, assert_all_delivered};
use crate::helpers::*;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_2xx_is_delivered_through_a_rabbitmq_cut() {
    let proxy = TcpProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:5672".parse().unwrap(),
    )
    .await;
    let names = Names::new("outage");
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let app = spawn_app_with(|s| {
        names.configure(s);
        s.rabbitmq.url = Some(InlineSecret::new(url));
        s.delivery.timeout = DELIVERY_TIMEOUT;
    })
    .await;
    app.wait_until_ready(Duration::from_secs(20)).await;
    // The reader talks to the broker directly, not through the proxy.
    let reader = Reader::connect().await;
    let mut raw = reader.bind(&names.exchange, "raw").await;

    let outage = outage::run(Arc::new(app), &proxy, "rabbitmq-oracle").await;
    let recovered = outage.assert_answers(
        DELIVERY_TIMEOUT + Duration::from_secs(2),
        Duration::from_secs(10),
    );

    // The oracle. Raw bodies carry the update id as message id; a message may come
    // twice (same id), none may be missing.
    let accepted = outage.accepted_ids();
    let mut delivered = HashSet::new();
    let mut records = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !accepted.iter().all(|id| delivered.contains(*id)) && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(delivery))) = tokio::time::timeout(left, raw.next()).await else {
            break;
        };
        records += 1;
        if let Some(id) = delivery.properties.message_id() {
            delivered.insert(id.to_string());
        }
    }
    let delivered: HashSet<&str> = delivered.iter().map(String::as_str).collect();
    assert_all_delivered(&accepted, &delivered);
    println!(
        "rabbitmq oracle: {} requests, {} accepted, {} answered 503, all accepted delivered ({records} messages); recovered {recovered:?} after the restore",
        outage.outcomes.len(),
        accepted.len(),
        outage.count(503),
    );
    reader.delete(&names).await;
}
