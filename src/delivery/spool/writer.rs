//! The spool's side of the group-commit appender: each batch becomes consecutive
//! frames in the log with one fsync, and the shared counters follow what is durable.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Shared, SpoolError};
use crate::clock::unix_millis;
use crate::store::appender::{AppendError, Appender, Target};
use crate::store::log::format::HEADER_LEN;
use crate::store::log::Log;

struct Append {
    payload: Vec<u8>,
    /// Sinks that already confirmed the record, for the forwarder to skip.
    confirmed_by: Vec<&'static str>,
}

impl Append {
    fn frame_len(&self) -> u64 {
        (HEADER_LEN + self.payload.len()) as u64
    }
}

struct SpoolLog {
    log: Log,
    shared: Arc<Shared>,
}

impl Target for SpoolLog {
    type Item = Append;

    fn write_batch(&mut self, batch: &mut [Append]) -> io::Result<()> {
        let payloads: Vec<&[u8]> = batch.iter().map(|job| job.payload.as_slice()).collect();
        match self.log.append(&payloads, unix_millis()) {
            Ok(first) => {
                // Known before the forwarder may read the entries.
                let mut confirmed_before = self
                    .shared
                    .confirmed_before
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for (seq, job) in (first..).zip(batch.iter_mut()) {
                    if !job.confirmed_by.is_empty() {
                        confirmed_before.insert(seq, std::mem::take(&mut job.confirmed_by));
                    }
                }
                drop(confirmed_before);
                self.shared.add_entries(batch.len() as u64);
                self.shared.committed.send_replace(self.log.next_seq());
                Ok(())
            }
            Err(error) => {
                tracing::error!(error = %error, records = batch.len(), "spool write failed");
                self.shared
                    .remove_bytes(batch.iter().map(Append::frame_len).sum());
                Err(error)
            }
        }
    }

    fn finish(&mut self) {
        self.shared.writable.store(false, Ordering::Release);
    }
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    appender: Appender<SpoolLog>,
}

impl Writer {
    pub(super) fn start(log: Log, shared: Arc<Shared>) -> io::Result<Self> {
        let target = SpoolLog {
            log,
            shared: shared.clone(),
        };
        Ok(Self {
            shared,
            appender: Appender::start("spool-writer", target)?,
        })
    }

    pub(super) async fn append(
        &self,
        payload: Vec<u8>,
        confirmed_by: Vec<&'static str>,
    ) -> Result<(), SpoolError> {
        let append = Append {
            payload,
            confirmed_by,
        };
        let frame_len = append.frame_len();
        self.shared.reserve(frame_len)?;
        let Ok(pending) = self.appender.submit(append) else {
            self.shared.remove_bytes(frame_len);
            return Err(SpoolError::Closed);
        };
        Ok(pending.durable().await?)
    }

    /// Stops taking appends, lets the thread write the ones already queued, and waits.
    pub(super) async fn close(&self) {
        if self.appender.close().await.is_err() {
            tracing::error!("spool writer thread ended abnormally");
        }
    }
}

impl From<AppendError> for SpoolError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Closed => SpoolError::Closed,
            AppendError::Failed(reason) => SpoolError::Io(reason),
        }
    }
}
