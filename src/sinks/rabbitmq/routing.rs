//! Routing keys of the topic exchange: `update.<carrier_scac>`,
//! `milestone.<event_code>.<event_classifier>`, `pass_through.<delivery kind>`, `raw`
//! and `dead_letter`.

use crate::sinks::{Message, MessageKind};

/// Stands in for a routing word the message does not have.
pub const UNKNOWN: &str = "unknown";

/// Longest routing word kept: a key must fit AMQP's 255-byte short string.
const MAX_WORD: usize = 64;

/// The routing key of `message`; `delivery_kind` names a passed-through delivery
/// (`exception_alert`, `reference_event`).
pub fn routing_key(message: &Message<'_>, delivery_kind: Option<&str>) -> String {
    match message.kind {
        MessageKind::Update => format!("update.{}", word(message.carrier_scac)),
        MessageKind::Milestone => {
            let code = message.milestone;
            format!(
                "milestone.{}.{}",
                word(code.map(|c| c.event_code)),
                word(code.map(|c| c.event_classifier))
            )
        }
        MessageKind::PassThrough => format!("pass_through.{}", word(delivery_kind)),
        MessageKind::Raw => "raw".into(),
        MessageKind::DeadLetter => "dead_letter".into(),
    }
}

/// One word of a routing key: no `.` (the word separator) and no `*` or `#` (binding
/// wildcards), so that bindings match what they say.
fn word(value: Option<&str>) -> String {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return UNKNOWN.into();
    }
    let mut out = String::with_capacity(value.len().min(MAX_WORD));
    for c in value.chars() {
        if out.len() + c.len_utf8() > MAX_WORD {
            break;
        }
        out.push(match c {
            '.' | '*' | '#' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MilestoneCode;

    fn message(kind: MessageKind) -> Message<'static> {
        Message {
            kind,
            id: "id",
            key: None,
            event: None,
            payload: b"{}",
            content_type: "application/json",
            carrier_scac: None,
            milestone: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn every_kind_has_its_key() {
        let mut update = message(MessageKind::Update);
        update.carrier_scac = Some("MSCU");
        assert_eq!(routing_key(&update, Some("update")), "update.MSCU");
        let mut milestone = message(MessageKind::Milestone);
        milestone.milestone = Some(MilestoneCode {
            event_code: "ARRI",
            event_classifier: "ACT",
        });
        assert_eq!(routing_key(&milestone, None), "milestone.ARRI.ACT");
        let pass = message(MessageKind::PassThrough);
        assert_eq!(
            routing_key(&pass, Some("exception_alert")),
            "pass_through.exception_alert"
        );
        assert_eq!(routing_key(&message(MessageKind::Raw), None), "raw");
        assert_eq!(
            routing_key(&message(MessageKind::DeadLetter), None),
            "dead_letter"
        );
    }

    #[test]
    fn missing_words_are_unknown_and_wildcards_are_replaced() {
        assert_eq!(
            routing_key(&message(MessageKind::Update), None),
            "update.unknown"
        );
        assert_eq!(
            routing_key(&message(MessageKind::Milestone), None),
            "milestone.unknown.unknown"
        );
        let mut update = message(MessageKind::Update);
        update.carrier_scac = Some("A.B*C# D");
        assert_eq!(routing_key(&update, None), "update.A_B_C__D");
        update.carrier_scac = Some("  ");
        assert_eq!(routing_key(&update, None), "update.unknown");
        let long = "é".repeat(100);
        update.carrier_scac = Some(&long);
        assert!(routing_key(&update, None).len() <= "update.".len() + MAX_WORD);
    }
}
