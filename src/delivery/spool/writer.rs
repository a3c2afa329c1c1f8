//! The group-commit writer: one thread takes every append that is waiting, writes the
//! batch and pays one fsync for all of it, as the file sink's appender does.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::format::HEADER_LEN;
use super::log::Log;
use super::{unix_millis, Shared, SpoolError};

/// Upper bound on records per fsync, so one batch cannot grow without limit.
const MAX_BATCH: usize = 4096;

struct Job {
    payload: Vec<u8>,
    /// Sinks that already confirmed the record, for the forwarder to skip.
    confirmed_by: Vec<&'static str>,
    done: oneshot::Sender<Result<(), SpoolError>>,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn start(log: Log, shared: Arc<Shared>) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_batches(log, receiver, thread_shared))?;
        Ok(Self {
            shared,
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(super) async fn append(
        &self,
        payload: Vec<u8>,
        confirmed_by: Vec<&'static str>,
    ) -> Result<(), SpoolError> {
        let frame_len = (HEADER_LEN + payload.len()) as u64;
        self.shared.reserve(frame_len)?;
        let (done, confirmed) = oneshot::channel();
        let sent = {
            let sender = self.sender.lock().expect("spool writer lock poisoned");
            sender
                .as_ref()
                .map(|sender| {
                    let job = Job {
                        payload,
                        confirmed_by,
                        done,
                    };
                    sender.send(job).is_ok()
                })
                .unwrap_or(false)
        };
        if !sent {
            self.shared.remove_bytes(frame_len);
            return Err(SpoolError::Closed);
        }
        confirmed.await.map_err(|_| SpoolError::Closed)?
    }

    /// Stops taking appends, lets the thread write the ones already queued, and waits.
    pub(super) async fn close(&self) {
        drop(
            self.sender
                .lock()
                .expect("spool writer lock poisoned")
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .expect("spool writer lock poisoned")
            .take();
        if let Some(thread) = thread {
            if !matches!(
                tokio::task::spawn_blocking(move || thread.join()).await,
                Ok(Ok(()))
            ) {
                tracing::error!("spool writer thread ended abnormally");
            }
        }
    }
}

fn write_batches(mut log: Log, jobs: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let payloads: Vec<&[u8]> = batch.iter().map(|job| job.payload.as_slice()).collect();
        let result = log.append(&payloads, unix_millis());
        match &result {
            Ok(first) => {
                // Known before the forwarder may read the entries.
                let mut confirmed_before = shared
                    .confirmed_before
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for (seq, job) in (*first..).zip(&mut batch) {
                    if !job.confirmed_by.is_empty() {
                        confirmed_before.insert(seq, std::mem::take(&mut job.confirmed_by));
                    }
                }
                drop(confirmed_before);
                shared.add_entries(batch.len() as u64);
                shared.committed.send_replace(log.next_seq());
            }
            Err(error) => {
                tracing::error!(error = %error, records = batch.len(), "spool write failed");
                let reserved: u64 = batch
                    .iter()
                    .map(|job| (HEADER_LEN + job.payload.len()) as u64)
                    .sum();
                shared.remove_bytes(reserved);
            }
        }
        for job in batch {
            let answer = match &result {
                Ok(_) => Ok(()),
                Err(error) => Err(SpoolError::Io(error.to_string())),
            };
            let _ = job.done.send(answer);
        }
    }
    shared.writable.store(false, Ordering::Release);
}
