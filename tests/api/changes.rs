//! What changed, published over the real brokers: one simulated journey (twelve steps,
//! a transshipment, estimates that drift) through a bridge in the default
//! `events.milestones = "changes"` mode publishes each change event once, also when
//! every update is sent again, when two bridges sharing Redis take the updates in turn,
//! when the first attempt is refused and retried, and when the spool forwards them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::types::AMQPValue;
use lapin::Consumer;
use serde_json::Value;
use time::OffsetDateTime;
use vizion_bridge::delivery::AckMode;
use vizion_bridge::events::changes::{self, MilestoneState, DEFAULT_ETA_CHANGE_THRESHOLD};
use vizion_bridge::events::{DeliveryMode, EventContext};
use vizion_bridge::secret::InlineSecret;
use vizion_bridge::settings::Settings;
use vizion_bridge::vizion::{self, Inbound};

use crate::helpers::*;

/// Nobody listens there: the simulator's own deliveries fail, and the test posts the
/// updates itself, in the order it chooses.
const NO_CALLBACK: &str = "http://127.0.0.1:9/never";

/// The twelve updates of one journey, oldest first, as Vizion's API gives them.
async fn journey() -> Vec<Vec<u8>> {
    let sim = spawn_simulator().await;
    let container = format!("MAEU{:07}", rand_digits());
    let id = sim.track(&container, NO_CALLBACK).await;
    for _ in JOURNEY {
        sim.advance(&id).await;
    }
    let updates = sim
        .get_json(&format!("/references/{id}/updates?limit=25"))
        .await;
    let mut updates: Vec<Vec<u8>> = updates
        .as_array()
        .unwrap()
        .iter()
        .map(|u| serde_json::to_vec(u).unwrap())
        .collect();
    assert_eq!(updates.len(), JOURNEY.len());
    updates.reverse();
    updates
}

fn rand_digits() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 % 10_000_000
}

/// The change events the journey should publish: `(type suffix, id)`, derived in order
/// from no state, each state from the one before.
fn expected(updates: &[Vec<u8>]) -> BTreeSet<(String, String)> {
    let ctx = EventContext::default();
    let mut state: Option<MilestoneState> = None;
    let mut expected = BTreeSet::new();
    for body in updates {
        let Ok(Inbound::Update(update)) = vizion::parse(body) else {
            panic!("an update");
        };
        let derived = changes::derive(
            state.as_ref(),
            &update,
            OffsetDateTime::now_utc(),
            DeliveryMode::Webhook,
            &ctx,
            DEFAULT_ETA_CHANGE_THRESHOLD,
        );
        for event in derived.events.into_iter().map(|c| c.event) {
            assert!(
                expected.insert((kind(event.event_type()), event.id().to_owned())),
                "one journey derives each change once"
            );
        }
        state = Some(derived.next_state);
    }
    let kinds: BTreeSet<_> = expected.iter().map(|(k, _)| k.as_str()).collect();
    assert!(kinds.contains("milestone.changed"), "{kinds:?}");
    assert!(kinds.contains("eta_changed"), "{kinds:?}");
    assert!(kinds.contains("journey_completed"), "{kinds:?}");
    expected
}

/// `milestone.changed` for `com.vizionapi.tracking.milestone.changed.v1`.
fn kind(event_type: &str) -> String {
    event_type
        .strip_prefix("com.vizionapi.tracking.")
        .and_then(|t| t.strip_suffix(".v1"))
        .unwrap_or(event_type)
        .to_owned()
}

fn is_change(kind: &str) -> bool {
    matches!(
        kind,
        "milestone.changed" | "eta_changed" | "journey_completed"
    )
}

async fn post_all(apps: &[&TestApp], updates: &[Vec<u8>]) {
    for (n, body) in updates.iter().enumerate() {
        let app = apps[n % apps.len()];
        assert_eq!(app.post_signed(body).await.status().as_u16(), 200);
    }
}

/// Every message consumed until none came for a while, as `(type suffix, id)`.
async fn drain(consumer: &mut Consumer, quiet: Duration) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, consumer.next()).await {
        let headers = message.properties.headers().clone().unwrap_or_default();
        let text = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(v)) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            Some(AMQPValue::ShortString(v)) => v.as_str().to_owned(),
            _ => String::new(),
        };
        out.push((kind(&text("cloudEvents:type")), text("cloudEvents:id")));
    }
    out
}

