//! Spaces requests in time: an optional fixed rate, and a pause for everyone after
//! Vizion answers 429 with `Retry-After`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct Pacer {
    interval: Option<Duration>,
    /// The earliest time the next request may start.
    next: Mutex<Instant>,
}

impl Pacer {
    pub(crate) fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's turn.
    pub(crate) async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().expect("pacer lock poisoned");
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval.unwrap_or(Duration::ZERO);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// No request starts within `pause` from now.
    pub(crate) fn hold_for(&self, pause: Duration) {
        // A pause too long to represent is as good as the longest one that is.
        let until = Instant::now()
            .checked_add(pause)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let mut next = self.next.lock().expect("pacer lock poisoned");
        *next = (*next).max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_spaced_by_the_interval() {
        let pacer = Pacer::new(Some(Duration::from_millis(20)));
        let started = Instant::now();
        for _ in 0..4 {
            pacer.wait().await;
        }
        assert!(started.elapsed() >= Duration::from_millis(60));
    }

    #[tokio::test]
    async fn a_hold_delays_the_next_request() {
        let pacer = Pacer::new(None);
        let started = Instant::now();
        pacer.wait().await;
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "no wait without a hold"
        );
        pacer.hold_for(Duration::from_millis(80));
        pacer.wait().await;
        assert!(started.elapsed() >= Duration::from_millis(80));
    }

    #[test]
    fn an_absurd_hold_does_not_panic() {
        let pacer = Pacer::new(None);
        pacer.hold_for(Duration::MAX);
    }
}
