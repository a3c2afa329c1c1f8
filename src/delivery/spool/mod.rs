//! A durable local spool: records are appended to a write-ahead log on local disk
//! (fsync'd, group-committed) and a forwarder publishes them to the sinks in order,
//! releasing them only once every sink confirmed. It lets the bridge answer while a
//! broker is away, and keeps what it answered for through crashes.
//!
//! - [`crate::store::log`]: the segmented log it writes to, its frames, its recovery,
//!   reading entries back and the forwarded position;
//! - [`writer`]: the group-commit thread behind [`Spool::append`];
//! - [`forwarder`]: the task that publishes spooled records;
//! - [`undecodable`]: where records this version cannot decode are kept;
//! - [`quarantine`]: where records a sink refuses for good are kept, and taken back;
//! - [`aside`]: writing a file kept aside from the log, whole or not at all.

mod aside;
mod forwarder;
pub mod quarantine;
pub mod undecodable;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SinkSet;
use crate::config::BuildContext;
use crate::events::envelope::codec;
use crate::events::Envelope;
use crate::retry::RetryPolicy;
use crate::store::log::{self, checkpoint};
use crate::telemetry::events::{SpoolBytes, SpoolEntries, SpoolRecovered};
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of the spool; unset (the default) means no spool. It must be on a
    /// disk that survives a restart of the process (a persistent volume in Kubernetes).
    pub dir: Option<PathBuf>,
    /// Bytes the spool may take on disk; when full, webhooks are answered 503.
    pub max_bytes: u64,
    /// Size past which the log starts a new segment file; whole segments are deleted
    /// once forwarded.
    pub segment_bytes: u64,
    /// Records the forwarder keeps in flight at once (records of one container are
    /// always forwarded one after the other).
    pub forward_concurrency: usize,
    /// How long every sink together may take to confirm one forwarded record.
    #[serde(with = "humantime_serde")]
    pub forward_timeout: Duration,
    /// First wait before forwarding a record again after a failure; it doubles up to
    /// `retry_max_backoff`.
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Attempts to forward one record to one sink before it is quarantined; 0 (the
    /// default) retries a transient failure (a broker away) for as long as it lasts.
    /// A permanent refusal (too large, not authorized, no such topic or exchange) is
    /// quarantined at once whatever this says.
    pub max_attempts: u32,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: 1024 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            forward_concurrency: 256,
            forward_timeout: Duration::from_secs(10),
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(30),
            max_attempts: 0,
        }
    }
}

impl SpoolConfig {
    /// How the forwarder retries a record (and keeps one aside): the configured
    /// backoff, and `max_attempts` unless it is 0.
    pub fn retry_policy(&self) -> RetryPolicy {
        let policy = RetryPolicy::unbounded(self.retry_initial_backoff, self.retry_max_backoff);
        match self.max_attempts {
            0 => policy,
            n => policy.with_max_attempts(n),
        }
    }

    /// The spool in `dir`, opened as [`Spool::open`] does.
    pub fn build(&self, cx: &BuildContext) -> Result<Spool, SpoolError> {
        Spool::open(self, cx.metrics.clone())
    }

    /// What is wrong with these settings, one line per problem.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.dir.is_none() {
            return problems;
        }
        if self.segment_bytes < 4096 {
            problems.push("`spool.segment_bytes` must be at least 4096".into());
        }
        if self.max_bytes < 2 * self.segment_bytes {
            problems.push("`spool.max_bytes` must be at least twice `spool.segment_bytes`".into());
        }
        if self.forward_concurrency == 0 {
            problems.push("`spool.forward_concurrency` must be above 0".into());
        }
        if self.forward_timeout.is_zero() {
            problems.push("`spool.forward_timeout` must be above 0".into());
        }
        if self.retry_initial_backoff.is_zero()
            || self.retry_max_backoff < self.retry_initial_backoff
        {
            problems.push(
                "`spool.retry_initial_backoff` must be above 0 and at most `spool.retry_max_backoff`"
                    .into(),
            );
        }
        problems
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("the spool is closed")]
    Closed,
    #[error("spool I/O failed: {0}")]
    Io(String),
    #[error("{0} is in use by another process (one process per spool directory)")]
    Locked(String),
}

