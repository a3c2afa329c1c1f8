//! A circuit breaker in front of a dependency that may stop answering: after
//! `failures_to_open` failed calls in a row it refuses calls at once for `open_for`,
//! then lets one call through as a probe, whose success closes it again and whose
//! failure opens it for another `open_for`. Time is passed in by the caller, so that
//! the state machine can be tested without waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Its states are labels of the breaker's metrics, so they are defined with them.
use crate::telemetry::BreakerState;

/// A change of state, as told to the breaker's observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

/// Told of every transition, once, while the breaker's state is locked (so that
/// observers see them in order).
pub type Observer = Arc<dyn Fn(Transition) + Send + Sync>;

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

impl Inner {
    fn state(self) -> BreakerState {
        match self {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

pub struct Breaker {
    failures_to_open: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
    observer: Observer,
}

/// The call was refused: the breaker is open, or a probe is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// Leave to make one call; tell the breaker how it went. A probe dropped without an
/// answer (its caller gave up) counts as failed, so that the breaker cannot stay
/// half-open forever; any other call dropped that way counts as nothing.
#[must_use = "tell the breaker how the call went"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    pub fn succeeded(mut self, now: Instant) {
        self.settled = true;
        self.breaker.settle(self.probe, true, now);
    }

    pub fn failed(mut self, now: Instant) {
        self.settled = true;
        self.breaker.settle(self.probe, false, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.settle(true, false, Instant::now());
        }
    }
}

impl Breaker {
    /// `failures_to_open` is at least 1.
    pub fn new(failures_to_open: u32, open_for: Duration, observer: Observer) -> Self {
        Self {
            failures_to_open: failures_to_open.max(1),
            open_for,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            observer,
        }
    }

    #[cfg(test)]
    pub fn state(&self) -> BreakerState {
        self.lock().state()
    }

    /// Whether a call may be made at `now`. The first call after the open period is
    /// the probe.
    pub fn admit(&self, now: Instant) -> Result<Permit<'_>, Refused> {
        let mut inner = self.lock();
        let probe = match *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } if now >= until => {
                self.change(&mut inner, Inner::HalfOpen);
                true
            }
            Inner::Open { .. } | Inner::HalfOpen => return Err(Refused),
        };
        Ok(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    fn settle(&self, probe: bool, succeeded: bool, now: Instant) {
        let mut inner = self.lock();
        let next = match (*inner, probe, succeeded) {
            (Inner::Closed { .. }, _, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, _, false) if failures + 1 >= self.failures_to_open => {
                Inner::Open {
                    until: now + self.open_for,
                }
            }
            (Inner::Closed { failures }, _, false) => Inner::Closed {
                failures: failures + 1,
            },
            (Inner::HalfOpen, true, true) => Inner::Closed { failures: 0 },
            (Inner::HalfOpen, true, false) => Inner::Open {
                until: now + self.open_for,
            },
            // A call let through before the breaker opened, ending after: the breaker
            // already knows.
            (current, _, _) => current,
        };
        self.change(&mut inner, next);
    }

    fn change(&self, inner: &mut Inner, next: Inner) {
        let (from, to) = (inner.state(), next.state());
        *inner = next;
        if from != to {
            (self.observer)(Transition { from, to });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    fn breaker() -> (Breaker, Arc<Mutex<Vec<BreakerState>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let observer: Observer = Arc::new(move |t: Transition| log.lock().unwrap().push(t.to));
        (Breaker::new(3, OPEN_FOR, observer), seen)
    }

    fn fail(breaker: &Breaker, now: Instant, times: u32) {
        for _ in 0..times {
            breaker.admit(now).expect("admitted").failed(now);
        }
    }

    /// A breaker that opened at the returned instant, after three failures.
    fn opened() -> (Breaker, Arc<Mutex<Vec<BreakerState>>>, Instant) {
        let (breaker, seen) = breaker();
        let t0 = Instant::now();
        fail(&breaker, t0, 3);
        (breaker, seen, t0)
    }

    #[test]
    fn opens_after_the_failures_in_a_row_and_refuses_until_the_open_period_ends() {
        let (breaker, seen) = breaker();
        let t0 = Instant::now();
        fail(&breaker, t0, 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail(&breaker, t0, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit(t0).is_err());
        assert!(breaker
            .admit(t0 + OPEN_FOR - Duration::from_millis(1))
            .is_err());
        assert_eq!(*seen.lock().unwrap(), [BreakerState::Open], "told once");
    }

    #[test]
    fn a_success_resets_the_count_of_failures() {
        let (breaker, _) = breaker();
        let t0 = Instant::now();
        fail(&breaker, t0, 2);
        breaker.admit(t0).unwrap().succeeded(t0);
        fail(&breaker, t0, 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn after_the_open_period_one_probe_goes_and_its_success_closes() {
        let (breaker, seen, t0) = opened();
        let later = t0 + OPEN_FOR;
        let probe = breaker.admit(later).expect("the probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.admit(later).is_err(), "one probe at a time");
        probe.succeeded(later);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit(later).is_ok());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                BreakerState::Open,
                BreakerState::HalfOpen,
                BreakerState::Closed
            ]
        );
    }

    #[test]
    fn a_failed_probe_opens_for_another_period() {
        let (breaker, _, t0) = opened();
        let t1 = t0 + OPEN_FOR;
        breaker.admit(t1).unwrap().failed(t1);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker
            .admit(t1 + OPEN_FOR - Duration::from_millis(1))
            .is_err());
        assert!(breaker.admit(t1 + OPEN_FOR).is_ok());
    }

    #[test]
    fn a_probe_dropped_without_an_answer_opens_again() {
        let (breaker, _, t0) = opened();
        drop(breaker.admit(t0 + OPEN_FOR).unwrap());
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_call_that_ends_after_the_breaker_opened_changes_nothing() {
        let (breaker, _) = breaker();
        let t0 = Instant::now();
        let slow = breaker.admit(t0).unwrap();
        fail(&breaker, t0, 3);
        slow.succeeded(t0);
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
