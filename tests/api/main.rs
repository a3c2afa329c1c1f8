mod auth;
mod cli;
mod delivery;
mod health_and_metrics;
mod helpers;
mod kafka;
mod kafka_faults;
mod lifecycle;
mod limits;
mod outage;
mod proxy;
mod rabbitmq;
mod rabbitmq_faults;
mod source;
mod spool;
// Shared with the events tests: fixture bodies and the JSON Schema validators.
#[path = "../fixtures/support.rs"]
mod support;
mod test_sinks;
