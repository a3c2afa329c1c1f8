//! Publishes spooled records to the sinks: oldest first, records of one container one
//! after the other, records of different containers side by side (up to
//! `spool.forward_concurrency`), each retried with capped exponential backoff until
//! every sink confirmed it, and only to the sinks that have not. A record a sink
//! refuses for good (or has not taken within `spool.max_attempts`) is quarantined for
//! that sink, so that it does not hold the records behind it. The forwarded position
//! advances over the confirmed prefix of the log and is stored every
//! [`CHECKPOINT_EVERY`]; segments behind it are deleted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::quarantine::{self, Note};
use super::{undecodable, Shared};
use crate::clock::{now_rfc3339, unix_millis};
use crate::delivery::{Purpose, SinkSet};
use crate::events::envelope::codec;
use crate::events::Envelope;
use crate::store::log::format::Frame;
use crate::store::log::reader::Reader;
use crate::store::log::{self, checkpoint};
use crate::telemetry::events::{
    SpoolEntryUndecodable, SpoolForwarded, SpoolOldestEntryAge, SpoolPositionStoreFailed,
    SpoolQuarantineFailed, SpoolQuarantined, SpoolUndecodableKeepFailed, SpoolUndecodableKept,
};

const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Records read from disk at once.
const READ_BATCH: usize = 512;

pub(super) struct Handle {
    stop: CancellationToken,
    /// How long records in flight may take to finish once stopped, in milliseconds.
    grace_ms: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Asks the forwarder to stop and waits for it: records in flight get `grace` to
    /// finish, then the position is stored.
    pub(super) async fn stop(self, grace: Duration) {
        let millis = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self.grace_ms.store(millis, Ordering::Release);
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "spool forwarder ended abnormally");
        }
    }
}

