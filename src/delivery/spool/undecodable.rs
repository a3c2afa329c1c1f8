//! Records this version cannot decode: each is kept, as the frame it was on disk, in
//! `undecodable/<seq>.bin` under the spool directory before the forwarder moves past it,
//! so that an update that was acknowledged is never simply gone (a newer version, or a
//! person, can still read it).

use std::io;
use std::path::{Path, PathBuf};

use super::aside;
use crate::store::log::format::{self, Frame};

const DIR: &str = "undecodable";

/// Writes `frame` to `<dir>/undecodable/<seq>.bin` and makes it durable; returns the
/// file's path.
pub fn keep(dir: &Path, frame: &Frame) -> io::Result<PathBuf> {
    let mut bytes = Vec::with_capacity(format::HEADER_LEN + frame.payload.len());
    format::encode_frame(&mut bytes, frame.seq, frame.appended_at_ms, &frame.payload);
    aside::write(dir, DIR, &format!("{}.bin", frame.seq), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log::format::Next;

    #[test]
    fn a_kept_record_reads_back_as_the_frame_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let frame = Frame::new(42, 1234, b"a record of a later version");
        let path = keep(dir.path(), &frame).unwrap();
        assert_eq!(path, dir.path().join("undecodable").join("42.bin"));
        let bytes = std::fs::read(&path).unwrap();
        let Next::Frame(read) = format::read_frame(&mut bytes.as_slice()).unwrap() else {
            panic!("the kept file is not a whole frame");
        };
        assert_eq!(read, frame);
        assert!(!dir.path().join("undecodable").join("42.bin.tmp").exists());
    }
}
