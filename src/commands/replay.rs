//! `vizion-bridge replay --from FILE`: takes the bodies the file sink kept (`raw.jsonl`,
//! or the dead letters of `dead-letters.jsonl`) through today's pipeline and sinks again,
//! with `deliverymode` `replay`: after a fix (a milestone description, a setting) a dead
//! letter can become an update, and a lost topic can be filled again.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::delivery::DedupUse;
use crate::events::Provenance;
use crate::pipeline::{Arrival, Outcome, Pipeline};
use crate::settings::Settings;
use crate::sinks;
use crate::startup::{SpoolUse, StartupError, Wiring};
use crate::telemetry::{init_logging, Metrics};
use crate::vizion::{self, Inbound};

/// Usage and configuration errors: nothing was replayed.
const USAGE: u8 = 2;

/// What to replay, from the command line.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub from: PathBuf,
    /// Only bodies received at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only bodies received at or before this time.
    pub until: Option<OffsetDateTime>,
    /// Only these updates (Vizion's delivery ids); empty: every one.
    pub update_ids: Vec<String>,
    /// Only these references; empty: every one.
    pub references: Vec<String>,
    /// Write every selected body, even one written before.
    pub no_dedup: bool,
    pub json: bool,
}

/// What a replay came to; printed at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Lines in the file (blank lines aside).
    pub read: u64,
    /// Bodies written to every sink.
    pub published: u64,
    /// Bodies written before, not written again.
    pub duplicate: u64,
    /// Bodies that are still unusable: dead-lettered again.
    pub still_dead: u64,
    /// Lines left out by `--since`, `--until`, `--update-id` or `--reference`.
    pub skipped: u64,
    /// Lines that are neither a `raw.jsonl` line nor a dead letter with its body.
    pub unreadable: u64,
    /// Bodies some sink did not confirm: replay them again.
    pub failed: u64,
    /// The file could not be read to its end: what follows the error was not replayed.
    pub incomplete: bool,
}

/// Runs the replay. Exit 0 when every selected body was written (or was a duplicate,
/// or is still dead), 1 when some writes failed, 2 for a usage or configuration error.
pub fn run(config: Option<&Path>, options: ReplayOptions) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(e) => return usage_error(&e.to_string()),
    };
    init_logging(&settings.log);
    if let Err(e) = settings.validate() {
        return usage_error(&e.to_string());
    }
    if let (Some(since), Some(until)) = (options.since, options.until) {
        if since > until {
            return usage_error("`--since` is after `--until`");
        }
    }
    let file = match std::fs::File::open(&options.from) {
        Ok(file) => file,
        Err(e) => {
            return usage_error(&format!("cannot open {}: {e}", options.from.display()));
        }
    };
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let Ok(runtime) = super::runtime(true).inspect_err(|e| eprintln!("error: {e}")) else {
        return ExitCode::from(USAGE);
    };
    let result = runtime.block_on(async {
        let cx = settings.build_context(Metrics::new());
        let sinks = sinks::build(&settings.sinks, settings.sink_configs(), &cx)?;
        let mut wiring = Wiring::build(&settings, sinks, &cx, SpoolUse::Bypass)?;
        // Only what the file held at the start: replaying the file sink's own file
        // appends to it, and must not read its own output back.
        let input = BufReader::new(file.take(total));
        let summary = replay(&wiring.pipeline, input, total, &options).await;
        wiring.close().await;
        Ok::<_, StartupError>(summary)
    });
    match result {
        Ok(summary) => {
            print_summary(&summary, options.json);
            if summary.incomplete {
                eprintln!("error: the file could not be read to its end; only what came before was replayed");
            }
            if summary.failed > 0 {
                eprintln!(
                    "error: {} bodies were not written by every sink; replay them again",
                    summary.failed
                );
            }
            if summary.failed == 0 && !summary.incomplete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => usage_error(&e.to_string()),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(USAGE)
}

async fn replay(
    pipeline: &Pipeline,
    input: impl BufRead,
    total_bytes: u64,
    options: &ReplayOptions,
) -> ReplaySummary {
    let filter = Filter::new(options);
    let dedup = if options.no_dedup {
        DedupUse::Bypass
    } else {
        DedupUse::Check
    };
    let bar = super::progress("bytes read");
    bar.set_length(total_bytes);
    let mut summary = ReplaySummary::default();
    for (number, line) in input.split(b'\n').enumerate() {
        let number = number + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                // The rest of the file cannot be read either.
                eprintln!("warning: cannot read past line {number}: {e}");
                summary.unreadable += 1;
                summary.incomplete = true;
                break;
            }
        };
        bar.inc(line.len() as u64 + 1);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.read += 1;
        let kept = match Kept::read(&line) {
            Ok(kept) => kept,
            Err(why) => {
                eprintln!("warning: line {number} skipped: {why}");
                summary.unreadable += 1;
                continue;
            }
        };
        if !filter.selects(&kept) {
            summary.skipped += 1;
            continue;
        }
        let arrival = Arrival {
            body: kept.body,
            provenance: Provenance::Replay {
                request_id: kept
                    .request_id
                    .unwrap_or_else(|| format!("replay-{}", uuid::Uuid::new_v4())),
            },
            received_at: kept.received_at,
        };
        match pipeline.take_with(arrival, dedup).await {
            Ok(Outcome::Accepted { .. }) => summary.published += 1,
            Ok(Outcome::Duplicate { .. }) => summary.duplicate += 1,
            Ok(Outcome::DeadLettered { .. }) => summary.still_dead += 1,
            Err(e) => {
                eprintln!("warning: line {number} not written: {e}");
                summary.failed += 1;
            }
        }
    }
    bar.finish_and_clear();
    summary
}

