//! The embedded sink: one JSON line per accepted update in `updates.jsonl`, one per
//! dead letter in `dead-letters.jsonl`, each fsync'd before the write is confirmed.

mod appender;

use std::path::Path;

use async_trait::async_trait;
use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;

use self::appender::Appender;
use super::{Receipt, Record, Sink, SinkError};

pub const UPDATES_FILE: &str = "updates.jsonl";
pub const DEAD_LETTERS_FILE: &str = "dead-letters.jsonl";

pub struct FileSink {
    updates: Appender,
    dead_letters: Appender,
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
            appender::sync_parent_dir(dir).map_err(|e| {
                SinkError::Io(format!("cannot sync data directory {}: {e}", dir.display()))
            })?;
        }
        Ok(Self {
            updates: Appender::open(&dir.join(UPDATES_FILE))?,
            dead_letters: Appender::open(&dir.join(DEAD_LETTERS_FILE))?,
        })
    }
}

#[derive(Serialize)]
struct ReceiptFields<'a> {
    received_at: String,
    request_id: &'a str,
    client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
}

impl<'a> From<&'a Receipt> for ReceiptFields<'a> {
    fn from(receipt: &'a Receipt) -> Self {
        Self {
            received_at: receipt
                .received_at
                .format(&Rfc3339)
                .unwrap_or_else(|_| receipt.received_at.unix_timestamp().to_string()),
            request_id: &receipt.request_id,
            client_ip: receipt.client_ip.to_string(),
            key_id: receipt.key_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct UpdateLine<'a> {
    kind: &'static str,
    update_id: &'a str,
    reference_id: &'a str,
    #[serde(flatten)]
    receipt: ReceiptFields<'a>,
    update: &'a RawValue,
}

#[derive(Serialize)]
struct DeadLetterLine<'a> {
    kind: &'static str,
    reason: &'static str,
    detail: &'a str,
    #[serde(flatten)]
    receipt: ReceiptFields<'a>,
    /// The body byte for byte: it may not be JSON, or even text.
    body_base64: String,
}

/// One line of JSON for a record, newline included.
fn encode(record: &Record<'_>) -> Result<Vec<u8>, SinkError> {
    let mut line = match record {
        Record::Update {
            update_id,
            reference_id,
            body,
            receipt,
        } => {
            // The update is kept as received except for whitespace between tokens,
            // which would break the one-record-per-line format.
            let compact = compact_json(body);
            let update: &RawValue = serde_json::from_slice(&compact)
                .map_err(|e| SinkError::Io(format!("update body is not JSON: {e}")))?;
            serde_json::to_vec(&UpdateLine {
                kind: "update",
                update_id,
                reference_id,
                receipt: (*receipt).into(),
                update,
            })
        }
        Record::DeadLetter {
            reason,
            detail,
            body,
            receipt,
        } => serde_json::to_vec(&DeadLetterLine {
            kind: "dead_letter",
            reason,
            detail,
            receipt: (*receipt).into(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(body),
        }),
    }
    .map_err(|e| SinkError::Io(format!("cannot encode record: {e}")))?;
    line.push(b'\n');
    Ok(line)
}

/// Drops whitespace outside strings from valid JSON, leaving every value untouched.
fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            out.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            if byte == b'"' {
                in_string = true;
            }
            out.push(byte);
        }
    }
    out
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn write(&self, record: &Record<'_>) -> Result<(), SinkError> {
        let line = encode(record)?;
        match record {
            Record::Update { .. } => self.updates.append(line).await,
            Record::DeadLetter { .. } => self.dead_letters.append(line).await,
        }
    }

    fn is_ready(&self) -> bool {
        self.updates.is_open() && self.dead_letters.is_open()
    }

    async fn close(&self) -> Result<(), SinkError> {
        self.updates.close().await;
        self.dead_letters.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_strings_and_drops_layout() {
        let pretty = b"{\n  \"a\" : \"x y\\\" z\",\n  \"b\": [1, 2]\n}\n";
        assert_eq!(
            compact_json(pretty),
            br#"{"a":"x y\" z","b":[1,2]}"#.to_vec()
        );
    }
}
