//! Redis unreachable (packets dropped, as in a network partition): after a few failed
//! calls the bridge stops asking it for a while, so answers are no longer held up by
//! `dedup.redis_timeout`; every update is still taken (counted as unseen), and once
//! Redis answers again, updates are deduplicated through it again.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vizion_bridge::secret::InlineSecret;
use vizion_bridge::settings::Settings;

use crate::helpers::*;

const REDIS: &str = "127.0.0.1:6379";

fn with_redis_at(dir: &std::path::Path, redis: SocketAddr, prefix: &str) -> Settings {
    let mut settings = test_settings(dir);
    settings.dedup.redis_url = Some(InlineSecret::new(format!("redis://{redis}/0")));
    settings.dedup.redis_key_prefix = prefix.to_owned();
    settings.dedup.redis_timeout = Duration::from_secs(1);
    settings
}

async fn post_status(app: &TestApp, id: &str) -> String {
    let answer: serde_json::Value = app
        .post_signed(&update_body(id))
        .await
        .json()
        .await
        .unwrap();
    answer["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_stalled_redis_stops_delaying_answers_and_dedup_resumes_when_it_is_back() {
    let proxy = TcpProxy::start("127.0.0.1:0".parse().unwrap(), REDIS.parse().unwrap()).await;
    let prefix = format!("vizion-bridge-test:{}:", uuid::Uuid::new_v4());
    let (dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn_app_from(with_redis_at(dir.path(), proxy.addr, &prefix)).await;
    assert_eq!(post_status(&app, "u-before").await, "accepted");
    assert_eq!(
        app.metric("vizion_bridge_dedup_breaker_state", "").await,
        0.0
    );

    proxy.pause();
    // The first calls wait for the timeout; every update is still taken.
    for n in 0..3 {
        assert_eq!(
            post_status(&app, &format!("u-stalled-{n}")).await,
            "accepted"
        );
    }
    for n in 0..5 {
        let started = Instant::now();
        assert_eq!(post_status(&app, &format!("u-open-{n}")).await, "accepted");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(750),
            "answer {n} waited for Redis: {took:?}"
        );
    }
    assert_eq!(
        app.metric("vizion_bridge_dedup_breaker_state", "").await,
        1.0,
        "open"
    );
    assert!(
        app.metric(
            "vizion_bridge_dedup_breaker_transitions_total",
            "state=\"open\""
        )
        .await
            >= 1.0
    );

    proxy.restore();
    // After the open period, a request probes Redis; its answer closes the breaker.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = 0;
    while app.metric("vizion_bridge_dedup_breaker_state", "").await != 0.0 {
        assert!(Instant::now() < deadline, "the breaker never closed");
        assert_eq!(
            post_status(&app, &format!("u-probe-{probes}")).await,
            "accepted"
        );
        probes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        app.metric(
            "vizion_bridge_dedup_breaker_transitions_total",
            "state=\"closed\""
        )
        .await
            >= 1.0
    );

    // Redis is used again both ways: a replica reaching Redis directly sees what this
    // bridge writes now, and this bridge sees what the replica writes.
    assert_eq!(post_status(&app, "u-after").await, "accepted");
    let replica = spawn_app_from(with_redis_at(
        replica_dir.path(),
        REDIS.parse().unwrap(),
        &prefix,
    ))
    .await;
    assert_eq!(post_status(&replica, "u-after").await, "duplicate");
    assert_eq!(post_status(&replica, "u-replica").await, "accepted");
    assert_eq!(post_status(&app, "u-replica").await, "duplicate");
    replica.stop().await;
    app.stop().await;
}
