//! `vizion-bridge references …`: Vizion's reference endpoints from the command line,
//! as tables for people or JSON for scripts.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::value::RawValue;

use super::progress;
use crate::cli::{CreateArgs, ListArgs, ReferencesCommand};
use crate::settings::Settings;
use crate::vizion::api::{
    ApiError, NewReference, Reference, ReferenceFilter, Subscribe, VizionApi,
};
use crate::vizion::{self, Inbound};

/// Runs one `references` command; `json` prints Vizion's answers as JSON.
pub fn run(settings: &Settings, command: ReferencesCommand, json: bool) -> ExitCode {
    let mut problems = settings.vizion_api.validate();
    problems.extend(settings.vizion_api.require_key());
    if !problems.is_empty() {
        eprintln!(
            "error: invalid configuration:\n  - {}",
            problems.join("\n  - ")
        );
        return ExitCode::FAILURE;
    }
    let Ok(runtime) = super::runtime(false).inspect_err(|e| eprintln!("error: {e}")) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let api = VizionApi::new(&settings.vizion_api)?;
        let mut out = std::io::stdout().lock();
        match command {
            ReferencesCommand::Create(args) => create(&api, settings, args, json, &mut out).await,
            ReferencesCommand::Get { id } => {
                let reference = api.get_reference(&id).await?;
                if json {
                    print_json(&mut out, &reference)
                } else {
                    print_reference(&mut out, &reference)
                }
            }
            ReferencesCommand::List(args) => list(&api, args, json, &mut out).await,
            ReferencesCommand::Updates { id } => updates(&api, &id, json, &mut out).await,
            ReferencesCommand::Unsubscribe { id } => {
                let answer = api.unsubscribe(&id).await?;
                if json {
                    print_json(&mut out, &answer)
                } else {
                    let said = answer.message.as_deref().unwrap_or("unsubscribed");
                    writeln!(out, "{id}: {said}").map_err(output_error)
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn create(
    api: &VizionApi,
    settings: &Settings,
    args: CreateArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ApiError> {
    let what = match (args.container, args.bill_of_lading, args.carrier) {
        (container, Some(bill_of_lading), Some(carrier_code)) => Subscribe::BillOfLading {
            bill_of_lading,
            carrier_code,
            container_id: container,
        },
        (Some(container_id), None, Some(carrier_code)) => Subscribe::Container {
            container_id,
            carrier_code,
        },
        (Some(container_id), None, None) if args.auto_carrier => {
            Subscribe::AutoCarrier { container_id }
        }
        _ => return Err(ApiError::Config(
            "give --container with --carrier or --auto-carrier, or --bill-of-lading with --carrier"
                .into(),
        )),
    };
    let callback_url =
        if args.no_callback {
            None
        } else {
            match args
                .callback_url
                .or_else(|| settings.vizion_api.callback_url.clone())
            {
                Some(url) => Some(url),
                None => return Err(ApiError::Config(
                    "no callback URL: set `vizion_api.callback_url`, or pass --callback-url URL \
                     (or --no-callback to read updates by polling)"
                        .into(),
                )),
            }
        };
    let created = api
        .create_reference(&NewReference::new(what, callback_url))
        .await?;
    if json {
        return print_json(out, &created);
    }
    if let Some(message) = &created.message {
        writeln!(out, "{message}").map_err(output_error)?;
    }
    print_reference(out, &created.reference)
}

async fn list(
    api: &VizionApi,
    args: ListArgs,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ApiError> {
    let filter = ReferenceFilter {
        active: args.inactive.then_some(false),
        container_id: args.container,
        bill_of_lading: args.bill_of_lading,
        booking_number: args.booking_number,
        carrier_code: args.carrier,
        callback_urls: args.callback_url,
        last_update_status: args.last_update_status,
        deactivate_reasons: args.deactivate_reason,
    };
    let references = match args.page {
        Some(page) => api.list_references(&filter, page).await?.items,
        None => {
            let progress = progress("pages");
            let all = api
                .list_all_references(&filter, |page| {
                    if let Some(info) = page.info {
                        progress.set_length(info.page_count);
                    }
                    progress.inc(1);
                })
                .await;
            progress.finish_and_clear();
            all?
        }
    };
    if json {
        return print_json(out, &references);
    }
    let rows: Vec<Vec<String>> = references
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                text(&r.container_id),
                text(&r.carrier().map(str::to_owned)),
                text(&r.bill_of_lading),
                if r.is_active() { "yes" } else { "no" }.into(),
                text(&r.last_update_status),
                text(&r.callback_url),
            ]
        })
        .collect();
    print_table(
        out,
        &[
            "ID",
            "CONTAINER",
            "CARRIER",
            "BILL OF LADING",
            "ACTIVE",
            "LAST UPDATE",
            "CALLBACK URL",
        ],
        &rows,
    )?;
    writeln!(out, "{} reference(s)", references.len()).map_err(output_error)
}

async fn updates(
    api: &VizionApi,
    id: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), ApiError> {
    let progress = progress("updates");
    let found = api.list_updates(id).await;
    progress.finish_and_clear();
    let (updates, _) = found?;
    if json {
        return print_json(out, &updates);
    }
    let rows: Vec<Vec<String>> = updates.iter().map(|raw| update_row(raw)).collect();
    print_table(
        out,
        &[
            "UPDATE ID",
            "UPDATED AT",
            "CONTAINER",
            "MILESTONES",
            "LAST MILESTONE",
        ],
        &rows,
    )?;
    writeln!(out, "{} update(s)", updates.len()).map_err(output_error)
}

fn update_row(raw: &RawValue) -> Vec<String> {
    match vizion::parse(raw.get().as_bytes()) {
        Ok(Inbound::Update(update)) => {
            let milestones = &update.payload.milestones;
            let last = milestones
                .iter()
                .rev()
                .find(|m| m.planned == Some(false))
                .and_then(|m| m.description.clone());
            vec![
                update.id.clone(),
                text(&update.updated_at),
                text(&update.payload.container_id),
                milestones.len().to_string(),
                text(&last),
            ]
        }
        Ok(other) => vec![
            text(&other.dedup_key().map(str::to_owned)),
            "-".into(),
            "-".into(),
            "-".into(),
            other.kind().into(),
        ],
        Err(dead) => vec![
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            format!("not usable: {}", dead.reason.as_str()),
        ],
    }
}

fn print_reference(out: &mut impl Write, r: &Reference) -> Result<(), ApiError> {
    let fields = [
        ("id", Some(r.id.clone())),
        ("container", r.container_id.clone()),
        ("carrier", r.carrier().map(str::to_owned)),
        ("bill of lading", r.bill_of_lading.clone()),
        ("booking", r.booking_number.clone()),
        (
            "active",
            r.active.map(|a| if a { "yes" } else { "no" }.to_owned()),
        ),
        ("callback url", r.callback_url.clone()),
        ("last update", r.last_update_status.clone()),
        ("last attempt", r.last_update_attempted_at.clone()),
        ("deactivated", r.deactivate_reason.clone()),
        ("parent", r.parent_reference_id.clone()),
        ("created", r.created_at.clone()),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            writeln!(out, "{name:<15} {value}").map_err(output_error)?;
        }
    }
    Ok(())
}

fn print_table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> Result<(), ApiError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec())).map_err(output_error)?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))
            .map_err(output_error)?;
    }
    Ok(())
}

fn print_json(out: &mut impl Write, value: &impl Serialize) -> Result<(), ApiError> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(|e| output_error(std::io::Error::other(e)))?;
    writeln!(out).map_err(output_error)
}

fn text(value: &Option<String>) -> String {
    value
        .clone()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn output_error(e: std::io::Error) -> ApiError {
    ApiError::Config(format!("cannot write the output: {e}"))
}
