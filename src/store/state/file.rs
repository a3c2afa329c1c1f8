//! States in a line file, one JSON line per commit: `{"reference", "version", "at"
//! (unix seconds), "value" (base64)}`, the last line of a reference being its state.
//! Memory holds where each state's value is in the file, not the value: a state is
//! read from the file (the page cache, mostly) when its reference has an update, so
//! that a hundred thousand references of a few kilobytes each do not sit in the heap.
//! Opening reads the file back (dropping states older than the time to live, and the
//! oldest beyond the capacity) and rewrites it with the live states alone, which also
//! cuts a line a crash left half-written. Commits go through the group-commit
//! [`Appender`]: its writer thread compares each commit's expected version with the
//! state held, writes the commits that match together and only then makes them the
//! states read. A commit is written but not fsync'd: it survives the process (a crash,
//! `kill -9`, a restart), and what a crash of the machine takes back costs no update,
//! since a state older than the events already published only makes the next update
//! publish those changes again, with the same ids. The file is fsync'd when the store
//! closes and at every compaction. Once as many lines were appended as the capacity, a
//! background thread rewrites the file with the live states, without holding commits
//! up but for the final rename.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{Commit, StateConfig, Version, Versioned};
use crate::clock::{unix_millis, unix_seconds};
use crate::store::appender::{AppendError, Appender, Target};
use crate::store::fs::{open_append, sync_parent_dir, temporary_path, write_or_cut_back};
use crate::telemetry::events::StateEvicted;
use crate::telemetry::Metrics;

/// The file under the storage directory that keeps the states across restarts.
pub const STATE_FILE: &str = "event-state.log";

/// One line of the file, as read back (the writer builds it with [`line`]).
#[derive(Deserialize)]
struct Line {
    reference: String,
    version: u64,
    at: u64,
    value: String,
}

#[derive(Clone, Copy)]
struct Entry {
    version: Version,
    /// When it was committed (unix seconds).
    at: u64,
    /// Where its value (the base64 text of its line) is in the file.
    value: Span,
}

/// A range of bytes of the state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    offset: u64,
    len: usize,
}

impl Span {
    fn read_from(self, file: &File) -> io::Result<Vec<u8>> {
        let mut text = vec![0; self.len];
        file.read_exact_at(&mut text, self.offset)?;
        Ok(text)
    }
}

/// The states held, bounded: beyond the capacity the least recently committed go.
struct Entries {
    /// Each state with its place in the commit order. A name is one allocation, shared
    /// with `by_order`: with a hundred thousand states, names are much of the memory.
    by_reference: HashMap<Arc<str>, (u64, Entry)>,
    /// Every reference held, by the order its state was committed in (loading the file
    /// reads the lines in that order): the eviction order. A sequence rather than the
    /// commit time, so that two commits within one second keep their order.
    by_order: BTreeMap<u64, Arc<str>>,
    next_order: u64,
    capacity: usize,
    ttl: Duration,
    /// The file the spans are in, for reading (set by the compaction at open). Taken
    /// with a span under the lock, it is read without it: a file replaced meanwhile
    /// stays readable where the span says.
    reader: Option<Arc<File>>,
}

impl Entries {
    fn new(config: &StateConfig) -> Self {
        Self {
            by_reference: HashMap::new(),
            by_order: BTreeMap::new(),
            next_order: 0,
            reader: None,
            capacity: usize::try_from(config.capacity)
                .unwrap_or(usize::MAX)
                .max(1),
            ttl: config.ttl,
        }
    }

    fn is_fresh(&self, at: u64, now: u64) -> bool {
        now.saturating_sub(at) < self.ttl.as_secs().max(1)
    }

    fn get(&self, reference: &str) -> Option<&Entry> {
        self.by_reference.get(reference).map(|(_, entry)| entry)
    }

    /// The state of `reference` unless it expired (it is then dropped); the second
    /// value says whether it was.
    fn live(&mut self, reference: &str, now: u64) -> (Option<&Entry>, bool) {
        let Some(entry) = self.get(reference) else {
            return (None, false);
        };
        if self.is_fresh(entry.at, now) {
            return (self.get(reference), false);
        }
        self.remove(reference);
        (None, true)
    }

    /// The version last held for `reference`, expired or not (a new one goes above).
    fn last_version(&self, reference: &str) -> Option<Version> {
        self.get(reference).map(|e| e.version)
    }

