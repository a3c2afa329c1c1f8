//! `vizion-bridge spool …`: looking after a spool directory, the configured one or one
//! named with `--dir` (the retained volume of a pod that is gone).
//!
//! - [`status`]: its backlog, read without the lock;
//! - [`drain`]: forwarding all of it to the sinks, then exiting;
//! - [`quarantine`]: the records a sink refused for good.

mod drain;
mod quarantine;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::SpoolCommand;
use crate::delivery::{Spool, SpoolError};
use crate::settings::Settings;
use crate::telemetry::Metrics;

/// Runs `command` on the spool in `dir`, or in `spool.dir` without it.
pub fn run(mut settings: Settings, dir: Option<PathBuf>, command: SpoolCommand) -> ExitCode {
    if dir.is_some() {
        settings.spool.dir = dir;
    }
    let Some(dir) = settings.spool.dir.clone() else {
        eprintln!("error: `spool.dir` is not set and no `--dir` given: there is no spool");
        return ExitCode::FAILURE;
    };
    let result = match command {
        SpoolCommand::Status { json } => status::run(&dir, json),
        SpoolCommand::Drain { timeout } => drain::run(&settings, &dir, timeout),
        SpoolCommand::Quarantine { command } => quarantine::run(&settings, &dir, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the spool, which takes its directory's lock: two processes appending to or
/// forwarding from one directory would corrupt it. `doing` names the command, for the
/// refusal while a service holds it.
fn open_exclusive(settings: &Settings, metrics: &Metrics, doing: &str) -> Result<Spool, String> {
    Spool::open(&settings.spool, metrics.clone()).map_err(|e| match e {
        SpoolError::Locked(dir) => format!(
            "the spool in {dir} is in use by a running vizion-bridge: stop it, then {doing}"
        ),
        other => format!("cannot open the spool: {other}"),
    })
}
