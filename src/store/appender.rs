//! Group commit: one writer thread takes every append that is waiting, hands them to
//! its [`Target`] together, and the target makes the whole batch durable with one
//! fsync. Each caller is answered once its own append is durable (or refused).
//!
//! The target decides what an item is and how a batch lands on disk (lines in one
//! file, frames in rolling segments); the appender only batches, answers and stops.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// Upper bound on appends per fsync, so that one batch cannot grow without limit.
pub const MAX_BATCH: usize = 4096;

/// Where the writer thread puts its batches.
pub trait Target: Send + 'static {
    type Item: Send + 'static;

    /// Whether an append whose caller stopped waiting (its deadline passed, so it
    /// answered and will be retried) is left out rather than written.
    const SKIP_ABANDONED: bool = false;

    /// Writes `batch` and makes it as durable as the target promises (one fsync for
    /// the whole batch, for those that promise it). On an error nothing of the batch
    /// counts as written.
    fn write_batch(&mut self, batch: &mut [Self::Item]) -> io::Result<()>;

    /// Whether appends can go on after a failed batch; when not, the writer stops and
    /// every later append is refused as closed.
    fn usable(&self) -> bool {
        true
    }

    /// Called once on the writer thread when it stops, after the last batch.
    fn finish(&mut self) {}
}

/// Why an append was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The appender is closed, or stopped after a failure it could not undo.
    #[error("the appender is closed")]
    Closed,
    /// The batch holding the append could not be made durable.
    #[error("{0}")]
    Failed(String),
}

struct Job<I> {
    item: I,
    done: oneshot::Sender<Result<(), AppendError>>,
}

pub struct Appender<T: Target> {
    sender: Mutex<Option<mpsc::Sender<Job<T::Item>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    open: Arc<AtomicBool>,
}

/// An append queued for the writer; await [`Pending::durable`] for its answer.
pub struct Pending(oneshot::Receiver<Result<(), AppendError>>);

impl Pending {
    pub async fn durable(self) -> Result<(), AppendError> {
        self.0.await.map_err(|_| AppendError::Closed)?
    }
}

impl<T: Target> Appender<T> {
    /// Starts the writer thread, named `name`, in front of `target`.
    pub fn start(name: impl Into<String>, target: T) -> io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Job<T::Item>>();
        let open = Arc::new(AtomicBool::new(true));
        let writer_open = open.clone();
        let writer = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || write_batches(target, &receiver, &writer_open))?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            open,
        })
    }

    /// False once the writer stopped.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Queues `item`; `Err(Closed)` when the writer no longer takes appends (the item
    /// was then certainly not written).
    pub fn submit(&self, item: T::Item) -> Result<Pending, AppendError> {
        let (done, answer) = oneshot::channel();
        let sender = self.sender.lock().expect("appender lock poisoned");
        let sender = sender.as_ref().ok_or(AppendError::Closed)?;
        sender
            .send(Job { item, done })
            .map_err(|_| AppendError::Closed)?;
        Ok(Pending(answer))
    }

    /// Appends `item` and returns once it is durable.
    pub async fn append(&self, item: T::Item) -> Result<(), AppendError> {
        self.submit(item)?.durable().await
    }

    /// Stops taking appends, lets the writer finish the ones already queued, and
    /// waits for it. An error means the writer thread panicked; the caller, which
    /// knows what the thread wrote, says so in its log.
    pub async fn close(&self) -> Result<(), WriterLost> {
        drop(self.sender.lock().expect("appender lock poisoned").take());
        let writer = self.writer.lock().expect("appender lock poisoned").take();
        if let Some(writer) = writer {
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                return Err(WriterLost);
            }
        }
        Ok(())
    }
}

/// The writer thread ended abnormally (it panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterLost;

fn write_batches<T: Target>(mut target: T, jobs: &mpsc::Receiver<Job<T::Item>>, open: &AtomicBool) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if T::SKIP_ABANDONED {
            batch.retain(|job| !job.done.is_closed());
            if batch.is_empty() {
                continue;
            }
        }
        let (mut items, answers): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|job| (job.item, job.done)).unzip();
        let result = target
            .write_batch(&mut items)
            .map_err(|e| AppendError::Failed(e.to_string()));
        drop(items);
        for done in answers {
            let _ = done.send(result.clone());
        }
        if result.is_err() && !target.usable() {
            break;
        }
    }
    target.finish();
    open.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each batch it is given; fails the batches holding a 0.
    struct Batches(Arc<Mutex<Vec<Vec<u32>>>>);

    impl Target for Batches {
        type Item = u32;

        fn write_batch(&mut self, batch: &mut [u32]) -> io::Result<()> {
            if batch.contains(&0) {
                return Err(io::Error::other("zero refused"));
            }
            self.0.lock().unwrap().push(batch.to_vec());
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_append_is_answered_once_and_none_after_close() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let appender = Arc::new(Appender::start("test-writer", Batches(written.clone())).unwrap());
        let tasks: Vec<_> = (1..=100)
            .map(|n| {
                let appender = appender.clone();
                tokio::spawn(async move { appender.append(n).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            appender.append(0).await,
            Err(AppendError::Failed("zero refused".into()))
        );
        appender.close().await.unwrap();
        assert!(!appender.is_open());
        assert_eq!(appender.append(1).await, Err(AppendError::Closed));
        let mut all: Vec<u32> = written.lock().unwrap().concat();
        all.sort_unstable();
        assert_eq!(all, (1..=100).collect::<Vec<_>>());
    }
}
