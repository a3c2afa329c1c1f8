//! CloudEvents 1.0 envelopes in structured (JSON) and binary mode.

use std::sync::Arc;

/// `datacontenttype` of every event this crate produces.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// Content type of the structured-mode encoding.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
/// Prefix of CloudEvents attributes in Kafka record headers (binary mode).
pub const KAFKA_HEADER_PREFIX: &str = "ce_";
/// Prefix of CloudEvents attributes in AMQP application properties (binary mode).
pub const AMQP_PROPERTY_PREFIX: &str = "cloudEvents:";

/// One CloudEvent whose `data` is JSON, already encoded.
///
/// Structured mode: [`CloudEvent::to_structured_json`]. Binary mode: the context
/// attributes from [`CloudEvent::attributes`], the content type from
/// [`CloudEvent::content_type`] (which a binding carries in its own content-type field,
/// not as an attribute), and the body from [`CloudEvent::data`]. Kafka and AMQP helpers
/// add the binding prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    pub(crate) id: String,
    pub(crate) source: Arc<str>,
    pub(crate) event_type: Arc<str>,
    pub(crate) subject: Option<String>,
    pub(crate) time: Arc<str>,
    pub(crate) dataschema: Option<&'static str>,
    /// Extension attributes (lowercase alphanumeric names).
    pub(crate) extensions: Vec<(&'static str, String)>,
    pub(crate) data: Vec<u8>,
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

    /// Sets the `deliverymode` extension attribute.
    pub fn set_delivery_mode(&mut self, mode: super::DeliveryMode) {
        let value = mode.as_str().to_owned();
        match self
            .extensions
            .iter_mut()
            .find(|(n, _)| *n == super::DELIVERY_MODE_ATTRIBUTE)
        {
            Some((_, v)) => *v = value,
            None => self
                .extensions
                .push((super::DELIVERY_MODE_ATTRIBUTE, value)),
        }
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

    /// Kafka record headers for binary mode: `ce_<attribute>` for each attribute and
    /// `content-type` for the data's content type. The record value is [`Self::data`].
    pub fn kafka_headers(&self) -> impl Iterator<Item = (String, &str)> + '_ {
        self.attributes()
            .map(|(n, v)| (format!("{KAFKA_HEADER_PREFIX}{n}"), v))
            .chain(std::iter::once((
                "content-type".to_owned(),
                DATA_CONTENT_TYPE,
            )))
    }

    /// AMQP application properties for binary mode: `cloudEvents:<attribute>` for each
    /// attribute. The content type goes into the message's `content-type` property
    /// ([`Self::content_type`]) and the body is [`Self::data`].
    pub fn amqp_application_properties(&self) -> impl Iterator<Item = (String, &str)> + '_ {
        self.attributes()
            .map(|(n, v)| (format!("{AMQP_PROPERTY_PREFIX}{n}"), v))
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
