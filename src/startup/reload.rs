//! Reading the configuration again while serving, on SIGHUP or when its file or a
//! secret file it names changes, so that rotating a webhook secret or admitting a new
//! sending address needs no restart (a restart of a spooling pod means a replay). A new
//! configuration is loaded and checked as a whole; if anything is wrong with it, none
//! of it applies. Of a valid one, what a request reads ([`LiveConfig`]) and the log
//! level change at once; the rest is named as waiting for a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::web;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};
#[cfg(unix)]
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::auth::KeyRing;
use crate::config::{ConfigError, CONFIG_PATH_ENV};
use crate::ingest::{IngestState, LiveConfig};
use crate::secret;
use crate::settings::Settings;
use crate::telemetry::events::{ConfigReloadFailed, ConfigReloaded};
use crate::telemetry::{self, Metrics};

/// Whether a change of `key` (`section.key`, or a top-level key) applies while serving.
fn is_live(key: &str) -> bool {
    key.starts_with("auth.")
        || key.starts_with("reload.")
        || matches!(
            key,
            "ingest.allowed_sources"
                | "ingest.trusted_proxies"
                | "ingest.forwarded_header"
                | "log.level"
        )
}

/// One key of the settings as two loads are compared: its value as printed (where a
/// secret given inline reads `[redacted]`), and a digest of each secret behind it (the
/// content of each file it names; for `auth.secrets`, each secret however given), so
/// that a rotated secret is a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Print {
    value: Value,
    secrets: Vec<Option<[u8; 32]>>,
}

type Prints = BTreeMap<String, Print>;

fn prints(settings: &Settings) -> Prints {
    let mut prints = Prints::new();
    let Ok(Value::Object(sections)) = serde_json::to_value(settings) else {
        return prints;
    };
    for (section, value) in sections {
        let Value::Object(keys) = value else {
            prints.insert(
                section,
                Print {
                    value,
                    secrets: Vec::new(),
                },
            );
            continue;
        };
        for (key, value) in keys {
            let mut files = Vec::new();
            files_named(&key, &value, &mut files);
            let secrets = files.iter().map(|path| file_digest(path)).collect();
            prints.insert(format!("{section}.{key}"), Print { value, secrets });
        }
    }
    if let Some(print) = prints.get_mut("auth.secrets") {
        print.secrets = settings
            .auth
            .secrets
            .iter()
            .map(|key| {
                secret::resolve(
                    "secret",
                    key.secret.as_ref(),
                    key.secret_env.as_deref(),
                    key.secret_file.as_deref(),
                )
                .ok()
                .map(|secret| Sha256::digest(secret.expose_secret().as_bytes()).into())
            })
            .collect();
    }
    prints
}

/// The paths named under `key` by a `…_file` key: a path, or a table of them (as
/// `kafka.properties_file`).
fn files_named(key: &str, value: &Value, files: &mut Vec<PathBuf>) {
    match value {
        Value::String(path) if key.ends_with("_file") => files.push(PathBuf::from(path)),
        Value::Object(entries) if key.ends_with("_file") => files.extend(
            entries
                .values()
                .filter_map(Value::as_str)
                .map(PathBuf::from),
        ),
        Value::Object(entries) => {
            for (key, value) in entries {
                files_named(key, value, files);
            }
        }
        Value::Array(items) => {
            for item in items {
                files_named(key, item, files);
            }
        }
        _ => {}
    }
}

/// A digest of the file's content (through any symbolic link), `None` when unreadable.
fn file_digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|content| Sha256::digest(content).into())
}

/// What differs between the running settings and new ones.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    /// Keys that apply while serving.
    live: Vec<String>,
    /// Keys that wait for a restart.
    needs_restart: Vec<String>,
}

fn diff(running: &Prints, new: &Prints) -> Changes {
    let mut changes = Changes::default();
    let keys: std::collections::BTreeSet<&String> = running.keys().chain(new.keys()).collect();
    for key in keys {
        if running.get(key) == new.get(key) {
            continue;
        }
        if is_live(key) {
            changes.live.push(key.clone());
        } else {
            changes.needs_restart.push(key.clone());
        }
    }
    changes
}

/// Reloads the configuration of a running service: on SIGHUP, and, with
/// `reload.watch`, when a file it was read from changes.
pub(super) struct Reloader {
    /// The file `serve` was given; `None` reads `VIZION_BRIDGE_CONFIG` again.
    config: Option<PathBuf>,
    /// The settings in force: the start's, with the live parts of each reload.
    running: Settings,
    prints: Prints,
    state: web::Data<IngestState>,
    metrics: Metrics,
    #[cfg(unix)]
    hangup: Signal,
    /// The content of the watched files when last read.
    seen: Vec<Option<[u8; 32]>>,
}

