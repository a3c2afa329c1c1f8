//! What every component is built with: the shared metrics, where local state lives,
//! and the application's lifetime, so that whatever a component runs in the
//! background stops with the application and is waited for.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct BuildContext {
    pub metrics: Metrics,
    /// Directory for everything kept on local disk (`storage.data_dir`).
    pub data_dir: PathBuf,
    /// Cancelled when the application stops: background tasks end when they see it.
    pub shutdown: CancellationToken,
    /// Every background task runs on it, so that shutting down can wait for them.
    pub tasks: TaskTracker,
    /// How long stopping background work may take at shutdown.
    pub grace: Duration,
}

impl BuildContext {
    pub fn new(metrics: Metrics, data_dir: PathBuf, grace: Duration) -> Self {
        Self {
            metrics,
            data_dir,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            grace,
        }
    }

    /// Runs `task` in the background, tracked. Needs a Tokio runtime.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Cancels the token, then waits up to `within` for the tracked tasks to end.
    /// Returns whether they all did.
    pub async fn stop_tasks(&self, within: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok()
    }
}
