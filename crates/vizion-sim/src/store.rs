//! The simulator's memory: references, the updates generated for them, and a record
//! of every callback attempt and API request. One lock, held only for short,
//! non-blocking sections (never across a network call).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::journey::{self, Carrier, Journey, Milestone, Rng, FINAL_DESCRIPTION};

/// Reference and update ids: lower-case hyphenated UUIDs.
pub type Id = String;

/// The organization every reference of this simulator belongs to.
pub const ORGANIZATION_ID: &str = "3670867f-3634-4dd2-9b27-3531b5affe64";

/// A reference as `GET /references/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub id: Id,
    pub container_id: Option<String>,
    pub bill_of_lading: Option<String>,
    pub booking_number: Option<String>,
    pub carrier_code: Option<String>,
    pub carrier_scac: Option<String>,
    pub carrier_name: Option<String>,
    pub callback_url: Option<String>,
    pub auto_carrier: bool,
    pub active: bool,
    pub parent_reference_id: Option<Id>,
    pub last_update_status: Option<String>,
    pub last_update_attempted_at: Option<String>,
    pub deactivate_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A webhook body and an element of `GET /references/{id}/updates`.
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub id: Id,
    pub status: &'static str,
    pub reference_id: Id,
    pub organization_id: &'static str,
    pub payload: Payload,
    pub created_at: String,
    pub updated_at: String,
    pub parent_reference_id: Option<Id>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub reference_id: Id,
    pub container_id: String,
    pub container_iso: Option<String>,
    pub carrier_scac: String,
    pub bill_of_lading: Option<String>,
    pub booking_number: Option<String>,
    pub inland_origin: Option<journey::Location>,
    pub origin_port: Option<journey::Location>,
    pub destination_port: Option<journey::Location>,
    pub inland_destination: Option<journey::Location>,
    pub milestones: Vec<Milestone>,
}

/// One callback attempt, for `GET /_sim/deliveries`.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub seq: u64,
    pub at: String,
    pub reference_id: Id,
    pub update_id: Id,
    /// The callback URL without its query string (which may carry a token).
    pub url: String,
    /// `step` (a new update played on schedule), `advance` (played on request), or
    /// `retry` (the latest update sent again at a scheduled check).
    pub trigger: Trigger,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub delivered: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Step,
    Advance,
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Step => "step",
            Trigger::Advance => "advance",
            Trigger::Retry => "retry",
        }
    }
}

/// One Vizion API request, for `GET /_sim/requests`.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub seq: u64,
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// What a delivery attempt needs, taken out of the store so the lock is not held
/// during the network call.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub reference_id: Id,
    pub callback_url: String,
    pub update: Update,
    pub trigger: Trigger,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl DeliveryOutcome {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

struct Entry {
    reference: Reference,
    carrier: Option<&'static Carrier>,
    journey: Option<Journey>,
    rng: Rng,
    /// Oldest first.
    updates: Vec<Update>,
    next_step_at: Option<Instant>,
    /// Set after a failed delivery: the latest update is sent again at this check.
    retry_at: Option<Instant>,
    /// A delivery for this reference is on the wire; nothing else starts meanwhile.
    delivering: bool,
}

/// Timing of the simulated world.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Time between two steps of a journey; `None`: steps are played only on request.
    pub step_interval: Option<Duration>,
    /// Time until a failed delivery is tried again.
    pub check_interval: Duration,
    /// Deactivate a reference once its empty return has been delivered.
    pub auto_unsubscribe: bool,
}

/// A new reference to create.
#[derive(Debug, Clone)]
pub struct NewReference {
    pub container_id: Option<String>,
    pub bill_of_lading: Option<String>,
    pub booking_number: Option<String>,
    pub carrier: Option<&'static Carrier>,
    pub auto_carrier: bool,
    pub callback_url: Option<String>,
    pub parent_reference_id: Option<Id>,
    /// A parent (bill of lading) reference: no journey of its own.
    pub is_parent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reference not found")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
}

pub struct Store {
    inner: Mutex<Inner>,
    schedule: Schedule,
}

struct Inner {
    /// In creation order.
    entries: Vec<Entry>,
    index: HashMap<Id, usize>,
    rng: Rng,
    deliveries: Vec<DeliveryRecord>,
    requests: Vec<RequestRecord>,
}

impl Inner {
    fn entry(&mut self, id: &str) -> Result<&mut Entry, StoreError> {
        let at = *self.index.get(id).ok_or(StoreError::NotFound)?;
        Ok(&mut self.entries[at])
    }
}

