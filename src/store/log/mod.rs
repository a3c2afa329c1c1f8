//! A write-ahead log of frames in rolling segment files, synchronous: appending
//! batches with one fsync each, rolling to a new segment past a size, recovering after
//! a crash, and dropping segments that were forwarded whole. The spool keeps its
//! records in it.
//!
//! - [`format`]: frames and segment files;
//! - [`reader`]: reading entries back in order, following the writer;
//! - [`checkpoint`]: the forwarded position.

pub mod checkpoint;
pub mod format;
pub mod reader;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use self::format::Next;
use crate::store::fs::sync_dir;

/// The first sequence number of every segment on disk, oldest first, shared between
/// the writer (who adds) and the forwarder (who reads and removes).
#[derive(Debug, Default, Clone)]
pub struct SegmentIndex(Arc<Mutex<Vec<Segment>>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub first_seq: u64,
    pub bytes: u64,
}

impl SegmentIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Segment>> {
        self.0.lock().expect("segment index lock poisoned")
    }

    /// The segment that holds `seq`, or the first one after it.
    pub fn locate(&self, seq: u64) -> Option<u64> {
        let segments = self.lock();
        let holding = segments.iter().rev().find(|s| s.first_seq <= seq);
        holding
            .or_else(|| segments.first())
            .map(|segment| segment.first_seq)
    }

    /// The segment after the one starting at `first_seq`.
    pub fn after(&self, first_seq: u64) -> Option<u64> {
        self.lock()
            .iter()
            .find(|s| s.first_seq > first_seq)
            .map(|s| s.first_seq)
    }

    pub fn total_bytes(&self) -> u64 {
        self.lock().iter().map(|s| s.bytes).sum()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The durable length of the segment starting at `first_seq`: what a reader may
    /// read of it. Bytes past it may belong to a write that was refused.
    pub fn durable_bytes(&self, first_seq: u64) -> Option<u64> {
        self.lock()
            .iter()
            .find(|s| s.first_seq == first_seq)
            .map(|s| s.bytes)
    }

    fn set_last_bytes(&self, bytes: u64) {
        if let Some(last) = self.lock().last_mut() {
            last.bytes = bytes;
        }
    }

    fn push(&self, segment: Segment) {
        self.lock().push(segment);
    }

    /// Removes and returns the segments that hold only entries before `forwarded`:
    /// every segment but the last whose successor starts at or before it.
    fn take_forwarded(&self, forwarded: u64) -> Vec<Segment> {
        let mut segments = self.lock();
        let mut done = 0;
        while done + 1 < segments.len() && segments[done + 1].first_seq <= forwarded {
            done += 1;
        }
        segments.drain(..done).collect()
    }
}

/// What opening a spool directory found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Intact entries not yet forwarded.
    pub entries: u64,
    /// Segments whose end was cut because it was not a whole, intact entry.
    pub torn_tails: u64,
    /// Bytes cut from those ends.
    pub torn_bytes: u64,
    /// Append time of the oldest entry not yet forwarded.
    pub oldest_appended_ms: Option<u64>,
}

pub struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    index: SegmentIndex,
    active: File,
    active_first: u64,
    active_len: u64,
    next_seq: u64,
    buffer: Vec<u8>,
    /// Set when a write to the active segment failed: its end may hold refused bytes,
    /// so nothing more is written to it; the next append starts a new segment first.
    sealed: bool,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

/// Failures a test can ask the next operations to report.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The fsync after the next write fails (the bytes are in the file).
    pub fail_sync: bool,
    /// Cutting the active segment back fails.
    pub fail_cut: bool,
    /// This many segment rolls fail.
    pub fail_rolls: u32,
}

