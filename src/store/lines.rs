//! A file of JSON lines appended through the group-commit [`Appender`]: every batch of
//! lines is written together and fsync'd once. Opening cuts whatever a crash left after
//! the last complete line.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::appender::{Appender, Target};
use super::fs::{sync_parent_dir, write_or_cut_back};

/// Opens (or creates) the file at `path` and starts its writer thread. Each item
/// appended is one or more whole lines, each ending with `\n`.
pub fn open(path: &Path) -> io::Result<Appender<LineFile>> {
    let name = format!(
        "append-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = LineFile::open(path).map_err(with_path)?;
    Appender::start(name, file).map_err(with_path)
}

/// Writes the buffers one after the other with `writev`, rather than copying them
/// into one buffer first (a batch of events can be megabytes); returns the bytes
/// written.
fn write_all_vectored(file: &mut File, batch: &[Vec<u8>]) -> io::Result<usize> {
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .filter(|buffer| !buffer.is_empty())
        .map(|buffer| IoSlice::new(buffer))
        .collect();
    let mut rest = &mut slices[..];
    let mut written = 0;
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

pub struct LineFile {
    file: File,
    /// Bytes confirmed so far: where a failed batch is cut back to.
    len: u64,
    usable: bool,
}

impl LineFile {
    fn open(path: &Path) -> io::Result<Self> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = drop_torn_tail(&mut file)?;
        if !existed {
            // The new directory entry must survive a crash as well as the data.
            sync_parent_dir(path)?;
        }
        Ok(Self {
            file,
            len,
            usable: true,
        })
    }
}

impl Target for LineFile {
    type Item = Vec<u8>;

    const SKIP_ABANDONED: bool = true;

    fn write_batch(&mut self, batch: &mut [Vec<u8>]) -> io::Result<()> {
        // Nothing of a batch that fails is confirmed: it is cut back.
        let written = match write_or_cut_back(&mut self.file, self.len, |file| {
            write_all_vectored(file, batch)
        }) {
            Ok(written) => written,
            Err(torn) => {
                self.usable = torn.cut_back;
                return Err(torn.error);
            }
        };
        match self.file.sync_data() {
            Ok(()) => {
                self.len += written as u64;
                Ok(())
            }
            // After a failed fsync the kernel may have dropped the dirty pages: the
            // file can no longer be trusted to hold what was written. Stop; a restart
            // cuts any torn tail and carries on.
            Err(e) => {
                let _ = self.file.set_len(self.len);
                self.usable = false;
                Err(io::Error::new(e.kind(), format!("fsync failed: {e}")))
            }
        }
    }

    fn usable(&self) -> bool {
        if !self.usable {
            tracing::error!(
                "file sink stopped after a failed write it could not undo; restart to recover"
            );
        }
        self.usable
    }

    fn finish(&mut self) {
        let _ = self.file.sync_all();
    }
}

/// Cuts what a crash may have left after the last confirmed line: a line without its
/// `\n`, or trailing lines that are not JSON (such as blocks of zeros that some file
/// systems show after a crash before fsync). None of it was ever confirmed.
fn drop_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut keep = match last_newline_before(file, len)? {
        Some(pos) => pos + 1,
        None => 0,
    };
    while keep > 0 {
        let start = last_newline_before(file, keep - 1)?.map_or(0, |pos| pos + 1);
        let mut line = vec![0u8; (keep - 1 - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut line)?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok() {
            break;
        }
        keep = start;
    }
    if keep != len {
        tracing::warn!(
            dropped_bytes = len - keep,
            "dropping unconfirmed data after the last complete line"
        );
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(keep)
}

/// Position of the last `\n` in `[0, end)`.
fn last_newline_before(file: &mut File, end: u64) -> io::Result<Option<u64>> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut end = end;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let window = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(pos) = window.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + pos as u64));
        }
        end = start;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::appender::AppendError;
    use super::*;

    /// Writes `content`, opens the file over it, appends `line` if any, closes, and
    /// returns what the file then holds.
    async fn reopen_and_append(content: &[u8], line: Option<&[u8]>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, content).unwrap();
        let appender = open(&path).unwrap();
        if let Some(line) = line {
            appender.append(line.to_vec()).await.unwrap();
        }
        appender.close().await.unwrap();
        std::fs::read(&path).unwrap()
    }

    #[tokio::test]
    async fn confirms_every_line_of_concurrent_writers_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let appender = Arc::new(open(&path).unwrap());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move {
                appender
                    .append(format!("{{\"n\":{i}}}\n").into_bytes())
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        appender.close().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen: Vec<u32> = text
            .lines()
            .map(|l| {
                l.trim_start_matches("{\"n\":")
                    .trim_end_matches('}')
                    .parse()
                    .unwrap()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert!(matches!(
            appender.append(b"late\n".to_vec()).await,
            Err(AppendError::Closed)
        ));
    }

    #[test]
    fn a_batch_of_more_buffers_than_one_writev_takes_is_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut file = LineFile::open(&path).unwrap();
        // Beyond IOV_MAX (1024) buffers, with empty ones among them.
        let mut batch: Vec<Vec<u8>> = (0..3000)
            .map(|i| {
                if i % 7 == 0 {
                    Vec::new()
                } else {
                    format!("{{\"n\":{i}}}\n").into_bytes()
                }
            })
            .collect();
        let expected = batch.concat();
        file.write_batch(&mut batch).unwrap();
        assert_eq!(file.len, expected.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[tokio::test]
    async fn trailing_garbage_that_is_not_json_is_cut() {
        let mut content = b"{\"a\":1}\n".to_vec();
        content.extend_from_slice(&[0u8; 100]);
        content.extend_from_slice(b"\n\0\0\0\n");
        assert_eq!(
            reopen_and_append(&content, Some(b"{\"c\":3}\n")).await,
            b"{\"a\":1}\n{\"c\":3}\n".to_vec()
        );
    }

    #[tokio::test]
    async fn a_file_of_nothing_but_garbage_is_emptied() {
        assert_eq!(
            reopen_and_append(b"\0\0\n{\"torn", None).await,
            b"".to_vec()
        );
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_before_appending() {
        assert_eq!(
            reopen_and_append(b"{\"a\":1}\n{\"b\":", Some(b"{\"c\":3}\n")).await,
            b"{\"a\":1}\n{\"c\":3}\n".to_vec()
        );
    }
}
