//! `vizion-bridge spool quarantine list|requeue`: what the forwarder kept aside because
//! a sink refused it, and sending it again once the cause is fixed.

use std::path::Path;

use super::open_exclusive;
use crate::cli::QuarantineCommand;
use crate::delivery::spool::quarantine;
use crate::settings::Settings;
use crate::telemetry::Metrics;

pub fn run(settings: &Settings, dir: &Path, command: QuarantineCommand) -> Result<(), String> {
    match command {
        QuarantineCommand::List { json } => list(dir, json),
        QuarantineCommand::Requeue => requeue(settings),
    }
}

/// Reads the quarantine only: safe while the service runs.
fn list(dir: &Path, json: bool) -> Result<(), String> {
    let files = quarantine::list(dir).map_err(|e| format!("cannot read the quarantine: {e}"))?;
    if json {
        for file in &files {
            let line = serde_json::to_string(&file.note).map_err(|e| e.to_string())?;
            println!("{line}");
        }
        return Ok(());
    }
    if files.is_empty() {
        println!(
            "no quarantined records in {}",
            dir.join(quarantine::DIR).display()
        );
        return Ok(());
    }
    println!(
        "{:<10} {:<9} {:<15} {:<8} {:<25} {:<15} DETAIL",
        "SEQ", "SINK", "REASON", "ATTEMPTS", "QUARANTINED AT", "CONTAINER"
    );
    for file in &files {
        let note = &file.note;
        println!(
            "{:<10} {:<9} {:<15} {:<8} {:<25} {:<15} {}",
            note.seq,
            note.sink,
            note.reason,
            note.attempts,
            note.quarantined_at,
            note.order_key,
            note.detail
        );
    }
    let records = files
        .iter()
        .map(|f| f.note.seq)
        .collect::<std::collections::BTreeSet<_>>();
    println!(
        "{} record(s); `vizion-bridge spool quarantine requeue` sends them again",
        records.len()
    );
    Ok(())
}

/// Opens the spool (which takes its lock: refused while the service runs), appends the
/// quarantined records to it, and closes it; the service forwards them at its next start.
fn requeue(settings: &Settings) -> Result<(), String> {
    let runtime = crate::commands::runtime(false)?;
    runtime.block_on(async {
        let spool = open_exclusive(settings, &Metrics::new(), "requeue")?;
        let requeued = spool.requeue_quarantined().await;
        spool.close(std::time::Duration::ZERO).await;
        let requeued = requeued.map_err(|e| format!("requeueing failed: {e}"))?;
        println!("requeued {requeued} record(s); the service forwards them to every sink at its next start");
        Ok(())
    })
}
