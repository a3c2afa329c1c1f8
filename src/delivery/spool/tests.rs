//! The log against crashes: a torn last record at every byte offset, and a model-based
//! property test of append, crash, recover, forward and read.

use std::path::Path;

use proptest::prelude::*;

use crate::store::log::checkpoint;
use crate::store::log::format::{self, HEADER_LEN};
use crate::store::log::reader::Reader;
use crate::store::log::{self, Log};

/// Every entry from `from` on, read back in order.
fn read_all(log: &Log, from: u64) -> Vec<Vec<u8>> {
    let mut reader = Reader::new(log.dir(), log.index().clone(), from);
    let mut out = Vec::new();
    while let Some(frame) = reader.next(log.next_seq()).unwrap() {
        out.push(frame.payload);
    }
    out
}

fn payload(i: usize) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat(i % 37)).into_bytes()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_offset_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..40).map(payload).collect();
    let last_len = (HEADER_LEN + records[39].len()) as u64;
    {
        // Small segments, so that the log spans several files.
        let (mut log, _) = Log::open(dir.path(), 512, 0).unwrap();
        for (i, record) in records.iter().enumerate() {
            // One batch of two, the rest alone: batches and single appends alike.
            if i == 10 {
                continue;
            }
            if i == 9 {
                log.append(&[record, &records[10]], 1).unwrap();
            } else {
                log.append(&[record], 1).unwrap();
            }
        }
    }
    // The segment holding the last record; with it filling the segment a new, empty
    // one follows.
    let segments = format::list_segments(dir.path()).unwrap();
    let (_, last_path) = segments
        .iter()
        .rev()
        .find(|(_, p)| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap()
        .clone();
    let full_len = std::fs::metadata(&last_path).unwrap().len();
    let record_start = full_len - last_len;
    for cut in record_start..full_len {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let path = copy.path().join(last_path.file_name().unwrap());
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(cut).unwrap();
        drop(file);
        let (log, recovery) = Log::open(copy.path(), 512, 0).unwrap();
        assert_eq!(recovery.entries, 39, "cut at {cut}");
        assert_eq!(
            recovery.torn_tails,
            u64::from(cut > record_start),
            "cut at {cut}"
        );
        assert_eq!(read_all(&log, 0), records[..39].to_vec(), "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), record_start);
    }
}

#[test]
fn garbage_after_the_last_record_is_cut_and_appending_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(&[b"one", b"two"], 1).unwrap();
    }
    let (_, path) = format::list_segments(dir.path()).unwrap().remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&path, bytes).unwrap();
    let (mut log, recovery) = Log::open(dir.path(), 1 << 20, 0).unwrap();
    assert_eq!((recovery.entries, recovery.torn_tails), (2, 1));
    log.append(&[b"three"], 2).unwrap();
    assert_eq!(
        read_all(&log, 0),
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

/// Every file of `dir` with its bytes, sorted by name.
fn snapshot(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name(), std::fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn inspecting_finds_what_opening_recovers_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = Log::open(dir.path(), 4096, 0).unwrap();
        for i in 0..100 {
            log.append(&[&payload(i)], 1000 + i as u64).unwrap();
        }
    }
    let forwarded = 30;
    checkpoint::store(dir.path(), forwarded).unwrap();
    let (_, last) = format::list_segments(dir.path()).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&last, bytes).unwrap();
    let before = snapshot(dir.path());

    let backlog = log::inspect(dir.path(), forwarded).unwrap();
    assert_eq!(snapshot(dir.path()), before, "inspecting writes nothing");
    assert_eq!(backlog.entries, 70);
    assert_eq!(backlog.oldest_appended_ms, Some(1030));

    let (log, recovery) = Log::open(dir.path(), 4096, forwarded).unwrap();
    assert_eq!(backlog.entries, recovery.entries);
    assert_eq!(backlog.oldest_appended_ms, recovery.oldest_appended_ms);
    assert_eq!(backlog.bytes, log.index().total_bytes());
    assert!(backlog.bytes > 0);
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    /// Appends, then a crash leaves only `cut` bytes (modulo the batch) of that write.
    CrashDuringAppend(Vec<Vec<u8>>, usize),
    /// The forwarder confirms the next `n` pending entries and stores its position.
    Forward(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let batch = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6);
    prop_oneof![
        4 => batch.clone().prop_map(Op::Append),
        1 => (batch, any::<usize>()).prop_map(|(b, cut)| Op::CrashDuringAppend(b, cut)),
        2 => (0usize..8).prop_map(Op::Forward),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_log_keeps_what_a_model_keeps_through_crashes(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        const SEGMENT: u64 = 700;
        // The model: entries not yet forwarded, in order.
        let mut pending: std::collections::VecDeque<Vec<u8>> = Default::default();
        let mut forwarded = checkpoint::load(dir.path());
        let (mut log, _) = Log::open(dir.path(), SEGMENT, forwarded).unwrap();
        for op in ops {
            match op {
                Op::Append(batch) => {
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    log.append(&refs, 7).unwrap();
                    pending.extend(batch);
                }
                Op::CrashDuringAppend(batch, cut) => {
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    let first = log.append(&refs, 7).unwrap();
                    let frame_lens: Vec<u64> =
                        batch.iter().map(|p| (HEADER_LEN + p.len()) as u64).collect();
                    let batch_len: u64 = frame_lens.iter().sum();
                    let keep = cut as u64 % batch_len;
                    let segment = log.index().locate(first).unwrap();
                    drop(log);
                    let path = format::segment_path(dir.path(), segment);
                    let len = std::fs::metadata(&path).unwrap().len();
                    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    file.set_len(len - batch_len + keep).unwrap();
                    drop(file);
                    // Whole frames that reached the disk come back; the torn one does not.
                    let mut covered = 0;
                    for (record, frame_len) in batch.into_iter().zip(frame_lens) {
                        if covered + frame_len > keep {
                            break;
                        }
                        covered += frame_len;
                        pending.push_back(record);
                    }
                    let (reopened, recovery) = Log::open(dir.path(), SEGMENT, forwarded).unwrap();
                    prop_assert_eq!(recovery.entries, pending.len() as u64);
                    prop_assert_eq!(recovery.torn_tails, u64::from(covered < keep));
                    log = reopened;
                }
                Op::Forward(n) => {
                    let mut reader = Reader::new(log.dir(), log.index().clone(), forwarded);
                    let n = n.min(pending.len());
                    for _ in 0..n {
                        let frame = reader.next(log.next_seq()).unwrap().unwrap();
                        prop_assert_eq!(Some(frame.payload), pending.pop_front());
                        forwarded = frame.seq + 1;
                    }
                    // As the forwarder does: the position moves to the next entry still
                    // pending, or past the last entry there is, over any gap that a cut
                    // tail or a refused batch left between segments.
                    match reader.next(log.next_seq()).unwrap() {
                        Some(frame) => {
                            prop_assert_eq!(pending.front(), Some(&frame.payload));
                            forwarded = frame.seq;
                        }
                        None => {
                            prop_assert!(pending.is_empty());
                            forwarded = forwarded.max(reader.position());
                        }
                    }
                    checkpoint::store(dir.path(), forwarded).unwrap();
                    log.remove_forwarded(forwarded).unwrap();
                }
                Op::Restart => {
                    drop(log);
                    forwarded = checkpoint::load(dir.path());
                    let (reopened, recovery) = Log::open(dir.path(), SEGMENT, forwarded).unwrap();
                    prop_assert_eq!(recovery.entries, pending.len() as u64);
                    prop_assert_eq!(recovery.torn_tails, 0);
                    log = reopened;
                }
            }
            prop_assert_eq!(read_all(&log, forwarded), Vec::from(pending.clone()));
            // Never more than the pending entries plus one partly forwarded segment and
            // the active one stay on disk.
            prop_assert!(log.index().len() <= pending.len() + 2, "index {:?} pending {} forwarded {}", log.index(), pending.len(), forwarded);
        }
    }
}