fn print_summary(summary: &ReplaySummary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(summary).unwrap_or_default());
        return;
    }
    println!("read: {}", summary.read);
    println!("published: {}", summary.published);
    println!("duplicate: {}", summary.duplicate);
    println!("still dead: {}", summary.still_dead);
    println!("skipped by filters: {}", summary.skipped);
    println!("unreadable lines: {}", summary.unreadable);
    println!("failed: {}", summary.failed);
}

/// One body the file sink kept, with what the filters look at.
struct Kept {
    body: Bytes,
    received_at: OffsetDateTime,
    request_id: Option<String>,
    /// Vizion's id of the delivery, as the line or the body gives it.
    update_id: Option<String>,
    reference_id: Option<String>,
}

/// A line of `raw.jsonl`, or a dead-letter CloudEvent of `dead-letters.jsonl`: told
/// apart by their fields, so that either file (or both, concatenated) can be given.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Raw {
        body_base64: String,
        received_at: String,
        #[serde(default)]
        delivery_id: Option<String>,
        #[serde(default)]
        request_id: Option<String>,
    },
    DeadLetter {
        data: DeadLetterData,
    },
}

#[derive(Deserialize)]
struct DeadLetterData {
    raw_body_base64: String,
    received_at: String,
}

impl Kept {
    fn read(line: &[u8]) -> Result<Self, String> {
        let line: Line = serde_json::from_slice(line)
            .map_err(|_| "neither a raw.jsonl line nor a dead letter with its body".to_owned())?;
        let (body, received_at, delivery_id, request_id) = match line {
            Line::Raw {
                body_base64,
                received_at,
                delivery_id,
                request_id,
            } => (
                body_base64,
                received_at,
                delivery_id,
                request_id.filter(|r| !r.is_empty()),
            ),
            Line::DeadLetter { data } => (data.raw_body_base64, data.received_at, None, None),
        };
        let body = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("the body is not base64: {e}"))?;
        let received_at = OffsetDateTime::parse(&received_at, &Rfc3339)
            .map_err(|e| format!("bad reception time `{received_at}`: {e}"))?;
        let (update_id, reference_id) = ids_of(&body);
        Ok(Self {
            body: Bytes::from(body),
            received_at,
            request_id,
            update_id: delivery_id.or(update_id),
            reference_id,
        })
    }
}

/// The update and reference ids of a body: as the pipeline reads them, or for a body it
/// cannot use, its top-level `id` and `reference_id` when it has them.
fn ids_of(body: &[u8]) -> (Option<String>, Option<String>) {
    match vizion::parse(body) {
        Ok(Inbound::Update(update)) => (Some(update.id), Some(update.reference_id)),
        Ok(Inbound::ExceptionAlert(p) | Inbound::ReferenceEvent(p)) => (p.id, p.reference_id),
        Err(_) => {
            let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
                return (None, None);
            };
            let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            (text("id"), text("reference_id"))
        }
    }
}