/// Takes the directory's lock file, or says that another process holds it.
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, SpoolError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SpoolError::Io(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(SpoolError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(SpoolError::Io(format!("{}: {e}", path.display())))
        }
    }
}

/// What `/readyz` shows of the spool.
#[derive(Debug, Clone, Serialize)]
pub struct SpoolState {
    pub accepting: bool,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub oldest_entry_age_seconds: f64,
}

/// State shared by the writer, the forwarder and the handle.
struct Shared {
    dir: PathBuf,
    config: SpoolConfig,
    metrics: Metrics,
    index: log::SegmentIndex,
    /// Bytes on disk plus bytes of appends under way.
    bytes: AtomicU64,
    /// Records appended and not yet forwarded.
    entries: AtomicU64,
    /// The first sequence number not yet durable: everything before it may be read.
    committed: watch::Sender<u64>,
    /// Everything before it was confirmed by every sink.
    forwarded: AtomicU64,
    /// False once the writer stopped.
    writable: AtomicBool,
    /// Set when an append was refused for want of room, until room is freed.
    full: AtomicBool,
    /// Sinks that already confirmed a spooled record, by sequence number: the forwarder
    /// sends the record only to the others. Kept in memory only: after a restart the
    /// record goes to every sink again (at least once).
    confirmed_before: Mutex<HashMap<u64, Vec<&'static str>>>,
}

impl Shared {
    /// The sinks that confirmed entry `seq` before it was spooled, forgetting them.
    fn take_confirmed_before(&self, seq: u64) -> Vec<&'static str> {
        self.confirmed_before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq)
            .unwrap_or_default()
    }

    fn add_entries(&self, n: u64) {
        self.metrics.emit(SpoolEntries(add(&self.entries, n)));
    }

    fn remove_entries(&self, n: u64) {
        self.metrics
            .emit(SpoolEntries(saturating_sub(&self.entries, n)));
    }

    fn add_bytes(&self, n: u64) {
        self.metrics.emit(SpoolBytes(add(&self.bytes, n)));
    }

    fn remove_bytes(&self, n: u64) {
        self.metrics
            .emit(SpoolBytes(saturating_sub(&self.bytes, n)));
        if n > 0 {
            self.full.store(false, Ordering::Release);
        }
    }

    /// Takes room for `n` bytes, unless that would pass `max_bytes`.
    fn reserve(&self, n: u64) -> Result<(), SpoolError> {
        let max = self.config.max_bytes;
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= max).then_some(used + n)
            })
            .map_err(|_| {
                self.full.store(true, Ordering::Release);
                SpoolError::Full { max_bytes: max }
            })?;
        self.metrics
            .emit(SpoolBytes(self.bytes.load(Ordering::Acquire)));
        Ok(())
    }
}

/// Adds `n` to `counter` and returns what it holds now.
fn add(counter: &AtomicU64, n: u64) -> u64 {
    counter.fetch_add(n, Ordering::AcqRel) + n
}

/// Takes `n` from `counter`, stopping at zero, and returns what is left: a counter that
/// wrapped would make the spool look full for good.
fn saturating_sub(counter: &AtomicU64, n: u64) -> u64 {
    let before = counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            Some(now.saturating_sub(n))
        })
        .expect("the update always succeeds");
    if before < n {
        tracing::error!(before, n, "a spool counter would have gone below zero");
    }
    before.saturating_sub(n)
}

pub struct Spool {
    shared: Arc<Shared>,
    writer: writer::Writer,
    forwarder: Mutex<Option<forwarder::Handle>>,
    /// Held open with an exclusive lock for as long as the spool is open: two processes
    /// appending to one directory would corrupt it. The system drops the lock when the
    /// process ends, also on `kill -9`.
    _lock: std::fs::File,
}

