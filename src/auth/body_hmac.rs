//! The simplest reading of Vizion's header: HMAC-SHA256 of the raw body.

use super::config::BodyHmacConfig;
use super::{
    digest, signature_header, AuthFailure, FailureReason, KeyRing, RequestParts, SigningKey,
};

/// Whether the body begins like a JSON object, as every Vizion delivery does. A
/// signing string begins with `(` or a header name, never with `{`.
pub(crate) fn could_be_a_delivery(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

pub(crate) fn verify<'k>(
    config: &BodyHmacConfig,
    request: &RequestParts<'_>,
    keys: &'k KeyRing,
) -> Result<&'k SigningKey, AuthFailure> {
    let value = signature_header(request, &config.header)?.trim();
    let value = match &config.prefix {
        Some(prefix) => value.strip_prefix(prefix.as_str()).ok_or(AuthFailure::new(
            FailureReason::MalformedSignature,
            "signature lacks the configured prefix",
        ))?,
        None => value,
    };
    let signature = digest::decode(value, 32).ok_or(AuthFailure::new(
        FailureReason::MalformedSignature,
        "signature is neither hex nor base64 of 32 bytes",
    ))?;
    keys.all()
        .iter()
        .find(|key| key.signed(request.body, &signature))
        .ok_or(AuthFailure::new(
            FailureReason::BadSignature,
            "signature does not match any configured secret",
        ))
}