/// Filters of `GET /references`; empty lists match everything.
#[derive(Debug, Default)]
pub struct ReferenceFilter {
    pub active: bool,
    pub container_ids: Vec<String>,
    pub bills_of_lading: Vec<String>,
    pub booking_numbers: Vec<String>,
    pub carrier_codes: Vec<String>,
    pub callback_urls: Vec<String>,
    pub last_update_statuses: Vec<String>,
    pub deactivate_reasons: Vec<String>,
}

fn matches(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l.eq_ignore_ascii_case(v)))
}

fn now_text() -> String {
    journey::utc_timestamp(OffsetDateTime::now_utc())
}

fn strip_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_owned()
}

impl Store {
    pub fn new(seed: u64, schedule: Schedule) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                index: HashMap::new(),
                rng: Rng::new(seed),
                deliveries: Vec::new(),
                requests: Vec::new(),
            }),
            schedule,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the data half-written in a way that matters here.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A container number for a child of a bill of lading.
    pub fn new_container_number(&self, carrier: &Carrier) -> String {
        journey::container_number(&mut self.lock().rng, carrier)
    }

    /// How many containers a new bill of lading holds (2 or 3).
    pub fn bill_of_lading_size(&self) -> usize {
        2 + self.lock().rng.below(2) as usize
    }

    pub fn create(&self, new: NewReference) -> Reference {
        let mut inner = self.lock();
        let id = inner.rng.uuid().to_string();
        let mut rng = Rng::new(inner.rng.next_u64());
        let now = now_text();
        let journey = (!new.is_parent && new.container_id.is_some()).then(|| {
            Journey::generate(
                &mut rng,
                OffsetDateTime::now_utc() - time::Duration::days(40),
            )
        });
        let has_callback = new.callback_url.is_some() && journey.is_some();
        let reference = Reference {
            id: id.clone(),
            container_id: new.container_id,
            bill_of_lading: new.bill_of_lading,
            booking_number: new.booking_number,
            carrier_code: new.carrier.map(|c| c.scac.to_owned()),
            carrier_scac: new.carrier.map(|c| c.scac.to_owned()),
            carrier_name: new.carrier.map(|c| c.name.to_owned()),
            callback_url: new.callback_url,
            auto_carrier: new.auto_carrier,
            active: true,
            parent_reference_id: new.parent_reference_id,
            last_update_status: new
                .auto_carrier
                .then(|| "auto_carrier_completed".to_owned()),
            last_update_attempted_at: None,
            deactivate_reason: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let next_step_at = match (has_callback, self.schedule.step_interval) {
            (true, Some(interval)) => Some(Instant::now() + interval),
            _ => None,
        };
        let at = inner.entries.len();
        inner.entries.push(Entry {
            reference: reference.clone(),
            carrier: new.carrier,
            journey,
            rng,
            updates: Vec::new(),
            next_step_at,
            retry_at: None,
            delivering: false,
        });
        inner.index.insert(id, at);
        reference
    }

    /// A reference that could not be created (auto carrier identification found no
    /// carrier): kept, inactive, as Vizion does.
    pub fn create_not_found(
        &self,
        container_id: String,
        callback_url: Option<String>,
    ) -> Reference {
        let reference = self.create(NewReference {
            container_id: Some(container_id),
            bill_of_lading: None,
            booking_number: None,
            carrier: None,
            auto_carrier: true,
            callback_url,
            parent_reference_id: None,
            is_parent: true,
        });
        let mut inner = self.lock();
        let entry = inner.entry(&reference.id).expect("just created");
        entry.reference.active = false;
        entry.reference.last_update_status = Some("auto_carrier_not_found".into());
        entry.reference.deactivate_reason = Some("carrier_not_found".into());
        entry.reference.clone()
    }

    pub fn get(&self, id: &str) -> Result<Reference, StoreError> {
        Ok(self.lock().entry(id)?.reference.clone())
    }

    /// References matching `filter`, newest first.
    pub fn list(&self, filter: &ReferenceFilter) -> Vec<Reference> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .rev()
            .map(|e| &e.reference)
            .filter(|r| r.active == filter.active)
            .filter(|r| matches(&filter.container_ids, r.container_id.as_deref()))
            .filter(|r| matches(&filter.bills_of_lading, r.bill_of_lading.as_deref()))
            .filter(|r| matches(&filter.booking_numbers, r.booking_number.as_deref()))
            .filter(|r| matches(&filter.carrier_codes, r.carrier_code.as_deref()))
            .filter(|r| {
                filter.callback_urls.is_empty()
                    || r.callback_url
                        .as_ref()
                        .is_some_and(|u| filter.callback_urls.contains(u))
            })
            .filter(|r| {
                matches(
                    &filter.last_update_statuses,
                    r.last_update_status.as_deref(),
                )
            })
            .filter(|r| matches(&filter.deactivate_reasons, r.deactivate_reason.as_deref()))
            .cloned()
            .collect()
    }

    /// The updates of a reference, newest first.
    pub fn updates(&self, id: &str) -> Result<Vec<Update>, StoreError> {
        let mut inner = self.lock();
        Ok(inner.entry(id)?.updates.iter().rev().cloned().collect())
    }

    /// Unsubscribes a reference (and the children of a bill of lading). Answers
    /// whether it was active.
    pub fn deactivate(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let was_active = inner.entry(id)?.reference.active;
        let now = now_text();
        for entry in inner.entries.iter_mut().filter(|e| {
            e.reference.id == id || e.reference.parent_reference_id.as_deref() == Some(id)
        }) {
            if entry.reference.active {
                entry.reference.active = false;
                entry.reference.deactivate_reason = Some(reason.to_owned());
                entry.reference.updated_at = now.clone();
            }
            entry.next_step_at = None;
            entry.retry_at = None;
        }
        Ok(was_active)
    }

    /// The work due now: a step to play, or a failed delivery to retry.
    pub fn take_due(&self, now: Instant) -> Vec<PendingDelivery> {
        let inner = self.lock();
        let ids: Vec<(Id, Trigger)> = inner
            .entries
            .iter()
            .filter(|e| e.reference.active && !e.delivering)
            .filter_map(|e| {
                if e.retry_at.is_some_and(|at| at <= now) {
                    Some((e.reference.id.clone(), Trigger::Retry))
                } else if e.next_step_at.is_some_and(|at| at <= now) {
                    Some((e.reference.id.clone(), Trigger::Step))
                } else {
                    None
                }
            })
            .collect();
        drop(inner);
        ids.into_iter()
            .filter_map(|(id, trigger)| match trigger {
                Trigger::Retry => self.take_retry(&id).ok().flatten(),
                _ => self.play_step(&id, trigger).ok().flatten(),
            })
            .collect()
    }

    /// Plays the next step of a reference's journey: a new update, returned for
    /// delivery when the reference has a callback URL. `Ok(None)`: played, nothing to
    /// deliver.
    pub fn play_step(
        &self,
        id: &str,
        trigger: Trigger,
    ) -> Result<Option<PendingDelivery>, StoreError> {
        let step_interval = self.schedule.step_interval;
        let mut inner = self.lock();
        let entry = inner.entry(id)?;
        if !entry.reference.active {
            return Err(StoreError::Conflict("the reference is not active"));
        }
        if entry.delivering {
            return Err(StoreError::Conflict(
                "a delivery for this reference is under way",
            ));
        }
        let Some(journey) = entry.journey.as_mut() else {
            return Err(StoreError::Conflict(
                "a bill-of-lading reference has no journey of its own",
            ));
        };
        if !journey.advance(&mut entry.rng) {
            entry.next_step_at = None;
            return Err(StoreError::Conflict("the journey is complete"));
        }
        let update_id = entry.rng.uuid().to_string();
        let now = now_text();
        let update = Update {
            id: update_id,
            status: "data_received",
            reference_id: id.to_owned(),
            organization_id: ORGANIZATION_ID,
            payload: Payload {
                reference_id: id.to_owned(),
                container_id: entry.reference.container_id.clone().unwrap_or_default(),
                container_iso: Some(journey.container_iso.to_owned()),
                carrier_scac: entry.carrier.map(|c| c.scac.to_owned()).unwrap_or_default(),
                bill_of_lading: entry.reference.bill_of_lading.clone(),
                booking_number: entry.reference.booking_number.clone(),
                inland_origin: None,
                origin_port: Some(journey.origin.clone()),
                destination_port: Some(journey.destination.clone()),
                inland_destination: None,
                milestones: journey.milestones(),
            },
            created_at: now.clone(),
            updated_at: now.clone(),
            parent_reference_id: entry.reference.parent_reference_id.clone(),
        };
        let complete = journey.is_complete();
        entry.updates.push(update.clone());
        entry.reference.last_update_attempted_at = Some(now.clone());
        entry.reference.updated_at = now;
        entry.next_step_at = match step_interval {
            Some(interval) if !complete => Some(Instant::now() + interval),
            _ => None,
        };
        let Some(callback_url) = entry.reference.callback_url.clone() else {
            entry.reference.last_update_status = Some("data_received".into());
            return Ok(None);
        };
        // A new update goes out now; it supersedes a pending retry of an older one.
        entry.retry_at = None;
        entry.delivering = true;
        Ok(Some(PendingDelivery {
            reference_id: id.to_owned(),
            callback_url,
            update,
            trigger,
        }))
    }

    /// The latest update again, when the last delivery failed. `Ok(None)`: nothing
    /// to retry.
    pub fn take_retry(&self, id: &str) -> Result<Option<PendingDelivery>, StoreError> {
        let mut inner = self.lock();
        let entry = inner.entry(id)?;
        if entry.retry_at.is_none() || entry.delivering || !entry.reference.active {
            return Ok(None);
        }
        let (Some(update), Some(callback_url)) = (
            entry.updates.last().cloned(),
            entry.reference.callback_url.clone(),
        ) else {
            entry.retry_at = None;
            return Ok(None);
        };
        entry.retry_at = None;
        entry.delivering = true;
        entry.reference.last_update_attempted_at = Some(now_text());
        Ok(Some(PendingDelivery {
            reference_id: id.to_owned(),
            callback_url,
            update,
            trigger: Trigger::Retry,
        }))
    }

    /// Records how a delivery ended: the reference's status, the next retry, and
    /// the auto-unsubscribe after a delivered empty return.
    pub fn finish_delivery(
        &self,
        delivery: &PendingDelivery,
        outcome: &DeliveryOutcome,
    ) -> DeliveryRecord {
        let mut inner = self.lock();
        let seq = inner.deliveries.len() as u64 + 1;
        let record = DeliveryRecord {
            seq,
            at: now_text(),
            reference_id: delivery.reference_id.clone(),
            update_id: delivery.update.id.clone(),
            url: strip_query(&delivery.callback_url),
            trigger: delivery.trigger,
            status: outcome.status,
            error: outcome.error.clone(),
            delivered: outcome.delivered(),
        };
        inner.deliveries.push(record.clone());
        let check_interval = self.schedule.check_interval;
        let auto_unsubscribe = self.schedule.auto_unsubscribe;
        let Ok(entry) = inner.entry(&delivery.reference_id) else {
            return record;
        };
        entry.delivering = false;
        if !entry.reference.active {
            return record;
        }
        let is_latest = entry.updates.last().map(|u| &u.id) == Some(&delivery.update.id);
        if outcome.delivered() {
            entry.reference.last_update_status = Some("data_received".into());
            let finished = entry
                .journey
                .as_ref()
                .is_some_and(|j| j.last_played() == Some(FINAL_DESCRIPTION));
            if finished && is_latest && auto_unsubscribe {
                entry.reference.active = false;
                entry.reference.deactivate_reason = Some("auto_unsubscribed".into());
                entry.reference.updated_at = now_text();
                entry.next_step_at = None;
            }
        } else {
            entry.reference.last_update_status = Some("webhook_failed".into());
            entry.retry_at = Some(Instant::now() + check_interval);
        }
        record
    }

    pub fn deliveries(&self, reference_id: Option<&str>) -> Vec<DeliveryRecord> {
        self.lock()
            .deliveries
            .iter()
            .filter(|d| reference_id.is_none_or(|id| d.reference_id == id))
            .cloned()
            .collect()
    }

    pub fn record_request(&self, method: &str, path: &str, status: u16) {
        let mut inner = self.lock();
        let seq = inner.requests.len() as u64 + 1;
        inner.requests.push(RequestRecord {
            seq,
            at: now_text(),
            method: method.to_owned(),
            path: path.to_owned(),
            status,
        });
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// Internal state of one reference for `GET /_sim/references/{id}`.
    pub fn journey_state(&self, id: &str) -> Result<serde_json::Value, StoreError> {
        let mut inner = self.lock();
        let entry = inner.entry(id)?;
        let now = Instant::now();
        let secs =
            |at: Option<Instant>| at.map(|at| at.saturating_duration_since(now).as_secs_f64());
        Ok(serde_json::json!({
            "reference": entry.reference,
            "steps_played": entry.journey.as_ref().map(Journey::played),
            "steps_total": entry.journey.as_ref().map(Journey::len),
            "last_milestone": entry.journey.as_ref().and_then(Journey::last_played),
            "updates": entry.updates.len(),
            "next_step_in_seconds": secs(entry.next_step_at),
            "retry_in_seconds": secs(entry.retry_at),
            "delivering": entry.delivering,
        }))
    }
}
