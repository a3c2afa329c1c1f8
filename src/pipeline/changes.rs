//! Which events an update is published with (`events.milestones`, `events.publish_raw`)
//! and, in `changes` mode, the reference state the change events are derived from.
//!
//! In `changes` mode an update of a reference is taken in turn with the other updates of
//! that reference in this process: its state is read, the change events derived from it
//! and delivered, and only once they are durable (every sink confirmed them, or the
//! spool fsync'd them) is the next state committed, on the version that was read. A
//! failed delivery commits nothing, so that the retry derives, and publishes, the same
//! changes (with the same ids). Between replicas the commit's compare-and-set decides:
//! when another replica committed first, this state is not stored and the next update
//! derives from the newer one, so a change may be published twice (at least once),
//! never not at all. A state that cannot be read is taken as none: every milestone is
//! published as `new` again.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::delivery::{DeliveryError, KeyLocks, Turn};
use crate::events::changes::{self, MilestoneState, STATE_VERSION};
use crate::events::{
    ChangeEvent, DeliveryMode, EventContext, EventsConfig, MilestoneEvents, MilestoneMode,
    NormalizedBatch, Publish,
};
use crate::store::state::{Commit, StateStore, Version};
use crate::telemetry::events::{StateNotCommitted, StateUnavailable};
use crate::telemetry::Metrics;
use crate::vizion::Update;

/// How updates are published. Cheap to clone. The default is every milestone event
/// and the raw body, without any state.
#[derive(Clone)]
pub struct Publishing {
    milestones: Milestones,
    raw: bool,
}

#[derive(Clone)]
enum Milestones {
    All,
    Off,
    Changes(Arc<Tracked>),
}

/// What `changes` mode keeps.
struct Tracked {
    store: StateStore,
    /// One update of a reference at a time, from reading its state to committing it.
    turns: KeyLocks,
    /// How long an update waits for its reference's turn before it is refused (503),
    /// so that updates of one reference do not pile up behind a sink that is down.
    turn_wait: Duration,
    threshold: Duration,
    metrics: Metrics,
}

impl Default for Publishing {
    fn default() -> Self {
        Self {
            milestones: Milestones::All,
            raw: true,
        }
    }
}

impl Publishing {
    /// As `config` says; `store` is where `changes` mode keeps the states (unused in
    /// the other modes), and `turn_wait` how long an update waits at most while an
    /// earlier update of its reference is being delivered.
    pub fn new(
        config: &EventsConfig,
        store: Option<StateStore>,
        turn_wait: Duration,
        metrics: &Metrics,
    ) -> Self {
        let milestones = match (config.milestones, store) {
            (MilestoneMode::All, _) => Milestones::All,
            (MilestoneMode::Off, _) => Milestones::Off,
            (MilestoneMode::Changes, Some(store)) => Milestones::Changes(Arc::new(Tracked {
                store,
                turns: KeyLocks::default(),
                turn_wait,
                threshold: config.eta_change_threshold,
                metrics: metrics.clone(),
            })),
            (MilestoneMode::Changes, None) => {
                panic!("`events.milestones = \"changes\"` needs a state store")
            }
        };
        Self {
            milestones,
            raw: config.publish_raw,
        }
    }

    /// The state store, in `changes` mode.
    pub fn state(&self) -> Option<&StateStore> {
        match &self.milestones {
            Milestones::Changes(tracked) => Some(&tracked.store),
            _ => None,
        }
    }

    /// What `batch` (made from `update`, if it is a reference update) is published
    /// with. In `changes` mode this takes the reference's turn and reads its state; the
    /// returned [`Prepared`] holds the turn until [`Prepared::commit`] (or until
    /// dropped, when the delivery failed: nothing is committed then) when it has a state
    /// to commit. An update that waited `turn_wait` for its turn in vain is refused.
    pub(super) async fn prepare(
        &self,
        update: Option<&Update>,
        batch: &mut NormalizedBatch,
        received_at: OffsetDateTime,
        arrival: DeliveryMode,
        ctx: &EventContext,
    ) -> Result<Prepared, DeliveryError> {
        let milestones = match (&self.milestones, update) {
            (Milestones::All, _) | (Milestones::Changes(_), None) => MilestoneEvents::Snapshots,
            (Milestones::Off, _) => MilestoneEvents::Changes(Vec::new()),
            (Milestones::Changes(tracked), Some(update)) => {
                let (changes, pending) = tracked
                    .derive(update, batch, received_at, arrival, ctx)
                    .await?;
                return Ok(Prepared {
                    publish: Publish {
                        milestones: MilestoneEvents::Changes(changes),
                        raw: self.raw,
                    },
                    pending,
                });
            }
        };
        Ok(Prepared {
            publish: Publish {
                milestones,
                raw: self.raw,
            },
            pending: None,
        })
    }
}