    fn remove(&mut self, reference: &str) {
        if let Some((order, _)) = self.by_reference.remove(reference) {
            self.by_order.remove(&order);
        }
    }

    /// Holds `entry` as the state of `reference`, as the newest commit; how many
    /// states went to make room.
    fn insert(&mut self, reference: impl Into<Arc<str>>, entry: Entry) -> u64 {
        let reference: Arc<str> = reference.into();
        self.remove(&reference);
        let order = self.next_order;
        self.next_order += 1;
        self.by_order.insert(order, reference.clone());
        self.by_reference.insert(reference, (order, entry));
        let mut evicted = 0;
        while self.by_reference.len() > self.capacity {
            let Some((_, oldest)) = self.by_order.pop_first() else {
                break;
            };
            self.by_reference.remove(&oldest);
            evicted += 1;
        }
        evicted
    }

    /// Drops every expired state; how many. Commit times follow the commit order but
    /// for a clock stepped back, when a state may outlive its time to live until a
    /// read finds it expired.
    fn drop_expired(&mut self, now: u64) -> u64 {
        let expired: Vec<Arc<str>> = self
            .by_order
            .values()
            .take_while(|reference| {
                self.get(reference)
                    .is_some_and(|entry| !self.is_fresh(entry.at, now))
            })
            .cloned()
            .collect();
        for reference in &expired {
            self.remove(reference);
        }
        expired.len() as u64
    }

    /// Every state, oldest first.
    fn snapshot(&self) -> Vec<(Arc<str>, Entry)> {
        self.by_order
            .values()
            .filter_map(|reference| Some((reference.clone(), *self.get(reference)?)))
            .collect()
    }

    /// After a compaction, the new file is `reader`: the values the snapshot rewrote
    /// are at `moved`; those committed after it (at or beyond `covered` in the old
    /// file) follow the snapshot, which took `snapshot_len` bytes.
    fn relocate(
        &mut self,
        moved: &HashMap<Arc<str>, (Version, Span)>,
        covered: u64,
        snapshot_len: u64,
        reader: Arc<File>,
    ) {
        self.reader = Some(reader);
        let mut lost = Vec::new();
        for (reference, (_, entry)) in &mut self.by_reference {
            if entry.value.offset >= covered {
                entry.value.offset = entry.value.offset - covered + snapshot_len;
            } else if let Some((_, span)) = moved
                .get(reference)
                .filter(|(version, _)| *version == entry.version)
            {
                entry.value = *span;
            } else {
                // Not in the snapshot, nor committed after it: cannot be, but a state
                // whose place is unknown is better forgotten (its next update publishes
                // its milestones as new) than read from the wrong place.
                lost.push(reference.clone());
            }
        }
        for reference in lost {
            self.remove(&reference);
        }
    }
}

/// What the writer thread and the compactor share.
struct Shared {
    path: PathBuf,
    /// The open file. The writer holds it from writing a batch until its states are
    /// held, so that whoever holds it sees every line of the file in `entries`.
    file: Mutex<File>,
    entries: Mutex<Entries>,
    /// Lines appended since the last compaction.
    appended: AtomicU64,
    compact_after: u64,
    /// Compactions done, the one at start included.
    compactions: AtomicU64,
    metrics: Metrics,
}

