//! vizion-bridge: receives Vizion container-tracking webhooks, checks where they came
//! from and that they are authentic, and writes them durably to the configured sinks.
//!
//! The data path reads top to bottom: [`ingest`] (HTTP) → [`auth`] → [`vizion`]
//! (parse) → [`delivery`] (dedup, acknowledgement) → [`sinks`].

pub mod auth;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod events;
pub mod ingest;
pub mod lifecycle;
pub mod sinks;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod vizion;
