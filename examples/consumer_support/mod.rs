//! What the two example consumers share: the stop conditions, the bounded set of event
//! ids already handled, and the lines they print.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

/// When a consumer stops. A real consumer runs until it is told to stop; these two
/// conditions make the examples usable in scripts and tests.
#[derive(clap::Args)]
pub struct StopWhen {
    /// Stop after handling this many distinct events (duplicates do not count).
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Stop once no message arrived for this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub idle_timeout: Option<Duration>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

impl StopWhen {
    pub fn reached(&self, handled: u64) -> bool {
        self.max_events.is_some_and(|max| handled >= max)
    }

    /// How long to wait for the next message: forever without an idle timeout.
    pub fn wait(&self) -> Duration {
        // About 30 years: tokio's timers accept it, and it is "forever" for a consumer.
        self.idle_timeout
            .unwrap_or(Duration::from_secs(1_000_000_000))
    }
}

/// The ids of the last `capacity` events handled, oldest dropped first.
///
/// Bounded because the stream never ends: a set of every id ever seen grows until the
/// process runs out of memory. Duplicates follow their original closely (a broker
/// redelivers what was not acknowledged, a resent webhook is published again soon
/// after), so remembering the recent ones is enough; size it to cover that window. A
/// consumer that must never act twice across restarts keeps this set in its own
/// database, in the transaction that records the effect.
pub struct RecentIds {
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Whether `id` is new; remembers it.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// One tracking event, as read from the CloudEvents context attributes.
pub struct Event<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    /// The container id (absent when Vizion did not know it yet).
    pub subject: Option<&'a str>,
}

/// Counts and prints what the consumer did: one line per message, one summary.
#[derive(Default)]
pub struct Tally {
    pub handled: u64,
    pub duplicates_skipped: u64,
}

impl Tally {
    pub fn handled(&mut self, event: &Event) {
        self.handled += 1;
        println!(
            "handled id={} type={} subject={}",
            event.id,
            event.event_type,
            event.subject.unwrap_or("-")
        );
    }

    pub fn duplicate(&mut self, event: &Event) {
        self.duplicates_skipped += 1;
        println!("duplicate id={}", event.id);
    }

    pub fn summary(&self) {
        println!(
            "summary handled={} duplicates_skipped={}",
            self.handled, self.duplicates_skipped
        );
    }
}
