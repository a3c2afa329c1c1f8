//! The change derivation (`events::changes`): one test per rule on hand-made journeys,
//! then properties over generated journeys delivered with resends, late stale updates
//! and failed attempts that are retried.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use vizion_bridge::events::changes::{self, Derived, MilestoneState, DEFAULT_ETA_CHANGE_THRESHOLD};
use vizion_bridge::events::{ChangeEvent, CloudEvent, DeliveryMode, EventContext};
use vizion_bridge::vizion::{self, Inbound, Update};

const RECEIVED_AT: OffsetDateTime = datetime!(2024-11-01 12:00:00 UTC);
const HOUR: i64 = 3600;

/// The steps of the journey: description, UN/LOCODE, place name, vessel slot (0: first
/// vessel, 1: the vessel after transshipment, none: not by vessel), base time in hours
/// after departure from the origin.
const STEPS: [(&str, &str, &str, Option<usize>, i64); 12] = [
    ("Gate out empty", "KRPUS", "BUSAN", None, -72),
    ("Gate in full", "KRPUS", "BUSAN", None, -48),
    (
        "Loaded on vessel at origin port",
        "KRPUS",
        "BUSAN",
        Some(0),
        -12,
    ),
    (
        "Vessel departure from origin port",
        "KRPUS",
        "BUSAN",
        Some(0),
        0,
    ),
    (
        "Vessel arrival at transshipment port",
        "SGSIN",
        "SINGAPORE",
        Some(0),
        120,
    ),
    (
        "Discharged transshipment",
        "SGSIN",
        "SINGAPORE",
        Some(0),
        130,
    ),
    ("Loaded transshipment", "SGSIN", "SINGAPORE", Some(1), 160),
    (
        "Vessel arrived at destination port",
        "USLAX",
        "LOS ANGELES",
        Some(1),
        480,
    ),
    (
        "Discharged from vessel",
        "USLAX",
        "LOS ANGELES",
        Some(1),
        490,
    ),
    (
        "Loaded on rail at destination port",
        "USLAX",
        "LOS ANGELES",
        None,
        520,
    ),
    (
        "Rail arrival at inland destination",
        "USCHI",
        "CHICAGO",
        None,
        600,
    ),
    ("Gate in empty return", "USCHI", "CHICAGO", None, 700),
];
const DEST_PORT_ARRIVAL: usize = 7;
const INLAND_ARRIVAL: usize = 10;

/// One snapshot of the journey as Vizion would send it.
#[derive(Debug, Clone)]
struct Snapshot {
    /// Position in the journey; `updated_at` grows with it.
    index: usize,
    /// Steps listed.
    listed: usize,
    /// Steps that happened (actuals); the others listed are estimates.
    done: usize,
    /// How far each estimate is from the step's base time, in minutes.
    drift: Vec<i64>,
    /// Name of the vessel after transshipment.
    second_vessel: &'static str,
    /// Whether locations of estimates carry their details or only the UN/LOCODE.
    detailed: bool,
}

const DEPARTURE: OffsetDateTime = datetime!(2024-03-01 00:00:00 UTC);

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

impl Snapshot {
    fn updated_at(&self) -> OffsetDateTime {
        DEPARTURE - time::Duration::hours(96) + time::Duration::hours(self.index as i64 * 6)
    }

    fn step_time(&self, step: usize) -> OffsetDateTime {
        let base = DEPARTURE + time::Duration::hours(STEPS[step].4);
        if step < self.done {
            base
        } else {
            base + time::Duration::minutes(self.drift[step])
        }
    }

