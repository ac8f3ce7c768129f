//! The cost of turning one large recorded `serverStatus` into metrics: the
//! 8.0 WiredTiger document of `tests/fixtures` (2,692 numeric leaves outside
//! arrays), as `collect` handles it once the driver has decoded it: every
//! leaf, the counters for rates, the WiredTiger figures and the interval
//! percentages, into a reused batch as the agent does.
//!
//! - `server_status/to_metrics`: that, per document;
//! - `server_status/decode_bson`: for scale, the driver's part before it,
//!   decoding the document's BSON bytes into a `Document`.
//!
//! Before criterion runs, the allocations per document are counted (a
//! counting global allocator) and printed. Time is the benchmark thread's
//! CPU time (see `carat_collector::bench`).
//!
//! cargo bench -p carat-mongodb --bench server_status

use std::hint::black_box;

use carat_collector::bench::{allocations, CountingAllocator, ThreadCpuTime};
use carat_collector::Batch;
use carat_mongodb::derived::Intervals;
use carat_mongodb::leaves::{KeyStyle, Walk};
use carat_mongodb::{publish_status, MongodbConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mongodb::bson::Document;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[path = "../tests/support/recorded.rs"]
mod recorded;

/// What `collect` does with one document, into `batch`.
struct ToMetrics {
    config: MongodbConfig,
    walk: Walk,
    intervals: Intervals,
}

impl ToMetrics {
    fn run(&mut self, status: &Document, batch: &mut Batch) {
        batch.clear();
        publish_status(
            status,
            "",
            &self.config,
            KeyStyle::default(),
            &mut self.walk,
            batch,
        );
        self.intervals.publish(status, "", batch);
    }
}

fn benches(c: &mut Criterion<ThreadCpuTime>) {
    let status = recorded::fixture(recorded::WT_80);
    let bytes = mongodb::bson::to_vec(&status).expect("BSON");
    let mut to_metrics = ToMetrics {
        config: MongodbConfig::default(),
        walk: Walk::default(),
        intervals: Intervals::default(),
    };
    let mut batch = Batch::new();
    // Warm up: the batch's and the walk's buffers grow to size.
    to_metrics.run(&status, &mut batch);
    let samples = batch.len();
    const RUNS: u64 = 100;
    let before = allocations();
    for _ in 0..RUNS {
        to_metrics.run(black_box(&status), &mut batch);
    }
    let per_document = (allocations() - before) as f64 / RUNS as f64;
    let before = allocations();
    for _ in 0..RUNS {
        black_box(mongodb::bson::from_slice::<Document>(black_box(&bytes)).expect("decode"));
    }
    let per_decode = (allocations() - before) as f64 / RUNS as f64;
    eprintln!(
        "{}: {} bytes of BSON, {samples} samples per document; \
         {per_document:.0} allocations per document into metrics, {per_decode:.0} to decode it",
        recorded::WT_80,
        bytes.len()
    );

    let mut group = c.benchmark_group("server_status");
    group.throughput(criterion::Throughput::Elements(samples as u64));
    group.bench_function("to_metrics", |b| {
        b.iter(|| to_metrics.run(black_box(&status), &mut batch))
    });
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode_bson", |b| {
        b.iter(|| mongodb::bson::from_slice::<Document>(black_box(&bytes)).expect("decode"))
    });
    group.finish();
}

criterion_group! {
    name = server_status;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = benches
}
criterion_main!(server_status);