/// Two processes appending to one directory would corrupt it: a second opener is
/// refused while the first holds it, and gets it once the first is closed.
#[test]
fn one_opener_at_a_time_holds_a_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = super::SpoolConfig {
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let first = super::Spool::open(&config, crate::telemetry::Metrics::new()).unwrap();
    let second = super::Spool::open(&config, crate::telemetry::Metrics::new());
    assert!(
        matches!(second, Err(super::SpoolError::Locked(_))),
        "a second opener was not refused"
    );
    drop(first);
    super::Spool::open(&config, crate::telemetry::Metrics::new())
        .expect("the directory opens again once the first spool is closed");
}

/// Every entry from `from` on that a reader following the writer sees, read through one
/// reader that already buffered the log before `append` ran.
fn read_with(reader: &mut Reader, committed: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = reader.next(committed).unwrap() {
        out.push(frame.payload);
    }
    out
}

/// A batch whose fsync failed was refused: a reader that follows the writer, and the
/// log reopened after it, see exactly the acknowledged entries, in order, whether the
/// refused bytes could be cut or not.
#[test]
fn a_failed_append_is_never_read_and_later_entries_are_not_skipped() {
    for cut_fails in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(&[b"a0", b"a1"], 1).unwrap();
        let mut reader = Reader::new(log.dir(), log.index().clone(), 0);
        assert_eq!(read_with(&mut reader, 1), vec![b"a0".to_vec()]);

        log.faults.fail_sync = true;
        log.faults.fail_cut = cut_fails;
        let refused = log.append(&[b"refused-0", b"refused-1"], 2);
        assert!(refused.is_err(), "the failed fsync was not reported");
        // The refused bytes are in the file if the cut failed; the reader must stop at
        // the durable end all the same.
        assert_eq!(read_with(&mut reader, log.next_seq()), vec![b"a1".to_vec()]);

        log.append(&[b"c0", b"c1"], 3).unwrap();
        log.append(&[b"d0"], 4).unwrap();
        assert_eq!(
            read_with(&mut reader, log.next_seq()),
            vec![b"c0".to_vec(), b"c1".to_vec(), b"d0".to_vec()],
            "cut_fails = {cut_fails}"
        );
        let acknowledged: Vec<Vec<u8>> = ["a0", "a1", "c0", "c1", "d0"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(read_all(&log, 0), acknowledged);
        drop(log);

        let (log, recovery) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        let recovered = read_all(&log, 0);
        if cut_fails {
            // The refused entries may come back as duplicates of what the sender
            // retries, but every acknowledged entry is there, in order.
            let mut wanted = acknowledged.iter();
            let mut next = wanted.next();
            for entry in &recovered {
                if Some(entry) == next {
                    next = wanted.next();
                }
            }
            assert_eq!(next, None, "an acknowledged entry was lost: {recovered:?}");
        } else {
            assert_eq!(recovered, acknowledged);
            assert_eq!(recovery.entries, 5);
        }
    }
}

