//! The in-memory dedup cache as request handlers use it (claim, check, remember, release), from
//! several threads at once: the cost of one delivery's bookkeeping when every HTTP
//! worker does the same at the same time.
//!
//! Run with `cargo bench --bench dedup_contention`; figures are in `docs/BENCHMARKS.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vizion_bridge::delivery::{Dedup, DedupConfig};

/// One delivery's dedup work, as `Delivery::begin` + `Attempt::write` do it.
async fn deliver(dedup: &Dedup, key: &str) -> bool {
    let _claim = dedup.claim(key).await;
    if dedup.contains(key).await {
        return false;
    }
    dedup.remember(key).await;
    true
}

/// Runs `per_thread` deliveries on each of `threads` threads at once and returns the
/// wall time. One key in ten is a resend of a key another thread just used.
fn run(dedup: &Dedup, threads: usize, per_thread: u64, next: &AtomicU64) -> Duration {
    let start_line = Arc::new(Barrier::new(threads + 1));
    let base = next.fetch_add(per_thread * threads as u64, Ordering::Relaxed);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let dedup = dedup.clone();
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                start_line.wait();
                runtime.block_on(async {
                    for i in 0..per_thread {
                        let n = if i % 10 == 9 {
                            base + i
                        } else {
                            base + i * threads as u64 + t as u64
                        };
                        let key = format!("update-{n:016x}");
                        std::hint::black_box(deliver(&dedup, &key).await);
                    }
                });
            })
        })
        .collect();
    start_line.wait();
    let started = Instant::now();
    for handle in handles {
        handle.join().expect("bench thread");
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let dedup = Dedup::new(&DedupConfig::default());
    let next = AtomicU64::new(0);
    const PER_THREAD: u64 = 1_000;
    let mut group = c.benchmark_group("dedup_deliveries");
    for threads in [1, 2, 4, 8] {
        group.throughput(Throughput::Elements(PER_THREAD * threads as u64));
        group.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run(&dedup, threads, PER_THREAD, &next))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
