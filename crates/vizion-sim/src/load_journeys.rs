//! The updates `vizion-sim load --mode journey` sends: one reference followed through a
//! played journey, a full snapshot per update, so that the bridge sees what carriers
//! really send: the same reference again and again, the milestone list growing,
//! estimates moving and turning into actuals.
//!
//! The milestones come from the journey model `serve` plays; the list is then fitted to
//! a size that grows evenly from `--min-milestones` to `--max-milestones` over the
//! journey, so that body sizes stay comparable with the snapshot mode's.

use time::{Duration, OffsetDateTime};

use crate::journey::{self, Carrier, Journey, Milestone, Rng, CARRIERS};
use crate::store::{Payload, Update, ORGANIZATION_ID};

/// The shape of every journey a load client plays.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub updates: usize,
    pub min_milestones: usize,
    pub max_milestones: usize,
}

/// One reference's journey, handing out its updates one after the other.
pub struct JourneyUpdates {
    shape: Shape,
    rng: Rng,
    journey: Journey,
    reference_id: String,
    container_id: String,
    carrier: &'static Carrier,
    created_at: String,
    sent: usize,
    last_updated_at: Option<OffsetDateTime>,
}

impl JourneyUpdates {
    /// A new reference whose journey started some weeks before `now`.
    pub fn new(rng: &mut Rng, shape: Shape, now: OffsetDateTime) -> Self {
        let mut rng = Rng::new(rng.next_u64());
        let reference_id = rng.uuid().to_string();
        let carrier = rng.pick(CARRIERS);
        let container_id = journey::container_number(&mut rng, carrier);
        let journey = Journey::generate(&mut rng, now - Duration::days(40));
        Self {
            shape,
            rng,
            journey,
            reference_id,
            container_id,
            carrier,
            created_at: journey::utc_timestamp(now),
            sent: 0,
            last_updated_at: None,
        }
    }

    /// Whether every update of the journey has been handed out.
    pub fn is_done(&self) -> bool {
        self.sent >= self.shape.updates
    }

    /// The next update, with update id `id` and sent at `now`; `None` once the journey
    /// has had all its updates.
    pub fn next_update(&mut self, id: &str, now: OffsetDateTime) -> Option<Update> {
        if self.is_done() {
            return None;
        }
        let k = self.sent;
        let updates = self.shape.updates;
        // Spread the steps evenly: the first update shows only estimates, the last one
        // the journey complete.
        let steps = if updates == 1 {
            self.journey.len()
        } else {
            self.journey.len() * k / (updates - 1)
        };
        while self.journey.played() < steps && self.journey.advance(&mut self.rng) {}
        let Shape {
            min_milestones: min,
            max_milestones: max,
            ..
        } = self.shape;
        let target = if updates == 1 {
            max
        } else {
            min + (max - min) * k / (updates - 1)
        };
        let milestones = fit(self.journey.milestones(), self.journey.played(), target);

        // Two updates sent within the same millisecond still read as later and later.
        let mut at = now;
        if let Some(last) = self.last_updated_at {
            at = at.max(last + Duration::milliseconds(1));
        }
        self.last_updated_at = Some(at);
        self.sent += 1;
        let updated_at = journey::utc_timestamp(at);
        Some(Update {
            id: id.to_owned(),
            status: "data_received",
            reference_id: self.reference_id.clone(),
            organization_id: ORGANIZATION_ID,
            payload: Payload {
                reference_id: self.reference_id.clone(),
                container_id: self.container_id.clone(),
                container_iso: Some(self.journey.container_iso.to_owned()),
                carrier_scac: self.carrier.scac.to_owned(),
                bill_of_lading: None,
                booking_number: None,
                inland_origin: None,
                origin_port: Some(self.journey.origin.clone()),
                destination_port: Some(self.journey.destination.clone()),
                inland_destination: None,
                milestones,
            },
            created_at: self.created_at.clone(),
            updated_at,
            parent_reference_id: None,
        })
    }
}

