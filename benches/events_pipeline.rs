//! The per-webhook hot path (parse + normalize + structured encoding of every event)
//! next to the floor: reading the same bytes into a `serde_json::Value`; and the
//! CloudEvents encodings (structured JSON, binary-mode Kafka headers) on their own.
//!
//! Run with `cargo bench --bench events_pipeline`; figures are in `docs/BENCHMARKS.md`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use time::macros::datetime;
use vizion_bridge::events::{self, DeliveryMode, EventContext};
use vizion_bridge::vizion;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bodies")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parse, normalize and encode every event in structured mode; returns the bytes written.
fn pipeline(body: &[u8], ctx: &EventContext) -> usize {
    let received_at = datetime!(2024-11-01 12:00:00 UTC);
    let inbound = vizion::parse(body).expect("fixture parses");
    let batch = events::normalize(&inbound, body, received_at, DeliveryMode::Webhook, ctx);
    batch
        .events()
        .map(|e| e.to_structured_json().len())
        .sum::<usize>()
        + batch.raw_body().len()
}

fn bench(c: &mut Criterion) {
    let ctx = EventContext::default();
    for (label, name) in [
        ("small_5_milestones", "mid-journey-transshipment.json"),
        ("large_200_milestones", "large-200-milestones.json"),
    ] {
        let body = fixture(name);
        let mut group = c.benchmark_group(label);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("floor_serde_json_value", |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
        });
        group.bench_function("parse_normalize_encode", |b| {
            b.iter(|| pipeline(black_box(&body), &ctx))
        });
        group.bench_function("parse_normalize", |b| {
            b.iter(|| {
                let inbound = vizion::parse(black_box(&body)).unwrap();
                events::normalize(
                    &inbound,
                    &body,
                    datetime!(2024-11-01 12:00:00 UTC),
                    DeliveryMode::Webhook,
                    &ctx,
                )
            })
        });
        group.bench_function("parse_only", |b| {
            b.iter(|| vizion::parse(black_box(&body)).unwrap())
        });
        // The CloudEvents encodings alone, of an already normalized batch.
        let inbound = vizion::parse(&body).unwrap();
        let batch = events::normalize(
            &inbound,
            &body,
            datetime!(2024-11-01 12:00:00 UTC),
            DeliveryMode::Webhook,
            &ctx,
        );
        group.bench_function("cloudevents_structured", |b| {
            b.iter(|| {
                black_box(&batch)
                    .events()
                    .map(|e| e.to_structured_json().len())
                    .sum::<usize>()
            })
        });
        group.bench_function("cloudevents_binary_kafka_headers", |b| {
            b.iter(|| {
                black_box(&batch)
                    .events()
                    .flat_map(vizion_bridge::sinks::kafka::event_headers)
                    .map(|(name, value)| name.len() + value.len())
                    .sum::<usize>()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
