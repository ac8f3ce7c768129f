//! The `cpu` collector: how each CPU spent its time, from `/proc/stat`.
//!
//! `/proc/stat` holds, for the whole machine (`cpu`) and for each online CPU
//! (`cpu0`, `cpu1`, …), the time spent in each state since boot, in jiffies
//! (USER_HZ, 1/100 s on every common kernel). The collector keeps the
//! previous reading and publishes, for each state, its share of the time that
//! elapsed between the two readings, as a percentage of one core:
//!
//! ```text
//! cpuN.<state> = Δstate / Δelapsed × 100              (sums to 100)
//! total.<state> = Δstate / Δelapsed × 100 × ncpus      (sums to 100 × ncpus)
//! total.<state> = Δstate / Δelapsed × 100              (with normalize = true)
//! ```
//!
//! where `ncpus` is the number of `cpuN` lines (online CPUs) in the current
//! reading. This is what Diamond's derivative of jiffies per second gives on
//! a USER_HZ=100 kernel, without depending on the interval being exact.
//!
//! # Elapsed time and guests
//!
//! The kernel counts the time a CPU runs a guest (a virtual machine) both in
//! `guest` and in `user`, and `guest_nice` both in `guest_nice` and in
//! `nice`. The elapsed time is therefore the sum of `user` through `steal`
//! only, so that guest time is not counted twice; `guest` and `guest_nice`
//! are still published (as Diamond does) as shares of that elapsed time, and
//! are part of `user` and `nice` respectively. The states that make up
//! 100 % are `user`, `nice`, `system`, `idle`, `iowait`, `irq`, `softirq`
//! and `steal`.
//!
//! # Missing and odd readings
//!
//! - The first run has no previous reading and publishes no share.
//! - Kernels older than 2.6.33 print fewer columns (2.6.11–2.6.23: up to
//!   `steal`; 2.6.0–2.6.10: up to `softirq`; 2.4: `user nice system idle`);
//!   only the states present are published. Columns beyond `guest_nice`
//!   (a future kernel) are ignored.
//! - A CPU that was not in the previous reading (it came online) or is not
//!   in the current one (it went offline) publishes nothing this cycle; the
//!   others are unaffected.
//! - A CPU (or the aggregate line) whose counters went backwards in any
//!   state (a VM migrated to another host, a kernel accounting bug around
//!   CPU hotplug) or did not move at all publishes nothing this cycle; its
//!   current reading becomes the base for the next one.
//! - A file that cannot be parsed is a [`CollectorError::Parse`] naming the
//!   file and line; the previous good reading is kept, so the next good one
//!   gives the shares over the longer interval.
//!
//! # Other systems
//!
//! With `source = "sysinfo"` (the default off Linux) the collector asks the
//! `sysinfo` crate, which gives, per CPU and for the whole machine, only the
//! share of time *not idle* between two refreshes, not the time per state.
//! So no `<state>` metric is published; instead, under the same rules of
//! scaling:
//!
//! ```text
//! cpuN.percent  = busy share of CPU N × 100                 (0–100, percore)
//! total.percent = busy share of the machine × 100 × ncpus   (× 100 with normalize)
//! percent       = busy share of the machine × 100           (simple, Diamond's)
//! cpu_count     = CPUs in sysinfo's list                    (cpu_count)
//! ```
//!
//! "Busy" is `sysinfo`'s: on Linux user, nice, system, irq, softirq, steal
//! and guest time, so `iowait` counts as idle there (the `/proc` source's
//! `percent` counts it as busy). The first run publishes nothing but
//! `cpu_count` (sysinfo's first refresh has nothing to compare with). The
//! list of CPUs is the one of the first run. Two runs less than
//! [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`] (200 ms) apart give the same
//! values.

use std::fmt::Write as _;
use std::path::PathBuf;

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;
use sysinfo::System;

use crate::procfile::{file_error, parse_error, read_complete};
use crate::source::{sysinfo_error, Reader, Source};

/// The states of `/proc/stat`, in the kernel's column order.
pub const STATES: [&str; MAX_COLUMNS] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
];

/// `total.<state>` for each state, so the aggregate needs no formatting.
const TOTAL_NAMES: [&str; MAX_COLUMNS] = [
    "total.user",
    "total.nice",
    "total.system",
    "total.idle",
    "total.iowait",
    "total.irq",
    "total.softirq",
    "total.steal",
    "total.guest",
    "total.guest_nice",
];

/// Columns the kernel prints today (up to `guest_nice`).
const MAX_COLUMNS: usize = 10;
/// Columns every kernel prints (`user nice system idle`).
const MIN_COLUMNS: usize = 4;
/// The columns whose sum is the elapsed time: `user` through `steal`
/// (`guest` and `guest_nice` are already inside `user` and `nice`).
const ELAPSED_COLUMNS: usize = 8;
const IDLE: usize = 3;

