//! Vizion's wire format: recognising what an authentic webhook body is.
//!
//! The data path calls [`parse`] on bytes that have already passed the source and
//! signature checks. Anything authentic that is not a usable delivery comes back as a
//! [`DeadLetter`] with a reason, so the caller can keep it instead of dropping it.

use serde_json::{Map, Value};

/// An authentic body that was understood.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A reference update: the usual webhook, a full snapshot of one container's journey.
    Update(Update),
}

impl Inbound {
    /// The key that identifies this delivery for deduplication (Vizion's update id).
    pub fn dedup_key(&self) -> Option<&str> {
        match self {
            Inbound::Update(update) => Some(&update.id),
        }
    }

    /// A short, stable name of the kind of delivery, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Update(_) => "update",
        }
    }
}

/// A reference update envelope.
#[derive(Debug, Clone)]
pub struct Update {
    pub id: String,
    pub reference_id: String,
    /// The whole envelope as received, fields we do not model included.
    pub envelope: Map<String, Value>,
}

/// Why an authentic body could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    NotJson,
    NotAnObject,
    MissingId,
    MissingReferenceId,
    MissingPayload,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::NotJson => "not_json",
            DeadLetterReason::NotAnObject => "unknown_shape",
            DeadLetterReason::MissingId => "missing_id",
            DeadLetterReason::MissingReferenceId => "missing_reference_id",
            DeadLetterReason::MissingPayload => "missing_payload",
        }
    }
}

/// An authentic body that could not be used, with the reason and a short detail.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: DeadLetterReason,
    pub detail: String,
}

impl DeadLetter {
    fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Recognises an authentic webhook body.
pub fn parse(body: &[u8]) -> Result<Inbound, DeadLetter> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| DeadLetter::new(DeadLetterReason::NotJson, e.to_string()))?;
    let Value::Object(envelope) = value else {
        return Err(DeadLetter::new(
            DeadLetterReason::NotAnObject,
            "the body is JSON but not an object",
        ));
    };
    let id = non_empty_string(&envelope, "id")
        .ok_or_else(|| DeadLetter::new(DeadLetterReason::MissingId, "no string field `id`"))?;
    let reference_id = non_empty_string(&envelope, "reference_id").ok_or_else(|| {
        DeadLetter::new(
            DeadLetterReason::MissingReferenceId,
            "no string field `reference_id`",
        )
    })?;
    if !matches!(envelope.get("payload"), Some(Value::Object(_))) {
        return Err(DeadLetter::new(
            DeadLetterReason::MissingPayload,
            "no object field `payload`",
        ));
    }
    Ok(Inbound::Update(Update {
        id,
        reference_id,
        envelope,
    }))
}

fn non_empty_string(object: &Map<String, Value>, key: &str) -> Option<String> {
    match object.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_minimal_update() {
        let inbound = parse(br#"{"id":"u1","reference_id":"r1","payload":{}}"#).unwrap();
        assert_eq!(inbound.dedup_key(), Some("u1"));
        assert_eq!(inbound.kind(), "update");
    }

    #[test]
    fn names_the_reason_for_each_unusable_body() {
        let cases: [(&[u8], &str); 5] = [
            (b"not json", "not_json"),
            (b"[1,2]", "unknown_shape"),
            (br#"{"reference_id":"r","payload":{}}"#, "missing_id"),
            (br#"{"id":"u","payload":{}}"#, "missing_reference_id"),
            (
                br#"{"id":"u","reference_id":"r","payload":null}"#,
                "missing_payload",
            ),
        ];
        for (body, reason) in cases {
            let dead = parse(body).unwrap_err();
            assert_eq!(
                dead.reason.as_str(),
                reason,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