/// Starts the forwarder on `tracker`; it stops when `cancel` fires (records in flight
/// then get no grace) or through [`Handle::stop`].
pub(super) fn start(
    shared: Arc<Shared>,
    sinks: Arc<SinkSet>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Handle {
    let stop = cancel.child_token();
    let grace_ms = Arc::new(AtomicU64::new(0));
    let task = tracker.spawn(run(shared, sinks, stop.clone(), grace_ms.clone()));
    Handle {
        stop,
        grace_ms,
        task,
    }
}

struct Pending {
    /// The entry as it is in the log, for the quarantine.
    frame: Frame,
    key: String,
    envelope: Envelope,
    /// Sinks that confirmed the record before it was spooled.
    confirmed_before: Vec<&'static str>,
}

/// A record that left the forwarder: every sink confirmed it, or some quarantined it.
struct Released {
    seq: u64,
    key: String,
    quarantined: bool,
}

type Forwarding = BoxFuture<'static, Released>;

async fn run(
    shared: Arc<Shared>,
    sinks: Arc<SinkSet>,
    stopped: CancellationToken,
    grace_ms: Arc<AtomicU64>,
) {
    let grace = || Duration::from_millis(grace_ms.load(Ordering::Acquire));
    let mut committed = shared.committed.subscribe();
    let window = shared.config.forward_concurrency.max(1);
    let start = shared.forwarded.load(Ordering::Acquire);
    let mut reader = Some(Reader::new(&shared.dir, shared.index.clone(), start));
    let mut read_up_to = start;
    let mut exhausted = false;
    let mut in_flight: FuturesUnordered<Forwarding> = FuturesUnordered::new();
    // Per order key: the records waiting behind the one in flight.
    let mut queues: HashMap<String, VecDeque<Pending>> = HashMap::new();
    // Read and not yet confirmed: sequence number → append time.
    let mut outstanding: BTreeMap<u64, u64> = BTreeMap::new();
    let mut stored = start;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let grace = 'forwarding: loop {
        // Records in flight take the window; those queued behind a record of their
        // container have a window of their own, so that a container whose record is
        // being retried holds its own later records back, not everybody's.
        let queued = outstanding.len().saturating_sub(in_flight.len());
        let room = window
            .saturating_sub(in_flight.len())
            .min(window.saturating_sub(queued));
        // Read in batches: not for every single record confirmed.
        let worth_reading = room > 0 && (room >= window / 8 || outstanding.is_empty());
        if worth_reading && !exhausted && read_up_to < *committed.borrow() {
            let until = *committed.borrow_and_update();
            let taken = reader.take().expect("reader is returned after every read");
            let read = tokio::task::spawn_blocking(move || {
                let mut taken = taken;
                let frames = read_batch(&mut taken, until, room.min(READ_BATCH));
                (taken, frames)
            })
            .await;
            let Ok((back, frames)) = read else {
                tracing::error!("spool reader task failed; forwarding stops");
                break Duration::ZERO;
            };
            // Past a gap left by a refused batch, the reader stands beyond the last
            // entry it returned.
            let position = back.position();
            reader = Some(back);
            let frames = match frames {
                Ok(frames) => frames,
                Err(error) => {
                    tracing::error!(error = %error, "reading the spool failed; retrying");
                    tokio::time::sleep(shared.config.retry_initial_backoff).await;
                    continue;
                }
            };
            exhausted = frames.len() < room.min(READ_BATCH);
            for frame in frames {
                match codec::decode(&frame.payload) {
                    Ok(envelope) => {
                        read_up_to = frame.seq + 1;
                        let key = envelope.order_key().to_owned();
                        outstanding.insert(frame.seq, frame.appended_at_ms);
                        let pending = Pending {
                            confirmed_before: shared.take_confirmed_before(frame.seq),
                            frame,
                            key: key.clone(),
                            envelope,
                        };
                        match queues.get_mut(&key) {
                            Some(queue) => queue.push_back(pending),
                            None => {
                                queues.insert(key, VecDeque::new());
                                in_flight.push(forward(shared.clone(), sinks.clone(), pending));
                            }
                        }
                    }
                    Err(error) => {
                        // It passed its checksum, so it is what was written: a record
                        // this version cannot read. Keeping it in the log would stop the
                        // spool, so it is kept aside before the forwarder moves on.
                        SpoolEntryUndecodable {
                            seq: frame.seq,
                            error: &error,
                        }
                        .emit();
                        if !keep_undecodable(&shared, &frame, &stopped).await {
                            // Stopping before it was kept: the position stays before it.
                            break 'forwarding grace();
                        }
                        read_up_to = frame.seq + 1;
                        shared.remove_entries(1);
                    }
                }
            }
            read_up_to = read_up_to.max(position);
            if outstanding.is_empty() {
                advance(&shared, read_up_to);
            }
            continue;
        }
        tokio::select! {
            Some(Released { seq, key, quarantined }) = in_flight.next() => {
                outstanding.remove(&seq);
                shared.remove_entries(1);
                if !quarantined {
                    shared.metrics.emit(SpoolForwarded);
                }
                let next = queues.get_mut(&key).and_then(VecDeque::pop_front);
                match next {
                    Some(next) => in_flight.push(forward(shared.clone(), sinks.clone(), next)),
                    None => {
                        queues.remove(&key);
                    }
                }
                let confirmed = outstanding.keys().next().copied().unwrap_or(read_up_to);
                advance(&shared, confirmed);
            }
            changed = committed.changed(), if exhausted || read_up_to >= *committed.borrow() || !worth_reading => {
                if changed.is_err() {
                    break Duration::ZERO;
                }
                exhausted = false;
            }
            _ = tick.tick() => {
                update_age(&shared, &outstanding);
                stored = store(&shared, stored).await;
            }
            _ = stopped.cancelled() => {
                break grace();
            }
        }
    };

    // Stopping: let what is in flight finish within the grace period, then store.
    let drain = async {
        while let Some(released) = in_flight.next().await {
            outstanding.remove(&released.seq);
            shared.remove_entries(1);
            if !released.quarantined {
                shared.metrics.emit(SpoolForwarded);
            }
            let confirmed = outstanding.keys().next().copied().unwrap_or(read_up_to);
            advance(&shared, confirmed);
        }
    };
    let _ = tokio::time::timeout(grace, drain).await;
    store(&shared, stored).await;
}

/// Keeps `frame` under `undecodable/`, retrying until it is on disk; false when asked to
/// stop first.
async fn keep_undecodable(
    shared: &Arc<Shared>,
    frame: &Frame,
    stopped: &CancellationToken,
) -> bool {
    let mut backoff = shared.config.retry_policy().backoff();
    loop {
        let dir = shared.dir.clone();
        let task_frame = frame.clone();
        let kept = tokio::task::spawn_blocking(move || undecodable::keep(&dir, &task_frame)).await;
        let error = match kept {
            Ok(Ok(path)) => {
                shared.metrics.emit(SpoolUndecodableKept {
                    seq: frame.seq,
                    path: &path,
                });
                return true;
            }
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        SpoolUndecodableKeepFailed {
            seq: frame.seq,
            error: &error,
        }
        .emit();
        if !backoff.wait(stopped).await {
            return false;
        }
    }
}

fn read_batch(reader: &mut Reader, until: u64, max: usize) -> std::io::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    while frames.len() < max {
        match reader.next(until)? {
            Some(frame) => frames.push(frame),
            None => break,
        }
    }
    Ok(frames)
}

