//! CloudEvents 1.0 envelopes in structured (JSON) and binary mode.

use std::sync::Arc;

/// `datacontenttype` of every event this crate produces.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// Content type of the structured-mode encoding.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// One CloudEvent whose `data` is JSON, already encoded.
///
/// Structured mode: [`CloudEvent::to_structured_json`]. Binary mode: the context
/// attributes from [`CloudEvent::attributes`], the content type from
/// [`CloudEvent::content_type`] (which a binding carries in its own content-type field,
/// not as an attribute), and the body from [`CloudEvent::data`]. The broker sinks add
/// their binding's prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    pub(in crate::events) id: String,
    pub(in crate::events) source: Arc<str>,
    pub(in crate::events) event_type: Arc<str>,
    pub(in crate::events) subject: Option<String>,
    pub(in crate::events) time: Arc<str>,
    pub(in crate::events) dataschema: Option<&'static str>,
    /// Extension attributes (lowercase alphanumeric names).
    pub(in crate::events) extensions: Vec<(&'static str, String)>,
    pub(in crate::events) data: Vec<u8>,
}

impl CloudEvent {
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    /// The `type` attribute.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// The `time` attribute, RFC 3339 in UTC.
    pub fn time(&self) -> &str {
        &self.time
    }
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema
    }
    /// The `datacontenttype` attribute; in binary mode it travels as the message's
    /// content type.
    pub fn content_type(&self) -> &'static str {
        DATA_CONTENT_TYPE
    }
    /// The event payload (`data`), JSON bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// The value of an extension attribute.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Context attributes for binary mode, as `(name, value)` pairs: `specversion`, `id`,
    /// `source`, `type`, `subject`, `time`, `dataschema` and the extensions.
    /// `datacontenttype` is left out because bindings carry it as the content type.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        [
            Some(("specversion", "1.0")),
            Some(("id", self.id.as_str())),
            Some(("source", &*self.source)),
            Some(("type", &*self.event_type)),
            self.subject.as_deref().map(|s| ("subject", s)),
            Some(("time", &*self.time)),
            self.dataschema.map(|s| ("dataschema", s)),
        ]
        .into_iter()
        .flatten()
        .chain(self.extensions.iter().map(|(n, v)| (*n, v.as_str())))
    }

    /// The structured-mode JSON encoding (`application/cloudevents+json`), with `data`
    /// embedded as a JSON value.
    pub fn to_structured_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 320);
        out.extend_from_slice(br#"{"specversion":"1.0""#);
        let field = |out: &mut Vec<u8>, name: &str, value: &str| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_string(out, value);
        };
        field(&mut out, "id", &self.id);
        field(&mut out, "source", &self.source);
        field(&mut out, "type", &self.event_type);
        if let Some(subject) = &self.subject {
            field(&mut out, "subject", subject);
        }
        field(&mut out, "time", &self.time);
        field(&mut out, "datacontenttype", DATA_CONTENT_TYPE);
        if let Some(schema) = self.dataschema {
            field(&mut out, "dataschema", schema);
        }
        for (name, value) in &self.extensions {
            field(&mut out, name, value);
        }
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(&self.data);
        out.push(b'}');
        out
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a &str is always valid to serialize.
    let _ = serde_json::to_writer(&mut *out, s);
}
