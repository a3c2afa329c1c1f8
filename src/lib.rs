//! vizion-bridge: receives Vizion container-tracking webhooks, checks where they came
//! from and that they are authentic, and writes them durably to the configured sinks.
//!
//! The data path reads top to bottom: [`ingest`] (HTTP) or [`poller`] → [`pipeline`]
//! (parse, normalize into an [`events::Envelope`]) → [`delivery`] (dedup,
//! acknowledgement, spool) → [`sinks`].
//!
//! [`settings`] is the root of the configuration, above every component; each
//! component checks its own section and builds itself from a [`config::BuildContext`],
//! and [`startup`] wires them together and stops them.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod events;
pub mod ingest;
pub mod lifecycle;
pub mod pipeline;
pub mod poller;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod sinks;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod vizion;