/// Options of the `cpu` collector.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {
    /// Publish `cpuN.<state>` for each CPU as well as `total.<state>`.
    pub percore: bool,
    /// Divide `total.<state>` by the number of CPUs, so that the total sums
    /// to 100 instead of 100 × CPUs.
    pub normalize: bool,
    /// Publish only `percent`, the share of the whole machine's time not
    /// idle, 0–100 whatever the number of CPUs (Diamond's simple mode, same
    /// name and meaning). `percore` and `normalize` are then ignored.
    pub simple: bool,
    /// Also publish `cpu_count`, the number of online CPUs.
    pub cpu_count: bool,
    /// Where the CPU times come from (`auto`: `/proc/stat` on Linux, the
    /// `sysinfo` crate elsewhere, which gives busy percentages only).
    pub source: Source,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            percore: true,
            normalize: false,
            simple: false,
            cpu_count: false,
            source: Source::Auto,
        }
    }
}

/// The counters of one `cpu` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Times {
    /// How many of `values` the line had.
    columns: usize,
    values: [u64; MAX_COLUMNS],
}

/// How one CPU's counters moved between two readings.
struct Delta {
    columns: usize,
    values: [u64; MAX_COLUMNS],
    elapsed: u64,
}

impl Delta {
    /// The movement from `prev` to `cur`, or `None` when there is no share to
    /// publish: the lines differ in columns, a counter went backwards, or no
    /// time elapsed.
    fn between(prev: &Times, cur: &Times) -> Option<Delta> {
        if prev.columns != cur.columns {
            return None;
        }
        let mut values = [0u64; MAX_COLUMNS];
        for ((d, c), p) in values
            .iter_mut()
            .zip(&cur.values)
            .zip(&prev.values)
            .take(cur.columns)
        {
            *d = c.checked_sub(*p)?;
        }
        let elapsed = values[..cur.columns.min(ELAPSED_COLUMNS)]
            .iter()
            .fold(0u64, |sum, v| sum.saturating_add(*v));
        if elapsed == 0 {
            return None;
        }
        Some(Delta {
            columns: cur.columns,
            values,
            elapsed,
        })
    }

    /// The share (0..=1) of the elapsed time spent in column `i`.
    fn share(&self, i: usize) -> f64 {
        self.values[i] as f64 / self.elapsed as f64
    }

    /// The share of the elapsed time not idle (iowait counts as busy, as in
    /// Diamond's simple mode).
    fn busy(&self) -> f64 {
        self.elapsed.saturating_sub(self.values[IDLE]) as f64 / self.elapsed as f64
    }
}

/// One parse of `/proc/stat`.
#[derive(Debug, Default)]
struct Reading {
    /// The aggregate `cpu` line.
    total: Times,
    /// `(N, counters)` of each `cpuN` line, in ascending `N`.
    cpus: Vec<(u32, Times)>,
}

/// The `cpu` collector. See the [module documentation](self).
pub struct Cpu {
    path: PathBuf,
    config: CpuConfig,
    buf: Vec<u8>,
    prev: Reading,
    cur: Reading,
    have_prev: bool,
    name: String,
    /// The `sysinfo` reader, when that is the source.
    sysinfo: Option<SysinfoCpu>,
}

impl Collector for Cpu {
    type Config = CpuConfig;
    const KIND: &'static str = "cpu";
    const DESCRIPTION: &'static str =
        "CPU time per state (user, system, idle, …) in percent, per core and total, from /proc/stat";
    const DEFAULT_PATH: &'static str = "cpu";

