//! The per-reference state kept in Redis: a commit is a compare-and-set on the version
//! read, so that replicas sharing Redis advance one reference's state one after the
//! other, each from what the previous one committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vizion_bridge::store::key_set::{RedisOptions, RedisStore};
use vizion_bridge::store::state::{Commit, StateConfig, StateStore};
use vizion_bridge::telemetry::Metrics;

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

fn unique_prefix() -> String {
    format!("vizion-bridge-test:{}:", uuid::Uuid::new_v4())
}

/// A replica's store: a connection of its own to the shared Redis.
fn replica(prefix: &str, ttl: Duration, metrics: &Metrics) -> StateStore {
    let options = RedisOptions {
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_secs(2),
        breaker_failures: 3,
        breaker_open: Duration::from_secs(5),
    };
    let redis = RedisStore::new(REDIS_URL, &options, metrics).unwrap();
    let config = StateConfig {
        ttl,
        ..StateConfig::default()
    };
    StateStore::in_redis(&config, redis, metrics)
}

async fn ttl_of(key: &str) -> i64 {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

fn sample(metrics: &Metrics, series: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series}"))
}

#[tokio::test]
async fn of_two_clients_committing_on_the_same_version_only_one_wins() {
    let prefix = unique_prefix();
    let metrics = Metrics::new();
    let (first, second) = (
        replica(&prefix, Duration::from_secs(60), &metrics),
        replica(&prefix, Duration::from_secs(60), &metrics),
    );
    assert_eq!(first.get("REF1").await.unwrap(), None);

    // Both read no state, both commit on it.
    let (a, b) = tokio::join!(
        first.commit("REF1", None, b"first".to_vec()),
        second.commit("REF1", None, b"second".to_vec()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let winner = match (a, b) {
        (Commit::Committed(version), Commit::Conflict) => (version, b"first".to_vec()),
        (Commit::Conflict, Commit::Committed(version)) => (version, b"second".to_vec()),
        other => panic!("exactly one commit wins: {other:?}"),
    };
    let read = second.get("REF1").await.unwrap().unwrap();
    assert_eq!((read.version, read.value), winner);

    // A version read before the winner's commit is stale too.
    let next = first
        .commit("REF1", Some(read.version), b"third".to_vec())
        .await
        .unwrap();
    assert!(matches!(next, Commit::Committed(v) if v > read.version));
    assert_eq!(
        second
            .commit("REF1", Some(read.version), b"late".to_vec())
            .await
            .unwrap(),
        Commit::Conflict
    );
    assert_eq!(
        first.get("REF1").await.unwrap().unwrap().value,
        b"third".to_vec()
    );
    assert_eq!(
        sample(&metrics, "vizion_bridge_event_state_conflicts_total"),
        2.0
    );
}

#[tokio::test]
async fn a_commit_sets_the_time_to_live_and_the_state_outlives_its_connection() {
    let prefix = unique_prefix();
    let key = format!("{prefix}state:REF2");
    let metrics = Metrics::new();
    let short = replica(&prefix, Duration::from_secs(100), &metrics);
    let value = vec![0u8, 255, b'\n', b'{'];
    let Commit::Committed(version) = short.commit("REF2", None, value.clone()).await.unwrap()
    else {
        panic!("committed");
    };
    let ttl = ttl_of(&key).await;
    assert!((1..=100).contains(&ttl), "ttl {ttl}");
    drop(short);

    // A new connection, as after a restart, finds it; committing refreshes the TTL.
    let long = replica(&prefix, Duration::from_secs(10_000), &metrics);
    let read = long.get("REF2").await.unwrap().unwrap();
    assert_eq!((read.version, &read.value), (version, &value));
    long.commit("REF2", Some(version), b"next".to_vec())
        .await
        .unwrap();
    let ttl = ttl_of(&key).await;
    assert!((101..=10_000).contains(&ttl), "ttl {ttl}");
    assert_eq!(
        sample(
            &metrics,
            "vizion_bridge_event_state_lookups_total{result=\"hit\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn replicas_sharing_redis_apply_every_update_of_a_reference_once() {
    const REPLICAS: u64 = 2;
    const WORKERS: u64 = 4;
    const INCREMENTS: u64 = 25;
    let prefix = unique_prefix();
    let metrics = Metrics::new();
    let retries = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..REPLICAS {
        let store = replica(&prefix, Duration::from_secs(60), &metrics);
        for _ in 0..WORKERS {
            let (store, retries) = (store.clone(), retries.clone());
            workers.push(tokio::spawn(async move {
                for _ in 0..INCREMENTS {
                    // Read, derive the next state from it, commit on what was read;
                    // on a conflict, start over from the newer state.
                    loop {
                        let read = store.get("REF3").await.unwrap();
                        let count = read.as_ref().map_or(0, |r| {
                            u64::from_be_bytes(r.value.as_slice().try_into().unwrap())
                        });
                        let next = (count + 1).to_be_bytes().to_vec();
                        match store.commit("REF3", read.map(|r| r.version), next).await {
                            Ok(Commit::Committed(_)) => break,
                            Ok(Commit::Conflict) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }));
        }
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let store = replica(&prefix, Duration::from_secs(60), &metrics);
    let value = store.get("REF3").await.unwrap().unwrap().value;
    assert_eq!(
        u64::from_be_bytes(value.as_slice().try_into().unwrap()),
        REPLICAS * WORKERS * INCREMENTS
    );
    let retries = retries.load(Ordering::Relaxed);
    assert!(retries > 0, "the workers raced");
    assert_eq!(
        sample(&metrics, "vizion_bridge_event_state_conflicts_total"),
        retries as f64
    );
}