/// What an update is published with, and the state to commit once it is durable.
pub(super) struct Prepared {
    pub publish: Publish,
    pending: Option<Pending>,
}

/// A state to commit, with the reference's turn held from reading the state until the
/// commit (or the failure).
struct Pending {
    tracked: Arc<Tracked>,
    reference: String,
    expected: Option<Version>,
    next: Vec<u8>,
    _turn: Turn,
}

impl Prepared {
    /// Stores the next state, now that the events derived from it are durable, and
    /// then gives the reference's turn to its next update. A failure is counted and
    /// logged but does not undo the delivery: the next update then publishes the same
    /// changes again.
    pub async fn commit(self) {
        let Some(pending) = self.pending else {
            return;
        };
        let tracked = &pending.tracked;
        let reference = pending.reference.as_str();
        match tracked
            .store
            .commit(reference, pending.expected, pending.next)
            .await
        {
            // A conflict is counted by the store: another replica committed first, and
            // its state is the one the next update derives from.
            Ok(Commit::Committed(_) | Commit::Conflict) => {}
            Err(error) => tracked.metrics.emit(StateNotCommitted {
                reference,
                error: &error,
            }),
        }
    }
}

impl Tracked {
    async fn derive(
        self: &Arc<Self>,
        update: &Update,
        batch: &mut NormalizedBatch,
        received_at: OffsetDateTime,
        arrival: DeliveryMode,
        ctx: &EventContext,
    ) -> Result<(Vec<ChangeEvent>, Option<Pending>), DeliveryError> {
        let reference = update.reference_id.as_str();
        let turn = tokio::time::timeout(self.turn_wait, self.turns.lock(reference))
            .await
            .map_err(|_| DeliveryError::Busy {
                waited: self.turn_wait,
            })?;
        let (previous, expected) = self.read(reference).await;
        let derived = changes::derive(
            previous.as_ref(),
            update,
            received_at,
            arrival,
            ctx,
            self.threshold,
        );
        if derived.stale {
            batch.mark_stale();
        }
        let events = derived.events;
        // Nothing to store when nothing moved: a stale update, or one that repeats the
        // state (a resend, a replay). Its turn ends here: the order of its delivery does
        // not matter to the state, and a burst of repeats of one reference then does not
        // queue behind a slow sink, each waiting out the one before.
        let pending = (previous.as_ref() != Some(&derived.next_state)).then(|| Pending {
            tracked: self.clone(),
            reference: reference.to_owned(),
            expected,
            next: serde_json::to_vec(&derived.next_state).expect("a state serializes"),
            _turn: turn,
        });
        Ok((events, pending))
    }

