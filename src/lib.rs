//! vizion-bridge: receives Vizion container-tracking webhooks, checks where they came
//! from and that they are authentic, and writes them durably to the configured sinks.

pub mod events;
pub mod vizion;
