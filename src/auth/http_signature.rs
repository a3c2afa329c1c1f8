//! HMAC HTTP signatures after draft-cavage-http-signatures, as Vizion describes them:
//! the parameters travel in their own header and values are HEX.

use actix_web::http::header::HeaderMap;

use super::config::HttpSignatureConfig;
use super::{
    digest, joined_header, signature_header, AuthFailure, FailureReason, KeyRing, RequestParts,
    SigningKey,
};

/// The signature's parameters, borrowed from the header value.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Params<'a> {
    pub key_id: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub created: Option<&'a str>,
    pub expires: Option<&'a str>,
    pub headers: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// True when the header holds a parameter list with a `signature` (used by `auto`).
pub(crate) fn looks_like_http_signature(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_params(v).ok())
        .is_some_and(|p| p.signature.is_some())
}

/// Parses `name="value",name=value,…`. Unknown names are ignored, repeated ones rejected.
pub(crate) fn parse_params(input: &str) -> Result<Params<'_>, AuthFailure> {
    let malformed = |detail| AuthFailure::new(FailureReason::MalformedSignature, detail);
    let mut params = Params::default();
    let mut rest = input.trim();
    while !rest.is_empty() {
        let (name, after_name) = rest
            .split_once('=')
            .ok_or(malformed("signature parameter without `=`"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(malformed("signature parameter name is not a token"));
        }
        let after_name = after_name.trim_start();
        let (value, after_value) = if let Some(quoted) = after_name.strip_prefix('"') {
            // Values are tokens, numbers, hex or header names: no escapes are needed.
            let end = quoted
                .find('"')
                .ok_or(malformed("unterminated quoted signature parameter"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after_name.find(',').unwrap_or(after_name.len());
            (after_name[..end].trim_end(), &after_name[end..])
        };
        let slot = match name {
            "keyId" => &mut params.key_id,
            "algorithm" => &mut params.algorithm,
            "created" => &mut params.created,
            "expires" => &mut params.expires,
            "headers" => &mut params.headers,
            "signature" => &mut params.signature,
            _ => &mut None,
        };
        if slot.replace(value).is_some() {
            return Err(malformed("a signature parameter is repeated"));
        }
        let after_value = after_value.trim_start();
        rest = match after_value.strip_prefix(',') {
            Some(next) => next.trim_start(),
            None if after_value.is_empty() => "",
            None => return Err(malformed("expected `,` between signature parameters")),
        };
    }
    Ok(params)
}

pub(crate) fn verify<'k>(
    config: &HttpSignatureConfig,
    clock_skew: i64,
    request: &RequestParts<'_>,
    keys: &'k KeyRing,
) -> Result<&'k SigningKey, AuthFailure> {
    let params = parse_params(signature_header(request, &config.header)?)?;
    let signature = params
        .signature
        .ok_or(AuthFailure::new(
            FailureReason::MalformedSignature,
            "signature parameter missing",
        ))
        .and_then(|s| {
            hex::decode(s).map_err(|_| {
                AuthFailure::new(FailureReason::MalformedSignature, "signature is not hex")
            })
        })?;

    if let Some(algorithm) = params.algorithm {
        if !["hmac-sha256", "hs2019"]
            .iter()
            .any(|known| algorithm.eq_ignore_ascii_case(known))
        {
            return Err(AuthFailure::new(
                FailureReason::UnknownAlgorithm,
                "algorithm is neither hmac-sha256 nor hs2019",
            ));
        }
    }

    let created = parse_time(params.created, "created is not a Unix time")?;
    let expires = parse_time(params.expires, "expires is not a Unix time")?;
    if created.is_some_and(|c| c > request.now.saturating_add(clock_skew)) {
        return Err(AuthFailure::new(
            FailureReason::NotYetValid,
            "created lies in the future",
        ));
    }
    if expires.is_some_and(|e| e < request.now.saturating_sub(clock_skew)) {
        return Err(AuthFailure::new(
            FailureReason::Expired,
            "signature has expired",
        ));
    }

    // The draft's default when `headers` is absent.
    let covered: Vec<&str> = params
        .headers
        .unwrap_or("(created)")
        .split_ascii_whitespace()
        .collect();
    for required in &config.required_headers {
        if !covered.iter().any(|c| c.eq_ignore_ascii_case(required)) {
            return Err(AuthFailure::new(
                FailureReason::UnsignedHeader,
                "a required header is not covered by the signature",
            ));
        }
    }

    // The body must match its digest before the signature over that digest counts.
    match request.headers.get(config.digest_header.as_str()) {
        Some(value) => digest::verify(value.as_bytes(), request.body)?,
        None if covered
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&config.digest_header)) =>
        {
            return Err(AuthFailure::new(
                FailureReason::MissingDigest,
                "no digest header",
            ));
        }
        None => {}
    }

    let signing_string = signing_string(&covered, request, &params)?;
    keys.candidates(params.key_id)
        .find(|key| key.signed(&signing_string, &signature))
        .ok_or(AuthFailure::new(
            FailureReason::BadSignature,
            "signature does not match any configured secret",
        ))
}

fn parse_time(value: Option<&str>, detail: &'static str) -> Result<Option<i64>, AuthFailure> {
    value
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| AuthFailure::new(FailureReason::MalformedSignature, detail))
        })
        .transpose()
}

/// One `name: value` line per covered entry, joined by `\n`.
pub(crate) fn signing_string(
    covered: &[&str],
    request: &RequestParts<'_>,
    params: &Params<'_>,
) -> Result<Vec<u8>, AuthFailure> {
    let mut out = Vec::with_capacity(256);
    for (i, entry) in covered.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let entry = entry.to_ascii_lowercase();
        out.extend_from_slice(entry.as_bytes());
        out.extend_from_slice(b": ");
        match entry.as_str() {
            "(request-target)" => {
                out.extend_from_slice(request.method.to_ascii_lowercase().as_bytes());
                out.push(b' ');
                out.extend_from_slice(request.path_and_query.as_bytes());
            }
            "(created)" | "(expires)" => {
                let value = if entry == "(created)" {
                    params.created
                } else {
                    params.expires
                };
                let value = value.ok_or(AuthFailure::new(
                    FailureReason::MalformedSignature,
                    "headers names (created) or (expires) but the parameter is missing",
                ))?;
                out.extend_from_slice(value.as_bytes());
            }
            name => {
                let value = joined_header(request.headers, name).ok_or(AuthFailure::new(
                    FailureReason::MissingSignedHeader,
                    "a header covered by the signature is missing",
                ))?;
                out.extend_from_slice(&value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_bare_parameters() {
        let params = parse_params(
            r#"keyId="k1", algorithm="hmac-sha256",created=100,expires=400,headers="(created) digest",signature="ab""#,
        )
        .unwrap();
        assert_eq!(
            params,
            Params {
                key_id: Some("k1"),
                algorithm: Some("hmac-sha256"),
                created: Some("100"),
                expires: Some("400"),
                headers: Some("(created) digest"),
                signature: Some("ab"),
            }
        );
    }

    #[test]
    fn rejects_broken_parameter_lists() {
        for input in [
            r#"signature="ab"#,
            r#"signature="ab",signature="cd""#,
            r#"signature"#,
            r#"signature="ab" keyId="x""#,
            r#"=x"#,
        ] {
            assert_eq!(
                parse_params(input).unwrap_err().reason,
                FailureReason::MalformedSignature,
                "{input}"
            );
        }
    }
}
