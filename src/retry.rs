//! How long to wait between attempts at something that may fail for a while: capped
//! exponential backoff, optionally up to a number of attempts. The spool forwarder, the
//! auto-unsubscription, the RabbitMQ reconnection and the Vizion API client all wait by it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// First wait, longest wait, and how many attempts at most (none: until it works).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: Option<u32>,
}

impl RetryPolicy {
    /// Retries without end, waiting `initial`, then twice as long each time up to `max`.
    pub fn unbounded(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            max_attempts: None,
        }
    }

    /// At most `attempts` attempts in all.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// A fresh count of attempts under this policy.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: *self,
            attempts: 0,
            next: self.initial,
        }
    }
}

/// The attempts made so far under a [`RetryPolicy`], and the wait before the next one.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempts: u32,
    next: Duration,
}

impl Backoff {
    /// Notes one attempt; returns how many were made.
    pub fn attempted(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// True once the policy allows no further attempt.
    pub fn exhausted(&self) -> bool {
        self.policy
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
    }

    /// The wait [`Self::next_delay`] will give, without taking it (for a log line).
    pub fn upcoming(&self) -> Duration {
        self.next
    }

    /// The wait before the next attempt; each call doubles the one after, up to the
    /// policy's maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.policy.max);
        delay
    }

    /// Waits [`Self::next_delay`]; false when `cancel` fired first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = cancel.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let mut backoff =
            RetryPolicy::unbounded(Duration::from_millis(100), Duration::from_millis(350))
                .backoff();
        let waits: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }

    #[test]
    fn attempts_run_out_only_with_a_limit() {
        let policy = RetryPolicy::unbounded(Duration::from_secs(1), Duration::from_secs(8));
        let mut unbounded = policy.backoff();
        let mut bounded = policy.with_max_attempts(2).backoff();
        for _ in 0..2 {
            unbounded.attempted();
            bounded.attempted();
        }
        assert!(!unbounded.exhausted());
        assert!(bounded.exhausted());
        assert_eq!(bounded.attempts(), 2);
    }
}
