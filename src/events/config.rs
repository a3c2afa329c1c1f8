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
}
