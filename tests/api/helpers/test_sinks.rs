//! Sinks that misbehave on purpose: units of the tests, standing in for no broker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Semaphore;
use vizion_bridge::events::Envelope;
use vizion_bridge::sinks::{Sink, SinkError};

/// Records the update ids it was asked to write, and the events it was to publish.
#[derive(Default)]
pub struct Recorded {
    pub update_ids: Mutex<Vec<String>>,
    /// `(type, id)` of every event, in order.
    events: Mutex<Vec<(String, String)>>,
}

impl Recorded {
    fn record(&self, envelope: &Envelope) {
        if let Some(id) = envelope.delivery_id() {
            self.update_ids.lock().unwrap().push(id.to_string());
        }
        self.events.lock().unwrap().extend(
            envelope
                .events()
                .map(|e| (e.event_type().to_owned(), e.id().to_owned())),
        );
    }

    pub fn events(&self) -> Vec<(String, String)> {
        self.events.lock().unwrap().clone()
    }

    pub fn ids(&self) -> Vec<String> {
        self.update_ids.lock().unwrap().clone()
    }
}

/// Fails its first `failures` writes, then confirms.
pub struct FlakySink {
    remaining_failures: AtomicUsize,
    pub written: Arc<Recorded>,
}

impl FlakySink {
    pub fn new(failures: usize) -> Self {
        Self {
            remaining_failures: AtomicUsize::new(failures),
            written: Arc::default(),
        }
    }
}

#[async_trait]
impl Sink for FlakySink {
    fn name(&self) -> &'static str {
        "flaky"
    }

    async fn write(&self, record: &Envelope) -> Result<(), SinkError> {
        let failed = self
            .remaining_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(SinkError::Io("failing on purpose".into()));
        }
        self.written.record(record);
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }

    async fn close(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Confirms a write only when the test lets it through with [`GatedSink::open`].
pub struct GatedSink {
    gate: Arc<Semaphore>,
    pub written: Arc<Recorded>,
    pub waiting: Arc<AtomicUsize>,
    ready: bool,
}

impl GatedSink {
    pub fn new() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            written: Arc::default(),
            waiting: Arc::default(),
            ready: true,
        }
    }

    pub fn not_ready() -> Self {
        Self {
            ready: false,
            ..Self::new()
        }
    }

    pub fn gate(&self) -> Arc<Semaphore> {
        self.gate.clone()
    }
}

#[async_trait]
impl Sink for GatedSink {
    fn name(&self) -> &'static str {
        "gated"
    }

    async fn write(&self, record: &Envelope) -> Result<(), SinkError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = self.gate.acquire().await.map_err(|_| SinkError::Closed)?;
        permit.forget();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.written.record(record);
        Ok(())
    }

    fn is_ready(&self) -> bool {
        self.ready
    }

    async fn close(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
