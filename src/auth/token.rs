//! Static credentials: a fixed header value, or a token in the callback URL's query.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthFailure, FailureReason, KeyRing, RequestParts, SigningKey};

pub(crate) fn verify_static_header<'k>(
    name: &str,
    request: &RequestParts<'_>,
    keys: &'k KeyRing,
) -> Result<&'k SigningKey, AuthFailure> {
    let value = only_one(
        request.headers.get_all(name),
        "the authentication header is missing",
        "the authentication header is repeated",
    )?;
    matching_key(value.as_bytes(), keys)
}

pub(crate) fn verify_query_token<'k>(
    param: &str,
    request: &RequestParts<'_>,
    keys: &'k KeyRing,
) -> Result<&'k SigningKey, AuthFailure> {
    let query = request
        .path_and_query
        .split_once('?')
        .map_or("", |(_, q)| q);
    // Pairs are decoded one at a time, as they are compared, so a long query costs no
    // more memory than its longest pair.
    let (_, token) = only_one(
        form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == param),
        "the token query parameter is missing",
        "the token query parameter is repeated",
    )?;
    matching_key(token.as_bytes(), keys)
}

/// The one value `values` holds: none is a missing token, two or more a bad one (a
/// repeated credential is refused rather than one of them picked).
fn only_one<T>(
    mut values: impl Iterator<Item = T>,
    missing: &'static str,
    repeated: &'static str,
) -> Result<T, AuthFailure> {
    let value = values
        .next()
        .ok_or(AuthFailure::new(FailureReason::MissingToken, missing))?;
    if values.next().is_some() {
        return Err(AuthFailure::new(FailureReason::BadToken, repeated));
    }
    Ok(value)
}

/// Compares digests rather than the values themselves, so that neither the content nor
/// the length of a secret shows in the time taken.
fn matching_key<'k>(presented: &[u8], keys: &'k KeyRing) -> Result<&'k SigningKey, AuthFailure> {
    let presented = Sha256::digest(presented);
    let mut found = None;
    for key in keys.all() {
        let expected = Sha256::digest(key.secret_bytes());
        if bool::from(presented.ct_eq(&expected)) && found.is_none() {
            found = Some(key);
        }
    }
    found.ok_or(AuthFailure::new(
        FailureReason::BadToken,
        "the token does not match any configured secret",
    ))
}
