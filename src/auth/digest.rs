//! The `digest` header (RFC 3230 syntax): `SHA-256=<hex or base64>`, possibly several
//! comma-separated entries.

use base64::Engine;
use sha2::digest::Output;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{AuthFailure, FailureReason};

/// The most entries a digest header may hold. A sender needs one per algorithm; the
/// limit keeps the parsing of a long header from costing more than reading it.
pub(crate) const MAX_DIGEST_ENTRIES: usize = 8;

/// Checks a digest header against the body. Every entry with a known algorithm must
/// match, and at least one entry must have a known algorithm. The body is hashed at most
/// once per algorithm, however often an algorithm is named.
pub(crate) fn verify(header: &[u8], body: &[u8]) -> Result<(), AuthFailure> {
    let header = std::str::from_utf8(header)
        .map_err(|_| AuthFailure::new(FailureReason::MalformedDigest, "digest is not text"))?;
    let mut sha256: Option<Output<Sha256>> = None;
    let mut sha512: Option<Output<Sha512>> = None;
    let mut checked = 0usize;
    for (n, entry) in header.split(',').enumerate() {
        if n == MAX_DIGEST_ENTRIES {
            return Err(AuthFailure::new(
                FailureReason::MalformedDigest,
                "digest has more than 8 entries",
            ));
        }
        let (algorithm, value) = entry.trim().split_once('=').ok_or(AuthFailure::new(
            FailureReason::MalformedDigest,
            "digest entry is not algorithm=value",
        ))?;
        let algorithm = algorithm.trim();
        let expected: &[u8] = if algorithm.eq_ignore_ascii_case("sha-256") {
            sha256.get_or_insert_with(|| Sha256::digest(body))
        } else if algorithm.eq_ignore_ascii_case("sha-512") {
            sha512.get_or_insert_with(|| Sha512::digest(body))
        } else {
            continue;
        };
        let received = decode(value.trim(), expected.len()).ok_or(AuthFailure::new(
            FailureReason::MalformedDigest,
            "digest value is neither hex nor base64 of the right length",
        ))?;
        if !bool::from(received.ct_eq(expected)) {
            return Err(AuthFailure::new(
                FailureReason::BadDigest,
                "digest does not match the body",
            ));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(AuthFailure::new(
            FailureReason::MalformedDigest,
            "digest names no supported algorithm (SHA-256, SHA-512)",
        ));
    }
    Ok(())
}

/// HEX (Vizion's encoding) or padded base64 (RFC 3230 as written), of exactly `len`
/// bytes. Only a value of one of the two exact lengths is decoded, so what is allocated
/// does not depend on what was sent.
pub(crate) fn decode(value: &str, len: usize) -> Option<Vec<u8>> {
    if value.len() == len * 2 {
        if let Ok(bytes) = hex::decode(value) {
            return Some(bytes);
        }
    }
    if value.len() != len.div_ceil(3) * 4 {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .filter(|bytes| bytes.len() == len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"test";
    // SHA-256("test"), computed with `printf test | sha256sum`.
    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn accepts_hex_in_either_case_and_base64() {
        verify(format!("SHA-256={HEX}").as_bytes(), BODY).unwrap();
        verify(format!("sha-256={}", HEX.to_uppercase()).as_bytes(), BODY).unwrap();
        verify(
            b"SHA-256=n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
            BODY,
        )
        .unwrap();
    }

    #[test]
    fn rejects_a_wrong_or_unusable_digest() {
        let wrong = format!("SHA-256={}", HEX.replace('9', "8"));
        assert_eq!(
            verify(wrong.as_bytes(), BODY).unwrap_err().reason,
            FailureReason::BadDigest
        );
        assert_eq!(
            verify(b"MD5=abc", BODY).unwrap_err().reason,
            FailureReason::MalformedDigest
        );
        assert_eq!(
            verify(b"SHA-256=zz", BODY).unwrap_err().reason,
            FailureReason::MalformedDigest
        );
    }

    #[test]
    fn a_digest_with_more_than_eight_entries_is_malformed() {
        let eight = vec![format!("SHA-256={HEX}"); MAX_DIGEST_ENTRIES].join(",");
        verify(eight.as_bytes(), BODY).unwrap();
        let nine = format!("{eight},SHA-256={HEX}");
        assert_eq!(
            verify(nine.as_bytes(), BODY).unwrap_err().reason,
            FailureReason::MalformedDigest
        );
    }

    #[test]
    fn only_values_of_the_two_exact_lengths_are_decoded() {
        let zeros = format!("{}=", "A".repeat(43));
        assert_eq!(decode(&zeros, 32), Some(vec![0; 32]));
        assert_eq!(decode(&"A".repeat(48), 32), None);
        assert_eq!(decode(&"A".repeat(100_000), 32), None);
    }

    #[test]
    fn every_known_entry_must_match() {
        let header = format!("SHA-256={HEX}, SHA-512=AAAA");
        assert!(verify(header.as_bytes(), BODY).is_err());
        let header = format!("MD5=whatever, SHA-256={HEX}");
        verify(header.as_bytes(), BODY).unwrap();
    }
}