    fn new(config: CpuConfig, env: &Environment) -> Result<Self, CollectorError> {
        let sysinfo = match config.source.reader(Self::KIND)? {
            Reader::Proc => None,
            Reader::Sysinfo => Some(SysinfoCpu::default()),
        };
        Ok(Cpu {
            sysinfo,
            path: env.proc_path("stat"),
            config,
            buf: Vec::new(),
            prev: Reading::default(),
            cur: Reading::default(),
            have_prev: false,
            name: String::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        if let Some(source) = &mut self.sysinfo {
            return source.collect(batch, &self.config, &mut self.name);
        }
        let text = read_complete(&self.path, &mut self.buf)?;
        parse_stat(&self.path, text, &mut self.cur)?;
        if self.config.cpu_count {
            batch.gauge("cpu_count", self.cur.cpus.len() as f64);
        }
        if self.have_prev {
            self.publish(batch);
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.have_prev = true;
        Ok(())
    }
}

impl Cpu {
    /// Adds the shares between `self.prev` and `self.cur` to `batch`.
    fn publish(&mut self, batch: &mut Batch) {
        let (prev, cur) = (&self.prev, &self.cur);
        // A reading always has the aggregate line; `max(1)` only guards a
        // /proc/stat with no per-CPU line at all (seen in some sandboxes).
        let ncpus = cur.cpus.len().max(1) as f64;
        let total_scale = if self.config.normalize {
            100.0
        } else {
            100.0 * ncpus
        };
        if let Some(d) = Delta::between(&prev.total, &cur.total) {
            if self.config.simple {
                batch.gauge("percent", d.busy() * 100.0);
            } else {
                for (i, name) in TOTAL_NAMES.iter().enumerate().take(d.columns) {
                    batch.gauge(name, d.share(i) * total_scale);
                }
            }
        }
        if self.config.simple || !self.config.percore {
            return;
        }
        for (n, times) in &cur.cpus {
            let Ok(at) = prev.cpus.binary_search_by_key(n, |(m, _)| *m) else {
                continue; // came online since the previous reading
            };
            let Some(d) = Delta::between(&prev.cpus[at].1, times) else {
                continue;
            };
            for (i, state) in STATES.iter().enumerate().take(d.columns) {
                self.name.clear();
                // Writing to a String cannot fail.
                let _ = write!(self.name, "cpu{n}.{state}");
                batch.gauge(&self.name, d.share(i) * 100.0);
            }
        }
    }
}

/// The `sysinfo` reading of the `cpu` collector (see the module
/// documentation, "Other systems").
#[derive(Default)]
struct SysinfoCpu {
    /// Built on the first run (building it can fail; `new` must not). Keeps
    /// the previous CPU times, which the usage is computed against.
    system: Option<System>,
}

impl SysinfoCpu {
    fn collect(
        &mut self,
        batch: &mut Batch,
        config: &CpuConfig,
        name: &mut String,
    ) -> Result<(), CollectorError> {
        let (system, first) = match &mut self.system {
            Some(system) => (system, false),
            none => (
                none.insert(System::new().map_err(|e| sysinfo_error("CPU usage", e))?),
                true,
            ),
        };
        system.refresh_cpu_usage();
        let cpus = system.cpus();
        if cpus.is_empty() {
            return Err(CollectorError::Other(
                "sysinfo lists no CPU: it could not read the CPU times".into(),
            ));
        }
        if config.cpu_count {
            batch.gauge("cpu_count", cpus.len() as f64);
        }
        if first {
            // The first refresh compares with nothing (its usage is since
            // boot, or 0): publish from the second on, as /proc does.
            return Ok(());
        }
        let busy = f64::from(system.global_cpu_usage());
        if config.simple {
            batch.gauge("percent", busy);
            return Ok(());
        }
        let scale = if config.normalize {
            1.0
        } else {
            cpus.len() as f64
        };
        batch.gauge("total.percent", busy * scale);
        if !config.percore {
            return Ok(());
        }
        for (i, cpu) in cpus.iter().enumerate() {
            // Linux names them as /proc/stat does (`cpu3`): keep that
            // number, so an offline CPU does not shift the others' names.
            let n = cpu
                .name()
                .strip_prefix("cpu")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(i as u32);
            name.clear();
            // Writing to a String cannot fail.
            let _ = write!(name, "cpu{n}.percent");
            batch.gauge(name, f64::from(cpu.usage()));
        }
        Ok(())
    }
}

/// Parses the `cpu` lines of `/proc/stat` (`text`, read from `path`) into
/// `out`, reusing its allocation. Other lines are ignored.
fn parse_stat(path: &std::path::Path, text: &str, out: &mut Reading) -> Result<(), CollectorError> {
    out.cpus.clear();
    let mut total_line = None;
    // The column count of the first cpu line, and where it was: every cpu
    // line has the same, so a line with fewer was cut short.
    let mut columns: Option<(usize, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if !line.starts_with("cpu") {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let label = fields.next().unwrap_or_default();
        let cpu = match label.strip_prefix("cpu") {
            Some("") => None,
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                Some(digits.parse::<u32>().map_err(|e| {
                    parse_error(path, lineno, format!("bad CPU number in {label:?}: {e}"))
                })?)
            }
            _ => {
                return Err(parse_error(
                    path,
                    lineno,
                    format!("{label:?} is neither `cpu` nor `cpuN`"),
                ))
            }
        };
        let mut times = Times::default();
        for field in fields.take(MAX_COLUMNS) {
            times.values[times.columns] = field.parse::<u64>().map_err(|e| {
                parse_error(
                    path,
                    lineno,
                    format!(
                        "{label} {}: {field:?} is not a counter: {e}",
                        STATES[times.columns]
                    ),
                )
            })?;
            times.columns += 1;
        }
        if times.columns < MIN_COLUMNS {
            return Err(parse_error(
                path,
                lineno,
                format!(
                    "{label} has {} columns, expected at least {MIN_COLUMNS} (user nice system idle)",
                    times.columns
                ),
            ));
        }
        match columns {
            None => columns = Some((times.columns, lineno)),
            Some((expected, first)) if expected != times.columns => {
                return Err(parse_error(
                    path,
                    lineno,
                    format!(
                        "{label} has {} columns but line {first} has {expected}: truncated or corrupt",
                        times.columns
                    ),
                ));
            }
            Some(_) => {}
        }
        match cpu {
            None => {
                if let Some(first) = total_line {
                    return Err(parse_error(
                        path,
                        lineno,
                        format!("a second aggregate `cpu` line (the first is line {first})"),
                    ));
                }
                total_line = Some(lineno);
                out.total = times;
            }
            Some(n) => {
                if let Some(&(last, _)) = out.cpus.last() {
                    if n <= last {
                        return Err(parse_error(
                            path,
                            lineno,
                            format!(
                                "cpu{n} after cpu{last}: CPU lines must be unique and ascending"
                            ),
                        ));
                    }
                }
                out.cpus.push((n, times));
            }
        }
    }
    if total_line.is_none() {
        return Err(file_error(path, "no aggregate `cpu` line"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        self, assert_metric, assert_source_option, config_from, error_label_without_files,
        fixture_env, source_error, Stepper,
    };
    use carat_collector::testing::{Harness, Published};

    fn names(p: &Published) -> Vec<&str> {
        p.names().collect()
    }

    // The recorded fixtures, for reference (taken 1.2 s apart on a 2-CPU VM
    // with one CPU kept busy in between):
    //
    // proc-a: cpu  3137 0 1952 89019 360 0 31 18 0 0
    //         cpu0 1278 0 742 45209 24 0 5 6 0 0
    //         cpu1 1858 0 1210 43809 335 0 26 11 0 0
    // proc-b: cpu  3254 0 1962 89130 360 0 32 19 0 0
    //         cpu0 1296 0 752 45300 24 0 5 7 0 0
    //         cpu1 1958 0 1210 43830 335 0 27 11 0 0
    //
    // Deltas:  total: user 117, system 10, idle 111, softirq 1, steal 1 → 240
    //          cpu0:  user 18, system 10, idle 91, steal 1              → 120
    //          cpu1:  user 100, idle 21, softirq 1                      → 122

    #[tokio::test]
    async fn first_run_publishes_nothing() {
        let mut h = Harness::<Cpu>::new(CpuConfig::default(), fixture_env("proc-a")).unwrap();
        let p = h.collect().await.unwrap();
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
        assert_eq!(p.samples, 0);
    }

    #[tokio::test]
    async fn recorded_fixtures_default_config() {
        let mut s = Stepper::<Cpu>::new("cpu-default", &["stat"], CpuConfig::default());
        s.run_fixtures(1, &["proc-a/stat"]).await;
        let p = s.run_fixtures(1, &["proc-b/stat"]).await;

        // total: share × 100 × 2 CPUs.
        assert_metric(&p, "total.user", 117.0 / 240.0 * 200.0); // 97.5
        assert_metric(&p, "total.nice", 0.0);
        assert_metric(&p, "total.system", 10.0 / 240.0 * 200.0);
        assert_metric(&p, "total.idle", 111.0 / 240.0 * 200.0); // 92.5
        assert_metric(&p, "total.iowait", 0.0);
        assert_metric(&p, "total.irq", 0.0);
        assert_metric(&p, "total.softirq", 1.0 / 240.0 * 200.0);
        assert_metric(&p, "total.steal", 1.0 / 240.0 * 200.0);
        assert_metric(&p, "total.guest", 0.0);
        assert_metric(&p, "total.guest_nice", 0.0);

        assert_metric(&p, "cpu0.user", 15.0); // 18 / 120
        assert_metric(&p, "cpu0.system", 10.0 / 120.0 * 100.0);
        assert_metric(&p, "cpu0.idle", 91.0 / 120.0 * 100.0);
        assert_metric(&p, "cpu0.steal", 1.0 / 120.0 * 100.0);
        assert_metric(&p, "cpu0.softirq", 0.0);
        assert_metric(&p, "cpu1.user", 100.0 / 122.0 * 100.0);
        assert_metric(&p, "cpu1.idle", 21.0 / 122.0 * 100.0);
        assert_metric(&p, "cpu1.softirq", 1.0 / 122.0 * 100.0);
        assert_metric(&p, "cpu1.system", 0.0);

        // 10 states × (total + 2 CPUs), nothing else.
        assert_eq!(p.metrics.len(), 30, "{:?}", names(&p));
        assert!(p.get("cpu_count").is_none());
        assert!(p.get("percent").is_none());
    }

    #[tokio::test]
    async fn normalize_and_no_percore() {
        let config = CpuConfig {
            percore: false,
            normalize: true,
            ..CpuConfig::default()
        };
        let mut s = Stepper::<Cpu>::new("cpu-normalize", &["stat"], config);
        s.run_fixtures(1, &["proc-a/stat"]).await;
        let p = s.run_fixtures(1, &["proc-b/stat"]).await;
        assert_metric(&p, "total.user", 48.75); // 117 / 240 × 100
        assert_metric(&p, "total.idle", 46.25); // 111 / 240 × 100
        assert_metric(&p, "total.system", 10.0 / 240.0 * 100.0);
        assert_eq!(p.metrics.len(), 10, "{:?}", names(&p));
        assert!(p.names().all(|n| n.starts_with("total.")));
    }

    #[tokio::test]
    async fn simple_and_cpu_count() {
        let config = CpuConfig {
            simple: true,
            cpu_count: true,
            ..CpuConfig::default()
        };
        let mut s = Stepper::<Cpu>::new("cpu-simple", &["stat"], config);
        // cpu_count is a plain gauge: published from the first run on.
        let first = s.run_fixtures(1, &["proc-a/stat"]).await;
        assert_eq!(names(&first), ["cpu_count"]);
        assert_metric(&first, "cpu_count", 2.0);
        let p = s.run_fixtures(1, &["proc-b/stat"]).await;
        // Busy = 240 − idle 111 = 129 → 129 / 240 × 100, machine-wide.
        assert_metric(&p, "percent", 53.75);
        assert_metric(&p, "cpu_count", 2.0);
        assert_eq!(p.metrics.len(), 2, "{:?}", names(&p));

        let config = CpuConfig {
            simple: true,
            normalize: true,
            ..CpuConfig::default()
        };
        let mut s = Stepper::<Cpu>::new("cpu-simple-norm", &["stat"], config);
        s.run_fixtures(1, &["proc-a/stat"]).await;
        let p = s.run_fixtures(1, &["proc-b/stat"]).await;
        assert_metric(&p, "percent", 53.75);
        assert_eq!(p.metrics.len(), 1);
    }

    #[tokio::test]
    async fn guest_time_is_not_counted_twice() {
        let mut s = Stepper::<Cpu>::new("cpu-guest", &["stat"], CpuConfig::default());
        s.run(
            1,
            &["cpu  100 10 100 100 0 0 0 0 50 5\ncpu0 100 10 100 100 0 0 0 0 50 5\n"],
        )
        .await
        .unwrap();
        // Δ: user 60 (of which guest 40), nice 10 (of which guest_nice 5),
        // system 10, idle 20 → elapsed 100, not 145.
        let p = s
            .run(
                1,
                &["cpu  160 20 110 120 0 0 0 0 90 10\ncpu0 160 20 110 120 0 0 0 0 90 10\n"],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu0.user", 60.0);
        assert_metric(&p, "cpu0.nice", 10.0);
        assert_metric(&p, "cpu0.system", 10.0);
        assert_metric(&p, "cpu0.idle", 20.0);
        assert_metric(&p, "cpu0.guest", 40.0);
        assert_metric(&p, "cpu0.guest_nice", 5.0);
        assert_metric(&p, "total.user", 60.0);
        assert_metric(&p, "total.guest", 40.0);
    }

    #[tokio::test]
    async fn old_kernel_with_eight_columns() {
        // 2.6.11–2.6.23: up to steal, no guest columns.
        let mut s = Stepper::<Cpu>::new("cpu-old8", &["stat"], CpuConfig::default());
        let first = s
            .run(
                1,
                &["cpu  200 0 100 1000 10 1 2 3\ncpu0 200 0 100 1000 10 1 2 3\nintr 5\n"],
            )
            .await
            .unwrap();
        assert!(first.metrics.is_empty());
        // Δ: user 30, system 10, idle 50, iowait 5, irq 1, softirq 2, steal 2 → 100
        let p = s
            .run(
                1,
                &["cpu  230 0 110 1050 15 2 4 5\ncpu0 230 0 110 1050 15 2 4 5\nintr 9\n"],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu0.user", 30.0);
        assert_metric(&p, "cpu0.idle", 50.0);
        assert_metric(&p, "cpu0.iowait", 5.0);
        assert_metric(&p, "cpu0.steal", 2.0);
        assert_metric(&p, "total.softirq", 2.0);
        assert!(p.get("cpu0.guest").is_none());
        assert!(p.get("total.guest_nice").is_none());
        assert_eq!(p.metrics.len(), 16, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn kernel_2_4_with_four_columns() {
        let mut s = Stepper::<Cpu>::new(
            "cpu-old4",
            &["stat"],
            CpuConfig {
                simple: true,
                ..CpuConfig::default()
            },
        );
        s.run(1, &["cpu  10 0 10 80\ncpu0 10 0 10 80\n"])
            .await
            .unwrap();
        // Δ: user 15, nice 5, system 10, idle 20 → 50; no iowait column.
        let p = s
            .run(1, &["cpu  25 5 20 100\ncpu0 25 5 20 100\n"])
            .await
            .unwrap();
        assert_metric(&p, "percent", 30.0 / 50.0 * 100.0);

        let mut s = Stepper::<Cpu>::new("cpu-old4-full", &["stat"], CpuConfig::default());
        s.run(1, &["cpu  10 0 10 80\ncpu0 10 0 10 80\n"])
            .await
            .unwrap();
        let p = s
            .run(1, &["cpu  25 5 20 100\ncpu0 25 5 20 100\n"])
            .await
            .unwrap();
        assert_metric(&p, "cpu0.user", 30.0);
        assert_metric(&p, "cpu0.nice", 10.0);
        assert_metric(&p, "cpu0.system", 20.0);
        assert_metric(&p, "cpu0.idle", 40.0);
        assert_eq!(p.metrics.len(), 8, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn extra_columns_of_a_future_kernel_are_ignored() {
        let mut s = Stepper::<Cpu>::new("cpu-future", &["stat"], CpuConfig::default());
        s.run(
            1,
            &["cpu  0 0 0 0 0 0 0 0 0 0 7\ncpu0 0 0 0 0 0 0 0 0 0 0 7\n"],
        )
        .await
        .unwrap();
        let p = s
            .run(
                1,
                &["cpu  50 0 0 50 0 0 0 0 0 0 9\ncpu0 50 0 0 50 0 0 0 0 0 0 9\n"],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu0.user", 50.0);
        assert_eq!(p.metrics.len(), 20);
    }

    #[tokio::test]
    async fn cpu_going_offline_and_coming_back() {
        let config = CpuConfig {
            cpu_count: true,
            ..CpuConfig::default()
        };
        let mut s = Stepper::<Cpu>::new("cpu-hotplug", &["stat"], config);
        s.run(
            1,
            &[concat!(
                "cpu  300 0 0 300 0 0 0 0 0 0\n",
                "cpu0 100 0 0 100 0 0 0 0 0 0\n",
                "cpu1 100 0 0 100 0 0 0 0 0 0\n",
                "cpu2 100 0 0 100 0 0 0 0 0 0\n",
            )],
        )
        .await
        .unwrap();
        // cpu1 goes offline. The aggregate keeps counting over all possible
        // CPUs; cpu0 Δ: user 10 idle 30, cpu2 Δ: user 20 idle 20.
        let p = s
            .run(
                1,
                &[concat!(
                    "cpu  330 0 0 350 0 0 0 0 0 0\n",
                    "cpu0 110 0 0 130 0 0 0 0 0 0\n",
                    "cpu2 120 0 0 120 0 0 0 0 0 0\n",
                )],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu_count", 2.0);
        assert_metric(&p, "cpu0.user", 25.0);
        assert_metric(&p, "cpu0.idle", 75.0);
        assert_metric(&p, "cpu2.user", 50.0);
        assert!(
            !p.names().any(|n| n.starts_with("cpu1.")),
            "{:?}",
            names(&p)
        );
        // Total Δ: user 30, idle 50 → 80, × 100 × 2 online CPUs.
        assert_metric(&p, "total.user", 30.0 / 80.0 * 200.0);
        assert_metric(&p, "total.idle", 50.0 / 80.0 * 200.0);

        // cpu1 comes back: no base for it yet, the others go on.
        let p = s
            .run(
                1,
                &[concat!(
                    "cpu  360 0 0 400 0 0 0 0 0 0\n",
                    "cpu0 120 0 0 160 0 0 0 0 0 0\n",
                    "cpu1 100 0 0 110 0 0 0 0 0 0\n",
                    "cpu2 140 0 0 130 0 0 0 0 0 0\n",
                )],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu_count", 3.0);
        assert!(
            !p.names().any(|n| n.starts_with("cpu1.")),
            "{:?}",
            names(&p)
        );
        assert_metric(&p, "cpu0.user", 25.0); // 10 / 40
        assert_metric(&p, "cpu2.user", 20.0 / 30.0 * 100.0);
        assert_metric(&p, "total.user", 30.0 / 80.0 * 300.0);

        // Next cycle: cpu1 is published again.
        let p = s
            .run(
                1,
                &[concat!(
                    "cpu  390 0 0 450 0 0 0 0 0 0\n",
                    "cpu0 130 0 0 190 0 0 0 0 0 0\n",
                    "cpu1 110 0 0 120 0 0 0 0 0 0\n",
                    "cpu2 150 0 0 140 0 0 0 0 0 0\n",
                )],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu1.user", 50.0);
        assert_metric(&p, "cpu1.idle", 50.0);
    }

    #[tokio::test]
    async fn counter_going_backwards_skips_that_cpu_once() {
        let mut s = Stepper::<Cpu>::new("cpu-backwards", &["stat"], CpuConfig::default());
        s.run(
            1,
            &[concat!(
                "cpu  200 0 0 200 0 0 0 0 0 0\n",
                "cpu0 100 0 0 100 0 0 0 0 0 0\n",
                "cpu1 100 0 0 100 0 0 0 0 0 0\n",
            )],
        )
        .await
        .unwrap();
        // cpu1's idle went backwards (VM migration): skipped; cpu0 and the
        // total (whose counters all grew) are published.
        let p = s
            .run(
                1,
                &[concat!(
                    "cpu  240 0 0 220 0 0 0 0 0 0\n",
                    "cpu0 120 0 0 180 0 0 0 0 0 0\n",
                    "cpu1 120 0 0 40 0 0 0 0 0 0\n",
                )],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu0.user", 20.0);
        assert_metric(&p, "cpu0.idle", 80.0);
        assert!(
            !p.names().any(|n| n.starts_with("cpu1.")),
            "{:?}",
            names(&p)
        );
        assert_metric(&p, "total.user", 40.0 / 60.0 * 200.0);
        // The backwards reading is the new base.
        let p = s
            .run(
                1,
                &[concat!(
                    "cpu  270 0 0 290 0 0 0 0 0 0\n",
                    "cpu0 130 0 0 240 0 0 0 0 0 0\n",
                    "cpu1 140 0 0 50 0 0 0 0 0 0\n",
                )],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu1.user", 20.0 / 30.0 * 100.0);
        assert_metric(&p, "cpu1.idle", 10.0 / 30.0 * 100.0);

        // The aggregate going backwards skips the totals only.
        let p = s
            .run(
                1,
                &[concat!(
                    "cpu  10 0 0 10 0 0 0 0 0 0\n",
                    "cpu0 140 0 0 300 0 0 0 0 0 0\n",
                    "cpu1 150 0 0 60 0 0 0 0 0 0\n",
                )],
            )
            .await
            .unwrap();
        assert!(
            !p.names().any(|n| n.starts_with("total.")),
            "{:?}",
            names(&p)
        );
        assert_metric(&p, "cpu1.user", 50.0);
        assert_metric(&p, "cpu0.idle", 60.0 / 70.0 * 100.0);
    }

    #[tokio::test]
    async fn zero_elapsed_publishes_nothing() {
        let mut s = Stepper::<Cpu>::new("cpu-zero", &["stat"], CpuConfig::default());
        s.run_fixtures(1, &["proc-a/stat"]).await;
        let p = s.run_fixtures(1, &["proc-a/stat"]).await;
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
        // Only cpu1 idle: cpu0 is skipped, cpu1 published.
        let p = s
            .run(
                1,
                &[concat!(
                    "cpu  3137 0 1952 89020 360 0 31 18 0 0\n",
                    "cpu0 1278 0 742 45209 24 0 5 6 0 0\n",
                    "cpu1 1858 0 1210 43810 335 0 26 11 0 0\n",
                )],
            )
            .await
            .unwrap();
        assert_metric(&p, "cpu1.idle", 100.0);
        assert_metric(&p, "total.idle", 200.0);
        assert!(!p.names().any(|n| n.starts_with("cpu0.")));
    }

    async fn parse_error_of(stat: &[u8]) -> String {
        test_support::parse_error_of::<Cpu>(CpuConfig::default(), "stat", stat).await
    }

    #[tokio::test]
    async fn garbage_and_truncated_files_are_parse_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "line 1: empty file"),
            (b"\n\n", "line 1: empty file"),
            // Cut short inside cpu1's line, without a newline.
            (
                b"cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 1 2 3",
                "line 3: truncated",
            ),
            // Cut short and newline-terminated: the column count gives it away.
            (
                b"cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6\n",
                "line 2: cpu0 has 6 columns but line 1 has 10",
            ),
            (
                b"cpu  1 2 3\n",
                "line 1: cpu has 3 columns, expected at least 4",
            ),
            (
                b"cpu  1 2 x 4\n",
                "line 1: cpu system: \"x\" is not a counter",
            ),
            (
                b"cpu  1 2 3 4\ncpu0 1 -2 3 4\n",
                "line 2: cpu0 nice: \"-2\"",
            ),
            (
                b"cpu  1 2 3 4\ncpu0 1 2 3 99999999999999999999999\n",
                "line 2: cpu0 idle",
            ),
            (
                b"cpu  1 2 3 4\ncpux 1 2 3 4\n",
                "line 2: \"cpux\" is neither",
            ),
            (
                b"cpu  1 2 3 4\ncpu99999999999 1 2 3 4\n",
                "line 2: bad CPU number",
            ),
            (
                b"cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu 1 2 3 4\n",
                "line 3: a second aggregate",
            ),
            (
                b"cpu  1 2 3 4\ncpu1 1 2 3 4\ncpu0 1 2 3 4\n",
                "line 3: cpu0 after cpu1",
            ),
            (
                b"cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu0 1 2 3 4\n",
                "line 3: cpu0 after cpu0",
            ),
            (b"cpu0 1 2 3 4\nintr 1 2\n", "no aggregate `cpu` line"),
            (b"intr 1 2\nctxt 5\n", "no aggregate `cpu` line"),
            (b"cpu  1 2 3 4\n\xde\xad\xbe\xef\n", "line 2: not UTF-8"),
        ];
        for (stat, expected) in cases {
            let msg = parse_error_of(stat).await;
            assert!(
                msg.contains(expected),
                "{:?}: {msg:?} does not contain {expected:?}",
                String::from_utf8_lossy(stat)
            );
        }
    }

    #[tokio::test]
    async fn a_bad_reading_keeps_the_previous_good_one() {
        let mut s = Stepper::<Cpu>::new("cpu-bad-between", &["stat"], CpuConfig::default());
        s.run(1, &["cpu  100 0 0 100\ncpu0 100 0 0 100\n"])
            .await
            .unwrap();
        assert!(s.run(1, &["cpu  garbage\n"]).await.is_err());
        assert!(s.run(1, &[""]).await.is_err());
        let p = s
            .run(1, &["cpu  130 0 0 170\ncpu0 130 0 0 170\n"])
            .await
            .unwrap();
        assert_metric(&p, "cpu0.user", 30.0);
        assert_metric(&p, "cpu0.idle", 70.0);
    }

    #[tokio::test]
    async fn missing_file_is_an_io_error() {
        assert_eq!(
            error_label_without_files::<Cpu>(CpuConfig::default()).await,
            "io"
        );
    }

    #[tokio::test]
    async fn real_proc_stat_shares_add_up() {
        let mut h = Harness::<Cpu>::new(
            CpuConfig {
                cpu_count: true,
                ..CpuConfig::default()
            },
            Environment::default(),
        )
        .unwrap();
        h.collect().await.unwrap();
        // Keep one CPU busy for a while so the shares are not all idle.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut spins = 0u64;
        while std::time::Instant::now() < until {
            spins = std::hint::black_box(spins + 1);
        }
        let p = h.collect().await.unwrap();
        let ncpus = p.get("cpu_count").expect("cpu_count") as usize;
        assert!(ncpus >= 1);
        // The states that make up the elapsed time (guest and guest_nice are
        // part of user and nice, so they are not added again).
        let core_states = &STATES[..ELAPSED_COLUMNS];
        let mut cores_seen = 0;
        for n in 0..4096 {
            if p.get(&format!("cpu{n}.idle")).is_none() {
                continue;
            }
            cores_seen += 1;
            let sum: f64 = core_states
                .iter()
                .map(|s| p.get(&format!("cpu{n}.{s}")).unwrap_or(0.0))
                .sum();
            assert!(
                (sum - 100.0).abs() <= 0.5,
                "cpu{n} sums to {sum}: {:?}",
                p.metrics
            );
        }
        assert!(cores_seen >= 1, "no per-core metric: {:?}", p.metrics);
        let total: f64 = core_states
            .iter()
            .map(|s| p.get(&format!("total.{s}")).unwrap_or(0.0))
            .sum();
        let expected = 100.0 * ncpus as f64;
        assert!(
            (total - expected).abs() <= 0.5,
            "total sums to {total}, expected {expected}: {:?}",
            p.metrics
        );
    }

    #[test]
    fn description_is_one_line() {
        assert!(!Cpu::DESCRIPTION.contains('\n'));
        assert_eq!(Cpu::KIND, "cpu");
        assert_eq!(Cpu::DEFAULT_PATH, "cpu");
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: CpuConfig = config_from::<_, bool>(vec![]).unwrap();
        assert_eq!(config, CpuConfig::default());
        assert!(config.percore && !config.normalize && !config.simple && !config.cpu_count);

        let config: CpuConfig = config_from(vec![("normalize", true), ("percore", false)]).unwrap();
        assert!(config.normalize && !config.percore && !config.simple);

        let err = config_from::<CpuConfig, _>(vec![("per_core", true)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("per_core"), "{err}");
    }

    #[test]
    fn source_option() {
        assert_eq!(CpuConfig::default().source, Source::Auto);
        assert_source_option::<Cpu>(|c| c.source);
        let err = source_error::<CpuConfig>("kstat");
        assert!(err.contains("kstat"), "{err}");
    }

    /// The `N` of the `cpuN` lines of this machine's `/proc/stat`.
    #[cfg(target_os = "linux")]
    fn online_cpus() -> Vec<u32> {
        let mut reading = Reading::default();
        let path = std::path::Path::new("/proc/stat");
        let text = std::fs::read_to_string(path).unwrap();
        parse_stat(path, &text, &mut reading).unwrap();
        reading.cpus.iter().map(|(n, _)| *n).collect()
    }

    /// Lets more than sysinfo's minimum interval between two CPU refreshes
    /// pass, keeping one core a little busy.
    #[cfg(target_os = "linux")]
    fn wait_for_sysinfo() {
        let until = std::time::Instant::now() + 2 * sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sysinfo_source_on_this_machine() {
        let cpus = online_cpus();
        let n = cpus.len() as f64;
        let sysinfo = |config: CpuConfig| CpuConfig {
            source: Source::Sysinfo,
            ..config
        };
        // The proc root is ignored: sysinfo reads the agent's own system.
        let mut h = Harness::<Cpu>::new(
            sysinfo(CpuConfig {
                cpu_count: true,
                ..CpuConfig::default()
            }),
            fixture_env("proc-a"),
        )
        .unwrap();
        let p = h.collect().await.unwrap();
        assert_eq!(names(&p), ["cpu_count"], "first run: no share yet");
        assert_metric(&p, "cpu_count", n);
        wait_for_sysinfo();
        let p = h.collect().await.unwrap();
        let mut expected: Vec<String> = cpus.iter().map(|c| format!("cpu{c}.percent")).collect();
        expected.extend(["cpu_count".to_owned(), "total.percent".to_owned()]);
        expected.sort();
        assert_eq!(names(&p), expected);
        let total = p.get("total.percent").unwrap();
        assert!((0.0..=100.0 * n).contains(&total), "{total}");
        for c in &cpus {
            let v = p.get(&format!("cpu{c}.percent")).unwrap();
            assert!((0.0..=100.0).contains(&v), "cpu{c} {v}");
        }
        // The sum of the cores' shares is the machine's share × CPUs (each
        // rounded to f32 by sysinfo).
        let sum: f64 = cpus
            .iter()
            .map(|c| p.get(&format!("cpu{c}.percent")).unwrap())
            .sum();
        assert!((sum - total).abs() <= 1.0 * n + 1.0, "{sum} vs {total}");

        let mut h = Harness::<Cpu>::new(
            sysinfo(CpuConfig {
                normalize: true,
                percore: false,
                ..CpuConfig::default()
            }),
            Environment::default(),
        )
        .unwrap();
        assert!(h.collect().await.unwrap().metrics.is_empty());
        wait_for_sysinfo();
        let p = h.collect().await.unwrap();
        assert_eq!(names(&p), ["total.percent"]);
        let total = p.get("total.percent").unwrap();
        assert!((0.0..=100.0).contains(&total), "{total}");

        let mut h = Harness::<Cpu>::new(
            sysinfo(CpuConfig {
                simple: true,
                ..CpuConfig::default()
            }),
            Environment::default(),
        )
        .unwrap();
        assert!(h.collect().await.unwrap().metrics.is_empty());
        wait_for_sysinfo();
        let p = h.collect().await.unwrap();
        assert_eq!(names(&p), ["percent"]);
        let percent = p.get("percent").unwrap();
        // A core was kept busy while waiting.
        assert!(percent > 0.0 && percent <= 100.0, "{percent}");
    }
}
