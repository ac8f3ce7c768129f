//! The `carat` collector: the agent's own health, published like any other
//! collector's metrics under `<prefix>.<host>.carat`.
//!
//! | name | unit |
//! |---|---|
//! | `collector.<instance>.runs`, `.errors`, `.timeouts`, `.panics`, `.metrics` | per second |
//! | `collector.<instance>.errors_by_kind.<kind>` | per second, from the first error of that kind on |
//! | `collector.<instance>.run_time_ms` | milliseconds, with microsecond precision, of the last run (nothing until a run has finished) |
//! | `collector.<instance>.failing` | 1 while failing, else 0 |
//! | `output.<name>.sent`, `.dropped`, `.reconnects`, `.errors` | per second |
//! | `output.<name>.buffered` | metrics waiting |
//! | `output.<name>.connected` | 1 or 0 |
//! | `process.rss_bytes` | bytes |
//! | `process.open_fds`, `process.threads` | count |
//! | `process.cpu_percent` | percent of one core |

use std::path::Path;
use std::sync::Arc;

use carat_collector::{Batch, CollectFuture, CollectorError, DynCollector};

use crate::stats::{get, AgentStats};

/// The metric path of the self-metrics collector.
pub const PATH: &str = "carat";
/// Its instance name in logs and statistics.
pub const INSTANCE: &str = "carat";

/// Publishes [`AgentStats`] and the agent process's resource use.
pub struct SelfCollector {
    stats: Arc<AgentStats>,
}

impl SelfCollector {
    /// A collector over `stats`.
    pub fn new(stats: Arc<AgentStats>) -> Self {
        SelfCollector { stats }
    }

    fn collect_now(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        for (name, s) in &self.stats.collectors() {
            let n = name.as_str();
            batch.counter_parts(&["collector", n, "runs"], get(&s.runs), None);
            batch.counter_parts(&["collector", n, "errors"], get(&s.errors), None);
            // Only the kinds seen: most instances never fail, and every
            // name costs the receiver a file (a whisper file per name).
            for (kind, count) in s.errors_by_kind() {
                batch.counter_parts(&["collector", n, "errors_by_kind", kind], count, None);
            }
            batch.counter_parts(&["collector", n, "timeouts"], get(&s.timeouts), None);
            batch.counter_parts(&["collector", n, "panics"], get(&s.panics), None);
            batch.counter_parts(&["collector", n, "metrics"], get(&s.metrics), None);
            // Before an instance's first run has finished there is no run
            // time: a 0 would read as "this collector costs nothing".
            let micros = get(&s.last_run_micros);
            if micros > 0 {
                batch.gauge_parts(&["collector", n, "run_time_ms"], micros as f64 / 1000.0);
            }
            let failing = s.failing.load(std::sync::atomic::Ordering::Relaxed);
            batch.gauge_parts(&["collector", n, "failing"], f64::from(u8::from(failing)));
        }
        for (name, s) in &self.stats.outputs() {
            let n = name.as_str();
            batch.counter_parts(&["output", n, "sent"], get(&s.sent), None);
            batch.counter_parts(&["output", n, "dropped"], get(&s.dropped), None);
            batch.counter_parts(&["output", n, "reconnects"], get(&s.reconnects), None);
            batch.counter_parts(&["output", n, "errors"], get(&s.errors), None);
            batch.gauge_parts(&["output", n, "buffered"], get(&s.buffered) as f64);
            let connected = s.connected.load(std::sync::atomic::Ordering::Relaxed);
            batch.gauge_parts(&["output", n, "connected"], f64::from(u8::from(connected)));
        }
        process_metrics(Path::new("/proc/self"), batch)
    }
}

impl DynCollector for SelfCollector {
    fn collect_boxed<'a>(&'a mut self, batch: &'a mut Batch) -> CollectFuture<'a> {
        let result = self.collect_now(batch);
        Box::pin(std::future::ready(result))
    }
}

/// RSS, threads, CPU time and open descriptors of the process at `proc_self`.
fn process_metrics(proc_self: &Path, batch: &mut Batch) -> Result<(), CollectorError> {
    let stat_path = proc_self.join("stat");
    let stat =
        std::fs::read_to_string(&stat_path).map_err(|e| CollectorError::io(&stat_path, e))?;
    let fields = ProcStat::parse(&stat).ok_or_else(|| {
        CollectorError::parse(stat_path.display().to_string(), "unexpected format")
    })?;
    batch.gauge("process.rss_bytes", (fields.rss_pages * page_size()) as f64);
    batch.gauge("process.threads", fields.threads as f64);
    // utime + stime are in clock ticks of 1/100 s (USER_HZ, fixed at 100 in
    // the kernel ABI for /proc), so their rate per second is a percentage of
    // one core.
    batch.counter("process.cpu_percent", fields.utime + fields.stime);
    let fd_dir = proc_self.join("fd");
    match std::fs::read_dir(&fd_dir) {
        Ok(entries) => batch.gauge("process.open_fds", entries.count() as f64),
        Err(e) => return Err(CollectorError::io(fd_dir, e)),
    }
    Ok(())
}

fn page_size() -> u64 {
    // 4 KiB on every architecture carat is packaged for; reading it from
    // sysconf would need unsafe FFI for a constant.
    4096
}

/// The fields of `/proc/<pid>/stat` that self-metrics use.
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    utime: u64,
    stime: u64,
    threads: u64,
    rss_pages: u64,
}

impl ProcStat {
    fn parse(text: &str) -> Option<Self> {
        // The command name is in parentheses and may hold spaces: split after
        // the last `)`. Fields after it start at field 3 (state).
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let at = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
        Some(ProcStat {
            utime: at(14)?,
            stime: at(15)?,
            threads: at(20)?,
            rss_pages: at(24)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_is_published_once_a_run_has_finished() {
        let cpu: Arc<crate::stats::CollectorStats> = Arc::default();
        let stats = Arc::new(AgentStats::new(
            vec![("cpu".to_owned(), Arc::clone(&cpu))],
            Vec::new(),
        ));
        let mut collector = SelfCollector::new(Arc::clone(&stats));
        let run_time = |c: &mut SelfCollector| {
            let mut b = Batch::new();
            c.collect_now(&mut b).unwrap();
            let found = b
                .iter()
                .find(|s| s.name == "collector.cpu.run_time_ms")
                .map(|s| s.value);
            found
        };
        assert_eq!(run_time(&mut collector), None, "no run has finished");
        cpu.last_run_micros
            .store(217, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            run_time(&mut collector),
            Some(carat_collector::SampleValue::Gauge(0.217))
        );
    }

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    77 33 0 0 20 0 5 0 100 12345678 900 18446744073709551615 0";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                utime: 77,
                stime: 33,
                threads: 5,
                rss_pages: 900
            })
        );
        assert_eq!(ProcStat::parse("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let mut b = Batch::new();
        process_metrics(Path::new("/proc/self"), &mut b).unwrap();
        let rss = b.iter().find(|s| s.name == "process.rss_bytes").unwrap();
        assert!(matches!(rss.value, carat_collector::SampleValue::Gauge(v) if v > 100_000.0));
        let fds = b.iter().find(|s| s.name == "process.open_fds").unwrap();
        assert!(matches!(fds.value, carat_collector::SampleValue::Gauge(v) if v >= 3.0));
    }
}
