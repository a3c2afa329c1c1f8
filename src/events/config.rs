use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::changes::DEFAULT_ETA_CHANGE_THRESHOLD;
use super::{EventContext, DEFAULT_SOURCE, DEFAULT_TYPE_PREFIX};
use crate::store::state::StateConfig;

/// Which milestone events an update is published with (`events.milestones`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MilestoneMode {
    /// What changed since the reference's last published state: `milestone.changed`,
    /// `eta_changed` and `journey_completed` events, in place of the snapshots.
    #[default]
    Changes,
    /// One `milestone` event per milestone of every update, changed or not.
    All,
    /// No milestone event of either kind: the tracking update carries them all.
    Off,
}

impl MilestoneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MilestoneMode::Changes => "changes",
            MilestoneMode::All => "all",
            MilestoneMode::Off => "off",
        }
    }
}

/// The CloudEvents attributes every event carries.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The CloudEvents `source`: a URI reference naming this bridge (e.g. per region).
    pub source: String,
    /// Prefix of the CloudEvents `type`: `<prefix>.update.v1`, `<prefix>.milestone.v1`, …
    pub type_prefix: String,
    /// Which milestone events to publish (see [`MilestoneMode`]).
    pub milestones: MilestoneMode,
    /// How far an estimated arrival must move to be an `eta_changed`.
    #[serde(with = "humantime_serde")]
    pub eta_change_threshold: Duration,
    /// How long a reference's state is kept after its last change.
    #[serde(with = "humantime_serde")]
    pub state_ttl: Duration,
    /// How many reference states the state file keeps at most.
    pub state_capacity: u64,
    /// Whether the brokers get every body as received; the file sink and the spool
    /// keep it regardless.
    pub publish_raw: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            source: DEFAULT_SOURCE.into(),
            type_prefix: DEFAULT_TYPE_PREFIX.into(),
            milestones: MilestoneMode::default(),
            eta_change_threshold: DEFAULT_ETA_CHANGE_THRESHOLD,
            state_ttl: StateConfig::default().ttl,
            state_capacity: StateConfig::default().capacity,
            publish_raw: true,
        }
    }
}

impl EventsConfig {
    pub fn context(&self) -> EventContext {
        let context = EventContext::new(&self.source, &self.type_prefix);
        match self.milestones {
            MilestoneMode::All => context,
            MilestoneMode::Changes | MilestoneMode::Off => context.without_milestone_events(),
        }
    }

    /// Where and for how long reference states are kept.
    pub fn state(&self) -> StateConfig {
        StateConfig {
            ttl: self.state_ttl,
            capacity: self.state_capacity,
        }
    }

    /// What is wrong with these settings, one sentence each.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.state().validate();
        if self.eta_change_threshold.is_zero() {
            problems.push("`events.eta_change_threshold` must be above 0".into());
        }
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
