//! What a hostile request from an allowed address can cost the process serving it: the
//! real binary's peak resident memory (`VmHWM`) is read before and after, and a genuine
//! webhook sent meanwhile must still be answered.

use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// How much a request may add to the process's peak resident memory: a few copies of a
/// megabyte body, not a multiple of what the request asks for.
const MAX_PEAK_GROWTH: u64 = 32 * 1024 * 1024;

/// A genuine webhook is answered within this while hostile requests are being refused:
/// generous, only to prove that the workers are not starved.
const PROMPT: Duration = Duration::from_secs(5);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A 100 kB request: a 60 kB header, named 20,000 times in `headers=`, a digest of its
/// own tiny body and a signature of zeros.
fn amplifying_request() -> (Vec<u8>, Vec<(String, String)>) {
    let body = b"{}".to_vec();
    let digest = format!("SHA-256={}", hex::encode(Sha256::digest(&body)));
    let now = unix_now();
    let covered = format!(
        "(request-target) (created) (expires) digest{}",
        " a".repeat(20_000)
    );
    let signature = format!(
        "keyId=\"{KEY_ID}\",algorithm=\"hmac-sha256\",created={now},expires={},headers=\"{covered}\",signature=\"{}\"",
        now + 300,
        "0".repeat(64)
    );
    let headers = vec![
        ("a".to_string(), "x".repeat(60_000)),
        ("digest".to_string(), digest),
        ("x-vizion-signature".to_string(), signature),
    ];
    (body, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_header_named_thousands_of_times_is_refused_without_amplification() {
    let app = std::sync::Arc::new(BinaryApp::start("").await);
    let warm_up = app.post_signed(&update_body("bounded-warm-up")).await;
    assert_eq!(warm_up.status().as_u16(), 200);
    let peak_before = app.peak_rss_bytes();

    // Two at once, as many as there are workers.
    let (body, headers) = amplifying_request();
    let attacks: Vec<_> = (0..2)
        .map(|_| {
            let (app, body, headers) = (app.clone(), body.clone(), headers.clone());
            tokio::spawn(async move {
                let response = app.post(&body, &headers).await;
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap_or_default())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let genuine = app.post_signed(&update_body("bounded-genuine")).await;
    let waited = started.elapsed();
    assert_eq!(genuine.status().as_u16(), 200);
    assert!(
        waited < PROMPT,
        "a genuine webhook waited {waited:?} behind the hostile requests"
    );

    for attack in attacks {
        let (status, answer) = attack.await.unwrap();
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"], "unauthorized");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains("malformed_signature"), "{message}");
    }
    assert_eq!(
        app.metric(
            "vizion_bridge_auth_failures_total",
            "reason=\"malformed_signature\",mode=\"enforce\""
        )
        .await,
        2.0
    );
    let peak_after = app.peak_rss_bytes();
    eprintln!(
        "peak resident memory: {:.1} MiB before, {:.1} MiB after",
        mib(peak_before),
        mib(peak_after)
    );
    assert!(
        peak_after - peak_before < MAX_PEAK_GROWTH,
        "the peak resident memory grew by {:.1} MiB",
        mib(peak_after - peak_before)
    );
}
