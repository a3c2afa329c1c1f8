use serde::{Deserialize, Serialize};

use super::{EventContext, DEFAULT_SOURCE, DEFAULT_TYPE_PREFIX};

/// The CloudEvents attributes every event carries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The CloudEvents `source`: a URI reference naming this bridge (e.g. per region).
    pub source: String,
    /// Prefix of the CloudEvents `type`: `<prefix>.update.v1`, `<prefix>.milestone.v1`, …
    pub type_prefix: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            source: DEFAULT_SOURCE.into(),
            type_prefix: DEFAULT_TYPE_PREFIX.into(),
        }
    }
}

impl EventsConfig {
    pub fn context(&self) -> EventContext {
        EventContext::new(&self.source, &self.type_prefix)
    }

    /// What is wrong with these settings, one sentence each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let source = &self.source;
        if source.is_empty() || source.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(
                "`events.source` must be a URI reference (no spaces), e.g. \"urn:vizion-bridge\""
                    .into(),
            );
        }
        let prefix = &self.type_prefix;
        if prefix.is_empty()
            || prefix.starts_with('.')
            || prefix.ends_with('.')
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            problems.push(
                "`events.type_prefix` must be a dotted name such as \"com.vizionapi.tracking\""
                    .into(),
            );
        }
        problems
    }
}