impl Shared {
    fn file(&self) -> MutexGuard<'_, File> {
        self.file.lock().expect("state file lock poisoned")
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().expect("state lock poisoned")
    }

    /// Rewrites the file with the live states, oldest first, and appends from there;
    /// how many were kept. Commits go on meanwhile but for the final rename.
    fn compact(&self) -> io::Result<usize> {
        let (covered, live, expired, old) = {
            let file = self.file();
            // Bytes below the length seen under the lock are whole batches: a batch is
            // written, or cut back after a failed write, with the lock held.
            let covered = file.metadata()?.len();
            let old = file.try_clone()?;
            let mut entries = self.entries();
            let expired = entries.drop_expired(unix_seconds());
            (covered, entries.snapshot(), expired, old)
        };
        self.metrics.emit(StateEvicted { count: expired });
        let temp = temporary_path(&self.path);
        let mut out = io::BufWriter::new(File::create(&temp)?);
        // The old file only grows until the rename: the snapshot's values are read
        // from it where the snapshot says.
        let mut moved = HashMap::with_capacity(live.len());
        let mut written = 0u64;
        for (reference, entry) in &live {
            let text = entry.value.read_from(&old)?;
            let (line, at) = line(reference, entry.version, entry.at, &text);
            out.write_all(&line)?;
            let span = Span {
                offset: written + at as u64,
                len: text.len(),
            };
            moved.insert(reference.clone(), (entry.version, span));
            written += line.len() as u64;
        }
        let mut out = out.into_inner().map_err(|e| e.into_error())?;
        // The lines committed since the snapshot follow, most of them without holding
        // commits up, the last ones under the lock; each part only up to a length read
        // under the lock.
        let settled = self.file().metadata()?.len();
        copy_range(&old, covered, settled, &mut out)?;
        // The bulk is made durable before commits are held up; under the lock only the
        // last lines are copied and synced.
        out.sync_all()?;
        {
            let mut file = self.file();
            let end = file.metadata()?.len();
            copy_range(&old, settled, end, &mut out)?;
            out.sync_data()?;
            // Opened before the rename, so that a failure leaves the writer on the file
            // it had.
            let reopened = open_append(&temp)?;
            let reader = Arc::new(File::open(&temp)?);
            std::fs::rename(&temp, &self.path)?;
            // Renamed, the new file is the one to write and read, whatever follows.
            *file = reopened;
            self.entries().relocate(&moved, covered, written, reader);
            self.appended.store(0, Ordering::Relaxed);
            if let Err(error) = sync_parent_dir(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "the rewritten reference state file may not survive a crash of the machine");
            }
        }
        self.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(live.len())
    }
}

/// Appends the bytes of `from` between `start` and `end` to `out`.
fn copy_range(from: &File, start: u64, end: u64, out: &mut File) -> io::Result<()> {
    let mut buffer = vec![0; 64 * 1024];
    let mut at = start;
    while at < end {
        let want = usize::try_from(end - at).map_or(buffer.len(), |left| left.min(buffer.len()));
        from.read_exact_at(&mut buffer[..want], at)?;
        out.write_all(&buffer[..want])?;
        at += want as u64;
    }
    Ok(())
}

/// A commit on its way to the writer thread.
struct Proposal {
    reference: String,
    expected: Option<Version>,
    value: Vec<u8>,
    /// Told what became of the commit once its batch is written.
    outcome: Option<oneshot::Sender<Commit>>,
}

/// The writer thread's side: compares, writes, then holds.
struct Writer {
    shared: Arc<Shared>,
    /// Wakes the compactor; dropped with the writer, which ends the compactor.
    wake: SyncSender<()>,
    /// False after a failed batch left the file in a state it could not undo.
    usable: bool,
}

impl Target for Writer {
    type Item = Proposal;

    fn write_batch(&mut self, batch: &mut [Proposal]) -> io::Result<()> {
        let shared = &self.shared;
        let mut file = shared.file();
        let now = unix_seconds();
        let floor = unix_millis();
        // The version each reference will be at once this batch is written, so that
        // two commits of one reference in a batch are compared as if one after the
        // other.
        let mut decided: HashMap<&str, Option<Version>> = HashMap::new();
        let mut accepted: Vec<(usize, Version)> = Vec::new();
        let mut evicted = 0;
        {
            let mut entries = shared.entries();
            for (index, proposal) in batch.iter().enumerate() {
                let reference = proposal.reference.as_str();
                let (current, last) = match decided.get(reference) {
                    Some(version) => (*version, *version),
                    None => {
                        // Read before an expired state is dropped: the new version
                        // goes above it all the same.
                        let last = entries.last_version(reference);
                        let (live, expired) = entries.live(reference, now);
                        evicted += u64::from(expired);
                        (live.map(|e| e.version), last)
                    }
                };
                if current != proposal.expected {
                    continue;
                }
                let version = Version::next(last, floor);
                decided.insert(reference, Some(version));
                accepted.push((index, version));
            }
        }
        shared.metrics.emit(StateEvicted { count: evicted });
        let mut evicted = 0;
        let mut held = Vec::with_capacity(accepted.len());
        if !accepted.is_empty() {
            let len = file.metadata()?.len();
            let mut buffer = Vec::new();
            for (index, version) in accepted {
                let proposal = &batch[index];
                let text = STANDARD.encode(&proposal.value);
                let (line, at) = line(&proposal.reference, version, now, text.as_bytes());
                let value = Span {
                    offset: len + (buffer.len() + at) as u64,
                    len: text.len(),
                };
                buffer.extend_from_slice(&line);
                held.push((
                    index,
                    Entry {
                        version,
                        at: now,
                        value,
                    },
                ));
            }
            // Nothing of a batch that fails is held: it is cut back.
            if let Err(torn) = write_or_cut_back(&mut file, len, |file| file.write_all(&buffer)) {
                self.usable = torn.cut_back;
                return Err(torn.error);
            }
        }
        let committed_count = held.len();
        let mut committed = vec![None; batch.len()];
        {
            let mut entries = shared.entries();
            for (index, entry) in held {
                committed[index] = Some(entry.version);
                evicted += entries.insert(batch[index].reference.as_str(), entry);
            }
        }
        drop(file);
        shared.metrics.emit(StateEvicted { count: evicted });
        for (proposal, version) in batch.iter_mut().zip(committed) {
            if let Some(outcome) = proposal.outcome.take() {
                let _ = outcome.send(version.map_or(Commit::Conflict, Commit::Committed));
            }
        }
        let written = committed_count as u64;
        let appended = shared.appended.fetch_add(written, Ordering::Relaxed) + written;
        if written > 0 && appended >= shared.compact_after {
            // Full: a wake-up is already pending.
            let _ = self.wake.try_send(());
        }
        Ok(())
    }

