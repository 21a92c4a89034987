//! Criterion benchmarks of the partition log's hot paths: appending a
//! producer's batch (validation, offset assignment, sled insert) and reading
//! batches back for a fetch.
//!
//! `cargo bench --bench log`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::records::Compression;
use sluice::{encode_plain, split_and_validate, PartitionLog, PlainRecord, ReadLimit, Storage};

fn batch(records: usize, value_size: usize) -> BytesMut {
    let value = Bytes::from(vec![b'x'; value_size]);
    let records: Vec<PlainRecord> = (0..records)
        .map(|_| PlainRecord {
            key: None,
            value: Some(value.clone()),
            timestamp: 1_700_000_000_000,
        })
        .collect();
    encode_plain(&records, Compression::None).expect("encode batch")
}

fn open_log(dir: &std::path::Path) -> PartitionLog {
    let storage = Storage::open(dir, 500, 64 * 1024 * 1024).expect("open storage");
    PartitionLog::open(&storage, "bench", "bench", 0).expect("open log")
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for (records, size) in [(1usize, 100usize), (100, 100), (1000, 100), (16, 1024)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_log(dir.path());
        let raw = batch(records, size);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(format!("{records}x{size}B"), |b| {
            b.iter_batched(
                || raw.clone(),
                |raw| {
                    let batches = split_and_validate(&raw, usize::MAX).expect("valid");
                    log.append(batches, false).expect("append")
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path());
    let raw = batch(100, 100);
    for _ in 0..2_000 {
        let batches = split_and_validate(&raw, usize::MAX).expect("valid");
        log.append(batches, false).expect("append");
    }
    let end = log.log_end_offset();
    for max_bytes in [64 * 1024usize, 1024 * 1024] {
        group.throughput(Throughput::Bytes(max_bytes as u64));
        let mut offset = 0i64;
        group.bench_function(format!("max_bytes={max_bytes}"), |b| {
            b.iter(|| {
                let out = log
                    .read(offset, max_bytes, true, ReadLimit::HighWatermark)
                    .expect("read");
                offset = (offset + 10_000) % (end - 20_000);
                out.bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