impl Log {
    /// Opens (or creates) the log in `dir`, cutting torn tails. Entries before
    /// `forwarded` are not counted; whole segments of them are deleted.
    pub fn open(dir: &Path, segment_bytes: u64, forwarded: u64) -> io::Result<(Self, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let mut recovery = Recovery::default();
        let index = SegmentIndex::default();
        let mut next_seq = forwarded;
        let segments = format::list_segments(dir)?;
        let last = segments.len().saturating_sub(1);
        let mut removed_empty = false;
        for (position, (first_seq, path)) in segments.into_iter().enumerate() {
            let scan = scan_segment(&path, forwarded)?;
            if scan.torn_bytes > 0 {
                tracing::warn!(
                    segment = %path.display(),
                    cut_bytes = scan.torn_bytes,
                    "spool segment ends in an incomplete entry; cutting it"
                );
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(scan.valid_len)?;
                file.sync_all()?;
                recovery.torn_tails += 1;
                recovery.torn_bytes += scan.torn_bytes;
            }
            recovery.entries += scan.pending;
            if recovery.oldest_appended_ms.is_none() {
                recovery.oldest_appended_ms = scan.oldest_pending_ms;
            }
            // Sequence numbers only grow, even past entries a crash cut off, so that
            // segment names stay in order.
            next_seq = next_seq.max(first_seq);
            if let Some(last) = scan.last_seq {
                next_seq = next_seq.max(last + 1);
            }
            // A segment that a crash left empty behind a newer one holds nothing and
            // is never written again: without this, every such crash would leave one
            // more file until the forwarded position passed it.
            if scan.valid_len == 0 && position < last {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        removed_empty = true;
                        continue;
                    }
                    // Left in place it costs a file, not a record: keep it in the index
                    // so that it is removed with the forwarded segments later.
                    Err(e) => tracing::warn!(
                        segment = %path.display(),
                        error = %e,
                        "cannot remove an empty spool segment; keeping it"
                    ),
                }
            }
            index.push(Segment {
                first_seq,
                bytes: scan.valid_len,
            });
        }
        if removed_empty {
            sync_dir(dir)?;
        }
        // Append to the last segment only if it is empty; otherwise start a new one, so
        // that a segment is never written by two runs.
        let reuse = {
            let segments = index.lock();
            segments
                .last()
                .filter(|s| s.bytes == 0 && s.first_seq == next_seq)
                .copied()
        };
        let active_first = match reuse {
            Some(segment) => segment.first_seq,
            None => {
                index.push(Segment {
                    first_seq: next_seq,
                    bytes: 0,
                });
                next_seq
            }
        };
        let active = open_segment(dir, active_first)?;
        let log = Self {
            dir: dir.to_owned(),
            segment_bytes: segment_bytes.max(1),
            index,
            active,
            active_first,
            active_len: 0,
            next_seq,
            buffer: Vec::new(),
            sealed: false,
            #[cfg(test)]
            faults: Faults::default(),
        };
        log.remove_forwarded(forwarded)?;
        Ok((log, recovery))
    }

    pub fn index(&self) -> &SegmentIndex {
        &self.index
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number the next entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes `payloads` as consecutive entries and fsyncs once; returns the sequence
    /// number of the first. On an error nothing of the batch counts, and neither its
    /// sequence numbers nor the segment are used again: a reader may already have seen
    /// its bytes, and a later entry must never be mistaken for one of them.
    pub fn append(&mut self, payloads: &[&[u8]], appended_at_ms: u64) -> io::Result<u64> {
        if self.sealed {
            // Never write after bytes that may be refused ones: until a new segment
            // can be started, every append is refused.
            self.roll()?;
            self.sealed = false;
        } else if self.active_len >= self.segment_bytes {
            // A roll that failed after an earlier batch; the active segment is sound,
            // so it takes this batch if the roll fails again.
            if let Err(error) = self.roll() {
                tracing::warn!(error = %error, "starting a new spool segment failed; appending to the current one");
            }
        }
        self.buffer.clear();
        let first = self.next_seq;
        for (i, payload) in payloads.iter().enumerate() {
            if payload.len() > format::MAX_PAYLOAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "entry larger than a spool frame can hold",
                ));
            }
            format::encode_frame(&mut self.buffer, first + i as u64, appended_at_ms, payload);
        }
        let written = self
            .active
            .write_all(&self.buffer)
            .and_then(|()| self.sync_active());
        if let Err(error) = written {
            self.next_seq += payloads.len() as u64;
            self.sealed = true;
            // Cut the refused bytes so that a restart does not bring them back; if the
            // cut fails they may come back as duplicates of refused updates, never in
            // place of acknowledged ones (their numbers are not reused).
            if let Err(cut) = self.cut_active() {
                tracing::error!(error = %cut, "cutting a failed spool write failed");
            }
            match self.roll() {
                Ok(()) => self.sealed = false,
                Err(roll) => {
                    tracing::error!(error = %roll, "starting a new spool segment after a failed write failed; refusing appends until one starts");
                }
            }
            return Err(error);
        }
        self.active_len += self.buffer.len() as u64;
        self.next_seq += payloads.len() as u64;
        self.index.set_last_bytes(self.active_len);
        if self.active_len >= self.segment_bytes {
            // The batch is durable whatever happens here; a failed roll is retried by
            // the next append.
            if let Err(error) = self.roll() {
                tracing::warn!(error = %error, "starting a new spool segment failed; will retry");
            }
        }
        Ok(first)
    }

    fn sync_active(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.fail_sync) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.active.sync_data()
    }

    fn cut_active(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.fail_cut) {
            return Err(io::Error::other("injected cut failure"));
        }
        self.active.set_len(self.active_len)?;
        self.active.sync_data()
    }

    /// Starts a new segment at the next sequence number.
    fn roll(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.fail_rolls > 0 {
            self.faults.fail_rolls -= 1;
            return Err(io::Error::other("injected roll failure"));
        }
        let file = open_segment(&self.dir, self.next_seq)?;
        self.active = file;
        self.active_first = self.next_seq;
        self.active_len = 0;
        self.index.push(Segment {
            first_seq: self.active_first,
            bytes: 0,
        });
        Ok(())
    }

    /// Deletes the segments that hold only entries before `forwarded`; returns the
    /// bytes freed.
    pub fn remove_forwarded(&self, forwarded: u64) -> io::Result<u64> {
        remove_forwarded(&self.dir, &self.index, forwarded)
    }
}

