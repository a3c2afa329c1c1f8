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
        buffer.clear();
        for job in &batch {
            buffer.extend_from_slice(&job.line);
        }
        let result = file.write_all(&buffer).and_then(|()| file.sync_data());
        let result = match result {
            Ok(()) => {
                len += buffer.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Leave no half-written line behind: cut the file back to the last
                // confirmed length.
                let _ = file.set_len(len).and_then(|()| file.sync_data());
                Err(SinkError::Io(e.to_string()))
            }
        };
        for job in batch {
            let _ = job.done.send(result.clone());
        }
    }
    let _ = file.sync_all();
    open.store(false, Ordering::Release);
}

/// A crash in the middle of a write can leave a last line without its `\n`. It was
/// never confirmed, so it is cut off before new lines are appended after it.
fn drop_torn_tail(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let window = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(pos) = window.iter().rposition(|&b| b == b'\n') {
            let keep = start + pos as u64 + 1;
            if keep != len {
                tracing::warn!(
                    dropped_bytes = len - keep,
                    "dropping an unconfirmed partial line"
                );
                file.set_len(keep)?;
                file.sync_data()?;
            }
            return Ok(keep);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
        file.sync_data()?;
    }
    Ok(0)
}

fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn confirms_lines_and_keeps_their_order_per_writer() {
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