/// When no new segment can be started after a failed write, appends are refused (never
/// written after the refused bytes) until one can.
#[test]
fn appends_are_refused_until_a_new_segment_starts_after_a_failed_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
    log.append(&[b"a0"], 1).unwrap();
    log.faults.fail_sync = true;
    log.faults.fail_cut = true;
    log.faults.fail_rolls = 2;
    assert!(log.append(&[b"refused"], 2).is_err());
    assert!(
        log.append(&[b"also-refused"], 3).is_err(),
        "an append was written after the refused bytes"
    );
    log.append(&[b"b0"], 4).unwrap();
    assert_eq!(read_all(&log, 0), vec![b"a0".to_vec(), b"b0".to_vec()]);
    drop(log);
    let (log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
    let recovered = read_all(&log, 0);
    assert_eq!(recovered.first(), Some(&b"a0".to_vec()));
    assert_eq!(recovered.last(), Some(&b"b0".to_vec()));
    assert!(!recovered.contains(&b"also-refused".to_vec()));
}

/// A batch that filled its segment is durable even when the next segment cannot be
/// started: it is acknowledged, and the next append starts the segment.
#[test]
fn a_failed_roll_does_not_fail_the_batch_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), 4096, 0).unwrap();
    let big = vec![7u8; 5000];
    log.faults.fail_rolls = 1;
    assert_eq!(
        log.append(&[&big], 1).unwrap(),
        0,
        "a durable batch was failed"
    );
    assert_eq!(log.index().len(), 1, "the failed roll added a segment");
    log.append(&[b"after"], 2).unwrap();
    assert_eq!(
        log.index().len(),
        2,
        "the next append did not start a segment"
    );
    assert_eq!(read_all(&log, 0), vec![big.clone(), b"after".to_vec()]);
    drop(log);
    let (log, recovery) = Log::open(dir.path(), 4096, 0).unwrap();
    assert_eq!(recovery.entries, 2);
    assert_eq!(read_all(&log, 0), vec![big, b"after".to_vec()]);
}