    fn body(&self) -> Vec<u8> {
        let milestones: Vec<Value> = (0..self.listed)
            .map(|i| {
                let (description, code, name, vessel, _) = STEPS[i];
                let actual = i < self.done;
                let location = if actual || self.detailed {
                    json!({"name": name, "city": name, "country": "X", "unlocode": code})
                } else {
                    json!({"unlocode": code})
                };
                let (vessel, voyage) = match vessel {
                    Some(0) => (json!("EVER GIVEN"), json!("001E")),
                    Some(_) => (json!(self.second_vessel), json!("7W")),
                    None => (Value::Null, Value::Null),
                };
                json!({
                    "description": description,
                    "timestamp": rfc3339(self.step_time(i)),
                    "planned": !actual,
                    "location": location,
                    "vessel": vessel,
                    "voyage": voyage,
                })
            })
            .collect();
        let body = json!({
            "id": format!("update-{}-{}", self.index, self.done),
            "status": "data_received",
            "reference_id": "ref-1",
            "updated_at": rfc3339(self.updated_at()),
            "payload": {
                "reference_id": "ref-1",
                "container_id": "MSCU1234567",
                "carrier_scac": "MSCU",
                "bill_of_lading": null,
                "origin_port": {"name": "BUSAN", "unlocode": "KRPUS"},
                "destination_port": {"name": "LOS ANGELES", "unlocode": "USLAX"},
                "inland_destination": {"name": "CHICAGO", "unlocode": "USCHI"},
                "milestones": milestones,
            }
        });
        serde_json::to_vec(&body).unwrap()
    }

    fn update(&self) -> Update {
        parse(&self.body())
    }
}

fn parse(body: &[u8]) -> Update {
    match vizion::parse(body) {
        Ok(Inbound::Update(u)) => u,
        other => panic!("not an update: {other:?}"),
    }
}

fn derive(previous: Option<&MilestoneState>, update: &Update, threshold: Duration) -> Derived {
    changes::derive(
        previous,
        update,
        RECEIVED_AT,
        DeliveryMode::Webhook,
        &EventContext::default(),
        threshold,
    )
}

fn data(event: &CloudEvent) -> Value {
    serde_json::from_slice(event.data()).unwrap()
}

fn of_type<'a>(events: &'a [ChangeEvent], suffix: &str) -> Vec<&'a CloudEvent> {
    events
        .iter()
        .map(|c| &c.event)
        .filter(|e| e.event_type().ends_with(suffix))
        .collect()
}

/// The content of a milestone.changed event without what depends on the delivery or
/// the previous state.
fn content(event: &CloudEvent) -> Value {
    let mut d = data(event);
    let o = d.as_object_mut().unwrap();
    for key in ["update_id", "change", "previous", "sequence"] {
        o.remove(key);
    }
    d
}

fn first_snapshot() -> Snapshot {
    Snapshot {
        index: 0,
        listed: 8,
        done: 2,
        drift: vec![0; STEPS.len()],
        second_vessel: "MSC ANNA",
        detailed: false,
    }
}

// ---- One test per rule ----

