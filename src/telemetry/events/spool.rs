//! The local spool: its size, its recovery at start-up, and its forwarding.

use std::fmt::Display;
use std::path::Path;

use super::InternalEvent;
use crate::telemetry::Metrics;

/// The spool was opened; what it held is forwarded from now on.
pub struct SpoolRecovered {
    pub entries: u64,
    pub torn_tails: u64,
    pub torn_bytes: u64,
}

impl InternalEvent for SpoolRecovered {
    fn emit(self, metrics: &Metrics) {
        if self.entries > 0 || self.torn_tails > 0 {
            tracing::info!(
                entries = self.entries,
                torn_tails = self.torn_tails,
                torn_bytes = self.torn_bytes,
                "spool recovered; forwarding what it holds"
            );
        }
        metrics.spool.recovered_entries.inc_by(self.entries);
        metrics.spool.torn_tails.inc_by(self.torn_tails);
    }
}

/// Records in the spool not yet confirmed by every sink, now.
pub struct SpoolEntries(pub u64);

impl InternalEvent for SpoolEntries {
    fn emit(self, metrics: &Metrics) {
        metrics.spool.entries.set(self.0 as i64);
    }
}

/// Bytes of spool segments on disk, now.
pub struct SpoolBytes(pub u64);

impl InternalEvent for SpoolBytes {
    fn emit(self, metrics: &Metrics) {
        metrics.spool.bytes.set(self.0 as i64);
    }
}

/// Age in seconds of the oldest record still to forward, now (0 when none).
pub struct SpoolOldestEntryAge(pub f64);

impl InternalEvent for SpoolOldestEntryAge {
    fn emit(self, metrics: &Metrics) {
        metrics.spool.oldest_entry_age_seconds.set(self.0);
    }
}

impl Metrics {
    /// The age last reported by [`SpoolOldestEntryAge`], for `/readyz`.
    pub fn oldest_spooled_age_seconds(&self) -> f64 {
        self.spool.oldest_entry_age_seconds.get()
    }

    /// Records counted by [`SpoolForwarded`].
    pub fn forwarded_from_spool(&self) -> u64 {
        self.spool.forwarded.get()
    }

    /// Failures counted by [`SpoolForwardFailed`] for `sink`.
    pub fn forward_failures(&self, sink: &str) -> u64 {
        self.spool.forward_failures.with_label_values(&[sink]).get()
    }

    /// Records counted by [`SpoolQuarantined`] for `sink` and `reason`.
    pub fn quarantined_in_spool(&self, sink: &str, reason: &str) -> u64 {
        self.spool
            .quarantined
            .with_label_values(&[sink, reason])
            .get()
    }

    /// Records counted by [`SpoolUndecodableKept`].
    pub fn undecodable_in_spool(&self) -> u64 {
        self.spool.undecodable.get()
    }
}

/// A spooled record was confirmed by every sink and released.
pub struct SpoolForwarded;

impl InternalEvent for SpoolForwarded {
    fn emit(self, metrics: &Metrics) {
        metrics.spool.forwarded.inc();
    }
}

/// A sink failed to take a spooled record.
pub struct SpoolForwardFailed<'a> {
    pub sink: &'static str,
    pub seq: u64,
    pub attempts: u32,
    pub error: &'a dyn Display,
    /// False when the record is quarantined for the sink instead
    /// ([`SpoolQuarantined`] logs it).
    pub will_retry: bool,
}

impl InternalEvent for SpoolForwardFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .spool
            .forward_failures
            .with_label_values(&[self.sink])
            .inc();
        if self.will_retry {
            tracing::warn!(sink = self.sink, seq = self.seq, attempts = self.attempts, error = %self.error, "forwarding a spooled record failed; will retry");
        }
    }
}

/// A spooled record a sink refused for good (or past `spool.max_attempts`) was kept
/// under `quarantine/`; the records behind it go on.
pub struct SpoolQuarantined<'a> {
    pub seq: u64,
    pub sink: &'a str,
    pub reason: &'a str,
    pub attempts: u32,
    pub order_key: &'a str,
    pub error: &'a str,
    pub path: &'a Path,
}

impl InternalEvent for SpoolQuarantined<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::error!(
            seq = self.seq,
            sink = %self.sink,
            reason = %self.reason,
            attempts = self.attempts,
            order_key = %self.order_key,
            error = %self.error,
            path = %self.path.display(),
            "a sink refused a spooled record; quarantined it and going on (`vizion-bridge spool quarantine list`)"
        );
        metrics
            .spool
            .quarantined
            .with_label_values(&[self.sink, self.reason])
            .inc();
    }
}

/// Keeping a record under `quarantine/` failed; it is tried again.
pub struct SpoolQuarantineFailed<'a> {
    pub seq: u64,
    pub sink: &'a str,
    pub error: &'a dyn Display,
}

impl SpoolQuarantineFailed<'_> {
    pub fn emit(self) {
        tracing::error!(seq = self.seq, sink = %self.sink, error = %self.error, "quarantining a spooled record failed; will retry");
    }
}

/// A spooled record passed its checksum but cannot be decoded by this version.
pub struct SpoolEntryUndecodable<'a> {
    pub seq: u64,
    pub error: &'a dyn Display,
}

impl SpoolEntryUndecodable<'_> {
    pub fn emit(self) {
        tracing::error!(seq = self.seq, error = %self.error, "a spool entry cannot be decoded; keeping it aside");
    }
}

/// An undecodable record was kept under `undecodable/` and skipped.
pub struct SpoolUndecodableKept<'a> {
    pub seq: u64,
    pub path: &'a Path,
}

impl InternalEvent for SpoolUndecodableKept<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::error!(seq = self.seq, path = %self.path.display(), "an undecodable spool entry was kept aside and skipped");
        metrics.spool.undecodable.inc();
    }
}

/// Keeping an undecodable record aside failed; it is tried again.
pub struct SpoolUndecodableKeepFailed<'a> {
    pub seq: u64,
    pub error: &'a dyn Display,
}

impl SpoolUndecodableKeepFailed<'_> {
    pub fn emit(self) {
        tracing::error!(seq = self.seq, error = %self.error, "keeping an undecodable spool entry failed; will retry");
    }
}

/// The forwarded position could not be stored; it is tried again.
pub struct SpoolPositionStoreFailed<'a> {
    pub error: &'a dyn Display,
}

impl SpoolPositionStoreFailed<'_> {
    pub fn emit(self) {
        tracing::error!(error = %self.error, "storing the spool position failed; will retry");
    }
}
