//! `vizion-bridge spool status`: a spool's backlog, read without its lock, so that it is
//! safe while a service runs on the directory.

use std::path::Path;

use serde::Serialize;

use crate::delivery::spool::quarantine;
use crate::store::log::{self, checkpoint};

/// What `status` prints (one JSON line with `--json`).
#[derive(Debug, Serialize)]
struct Status {
    dir: String,
    /// Records not yet forwarded to every sink.
    records: u64,
    /// Bytes the spool's segments take.
    bytes: u64,
    /// When the oldest of them was spooled (RFC 3339), and how long ago.
    oldest_spooled_at: Option<String>,
    oldest_age_seconds: Option<f64>,
    /// Every record before this sequence number was forwarded.
    forwarded_position: u64,
    /// Records a sink refused for good, kept under `quarantine/`.
    quarantined: usize,
}

pub fn run(dir: &Path, json: bool) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("there is no spool in {}", dir.display()));
    }
    let forwarded = checkpoint::load(dir);
    let backlog = log::inspect(dir, forwarded)
        .map_err(|e| format!("cannot read the spool in {}: {e}", dir.display()))?;
    let quarantined = quarantine::list_by_record(dir)
        .map_err(|e| format!("cannot read the quarantine: {e}"))?
        .len();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let status = Status {
        dir: dir.display().to_string(),
        records: backlog.entries,
        bytes: backlog.bytes,
        oldest_spooled_at: backlog.oldest_appended_ms.map(rfc3339),
        oldest_age_seconds: backlog
            .oldest_appended_ms
            .map(|ms| (now_ms - i128::from(ms)).max(0) as f64 / 1000.0),
        forwarded_position: forwarded,
        quarantined,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&status).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!("spool:              {}", status.dir);
    println!("records:            {}", status.records);
    println!("bytes:              {}", status.bytes);
    match (&status.oldest_spooled_at, status.oldest_age_seconds) {
        (Some(at), Some(age)) => println!("oldest record:      {at} ({age:.0} s ago)"),
        _ => println!("oldest record:      -"),
    }
    println!("forwarded position: {}", status.forwarded_position);
    println!("quarantined:        {}", status.quarantined);
    Ok(())
}

fn rfc3339(unix_ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