impl Spool {
    /// Opens the spool in `config.dir`, recovering what a previous run left: torn tails
    /// are cut and counted, unforwarded records counted. Forwarding starts with
    /// [`Spool::start_forwarding`].
    pub fn open(config: &SpoolConfig, metrics: Metrics) -> Result<Self, SpoolError> {
        let dir = config
            .dir
            .clone()
            .ok_or_else(|| SpoolError::Io("`spool.dir` is not set".into()))?;
        let io = |e: std::io::Error| SpoolError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = lock_dir(&dir)?;
        let forwarded = checkpoint::load(&dir);
        let (log, recovery) = log::Log::open(&dir, config.segment_bytes, forwarded).map_err(io)?;
        metrics.emit(SpoolRecovered {
            entries: recovery.entries,
            torn_tails: recovery.torn_tails,
            torn_bytes: recovery.torn_bytes,
        });
        let (committed, _) = watch::channel(log.next_seq());
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            index: log.index().clone(),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            committed,
            forwarded: AtomicU64::new(forwarded),
            writable: AtomicBool::new(true),
            full: AtomicBool::new(false),
            confirmed_before: Mutex::default(),
        });
        shared.add_bytes(log.index().total_bytes());
        shared.add_entries(recovery.entries);
        let writer = writer::Writer::start(log, shared.clone()).map_err(io)?;
        Ok(Self {
            shared,
            writer,
            forwarder: Mutex::new(None),
            _lock: lock,
        })
    }

    /// Starts publishing spooled records to `sinks`, oldest first, on `tracker`, until
    /// `cancel` fires or [`Spool::close`].
    pub fn start_forwarding(
        &self,
        sinks: Arc<SinkSet>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let handle = forwarder::start(self.shared.clone(), sinks, cancel, tracker);
        *self.forwarder.lock().expect("forwarder lock poisoned") = Some(handle);
    }

    /// Appends `envelope` and returns once it is on disk.
    pub async fn append(&self, envelope: &Envelope) -> Result<(), SpoolError> {
        self.writer
            .append(codec::encode(envelope), Vec::new())
            .await
    }

    /// Appends `envelope`, which the sinks named `confirmed_by` already confirmed: it is
    /// forwarded to the other sinks only (to all of them after a restart).
    pub async fn append_confirmed_by(
        &self,
        envelope: &Envelope,
        confirmed_by: Vec<&'static str>,
    ) -> Result<(), SpoolError> {
        self.writer
            .append(codec::encode(envelope), confirmed_by)
            .await
    }

    /// Appends every quarantined record back to the log, once per record however many
    /// sinks refused it, removing each from the quarantine once it is on disk. The
    /// forwarder sends them to every sink. Returns how many were requeued.
    pub async fn requeue_quarantined(&self) -> Result<usize, SpoolError> {
        let dir = self.shared.dir.clone();
        let io = |e: std::io::Error| SpoolError::Io(format!("{}: {e}", dir.display()));
        let mut requeued = 0;
        for (seq, files) in quarantine::list_by_record(&dir).map_err(io)? {
            let payload = quarantine::payload(&files[0].path).map_err(io)?;
            self.writer.append(payload, Vec::new()).await?;
            for file in &files {
                quarantine::remove(&file.path).map_err(io)?;
            }
            tracing::info!(seq, "requeued a quarantined spool record");
            requeued += 1;
        }
        Ok(requeued)
    }

    /// True while records wait to be forwarded: a newer record must queue behind them.
    pub fn has_backlog(&self) -> bool {
        self.shared.entries.load(Ordering::Acquire) > 0
    }

    /// False once the writer stopped, and from a refusal for want of room until
    /// forwarding frees some.
    pub fn is_accepting(&self) -> bool {
        self.shared.writable.load(Ordering::Acquire) && !self.shared.full.load(Ordering::Acquire)
    }

    pub fn state(&self) -> SpoolState {
        SpoolState {
            accepting: self.is_accepting(),
            entries: self.shared.entries.load(Ordering::Acquire),
            bytes: self.shared.bytes.load(Ordering::Acquire),
            max_bytes: self.shared.config.max_bytes,
            oldest_entry_age_seconds: self.shared.metrics.oldest_spooled_age_seconds(),
        }
    }

    /// Stops forwarding (letting records in flight finish within `grace`), stores the
    /// forwarded position, and closes the log after the appends already queued.
    /// What is left is forwarded by the next run.
    pub async fn close(&self, grace: Duration) {
        let forwarder = self
            .forwarder
            .lock()
            .expect("forwarder lock poisoned")
            .take();
        if let Some(forwarder) = forwarder {
            forwarder.stop(grace).await;
        }
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests;
