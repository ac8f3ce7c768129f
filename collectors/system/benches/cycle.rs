//! The cost of one collection cycle of the whole system set, against this
//! machine's real `/proc`: time (criterion) and allocations (a counting
//! global allocator).
//!
//! Run with:
//!
//! ```text
//! cargo bench -p carat-system --bench cycle               # ~2 min: report, then criterion
//! cargo bench -p carat-system --bench cycle -- whole_set  # report, then only the matching ids
//! cargo test -p carat-system --bench cycle                # short report, each bench once
//! ```
//!
//! Every system collector is built once with its default configuration
//! (`process`: one group matching this bench's own executable by `exe`, one
//! matching nothing; `diskspace`: its defaults, or the type of `/` when they
//! measure nothing here), against the real `/proc`, then run once as a
//! warm-up: the first run of a rate collector only stores its reading, and
//! buffers grow to size.
//!
//! - `whole_set/one_cycle`: one cycle = each collector's `collect` in turn,
//!   into one reused [`Batch`] cleared (and stamped) before each collector,
//!   as the agent does. Driven by a current-thread tokio runtime's
//!   `block_on`, created once. Collectors are called directly (no boxed
//!   future per run).
//! - `per_collector/<kind>`: one collector's `collect` alone, to show where
//!   the time goes.
//!
//! Before the criterion runs, a report is printed: 1,000 cycles (200 under
//! `cargo test`; set `CYCLE_BENCH_CYCLES=<n>`, at least 200, to change it)
//! are run with a counting global allocator, giving the allocations per
//! cycle early (cycles 2..=100) and late (the last 100), the net bytes
//! still allocated (allocated − freed) after cycle 100 and after the last,
//! and the CPU time per cycle (`CLOCK_PROCESS_CPUTIME_ID`: user + system,
//! all threads, unlike criterion's wall clock); then each collector alone
//! as many times, with its allocations and CPU time per run. The bench
//! fails if the net bytes grew by more than [`GROWTH_LIMIT`].
//!
//! Rates are computed from counters between runs; here runs follow each
//! other microseconds apart, so `cpu` (whose `/proc/stat` counters move
//! every 10 ms) and `diskusage` (which skips idle disks) mostly publish
//! nothing, where on a real 10–60 s interval they publish every value.
//! Reading and parsing their files, the bulk of their cost, is the same.

use std::hint::black_box;
use std::time::Instant;

use carat_collector::bench::{
    allocations as allocs, live_bytes, process_cpu_seconds, CountingAllocator,
};
use carat_collector::{Batch, Collector, CollectorError, Environment};
use carat_system::process::{GroupConfig, Patterns};
use carat_system::{
    Cpu, DiskSpace, DiskSpaceConfig, DiskUsage, LoadAvg, Memory, Network, Process, ProcessConfig,
    Sockets, Tcp, Uptime, VmStat,
};
use criterion::{criterion_group, criterion_main, Criterion};
use tokio::runtime::Runtime;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// The largest growth of the net bytes between cycle 100 and the last that
/// is taken as noise rather than a leak: buffers keep the size of the
/// largest file they have read, so a new process with a longer `status`, or
/// more processes, grow them once (a few hundred bytes); a statvfs worker
/// thread of `diskspace` may still be exiting when the count is read.
const GROWTH_LIMIT: i64 = 16 * 1024;

// ---------------------------------------------------------------------------
// The set

/// Every system collector, built with its default configuration.
struct Set {
    cpu: Cpu,
    memory: Memory,
    loadavg: LoadAvg,
    uptime: Uptime,
    diskspace: DiskSpace,
    diskusage: DiskUsage,
    network: Network,
    vmstat: VmStat,
    sockets: Sockets,
    tcp: Tcp,
    process: Process,
}

/// The kinds, in the order a cycle runs them.
const KINDS: [&str; 11] = [
    Cpu::KIND,
    Memory::KIND,
    LoadAvg::KIND,
    Uptime::KIND,
    DiskSpace::KIND,
    DiskUsage::KIND,
    Network::KIND,
    VmStat::KIND,
    Sockets::KIND,
    Tcp::KIND,
    Process::KIND,
];

fn build<C: Collector>(config: C::Config) -> C {
    let env = Environment {
        instance: C::KIND.to_owned(),
        ..Environment::default()
    };
    C::new(config, &env).unwrap_or_else(|e| panic!("building {}: {e}", C::KIND))
}