/// Taking more than a counter holds leaves it at zero: wrapped, the byte count would
/// make the spool refuse every append for good.
#[test]
fn spool_counters_stop_at_zero() {
    let counter = std::sync::atomic::AtomicU64::new(5);
    assert_eq!(super::saturating_sub(&counter, 3), 2);
    assert_eq!(super::saturating_sub(&counter, 10), 0);
    assert_eq!(counter.load(std::sync::atomic::Ordering::Acquire), 0);
}

/// Sink that keeps the kind of every record it is given.
#[derive(Default)]
struct KeepingSink(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl crate::sinks::Sink for KeepingSink {
    fn name(&self) -> &'static str {
        "keeping"
    }
    async fn write(
        &self,
        envelope: &crate::events::Envelope,
    ) -> Result<(), crate::sinks::SinkError> {
        self.0.lock().unwrap().push(format!("{envelope:?}"));
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn close(&self) -> Result<(), crate::sinks::SinkError> {
        Ok(())
    }
}

/// A record this version cannot decode is kept, as its frame, under `undecodable/` and
/// counted before the forwarder moves past it; the records after it are forwarded.
#[tokio::test]
async fn an_undecodable_record_is_kept_aside_counted_and_the_rest_forwarded() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let unreadable = b"a record of some other version".to_vec();
    {
        let (mut log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(&[&unreadable], 99).unwrap();
    }
    let config = super::SpoolConfig {
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let metrics = crate::telemetry::Metrics::new();
    let spool = super::Spool::open(&config, metrics.clone()).unwrap();
    let record = crate::delivery::testing::dead_letter(b"{not json", "req-1");
    spool.append(&record).await.unwrap();
    let sink = Arc::new(KeepingSink::default());
    forward_until_drained(&spool, vec![sink.clone()]).await;

    assert_eq!(*sink.0.lock().unwrap(), vec![format!("{record:?}")]);
    assert_eq!(metrics.undecodable_in_spool(), 1);
    let kept = std::fs::read(dir.path().join("undecodable").join("0.bin")).unwrap();
    let format::Next::Frame(frame) = format::read_frame(&mut kept.as_slice()).unwrap() else {
        panic!("the kept file is not a whole frame");
    };
    assert_eq!((frame.seq, frame.appended_at_ms), (0, 99));
    assert_eq!(frame.payload, unreadable);
    assert_eq!(checkpoint::load(dir.path()), 2);
}

/// Starts forwarding to `sinks` on a tracker of its own.
fn start_forwarding(spool: &super::Spool, sinks: Vec<std::sync::Arc<dyn crate::sinks::Sink>>) {
    let sinks = crate::delivery::SinkSet::new(sinks, crate::telemetry::Metrics::new());
    spool.start_forwarding(
        std::sync::Arc::new(sinks),
        tokio_util::sync::CancellationToken::new(),
        &tokio_util::task::TaskTracker::new(),
    );
}

/// Forwards what `spool` holds to `sinks` until the spool is empty; then closes it.
async fn forward_until_drained(
    spool: &super::Spool,
    sinks: Vec<std::sync::Arc<dyn crate::sinks::Sink>>,
) {
    start_forwarding(spool, sinks);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while spool.has_backlog() {
        assert!(
            std::time::Instant::now() < deadline,
            "the spool did not drain"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    spool.close(std::time::Duration::from_secs(1)).await;
}

/// A sink that answers `refusal` (a clone of it) for records received under
/// `refused_request`, and confirms the others, keeping their request ids.
struct RefusingSink {
    name: &'static str,
    refused_request: &'static str,
    refusal: crate::sinks::SinkError,
    attempts: std::sync::atomic::AtomicUsize,
    kept: std::sync::Mutex<Vec<String>>,
}

impl RefusingSink {
    fn new(
        name: &'static str,
        refused_request: &'static str,
        refusal: crate::sinks::SinkError,
    ) -> Self {
        Self {
            name,
            refused_request,
            refusal,
            attempts: Default::default(),
            kept: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl crate::sinks::Sink for RefusingSink {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn write(
        &self,
        envelope: &crate::events::Envelope,
    ) -> Result<(), crate::sinks::SinkError> {
        let crate::events::Content::DeadLetter { .. } = envelope.content() else {
            panic!("only dead letters here");
        };
        let request_id = envelope.provenance().request_id().unwrap_or_default();
        if request_id == self.refused_request {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(self.refusal.clone());
        }
        self.kept.lock().unwrap().push(request_id.to_owned());
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn close(&self) -> Result<(), crate::sinks::SinkError> {
        Ok(())
    }
}

/// Opens a spool in `dir` with quick retries, appends `first` (one container's
/// dead letter) then `second` and forwards them to `sinks` until the spool is empty.
async fn forward_two(
    dir: &Path,
    max_attempts: u32,
    sinks: Vec<std::sync::Arc<dyn crate::sinks::Sink>>,
    first_confirmed_by: Vec<&'static str>,
) -> crate::telemetry::Metrics {
    let config = super::SpoolConfig {
        dir: Some(dir.to_path_buf()),
        retry_initial_backoff: std::time::Duration::from_millis(1),
        retry_max_backoff: std::time::Duration::from_millis(5),
        max_attempts,
        ..Default::default()
    };
    let metrics = crate::telemetry::Metrics::new();
    let spool = super::Spool::open(&config, metrics.clone()).unwrap();
    for (request, body, confirmed_by) in [
        ("req-first", &b"{first"[..], first_confirmed_by),
        ("req-second", &b"{second"[..], Vec::new()),
    ] {
        let record = crate::delivery::testing::dead_letter(body, request);
        spool
            .append_confirmed_by(&record, confirmed_by)
            .await
            .unwrap();
    }
    forward_until_drained(&spool, sinks).await;
    metrics
}

/// Records quarantined for `sink` and `reason`, as counted.
#[tokio::test]
async fn a_permanent_refusal_is_quarantined_at_once_and_the_next_record_forwarded() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let refusal = crate::sinks::SinkError::Refused {
        reason: "too_large",
        detail: "kafka refused the record: message too large".into(),
    };
    let picky = Arc::new(RefusingSink::new("kafka", "req-first", refusal));
    let other = Arc::new(RefusingSink::new(
        "file",
        "none",
        crate::sinks::SinkError::Closed,
    ));
    let metrics = forward_two(dir.path(), 0, vec![picky.clone(), other.clone()], vec![]).await;

    assert_eq!(picky.attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(*picky.kept.lock().unwrap(), ["req-second"]);
    assert_eq!(
        *other.kept.lock().unwrap(),
        ["req-first", "req-second"],
        "the sink that took it still gets it"
    );
    let files = super::quarantine::list(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].note.seq, files[0].note.sink.as_str()),
        (0, "kafka")
    );
    assert_eq!(files[0].note.reason, "too_large");
    assert_eq!(metrics.quarantined_in_spool("kafka", "too_large"), 1);
    assert_eq!(
        metrics.forwarded_from_spool(),
        1,
        "only the second was forwarded whole"
    );
}

#[tokio::test]
async fn a_transient_failure_is_quarantined_only_after_max_attempts() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let away = crate::sinks::SinkError::Broker("kafka did not confirm: timed out".into());
    let failing = Arc::new(RefusingSink::new("kafka", "req-first", away));
    let metrics = forward_two(dir.path(), 3, vec![failing.clone()], vec![]).await;

    assert_eq!(
        failing.attempts.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    assert_eq!(*failing.kept.lock().unwrap(), ["req-second"]);
    let files = super::quarantine::list(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].note.reason, "max_attempts");
    assert_eq!(files[0].note.attempts, 3);
    assert_eq!(metrics.quarantined_in_spool("kafka", "max_attempts"), 1);
}

#[tokio::test]
async fn a_record_is_forwarded_only_to_the_sinks_that_had_not_confirmed_it() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let none = || crate::sinks::SinkError::Closed;
    let file = Arc::new(RefusingSink::new("file", "none", none()));
    let rabbitmq = Arc::new(RefusingSink::new("rabbitmq", "none", none()));
    forward_two(
        dir.path(),
        0,
        vec![file.clone(), rabbitmq.clone()],
        vec!["file"],
    )
    .await;
    assert_eq!(*file.kept.lock().unwrap(), ["req-second"]);
    assert_eq!(*rabbitmq.kept.lock().unwrap(), ["req-first", "req-second"]);
}

#[tokio::test]
async fn requeued_records_are_appended_once_and_leave_the_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    for sink in ["kafka", "rabbitmq"] {
        let frame = format::Frame::new(4, 1, b"the entry");
        let note = super::quarantine::Note {
            seq: 4,
            sink: sink.into(),
            reason: "not_found".into(),
            detail: String::new(),
            attempts: 1,
            quarantined_at: String::new(),
            order_key: String::new(),
        };
        super::quarantine::keep(dir.path(), &frame, &note).unwrap();
    }
    let config = super::SpoolConfig {
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let spool = super::Spool::open(&config, crate::telemetry::Metrics::new()).unwrap();
    assert!(matches!(
        super::Spool::open(&config, crate::telemetry::Metrics::new()),
        Err(super::SpoolError::Locked(_))
    ));
    assert_eq!(spool.requeue_quarantined().await.unwrap(), 1);
    spool.close(std::time::Duration::ZERO).await;
    assert!(super::quarantine::list(dir.path()).unwrap().is_empty());
    let (log, recovery) = Log::open(dir.path(), 1 << 20, 0).unwrap();
    assert_eq!(recovery.entries, 1);
    assert_eq!(read_all(&log, 0), vec![b"the entry".to_vec()]);
}

#[tokio::test]
async fn a_container_whose_record_is_retried_does_not_hold_back_the_others() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let config = super::SpoolConfig {
        dir: Some(dir.path().to_path_buf()),
        retry_initial_backoff: std::time::Duration::from_millis(1),
        retry_max_backoff: std::time::Duration::from_millis(5),
        forward_concurrency: 4,
        ..Default::default()
    };
    let spool = super::Spool::open(&config, crate::telemetry::Metrics::new()).unwrap();
    // The same body makes the same dead-letter id, so the same order key: three later
    // records queue behind the first, which the sink never confirms. Then records of
    // other keys.
    let mut appends = vec![("req-stuck".to_owned(), b"{stuck".to_vec())];
    appends.extend((0..3).map(|i| (format!("req-stuck-later-{i}"), b"{stuck".to_vec())));
    appends.extend((0..5).map(|i| {
        (
            format!("req-other-{i}"),
            format!("{{other-{i}").into_bytes(),
        )
    }));
    for (request, body) in &appends {
        spool
            .append(&crate::delivery::testing::dead_letter(body, request))
            .await
            .unwrap();
    }
    let sink = Arc::new(RefusingSink::new(
        "kafka",
        "req-stuck",
        crate::sinks::SinkError::Broker("kafka did not confirm: timed out".into()),
    ));
    start_forwarding(&spool, vec![sink.clone()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sink.kept.lock().unwrap().len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the other containers' records were held back: forwarded {:?}",
            sink.kept.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let kept = sink.kept.lock().unwrap().clone();
    assert!(
        kept.iter().all(|r| r.starts_with("req-other-")),
        "a later record of the retried container overtook it: {kept:?}"
    );
    spool.close(std::time::Duration::from_millis(100)).await;
}
