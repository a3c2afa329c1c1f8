//! What a hostile request from an allowed address can cost the process serving it: the
//! real binary's peak resident memory (`VmHWM`) is read before and after, and a genuine
//! webhook sent meanwhile must still be answered. And that the process keeps its memory
//! in small pages, where a touched byte makes 4 KiB resident rather than 2 MiB.

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

/// How much the peak grew between two readings. `VmHWM` is the larger of the recorded
/// high-water mark and the current size, and memory handed back with `madvise` (as the
/// allocator does) does not record the mark first: a later reading can be lower.
fn peak_growth(before: u64, after: u64) -> u64 {
    after.saturating_sub(before)
}

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
    let app = std::sync::Arc::new(spawn_binary("", "").await);
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
        peak_growth(peak_before, peak_after) < MAX_PEAK_GROWTH,
        "the peak resident memory grew by {:.1} MiB",
        mib(peak_growth(peak_before, peak_after))
    );
}

/// An update whose milestones are `element` repeated to fill a body just under 1 MiB
/// (the default `ingest.max_body_bytes`).
fn megabyte_of_milestones(id: &str, element: &str) -> Vec<u8> {
    let head = format!(r#"{{"id":"{id}","reference_id":"r-big","payload":{{"milestones":["#);
    let tail = "]}}";
    let count = (1024 * 1024 - 64 - head.len() - tail.len()) / (element.len() + 1);
    let mut body = head.into_bytes();
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(element.as_bytes());
    }
    body.extend_from_slice(tail.as_bytes());
    body
}

#[tokio::test]
async fn a_megabyte_of_milestones_is_a_dead_letter_read_in_bounded_memory() {
    let app = spawn_binary("", "").await;
    let warm_up = app.post_signed(&update_body("milestones-warm-up")).await;
    assert_eq!(warm_up.status().as_u16(), 200);

    for (id, element) in [("empty-objects", "{}"), ("zeros", "0")] {
        let body = megabyte_of_milestones(id, element);
        let peak_before = app.peak_rss_bytes();
        let response = app.post_signed(&body).await;
        assert_eq!(response.status().as_u16(), 200, "{id}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "dead_lettered", "{id}: {answer}");
        assert_eq!(answer["reason"], "too_many_milestones", "{id}: {answer}");
        let peak_after = app.peak_rss_bytes();
        eprintln!(
            "{id}: {} bytes, peak resident memory {:.1} MiB before, {:.1} MiB after",
            body.len(),
            mib(peak_before),
            mib(peak_after)
        );
        assert!(
            peak_growth(peak_before, peak_after) < MAX_PEAK_GROWTH,
            "{id}: the peak resident memory grew by {:.1} MiB",
            mib(peak_growth(peak_before, peak_after))
        );
    }
    let dead = app.dead_letters();
    assert_eq!(dead.len(), 2);
    for event in &dead {
        assert_eq!(event["data"]["reason"], "too_many_milestones");
    }
    assert_eq!(
        app.metric(
            "vizion_bridge_dead_letters_total",
            "reason=\"too_many_milestones\""
        )
        .await,
        2.0
    );
}

/// At most what may have been faulted in before `main` turned huge pages off, on a
/// kernel that grants them unasked (`always`): one page of 2 MiB.
const HUGE_BEFORE_MAIN_KIB: u64 = 2048;

/// Huge pages make 2 MiB resident for every 4 KiB touched in them: the served process
/// turns them off, and after handling webhooks holds none taken since.
#[tokio::test]
async fn the_served_process_holds_no_transparent_huge_pages() {
    let app = spawn_binary("", "").await;
    for i in 0..20 {
        let response = app.post_signed(&update_body(&format!("thp-{i}"))).await;
        assert_eq!(response.status().as_u16(), 200);
    }
    let huge = proc_field(&app.proc_file("smaps_rollup"), "AnonHugePages")
        .expect("/proc/<pid>/smaps_rollup has AnonHugePages");
    assert!(
        huge <= HUGE_BEFORE_MAIN_KIB,
        "{huge} kB of anonymous memory in huge pages"
    );
    // A kernel that reports the process's setting (`THP_enabled`) must show it off:
    // that holds on a kernel set to `never` too.
    if let Some(enabled) = proc_field(&app.proc_file("status"), "THP_enabled") {
        assert_eq!(enabled, 0, "THP_enabled in /proc/<pid>/status");
    }
}
