//! Authentication must not panic on any headers and body, and must stay within the
//! memory libFuzzer allows (`-rss_limit_mb`) whatever the headers ask for: a signature
//! that names one header thousands of times, a digest with thousands of entries, a
//! signature or digest value of any length.
//!
//! An input reads like an HTTP/1.1 request without its request line: `name: value` lines
//! up to an empty line, then the body. A `:path` line sets the request target.
#![no_main]

use std::sync::OnceLock;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use vizion_bridge::auth::{AuthConfig, Authenticator, KeyConfig, KeyRing, RequestParts, Scheme};
use vizion_bridge::secret::InlineSecret;

/// The seeds' signatures are made with this secret at this time.
const SECRET: &str = "fuzz-secret";
const NOW: i64 = 1_800_000_000;

fn authenticators() -> &'static [Authenticator] {
    static ALL: OnceLock<Vec<Authenticator>> = OnceLock::new();
    ALL.get_or_init(|| {
        [
            Scheme::HttpSignature,
            Scheme::Auto,
            Scheme::BodyHmac,
            Scheme::StaticHeader,
            Scheme::QueryToken,
        ]
        .into_iter()
        .map(|scheme| {
            // Two secrets, one with an id, so that both ways of choosing keys run.
            let keys = KeyRing::from_config(&[
                KeyConfig {
                    key_id: Some("k1".into()),
                    secret: Some(InlineSecret::new(SECRET)),
                    ..KeyConfig::default()
                },
                KeyConfig {
                    secret: Some(InlineSecret::new("other-secret")),
                    ..KeyConfig::default()
                },
            ])
            .expect("inline secrets resolve");
            let config = AuthConfig {
                scheme,
                ..AuthConfig::default()
            };
            Authenticator::new(config, keys)
        })
        .collect()
    })
}

/// Splits an input into its request target, headers and body. Lines that are not a
/// valid header are skipped, as an HTTP server would have refused them.
fn request(input: &[u8]) -> (String, HeaderMap, &[u8]) {
    let (head, body) = match input.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&input[..at], &input[at + 2..]),
        None => (input, &[][..]),
    };
    let mut path = String::from("/webhooks/vizion");
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':').filter(|at| *at > 0) else {
            if let Some(target) = line.strip_prefix(b":path: ") {
                path = String::from_utf8_lossy(target).into_owned();
            }
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (path, headers, body)
}

fuzz_target!(|input: &[u8]| {
    let (path, headers, body) = request(input);
    for authenticator in authenticators() {
        let _ = authenticator.verify(&RequestParts {
            method: "POST",
            path_and_query: &path,
            headers: &headers,
            body,
            now: NOW,
        });
    }
});