struct Filter<'a> {
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    update_ids: HashSet<&'a str>,
    references: HashSet<&'a str>,
}

impl<'a> Filter<'a> {
    fn new(options: &'a ReplayOptions) -> Self {
        Self {
            since: options.since,
            until: options.until,
            update_ids: options.update_ids.iter().map(String::as_str).collect(),
            references: options.references.iter().map(String::as_str).collect(),
        }
    }

    /// Every given filter must hold; a repeated one holds for any of its values.
    fn selects(&self, kept: &Kept) -> bool {
        let listed = |set: &HashSet<&str>, id: &Option<String>| {
            set.is_empty() || id.as_deref().is_some_and(|id| set.contains(id))
        };
        self.since.is_none_or(|since| kept.received_at >= since)
            && self.until.is_none_or(|until| kept.received_at <= until)
            && listed(&self.update_ids, &kept.update_id)
            && listed(&self.references, &kept.reference_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATE: &str = r#"{"id":"u1","reference_id":"r1","payload":{}}"#;

    fn raw_line(body: &str, received_at: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "kind": "update",
            "delivery_id": "u1",
            "received_at": received_at,
            "request_id": "req-1",
            "client_ip": "10.0.0.1",
            "body_base64": base64::engine::general_purpose::STANDARD.encode(body),
        }))
        .unwrap()
    }

    fn options() -> ReplayOptions {
        ReplayOptions {
            from: PathBuf::new(),
            since: None,
            until: None,
            update_ids: Vec::new(),
            references: Vec::new(),
            no_dedup: false,
            json: false,
        }
    }

    #[test]
    fn a_raw_line_and_a_dead_letter_are_both_read() {
        let kept = Kept::read(&raw_line(UPDATE, "2026-01-02T03:04:05Z")).unwrap();
        assert_eq!(&kept.body[..], UPDATE.as_bytes());
        assert_eq!(kept.request_id.as_deref(), Some("req-1"));
        assert_eq!(kept.update_id.as_deref(), Some("u1"));
        assert_eq!(kept.reference_id.as_deref(), Some("r1"));

        let dead = serde_json::to_vec(&serde_json::json!({
            "specversion": "1.0",
            "id": "x",
            "deliverymode": "webhook",
            "data": {
                "schema_version": 1,
                "reason": "not_json",
                "detail": "",
                "received_at": "2026-01-02T03:04:05Z",
                "raw_body_base64": base64::engine::general_purpose::STANDARD.encode("{not"),
            },
        }))
        .unwrap();
        let kept = Kept::read(&dead).unwrap();
        assert_eq!(&kept.body[..], b"{not");
        assert_eq!(kept.request_id, None);
        assert_eq!(kept.update_id, None);

        assert!(Kept::read(b"{\"kind\":\"update\"}").is_err());
        assert!(Kept::read(b"not json").is_err());
    }

    #[test]
    fn filters_hold_together() {
        let kept = Kept::read(&raw_line(UPDATE, "2026-01-02T03:04:05Z")).unwrap();
        let at = |s: &str| Some(OffsetDateTime::parse(s, &Rfc3339).unwrap());
        let mut o = options();
        assert!(Filter::new(&o).selects(&kept));
        o.since = at("2026-01-02T03:04:05Z");
        o.until = at("2026-01-02T03:04:05Z");
        assert!(Filter::new(&o).selects(&kept));
        o.until = at("2026-01-02T03:04:04Z");
        assert!(!Filter::new(&o).selects(&kept));
        o.until = None;
        o.references = vec!["r2".into(), "r1".into()];
        assert!(Filter::new(&o).selects(&kept));
        o.update_ids = vec!["u2".into()];
        assert!(!Filter::new(&o).selects(&kept));
        o.update_ids.push("u1".into());
        assert!(Filter::new(&o).selects(&kept));
        o.references = vec!["r2".into()];
        assert!(!Filter::new(&o).selects(&kept));
    }
}
