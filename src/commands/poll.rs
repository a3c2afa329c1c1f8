//! `vizion-bridge poll --once`: one polling pass, through the configured sinks, for cron
//! jobs and backfills.

use std::process::ExitCode;

use crate::cli::PollScopeArg;
use crate::poller::{PollReport, PollScope};
use crate::settings::Settings;
use crate::sinks;
use crate::startup::{SpoolUse, StartupError, Wiring};
use crate::telemetry::Metrics;

/// Runs one pass. Exit 0 when every update was read and written (or was a duplicate);
/// 1 otherwise, so that a cron job's failure shows.
pub fn run(
    mut settings: Settings,
    scope: Option<PollScopeArg>,
    references: Vec<String>,
    json: bool,
) -> ExitCode {
    if let Some(scope) = scope {
        settings.poll.references = match scope {
            PollScopeArg::WithoutCallback => PollScope::WithoutCallback,
            PollScopeArg::All => PollScope::All,
        };
    }
    let mut problems = settings.vizion_api.validate();
    problems.extend(settings.vizion_api.require_key());
    if let Err(e) = settings.validate() {
        problems.push(e.to_string());
    }
    if !problems.is_empty() {
        eprintln!("error: {}", problems.join("\n  - "));
        return ExitCode::FAILURE;
    }
    let Ok(runtime) = super::runtime(true).inspect_err(|e| eprintln!("error: {e}")) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let cx = settings.build_context(Metrics::new());
        let sinks = sinks::build(&settings.sinks, settings.sink_configs(), &cx)?;
        let mut wiring = Wiring::build(&settings, sinks, &cx, SpoolUse::Bypass)?;
        let poller = wiring.poller(&settings)?;
        let report = if references.is_empty() {
            poller.run_once().await
        } else {
            Ok(poller.poll_references(&references).await)
        };
        wiring.close().await;
        Ok::<_, StartupError>(report?)
    });
    match result {
        Ok(report) => {
            print_report(&report, json);
            if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: the pass was incomplete; run it again");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(report: &PollReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    println!(
        "references: {}, updates: {}, accepted: {}, duplicates: {}, dead-lettered: {}, \
         not stored: {}, unreadable references: {}, older than dedup.ttl (skipped): {}",
        report.references,
        report.updates,
        report.accepted,
        report.duplicates,
        report.dead_lettered,
        report.unavailable,
        report.failed_references,
        report.older_than_dedup
    );
}