    fn usable(&self) -> bool {
        if !self.usable {
            tracing::error!(
                "reference states are no longer written after a failed write that could not be undone; restart to recover"
            );
        }
        self.usable
    }

    fn finish(&mut self) {
        // Commits are not fsync'd one batch at a time (see the module's comment): the
        // states written so far are made durable once, on the way out.
        if let Err(error) = self.shared.file().sync_data() {
            tracing::warn!(%error, "the reference states could not be fsync'd on close");
        }
    }
}

/// The states of a file, the writer that commits to it and the thread that compacts
/// it.
pub struct StateFile {
    shared: Arc<Shared>,
    appender: Appender<Writer>,
    compactor: Mutex<Option<JoinHandle<()>>>,
}

impl StateFile {
    /// Reads `path` back (creating it if need be), compacts it, and starts its writer
    /// and compactor threads.
    pub fn open(path: &Path, config: &StateConfig, metrics: &Metrics) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut entries = Entries::new(config);
        let evicted = read_back(path, &mut entries)?;
        metrics.emit(StateEvicted { count: evicted });
        let loaded = entries.by_reference.len();
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            file: Mutex::new(open_append(path)?),
            entries: Mutex::new(entries),
            appended: AtomicU64::new(0),
            compact_after: config.capacity.max(1),
            compactions: AtomicU64::new(0),
            metrics: metrics.clone(),
        });
        // Also cuts whatever a crash left after the last whole line, which the next
        // commit would otherwise be glued to.
        shared.compact()?;
        tracing::info!(path = %path.display(), loaded, "reference states read back");
        let (wake, woken) = mpsc::sync_channel(1);
        let compactor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("state-compactor".into())
                .spawn(move || run_compactor(&shared, &woken))?
        };
        let writer = Writer {
            shared: shared.clone(),
            wake,
            usable: true,
        };
        Ok(Self {
            shared,
            appender: Appender::start("state-writer", writer)?,
            compactor: Mutex::new(Some(compactor)),
        })
    }

    /// The state of `reference`, read from the file (from the page cache, mostly). A
    /// value that cannot be read is forgotten, so that the next commit, expecting
    /// none, is not refused for ever: its reference's milestones are then published as
    /// new (at least once, never not at all).
    pub fn get(&self, reference: &str) -> io::Result<Option<Versioned<Vec<u8>>>> {
        let mut entries = self.shared.entries();
        let (entry, expired) = entries.live(reference, unix_seconds());
        let found = entry.copied().zip(entries.reader.clone());
        drop(entries);
        if expired {
            self.shared.metrics.emit(StateEvicted { count: 1 });
        }
        let Some((entry, reader)) = found else {
            return Ok(None);
        };
        let read = entry.value.read_from(&reader).and_then(|text| {
            STANDARD
                .decode(text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        });
        match read {
            Ok(value) => Ok(Some(Versioned {
                version: entry.version,
                value,
            })),
            Err(error) => {
                let mut entries = self.shared.entries();
                if entries
                    .get(reference)
                    .is_some_and(|e| e.version == entry.version)
                {
                    entries.remove(reference);
                }
                Err(error)
            }
        }
    }

    pub async fn commit(
        &self,
        reference: &str,
        expected: Option<Version>,
        value: Vec<u8>,
    ) -> Result<Commit, AppendError> {
        let (outcome, answer) = oneshot::channel();
        self.appender
            .append(Proposal {
                reference: reference.to_owned(),
                expected,
                value,
                outcome: Some(outcome),
            })
            .await?;
        answer.await.map_err(|_| AppendError::Closed)
    }

    pub async fn close(&self) {
        if self.appender.close().await.is_err() {
            tracing::error!("the reference state writer stopped abnormally; the last commits may not have been written");
        }
        let compactor = self
            .compactor
            .lock()
            .expect("compactor lock poisoned")
            .take();
        if let Some(compactor) = compactor {
            let _ = tokio::task::spawn_blocking(move || compactor.join()).await;
        }
    }
}