    /// The state of `reference` and the version to commit on. A state that cannot be
    /// read, or that a newer release wrote, counts as none, so that the update is
    /// published whole rather than not at all.
    async fn read(&self, reference: &str) -> (Option<MilestoneState>, Option<Version>) {
        let read = match self.store.get(reference).await {
            Ok(read) => read,
            Err(error) => {
                self.metrics.emit(StateUnavailable {
                    reference,
                    error: &error,
                });
                return (None, None);
            }
        };
        let Some(read) = read else {
            return (None, None);
        };
        match serde_json::from_slice::<MilestoneState>(&read.value) {
            Ok(state) if state.version <= STATE_VERSION => (Some(state), Some(read.version)),
            Ok(state) => {
                let error = format!("state version {} is newer than this release", state.version);
                self.metrics.emit(StateUnavailable {
                    reference,
                    error: &error,
                });
                (None, Some(read.version))
            }
            Err(error) => {
                self.metrics.emit(StateUnavailable {
                    reference,
                    error: &error,
                });
                (None, Some(read.version))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::delivery::{Dedup, DedupConfig, Delivery, DeliveryConfig};
    use crate::events::{Envelope, Provenance};
    use crate::pipeline::{Arrival, Outcome, Pipeline};
    use crate::sinks::{messages, MessageKind, Sink, SinkError};

    /// Records `(kind, event type)` of every message, after failing `failures` writes;
    /// a write waits while `gate` is held for writing.
    #[derive(Default)]
    struct Recording {
        failures: AtomicUsize,
        gate: tokio::sync::RwLock<()>,
        messages: Mutex<Vec<Vec<(MessageKind, String)>>>,
        tracking_updates: Mutex<Vec<Vec<u8>>>,
    }

    #[async_trait]
    impl Sink for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        async fn write(&self, envelope: &Envelope) -> Result<(), SinkError> {
            let _open = self.gate.read().await;
            let failed = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failed {
                return Err(SinkError::Io("failing on purpose".into()));
            }
            let written = messages(envelope)
                .iter()
                .map(|m| {
                    let kind = m.event.map_or("raw", |e| e.event_type());
                    (m.kind, kind.rsplit("tracking.").next().unwrap().to_owned())
                })
                .collect();
            self.messages.lock().unwrap().push(written);
            if let Some(update) = envelope.batch().and_then(|b| b.tracking_update()) {
                self.tracking_updates
                    .lock()
                    .unwrap()
                    .push(update.data().to_vec());
            }
            Ok(())
        }
        fn is_ready(&self) -> bool {
            true
        }
        async fn close(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    struct Bridge {
        pipeline: Pipeline,
        sink: Arc<Recording>,
        state: Option<StateStore>,
        _dir: tempfile::TempDir,
    }

    const TURN_WAIT: Duration = Duration::from_millis(300);

    fn bridge(configure: impl FnOnce(&mut EventsConfig)) -> Bridge {
        let mut config = EventsConfig::default();
        configure(&mut config);
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let sink = Arc::new(Recording::default());
        let delivery = Delivery::new(
            vec![sink.clone()],
            Dedup::new(&DedupConfig::default()),
            &DeliveryConfig::default(),
            metrics.clone(),
        );
        let state = (config.milestones == MilestoneMode::Changes)
            .then(|| StateStore::open(&config.state(), dir.path(), None, &metrics).unwrap());
        let pipeline = Pipeline::new(Arc::new(delivery), config.context(), metrics.clone())
            .publishing(Publishing::new(&config, state.clone(), TURN_WAIT, &metrics));
        Bridge {
            pipeline,
            sink,
            state,
            _dir: dir,
        }
    }

    /// An update of reference `r1`: the gate out, and the arrival estimated at `eta`.
    fn update(id: &str, updated_at: &str, eta: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"id":"{id}","reference_id":"r1","updated_at":"{updated_at}","payload":{{
            "container_id":"MSCU1234567","carrier_scac":"MSCU","milestones":[
            {{"description":"Gate out empty","timestamp":"2024-01-01T00:00:00Z","planned":false}},
            {{"description":"Vessel arrived at destination port","timestamp":"{eta}","planned":true}}]}}}}"#
        ))
    }

    impl Bridge {
        async fn take(&self, body: Bytes) -> Result<Outcome, crate::delivery::DeliveryError> {
            self.pipeline
                .take(Arrival {
                    body,
                    provenance: Provenance::Webhook {
                        request_id: "req".into(),
                        client_ip: Ipv4Addr::LOCALHOST.into(),
                        key_id: None,
                        traceparent: None,
                    },
                    received_at: OffsetDateTime::now_utc(),
                })
                .await
        }

        /// The messages of the last write, by event type (`raw` for the body).
        fn last(&self) -> Vec<String> {
            let messages = self.sink.messages.lock().unwrap();
            messages
                .last()
                .unwrap()
                .iter()
                .map(|(_, t)| t.clone())
                .collect()
        }

        async fn state(&self) -> Option<MilestoneState> {
            let read = self.state.as_ref()?.get("r1").await.unwrap()?;
            Some(serde_json::from_slice(&read.value).unwrap())
        }
    }

    const FIRST: (&str, &str, &str) = ("u1", "2024-01-02T00:00:00Z", "2024-02-01T00:00:00Z");
    const MOVED: (&str, &str, &str) = ("u2", "2024-01-03T00:00:00Z", "2024-02-03T00:00:00Z");

    /// What FIRST publishes against no state: its two milestones, as new.
    const FIRST_PUBLISHED: [&str; 4] = [
        "update.v1",
        "milestone.changed.v1",
        "milestone.changed.v1",
        "raw",
    ];

    fn body((id, at, eta): (&str, &str, &str)) -> Bytes {
        update(id, at, eta)
    }

