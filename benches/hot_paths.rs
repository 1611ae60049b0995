//! Micro-benchmarks of the per-event hot paths: JSON event decoding, timestamp parsing, row
//! decoding, and exact window counting.

use compact_str::CompactString;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataflow::accumulator::WindowAccumulator;
use model::event::RawEvent;
use model::log::{LOG_HEADER, LogColumns};
use model::parse_timestamp;
use std::hint::black_box;

fn timestamp_parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("timestamp_parsing");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [
        ("rfc3339_millis_z", "2026-11-22T10:00:01.250Z"),
        ("rfc3339_offset", "2026-11-22T15:30:01+05:30"),
        ("epoch_millis", "1795341601250"),
        ("epoch_seconds_fraction", "1795341601.25"),
    ] {
        group.bench_function(name, |b| b.iter(|| parse_timestamp(black_box(text))));
    }
    group.finish();
}

fn event_decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_decoding");
    group.throughput(Throughput::Elements(1));
    for (name, json) in [
        (
            "json_rfc3339",
            r#"{"user_id":"user004211","emoji_type":"🔥","timestamp":"2026-11-22T10:00:01.250Z"}"#,
        ),
        (
            "json_epoch_millis",
            r#"{"user_id":"user004211","emoji_type":"🔥","timestamp":1795341601250}"#,
        ),
        (
            "json_no_timestamp",
            r#"{"user_id":"user004211","emoji_type":"🔥"}"#,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                serde_json::from_str::<RawEvent>(black_box(json))
                    .map(|raw| raw.validate(1_795_341_601_000).map(|e| e.timestamp))
            })
        });
    }
    group.finish();
}

fn row_decoding(c: &mut Criterion) {
    let columns = LogColumns::from_header(LOG_HEADER.as_bytes()).expect("header");
    let mut group = c.benchmark_group("row_decoding");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plain_row", |b| {
        b.iter(|| {
            columns.decode(
                black_box(b"user004211,\xF0\x9F\x94\xA5,2026-11-22T10:00:01.250Z"),
                |u, e, t| (u.len(), e.len(), t),
            )
        })
    });
    group.bench_function("quoted_row", |b| {
        b.iter(|| {
            columns.decode(
                black_box(b"\"user004211\",\"\xF0\x9F\x94\xA5\",\"2026-11-22T10:00:01.250Z\""),
                |u, e, t| (u.len(), e.len(), t),
            )
        })
    });
    group.finish();
}

fn window_aggregation(c: &mut Criterion) {
    let events: Vec<(CompactString, CompactString)> = (0..10_000u64)
        .map(|i| {
            let user = format!("user{:06}", (i * 7919) % 3000);
            let emoji = ["🔥", "😂", "👏", "❤️", "🎉"][(i % 5) as usize];
            (user.into(), emoji.into())
        })
        .collect();
    let mut group = c.benchmark_group("window_aggregation");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("add_and_finish_10k", |b| {
        b.iter(|| {
            let mut acc = WindowAccumulator::default();
            for (user, emoji) in &events {
                acc.add(user.clone(), emoji.clone());
            }
            acc.finish(0)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    event_decoding,
    timestamp_parsing,
    row_decoding,
    window_aggregation
);
criterion_main!(benches);
