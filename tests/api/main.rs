mod auth;
mod auto_unsubscribe;
mod bounded_memory;
mod cli;
mod dedup_persistence;
mod delivery;
mod health_and_metrics;
mod helpers;
mod kafka;
mod kafka_faults;
mod lifecycle;
mod limits;
mod outage;
mod polling;
mod proxy;
mod rabbitmq;
mod rabbitmq_faults;
mod references_cli;
mod simulator;
mod source;
mod spool;
// Shared with the events tests: fixture bodies and the JSON Schema validators.
#[path = "../fixtures/support.rs"]
mod support;
mod test_sinks;
mod vizion_api;