/// Each `(kind, id)` published once, and exactly those expected.
fn assert_once(published: &[(String, String)], expected: &BTreeSet<(String, String)>) {
    let mut counts: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for event in published.iter().filter(|(k, _)| is_change(k)) {
        *counts.entry(event).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:#?}");
    let got: BTreeSet<(String, String)> = counts.into_keys().cloned().collect();
    assert_eq!(&got, expected);
    assert!(
        published.iter().all(|(k, _)| k != "milestone"),
        "no per-milestone event in changes mode"
    );
}

fn share_redis(settings: &mut Settings, prefix: &str) {
    settings.dedup.redis_url = Some(InlineSecret::new("redis://127.0.0.1:6379/0"));
    settings.dedup.redis_key_prefix = prefix.to_owned();
}

#[tokio::test]
async fn a_journey_over_rabbitmq_publishes_each_change_once_also_when_resent() {
    let updates = journey().await;
    let expected = expected(&updates);
    let names = Names::new("changes");
    let reader = Reader::connect().await;
    let app = spawn_app_with(|s| names.configure(s)).await;
    app.wait_until_ready(Duration::from_secs(10)).await;
    let mut milestones = reader.bind(&names.exchange, "milestone.#").await;

    post_all(&[&app], &updates).await;
    post_all(&[&app], &updates).await;
    let published = drain(&mut milestones, Duration::from_secs(2)).await;
    assert_once(&published, &expected);
    app.stop().await;
    reader.delete(&names).await;
}

#[tokio::test]
async fn two_bridges_sharing_redis_taking_the_updates_in_turn_publish_each_change_once() {
    let updates = journey().await;
    let expected = expected(&updates);
    let names = Names::new("changes-replicas");
    let prefix = format!("vizion-bridge-test:{}:", uuid::Uuid::new_v4());
    let reader = Reader::connect().await;
    let first = spawn_app_with(|s| {
        names.configure(s);
        share_redis(s, &prefix);
    })
    .await;
    let second = spawn_app_with(|s| {
        names.configure(s);
        share_redis(s, &prefix);
    })
    .await;
    first.wait_until_ready(Duration::from_secs(10)).await;
    second.wait_until_ready(Duration::from_secs(10)).await;
    let mut milestones = reader.bind(&names.exchange, "milestone.#").await;

    post_all(&[&first, &second], &updates).await;
    post_all(&[&second, &first], &updates).await;
    let published = drain(&mut milestones, Duration::from_secs(2)).await;
    assert_once(&published, &expected);
    first.stop().await;
    second.stop().await;
    reader.delete(&names).await;
}

#[tokio::test]
async fn a_journey_over_kafka_publishes_each_change_once_also_when_resent() {
    let updates = journey().await;
    let expected = expected(&updates);
    let brokers = bootstrap();
    let mut topics = None;
    let app = spawn_app_with(|s| topics = Some(use_kafka(s, &brokers))).await;
    let topics = topics.unwrap();
    app.wait_until_ready(Duration::from_secs(20)).await;

    post_all(&[&app], &updates).await;
    post_all(&[&app], &updates).await;
    let consumed = consume_until(
        &brokers,
        &[&topics.milestones],
        Duration::from_secs(20),
        |c| c.len() > expected.len(),
    )
    .await;
    let container = {
        let update: Value = serde_json::from_slice(&updates[0]).unwrap();
        update["payload"]["container_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(consumed
        .iter()
        .all(|c| c.key.as_deref() == Some(&container)));
    let published: Vec<_> = consumed
        .iter()
        .map(|c| (kind(&c.headers["ce_type"]), c.headers["ce_id"].clone()))
        .collect();
    assert_once(&published, &expected);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_first_attempt_and_its_retry_publish_the_changes_once() {
    let updates = journey().await;
    let expected = expected(&updates);
    let sink = Arc::new(FlakySink::new(1));
    let app = spawn_app_with_sinks(|_| {}, vec![sink.clone()]).await;

    assert_eq!(app.post_signed(&updates[0]).await.status().as_u16(), 503);
    post_all(&[&app], &updates).await;
    let published: Vec<_> = sink
        .written
        .events()
        .into_iter()
        .map(|(t, id)| (kind(&t), id))
        .collect();
    assert_once(&published, &expected);
    app.stop().await;
}

#[tokio::test]
async fn in_spool_mode_the_forwarder_publishes_the_changes_once() {
    let updates = journey().await;
    let expected = expected(&updates);
    let app = spawn_app_with(|s| {
        s.spool.dir = Some(s.storage.data_dir.join("spool"));
        s.delivery.mode = Some(AckMode::Spool);
    })
    .await;

    post_all(&[&app], &updates).await;
    post_all(&[&app], &updates).await;
    let published = || -> Vec<(String, String)> {
        app.events()
            .iter()
            .map(|e| {
                (
                    kind(e["type"].as_str().unwrap()),
                    e["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // The tracking updates, one per update, come with the change events.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while published().len() < expected.len() + updates.len() {
        assert!(std::time::Instant::now() < deadline, "forwarded in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let published = published();
    assert_eq!(
        published.iter().filter(|(k, _)| k == "update").count(),
        updates.len()
    );
    assert_once(&published, &expected);
    app.stop().await;
}
