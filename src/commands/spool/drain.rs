//! `vizion-bridge spool drain`: forwards everything a spool directory holds to the
//! configured sinks with the spool's own forwarder, then exits. For the spool a pod
//! left behind: nothing appends to it while it drains.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::open_exclusive;
use crate::commands::progress;
use crate::delivery::spool::quarantine;
use crate::delivery::{SinkSet, Spool};
use crate::settings::Settings;
use crate::sinks;
use crate::startup::shutdown_signal;
use crate::telemetry::Metrics;

/// How often the records left are looked at (and printed, off a terminal, every
/// [`PLAIN_PROGRESS_EVERY`]).
const POLL_EVERY: Duration = Duration::from_millis(100);
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why the drain stopped.
enum Ending {
    Empty,
    TimedOut,
    Interrupted,
}

pub fn run(settings: &Settings, dir: &Path, timeout: Duration) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("there is no spool in {}", dir.display()));
    }
    let runtime = crate::commands::runtime(true)?;
    runtime.block_on(async {
        let quarantined_before = quarantined_records(dir)?;
        let metrics = Metrics::new();
        let spool = open_exclusive(settings, &metrics, "drain")?;
        let cx = settings.build_context(metrics.clone());
        let sinks = match sinks::build(&settings.sinks, settings.sink_configs(), &cx) {
            Ok(sinks) => sinks,
            Err(e) => {
                spool.close(Duration::ZERO).await;
                cx.shutdown.cancel();
                return Err(format!("cannot start the sinks: {e}"));
            }
        };
        let total = spool.state().entries;
        println!("draining {total} record(s) from {}", dir.display());
        let sinks = Arc::new(SinkSet::new(sinks, metrics.clone()));
        spool.start_forwarding(sinks.clone(), CancellationToken::new(), &TaskTracker::new());
        let ending = tokio::select! {
            () = wait_until_empty(&spool, total) => Ending::Empty,
            () = tokio::time::sleep(timeout) => Ending::TimedOut,
            () = shutdown_signal() => Ending::Interrupted,
        };
        // Records in flight get the time a forward may take; the position is stored.
        spool.close(settings.spool.forward_timeout).await;
        sinks.close().await;
        cx.stop_tasks(cx.grace).await;
        let left = spool.state().entries;
        let quarantined = quarantined_records(dir)?
            .difference(&quarantined_before)
            .count();
        println!(
            "forwarded {} record(s); {quarantined} quarantined during the drain; {left} left",
            total
                .saturating_sub(left)
                .saturating_sub(quarantined as u64)
        );
        if quarantined > 0 {
            println!(
                "`vizion-bridge spool quarantine list --dir {}` shows why",
                dir.display()
            );
        }
        match ending {
            Ending::Empty => Ok(()),
            Ending::TimedOut => Err(format!(
                "stopped after {}: {left} record(s) left in the spool, kept for the next drain",
                humantime::format_duration(timeout)
            )),
            Ending::Interrupted => Err(format!(
                "interrupted: {left} record(s) left in the spool, kept for the next drain"
            )),
        }
    })
}

/// Returns once every record was forwarded or quarantined, showing how many are left:
/// a bar on a terminal, a line every few seconds otherwise.
async fn wait_until_empty(spool: &Spool, total: u64) {
    let on_terminal = std::io::stderr().is_terminal();
    let bar = on_terminal.then(|| {
        let bar = progress("records forwarded");
        bar.set_length(total);
        bar
    });
    let mut last_line = tokio::time::Instant::now();
    loop {
        let left = spool.state().entries;
        match &bar {
            Some(bar) => bar.set_position(total.saturating_sub(left)),
            None if last_line.elapsed() >= PLAIN_PROGRESS_EVERY => {
                eprintln!("{left} record(s) left");
                last_line = tokio::time::Instant::now();
            }
            None => {}
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// The sequence numbers of the quarantined records.
fn quarantined_records(dir: &Path) -> Result<BTreeSet<u64>, String> {
    Ok(quarantine::list_by_record(dir)
        .map_err(|e| format!("cannot read the quarantine: {e}"))?
        .into_keys()
        .collect())
}