/// The compactor: one rewrite per wake-up, until the writer is gone.
fn run_compactor(shared: &Shared, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        match shared.compact() {
            Ok(live) => {
                tracing::debug!(path = %shared.path.display(), live, "reference states compacted")
            }
            Err(e) => {
                // Tried again after another capacity's worth of lines, not in a loop.
                shared.appended.store(0, Ordering::Relaxed);
                tracing::warn!(path = %shared.path.display(), error = %e, "cannot compact the reference states; the file keeps growing until the next try");
            }
        }
    }
}

/// The line of a state whose value is `text` (its base64), and where `text` starts in
/// it: the value comes last, so that it can be found again without parsing the line.
fn line(reference: &str, version: Version, at: u64, text: &[u8]) -> (Vec<u8>, usize) {
    #[derive(Serialize)]
    struct Head<'a> {
        reference: &'a str,
        version: u64,
        at: u64,
    }
    let mut bytes = serde_json::to_vec(&Head {
        reference,
        version: version.0,
        at,
    })
    .unwrap_or_default();
    bytes.pop(); // the closing brace
    bytes.extend_from_slice(b",\"value\":\"");
    let start = bytes.len();
    bytes.extend_from_slice(text);
    bytes.extend_from_slice(b"\"}\n");
    (bytes, start)
}

/// A line read back: its reference, its entry's version and time, and where its value
/// (the base64 text) is within the line. `None` for anything but a whole, valid state.
fn parse_line(line: &[u8]) -> Option<(String, Version, u64, std::ops::Range<usize>)> {
    let parsed: Line = serde_json::from_slice(line).ok()?;
    STANDARD.decode(&parsed.value).ok()?;
    // Base64 needs no escaping in JSON: the text is in the line as it is, and last.
    let text = parsed.value.as_bytes();
    let end = line.len().checked_sub(2)?;
    let start = end.checked_sub(text.len())?;
    (line.get(start..end)? == text && line.get(end..)? == b"\"}").then_some(())?;
    Some((
        parsed.reference,
        Version(parsed.version),
        parsed.at,
        start..end,
    ))
}

