//! HMAC HTTP signatures after draft-cavage-http-signatures, as Vizion describes them:
//! the parameters travel in their own header and values are HEX.

use actix_web::http::header::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::HttpSignatureConfig;
use super::{
    digest, signature_header, AuthFailure, FailureReason, KeyRing, RequestParts, SigningKey,
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

/// The most entries `headers=` may list. Vizion signs four; the draft's other usual
/// entries (`host`, `date`, `content-type`, ...) fit with room to spare. Each entry adds a
/// line to the signing string, so without a limit one header named thousands of times
/// would make a small request cost gigabytes.
pub(crate) const MAX_COVERED_ENTRIES: usize = 16;

/// The longest signing string that is checked. A genuine one is a few hundred bytes;
/// the limit bounds the hashing a request can ask for whatever its headers hold.
pub(crate) const MAX_SIGNING_STRING_BYTES: usize = 8 * 1024;

/// Length in bytes of an HMAC-SHA256.
const MAC_LEN: usize = 32;

pub(crate) fn verify<'k>(
    config: &HttpSignatureConfig,
    clock_skew: i64,
    request: &RequestParts<'_>,
    keys: &'k KeyRing,
) -> Result<&'k SigningKey, AuthFailure> {
    let params = parse_params(signature_header(request, &config.header)?)?;
    let signature = params.signature.ok_or(AuthFailure::new(
        FailureReason::MalformedSignature,
        "signature parameter missing",
    ))?;
    // Decoded into a fixed buffer: its length cannot depend on what was sent.
    let mut mac = [0u8; MAC_LEN];
    hex::decode_to_slice(signature, &mut mac).map_err(|_| {
        AuthFailure::new(
            FailureReason::MalformedSignature,
            "signature is not 64 hex digits (HMAC-SHA256)",
        )
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
    let covered = covered_entries(params.headers.unwrap_or("(created)"))?;
    for required in &config.required_headers {
        if !covered.iter().any(|c| c.eq_ignore_ascii_case(required)) {
            return Err(AuthFailure::new(
                FailureReason::UnsignedHeader,
                "a required header is not covered by the signature",
            ));
        }
    }

    // The body must match its digest before the signature over that digest counts. The
    // signing string would join every digest header, so the one checked must be the
    // only one.
    let mut digests = request.headers.get_all(config.digest_header.as_str());
    let first_digest = digests.next();
    if digests.next().is_some() {
        return Err(AuthFailure::new(
            FailureReason::MalformedDigest,
            "more than one digest header",
        ));
    }
    match first_digest {
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

    // The signing string's bounds are checked in a pass of its own, so that no secret
    // is used on a request that exceeds them.
    write_signing_string(&covered, request, &params, &mut |_| {})?;
    // One MAC per candidate secret, fed the signing string piece by piece: the string
    // itself is never assembled.
    let mut candidates: Vec<(&SigningKey, Hmac<Sha256>)> = keys
        .candidates(params.key_id)
        .map(|key| (key, key.hmac()))
        .collect();
    write_signing_string(&covered, request, &params, &mut |piece| {
        for (_, hmac) in candidates.iter_mut() {
            hmac.update(piece);
        }
    })?;
    candidates
        .into_iter()
        .find_map(|(key, hmac)| hmac.verify_slice(&mac).is_ok().then_some(key))
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

/// The entries of `headers=`: at most [`MAX_COVERED_ENTRIES`], none named twice (in any
/// case), since a repeat adds nothing a signer could mean.
pub(crate) fn covered_entries(list: &str) -> Result<Vec<&str>, AuthFailure> {
    let mut covered: Vec<&str> = Vec::with_capacity(MAX_COVERED_ENTRIES);
    for entry in list.split_ascii_whitespace() {
        if covered.len() == MAX_COVERED_ENTRIES {
            return Err(AuthFailure::new(
                FailureReason::MalformedSignature,
                "headers lists more than 16 entries",
            ));
        }
        if covered.iter().any(|seen| seen.eq_ignore_ascii_case(entry)) {
            return Err(AuthFailure::new(
                FailureReason::MalformedSignature,
                "headers names an entry twice",
            ));
        }
        covered.push(entry);
    }
    Ok(covered)
}

/// Counts what goes into the signing string, and refuses it once it would pass
/// [`MAX_SIGNING_STRING_BYTES`], before the piece that would pass it is hashed.
struct BoundedWriter<'s, F: FnMut(&[u8])> {
    sink: &'s mut F,
    written: usize,
}

impl<F: FnMut(&[u8])> BoundedWriter<'_, F> {
    fn write(&mut self, piece: &[u8]) -> Result<(), AuthFailure> {
        self.written += piece.len();
        if self.written > MAX_SIGNING_STRING_BYTES {
            return Err(signing_string_too_long());
        }
        (self.sink)(piece);
        Ok(())
    }
}

fn signing_string_too_long() -> AuthFailure {
    AuthFailure::new(
        FailureReason::MalformedSignature,
        "the signing string would be longer than 8 KiB",
    )
}

/// Writes the signing string to `sink`: one `name: value` line per covered entry,
/// joined by `\n`; a header sent several times contributes its values joined by `, `.
pub(crate) fn write_signing_string<F: FnMut(&[u8])>(
    covered: &[&str],
    request: &RequestParts<'_>,
    params: &Params<'_>,
    sink: &mut F,
) -> Result<(), AuthFailure> {
    let mut out = BoundedWriter { sink, written: 0 };
    for (i, entry) in covered.iter().enumerate() {
        if i > 0 {
            out.write(b"\n")?;
        }
        // Checked before lower-casing, so that the copy below is bounded too.
        if entry.len() > MAX_SIGNING_STRING_BYTES {
            return Err(signing_string_too_long());
        }
        let entry = entry.to_ascii_lowercase();
        out.write(entry.as_bytes())?;
        out.write(b": ")?;
        match entry.as_str() {
            "(request-target)" => {
                out.write(request.method.to_ascii_lowercase().as_bytes())?;
                out.write(b" ")?;
                out.write(request.path_and_query.as_bytes())?;
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
                out.write(value.as_bytes())?;
            }
            name => {
                let mut values = request.headers.get_all(name).peekable();
                if values.peek().is_none() {
                    return Err(AuthFailure::new(
                        FailureReason::MissingSignedHeader,
                        "a header covered by the signature is missing",
                    ));
                }
                for (n, value) in values.enumerate() {
                    if n > 0 {
                        out.write(b", ")?;
                    }
                    out.write(value.as_bytes())?;
                }
            }
        }
    }
    Ok(())
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
    fn headers_lists_at_most_sixteen_distinct_entries() {
        let names: Vec<String> = (0..MAX_COVERED_ENTRIES).map(|i| format!("h{i}")).collect();
        let sixteen = names.join(" ");
        assert_eq!(
            covered_entries(&sixteen).unwrap().len(),
            MAX_COVERED_ENTRIES
        );
        for broken in [
            format!("{sixteen} h16"),
            "digest (created) Digest".to_string(),
            "x x".to_string(),
        ] {
            let failure = covered_entries(&broken).unwrap_err();
            assert_eq!(
                failure.reason,
                FailureReason::MalformedSignature,
                "{broken}"
            );
        }
    }

    fn request_with<'a>(headers: &'a HeaderMap) -> RequestParts<'a> {
        RequestParts {
            method: "POST",
            path_and_query: "/webhooks/vizion",
            headers,
            body: b"",
            now: 0,
        }
    }

    fn written(covered: &[&str], headers: &HeaderMap) -> Result<Vec<u8>, AuthFailure> {
        let params = Params {
            created: Some("100"),
            ..Params::default()
        };
        let mut out = Vec::new();
        write_signing_string(covered, &request_with(headers), &params, &mut |piece| {
            out.extend_from_slice(piece)
        })?;
        Ok(out)
    }

    #[test]
    fn the_signing_string_has_one_line_per_entry_and_joins_repeated_headers() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let mut headers = HeaderMap::new();
        let name = HeaderName::from_static("x-hop");
        headers.append(name.clone(), HeaderValue::from_static("a"));
        headers.append(name, HeaderValue::from_static("b"));
        assert_eq!(
            written(&["(request-target)", "(Created)", "X-Hop"], &headers).unwrap(),
            b"(request-target): post /webhooks/vizion\n(created): 100\nx-hop: a, b"
        );
        let missing = written(&["x-absent"], &headers).unwrap_err();
        assert_eq!(missing.reason, FailureReason::MissingSignedHeader);
    }

    #[test]
    fn a_signing_string_beyond_the_limit_is_refused_before_it_is_hashed() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let mut headers = HeaderMap::new();
        let long = "v".repeat(MAX_SIGNING_STRING_BYTES);
        headers.insert(
            HeaderName::from_static("x-long"),
            HeaderValue::from_str(&long).unwrap(),
        );
        let mut hashed = 0usize;
        let failure = write_signing_string(
            &["(created)", "x-long"],
            &request_with(&headers),
            &Params {
                created: Some("1"),
                ..Params::default()
            },
            &mut |piece| hashed += piece.len(),
        )
        .unwrap_err();
        assert_eq!(failure.reason, FailureReason::MalformedSignature);
        assert!(hashed <= MAX_SIGNING_STRING_BYTES, "{hashed} bytes hashed");
        let long_name = "n".repeat(MAX_SIGNING_STRING_BYTES + 1);
        let failure = written(&[&long_name], &headers).unwrap_err();
        assert_eq!(failure.reason, FailureReason::MalformedSignature);
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