/// `process`: a group matching this bench's executable, one matching nothing.
fn process_config() -> ProcessConfig {
    let exe = std::env::current_exe().expect("the bench's own executable");
    let exe = exe.to_str().expect("a UTF-8 executable path");
    ProcessConfig {
        groups: vec![
            GroupConfig {
                name: "bench".to_owned(),
                exe: Patterns::new([format!("^{}$", regex::escape(exe))])
                    .expect("an escaped path is a regex"),
                process_name: Patterns::default(),
                cmdline: Patterns::default(),
                selfmon: false,
            },
            GroupConfig {
                name: "nothing".to_owned(),
                exe: Patterns::new(["^/nonexistent/carat-bench-no-such-exe$"])
                    .expect("a constant regex"),
                process_name: Patterns::default(),
                cmdline: Patterns::default(),
                selfmon: false,
            },
        ],
        ..ProcessConfig::default()
    }
}

/// `diskspace` with its defaults, or, when they measure nothing here,
/// with `filesystems` = the type of what is mounted at `/`.
fn diskspace(rt: &Runtime, batch: &mut Batch) -> DiskSpace {
    let mut ds = build::<DiskSpace>(DiskSpaceConfig::default());
    batch.clear();
    if rt.block_on(ds.collect(batch)).is_ok() && !batch.is_empty() {
        return ds;
    }
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    // The last mount on `/` is the one in use.
    let root_type = mounts
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<_> = l.split(' ').collect();
            (f.get(1) == Some(&"/")).then(|| f.get(2).copied().unwrap_or_default())
        })
        .expect("a filesystem mounted at /");
    eprintln!("diskspace: the defaults measure nothing here; filesystems = [{root_type:?}]");
    build::<DiskSpace>(DiskSpaceConfig {
        filesystems: vec![root_type.to_owned()],
        ..DiskSpaceConfig::default()
    })
}

impl Set {
    fn new(rt: &Runtime, batch: &mut Batch) -> Set {
        Set {
            cpu: build(Default::default()),
            memory: build(Default::default()),
            loadavg: build(Default::default()),
            uptime: build(Default::default()),
            diskspace: diskspace(rt, batch),
            diskusage: build(Default::default()),
            network: build(Default::default()),
            vmstat: build(Default::default()),
            sockets: build(Default::default()),
            tcp: build(Default::default()),
            process: build(process_config()),
        }
    }

    /// Runs collector `i` (in [`KINDS`] order) into `batch`, cleared first.
    async fn run(&mut self, i: usize, batch: &mut Batch) -> Result<(), CollectorError> {
        batch.clear();
        match i {
            0 => self.cpu.collect(batch).await,
            1 => self.memory.collect(batch).await,
            2 => self.loadavg.collect(batch).await,
            3 => self.uptime.collect(batch).await,
            4 => self.diskspace.collect(batch).await,
            5 => self.diskusage.collect(batch).await,
            6 => self.network.collect(batch).await,
            7 => self.vmstat.collect(batch).await,
            8 => self.sockets.collect(batch).await,
            9 => self.tcp.collect(batch).await,
            10 => self.process.collect(batch).await,
            _ => unreachable!("{i} is not a collector"),
        }
    }

    /// One cycle: every collector in turn. Returns the number of samples.
    async fn cycle(&mut self, batch: &mut Batch) -> usize {
        let mut samples = 0;
        for (i, kind) in KINDS.iter().enumerate() {
            if let Err(e) = self.run(i, batch).await {
                panic!("{kind}: {e}");
            }
            samples += batch.len();
        }
        samples
    }
}

// ---------------------------------------------------------------------------
// Allocations and CPU time per cycle

/// Allocation calls, CPU seconds and wall seconds of `runs` calls of `f`.
fn measure(runs: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let (a, cpu, wall) = (allocs(), process_cpu_seconds(), Instant::now());
    for _ in 0..runs {
        f();
    }
    let n = runs as f64;
    (
        (allocs() - a) as f64 / n,
        (process_cpu_seconds() - cpu) / n,
        wall.elapsed().as_secs_f64() / n,
    )
}