impl Reloader {
    /// Takes over SIGHUP at once, so that from the moment the service listens a
    /// SIGHUP reloads rather than ends the process.
    pub(super) fn new(
        config: Option<PathBuf>,
        settings: &Settings,
        state: web::Data<IngestState>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let mut reloader = Self {
            config,
            running: settings.clone(),
            prints: prints(settings),
            state,
            metrics,
            #[cfg(unix)]
            hangup: signal(SignalKind::hangup())?,
            seen: Vec::new(),
        };
        // Read now, not when the task starts: a change in between is still seen.
        reloader.seen = reloader.watched();
        Ok(reloader)
    }

    /// Reloads on each SIGHUP and each change seen, until `stop`.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        // A change is taken once the files read the same at two polls in a row, so
        // that a file caught half written (an editor saving in place) is not loaded.
        let mut changing = None;
        loop {
            let watch = self.running.reload.watch;
            let interval = self.running.reload.poll_interval;
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                received = self.hangup() => match received {
                    Some(()) => "signal",
                    None => return,
                },
                () = tokio::time::sleep(interval), if watch => {
                    let now = self.watched();
                    if now == self.seen {
                        changing = None;
                        continue;
                    }
                    if changing.as_ref() != Some(&now) {
                        changing = Some(now);
                        continue;
                    }
                    "file"
                }
            };
            // What the files held before they are read: a change landing while they are
            // read is then seen at the next poll, not taken as already loaded. (When the
            // new configuration names other files, that costs one more reload.)
            let before = self.watched();
            self.reload(trigger);
            self.seen = before;
            changing = None;
        }
    }

    /// The next SIGHUP; never where there is none.
    async fn hangup(&mut self) -> Option<()> {
        #[cfg(unix)]
        return self.hangup.recv().await;
        #[cfg(not(unix))]
        std::future::pending().await
    }

    /// The content of every file the running configuration comes from: the file
    /// itself and each file it names.
    fn watched(&self) -> Vec<Option<[u8; 32]>> {
        let mut files: Vec<PathBuf> = self
            .config
            .clone()
            .or_else(|| std::env::var_os(CONFIG_PATH_ENV).map(PathBuf::from))
            .into_iter()
            .collect();
        if let Ok(value) = serde_json::to_value(&self.running) {
            files_named("", &value, &mut files);
        }
        files.iter().map(|path| file_digest(path)).collect()
    }

    fn reload(&mut self, trigger: &str) {
        let (settings, keys, new_prints, changes) = match self.read() {
            Ok(read) => read,
            Err(error) => {
                self.metrics.emit(ConfigReloadFailed {
                    trigger,
                    error: &error,
                });
                return;
            }
        };
        if !changes.live.is_empty() {
            self.apply(settings, keys, &new_prints, &changes.live);
        }
        self.metrics.emit(ConfigReloaded {
            trigger,
            applied: &changes.live,
            needs_restart: &changes.needs_restart,
        });
    }

    /// The new settings, loaded and checked as at start, their secrets, their prints,
    /// and how they differ from those in force.
    fn read(&self) -> Result<(Settings, KeyRing, Prints, Changes), ConfigError> {
        let settings = Settings::load(self.config.as_deref())?;
        let warnings = settings.validate()?;
        let keys = KeyRing::from_config(&settings.auth.secrets)
            .map_err(|e| ConfigError::Invalid(vec![format!("`auth.secrets`: {e}")]))?;
        let new_prints = prints(&settings);
        let changes = diff(&self.prints, &new_prints);
        // At start an unreadable level falls back to `info`; a reload that brings one
        // is refused instead, since the level in force was not that one.
        if changes.live.iter().any(|key| key == "log.level") {
            telemetry::check_log_level(&settings.log.level)
                .map_err(|e| ConfigError::Invalid(vec![e]))?;
        }
        if !changes.live.is_empty() {
            for warning in warnings {
                tracing::warn!("{}", warning.0);
            }
        }
        Ok((settings, keys, new_prints, changes))
    }

    /// Puts the live parts of `new` in force.
    fn apply(&mut self, new: Settings, keys: KeyRing, new_prints: &Prints, changed: &[String]) {
        self.state.live.store(Arc::new(LiveConfig::new(
            &new.ingest,
            new.auth.clone(),
            keys,
        )));
        if changed.iter().any(|key| key == "log.level") {
            match telemetry::set_log_level(&new.log.level) {
                Ok(true) => {}
                Ok(false) => tracing::warn!("`log.level` not applied: RUST_LOG sets the level"),
                Err(e) => tracing::warn!(error = %e, "`log.level` not applied"),
            }
        }
        for key in changed {
            match new_prints.get(key) {
                Some(print) => self.prints.insert(key.clone(), print.clone()),
                None => self.prints.remove(key),
            };
        }
        let running = &mut self.running;
        running.auth = new.auth;
        running.ingest.allowed_sources = new.ingest.allowed_sources;
        running.ingest.trusted_proxies = new.ingest.trusted_proxies;
        running.ingest.forwarded_header = new.ingest.forwarded_header;
        running.log.level = new.log.level;
        running.reload = new.reload;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeyConfig;
    use crate::secret::InlineSecret;
    use crate::sinks::SinkKind;

    fn changes(before: &Settings, after: &Settings) -> Changes {
        diff(&prints(before), &prints(after))
    }

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn the_same_settings_change_nothing() {
        let settings = Settings::default();
        assert_eq!(changes(&settings, &settings.clone()), Changes::default());
    }

    #[test]
    fn sources_proxies_auth_and_the_log_level_apply_live() {
        let before = Settings::default();
        let mut after = before.clone();
        after
            .ingest
            .allowed_sources
            .push("10.1.0.0/16".parse().unwrap());
        after
            .ingest
            .trusted_proxies
            .push("10.2.0.0/16".parse().unwrap());
        after.ingest.forwarded_header = crate::ingest::ForwardedHeader::Forwarded;
        after.auth.mode = crate::auth::Mode::Shadow;
        after.log.level = "debug".into();
        after.reload.watch = false;
        assert_eq!(
            changes(&before, &after),
            Changes {
                live: keys(&[
                    "auth.mode",
                    "ingest.allowed_sources",
                    "ingest.forwarded_header",
                    "ingest.trusted_proxies",
                    "log.level",
                    "reload.watch",
                ]),
                needs_restart: Vec::new(),
            }
        );
    }

    #[test]
    fn listeners_sinks_and_the_rest_need_a_restart() {
        let before = Settings::default();
        let mut after = before.clone();
        after.server.listen = "127.0.0.1:9999".parse().unwrap();
        after.sinks = vec![SinkKind::File, SinkKind::Rabbitmq];
        after.ingest.path = "/elsewhere".into();
        after.log.format = crate::telemetry::LogFormat::Text;
        after.spool.dir = Some("/var/spool".into());
        after.auth.scheme = crate::auth::Scheme::BodyHmac;
        assert_eq!(
            changes(&before, &after),
            Changes {
                live: keys(&["auth.scheme"]),
                needs_restart: keys(&[
                    "ingest.path",
                    "log.format",
                    "server.listen",
                    "sinks",
                    "spool.dir"
                ]),
            }
        );
    }

    #[test]
    fn a_rotated_secret_is_a_change_however_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhook-secret");
        std::fs::write(&file, "old-secret\n").unwrap();
        let mut settings = Settings::default();
        settings.auth.secrets = vec![KeyConfig {
            key_id: Some("k1".into()),
            secret_file: Some(file.clone()),
            ..KeyConfig::default()
        }];
        let before = prints(&settings);
        assert_eq!(diff(&before, &prints(&settings)), Changes::default());
        std::fs::write(&file, "new-secret\n").unwrap();
        assert_eq!(
            diff(&before, &prints(&settings)).live,
            keys(&["auth.secrets"])
        );

        // Inline, the printed value is `[redacted]` either way: the secret still counts.
        let mut inline = Settings::default();
        inline.auth.secrets = vec![KeyConfig {
            secret: Some(InlineSecret::new("one")),
            ..KeyConfig::default()
        }];
        let mut rotated = inline.clone();
        rotated.auth.secrets[0].secret = Some(InlineSecret::new("two"));
        assert_eq!(changes(&inline, &rotated).live, keys(&["auth.secrets"]));
    }

    #[test]
    fn a_changed_secret_file_of_a_sink_needs_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rabbitmq-url");
        std::fs::write(&file, "amqp://one").unwrap();
        let mut settings = Settings::default();
        settings.rabbitmq.url_file = Some(file.clone());
        settings.rabbitmq.url = None;
        let before = prints(&settings);
        std::fs::write(&file, "amqp://two").unwrap();
        assert_eq!(
            diff(&before, &prints(&settings)).needs_restart,
            keys(&["rabbitmq.url_file"])
        );
    }

    #[test]
    fn files_named_anywhere_are_found() {
        let value = serde_json::json!({
            "auth": {"secrets": [{"secret_file": "/a"}, {"secret": "[redacted]"}]},
            "kafka": {"properties_file": {"sasl.password": "/b"}},
            "vizion_api": {"api_key_file": "/c", "base_url": "/not-a-file"},
        });
        let mut files = Vec::new();
        files_named("", &value, &mut files);
        files.sort();
        assert_eq!(files, ["/a", "/b", "/c"].map(PathBuf::from));
    }
}
