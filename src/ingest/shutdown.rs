//! Where the service is in its shutdown, shared by the routes and the code that stops it.

use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// `/readyz` says not ready so that load balancers look away; webhooks are still
    /// taken (`server.shutdown_delay`).
    NotReady,
    /// New webhooks are refused; those in flight are answered by `answer_by` at the
    /// latest, before the connections are closed.
    Draining {
        answer_by: Instant,
    },
}

pub struct ShutdownState {
    phase: watch::Sender<Phase>,
}

impl Default for ShutdownState {
    fn default() -> Self {
        Self {
            phase: watch::Sender::new(Phase::Serving),
        }
    }
}

impl ShutdownState {
    /// Shutdown has begun: not ready any more.
    pub fn stop_being_ready(&self) {
        self.phase.send_if_modified(|phase| {
            let serving = *phase == Phase::Serving;
            if serving {
                *phase = Phase::NotReady;
            }
            serving
        });
    }

    /// No new webhooks; those in flight must be answered by `answer_by`.
    pub fn drain(&self, answer_by: Instant) {
        self.phase.send_replace(Phase::Draining { answer_by });
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.phase.borrow() != Phase::Serving
    }

    pub fn is_draining(&self) -> bool {
        matches!(*self.phase.borrow(), Phase::Draining { .. })
    }

    /// Resolves when a request in flight must be answered, whatever it is waiting for:
    /// never while the service is not draining.
    pub async fn answer_deadline(&self) {
        let mut phase = self.phase.subscribe();
        loop {
            let current = *phase.borrow_and_update();
            if let Phase::Draining { answer_by } = current {
                tokio::time::sleep_until(answer_by).await;
                return;
            }
            if phase.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_deadline_comes_only_once_draining_and_not_before_its_time() {
        let state = std::sync::Arc::new(ShutdownState::default());
        let waiting = tokio::spawn({
            let state = state.clone();
            async move { state.answer_deadline().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());

        state.stop_being_ready();
        assert!(state.is_shutting_down() && !state.is_draining());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());

        let drained_at = Instant::now();
        state.drain(drained_at + Duration::from_millis(200));
        assert!(state.is_draining());
        waiting.await.unwrap();
        assert!(drained_at.elapsed() >= Duration::from_millis(200));
    }
}
