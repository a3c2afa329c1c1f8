//! Appends lines to one file and makes them durable with group commit: a writer thread
//! takes every line that is waiting, writes them together, and pays one fsync for all.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::sinks::SinkError;

/// Upper bound on lines per fsync, so one batch cannot grow without limit.
const MAX_BATCH: usize = 4096;

struct Job {
    line: Vec<u8>,
    done: oneshot::Sender<Result<(), SinkError>>,
}

pub(super) struct Appender {
    path: PathBuf,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    open: Arc<AtomicBool>,
}

impl Appender {
    pub(super) fn open(path: &Path) -> Result<Self, SinkError> {
        let io_error = |e: std::io::Error| SinkError::Io(format!("{}: {e}", path.display()));
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_error)?;
        let len = drop_torn_tail(&mut file).map_err(io_error)?;
        if !existed {
            // The new directory entry must survive a crash as well as the data.
            sync_parent_dir(path).map_err(io_error)?;
        }
        let (sender, receiver) = mpsc::channel::<Job>();
        let open = Arc::new(AtomicBool::new(true));
        let writer_open = open.clone();
        let name = format!(
            "append-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let writer = std::thread::Builder::new()
            .name(name)
            .spawn(move || write_batches(file, len, receiver, writer_open))
            .map_err(io_error)?;
        Ok(Self {
            path: path.to_owned(),
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            open,
        })
    }

    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Appends one line (which must end with `\n`) and returns once it is on disk.
    pub(super) async fn append(&self, line: Vec<u8>) -> Result<(), SinkError> {
        let (done, confirmed) = oneshot::channel();
        {
            let sender = self.sender.lock().expect("appender lock poisoned");
            let sender = sender.as_ref().ok_or(SinkError::Closed)?;
            sender
                .send(Job { line, done })
                .map_err(|_| SinkError::Closed)?;
        }
        confirmed.await.map_err(|_| SinkError::Closed)?
    }

    /// Stops taking lines, lets the writer finish the ones already queued, and waits.
    pub(super) async fn close(&self) {
        drop(self.sender.lock().expect("appender lock poisoned").take());
        let writer = self.writer.lock().expect("appender lock poisoned").take();
        if let Some(writer) = writer {
            let path = self.path.clone();
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!(path = %path.display(), "file writer thread ended abnormally");
            }
        }
    }
}

fn write_batches(mut file: File, mut len: u64, jobs: mpsc::Receiver<Job>, open: Arc<AtomicBool>) {
    let mut buffer = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A caller that stopped waiting (its deadline passed) has answered 503 and
        // will be retried: writing its line now would only duplicate it.
        batch.retain(|job| !job.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        buffer.clear();
        for job in &batch {
            buffer.extend_from_slice(&job.line);
        }
        let (result, usable) = match file.write_all(&buffer) {
            // Nothing of this batch was confirmed: cut back whatever reached the file,
            // so that no half-written line stays in front of the next batch.
            Err(e) => {
                let usable = file.set_len(len).and_then(|()| file.sync_data()).is_ok();
                (Err(SinkError::Io(e.to_string())), usable)
            }
            Ok(()) => match file.sync_data() {
                Ok(()) => {
                    len += buffer.len() as u64;
                    (Ok(()), true)
                }
                // After a failed fsync the kernel may have dropped the dirty pages: the
                // file can no longer be trusted to hold what was written. Stop; a restart
                // cuts any torn tail and carries on.
                Err(e) => {
                    let _ = file.set_len(len);
                    (Err(SinkError::Io(format!("fsync failed: {e}"))), false)
                }
            },
        };
        for job in batch {
            let _ = job.done.send(result.clone());
        }
        if !usable {
            tracing::error!(
                "file sink stopped after a failed write it could not undo; restart to recover"
            );
            open.store(false, Ordering::Release);
            return;
        }
    }
    let _ = file.sync_all();
    open.store(false, Ordering::Release);
}

/// Cuts what a crash may have left after the last confirmed line: a line without its
/// `\n`, or trailing lines that are not JSON (such as blocks of zeros that some file
/// systems show after a crash before fsync). None of it was ever confirmed.
fn drop_torn_tail(file: &mut File) -> std::io::Result<u64> {
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
fn last_newline_before(file: &mut File, end: u64) -> std::io::Result<Option<u64>> {
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

pub(super) fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn confirms_every_line_of_concurrent_writers_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let appender = Arc::new(Appender::open(&path).unwrap());
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
        appender.close().await;
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
            Err(SinkError::Closed)
        ));
    }

    #[tokio::test]
    async fn trailing_garbage_that_is_not_json_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut content = b"{\"a\":1}\n".to_vec();
        content.extend_from_slice(&[0u8; 100]);
        content.extend_from_slice(b"\n\0\0\0\n");
        std::fs::write(&path, content).unwrap();
        let appender = Appender::open(&path).unwrap();
        appender.append(b"{\"c\":3}\n".to_vec()).await.unwrap();
        appender.close().await;
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"a\":1}\n{\"c\":3}\n".to_vec()
        );
    }

    #[tokio::test]
    async fn a_file_of_nothing_but_garbage_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"\0\0\n{\"torn").unwrap();
        let appender = Appender::open(&path).unwrap();
        appender.close().await;
        assert_eq!(std::fs::read(&path).unwrap(), b"".to_vec());
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        let appender = Appender::open(&path).unwrap();
        appender.append(b"{\"c\":3}\n".to_vec()).await.unwrap();
        appender.close().await;
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"a\":1}\n{\"c\":3}\n".to_vec()
        );
    }
}