/// Deletes the segments that hold only entries before `forwarded` (never the one being
/// written); returns the bytes freed.
pub fn remove_forwarded(dir: &Path, index: &SegmentIndex, forwarded: u64) -> io::Result<u64> {
    let mut freed = 0;
    for segment in index.take_forwarded(forwarded) {
        match std::fs::remove_file(format::segment_path(dir, segment.first_seq)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        freed += segment.bytes;
    }
    Ok(freed)
}

/// What a spool directory holds, read without changing it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// Intact entries not yet forwarded.
    pub entries: u64,
    /// Bytes of the segments the spool keeps (those not forwarded whole).
    pub bytes: u64,
    /// Append time of the oldest entry not yet forwarded.
    pub oldest_appended_ms: Option<u64>,
}

/// Reads the segments in `dir` as [`Log::open`] does, but changes nothing (torn tails
/// are left for the next open to cut): safe while a service writes to the directory.
/// A segment deleted under it was forwarded, and is skipped.
pub fn inspect(dir: &Path, forwarded: u64) -> io::Result<Backlog> {
    let mut backlog = Backlog::default();
    let index = SegmentIndex::default();
    for (first_seq, path) in format::list_segments(dir)? {
        let scan = match scan_segment(&path, forwarded) {
            Ok(scan) => scan,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        backlog.entries += scan.pending;
        if backlog.oldest_appended_ms.is_none() {
            backlog.oldest_appended_ms = scan.oldest_pending_ms;
        }
        index.push(Segment {
            first_seq,
            bytes: scan.valid_len,
        });
    }
    // What opening the spool would delete at once does not count.
    index.take_forwarded(forwarded);
    backlog.bytes = index.total_bytes();
    Ok(backlog)
}

fn open_segment(dir: &Path, first_seq: u64) -> io::Result<File> {
    let path = format::segment_path(dir, first_seq);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    // The directory entry must survive a crash as well as the data.
    sync_dir(dir)?;
    Ok(file)
}

struct Scan {
    valid_len: u64,
    torn_bytes: u64,
    pending: u64,
    last_seq: Option<u64>,
    oldest_pending_ms: Option<u64>,
}

/// Reads a segment from start to end, one frame at a time.
fn scan_segment(path: &Path, forwarded: u64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut scan = Scan {
        valid_len: 0,
        torn_bytes: 0,
        pending: 0,
        last_seq: None,
        oldest_pending_ms: None,
    };
    loop {
        match format::read_frame(&mut reader)? {
            Next::Frame(frame) => {
                scan.valid_len += frame.disk_len();
                scan.last_seq = Some(frame.seq);
                if frame.seq >= forwarded {
                    scan.pending += 1;
                    scan.oldest_pending_ms.get_or_insert(frame.appended_at_ms);
                }
            }
            Next::End => break,
            Next::Torn => {
                scan.torn_bytes = len - scan.valid_len;
                break;
            }
        }
    }
    Ok(scan)
}
