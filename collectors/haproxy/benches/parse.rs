//! Parsing and publishing a stats CSV of 1,000 and 10,000 server rows (HAProxy
//! 2.6's 128 columns, rows copied from a recorded one), into a reused batch
//! as the agent does. Time per row should stay the same from one size to
//! the other: the cost grows linearly.
//!
//! Time is the benchmark thread's CPU time, not wall time: the project's
//! 2-core machines are shared with builds and other tests, and waiting for
//! a core is not the parser's cost.
//!
//! cargo bench -p carat-haproxy --bench parse

use std::hint::black_box;

use carat_collector::bench::ThreadCpuTime;
use carat_collector::Batch;
use carat_haproxy::{Filters, StatsCsv};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const FIXTURE: &str = include_str!("../tests/fixtures/haproxy-2.6-socket-a.csv");

/// The recorded header, a frontend, `servers` copies of a recorded server
/// row spread over backends of 100 servers, and each backend's row.
fn csv_with(servers: usize) -> String {
    let mut lines = FIXTURE.lines();
    let header = lines.next().unwrap();
    let frontend = lines.next().unwrap();
    let server = FIXTURE
        .lines()
        .find(|l| l.starts_with("app,web1,"))
        .unwrap()
        .split_once(',')
        .unwrap()
        .1
        .split_once(',')
        .unwrap()
        .1;
    let backend = FIXTURE
        .lines()
        .find(|l| l.starts_with("app,BACKEND,"))
        .unwrap()
        .split_once(',')
        .unwrap()
        .1
        .split_once(',')
        .unwrap()
        .1;
    let mut out = String::with_capacity(servers * (server.len() + 32));
    out.push_str(header);
    out.push('\n');
    out.push_str(frontend);
    out.push('\n');
    for i in 0..servers {
        let pool = i / 100;
        out.push_str(&format!("pool-{pool}.example.com,web-{i:05},{server}\n"));
        if i % 100 == 99 || i + 1 == servers {
            out.push_str(&format!("pool-{pool}.example.com,BACKEND,{backend}\n"));
        }
    }
    out.push('\n');
    out
}

fn parse(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("parse_and_publish");
    for servers in [1_000usize, 10_000] {
        let text = csv_with(servers);
        let mut stats = StatsCsv::new(Filters::default(), true);
        let mut batch = Batch::new();
        // Warm up the batch's allocations and the parsed header.
        stats.publish(&text, "bench", &mut batch).unwrap();
        let samples = batch.len();
        eprintln!(
            "{servers} servers: {} bytes, {samples} samples per run",
            text.len()
        );
        group.throughput(Throughput::Elements(servers as u64));
        group.bench_with_input(BenchmarkId::from_parameter(servers), &text, |b, text| {
            b.iter(|| {
                batch.clear();
                let summary = stats.publish(black_box(text), "bench", &mut batch).unwrap();
                black_box((summary, batch.len()))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime).sample_size(20);
    targets = parse
}
criterion_main!(benches);
