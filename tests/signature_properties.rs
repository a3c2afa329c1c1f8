//! Properties of signature verification: any change to a signed request breaks it, and
//! no header value, however strange, makes it panic.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use vizion_bridge::auth::{
    AuthConfig, Authenticator, KeyRing, RequestParts, Scheme, SigningKey, Verdict,
};

const SECRET: &str = "property-secret";
const PATH: &str = "/webhooks/vizion";
const NOW: i64 = 1_800_000_000;

fn authenticator(scheme: Scheme) -> Authenticator {
    let config = AuthConfig {
        scheme,
        ..AuthConfig::default()
    };
    let keys = KeyRing::new(vec![SigningKey::new(
        Some("k1".into()),
        SecretString::from(SECRET),
    )]);
    Authenticator::new(config, keys)
}

/// The signed headers for `body`, computed here from the signature description.
fn signed_headers(body: &[u8]) -> (String, String) {
    let digest = format!("SHA-256={}", hex::encode(Sha256::digest(body)));
    let (created, expires) = (NOW - 10, NOW + 290);
    let signing_string = format!(
        "(request-target): post {PATH}\n(created): {created}\n(expires): {expires}\ndigest: {digest}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signing_string.as_bytes());
    let signature = format!(
        "keyId=\"k1\",algorithm=\"hmac-sha256\",created={created},expires={expires},headers=\"(request-target) (created) (expires) digest\",signature=\"{}\"",
        hex::encode(mac.finalize().into_bytes())
    );
    (digest, signature)
}

fn header_map(digest: &str, signature: &str) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("digest"),
        HeaderValue::from_str(digest).ok()?,
    );
    headers.insert(
        HeaderName::from_static("x-vizion-signature"),
        HeaderValue::from_str(signature).ok()?,
    );
    Some(headers)
}

/// Byte positions inside parameter values, keyId's excepted.
fn signed_value_positions(signature: &[u8]) -> Vec<usize> {
    let mut positions = Vec::new();
    let mut name_start = 0;
    let mut in_value = false;
    let mut in_quotes = false;
    for (i, &b) in signature.iter().enumerate() {
        match b {
            b'=' if !in_value => {
                in_value = true;
                continue;
            }
            b'"' if in_value => in_quotes = !in_quotes,
            b',' if in_value && !in_quotes => {
                in_value = false;
                name_start = i + 1;
                continue;
            }
            _ => {}
        }
        if in_value && !signature[name_start..].starts_with(b"keyId=") {
            positions.push(i);
        }
    }
    positions
}

fn verify(auth: &Authenticator, path: &str, headers: &HeaderMap, body: &[u8]) -> Verdict {
    auth.verify(&RequestParts {
        method: "POST",
        path_and_query: path,
        headers,
        body,
        now: NOW,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_untouched_signed_request_verifies(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (digest, signature) = signed_headers(&body);
        let headers = header_map(&digest, &signature).unwrap();
        let verdict = verify(&authenticator(Scheme::HttpSignature), PATH, &headers, &body);
        prop_assert!(matches!(verdict, Verdict::Verified { .. }), "{verdict:?}");
    }

    #[test]
    fn any_change_to_the_body_fails(
        body in proptest::collection::vec(any::<u8>(), 1..2048),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (digest, signature) = signed_headers(&body);
        let headers = header_map(&digest, &signature).unwrap();
        let mut changed = body.clone();
        let i = index.index(changed.len());
        changed[i] ^= flip;
        let verdict = verify(&authenticator(Scheme::HttpSignature), PATH, &headers, &changed);
        prop_assert!(matches!(verdict, Verdict::Failed(_)), "{verdict:?}");
    }

    #[test]
    fn any_change_to_a_signed_header_fails(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        which in 0usize..2,
        index in any::<prop::sample::Index>(),
        replacement in proptest::char::range('!', '~'),
    ) {
        let (digest, signature) = signed_headers(&body);
        let (mut digest, mut signature) = (digest.into_bytes(), signature.into_bytes());
        // Parameter names are not signed (an unknown name is ignored, as the draft
        // asks), and `keyId` only picks which secret to try first (an unknown id tries
        // them all). Every parameter value but keyId's is signed content.
        let positions = if which == 0 { (0..digest.len()).collect() } else { signed_value_positions(&signature) };
        let target = if which == 0 { &mut digest } else { &mut signature };
        let i = positions[index.index(positions.len())];
        prop_assume!(target[i] != replacement as u8);
        // Hex digits, algorithm names and header names are read without regard to
        // case, so a change of case only is no change.
        prop_assume!(!target[i].eq_ignore_ascii_case(&(replacement as u8)));
        target[i] = replacement as u8;
        let (digest, signature) = (String::from_utf8(digest).unwrap(), String::from_utf8(signature).unwrap());
        let headers = header_map(&digest, &signature).unwrap();
        let verdict = verify(&authenticator(Scheme::HttpSignature), PATH, &headers, &body);
        prop_assert!(matches!(verdict, Verdict::Failed(_)), "{digest} | {signature} -> {verdict:?}");
    }

    #[test]
    fn a_different_path_fails(body in proptest::collection::vec(any::<u8>(), 0..256), suffix in "[a-z0-9/?=&]{1,12}") {
        let (digest, signature) = signed_headers(&body);
        let headers = header_map(&digest, &signature).unwrap();
        let path = format!("{PATH}{suffix}");
        let verdict = verify(&authenticator(Scheme::HttpSignature), &path, &headers, &body);
        prop_assert!(matches!(verdict, Verdict::Failed(_)), "{verdict:?}");
    }

    #[test]
    fn arbitrary_header_values_never_panic(
        digest in proptest::collection::vec(any::<u8>(), 0..200),
        signature in proptest::collection::vec(any::<u8>(), 0..400),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        scheme in prop_oneof![
            Just(Scheme::HttpSignature), Just(Scheme::BodyHmac), Just(Scheme::Auto),
            Just(Scheme::StaticHeader), Just(Scheme::QueryToken)
        ],
        query in "[ -~]{0,40}",
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&digest) {
            headers.insert(HeaderName::from_static("digest"), value);
        }
        if let Ok(value) = HeaderValue::from_bytes(&signature) {
            headers.insert(HeaderName::from_static("x-vizion-signature"), value.clone());
            headers.insert(HeaderName::from_static("authorization"), value);
        }
        let path = format!("{PATH}?{query}");
        let verdict = verify(&authenticator(scheme), &path, &headers, &body);
        prop_assert!(matches!(verdict, Verdict::Failed(_)), "{verdict:?}");
    }

    #[test]
    fn parameter_lists_built_from_pieces_never_panic(
        pieces in proptest::collection::vec(
            prop_oneof![
                Just("keyId=".to_string()), Just("signature=".to_string()), Just("headers=".to_string()),
                Just("created=".to_string()), Just("expires=".to_string()), Just("algorithm=".to_string()),
                Just("\"".to_string()), Just(",".to_string()), Just(" ".to_string()),
                Just("(request-target)".to_string()), Just("digest".to_string()), "[0-9a-f]{0,64}",
            ],
            0..24,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let signature = pieces.concat();
        let (digest, _) = signed_headers(&body);
        if let Some(headers) = header_map(&digest, &signature) {
            let _ = verify(&authenticator(Scheme::Auto), PATH, &headers, &body);
        }
    }
}
