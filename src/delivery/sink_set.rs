//! The configured sinks as one: an envelope is written to all of them (or to those
//! still owing it) side by side, each within a deadline, and what each answered comes
//! back. Every write a sink makes for the bridge goes through here, so that each fact
//! about it is counted once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::DeliveryError;
use crate::events::Envelope;
use crate::sinks::{Sink, SinkError};
use crate::telemetry::events::{self, SinkCloseFailed, SinkWriteFailed, SpoolForwardFailed};
use crate::telemetry::Metrics;

/// Why a write is made, which says what it counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A write the answer to the sender waits for: `vizion_bridge_sink_write_*`.
    Acknowledge,
    /// The spool forwarding a record it holds: `vizion_bridge_spool_forward_failures_total`.
    Forward {
        seq: u64,
        /// Attempts made for the record, this one included.
        attempts: u32,
        /// No other attempt follows this one, whatever it answers.
        last_attempt: bool,
    },
}

/// What one sink answered.
#[derive(Debug, Clone)]
pub enum SinkOutcome {
    Confirmed,
    Failed(SinkError),
    /// No answer within the deadline.
    TimedOut(Duration),
}

impl SinkOutcome {
    /// The failure as a sink error: a write without an answer is a broker one.
    pub fn error(&self) -> Option<SinkError> {
        match self {
            SinkOutcome::Confirmed => None,
            SinkOutcome::Failed(error) => Some(error.clone()),
            SinkOutcome::TimedOut(timeout) => Some(SinkError::Broker(format!(
                "no confirmation within {timeout:?}"
            ))),
        }
    }

    /// The `reason` label of a failure.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkOutcome::Confirmed => "confirmed",
            SinkOutcome::Failed(error) => error.reason(),
            SinkOutcome::TimedOut(_) => "timeout",
        }
    }
}

/// One sink's answer to one write.
#[derive(Debug, Clone)]
pub struct SinkWrite {
    pub sink: &'static str,
    pub outcome: SinkOutcome,
}

pub struct SinkSet {
    sinks: Vec<Arc<dyn Sink>>,
    metrics: Metrics,
}

impl SinkSet {
    pub fn new(sinks: Vec<Arc<dyn Sink>>, metrics: Metrics) -> Self {
        Self { sinks, metrics }
    }

