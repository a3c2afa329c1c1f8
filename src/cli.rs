//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vizion-bridge",
    version,
    about = "Receives Vizion container-tracking webhooks and writes them durably."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve {
        /// Configuration file (TOML). Defaults to $VIZION_BRIDGE_CONFIG.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig {
        /// Configuration file (TOML). Defaults to $VIZION_BRIDGE_CONFIG.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the `digest` and `x-vizion-signature` headers Vizion would send with a body.
    Sign {
        /// Environment variable that holds the shared secret.
        #[arg(long, value_name = "VAR")]
        secret_env: String,
        /// Key id to name in the signature.
        #[arg(long, value_name = "ID")]
        key_id: Option<String>,
        /// Path the webhook is posted to (part of what is signed).
        #[arg(long, default_value = "/webhooks/vizion")]
        path: String,
        /// Seconds until the signature expires.
        #[arg(long, default_value_t = 300)]
        ttl: i64,
        /// File holding the exact body to send.
        file: PathBuf,
    },
}
