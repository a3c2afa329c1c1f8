//! The embedded sink: JSON lines under the data directory, each fsync'd before the
//! write is confirmed.
//!
//! - `events.jsonl`: every normalized event, in CloudEvents structured mode;
//! - `raw.jsonl`: every accepted body byte for byte (base64) with how it was received;
//! - `dead-letters.jsonl`: the dead-letter event of every unusable authentic body.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use futures_util::future::try_join;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::{Sink, SinkError};
use crate::events::{Content, Envelope, Provenance};
use crate::store::appender::{AppendError, Appender};
use crate::store::{fs::sync_parent_dir, lines};

pub const EVENTS_FILE: &str = "events.jsonl";
pub const RAW_FILE: &str = "raw.jsonl";
pub const DEAD_LETTERS_FILE: &str = "dead-letters.jsonl";

pub struct FileSink {
    dir: PathBuf,
    events: Appender<lines::LineFile>,
    raw: Appender<lines::LineFile>,
    dead_letters: Appender<lines::LineFile>,
}

impl FileSink {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| {
            SinkError::Io(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        if created {
            // A new directory must survive a crash as well as the files in it.
            sync_parent_dir(dir).map_err(|e| {
                SinkError::Io(format!("cannot sync data directory {}: {e}", dir.display()))
            })?;
        }
        let open =
            |name: &str| lines::open(&dir.join(name)).map_err(|e| SinkError::Io(e.to_string()));
        Ok(Self {
            dir: dir.to_owned(),
            events: open(EVENTS_FILE)?,
            raw: open(RAW_FILE)?,
            dead_letters: open(DEAD_LETTERS_FILE)?,
        })
    }
}

/// One line of `raw.jsonl`.
#[derive(Serialize)]
struct RawLine<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_id: Option<&'a str>,
    received_at: String,
    request_id: &'a str,
    client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    body_base64: String,
}

impl<'a> RawLine<'a> {
    fn new(
        kind: &'static str,
        delivery_id: Option<&'a str>,
        envelope: &'a Envelope,
        body: &[u8],
    ) -> Self {
        let received_at = envelope.received_at();
        // The line format predates polling: a polled body is written with the address
        // Vizion's API answered from, or the unspecified address when that is unknown
        // (always, for a replayed body).
        let (request_id, client_ip, key_id) = match envelope.provenance() {
            Provenance::Webhook {
                request_id,
                client_ip,
                key_id,
                ..
            } => (request_id.as_str(), *client_ip, key_id.as_deref()),
            Provenance::Poll { request_id, peer } => (
                request_id.as_str(),
                peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                None,
            ),
            Provenance::Replay { request_id } => {
                (request_id.as_str(), IpAddr::V4(Ipv4Addr::UNSPECIFIED), None)
            }
            Provenance::Bridge => ("", IpAddr::V4(Ipv4Addr::UNSPECIFIED), None),
        };
        Self {
            kind,
            delivery_id,
            received_at: received_at
                .format(&Rfc3339)
                .unwrap_or_else(|_| received_at.unix_timestamp().to_string()),
            request_id,
            client_ip: client_ip.to_string(),
            key_id,
            body_base64: base64::engine::general_purpose::STANDARD.encode(body),
        }
    }
}

/// Appends `json` and a line break to `out`, first dropping any line breaks from
/// between its tokens (a pass-through event embeds the body as received, which may be
/// pretty-printed). Inside JSON strings a line break is always escaped, so every raw
/// `\n` or `\r` byte is layout.
fn push_line(out: &mut Vec<u8>, json: &[u8]) {
    if json.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend(json.iter().filter(|&&b| b != b'\n' && b != b'\r'));
    } else {
        out.extend_from_slice(json);
    }
    out.push(b'\n');
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, SinkError> {
    let mut line = serde_json::to_vec(value)
        .map_err(|e| SinkError::Io(format!("cannot encode record: {e}")))?;
    line.push(b'\n');
    Ok(line)
}

impl From<AppendError> for SinkError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Closed => SinkError::Closed,
            AppendError::Failed(reason) => SinkError::Io(reason),
        }
    }
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn write(&self, envelope: &Envelope) -> Result<(), SinkError> {
        match envelope.content() {
            Content::Updates {
                batch,
                kind,
                delivery_id,
                ..
            } => {
                let mut events = Vec::new();
                for event in envelope.events() {
                    push_line(&mut events, &event.to_structured_json());
                }
                let raw = encode(&RawLine::new(
                    kind.as_str(),
                    delivery_id.as_deref(),
                    envelope,
                    batch.raw_body(),
                ))?;
                try_join(self.events.append(events), self.raw.append(raw)).await?;
                Ok(())
            }
            Content::DeadLetter { event, .. } => {
                let mut line = Vec::new();
                push_line(&mut line, &event.to_structured_json());
                Ok(self.dead_letters.append(line).await?)
            }
            Content::BridgeEvent { event, .. } => {
                let mut line = Vec::new();
                push_line(&mut line, &event.to_structured_json());
                Ok(self.events.append(line).await?)
            }
        }
    }

    fn is_ready(&self) -> bool {
        self.events.is_open() && self.raw.is_open() && self.dead_letters.is_open()
    }

    async fn close(&self) -> Result<(), SinkError> {
        let files = [
            (&self.events, EVENTS_FILE),
            (&self.raw, RAW_FILE),
            (&self.dead_letters, DEAD_LETTERS_FILE),
        ];
        for (appender, file) in files {
            if appender.close().await.is_err() {
                let path = self.dir.join(file);
                tracing::error!(path = %path.display(), "file writer thread ended abnormally");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_between_tokens_are_dropped() {
        let mut out = Vec::new();
        push_line(&mut out, b"{\n  \"a\" : \"x\\ny\",\r\n  \"b\": [1, 2]\n}");
        assert_eq!(out, b"{  \"a\" : \"x\\ny\",  \"b\": [1, 2]}\n".to_vec());
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["a"], "x\ny");
    }
}