/// Puts the states of `path` into `entries`, the last line of a reference winning;
/// how many were evicted (expired, or beyond the capacity).
fn read_back(path: &Path, entries: &mut Entries) -> io::Result<u64> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut evicted = 0;
    let mut offset = 0u64;
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        let start = offset;
        offset += line.len() as u64 + 1;
        // A line cut short by a crash, or garbage after it, is not a state.
        let Some((reference, version, at, text)) = parse_line(&line) else {
            continue;
        };
        let entry = Entry {
            version,
            at,
            value: Span {
                offset: start + text.start as u64,
                len: text.len(),
            },
        };
        let replaces = entries.by_reference.contains_key(reference.as_str());
        let dropped = entries.insert(reference, entry);
        // A state pushed out by a later one of its own reference was not evicted.
        if !replaces {
            evicted += dropped;
        }
    }
    Ok(evicted + entries.drop_expired(unix_seconds()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state::{Backend, StateStore};

    fn config(capacity: u64) -> StateConfig {
        StateConfig {
            ttl: Duration::from_secs(3600),
            capacity,
        }
    }

    fn open(path: &Path, capacity: u64, metrics: &Metrics) -> StateStore {
        StateStore::in_file(&config(capacity), path, metrics).unwrap()
    }

    fn sample(metrics: &Metrics, series: &str) -> f64 {
        metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series}"))
    }

    async fn value(store: &StateStore, reference: &str) -> Option<Vec<u8>> {
        store.get(reference).await.unwrap().map(|v| v.value)
    }

    fn committed(commit: Commit) -> Version {
        match commit {
            Commit::Committed(version) => version,
            Commit::Conflict => panic!("conflict"),
        }
    }

    #[tokio::test]
    async fn a_commit_on_the_version_read_advances_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let metrics = Metrics::new();
        let store = open(&path, 10, &metrics);
        assert_eq!(store.get("r1").await.unwrap(), None);
        let first = committed(store.commit("r1", None, b"one".to_vec()).await.unwrap());
        let read = store.get("r1").await.unwrap().unwrap();
        assert_eq!((read.version, read.value.as_slice()), (first, &b"one"[..]));

        // Committing on no state, or on a version no longer current, writes nothing.
        for stale in [None, Some(Version(first.0 - 1))] {
            assert_eq!(
                store.commit("r1", stale, b"lost".to_vec()).await.unwrap(),
                Commit::Conflict
            );
        }
        let second = committed(
            store
                .commit("r1", Some(first), b"two".to_vec())
                .await
                .unwrap(),
        );
        assert!(second > first);
        committed(
            store
                .commit("r\n2", None, vec![0, 255, b'\n'])
                .await
                .unwrap(),
        );
        store.close().await;

        let again = open(&path, 10, &metrics);
        let read = again.get("r1").await.unwrap().unwrap();
        assert_eq!((read.version, read.value.as_slice()), (second, &b"two"[..]));
        assert_eq!(value(&again, "r\n2").await, Some(vec![0, 255, b'\n']));
        assert_eq!(
            again
                .commit("r1", Some(first), b"x".to_vec())
                .await
                .unwrap(),
            Commit::Conflict,
            "the version read before the restart is stale"
        );
        assert_eq!(
            sample(&metrics, "vizion_bridge_event_state_conflicts_total"),
            3.0
        );
        assert_eq!(
            sample(
                &metrics,
                "vizion_bridge_event_state_lookups_total{result=\"miss\"}"
            ),
            1.0
        );
        assert_eq!(
            sample(
                &metrics,
                "vizion_bridge_event_state_lookups_total{result=\"hit\"}"
            ),
            3.0
        );
        again.close().await;
    }

    #[tokio::test]
    async fn of_racing_commits_on_one_version_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join(STATE_FILE), 10, &Metrics::new());
        let base = committed(store.commit("r", None, b"0".to_vec()).await.unwrap());
        let racers: Vec<_> = (0..20u8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.commit("r", Some(base), vec![n]).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (n, racer) in racers.into_iter().enumerate() {
            if let Commit::Committed(_) = racer.await.unwrap().unwrap() {
                winners.push(n as u8);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(value(&store, "r").await, Some(winners));
        store.close().await;
    }

    /// A line of the file as the writer makes it.
    fn state_line(reference: &str, version: u64, at: u64, value: &[u8]) -> Vec<u8> {
        line(
            reference,
            Version(version),
            at,
            STANDARD.encode(value).as_bytes(),
        )
        .0
    }

    #[tokio::test]
    async fn states_older_than_the_ttl_are_evicted_at_load_and_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let mut content = state_line("old", 7, unix_seconds() - 7200, b"old");
        content.extend(state_line("recent", 7, unix_seconds() - 60, b"recent"));
        std::fs::write(&path, content).unwrap();
        let metrics = Metrics::new();
        let store = open(&path, 10, &metrics);
        assert_eq!(value(&store, "old").await, None);
        assert_eq!(value(&store, "recent").await, Some(b"recent".to_vec()));
        assert_eq!(
            sample(&metrics, "vizion_bridge_event_state_evictions_total"),
            1.0
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted at load: {text}");
        // A state written again after it expired gets a version above the old one.
        let version = committed(store.commit("old", None, b"new".to_vec()).await.unwrap());
        assert!(version > Version(7));

        // Expiring while held: dropped when read.
        let Backend::File(file) = &store.backend else {
            unreachable!()
        };
        {
            let mut entries = file.shared.entries();
            let held = *entries.get("recent").unwrap();
            entries.insert(
                "recent",
                Entry {
                    at: unix_seconds() - 7200,
                    ..held
                },
            );
        }
        assert_eq!(value(&store, "recent").await, None);
        assert_eq!(
            sample(&metrics, "vizion_bridge_event_state_evictions_total"),
            2.0
        );
        store.close().await;
    }

    #[tokio::test]
    async fn beyond_the_capacity_the_oldest_states_go_also_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let metrics = Metrics::new();
        let store = open(&path, 2, &metrics);
        let a = committed(store.commit("a", None, b"a".to_vec()).await.unwrap());
        committed(store.commit("b", None, b"b".to_vec()).await.unwrap());
        // Committed again, `a` is no longer the oldest, even within the same second
        // as `b` (and ahead of it by name).
        committed(store.commit("a", Some(a), b"a2".to_vec()).await.unwrap());
        committed(store.commit("c", None, b"c".to_vec()).await.unwrap());
        assert_eq!(value(&store, "b").await, None);
        assert_eq!(value(&store, "a").await, Some(b"a2".to_vec()));
        assert_eq!(value(&store, "c").await, Some(b"c".to_vec()));
        assert_eq!(
            sample(&metrics, "vizion_bridge_event_state_evictions_total"),
            1.0
        );
        store.close().await;

        let again = open(&path, 2, &Metrics::new());
        assert_eq!(value(&again, "b").await, None);
        assert_eq!(value(&again, "a").await, Some(b"a2".to_vec()));
        assert_eq!(value(&again, "c").await, Some(b"c".to_vec()));
        again.close().await;
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_and_commits_go_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let mut content = state_line("kept", 3, unix_seconds(), b"kept");
        let torn = state_line("torn", 3, unix_seconds(), b"kept");
        content.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, content).unwrap();

        let store = open(&path, 10, &Metrics::new());
        assert_eq!(value(&store, "kept").await, Some(b"kept".to_vec()));
        assert_eq!(value(&store, "torn").await, None);
        committed(store.commit("next", None, b"next".to_vec()).await.unwrap());
        store.close().await;

        let again = open(&path, 10, &Metrics::new());
        assert_eq!(value(&again, "kept").await, Some(b"kept".to_vec()));
        assert_eq!(value(&again, "next").await, Some(b"next".to_vec()));
        again.close().await;
    }

    #[tokio::test]
    async fn commits_made_while_the_compactor_runs_are_all_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let store = open(&path, 50, &Metrics::new());
        let mut versions = HashMap::new();
        for round in 0..20u32 {
            for n in 0..40u32 {
                let reference = format!("r{n}");
                let expected = versions.get(&reference).copied();
                let version = committed(
                    store
                        .commit(&reference, expected, round.to_be_bytes().to_vec())
                        .await
                        .unwrap(),
                );
                // Read back at once, while a compaction may be moving it.
                let read = store.get(&reference).await.unwrap().unwrap();
                assert_eq!(
                    (read.version, read.value),
                    (version, round.to_be_bytes().to_vec())
                );
                versions.insert(reference, version);
            }
        }
        // Read from where the compactions moved them.
        for (reference, version) in &versions {
            let read = store.get(reference).await.unwrap().unwrap();
            assert_eq!(read.version, *version, "{reference}");
            assert_eq!(read.value, 19u32.to_be_bytes());
        }
        let Backend::File(file) = &store.backend else {
            unreachable!()
        };
        let shared = file.shared.clone();
        store.close().await;
        let compactions = shared.compactions.load(Ordering::Relaxed);
        assert!(
            compactions > 1,
            "compacted in the background: {compactions}"
        );

        let again = open(&path, 50, &Metrics::new());
        for (reference, version) in &versions {
            let read = again.get(reference).await.unwrap().unwrap();
            assert_eq!(read.version, *version, "{reference}");
            assert_eq!(read.value, 19u32.to_be_bytes());
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 40, "compacted at load");
        again.close().await;
    }

    #[test]
    fn the_settings_are_checked() {
        assert!(StateConfig::default().validate().is_empty());
        let problems = StateConfig {
            ttl: Duration::ZERO,
            capacity: 0,
        }
        .validate();
        crate::config::assert_names(&problems, "state_ttl");
        crate::config::assert_names(&problems, "state_capacity");
    }
}
