//! The on-disk layout of the spool: segment files named after the sequence number of
//! their first entry, each a run of frames
//!
//! ```text
//! [len: u32 LE][crc32: u32 LE][seq: u64 LE][appended_at_ms: u64 LE][payload: len bytes]
//! ```
//!
//! where the checksum covers `len`, `seq`, `appended_at_ms` and the payload, so that a
//! torn or zero-filled tail is told apart from an entry.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Bytes in front of every payload.
pub const HEADER_LEN: usize = 24;
/// Largest payload a frame may carry; anything longer read back is damage.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";

/// One entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub appended_at_ms: u64,
    pub payload: Vec<u8>,
}

impl Frame {
    #[cfg(test)]
    pub fn new(seq: u64, appended_at_ms: u64, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            seq,
            appended_at_ms,
            payload: payload.into(),
        }
    }

    /// Bytes the frame takes on disk.
    pub fn disk_len(&self) -> u64 {
        (HEADER_LEN + self.payload.len()) as u64
    }
}

/// Appends the frame of one entry to `out`.
pub fn encode_frame(out: &mut Vec<u8>, seq: u64, appended_at_ms: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload length checked by the writer");
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(&appended_at_ms.to_le_bytes());
    hasher.update(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&appended_at_ms.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading the next frame found.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// A clean end: no byte after the last frame.
    End,
    /// Bytes that are not a whole, intact frame: a write a crash cut short.
    Torn,
}

/// Reads the next frame from `reader`, which must stand at a frame boundary.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Next> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(reader, &mut header)? {
        0 => return Ok(Next::End),
        n if n < HEADER_LEN => return Ok(Next::Torn),
        _ => {}
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let appended_at_ms = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    if len as usize > MAX_PAYLOAD {
        return Ok(Next::Torn);
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(reader, &mut payload)? < payload.len() {
        return Ok(Next::Torn);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..4]);
    hasher.update(&header[8..24]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(Next::Torn);
    }
    Ok(Next::Frame(Frame {
        seq,
        appended_at_ms,
        payload,
    }))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The file of the segment whose first entry is `first_seq`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// The first sequence number a segment file name stands for.
pub fn segment_first_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(first) = segment_first_seq(&path) {
            segments.push((first, path));
        }
    }
    segments.sort_unstable_by_key(|(first, _)| *first);
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_any_damage_is_torn() {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, 7, 1234, b"hello");
        let Next::Frame(frame) = read_frame(&mut bytes.as_slice()).unwrap() else {
            panic!("frame expected");
        };
        assert_eq!((frame.seq, frame.appended_at_ms), (7, 1234));
        assert_eq!(frame.payload, b"hello");
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(matches!(
                read_frame(&mut damaged.as_slice()).unwrap(),
                Next::Torn
            ));
        }
        assert!(matches!(read_frame(&mut &[][..]).unwrap(), Next::End));
        assert!(matches!(
            read_frame(&mut &[0u8; 40][..]).unwrap(),
            Next::Torn
        ));
    }

    #[test]
    fn segment_names_sort_by_sequence() {
        let dir = Path::new("/spool");
        let path = segment_path(dir, 42);
        assert_eq!(segment_first_seq(&path), Some(42));
        assert_eq!(segment_first_seq(Path::new("/spool/checkpoint")), None);
    }
}
