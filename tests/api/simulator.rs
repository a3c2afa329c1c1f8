//! `vizion-sim serve`, the simulated Vizion: its REST API as a client sees it, and its
//! journeys played into a real bridge.

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::helpers::*;

fn status_of(delivery: &Value) -> Option<u64> {
    delivery["status"].as_u64()
}

fn at(delivery: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(delivery["at"].as_str().unwrap(), &Rfc3339).unwrap()
}

// ---------------------------------------------------------------------------------
// REST API
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_api_key_is_required_and_the_admin_surface_needs_none() {
    let sim = spawn_simulator().await;
    let url = sim.url("/references");

    let missing = sim.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    let body: Value = missing.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("X-API-Key"));

    let wrong = sim
        .client
        .get(&url)
        .header("x-api-key", "not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    assert_eq!(sim.get("/references").await.status().as_u16(), 200);
    let health = sim
        .client
        .get(sim.url("/_sim/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn a_reference_by_carrier_code_is_created_and_read_back_bare() {
    let sim = spawn_simulator().await;
    let response = sim
        .post(
            "/references",
            &json!({"container_id": "mrku0090522", "carrier_code": "MAEU", "callback_url": "http://127.0.0.1:9/hook?customer=a"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["message"].is_string());
    let reference = &answer["reference"];
    let id = reference["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(reference["container_id"], "MRKU0090522");
    assert_eq!(reference["carrier_code"], "MAEU");
    assert_eq!(
        reference["callback_url"],
        "http://127.0.0.1:9/hook?customer=a"
    );
    assert_eq!(reference["active"], true);
    assert_eq!(reference["auto_carrier"], false);
    assert_eq!(reference["parent_reference_id"], Value::Null);

    let fetched = sim.get_json(&format!("/references/{id}")).await;
    assert_eq!(&fetched, reference);
    // No step played yet: no updates.
    assert_eq!(
        sim.get_json(&format!("/references/{id}/updates")).await,
        json!([])
    );
}

#[tokio::test]
async fn a_bill_of_lading_creates_a_parent_and_one_child_per_container() {
    let sim = spawn_simulator().await;
    let parent = sim
        .create_reference(json!({"bill_of_lading": "MAEU255221188", "carrier_code": "MAEU", "callback_url": "http://127.0.0.1:9/hook"}))
        .await;
    let parent_id = parent["id"].as_str().unwrap();
    assert_eq!(parent["container_id"], Value::Null);
    assert_eq!(parent["bill_of_lading"], "MAEU255221188");

    let listed = sim
        .get_json("/references?bill_of_lading=MAEU255221188")
        .await;
    let listed = listed.as_array().unwrap();
    let children: Vec<&Value> = listed
        .iter()
        .filter(|r| r["parent_reference_id"] == parent_id)
        .collect();
    assert!(children.len() >= 2, "{listed:#?}");
    assert_eq!(listed.len(), children.len() + 1);
    for child in &children {
        let container = child["container_id"].as_str().unwrap();
        assert_eq!(container.len(), 11, "{container}");
        assert_eq!(child["bill_of_lading"], "MAEU255221188");
        assert_eq!(child["callback_url"], "http://127.0.0.1:9/hook");
    }

    // A child's updates name its parent.
    let child_id = children[0]["id"].as_str().unwrap();
    sim.advance(child_id).await;
    let updates = sim
        .get_json(&format!("/references/{child_id}/updates"))
        .await;
    assert_eq!(updates[0]["parent_reference_id"], parent_id);
    assert_eq!(updates[0]["payload"]["bill_of_lading"], "MAEU255221188");

    // With a container id as well, only that container is tracked.
    let single = sim
        .create_reference(json!({"bill_of_lading": "MAEU999", "container_id": "MSKU1234565", "carrier_code": "MAEU"}))
        .await;
    assert_eq!(single["container_id"], "MSKU1234565");
    assert_eq!(
        sim.get_json("/references?bill_of_lading=MAEU999")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn auto_carrier_identification_finds_the_carrier_from_the_owner_code() {
    let sim = spawn_simulator().await;
    let found = sim
        .create_reference(
            json!({"container_id": "CAIU9339738", "callback_url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(found["auto_carrier"], true);
    assert_eq!(found["carrier_code"], "MSCU");
    assert_eq!(found["active"], true);
    assert_eq!(found["last_update_status"], "auto_carrier_completed");

    let not_found = sim
        .create_reference(json!({"container_id": "ABCU1234560"}))
        .await;
    assert_eq!(not_found["active"], false);
    assert_eq!(not_found["last_update_status"], "auto_carrier_not_found");
    assert_eq!(not_found["deactivate_reason"], "carrier_not_found");
}

#[tokio::test]
async fn invalid_requests_are_refused_with_422_and_a_message() {
    let sim = spawn_simulator().await;
    let invalid = [
        json!({}),
        json!({"carrier_code": "MAEU"}),
        json!({"container_id": "NOT-A-CONTAINER", "carrier_code": "MAEU"}),
        json!({"container_id": "MRKU009052", "carrier_code": "MAEU"}),
        json!({"container_id": "MRKU0090522", "carrier_code": "NOPE"}),
        json!({"container_id": "MRKU0090522", "carrier_code": "MAEU", "callback_url": "not a url"}),
        json!({"container_id": "MRKU0090522", "carrier_code": "MAEU", "callback_url": "ftp://example.com/x"}),
        json!({"bill_of_lading": "MAEU255221188"}),
        json!({"container_id": 12}),
        json!([1, 2]),
    ];
    for body in invalid {
        let response = sim.post("/references", &body).await;
        assert_eq!(response.status().as_u16(), 422, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(
            !answer["message"].as_str().unwrap_or_default().is_empty(),
            "{body}: {answer}"
        );
    }
    let not_json = sim
        .client
        .post(sim.url("/references"))
        .header("x-api-key", &sim.api_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 422);
    // Nothing was created by any of them.
    assert_eq!(sim.get_json("/references").await, json!([]));
}

#[tokio::test]
async fn an_unknown_reference_is_404() {
    let sim = spawn_simulator().await;
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/references/{unknown}"),
        format!("/references/{unknown}/updates"),
        "/references/not-a-uuid".to_string(),
    ] {
        assert_eq!(sim.get(&path).await.status().as_u16(), 404, "{path}");
    }
    let response = sim.delete(&format!("/references/{unknown}")).await;
    assert_eq!(response.status().as_u16(), 404);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["message"].is_string());
}

#[tokio::test]
async fn references_are_listed_newest_first_with_filters_and_pages() {
    let sim = spawn_simulator().await;
    let a = sim.track("MRKU0090522", "http://127.0.0.1:9/a").await;
    let b = sim.track("MSKU1234565", "http://127.0.0.1:9/b").await;
    let c = sim
        .create_reference(json!({"container_id": "OOCU7821056", "carrier_code": "OOLU", "callback_url": "http://127.0.0.1:9/c"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&sim.get_json("/references").await),
        [c.as_str(), b.as_str(), a.as_str()]
    );
    assert_eq!(
        ids(&sim.get_json("/references?carrier_code=MAEU").await),
        [b.as_str(), a.as_str()]
    );
    assert_eq!(
        ids(&sim.get_json("/references?container_id=MSKU1234565").await),
        [b.as_str()]
    );
    assert_eq!(
        ids(&sim
            .get_json("/references?callback_urls=http://127.0.0.1:9/a,http://127.0.0.1:9/c")
            .await),
        [c.as_str(), a.as_str()]
    );

    // Pages of two, with and without metadata.
    assert_eq!(
        ids(&sim.get_json("/references?limit=2&page=2").await),
        [a.as_str()]
    );
    let paged = sim
        .get_json("/references?limit=2&page=1&include_metadata=true")
        .await;
    assert_eq!(ids(&paged["data"]), [c.as_str(), b.as_str()]);
    assert_eq!(
        paged["metadata"],
        json!({"page": 1, "page_count": 2, "per_page": 2, "item_count": 3})
    );
    assert_eq!(sim.get("/references?limit=0").await.status().as_u16(), 400);
    assert_eq!(sim.get("/references?page=x").await.status().as_u16(), 400);

    // The last update status is a filter too.
    sim.advance(&a).await;
    let failed = sim
        .get_json("/references?last_update_status=webhook_failed")
        .await;
    assert_eq!(ids(&failed), [a.as_str()]);
}

#[tokio::test]
async fn unsubscribing_deactivates_and_is_counted() {
    let sim = spawn_simulator().await;
    let id = sim.track("MRKU0090522", "http://127.0.0.1:9/hook").await;

    let response = sim.delete(&format!("/references/{id}")).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["message"].is_string());

    let reference = sim.get_json(&format!("/references/{id}")).await;
    assert_eq!(reference["active"], false);
    assert_eq!(reference["deactivate_reason"], "customer_unsubscribed");
    assert_eq!(sim.get_json("/references").await, json!([]));
    let inactive = sim.get_json("/references?active=false").await;
    assert_eq!(inactive[0]["id"], id.as_str());

    // An inactive reference plays no more steps.
    let advance = sim
        .client
        .post(sim.url(&format!("/_sim/references/{id}/advance")))
        .send()
        .await
        .unwrap();
    assert_eq!(advance.status().as_u16(), 409);

    // A second unsubscribe is answered too; both are in the request log.
    assert_eq!(
        sim.delete(&format!("/references/{id}"))
            .await
            .status()
            .as_u16(),
        200
    );
    let deletes = sim
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "DELETE" && r["path"] == format!("/references/{id}"))
        .count();
    assert_eq!(deletes, 2);
}

#[tokio::test]
async fn over_the_rate_limit_the_answer_is_429_with_retry_after() {
    let sim = spawn_simulator_with(SimulatorOptions {
        extra: vec![
            "--rate-limit".into(),
            "3".into(),
            "--rate-window".into(),
            "60s".into(),
        ],
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(sim.get("/references").await.status().as_u16(), 200);
    }
    let limited = sim.get("/references").await;
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let answer: Value = limited.json().await.unwrap();
    assert!(answer["message"].is_string());
}

#[tokio::test]
async fn injected_failures_answer_the_chosen_status_then_stop() {
    let sim = spawn_simulator().await;
    let set = sim
        .client
        .post(sim.url("/_sim/faults"))
        .json(&json!({"fail_next": 2, "status": 502}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status().as_u16(), 200);
    assert_eq!(sim.get("/references").await.status().as_u16(), 502);
    assert_eq!(sim.get("/references").await.status().as_u16(), 502);
    assert_eq!(sim.get("/references").await.status().as_u16(), 200);

    let always = spawn_simulator_with(SimulatorOptions {
        extra: vec!["--fail-rate".into(), "1".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(always.get("/references").await.status().as_u16(), 503);
}

#[tokio::test]
async fn updates_are_full_snapshots_listed_newest_first() {
    let sim = spawn_simulator().await;
    // No callback URL: the journey plays, nothing is delivered.
    let id = sim
        .create_reference(json!({"container_id": "MRKU0090522", "carrier_code": "MAEU"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let answer = sim.advance(&id).await;
        assert_eq!(answer["delivery"], Value::Null);
    }
    let updates = sim.get_json(&format!("/references/{id}/updates")).await;
    let updates = updates.as_array().unwrap();
    assert_eq!(updates.len(), 3);
    let actual = |update: &Value| -> Vec<String> {
        update["payload"]["milestones"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["planned"] == false)
            .map(|m| m["description"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(actual(&updates[0]), JOURNEY[..3]);
    assert_eq!(actual(&updates[2]), JOURNEY[..1]);
    let newest = &updates[0];
    assert_eq!(newest["status"], "data_received");
    assert_eq!(newest["reference_id"], id.as_str());
    assert_eq!(newest["payload"]["reference_id"], id.as_str());
    assert_eq!(newest["payload"]["container_id"], "MRKU0090522");
    assert_eq!(newest["payload"]["carrier_scac"], "MAEU");
    assert!(newest["payload"]["destination_port"]["unlocode"].is_string());
    // Estimates for the steps to come: the ETA is planned.
    let eta = newest["payload"]["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["description"] == "Vessel arrived at destination port")
        .unwrap();
    assert_eq!(eta["planned"], true);
    assert!(eta["location"]["unlocode"].is_string());
    assert!(eta["vessel"].is_string() && eta["voyage"].is_string());
    assert_eq!(eta["mode"], "Vessel");
    let distinct: std::collections::HashSet<&str> =
        updates.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 3);

    let page = sim
        .get_json(&format!(
            "/references/{id}/updates?limit=2&page=2&include_metadata=true"
        ))
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], updates[2]["id"]);
    assert_eq!(
        page["metadata"],
        json!({"page": 2, "page_count": 2, "per_page": 2, "item_count": 3})
    );
}

#[tokio::test]
async fn references_can_be_created_at_start() {
    let sim = spawn_simulator_with(SimulatorOptions {
        extra: vec![
            "--references".into(),
            "3".into(),
            "--callback-url".into(),
            "http://127.0.0.1:9/hook".into(),
        ],
        ..Default::default()
    })
    .await;
    let listed = sim.get_json("/references").await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["callback_url"] == "http://127.0.0.1:9/hook"));
}

// ---------------------------------------------------------------------------------
// Journeys into a real bridge
// ---------------------------------------------------------------------------------

/// The description of each update event's current status, in the order written.
fn current_statuses(app: &TestApp) -> Vec<String> {
    app.updates()
        .iter()
        .map(|u| {
            u["data"]["summary"]["current_status"]["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_journey_played_on_schedule_arrives_in_the_bridge_in_order() {
    let app = spawn_app().await;
    let sim = spawn_simulator_with(SimulatorOptions {
        step_interval: "100ms".into(),
        ..Default::default()
    })
    .await;
    let id = sim.track("MRKU0090522", &app.webhook_url()).await;

    let deliveries = sim
        .wait_for_deliveries(&id, JOURNEY.len(), Duration::from_secs(30))
        .await;
    assert!(
        deliveries.iter().all(|d| status_of(d) == Some(200)),
        "{deliveries:#?}"
    );
    assert!(deliveries.iter().all(|d| d["trigger"] == "step"));

    // Every update the bridge wrote is one the simulator delivered, in order.
    let delivered: Vec<String> = deliveries
        .iter()
        .map(|d| d["update_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(app.update_ids(), delivered);
    assert_eq!(current_statuses(&app), JOURNEY);
    let last = app.updates().pop().unwrap();
    assert_eq!(last["data"]["summary"]["journey_complete"], true);
    // Every description the simulator sends is one the bridge knows.
    assert!(app
        .updates()
        .iter()
        .all(|u| u["data"]["summary"]["unknown_description_count"] == 0));
    assert_eq!(app.dead_letters(), Vec::<Value>::new());

    // The journey is over: nothing more is sent, and without auto-unsubscribe the
    // reference stays active.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.deliveries(&id).await.len(), JOURNEY.len());
    let reference = sim.get_json(&format!("/references/{id}")).await;
    assert_eq!(reference["active"], true);
    assert_eq!(reference["last_update_status"], "data_received");
    app.stop().await;
}

#[tokio::test]
async fn with_auto_unsubscribe_the_reference_ends_after_the_empty_return() {
    let app = spawn_app().await;
    let sim = spawn_simulator_with(SimulatorOptions {
        extra: vec!["--auto-unsubscribe".into()],
        ..Default::default()
    })
    .await;
    let id = sim.track("MRKU0090522", &app.webhook_url()).await;
    for _ in 0..JOURNEY.len() - 1 {
        sim.advance(&id).await;
        assert_eq!(
            sim.get_json(&format!("/references/{id}")).await["active"],
            true
        );
    }
    let last = sim.advance(&id).await;
    assert_eq!(last["milestone"], "Gate in empty return");
    assert_eq!(last["delivery"]["status"], 200);
    let reference = sim.get_json(&format!("/references/{id}")).await;
    assert_eq!(reference["active"], false);
    assert_eq!(reference["deactivate_reason"], "auto_unsubscribed");
    assert_eq!(current_statuses(&app), JOURNEY);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_to_a_bridge_that_is_down_lands_at_the_next_check() {
    let check = Duration::from_secs(2);
    let port = free_port();
    let sim = spawn_simulator_with(SimulatorOptions {
        check_interval: "2s".into(),
        ..Default::default()
    })
    .await;
    let callback = format!("http://127.0.0.1:{port}{WEBHOOK_PATH}");
    let id = sim.track("MRKU0090522", &callback).await;

    let first = sim.advance(&id).await;
    let failed = &first["delivery"];
    assert_eq!(failed["delivered"], false);
    assert_eq!(failed["status"], Value::Null);
    assert!(failed["error"].is_string());
    let reference = sim.get_json(&format!("/references/{id}")).await;
    assert_eq!(reference["last_update_status"], "webhook_failed");

    // The bridge comes up on the callback's port; nothing is sent before the check.
    let app =
        spawn_app_with(|s| s.server.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let deliveries = sim
        .wait_for_deliveries(&id, 2, Duration::from_secs(20))
        .await;
    assert_eq!(deliveries.len(), 2, "{deliveries:#?}");
    let retry = &deliveries[1];
    assert_eq!(retry["trigger"], "retry");
    assert_eq!(status_of(retry), Some(200));
    assert_eq!(retry["update_id"], failed["update_id"]);
    let waited = at(retry) - at(&deliveries[0]);
    assert!(
        waited >= time::Duration::try_from(check).unwrap() - time::Duration::milliseconds(50),
        "retried after {waited}, before the check interval of {check:?}"
    );
    assert_eq!(app.update_ids(), [failed["update_id"].as_str().unwrap()]);
    let reference = sim.get_json(&format!("/references/{id}")).await;
    assert_eq!(reference["last_update_status"], "data_received");

    // Delivered: no further attempt at later checks.
    tokio::time::sleep(check + Duration::from_millis(500)).await;
    assert_eq!(sim.deliveries(&id).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_the_bridge_refuses_is_retried_with_the_latest_snapshot_at_the_check() {
    let app = spawn_app().await;
    let sim = spawn_simulator_with(SimulatorOptions {
        secret: Some("not-the-bridge-secret".into()),
        check_interval: "1s".into(),
        ..Default::default()
    })
    .await;
    let id = sim.track("MRKU0090522", &app.webhook_url()).await;
    let first = sim.advance(&id).await;
    assert_eq!(first["delivery"]["status"], 401);
    let second = sim.advance(&id).await;
    assert_eq!(second["delivery"]["status"], 401);

    // The check re-sends the newest update only (the full snapshot), and again fails.
    let deliveries = sim
        .wait_for_deliveries(&id, 3, Duration::from_secs(20))
        .await;
    let retry = &deliveries[2];
    assert_eq!(retry["trigger"], "retry");
    assert_eq!(status_of(retry), Some(401));
    assert_eq!(retry["update_id"], second["update_id"]);
    assert!(app.updates().is_empty());
    assert_eq!(
        sim.get_json(&format!("/references/{id}")).await["last_update_status"],
        "webhook_failed"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_check_can_be_run_on_request() {
    let app = spawn_app().await;
    let sim = spawn_simulator_with(SimulatorOptions {
        secret: Some("not-the-bridge-secret".into()),
        ..Default::default()
    })
    .await;
    let id = sim.track("MRKU0090522", &app.webhook_url()).await;
    let first = sim.advance(&id).await;
    assert_eq!(first["delivery"]["status"], 401);

    let check = |id: String| {
        let sim = &sim;
        async move {
            let response = sim
                .client
                .post(sim.url(&format!("/_sim/references/{id}/check")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let retried = check(id.clone()).await;
    assert_eq!(retried["delivery"]["trigger"], "retry");
    assert_eq!(retried["delivery"]["update_id"], first["update_id"]);
    assert_eq!(retried["delivery"]["status"], 401);
    // With the check interval at 12 hours, that was the only retry.
    assert_eq!(sim.deliveries(&id).await.len(), 2);

    let state: Value = sim
        .client
        .get(sim.url(&format!("/_sim/references/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["steps_played"], 1);
    assert_eq!(state["last_milestone"], "Gate out empty");
    assert!(state["retry_in_seconds"].as_f64().unwrap() > 3600.0);
    app.stop().await;
}

// ---------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn load_in_journey_mode_repeats_references_and_every_accepted_update_is_written() {
    let app = spawn_app().await;
    let run = run_load(
        &app.webhook_url(),
        "2s",
        &["--mode", "journey", "--concurrency", "4"],
    )
    .await;
    let report = &run.report;
    assert_eq!(report["mode"], "journey");
    assert_eq!(report["updates_per_journey"], 6);
    assert!(
        report["journeys_completed"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["non_2xx"], 0, "{report}");
    assert_eq!(report["transport_errors"], 0, "{report}");
    assert_eq!(
        report["accepted"].as_u64().unwrap(),
        run.accepted_ids.len() as u64
    );
    assert!(!run.accepted_ids.is_empty());

    let raw = app.raw_records();
    let written: std::collections::HashSet<&str> = raw
        .iter()
        .map(|r| r["delivery_id"].as_str().unwrap())
        .collect();
    let missing: Vec<&String> = run
        .accepted_ids
        .iter()
        .filter(|id| !written.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "accepted but not in raw.jsonl: {missing:?}"
    );

    // Several updates per reference: fewer references than updates.
    let references: std::collections::HashSet<String> = raw
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&decode_base64(&r["body_base64"])).unwrap();
            body["reference_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        references.len() < raw.len(),
        "{} references for {} updates",
        references.len(),
        raw.len()
    );
    app.stop().await;
}
