//! Reloads of the configuration while the service runs.

use std::fmt::Display;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// The `result` label of `vizion_bridge_config_reloads_total`.
pub const CONFIG_RELOAD_RESULTS: [&str; 3] = ["applied", "unchanged", "failed"];

fn count(metrics: &Metrics, result: &str) {
    metrics.config_reloads.with_label_values(&[result]).inc();
}

/// A new configuration was read and valid. What can change while the service runs
/// (`applied`) now serves; what cannot (`needs_restart`) waits for the next start.
pub struct ConfigReloaded<'a> {
    /// What set off the reload: `signal` or `file`.
    pub trigger: &'a str,
    pub applied: &'a [String],
    pub needs_restart: &'a [String],
}

impl InternalEvent for ConfigReloaded<'_> {
    fn emit(self, metrics: &Metrics) {
        // Counted before the line is written: whoever reads the line finds it counted.
        let applied = !self.applied.is_empty();
        count(metrics, if applied { "applied" } else { "unchanged" });
        if !self.needs_restart.is_empty() {
            tracing::warn!(
                trigger = self.trigger,
                needs_restart = %self.needs_restart.join(", "),
                "configuration changes not applied: they need a restart"
            );
        }
        if applied {
            tracing::info!(
                trigger = self.trigger,
                changed = %self.applied.join(", "),
                "configuration reloaded"
            );
        } else {
            tracing::info!(
                trigger = self.trigger,
                "configuration reloaded, nothing to change"
            );
        }
    }
}

/// A new configuration could not be read or is not valid: none of it applies, and the
/// running one stays.
pub struct ConfigReloadFailed<'a> {
    pub trigger: &'a str,
    /// Never holds a secret: configuration errors name keys, not values.
    pub error: &'a dyn Display,
}

impl InternalEvent for ConfigReloadFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        count(metrics, "failed");
        tracing::error!(
            trigger = self.trigger,
            error = %self.error,
            "configuration reload refused, the running configuration stays"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_of(metrics: &Metrics, result: &str) -> u64 {
        metrics.config_reloads.with_label_values(&[result]).get()
    }

    #[test]
    fn a_reload_counts_as_applied_only_when_a_live_part_changed() {
        let metrics = Metrics::new();
        for result in CONFIG_RELOAD_RESULTS {
            assert_eq!(
                count_of(&metrics, result),
                0,
                "{result} exists from the start"
            );
        }
        let restart_only = ["server.listen".to_owned()];
        metrics.emit(ConfigReloaded {
            trigger: "signal",
            applied: &[],
            needs_restart: &restart_only,
        });
        metrics.emit(ConfigReloaded {
            trigger: "file",
            applied: &["auth.secrets".to_owned()],
            needs_restart: &restart_only,
        });
        metrics.emit(ConfigReloadFailed {
            trigger: "file",
            error: &"`sinks` is empty",
        });
        assert_eq!(count_of(&metrics, "unchanged"), 1);
        assert_eq!(count_of(&metrics, "applied"), 1);
        assert_eq!(count_of(&metrics, "failed"), 1);
    }
}
