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
//! bytes of a SHA-256 over those parts, each followed by its length.

use sha2::{Digest, Sha256};

use crate::vizion::Location;

/// The hash of the parts above without the ordinal. Each part is followed by its length
/// in bytes, which keeps the encoding unambiguous. `scratch` is reused between calls to
/// save allocations.
pub(crate) fn milestone_base(
    reference_id: &str,
    description: Option<&str>,
    named_place: Option<&str>,
    location: Option<&Location>,
    scratch: &mut Vec<u8>,
) -> [u8; 32] {
    scratch.clear();
    let mut start = 0;
    scratch.extend_from_slice(b"vizion-bridge milestone v1");
    close(scratch, &mut start);
    scratch.extend_from_slice(reference_id.as_bytes());
    close(scratch, &mut start);
    if let Some(d) = description {
        for (i, word) in d.split_whitespace().enumerate() {
            if i > 0 {
                scratch.push(b' ');
            }
            push_lowercase(scratch, word);
        }
    }
    close(scratch, &mut start);
    if let Some(place) = named_place {
        // The description names a place the route has only one of ("at origin port"):
        // that stays true when Vizion later fills in the location's details.
        scratch.extend_from_slice(b"leg:");
        scratch.extend_from_slice(place.as_bytes());
    } else if let Some(l) = location {
        if let Some(code) = present(&l.unlocode) {
            scratch.extend_from_slice(b"unlocode:");
            let mut buf = [0u8; 4];
            for c in code
                .chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_uppercase)
            {
                scratch.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        } else if let Some(facility) = present(&l.facility) {
            scratch.extend_from_slice(b"facility:");
            push_lowercase(scratch, facility);
        } else if let Some(name) = present(&l.name) {
            scratch.extend_from_slice(b"name:");
            push_lowercase(scratch, name);
        }
    }
    close(scratch, &mut start);
    Sha256::digest(&scratch[..]).into()
}

/// Ends the part that began at `start` by appending its length.
fn close(scratch: &mut Vec<u8>, start: &mut usize) {
    let len = (scratch.len() - *start) as u64;
    scratch.extend_from_slice(&len.to_le_bytes());
    *start = scratch.len();
}

fn push_lowercase(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
    } else {
        let mut buf = [0u8; 4];
        for c in s.chars().flat_map(char::to_lowercase) {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
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
