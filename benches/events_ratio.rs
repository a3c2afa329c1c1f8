//! Ratio of the hot path to the `serde_json::Value` floor, measured with the two
//! interleaved round by round so that load from other processes hits both alike.
//!
//! Run with `cargo bench --bench events_ratio`. Prints, per fixture, the median time of
//! each side over the rounds and the median of the per-round ratios.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use time::macros::datetime;
use vizion_bridge::events::{self, DeliveryMode, EventContext};
use vizion_bridge::vizion;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bodies")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn time_per_iter(iters: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter is not supported here. Without it
    // (as under `cargo test --all-targets`) one short round checks that the bench runs.
    let measuring = std::env::args().any(|a| a == "--bench");
    let rounds = if measuring { 41 } else { 1 };
    let ctx = EventContext::default();
    let received_at = datetime!(2024-11-01 12:00:00 UTC);
    for (label, name, iters) in [
        ("small_5_milestones", "mid-journey-transshipment.json", 2000),
        ("large_200_milestones", "large-200-milestones.json", 60),
    ] {
        let iters = if measuring { iters } else { 2 };
        let body = fixture(name);
        let floor = || {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
        };
        let pipeline = || {
            let inbound = vizion::parse(black_box(&body)).unwrap();
            let batch =
                events::normalize(&inbound, &body, received_at, DeliveryMode::Webhook, &ctx);
            let written: usize = batch.events().map(|e| e.to_structured_json().len()).sum();
            black_box(written);
        };
        // Warm up caches and the allocator.
        time_per_iter(iters, floor);
        time_per_iter(iters, pipeline);
        let (mut floors, mut pipes, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let f = time_per_iter(iters, floor).as_secs_f64();
            let p = time_per_iter(iters, pipeline).as_secs_f64();
            floors.push(f);
            pipes.push(p);
            ratios.push(p / f);
        }
        println!(
            "{label:<22} bytes={:>7}  floor={:>9.2} µs  pipeline={:>9.2} µs  ratio(median of rounds)={:.2}",
            body.len(),
            median(floors) * 1e6,
            median(pipes) * 1e6,
            median(ratios),
        );
    }
}
