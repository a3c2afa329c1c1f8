//! Records a sink refused for good (or did not take within `spool.max_attempts`), kept
//! so that the forwarder can go on with the records behind them, and so that an
//! operator can look at them and send them again (`vizion-bridge spool quarantine`).
//!
//! One file per record and sink, `quarantine/<seq>-<appended at, ms>-<sink>.rec` under
//! the spool directory: a JSON line saying why ([`Note`]), then the entry's frame
//! exactly as it was in the log. The append time is in the name so that a spool whose
//! log was lost and started again from sequence 0 never writes over a kept record.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::aside;
use crate::store::log::format::{self, Frame, Next};

pub const DIR: &str = "quarantine";
const SUFFIX: &str = ".rec";

/// Why and when a record was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The record's sequence number in the log.
    pub seq: u64,
    /// The sink that refused it.
    pub sink: String,
    /// The short reason (`too_large`, `not_authorized`, `not_found`, `max_attempts`…).
    pub reason: String,
    /// The sink's last error, in full.
    pub detail: String,
    /// Attempts made to forward it to that sink.
    pub attempts: u32,
    /// RFC 3339.
    pub quarantined_at: String,
    /// The record's container (or reference), which orders it.
    pub order_key: String,
}

/// A file of the quarantine.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub path: PathBuf,
    pub note: Note,
}

/// Writes `frame` with `note` to the quarantine of the spool in `dir`, durably.
pub fn keep(dir: &Path, frame: &Frame, note: &Note) -> io::Result<PathBuf> {
    let mut bytes = serde_json::to_vec(note).map_err(io::Error::other)?;
    bytes.push(b'\n');
    format::encode_frame(&mut bytes, frame.seq, frame.appended_at_ms, &frame.payload);
    let name = format!(
        "{}-{}-{}{SUFFIX}",
        frame.seq, frame.appended_at_ms, note.sink
    );
    aside::write(dir, DIR, &name, &bytes)
}

/// Every quarantined file of the spool in `dir`, oldest record first.
pub fn list(dir: &Path) -> io::Result<Vec<Quarantined>> {
    let entries = match std::fs::read_dir(dir.join(DIR)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut all = Vec::new();
    for entry in entries {
        let path = entry?.path();
        // A `.tmp` file is a write a crash cut short: never acknowledged as kept.
        if path.extension().and_then(|e| e.to_str()) != Some(&SUFFIX[1..]) {
            continue;
        }
        let note = read_note(&mut BufReader::new(File::open(&path)?))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        all.push(Quarantined { path, note });
    }
    all.sort_by(|a, b| (a.note.seq, &a.note.sink).cmp(&(b.note.seq, &b.note.sink)));
    Ok(all)
}

/// [`list`] grouped by record: a record two sinks refused is one record.
pub fn list_by_record(dir: &Path) -> io::Result<BTreeMap<u64, Vec<Quarantined>>> {
    let mut records: BTreeMap<u64, Vec<Quarantined>> = BTreeMap::new();
    for file in list(dir)? {
        records.entry(file.note.seq).or_default().push(file);
    }
    Ok(records)
}

/// The spool entry kept in the file at `path`, checked against its checksum.
pub fn payload(path: &Path) -> io::Result<Vec<u8>> {
    let mut reader = BufReader::new(File::open(path)?);
    read_note(&mut reader)?;
    match format::read_frame(&mut reader)? {
        Next::Frame(frame) => Ok(frame.payload),
        Next::End | Next::Torn => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: the kept record is damaged", path.display()),
        )),
    }
}

/// Removes a quarantined file for good (once its record is back in the log).
pub fn remove(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn read_note(reader: &mut impl BufRead) -> io::Result<Note> {
    let mut line = Vec::new();
    // The note is a few hundred bytes; a file without a newline early is not ours.
    reader
        .by_ref()
        .take(64 * 1024)
        .read_until(b'\n', &mut line)?;
    serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(seq: u64, sink: &str) -> Note {
        Note {
            seq,
            sink: sink.into(),
            reason: "too_large".into(),
            detail: "kafka refused the record: Message size too large".into(),
            attempts: 1,
            quarantined_at: "2026-01-02T03:04:05Z".into(),
            order_key: "MSCU1234567".into(),
        }
    }

    #[test]
    fn a_kept_record_lists_with_its_note_and_reads_back_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let frame = Frame::new(7, 1234, b"an entry\nwith a newline");
        let path = keep(dir.path(), &frame, &note(7, "kafka")).unwrap();
        assert_eq!(path, dir.path().join("quarantine").join("7-1234-kafka.rec"));
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].note, note(7, "kafka"));
        assert_eq!(payload(&path).unwrap(), frame.payload);
    }

    #[test]
    fn two_sinks_refusing_one_record_make_one_record_and_removal_empties_the_list() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty(), "no quarantine yet");
        for (seq, sink) in [(9, "kafka"), (3, "rabbitmq"), (9, "rabbitmq")] {
            let frame = Frame::new(seq, 1, vec![seq as u8]);
            keep(dir.path(), &frame, &note(seq, sink)).unwrap();
        }
        std::fs::write(dir.path().join(DIR).join("5-kafka.rec.tmp"), b"cut short").unwrap();
        let records = list_by_record(dir.path()).unwrap();
        assert_eq!(records.keys().copied().collect::<Vec<_>>(), [3, 9]);
        assert_eq!(records[&9].len(), 2);
        for file in list(dir.path()).unwrap() {
            remove(&file.path).unwrap();
        }
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_payload() {
        let dir = tempfile::tempdir().unwrap();
        let frame = Frame::new(1, 1, b"whole");
        let path = keep(dir.path(), &frame, &note(1, "kafka")).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(payload(&path).is_err());
    }
}
