//! Signature verification through the real `auth` code, next to its floor: one
//! HMAC-SHA256 of the same body bytes, in the same run.
//!
//! `http_signature` checks the body's SHA-256 digest, then the HMAC of the short
//! signing string; `body_hmac` is one HMAC of the body. Both should cost about one
//! pass of SHA-256 over the body, so the goal is at most 1.2× the floor.
//!
//! Run with `cargo bench --bench auth_verify`; figures are in `docs/BENCHMARKS.md`.

use std::hint::black_box;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;
use vizion_bridge::auth::{
    signer, AuthConfig, Authenticator, KeyRing, RequestParts, Scheme, SigningKey, Verdict,
};

const SECRET: &str = "benchmark-secret-of-a-usual-length";
const PATH: &str = "/webhooks/vizion";
const NOW: i64 = 1_700_000_000;

/// A JSON object of exactly `len` bytes, shaped like a delivery.
fn body(len: usize) -> Vec<u8> {
    let head = br#"{"id":"bench","payload":{"filler":""#;
    let tail = br#""}}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

fn authenticator(scheme: Scheme) -> Authenticator {
    let config = AuthConfig {
        scheme,
        ..AuthConfig::default()
    };
    let keys = KeyRing::new(vec![SigningKey::new(
        Some("bench".into()),
        SecretString::from(SECRET),
    )]);
    Authenticator::new(config, keys)
}

fn header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).expect("header value"),
    );
}

fn hmac_of(bytes: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

fn bench(c: &mut Criterion) {
    let http_signature = authenticator(Scheme::HttpSignature);
    let body_hmac = authenticator(Scheme::BodyHmac);
    for (label, len) in [("2KB", 2 * 1024), ("16KB", 16 * 1024)] {
        let body = body(len);

        let signed = signer::sign(
            SECRET.as_bytes(),
            Some("bench"),
            PATH,
            NOW - 10,
            NOW + 300,
            &body,
        );
        let mut signature_headers = HeaderMap::new();
        header(
            &mut signature_headers,
            "x-vizion-signature",
            &signed.signature,
        );
        header(&mut signature_headers, "digest", &signed.digest);

        let mut hmac_headers = HeaderMap::new();
        header(
            &mut hmac_headers,
            "x-vizion-signature",
            &hex::encode(hmac_of(&body)),
        );

        let request = |headers| RequestParts {
            method: "POST",
            path_and_query: PATH,
            headers,
            body: &body,
            now: NOW,
        };
        // A benchmark of a failing check would measure the wrong thing.
        for (auth, headers) in [
            (&http_signature, &signature_headers),
            (&body_hmac, &hmac_headers),
        ] {
            assert!(matches!(
                auth.verify(&request(headers)),
                Verdict::Verified { .. }
            ));
        }

        let mut group = c.benchmark_group(format!("verify_{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("floor_hmac_sha256_of_body", |b| {
            b.iter(|| hmac_of(black_box(&body)))
        });
        group.bench_function("http_signature", |b| {
            b.iter(|| http_signature.verify(black_box(&request(&signature_headers))))
        });
        group.bench_function("body_hmac", |b| {
            b.iter(|| body_hmac.verify(black_box(&request(&hmac_headers))))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
