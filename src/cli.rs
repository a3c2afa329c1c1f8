//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Manage Vizion references (tracking subscriptions) through Vizion's API.
    References {
        /// Configuration file (TOML), for `[vizion_api]`. Defaults to $VIZION_BRIDGE_CONFIG.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// Print Vizion's answers as JSON (for scripts) instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: ReferencesCommand,
    },
    /// Fetch updates from Vizion's API and deliver them as webhooks would be.
    Poll {
        /// Configuration file (TOML). Defaults to $VIZION_BRIDGE_CONFIG.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Run one pass and exit (for cron jobs and backfills); `serve` polls on its own
        /// when `poll.enabled` is set.
        #[arg(long, required = true)]
        once: bool,
        /// Which active references to read, instead of `poll.references`.
        #[arg(long, value_enum, conflicts_with = "reference")]
        references: Option<PollScopeArg>,
        /// Read only this reference (repeatable), active or not.
        #[arg(long, value_name = "ID")]
        reference: Vec<String>,
        /// Print the pass's report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take the bodies the file sink kept (`raw.jsonl` or `dead-letters.jsonl`) through
    /// the pipeline and the configured sinks again, as `deliverymode` `replay`.
    Replay(ReplayArgs),
    /// Look after the local spool (`[spool]`).
    Spool {
        /// Configuration file (TOML), for `[spool]` and the sinks. Defaults to
        /// $VIZION_BRIDGE_CONFIG.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// The spool directory, instead of `spool.dir` (e.g. the retained volume of a
        /// pod that is gone).
        #[arg(long, value_name = "DIR", global = true)]
        dir: Option<PathBuf>,
        #[command(subcommand)]
        command: SpoolCommand,
    },
}

/// `vizion-bridge replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Configuration file (TOML), for the sinks and dedup. Defaults to
    /// $VIZION_BRIDGE_CONFIG.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The file to replay: the file sink's `raw.jsonl` or `dead-letters.jsonl` (each
    /// line is recognised by its fields).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// Only bodies received at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    pub since: Option<time::OffsetDateTime>,
    /// Only bodies received at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    pub until: Option<time::OffsetDateTime>,
    /// Only this update (Vizion's update id; repeatable).
    #[arg(long = "update-id", value_name = "ID")]
    pub update_id: Vec<String>,
    /// Only updates of this reference (repeatable).
    #[arg(long, value_name = "ID")]
    pub reference: Vec<String>,
    /// Publish every selected body, even one published before (deduplication skipped).
    #[arg(long)]
    pub no_dedup: bool,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

fn rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// `vizion-bridge spool …`.
#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Show the backlog: records, bytes, the oldest record, the forwarded position and
    /// the quarantined records. Reads only: safe while the service runs.
    Status {
        /// Print it as one JSON line (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Forward every record to the configured sinks, then exit (for a spool left behind
    /// by a pod that is gone). Refused while a service holds the directory.
    Drain {
        /// Stop after this long, keeping what is not forwarded in the spool, and exit 1.
        #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Records a sink refused for good, kept aside so that the others go on.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List the quarantined records: sequence number, sink, reason, time, container.
    List {
        /// Print them as JSON lines (for scripts) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Append every quarantined record back to the spool, for the forwarder to send to
    /// every sink again. Run it while the service is stopped.
    Requeue,
}

/// `vizion-bridge poll --references`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PollScopeArg {
    /// Active references without a callback URL.
    WithoutCallback,
    /// Every active reference (reconciliation).
    All,
}

#[derive(Debug, Subcommand)]
pub enum ReferencesCommand {
    /// Subscribe a container (`--container` with `--carrier` or `--auto-carrier`) or a
    /// bill of lading (`--bill-of-lading` with `--carrier`).
    Create(CreateArgs),
    /// Show one reference.
    Get {
        /// The reference id.
        id: String,
    },
    /// List references (active ones unless `--inactive`), newest first.
    List(ListArgs),
    /// List a reference's updates, oldest first.
    Updates {
        /// The reference id.
        id: String,
    },
    /// Stop tracking a reference.
    Unsubscribe {
        /// The reference id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container number, e.g. MRKU0090522.
    #[arg(long, value_name = "ID", required_unless_present = "bill_of_lading")]
    pub container: Option<String>,
    /// Bill of lading: one reference per container on it (only `--container` if given).
    #[arg(long, value_name = "BOL")]
    pub bill_of_lading: Option<String>,
    /// Carrier code (SCAC), e.g. MAEU.
    #[arg(long, value_name = "CODE", required_unless_present = "auto_carrier")]
    pub carrier: Option<String>,
    /// Let Vizion identify the carrier of `--container` (billable even when it fails).
    #[arg(long, conflicts_with_all = ["carrier", "bill_of_lading"])]
    pub auto_carrier: bool,
    /// Where Vizion posts updates; defaults to `vizion_api.callback_url`.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Create the reference without a callback URL (read it by polling).
    #[arg(long, conflicts_with = "callback_url")]
    pub no_callback: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List inactive (unsubscribed) references instead.
    #[arg(long)]
    pub inactive: bool,
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    #[arg(long, value_name = "BOL")]
    pub bill_of_lading: Option<String>,
    #[arg(long, value_name = "NUMBER")]
    pub booking_number: Option<String>,
    #[arg(long, value_name = "CODE")]
    pub carrier: Option<String>,
    /// Only references posting to this URL (up to five).
    #[arg(long, value_name = "URL")]
    pub callback_url: Vec<String>,
    #[arg(long, value_name = "STATUS")]
    pub last_update_status: Option<String>,
    /// With `--inactive`: only references deactivated for this reason (repeatable).
    #[arg(long, value_name = "REASON")]
    pub deactivate_reason: Vec<String>,
    /// Show this page only (from 1) instead of every page.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
}
