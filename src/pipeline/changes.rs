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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::delivery::{KeyLocks, Turn};
use crate::events::changes::{self, MilestoneState, STATE_VERSION};
use crate::events::{
    ChangeEvent, DeliveryMode, EventContext, EventsConfig, MilestoneCode, MilestoneEvents,
    MilestoneMode, NormalizedBatch, Publish,
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
    /// the other modes).
    pub fn new(config: &EventsConfig, store: Option<StateStore>, metrics: &Metrics) -> Self {
        let milestones = match (config.milestones, store) {
            (MilestoneMode::All, _) => Milestones::All,
            (MilestoneMode::Off, _) => Milestones::Off,
            (MilestoneMode::Changes, Some(store)) => Milestones::Changes(Arc::new(Tracked {
                store,
                turns: KeyLocks::default(),
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
    /// returned [`Prepared`] holds both until [`Prepared::commit`] (or until dropped,
    /// when the delivery failed: nothing is committed then).
    pub(super) async fn prepare(
        &self,
        update: Option<&Update>,
        batch: &mut NormalizedBatch,
        received_at: OffsetDateTime,
        arrival: DeliveryMode,
        ctx: &EventContext,
    ) -> Prepared {
        let milestones = match (&self.milestones, update) {
            (Milestones::All, _) | (Milestones::Changes(_), None) => MilestoneEvents::Snapshots,
            (Milestones::Off, _) => MilestoneEvents::Changes(Vec::new()),
            (Milestones::Changes(tracked), Some(update)) => {
                let (changes, pending) = tracked
                    .derive(update, batch, received_at, arrival, ctx)
                    .await;
                return Prepared {
                    publish: Publish {
                        milestones: MilestoneEvents::Changes(changes),
                        raw: self.raw,
                    },
                    pending,
                };
            }
        };
        Prepared {
            publish: Publish {
                milestones,
                raw: self.raw,
            },
            pending: None,
        }
    }
}

/// What an update is published with, and the state to commit once it is durable.
pub(super) struct Prepared {
    pub publish: Publish,
    pending: Option<Pending>,
}

/// A state to commit, with the reference's turn held until then.
struct Pending {
    tracked: Arc<Tracked>,
    reference: String,
    expected: Option<Version>,
    next: Vec<u8>,
    _turn: Turn,
}

impl Prepared {
    /// Stores the next state, now that the events derived from it are durable. A
    /// failure is counted and logged but does not undo the delivery: the next update
    /// then publishes the same changes again.
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
    ) -> (Vec<ChangeEvent>, Option<Pending>) {
        let reference = update.reference_id.as_str();
        let turn = self.turns.lock(reference).await;
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
        let codes = milestone_codes(batch);
        let events = derived
            .events
            .into_iter()
            .map(|event| ChangeEvent {
                milestone: milestone_id(event.data()).and_then(|id| codes.get(&id).copied()),
                event,
            })
            .collect();
        // Nothing to store when nothing moved: a stale update, or one that repeats the
        // state (a resend, a replay).
        let pending = (previous.as_ref() != Some(&derived.next_state)).then(|| Pending {
            tracked: self.clone(),
            reference: reference.to_owned(),
            expected,
            next: serde_json::to_vec(&derived.next_state).expect("a state serializes"),
            _turn: turn,
        });
        (events, pending)
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

#[derive(Deserialize)]
struct MilestoneId {
    milestone_id: Option<String>,
}

fn milestone_id(data: &[u8]) -> Option<String> {
    serde_json::from_slice::<MilestoneId>(data)
        .ok()
        .and_then(|m| m.milestone_id)
}

/// The code of each milestone of `batch`, by milestone id: a change event is routed as
/// the milestone it is about.
fn milestone_codes(batch: &NormalizedBatch) -> HashMap<String, MilestoneCode> {
    batch
        .milestones()
        .iter()
        .zip(batch.milestone_codes())
        .filter_map(|(event, code)| milestone_id(event.data()).map(|id| (id, *code)))
        .collect()
}
