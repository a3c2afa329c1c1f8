//! Reads entries back in order, one segment at a time, following the writer: never
//! more than one frame of the spool in memory, and never a byte of a segment past its
//! durable length (what lies beyond may be a write that was refused). Sequence numbers
//! may jump between segments: a refused batch's numbers are never used.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{self, Frame, Next};
use super::SegmentIndex;

pub struct Reader {
    dir: PathBuf,
    index: SegmentIndex,
    /// The next entry wanted.
    next_seq: u64,
    open: Option<OpenSegment>,
}

struct OpenSegment {
    first_seq: u64,
    reader: BufReader<File>,
    /// Offset of the next frame.
    offset: u64,
}

impl Reader {
    /// A reader that starts at entry `from`.
    pub fn new(dir: &Path, index: SegmentIndex, from: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            index,
            next_seq: from,
            open: None,
        }
    }

    /// The next entry before `committed` (the first sequence number not yet durable),
    /// or None when every durable entry was read.
    pub fn next(&mut self, committed: u64) -> io::Result<Option<Frame>> {
        let mut retried = false;
        while self.next_seq < committed {
            if self.open.is_none() {
                let Some(first_seq) = self.index.locate(self.next_seq) else {
                    return Ok(None);
                };
                self.open = Some(self.open_segment(first_seq, 0)?);
            }
            let segment = self.open.as_mut().expect("segment opened above");
            let durable = self.index.durable_bytes(segment.first_seq).unwrap_or(0);
            let next = if segment.offset < durable {
                let mut limited = (&mut segment.reader).take(durable - segment.offset);
                format::read_frame(&mut limited)?
            } else {
                Next::End
            };
            match next {
                Next::Frame(frame) => {
                    segment.offset += frame.disk_len();
                    retried = false;
                    if frame.seq < self.next_seq {
                        continue;
                    }
                    self.next_seq = frame.seq + 1;
                    return Ok(Some(frame));
                }
                Next::End => {
                    // Past this segment's last entry: the rest is in a later one.
                    let current = segment.first_seq;
                    match self.index.after(current) {
                        Some(next) => {
                            self.open = Some(self.open_segment(next, 0)?);
                            // Numbers between the two segments were never acknowledged.
                            self.next_seq = self.next_seq.max(next);
                        }
                        None => return Ok(None),
                    }
                }
                Next::Torn if !retried => {
                    // The buffer may hold bytes of a write that was undone; read again
                    // from the file.
                    retried = true;
                    let (first_seq, offset) = (segment.first_seq, segment.offset);
                    self.open = Some(self.open_segment(first_seq, offset)?);
                }
                Next::Torn => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "spool entry {} is damaged in segment {}",
                            self.next_seq,
                            format::segment_path(&self.dir, segment.first_seq).display()
                        ),
                    ))
                }
            }
        }
        Ok(None)
    }

    /// The next entry wanted: every entry before it was read or never written.
    pub fn position(&self) -> u64 {
        self.next_seq
    }

    fn open_segment(&self, first_seq: u64, offset: u64) -> io::Result<OpenSegment> {
        let mut file = File::open(format::segment_path(&self.dir, first_seq))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(OpenSegment {
            first_seq,
            reader: BufReader::with_capacity(256 * 1024, file),
            offset,
        })
    }
}