/// Runs `cycles` cycles counting allocations, then each collector alone
/// `cycles` times, prints the report and checks that the net bytes do not
/// grow.
fn report(set: &mut Set, rt: &Runtime, batch: &mut Batch, cycles: usize) {
    assert!(cycles >= 200);
    // Allocation counts before each cycle (index n = before cycle n + 1),
    // sized up front so that recording allocates nothing.
    let mut before = vec![0u64; cycles + 1];
    let mut live_after_100 = 0i64;
    let mut samples = 0;
    let (cpu0, wall0) = (process_cpu_seconds(), Instant::now());
    for (n, count) in before[..cycles].iter_mut().enumerate() {
        *count = allocs();
        samples = rt.block_on(set.cycle(batch));
        if n + 1 == 100 {
            live_after_100 = live_bytes();
        }
    }
    before[cycles] = allocs();
    let live_end = live_bytes();
    let (cpu, wall) = (process_cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());

    let per_cycle = |from: usize, to: usize| {
        // Cycles are counted from 1: cycles from..=to.
        (before[to] - before[from - 1]) as f64 / (to - from + 1) as f64
    };
    let late = cycles - 99;

    // Where it goes: each collector alone.
    let by_kind: Vec<_> = KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let m = measure(cycles, || {
                rt.block_on(set.run(i, batch)).expect(kind);
            });
            (*kind, batch.len(), m)
        })
        .collect();
    // And what driving a future with block_on costs by itself.
    let (harness, _, _) = measure(100, || {
        rt.block_on(async { black_box(0) });
    });

    let ms = |s: f64| s * 1e3;
    let us = |s: f64| s * 1e6;
    println!();
    println!("== carat-system: whole set, one cycle ({cycles} cycles after the warm-up) ==");
    let processes = std::fs::read_dir("/proc").map_or(0, |d| {
        d.flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count()
    });
    println!(
        "machine:               {} CPUs, {processes} processes, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("samples per cycle:     {samples}");
    println!(
        "time per cycle:        {:.3} ms CPU (user + system, all threads), {:.3} ms wall",
        ms(cpu / cycles as f64),
        ms(wall / cycles as f64)
    );
    println!(
        "allocations per cycle: {:.2} (cycles 2..=100), {:.2} (cycles {late}..={cycles})",
        per_cycle(2, 100),
        per_cycle(late, cycles)
    );
    println!(
        "net bytes allocated:   {live_after_100} after cycle 100, {live_end} after cycle {cycles}: growth {} bytes",
        live_end - live_after_100
    );
    println!("by collector, alone ({cycles} runs each):");
    println!("  collector  samples  allocs/run  CPU µs/run  wall µs/run");
    for (kind, samples, (allocs, cpu, wall)) in &by_kind {
        println!(
            "  {kind:<10} {samples:>7} {allocs:>11.2} {:>11.1} {:>12.1}",
            us(*cpu),
            us(*wall)
        );
    }
    println!("  (block_on of an empty future: {harness:.2} allocations)");
    println!();

    assert!(
        live_end - live_after_100 <= GROWTH_LIMIT,
        "the net bytes allocated grew by {} bytes between cycle 100 and cycle {cycles}",
        live_end - live_after_100
    );
}

// ---------------------------------------------------------------------------
// Criterion

fn setup() -> (Runtime, Set, Batch) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let mut batch = Batch::new();
    let mut set = Set::new(&rt, &mut batch);
    // Warm-up: the first run of rate collectors only stores its reading.
    let samples = rt.block_on(set.cycle(&mut batch));
    assert!(samples > 0);
    (rt, set, batch)
}

fn benches(c: &mut Criterion) {
    let (rt, mut set, mut batch) = setup();
    // `cargo bench` passes --bench; `cargo test --benches` does not, and
    // criterion then runs each bench once.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let cycles = std::env::var("CYCLE_BENCH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if bench_mode { 1000 } else { 200 });
    report(&mut set, &rt, &mut batch, cycles);

    c.bench_function("whole_set/one_cycle", |b| {
        b.iter(|| black_box(rt.block_on(set.cycle(&mut batch))))
    });

    let mut group = c.benchmark_group("per_collector");
    for (i, kind) in KINDS.iter().enumerate() {
        group.bench_function(*kind, |b| {
            b.iter(|| {
                rt.block_on(set.run(i, &mut batch)).expect(kind);
                black_box(batch.len())
            })
        });
    }
    group.finish();
}

criterion_group!(cycle, benches);
criterion_main!(cycle);
