//! One collection cycle over a broker's queues, as the collector reads
//! them: generated `/api/queues` pages (the columns the collector asks for,
//! `page_size` 100, its default), each parsed and published into a reused
//! batch, for 1,000 and 10,000 queues. Time per cycle should grow linearly:
//! the same per queue at both sizes.
//!
//! Each queue is a copy of a recorded 3.10 queue (`jobs.email` of
//! `tests/fixtures/3.10-busy-queues.json`: depth, consumers, and its
//! `message_stats` with their rates) under another name.
//!
//! Before criterion runs, one cycle of each size is measured with a
//! counting allocator: the peak of the memory the cycle holds at once above
//! what it started with, and what of it is the batch (which holds every
//! sample of the run, as the agent needs it) rather than the page being
//! read (bounded by the page size). Time is the benchmark thread's CPU time
//! (see `carat_collector::bench`).
//!
//! cargo bench -p carat-rabbitmq --bench queues

use std::hint::black_box;
use std::path::Path;

use carat_collector::bench::{
    live_bytes, peak_live_bytes, reset_peak, CountingAllocator, ThreadCpuTime,
};
use carat_collector::options::Filter;
use carat_collector::Batch;
use carat_rabbitmq::publish::NameRules;
use carat_rabbitmq::{api, publish_items};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{Map, Value};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const PAGE_SIZE: usize = 100;

/// The recorded queue, with only the columns the collector asks for.
fn template() -> Map<String, Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/3.10-busy-queues.json");
    let all: Vec<Map<String, Value>> =
        serde_json::from_slice(&std::fs::read(path).expect("the recorded queues")).expect("JSON");
    let mut queue = all
        .into_iter()
        .find(|q| q.get("name").and_then(Value::as_str) == Some("jobs.email"))
        .expect("jobs.email");
    let columns: Vec<&str> = api::QUEUE_COLUMNS.split(',').collect();
    queue.retain(|k, _| columns.contains(&k.as_str()));
    queue
}

/// The pages of a broker with `queues` queues, as the API answers them.
fn pages(queues: usize) -> Vec<Vec<u8>> {
    let template = template();
    let page_count = queues.div_ceil(PAGE_SIZE);
    (0..page_count)
        .map(|p| {
            let items: Vec<Value> = (p * PAGE_SIZE..((p + 1) * PAGE_SIZE).min(queues))
                .map(|i| {
                    let mut q = template.clone();
                    q.insert("name".into(), Value::String(format!("jobs.worker-{i:05}")));
                    Value::Object(q)
                })
                .collect();
            let page = serde_json::json!({
                "filtered_count": queues, "item_count": items.len(), "items": items,
                "page": p + 1, "page_count": page_count, "page_size": PAGE_SIZE,
                "total_count": queues,
            });
            serde_json::to_vec(&page).expect("JSON")
        })
        .collect()
}

/// One cycle: every page read and published, into `batch` (cleared first).
fn cycle(pages: &[Vec<u8>], batch: &mut Batch, name: &mut String) {
    batch.clear();
    let rules = NameRules::default();
    let filter = Filter::default();
    for body in pages {
        let listing = api::read_listing(body, "bench").expect("a page");
        publish_items(&listing.items, "", "queues", &filter, &rules, name, batch);
    }
}

fn benches(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("queues_cycle");
    for queues in [1_000usize, 10_000] {
        let pages = pages(queues);
        let bytes: usize = pages.iter().map(Vec::len).sum();
        let (mut batch, mut name) = (Batch::new(), String::new());
        // Memory: a fresh batch, so that its growth is counted.
        let before = live_bytes();
        reset_peak();
        cycle(&pages, &mut batch, &mut name);
        let peak = peak_live_bytes() - before;
        let held = live_bytes() - before;
        eprintln!(
            "{queues} queues: {} pages, {bytes} bytes of JSON, {} samples per cycle; \
             peak {peak} bytes above the start, of which {held} held after the cycle \
             (the batch), {} for reading a page",
            pages.len(),
            batch.len(),
            peak - held
        );
        group.throughput(Throughput::Elements(queues as u64));
        group.bench_with_input(BenchmarkId::from_parameter(queues), &pages, |b, pages| {
            b.iter(|| cycle(black_box(pages), &mut batch, &mut name))
        });
    }
    group.finish();
}

criterion_group! {
    name = queues;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = benches
}
criterion_main!(queues);