/// Everything before `confirmed` is forwarded.
fn advance(shared: &Shared, confirmed: u64) {
    shared.forwarded.fetch_max(confirmed, Ordering::AcqRel);
}

fn update_age(shared: &Shared, outstanding: &BTreeMap<u64, u64>) {
    let age = outstanding.values().next().map_or(0.0, |&appended| {
        unix_millis().saturating_sub(appended) as f64 / 1000.0
    });
    shared.metrics.emit(SpoolOldestEntryAge(age));
}

/// Stores the forwarded position if it moved since `stored`, then deletes the segments
/// behind it. Returns the position now stored.
async fn store(shared: &Arc<Shared>, stored: u64) -> u64 {
    let forwarded = shared.forwarded.load(Ordering::Acquire);
    if forwarded <= stored {
        return stored;
    }
    let task_shared = shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        checkpoint::store(&task_shared.dir, forwarded)?;
        log::remove_forwarded(&task_shared.dir, &task_shared.index, forwarded)
    })
    .await;
    match result {
        Ok(Ok(freed)) => {
            shared.remove_bytes(freed);
            forwarded
        }
        Ok(Err(error)) => {
            SpoolPositionStoreFailed { error: &error }.emit();
            stored
        }
        Err(error) => {
            SpoolPositionStoreFailed { error: &error }.emit();
            stored
        }
    }
}

/// Writes one record to every sink that has not confirmed it yet, until each has
/// confirmed it or it was quarantined for that sink.
fn forward(shared: Arc<Shared>, sinks: Arc<SinkSet>, pending: Pending) -> Forwarding {
    Box::pin(async move {
        let config = &shared.config;
        let seq = pending.frame.seq;
        let mut backoff = config.retry_policy().backoff();
        let mut waiting: Vec<&'static str> = sinks
            .names()
            .filter(|name| !pending.confirmed_before.contains(name))
            .collect();
        let mut quarantined = false;
        while !waiting.is_empty() {
            if backoff.attempts() > 0 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            let attempts = backoff.attempted();
            let last_attempt = backoff.exhausted();
            let writes = sinks
                .write(
                    &pending.envelope,
                    |name| waiting.contains(&name),
                    config.forward_timeout,
                    Purpose::Forward {
                        seq,
                        attempts,
                        last_attempt,
                    },
                )
                .await;
            let mut still_waiting = Vec::with_capacity(waiting.len());
            for write in writes {
                let sink = write.sink;
                let Some(error) = write.outcome.error() else {
                    continue;
                };
                // The sink set decided alike when it logged the failure (`will_retry`).
                if error.is_permanent() || last_attempt {
                    let reason = if error.is_permanent() {
                        error.reason()
                    } else {
                        "max_attempts"
                    };
                    let note = Note {
                        seq,
                        sink: sink.to_owned(),
                        reason: reason.to_owned(),
                        detail: error.to_string(),
                        attempts,
                        quarantined_at: now_rfc3339(),
                        order_key: pending.key.clone(),
                    };
                    keep_quarantined(&shared, &pending.frame, &note).await;
                    quarantined = true;
                } else {
                    still_waiting.push(sink);
                }
            }
            waiting = still_waiting;
        }
        Released {
            seq,
            key: pending.key,
            quarantined,
        }
    })
}

/// Quarantines `frame` for the sink `note` names, retrying until it is on disk (the
/// record stays in the log until then), then counts and logs it.
async fn keep_quarantined(shared: &Arc<Shared>, frame: &Frame, note: &Note) {
    let mut backoff = shared.config.retry_policy().backoff();
    loop {
        let (dir, task_frame, task_note) = (shared.dir.clone(), frame.clone(), note.clone());
        let kept =
            tokio::task::spawn_blocking(move || quarantine::keep(&dir, &task_frame, &task_note))
                .await;
        let error = match kept {
            Ok(Ok(path)) => {
                shared.metrics.emit(SpoolQuarantined {
                    seq: note.seq,
                    sink: &note.sink,
                    reason: &note.reason,
                    attempts: note.attempts,
                    order_key: &note.order_key,
                    error: &note.detail,
                    path: &path,
                });
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        SpoolQuarantineFailed {
            seq: note.seq,
            sink: &note.sink,
            error: &error,
        }
        .emit();
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