    /// The sinks' names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sinks.iter().map(|s| s.name())
    }

    /// True when every sink can take writes now.
    pub fn is_ready(&self) -> bool {
        self.sinks.iter().all(|s| s.is_ready())
    }

    /// Each sink's name and whether it is ready.
    pub fn states(&self) -> Vec<(&'static str, bool)> {
        self.sinks
            .iter()
            .map(|s| (s.name(), s.is_ready()))
            .collect()
    }

    /// Writes `envelope` to every sink `wanted` names, each within `deadline`, and
    /// returns each one's answer in configuration order. Every write is awaited, even
    /// after one fails, so that none is left running unobserved.
    pub async fn write(
        &self,
        envelope: &Envelope,
        wanted: impl Fn(&'static str) -> bool,
        deadline: Duration,
        purpose: Purpose,
    ) -> Vec<SinkWrite> {
        let chosen: Vec<&Arc<dyn Sink>> = self.sinks.iter().filter(|s| wanted(s.name())).collect();
        let writes = chosen
            .iter()
            .map(|sink| self.write_one(sink.as_ref(), envelope, deadline, purpose));
        join_all(writes).await
    }

    async fn write_one(
        &self,
        sink: &dyn Sink,
        envelope: &Envelope,
        deadline: Duration,
        purpose: Purpose,
    ) -> SinkWrite {
        let name = sink.name();
        let started = Instant::now();
        let outcome = match tokio::time::timeout(deadline, sink.write(envelope)).await {
            Ok(Ok(())) => SinkOutcome::Confirmed,
            Ok(Err(error)) => SinkOutcome::Failed(error),
            Err(_) => SinkOutcome::TimedOut(deadline),
        };
        match (purpose, &outcome) {
            (Purpose::Acknowledge, SinkOutcome::Confirmed) => {
                self.metrics.emit(events::SinkWrite {
                    sink: name,
                    duration: started.elapsed(),
                })
            }
            (Purpose::Acknowledge, failed) => {
                if let Some(error) = DeliveryError::from_outcome(name, failed) {
                    self.metrics.emit(SinkWriteFailed {
                        sink: name,
                        reason: failed.reason(),
                        error: &error,
                    });
                }
            }
            (Purpose::Forward { .. }, SinkOutcome::Confirmed) => {}
            (
                Purpose::Forward {
                    seq,
                    attempts,
                    last_attempt,
                },
                failed,
            ) => {
                if let Some(error) = failed.error() {
                    self.metrics.emit(SpoolForwardFailed {
                        sink: name,
                        seq,
                        attempts,
                        error: &error,
                        will_retry: !(error.is_permanent() || last_attempt),
                    });
                }
            }
        }
        SinkWrite {
            sink: name,
            outcome,
        }
    }

    /// Flushes and closes every sink.
    pub async fn close(&self) {
        for sink in &self.sinks {
            if let Err(error) = sink.close().await {
                SinkCloseFailed {
                    sink: sink.name(),
                    error: &error,
                }
                .emit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;

    /// Answers every write the same way.
    struct Fixed {
        name: &'static str,
        answer: Option<SinkError>,
        slow: bool,
    }

    #[async_trait]
    impl Sink for Fixed {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn write(&self, _: &Envelope) -> Result<(), SinkError> {
            if self.slow {
                std::future::pending::<()>().await;
            }
            self.answer.clone().map_or(Ok(()), Err)
        }
        fn is_ready(&self) -> bool {
            self.answer.is_none()
        }
        async fn close(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn envelope() -> Envelope {
        crate::delivery::testing::dead_letter(b"{not json", "req")
    }

    fn set(metrics: &Metrics) -> SinkSet {
        let sink = |name, answer, slow| -> Arc<dyn Sink> { Arc::new(Fixed { name, answer, slow }) };
        SinkSet::new(
            vec![
                sink("file", None, false),
                sink("kafka", Some(SinkError::Closed), false),
                sink("rabbitmq", None, true),
            ],
            metrics.clone(),
        )
    }

    #[tokio::test]
    async fn each_sink_answers_and_each_fact_is_counted_once() {
        let metrics = Metrics::new();
        let sinks = set(&metrics);
        assert!(!sinks.is_ready());
        assert_eq!(
            sinks.names().collect::<Vec<_>>(),
            ["file", "kafka", "rabbitmq"]
        );
        let deadline = Duration::from_millis(20);
        let writes = sinks
            .write(&envelope(), |_| true, deadline, Purpose::Acknowledge)
            .await;
        let outcomes: Vec<_> = writes
            .iter()
            .map(|w| (w.sink, w.outcome.reason()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("file", "confirmed"),
                ("kafka", "closed"),
                ("rabbitmq", "timeout")
            ]
        );
        let failures = |sink, reason| metrics.write_failures(sink, reason);
        assert_eq!(failures("kafka", "closed"), 1);
        assert_eq!(failures("rabbitmq", "timeout"), 1);
        let timed = |sink| metrics.confirmed_writes(sink);
        assert_eq!(timed("file"), 1);

        // Forwarding writes only to the sinks asked for, and counts forward failures.
        let writes = sinks
            .write(
                &envelope(),
                |name| name == "kafka",
                deadline,
                Purpose::Forward {
                    seq: 0,
                    attempts: 1,
                    last_attempt: false,
                },
            )
            .await;
        assert_eq!(writes.len(), 1);
        assert_eq!(metrics.forward_failures("kafka"), 1);
        assert_eq!(failures("kafka", "closed"), 1);
        assert_eq!(timed("file"), 1);
    }
}
