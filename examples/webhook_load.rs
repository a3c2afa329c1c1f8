//! Sends signed webhooks to a running bridge from many concurrent clients and reports
//! throughput and answer latency.
//!
//! ```sh
//! VIZION_WEBHOOK_SECRET=local-development-secret cargo run --release --example webhook_load -- \
//!     --url http://127.0.0.1:8080/webhooks/vizion --concurrency 32 --seconds 20
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use vizion_bridge::auth::signer;

#[derive(Parser)]
struct Args {
    /// Webhook URL of the bridge.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/vizion")]
    url: String,
    /// Environment variable holding the signing secret.
    #[arg(long, default_value = "VIZION_WEBHOOK_SECRET")]
    secret_env: String,
    /// Key id to put in the signature.
    #[arg(long)]
    key_id: Option<String>,
    /// Concurrent clients, each sending one request after the other.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of warm-up that are not measured.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Milestones per update (about 600 bytes each).
    #[arg(long, default_value_t = 6)]
    milestones: usize,
}

fn update_body(id: u64, milestones: usize) -> Vec<u8> {
    let milestone = |n: usize| {
        serde_json::json!({
            "description": "Vessel departure from origin port",
            "raw_description": format!("Vessel departed, leg {n}"),
            "timestamp": "2021-07-05T18:30:00.000+06:00",
            "planned": n.is_multiple_of(2),
            "location": {
                "name": "Chittagong Port Authority,Chittagong,Chittagong,Bangladesh",
                "city": "Chattogram", "state": null, "country": "Bangladesh",
                "unlocode": "BDCGP", "facility": "Chittagong Port Authority",
                "geolocation": {"latitude": 22.356851, "longitude": 91.7831819}
            },
            "vessel": "EDISON", "vessel_imo": "9189251", "vessel_mmsi": "244750455",
            "voyage": "0TUINE1MA", "mode": "Vessel", "source": "carrier"
        })
    };
    serde_json::to_vec(&serde_json::json!({
        "id": format!("load-{id:016x}-{}", std::process::id()),
        "status": "data_received",
        "reference_id": format!("ref-{}", id % 1000),
        "organization_id": "3670867f-3634-4dd2-9b27-3531b5affe64",
        "payload": {
            "container_id": format!("OOCU{:07}", id % 10_000_000),
            "carrier_scac": "OOLU",
            "milestones": (0..milestones).map(milestone).collect::<Vec<_>>()
        },
        "created_at": "2021-07-31T21:34:09.003Z",
        "updated_at": "2021-07-31T21:34:09.003Z",
        "parent_reference_id": null
    }))
    .expect("JSON encodes")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let secret = std::env::var(&args.secret_env)
        .unwrap_or_else(|_| panic!("set {} to the bridge's secret", args.secret_env));
    let path = reqwest::Url::parse(&args.url).expect("a valid URL");
    let target = match path.query() {
        Some(q) => format!("{}?{q}", path.path()),
        None => path.path().to_owned(),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("client builds");
    let next_id = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let warmup_end = started + Duration::from_secs(args.warmup);
    let end = warmup_end + Duration::from_secs(args.seconds);

    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, secret, target, next_id) = (
            client.clone(),
            args.url.clone(),
            secret.clone(),
            target.clone(),
            next_id.clone(),
        );
        let key_id = args.key_id.clone();
        let milestones = args.milestones;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut non_2xx, mut bytes) = (0u64, 0u64);
            while Instant::now() < end {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let body = update_body(id, milestones);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                let headers = signer::sign(
                    secret.as_bytes(),
                    key_id.as_deref(),
                    &target,
                    now,
                    now + 300,
                    &body,
                );
                let len = body.len() as u64;
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("digest", headers.digest)
                    .header("x-vizion-signature", headers.signature)
                    .body(body)
                    .send()
                    .await;
                let ok = match response {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                let elapsed = sent.elapsed();
                if sent >= warmup_end {
                    latencies.push(elapsed);
                    bytes += len;
                    if !ok {
                        non_2xx += 1;
                    }
                }
            }
            (latencies, non_2xx, bytes)
        }));
    }
    let mut latencies = Vec::new();
    let (mut non_2xx, mut bytes) = (0u64, 0u64);
    for task in tasks {
        let (l, n, b) = task.await.expect("client task");
        latencies.extend(l);
        non_2xx += n;
        bytes += b;
    }
    latencies.sort_unstable();
    let count = latencies.len();
    let pct = |p: f64| -> f64 {
        if count == 0 {
            return 0.0;
        }
        let index = ((count as f64 * p).ceil() as usize).clamp(1, count) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    println!(
        "requests={count} non_2xx={non_2xx} rate={:.0}/s avg_body={}B concurrency={} p50={:.2}ms p90={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms",
        count as f64 / args.seconds as f64,
        bytes / count.max(1) as u64,
        args.concurrency,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0),
    );
}
