//! The Vizion API client against the simulated Vizion, over real sockets: every
//! endpoint, pagination, and the error answers a user would meet.

use serde_json::{json, Value};
use vizion_bridge::secret::InlineSecret;
use vizion_bridge::vizion::api::{ApiError, NewReference, ReferenceFilter, Subscribe, VizionApi};

use crate::helpers::*;

fn client(sim: &Simulator) -> VizionApi {
    VizionApi::new(&api_config(sim)).unwrap()
}

async fn count_requests(sim: &Simulator, method: &str, path: &str) -> usize {
    sim.requests()
        .await
        .iter()
        .filter(|r| r["method"] == method && r["path"] == path)
        .count()
}

#[tokio::test]
async fn references_are_created_read_listed_and_unsubscribed() {
    let sim = spawn_simulator().await;
    let api = client(&sim);
    let callback = Some("https://bridge.example.com/webhooks/vizion".to_owned());

    let by_carrier = api
        .create_reference(&NewReference::new(
            Subscribe::Container {
                container_id: "MSKU1234565".into(),
                carrier_code: "MAEU".into(),
            },
            callback.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(
        by_carrier.reference.container_id.as_deref(),
        Some("MSKU1234565")
    );
    assert_eq!(by_carrier.reference.carrier(), Some("MAEU"));
    assert_eq!(by_carrier.reference.callback_url, callback);

    let by_aci = api
        .create_reference(&NewReference::new(
            Subscribe::AutoCarrier {
                container_id: "OOCU7821056".into(),
            },
            callback.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(by_aci.reference.carrier(), Some("OOLU"));

    let by_bol = api
        .create_reference(&NewReference::new(
            Subscribe::BillOfLading {
                bill_of_lading: "MAEU255221188".into(),
                carrier_code: "MAEU".into(),
                container_id: None,
            },
            callback.clone(),
        ))
        .await
        .unwrap();
    let children = api
        .list_all_references(
            &ReferenceFilter {
                bill_of_lading: Some("MAEU255221188".into()),
                ..ReferenceFilter::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    let child_parents: Vec<_> = children
        .iter()
        .filter(|r| r.container_id.is_some())
        .map(|r| r.parent_reference_id.clone())
        .collect();
    assert!(child_parents.len() >= 2, "{children:?}");
    assert!(child_parents
        .iter()
        .all(|p| p.as_deref() == Some(by_bol.reference.id.as_str())));

    let read = api.get_reference(&by_carrier.reference.id).await.unwrap();
    assert_eq!(read.id, by_carrier.reference.id);
    assert!(read.is_active());

    let unsubscribed = api.unsubscribe(&by_carrier.reference.id).await.unwrap();
    assert!(unsubscribed.message.is_some());
    let read = api.get_reference(&by_carrier.reference.id).await.unwrap();
    assert!(!read.is_active());
    let inactive = api
        .list_all_references(
            &ReferenceFilter {
                active: Some(false),
                ..ReferenceFilter::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    assert!(inactive.iter().any(|r| r.id == by_carrier.reference.id));
}

#[tokio::test]
async fn listings_read_every_page() {
    let sim = spawn_simulator().await;
    let mut config = api_config(&sim);
    config.page_size = 2;
    let api = VizionApi::new(&config).unwrap();
    let mut ids = Vec::new();
    for container in [
        "MSKU0000001",
        "MSKU0000002",
        "MSKU0000003",
        "MSKU0000004",
        "MSKU0000005",
    ] {
        ids.push(sim.track(container, "http://127.0.0.1:9/none").await);
    }
    let mut pages = 0;
    let all = api
        .list_all_references(&ReferenceFilter::default(), |_| pages += 1)
        .await
        .unwrap();
    assert_eq!(pages, 3);
    let mut listed: Vec<_> = all.iter().map(|r| r.id.clone()).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);

    // Three steps of one journey: three updates over two pages, oldest first.
    let reference = &ids[0];
    let mut played = Vec::new();
    for _ in 0..3 {
        let step: Value = sim.advance(reference).await;
        played.push(step["update_id"].as_str().unwrap().to_owned());
    }
    let (updates, peer) = api.list_updates(reference).await.unwrap();
    assert!(peer.is_some_and(|p| p.ip().is_loopback()));
    let got: Vec<String> = updates
        .iter()
        .map(|u| {
            serde_json::from_str::<Value>(u.get()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, played);
    assert_eq!(
        count_requests(&sim, "GET", &format!("/references/{reference}/updates")).await,
        2
    );
}

#[tokio::test]
async fn errors_carry_vizions_status_and_message() {
    let sim = spawn_simulator().await;

    let mut wrong_key = api_config(&sim);
    wrong_key.api_key = Some(InlineSecret::new("not-the-key"));
    let error = VizionApi::new(&wrong_key)
        .unwrap()
        .get_reference("anything")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
    assert!(!error.to_string().contains("not-the-key"));

    let api = client(&sim);
    let error = api
        .get_reference("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert!(error.to_string().contains("404"), "{error}");

    let error = api
        .create_reference(&NewReference::new(
            Subscribe::Container {
                container_id: "not-a-container".into(),
                carrier_code: "MAEU".into(),
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(422), "{error}");
    let ApiError::Status { message, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(!message.is_empty());
    assert_eq!(count_requests(&sim, "POST", "/references").await, 1);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried() {
    let sim = spawn_simulator_with(SimulatorOptions {
        extra: vec![
            "--rate-limit".into(),
            "2".into(),
            "--rate-window".into(),
            "1s".into(),
        ],
        ..SimulatorOptions::default()
    })
    .await;
    let api = client(&sim);
    let id = sim.track("MSKU7654321", "http://127.0.0.1:9/none").await;

    // Over the limit: answered 429 with Retry-After, retried after it, and served.
    for _ in 0..5 {
        assert_eq!(api.get_reference(&id).await.unwrap().id, id);
    }
    let path = format!("/references/{id}");
    let statuses: Vec<u64> = sim
        .requests()
        .await
        .iter()
        .filter(|r| r["path"] == path.as_str())
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5);

    // Two injected 503s: a read is retried through them.
    let faults = sim
        .client
        .post(sim.url("/_sim/faults"))
        .json(&json!({"fail_next": 2, "status": 503}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status().as_u16(), 200);
    assert_eq!(api.get_reference(&id).await.unwrap().id, id);

    // A creation is not repeated after a 5xx: Vizion may have created it already.
    sim.client
        .post(sim.url("/_sim/faults"))
        .json(&json!({"fail_next": 1, "status": 503}))
        .send()
        .await
        .unwrap();
    let before = count_requests(&sim, "POST", "/references").await;
    let error = api
        .create_reference(&NewReference::new(
            Subscribe::Container {
                container_id: "MSKU1111118".into(),
                carrier_code: "MAEU".into(),
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503), "{error}");
    assert_eq!(
        count_requests(&sim, "POST", "/references").await,
        before + 1
    );
}