#[test]
fn without_a_previous_state_every_milestone_is_new() {
    let s = first_snapshot();
    let d = derive(None, &s.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    assert!(!d.stale);
    let changed = of_type(&d.events, ".milestone.changed.v1");
    assert_eq!(changed.len(), 8);
    assert_eq!(d.events.len(), 8, "a first estimate is not an ETA change");
    for (i, e) in changed.iter().enumerate() {
        let data = data(e);
        assert_eq!(data["change"], "new");
        assert!(data.get("previous").is_none());
        assert_eq!(data["sequence"], i);
        assert_eq!(data["description"], STEPS[i].0);
        assert_eq!(
            e.event_type(),
            "com.vizionapi.tracking.milestone.changed.v1"
        );
        assert_eq!(e.extension("partitionkey"), Some("ref-1"));
    }
    assert_eq!(d.next_state.milestones.len(), 8);
    assert!(d.next_state.port_eta.is_some());
}

#[test]
fn the_same_update_again_changes_nothing_and_ids_are_stable() {
    let u = first_snapshot().update();
    let first = derive(None, &u, DEFAULT_ETA_CHANGE_THRESHOLD);
    let again = derive(None, &u, DEFAULT_ETA_CHANGE_THRESHOLD);
    assert_eq!(first, again, "deterministic");
    let resend = derive(Some(&first.next_state), &u, DEFAULT_ETA_CHANGE_THRESHOLD);
    assert!(resend.events.is_empty());
    assert_eq!(resend.next_state, first.next_state);
    let polled = changes::derive(
        None,
        &u,
        RECEIVED_AT + time::Duration::hours(5),
        DeliveryMode::Poll,
        &EventContext::default(),
        DEFAULT_ETA_CHANGE_THRESHOLD,
    );
    let ids = |d: &Derived| {
        d.events
            .iter()
            .map(|c| c.event.id().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&polled),
        ids(&first),
        "ids do not depend on the delivery"
    );
}

#[test]
fn an_estimate_turning_actual_is_an_update_with_the_previous_classifier() {
    let s = first_snapshot();
    let before = derive(None, &s.update(), DEFAULT_ETA_CHANGE_THRESHOLD).next_state;
    let later = Snapshot {
        index: 1,
        done: 3,
        ..s
    };
    let d = derive(Some(&before), &later.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    let changed = of_type(&d.events, ".milestone.changed.v1");
    assert_eq!(changed.len(), 1, "{:#?}", d.events);
    let data = data(changed[0]);
    assert_eq!(data["change"], "updated");
    assert_eq!(data["description"], STEPS[2].0);
    assert_eq!(data["event_classifier"], "ACT");
    // The location details came with the actual: reported too.
    assert_eq!(
        data["previous"],
        json!({"event_classifier": "EST", "location": {"name": null, "city": null,
               "state": null, "country": null, "unlocode": "KRPUS", "facility": null,
               "timezone": null}})
    );
}

#[test]
fn a_moved_time_a_new_vessel_and_filled_in_locations_are_updates() {
    let s = first_snapshot();
    let before = derive(None, &s.update(), DEFAULT_ETA_CHANGE_THRESHOLD).next_state;
    let mut drift = s.drift.clone();
    drift[5] = 30;
    let later = Snapshot {
        index: 1,
        drift,
        second_vessel: "MSC OSCAR",
        detailed: true,
        ..s
    };
    let d = derive(Some(&before), &later.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    let by_step: BTreeMap<u64, Value> = of_type(&d.events, ".milestone.changed.v1")
        .into_iter()
        .map(|e| {
            let d = data(e);
            (d["sequence"].as_u64().unwrap(), d["previous"].clone())
        })
        .collect();
    // Steps 2..8 are estimates whose location details were filled in.
    assert_eq!(
        by_step.keys().copied().collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6, 7]
    );
    assert!(by_step[&5]["occurred_at"].is_string());
    assert_eq!(
        by_step[&6]["vessel"],
        json!({"name": "MSC ANNA", "imo": null})
    );
    assert!(by_step[&6].get("occurred_at").is_none());
    assert!(by_step[&3]["location"].is_object());
    assert!(by_step[&3].get("vessel").is_none());
}

#[test]
fn eta_changes_only_from_the_threshold_on_and_not_for_the_first_estimate() {
    let s = first_snapshot();
    let threshold = Duration::from_secs(HOUR as u64);
    let first = derive(None, &s.update(), threshold);
    assert!(of_type(&first.events, ".eta_changed.v1").is_empty());

    // 59 minutes later: not yet.
    let mut drift = s.drift.clone();
    drift[DEST_PORT_ARRIVAL] = 59;
    let small = Snapshot {
        index: 1,
        drift: drift.clone(),
        ..s.clone()
    };
    let d = derive(Some(&first.next_state), &small.update(), threshold);
    assert!(of_type(&d.events, ".eta_changed.v1").is_empty());
    assert_eq!(d.next_state.port_eta, first.next_state.port_eta);

    // Another 2 minutes: 61 minutes from the estimate last announced.
    drift[DEST_PORT_ARRIVAL] = 61;
    let moved = Snapshot {
        index: 2,
        drift,
        ..s
    };
    let d = derive(Some(&d.next_state), &moved.update(), threshold);
    let etas = of_type(&d.events, ".eta_changed.v1");
    assert_eq!(etas.len(), 1);
    let data = data(etas[0]);
    assert_eq!(data["destination"], "port");
    assert_eq!(data["difference_seconds"], 61 * 60);
    assert_eq!(data["previous_eta"], "2024-03-21T00:00:00Z");
    assert_eq!(data["eta"], "2024-03-21T01:01:00Z");
    assert_eq!(
        d.next_state.port_eta.as_deref(),
        Some("2024-03-21T01:01:00Z")
    );
}

#[test]
fn an_unchanged_eta_is_no_change_whatever_the_threshold() {
    let s = first_snapshot();
    let first = derive(None, &s.update(), Duration::ZERO);
    let later = Snapshot { index: 1, ..s };
    let d = derive(Some(&first.next_state), &later.update(), Duration::ZERO);
    assert!(d.events.is_empty(), "{:#?}", d.events);
}

#[test]
fn the_inland_eta_is_tracked_separately() {
    let s = Snapshot {
        listed: 12,
        ..first_snapshot()
    };
    let first = derive(None, &s.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    assert!(first.next_state.inland_eta.is_some());
    let mut drift = s.drift.clone();
    drift[INLAND_ARRIVAL] = -120;
    let later = Snapshot {
        index: 1,
        drift,
        ..s
    };
    let d = derive(
        Some(&first.next_state),
        &later.update(),
        DEFAULT_ETA_CHANGE_THRESHOLD,
    );
    let etas = of_type(&d.events, ".eta_changed.v1");
    assert_eq!(etas.len(), 1);
    assert_eq!(data(etas[0])["destination"], "inland");
    assert_eq!(data(etas[0])["difference_seconds"], -2 * HOUR);
}

#[test]
fn journey_completed_is_published_once() {
    let s = Snapshot {
        listed: 12,
        done: 12,
        ..first_snapshot()
    };
    let d = derive(None, &s.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    let done = of_type(&d.events, ".journey_completed.v1");
    assert_eq!(done.len(), 1);
    assert_eq!(
        d.events.last().unwrap().event.event_type(),
        done[0].event_type()
    );
    assert_eq!(data(done[0])["completed_at"], "2024-03-30T04:00:00Z");
    assert!(d.next_state.journey_completed);
    let later = Snapshot { index: 1, ..s };
    let again = derive(
        Some(&d.next_state),
        &later.update(),
        DEFAULT_ETA_CHANGE_THRESHOLD,
    );
    assert!(of_type(&again.events, ".journey_completed.v1").is_empty());
    let not_yet = Snapshot {
        done: 11,
        ..first_snapshot()
    };
    let d = derive(None, &not_yet.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    assert!(of_type(&d.events, ".journey_completed.v1").is_empty());
    assert!(!d.next_state.journey_completed);
}

#[test]
fn a_stale_update_derives_nothing_and_keeps_the_state() {
    let old = first_snapshot();
    let new = Snapshot {
        index: 3,
        done: 4,
        ..old.clone()
    };
    let state = derive(None, &new.update(), DEFAULT_ETA_CHANGE_THRESHOLD).next_state;
    let d = derive(Some(&state), &old.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    assert!(d.stale);
    assert!(d.events.is_empty());
    assert_eq!(d.next_state, state);
    assert!(changes::is_stale(Some(&state), &old.update()));
    assert!(!changes::is_stale(None, &old.update()));
}

#[test]
fn an_update_without_updated_at_is_never_stale() {
    let mut body: Value = serde_json::from_slice(&first_snapshot().body()).unwrap();
    body.as_object_mut().unwrap().remove("updated_at");
    let u = parse(&serde_json::to_vec(&body).unwrap());
    let newer = Snapshot {
        index: 5,
        ..first_snapshot()
    };
    let state = derive(None, &newer.update(), DEFAULT_ETA_CHANGE_THRESHOLD).next_state;
    let d = derive(Some(&state), &u, DEFAULT_ETA_CHANGE_THRESHOLD);
    assert!(!d.stale);
    assert_eq!(
        d.next_state.updated_at, state.updated_at,
        "the newest time stays"
    );
}

#[test]
fn a_milestone_moving_back_is_a_change_of_its_own() {
    let a = first_snapshot();
    let mut drift = a.drift.clone();
    drift[5] = 90;
    let b = Snapshot {
        index: 1,
        drift,
        ..a.clone()
    };
    let a2 = Snapshot {
        index: 2,
        ..a.clone()
    };
    let s1 = derive(None, &a.update(), DEFAULT_ETA_CHANGE_THRESHOLD);
    let s2 = derive(
        Some(&s1.next_state),
        &b.update(),
        DEFAULT_ETA_CHANGE_THRESHOLD,
    );
    let s3 = derive(
        Some(&s2.next_state),
        &a2.update(),
        DEFAULT_ETA_CHANGE_THRESHOLD,
    );
    let ids: Vec<&str> = [&s1, &s2, &s3]
        .iter()
        .flat_map(|d| d.events.iter().map(|c| c.event.id()))
        .collect();
    assert_eq!(s3.events.len(), 1);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
}

#[test]
fn the_state_round_trips_through_json() {
    let s = Snapshot {
        listed: 12,
        done: 12,
        ..first_snapshot()
    };
    let state = derive(None, &s.update(), DEFAULT_ETA_CHANGE_THRESHOLD).next_state;
    let json = serde_json::to_vec(&state).unwrap();
    let back: MilestoneState = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, state);
    assert_eq!(back.version, changes::STATE_VERSION);
}

// ---- Properties over generated journeys ----

/// A journey: snapshots in `updated_at` order, each listing at least what the one
/// before listed, with at least as many actuals.
fn journey() -> impl Strategy<Value = Vec<Snapshot>> {
    let step = (
        0usize..=3,
        0usize..=2,
        prop::collection::vec(
            prop::sample::select(vec![-300i64, -90, -30, 0, 20, 45, 60, 75, 240]),
            STEPS.len(),
        ),
        any::<bool>(),
        any::<bool>(),
    );
    (1usize..=7, prop::collection::vec(step, 2..8)).prop_map(|(start, steps)| {
        let mut listed = start;
        let mut done = 0;
        let mut detailed = false;
        let mut second_vessel = "MSC ANNA";
        steps
            .into_iter()
            .enumerate()
            .map(|(index, (grow, progress, drift, detail, swap))| {
                listed = (listed + grow).min(STEPS.len());
                done = (done + progress).min(listed);
                detailed |= detail;
                if swap {
                    second_vessel = "MSC OSCAR";
                }
                Snapshot {
                    index,
                    listed,
                    done,
                    drift,
                    second_vessel,
                    detailed,
                }
            })
            .collect()
    })
}

#[derive(Debug, Clone, Copy)]
enum Attempt {
    Stored,
    /// The write failed (a 503): the events are published or not, the state is not
    /// stored, and the sender tries again.
    FailedThenRetried,
}

/// Each snapshot in order, with resends and late deliveries of earlier ones inserted,
/// and some attempts failing once.
fn schedule(len: usize) -> impl Strategy<Value = Vec<(usize, Attempt)>> {
    let extra = prop::collection::vec((0..len, 0..=len, any::<bool>()), 0..6);
    let fails = prop::collection::vec(any::<bool>(), len);
    (extra, fails, 0..len).prop_map(move |(extra, fails, late)| {
        let mut order: Vec<(usize, Attempt)> = (0..len)
            .map(|i| {
                let a = if fails[i] {
                    Attempt::FailedThenRetried
                } else {
                    Attempt::Stored
                };
                (i, a)
            })
            .collect();
        for (snapshot, at, fail) in extra {
            let a = if fail {
                Attempt::FailedThenRetried
            } else {
                Attempt::Stored
            };
            order.insert(at.min(order.len()), (snapshot, a));
        }
        // An older snapshot arriving after the newest.
        order.push((late, Attempt::Stored));
        order
    })
}

fn journey_and_schedule() -> impl Strategy<Value = (Vec<Snapshot>, Vec<(usize, Attempt)>, Duration)>
{
    let threshold =
        prop::sample::select(vec![30u64 * 60, 3600, 3 * 3600]).prop_map(Duration::from_secs);
    (journey(), threshold).prop_flat_map(|(j, threshold)| {
        let len = j.len();
        (Just(j), schedule(len), Just(threshold))
    })
}

fn eta_seconds(text: &str) -> i64 {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn changes_survive_resends_stale_updates_and_retries(
        (journey, order, threshold) in journey_and_schedule()
    ) {
        let updates: Vec<Update> = journey.iter().map(Snapshot::update).collect();
        let mut state: Option<MilestoneState> = None;
        let mut newest_seen: Option<usize> = None;
        let mut published: Vec<ChangeEvent> = Vec::new();
        for &(i, attempt) in &order {
            let before = state.clone();
            let d = derive(state.as_ref(), &updates[i], threshold);
            if let Attempt::FailedThenRetried = attempt {
                let retry = derive(state.as_ref(), &updates[i], threshold);
                prop_assert_eq!(&retry, &d, "a retry derives the same events");
            }
            // (b) an older snapshot publishes nothing and leaves the state alone.
            let older = newest_seen.is_some_and(|n| i < n);
            prop_assert_eq!(d.stale, older);
            if older {
                prop_assert!(d.events.is_empty());
                prop_assert_eq!(Some(&d.next_state), before.as_ref());
            }
            // (e) an ETA change moves by the threshold at least.
            for e in of_type(&d.events, ".eta_changed.v1") {
                let data = data(e);
                let moved = eta_seconds(data["eta"].as_str().unwrap())
                    - eta_seconds(data["previous_eta"].as_str().unwrap());
                prop_assert_eq!(data["difference_seconds"].as_i64(), Some(moved));
                prop_assert!(moved.unsigned_abs() >= threshold.as_secs(), "{moved}s");
            }
            published.extend(d.events);
            state = Some(d.next_state);
            newest_seen = newest_seen.max(Some(i));
        }
        let last = journey.len() - 1;
        let fresh = derive(None, &updates[last], threshold);
        let state = state.unwrap();

        // (a) no change is published twice.
        let mut ids = HashSet::new();
        for e in published.iter().map(|c| &c.event) {
            prop_assert!(ids.insert(e.id().to_owned()), "{} published twice: {}", e.id(), String::from_utf8_lossy(e.data()));
        }
        // (c) every milestone of the newest snapshot was published in its newest content.
        for expected in of_type(&fresh.events, ".milestone.changed.v1") {
            let id = data(expected)["milestone_id"].clone();
            let last_published = of_type(&published, ".milestone.changed.v1")
                .into_iter()
                .rfind(|e| data(e)["milestone_id"] == id);
            prop_assert!(last_published.is_some(), "{} never published", id);
            prop_assert_eq!(content(last_published.unwrap()), content(expected));
        }
        // (d) the final state is the state of the newest snapshot alone; the estimates
        // kept are the ones last announced, within the threshold of the newest.
        prop_assert_eq!(&state.milestones, &fresh.next_state.milestones);
        prop_assert_eq!(&state.updated_at, &fresh.next_state.updated_at);
        prop_assert_eq!(state.journey_completed, fresh.next_state.journey_completed);
        for (kept, newest) in [
            (&state.port_eta, &fresh.next_state.port_eta),
            (&state.inland_eta, &fresh.next_state.inland_eta),
        ] {
            prop_assert_eq!(kept.is_some(), newest.is_some());
            if let (Some(kept), Some(newest)) = (kept, newest) {
                let apart = (eta_seconds(kept) - eta_seconds(newest)).unsigned_abs();
                prop_assert!(apart < threshold.as_secs(), "{kept} vs {newest}");
            }
        }
        // (e) journey_completed at most once, and once when the journey completed.
        let completed = of_type(&published, ".journey_completed.v1").len();
        prop_assert!(completed <= 1);
        prop_assert_eq!(completed == 1, fresh.next_state.journey_completed);
    }
}
