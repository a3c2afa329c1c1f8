//! Auto-unsubscription against the simulated Vizion: one `DELETE` per completed journey,
//! also with two bridges sharing Redis, and one `reference.unsubscribed` event.

use std::time::{Duration, Instant};

use serde_json::Value;
use vizion_bridge::secret::InlineSecret;
use vizion_bridge::settings::Settings;

use crate::helpers::*;

async fn deletes(sim: &Simulator, reference: &str) -> usize {
    sim.requests()
        .await
        .iter()
        .filter(|r| r["method"] == "DELETE" && r["path"] == format!("/references/{reference}"))
        .count()
}

async fn wait_for_delete(sim: &Simulator, reference: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while deletes(sim, reference).await == 0 {
        assert!(Instant::now() < deadline, "no DELETE for {reference}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn unsubscribed_events(app: &TestApp) -> Vec<Value> {
    app.events()
        .into_iter()
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".reference.unsubscribed.v1"))
        })
        .collect()
}

#[tokio::test]
async fn a_completed_journey_is_unsubscribed_once() {
    let sim = spawn_simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut settings = test_settings(dir.path());
        use_simulator(&mut settings, &sim);
        settings.lifecycle.auto_unsubscribe = true;
        settings
    };
    let app = spawn_app_from(settings()).await;
    let reference = sim.track("MSKU5678901", &app.webhook_url()).await;
    let mut last = Value::Null;
    for step in 0..JOURNEY.len() {
        last = sim.advance(&reference).await;
        assert_eq!(last["delivery"]["status"], 200, "step {step}: {last}");
        if step + 1 < JOURNEY.len() {
            assert_eq!(
                deletes(&sim, &reference).await,
                0,
                "not before the empty return"
            );
        }
    }
    wait_for_delete(&sim, &reference).await;

    // Vizion sends the last update again at its next check: nothing more happens.
    sim.client
        .post(sim.url(&format!("/_sim/references/{reference}/check")))
        .send()
        .await
        .unwrap();
    let last_id = last["update_id"].as_str().unwrap().to_owned();
    let events = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = unsubscribed_events(&app);
            if !events.is_empty() || Instant::now() > deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    app.stop().await;
    assert_eq!(deletes(&sim, &reference).await, 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["reference_id"], reference.as_str());
    assert_eq!(events[0]["data"]["update_id"], last_id.as_str());
    assert_eq!(events[0]["data"]["reason"], "journey_complete");
    let state = sim.get_json(&format!("/references/{reference}")).await;
    assert_eq!(state["active"], false, "{state}");

    // A restart remembers: the update polled again after it changes nothing.
    let app = spawn_app_from(settings()).await;
    let updates: Vec<Value> = sim
        .get_json(&format!("/references/{reference}/updates"))
        .await
        .as_array()
        .unwrap()
        .clone();
    let newest = serde_json::to_vec(&updates[0]).unwrap();
    let answer: Value = app.post_signed(&newest).await.json().await.unwrap();
    assert_eq!(answer["status"], "duplicate", "{answer}");
    app.stop().await;
    assert_eq!(deletes(&sim, &reference).await, 1);
}

fn redis_settings(data_dir: &std::path::Path, sim: &Simulator, prefix: &str) -> Settings {
    let mut settings = test_settings(data_dir);
    use_simulator(&mut settings, sim);
    settings.lifecycle.auto_unsubscribe = true;
    settings.dedup.redis_url = Some(InlineSecret::new("redis://127.0.0.1:6379/0"));
    settings.dedup.redis_key_prefix = prefix.to_owned();
    settings
}

#[tokio::test]
async fn two_bridges_sharing_redis_unsubscribe_once() {
    let sim = spawn_simulator().await;
    // No callback: the test delivers the final update to both bridges itself.
    let created = sim
        .create_reference(serde_json::json!({
            "container_id": "MSKU6789012",
            "carrier_code": "MAEU",
        }))
        .await;
    let reference = created["id"].as_str().unwrap().to_owned();
    for _ in 0..JOURNEY.len() {
        sim.advance(&reference).await;
    }
    let updates = sim
        .get_json(&format!("/references/{reference}/updates"))
        .await;
    let complete = serde_json::to_vec(&updates[0]).unwrap();

    let prefix = format!("vizion-bridge-test:{}:", uuid::Uuid::new_v4());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn_app_from(redis_settings(dir_a.path(), &sim, &prefix)).await;
    let b = spawn_app_from(redis_settings(dir_b.path(), &sim, &prefix)).await;
    let (to_a, to_b) = tokio::join!(a.post_signed(&complete), b.post_signed(&complete));
    assert_eq!(to_a.status().as_u16(), 200);
    assert_eq!(to_b.status().as_u16(), 200);
    wait_for_delete(&sim, &reference).await;
    // The same update again, to both: still one DELETE.
    let (again_a, again_b) = tokio::join!(a.post_signed(&complete), b.post_signed(&complete));
    let again_a: Value = again_a.json().await.unwrap();
    let again_b: Value = again_b.json().await.unwrap();
    assert_eq!(again_a["status"], "duplicate");
    assert_eq!(again_b["status"], "duplicate");

    let deadline = Instant::now() + Duration::from_secs(10);
    while unsubscribed_events(&a).len() + unsubscribed_events(&b).len() == 0 {
        assert!(Instant::now() < deadline, "no reference.unsubscribed event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = unsubscribed_events(&a).len() + unsubscribed_events(&b).len();
    a.stop().await;
    b.stop().await;
    assert_eq!(deletes(&sim, &reference).await, 1);
    assert_eq!(events, 1);
}

#[tokio::test]
async fn an_unsubscribe_whose_answer_was_lost_is_counted_and_announced() {
    // This simulated Vizion answers 404 to a DELETE of a reference it already
    // unsubscribed, and carries out the first DELETE but answers it 502.
    let sim = spawn_simulator_with(SimulatorOptions {
        extra: vec!["--forget-unsubscribed".into()],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    use_simulator(&mut settings, &sim);
    settings.lifecycle.auto_unsubscribe = true;
    let app = spawn_app_from(settings).await;
    let reference = sim.track("MSKU7890123", &app.webhook_url()).await;
    for _ in 1..JOURNEY.len() {
        sim.advance(&reference).await;
    }
    let set = sim
        .client
        .post(sim.url("/_sim/faults"))
        .json(&serde_json::json!({"lose_answer_next": 1, "status": 502}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status().as_u16(), 200);
    let last = sim.advance(&reference).await;
    assert_eq!(last["delivery"]["status"], 200, "{last}");

    let deadline = Instant::now() + Duration::from_secs(15);
    let outcome = |name: &'static str| {
        let app = &app;
        async move {
            app.metric(
                "vizion_bridge_unsubscriptions_total",
                &format!("outcome=\"{name}\""),
            )
            .await
        }
    };
    while outcome("unsubscribed").await + outcome("already_gone").await + outcome("failed").await
        == 0.0
    {
        assert!(Instant::now() < deadline, "the unsubscription never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The event is written after the outcome is counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while unsubscribed_events(&app).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses: Vec<Value> = sim
        .requests()
        .await
        .iter()
        .filter(|r| r["method"] == "DELETE" && r["path"] == format!("/references/{reference}"))
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [502, 404],
        "the first answer lost, the retry finds it gone"
    );
    assert_eq!(outcome("unsubscribed").await, 1.0);
    assert_eq!(outcome("already_gone").await, 0.0);
    let events = unsubscribed_events(&app);
    app.stop().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["reference_id"], reference.as_str());
    assert_eq!(events[0]["data"]["reason"], "journey_complete");
}