/// Brings a milestone list (the `played` actuals first) to `target` entries: estimates
/// the carrier has not announced yet are left off the end, and an actual is reported
/// again by another source (terminals and AIS confirm what carriers report), right after
/// the original, when the list is short. With nothing played yet there is nothing to
/// confirm, and a short list stays short.
fn fit(mut milestones: Vec<Milestone>, played: usize, target: usize) -> Vec<Milestone> {
    if milestones.len() >= target || played == 0 {
        milestones.truncate(target);
        return milestones;
    }
    let missing = target - milestones.len();
    let mut fitted = Vec::with_capacity(target);
    for (i, milestone) in milestones.into_iter().enumerate() {
        let copies = if i < played {
            missing / played + usize::from(i < missing % played)
        } else {
            0
        };
        let sources = ["terminal", "ais", "carrier"]
            .into_iter()
            .filter(|s| *s != milestone.source)
            .cycle();
        let confirmations: Vec<Milestone> = sources
            .take(copies)
            .map(|source| Milestone {
                source: source.to_owned(),
                ..milestone.clone()
            })
            .collect();
        fitted.push(milestone);
        fitted.extend(confirmations);
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        updates: 6,
        min_milestones: 3,
        max_milestones: 15,
    };

    fn play(seed: u64, shape: Shape) -> Vec<Update> {
        let mut rng = Rng::new(seed);
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut journey = JourneyUpdates::new(&mut rng, shape, now);
        let mut updates = Vec::new();
        for n in 0.. {
            // The same instant for all: the updates must still read as later and later.
            match journey.next_update(&format!("update-{n}"), now) {
                Some(update) => updates.push(update),
                None => break,
            }
        }
        assert!(journey.is_done());
        updates
    }

    #[test]
    fn a_journey_keeps_its_reference_container_and_carrier_under_new_update_ids() {
        let updates = play(11, SHAPE);
        assert_eq!(updates.len(), SHAPE.updates);
        let first = &updates[0];
        for update in &updates {
            assert_eq!(update.reference_id, first.reference_id);
            assert_eq!(update.payload.reference_id, first.reference_id);
            assert_eq!(update.payload.container_id, first.payload.container_id);
            assert_eq!(update.payload.carrier_scac, first.payload.carrier_scac);
            assert_eq!(update.created_at, first.created_at);
        }
        assert!(journey::is_container_number(&first.payload.container_id));
        let mut ids: Vec<_> = updates.iter().map(|u| u.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), updates.len());
    }

    #[test]
    fn updated_at_increases_and_the_milestone_list_grows_within_the_bounds() {
        for seed in 0..20 {
            let updates = play(seed, SHAPE);
            for pair in updates.windows(2) {
                assert!(pair[0].updated_at < pair[1].updated_at, "seed {seed}");
                assert!(
                    pair[0].payload.milestones.len() < pair[1].payload.milestones.len(),
                    "seed {seed}"
                );
            }
            assert_eq!(updates[0].payload.milestones.len(), SHAPE.min_milestones);
            assert_eq!(
                updates.last().unwrap().payload.milestones.len(),
                SHAPE.max_milestones
            );
        }
    }

    #[test]
    fn an_estimate_moves_and_an_estimate_becomes_actual_over_a_journey() {
        for seed in 0..20 {
            let updates = play(seed, SHAPE);
            let at = |u: &Update, description: &str, planned: bool| {
                u.payload
                    .milestones
                    .iter()
                    .find(|m| m.description == description && m.planned == Some(planned))
                    .and_then(|m| m.timestamp.clone())
            };
            let mut moved = false;
            let mut became_actual = false;
            for (i, earlier) in updates.iter().enumerate() {
                for estimate in earlier.payload.milestones.iter() {
                    if estimate.planned != Some(true) {
                        continue;
                    }
                    for later in &updates[i + 1..] {
                        if let Some(t) = at(later, &estimate.description, true) {
                            moved |= Some(t) != estimate.timestamp;
                        }
                        became_actual |= at(later, &estimate.description, false).is_some();
                    }
                }
            }
            assert!(moved, "seed {seed}: no estimate moved");
            assert!(became_actual, "seed {seed}: no estimate became actual");
            let last = updates.last().unwrap();
            assert!(last
                .payload
                .milestones
                .iter()
                .all(|m| m.planned == Some(false)));
        }
    }

    #[test]
    fn bodies_stay_between_2_and_14_kilobytes() {
        for seed in 0..20 {
            for update in play(seed, SHAPE) {
                let len = serde_json::to_vec(&update).unwrap().len();
                assert!((2_000..=14_000).contains(&len), "seed {seed}: {len} bytes");
            }
        }
    }

    #[test]
    fn more_updates_than_steps_still_end_with_the_journey_complete() {
        let shape = Shape {
            updates: 20,
            min_milestones: 3,
            max_milestones: 25,
        };
        let updates = play(5, shape);
        assert_eq!(updates.len(), 20);
        let last = updates.last().unwrap();
        assert_eq!(last.payload.milestones.len(), 25);
        assert!(last
            .payload
            .milestones
            .iter()
            .any(|m| m.description == journey::FINAL_DESCRIPTION));
    }
}
