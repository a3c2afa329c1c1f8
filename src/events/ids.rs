//! Deterministic identifiers.
//!
//! A milestone id is derived from what identifies the real-world milestone within one
//! reference and stays put from one snapshot to the next:
//! - the reference id (Vizion's subscription for this container);
//! - the description, trimmed, with whitespace collapsed and lowercased;
//! - the place: the UN/LOCODE (uppercased, spaces removed) when present, else the
//!   facility, else the location name (both lowercased), else nothing;
//! - an ordinal that tells apart different milestones sharing all of the above within
//!   one update, counted in list order (0 for the first).
//!
//! The timestamp, `planned`, vessel and voyage are left out on purpose: an estimate
//! moves, turns into an actual, or moves to another vessel, and is still the same
//! milestone. Milestones that are identical in every field are one milestone listed
//! twice, and get the same id.
//!
//! The id is a UUID (version 8, the layout for custom hashes) made from the first 16
//! bytes of a SHA-256 over those parts, each prefixed by its length.

use sha2::{Digest, Sha256};

use crate::vizion::Location;

/// The hash of the parts above without the ordinal.
pub(crate) fn milestone_base(
    reference_id: &str,
    description: Option<&str>,
    location: Option<&Location>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    part(&mut h, b"vizion-bridge milestone v1");
    part(&mut h, reference_id.as_bytes());
    let description = description
        .map(|d| {
            d.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .unwrap_or_default();
    part(&mut h, description.as_bytes());
    part(&mut h, place_key(location).as_bytes());
    h.finalize().into()
}

fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn place_key(location: Option<&Location>) -> String {
    let Some(l) = location else {
        return String::new();
    };
    if let Some(code) = present(&l.unlocode) {
        let mut key = String::from("unlocode:");
        key.extend(
            code.chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_uppercase),
        );
        key
    } else if let Some(facility) = present(&l.facility) {
        format!("facility:{}", facility.to_lowercase())
    } else if let Some(name) = present(&l.name) {
        format!("name:{}", name.to_lowercase())
    } else {
        String::new()
    }
}

/// The milestone id for the `ordinal`-th distinct milestone with this base.
pub(crate) fn milestone_id(base: &[u8; 32], ordinal: usize) -> String {
    if ordinal == 0 {
        return uuid_v8(base);
    }
    let mut h = Sha256::new();
    part(&mut h, base);
    part(&mut h, &(ordinal as u64).to_le_bytes());
    uuid_v8(&h.finalize().into())
}

/// A UUID for arbitrary parts, e.g. for events that have no id of their own.
pub(crate) fn hashed_id(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        part(&mut h, p);
    }
    uuid_v8(&h.finalize().into())
}

fn part(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn uuid_v8(hash: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).hyphenated().to_string()
}
