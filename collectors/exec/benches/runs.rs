//! What the `exec` collector costs the agent:
//!
//! - `parse`: 1,000 and 10,000 Graphite lines (`name value timestamp`)
//!   read into metrics, on one core;
//! - `run`: a whole run of a command that prints one line (`sh -c`,
//!   started in its own process group, both pipes read, waited for), in
//!   wall time: mostly the fork and exec of the shell.
//!
//! cargo bench -p carat-exec --bench runs

use std::hint::black_box;
use std::time::Duration;

use carat_collector::options::Patterns;
use carat_collector::testing::Harness;
use carat_collector::Environment;
use carat_exec::parse::{graphite_line, Metrics};
use carat_exec::{Exec, ExecConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn parse(c: &mut Criterion) {
    let counters = Patterns::new(["^queue\\.[0-9]+\\.processed$"]).expect("a regex");
    let mut group = c.benchmark_group("parse");
    for size in [1_000usize, 10_000] {
        let text: String = (0..size)
            .map(|i| {
                format!(
                    "queue.{}.{} {} 1795436400\n",
                    i / 2,
                    ["depth", "processed"][i % 2],
                    i * 7
                )
            })
            .collect();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &text, |b, text| {
            b.iter(|| {
                let mut out = Metrics::new();
                for line in text.lines() {
                    graphite_line(line, &counters, &mut out).expect("a metric");
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn run(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let config = ExecConfig {
        command: vec!["sh".into(), "-c".into(), "echo 'queue.depth 42'".into()],
        ..ExecConfig::default()
    };
    let env = Environment {
        instance: "exec.bench".into(),
        run_timeout: Duration::from_secs(10),
        ..Environment::default()
    };
    let mut harness =
        runtime.block_on(async { Harness::<Exec>::new(config, env).expect("builds") });
    c.bench_function("run", |b| {
        b.iter(|| {
            let published = runtime.block_on(harness.collect()).expect("a run");
            black_box(published.metrics.len())
        });
    });
}

criterion_group!(benches, parse, run);
criterion_main!(benches);
