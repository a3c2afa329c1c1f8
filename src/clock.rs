//! The wall clock, read in the units the bridge stores and compares: unix seconds for
//! signatures and remembered ids, unix milliseconds for spool entries, RFC 3339 for
//! notes a person reads. A clock set before 1970 reads as 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Now in UTC, as `2024-05-01T12:00:00.123456789Z`; empty if it cannot be formatted.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