    #[tokio::test]
    async fn changes_mode_publishes_what_changed_in_place_of_the_milestones() {
        let bridge = bridge(|_| {});
        bridge.take(body(FIRST)).await.unwrap();
        assert_eq!(bridge.last(), FIRST_PUBLISHED);
        let state = bridge.state().await.expect("the state advanced");
        assert_eq!(state.updated_at.as_deref(), Some(FIRST.1));
        bridge.take(body(MOVED)).await.unwrap();
        assert_eq!(
            bridge.last(),
            ["update.v1", "milestone.changed.v1", "eta_changed.v1", "raw"]
        );
        // The change of an estimate is routed as the milestone it is about.
        let messages = bridge.sink.messages.lock().unwrap();
        assert!(messages[1][1..3]
            .iter()
            .all(|(kind, _)| *kind == MessageKind::Milestone));
    }

    #[tokio::test]
    async fn all_mode_publishes_every_milestone_and_off_mode_none() {
        let all = bridge(|c| c.milestones = MilestoneMode::All);
        all.take(body(FIRST)).await.unwrap();
        all.take(body(MOVED)).await.unwrap();
        assert_eq!(
            all.last(),
            ["update.v1", "milestone.v1", "milestone.v1", "raw"]
        );
        assert!(all.state.is_none());

        let off = bridge(|c| c.milestones = MilestoneMode::Off);
        off.take(body(FIRST)).await.unwrap();
        assert_eq!(off.last(), ["update.v1", "raw"]);
    }

    #[tokio::test]
    async fn publish_raw_off_leaves_the_body_out_of_the_messages() {
        for mode in [MilestoneMode::All, MilestoneMode::Changes] {
            let bridge = bridge(|c| {
                c.milestones = mode;
                c.publish_raw = false;
            });
            bridge.take(body(FIRST)).await.unwrap();
            let last = bridge.last();
            assert_eq!(last.len(), 3, "{last:?}");
            assert!(!last.iter().any(|t| t == "raw"), "{last:?}");
        }
    }

    #[tokio::test]
    async fn a_stale_update_is_flagged_and_changes_nothing() {
        let bridge = bridge(|_| {});
        bridge.take(body(MOVED)).await.unwrap();
        let state = bridge.state().await;
        bridge.take(body(FIRST)).await.unwrap();
        assert_eq!(bridge.last(), ["update.v1", "raw"]);
        let data: serde_json::Value =
            serde_json::from_slice(bridge.sink.tracking_updates.lock().unwrap().last().unwrap())
                .unwrap();
        assert_eq!(data["stale"], true);
        assert_eq!(bridge.state().await, state);
        let first: serde_json::Value =
            serde_json::from_slice(&bridge.sink.tracking_updates.lock().unwrap()[0]).unwrap();
        assert!(first.get("stale").is_none());
    }

    #[tokio::test]
    async fn the_state_advances_only_once_the_update_is_written() {
        let bridge = bridge(|_| {});
        bridge.sink.failures.store(1, Ordering::SeqCst);
        assert!(bridge.take(body(FIRST)).await.is_err());
        assert_eq!(bridge.state().await, None, "a failed write commits nothing");
        bridge.take(body(FIRST)).await.unwrap();
        assert_eq!(
            bridge.last(),
            FIRST_PUBLISHED,
            "the retry publishes the changes"
        );
        assert!(bridge.state().await.is_some());
    }

    #[tokio::test]
    async fn a_state_that_cannot_be_read_publishes_every_milestone_as_new() {
        let bridge = bridge(|_| {});
        let store = bridge.state.clone().unwrap();
        assert_eq!(
            store
                .commit("r1", None, b"not a state".to_vec())
                .await
                .unwrap(),
            Commit::Committed(store.get("r1").await.unwrap().unwrap().version)
        );
        bridge.take(body(FIRST)).await.unwrap();
        assert_eq!(bridge.last(), FIRST_PUBLISHED);
        assert!(
            bridge.state().await.is_some(),
            "a readable state replaces it"
        );
    }

    #[tokio::test]
    async fn an_update_waits_for_its_reference_turn_only_so_long() {
        let bridge = Arc::new(bridge(|_| {}));
        let stalled = bridge.sink.gate.write().await;
        let first = tokio::spawn({
            let bridge = bridge.clone();
            async move { bridge.take(body(FIRST)).await }
        });
        // The first update holds the reference's turn while its write hangs.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let refused = bridge.take(body(MOVED)).await;
        assert!(
            matches!(refused, Err(DeliveryError::Busy { waited }) if waited == TURN_WAIT),
            "{refused:?}"
        );
        assert!(started.elapsed() >= TURN_WAIT);
        drop(stalled);
        first.await.unwrap().unwrap();
        // Refused, it was not remembered: the retry is taken and derives from the first.
        bridge.take(body(MOVED)).await.unwrap();
        assert_eq!(bridge.sink.messages.lock().unwrap().len(), 2);
    }
}
