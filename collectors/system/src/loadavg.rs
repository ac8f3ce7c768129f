//! The `loadavg` collector: load averages and process counts from
//! `/proc/loadavg`.
//!
//! `/proc/loadavg` reads `0.07 0.11 0.07 1/86 4024`: the 1, 5 and 15 minute
//! load averages, the runnable scheduling entities / all of them, and the
//! last PID. Published as `01`, `05`, `15`, their `_normalized` versions
//! (divided by the number of online CPUs), `processes_running` and
//! `processes_total`.
//!
//! # Number of CPUs
//!
//! The online CPUs are counted as the `cpuN` lines of `/proc/stat` under the
//! same proc root, read on every run, so that a CPU going offline is seen
//! and a container watching its host's bind-mounted `/proc` divides by the
//! host's CPUs. When that file cannot be read or has no `cpuN` line, the
//! collector falls back to [`std::thread::available_parallelism`] as found
//! when it was built (1 if even that fails). That is the number of CPUs
//! *this process* may run on (affinity and cgroup quota included), which can
//! be fewer than the host's online CPUs.
//!
//! A file that is not in this format is a [`CollectorError::Parse`] naming
//! the file and line.
//!
//! # Other systems
//!
//! With `source = "sysinfo"` (the default off Linux) the load averages come
//! from the `sysinfo` crate (`getloadavg` on macOS and the BSDs,
//! `/proc/loadavg` on Linux) and the number of CPUs from its list of CPUs,
//! with the same fallback. `01`, `05`, `15` and their `_normalized`
//! versions are published; `processes_running` and `processes_total` are
//! not (`sysinfo` does not give them). Windows has no load average: there
//! the collector cannot be built.

use std::path::{Path, PathBuf};

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;
use sysinfo::{CpuRefreshKind, System};

use crate::procfile::{
    cut_short, parse_error, read_complete, read_text, unterminated_last_line, whole_fields,
};
use crate::source::{sysinfo_error, Reader, Source};

/// Options of the `loadavg` collector.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LoadAvgConfig {
    /// Where the load averages come from (`auto`: `/proc/loadavg` on Linux,
    /// the `sysinfo` crate elsewhere).
    pub source: Source,
}

/// The `loadavg` collector. See the [module documentation](self).
pub struct LoadAvg {
    path: PathBuf,
    stat_path: PathBuf,
    /// CPUs to divide by when `/proc/stat` gives no count.
    fallback_cpus: usize,
    buf: Vec<u8>,
    stat_buf: Vec<u8>,
    /// The `sysinfo` reader, when that is the source.
    sysinfo: Option<SysinfoLoad>,
}

impl Collector for LoadAvg {
    type Config = LoadAvgConfig;
    const KIND: &'static str = "loadavg";
    const DESCRIPTION: &'static str =
        "Load averages (1, 5, 15 min, also per CPU) and process counts, from /proc/loadavg";
    const DEFAULT_PATH: &'static str = "loadavg";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: LoadAvgConfig, env: &Environment) -> Result<Self, CollectorError> {
        let sysinfo = match config.source.reader(Self::KIND)? {
            Reader::Proc => None,
            Reader::Sysinfo => {
                // Windows has no load average: that will not change, so say
                // it now rather than on every run. Known from the target, not
                // by asking sysinfo, which would read the system: `new` only
                // checks options (the configuration loader builds every
                // instance once to validate it).
                if cfg!(windows) {
                    return Err(sysinfo_error("load averages", sysinfo::Error::Unsupported));
                }
                Some(SysinfoLoad::default())
            }
        };
        Ok(LoadAvg {
            path: env.proc_path("loadavg"),
            stat_path: env.proc_path("stat"),
            fallback_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            buf: Vec::new(),
            stat_buf: Vec::new(),
            sysinfo,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        if let Some(source) = &mut self.sysinfo {
            return source.collect(batch, self.fallback_cpus);
        }
        let text = read_complete(&self.path, &mut self.buf)?;
        let load = parse_loadavg(&self.path, text)?;
        let cpus = match read_text(&self.stat_path, &mut self.stat_buf) {
            Ok(stat) => match count_cpus(stat) {
                0 => self.fallback_cpus,
                n => n,
            },
            Err(_) => self.fallback_cpus,
        } as f64;
        batch.gauge("01", load.averages[0]);
        batch.gauge("05", load.averages[1]);
        batch.gauge("15", load.averages[2]);
        batch.gauge("01_normalized", load.averages[0] / cpus);
        batch.gauge("05_normalized", load.averages[1] / cpus);
        batch.gauge("15_normalized", load.averages[2] / cpus);
        batch.gauge("processes_running", load.running as f64);
        batch.gauge("processes_total", load.total as f64);
        Ok(())
    }
}

/// What `/proc/loadavg` says.
#[derive(Debug, PartialEq)]
struct Load {
    averages: [f64; 3],
    running: u64,
    total: u64,
}

fn parse_loadavg(path: &Path, text: &str) -> Result<Load, CollectorError> {
    let line = text.lines().next().unwrap_or_default();
    let bad = |why: String| {
        parse_error(
            path,
            1,
            format!("{why} in {line:?}; expected `load1 load5 load15 running/total lastpid`"),
        )
    };
    // Without its newline, the line is whole for what is used when its
    // fourth field (running/total) is followed by something: the fifth, the
    // last pid (not used), or a space.
    if unterminated_last_line(text) == Some(1) && whole_fields(line) < 4 {
        return Err(cut_short(
            path,
            1,
            "nothing follows its running/total processes, which may be cut short",
        ));
    }
    let mut fields = line.split_ascii_whitespace();
    let mut averages = [0.0; 3];
    for (average, minutes) in averages.iter_mut().zip(["1", "5", "15"]) {
        let field = fields
            .next()
            .ok_or_else(|| bad(format!("no {minutes} minute load average")))?;
        *average = field
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| bad(format!("bad {minutes} minute load average {field:?}")))?;
    }
    let procs = fields
        .next()
        .ok_or_else(|| bad("no running/total processes".to_owned()))?;
    let (running, total) = procs
        .split_once('/')
        .and_then(|(r, t)| Some((r.parse::<u64>().ok()?, t.parse::<u64>().ok()?)))
        .ok_or_else(|| bad(format!("bad running/total processes {procs:?}")))?;
    Ok(Load {
        averages,
        running,
        total,
    })
}

/// The `sysinfo` reading of the `loadavg` collector (see the module
/// documentation, "Other systems").
#[derive(Default)]
struct SysinfoLoad {
    /// For the number of CPUs; built on the first run (building it can
    /// fail; `new` must not).
    system: Option<System>,
}

impl SysinfoLoad {
    fn collect(&mut self, batch: &mut Batch, fallback_cpus: usize) -> Result<(), CollectorError> {
        let load = System::load_average().map_err(|e| sysinfo_error("load averages", e))?;
        let averages = [load.one, load.five, load.fifteen];
        if let Some(bad) = averages.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(CollectorError::Other(
                format!("sysinfo gives a load average of {bad}").into(),
            ));
        }
        // Listed again on every run, as /proc/stat is read again: a CPU may
        // go offline.
        let cpus = match &mut self.system {
            Some(system) => Some(system),
            none => System::new().ok().map(|s| none.insert(s)),
        }
        .map(|system| {
            system.refresh_cpu_list(CpuRefreshKind::nothing());
            system.cpus().len()
        })
        .filter(|n| *n > 0)
        .unwrap_or(fallback_cpus) as f64;
        for (i, name) in ["01", "05", "15"].into_iter().enumerate() {
            batch.gauge(name, averages[i]);
        }
        for (i, name) in ["01_normalized", "05_normalized", "15_normalized"]
            .into_iter()
            .enumerate()
        {
            batch.gauge(name, averages[i] / cpus);
        }
        Ok(())
    }
}

/// The number of `cpuN` lines in the text of `/proc/stat`.
fn count_cpus(stat: &str) -> usize {
    stat.lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        assert_metric, assert_source_option, config_from, error_label_without_files, fixture_env,
        parse_error_of, ProcDir,
    };
    use carat_collector::testing::Harness;

    #[tokio::test]
    async fn recorded_fixture() {
        // proc-b/loadavg: "0.07 0.11 0.07 2/87 4068"; proc-b/stat has cpu0 and cpu1.
        let mut h =
            Harness::<LoadAvg>::new(LoadAvgConfig::default(), fixture_env("proc-b")).unwrap();
        let p = h.collect().await.unwrap();
        assert_metric(&p, "01", 0.07);
        assert_metric(&p, "05", 0.11);
        assert_metric(&p, "15", 0.07);
        assert_metric(&p, "01_normalized", 0.07 / 2.0);
        assert_metric(&p, "05_normalized", 0.11 / 2.0);
        assert_metric(&p, "15_normalized", 0.07 / 2.0);
        assert_metric(&p, "processes_running", 2.0);
        assert_metric(&p, "processes_total", 87.0);
        assert_eq!(p.metrics.len(), 8);
    }

    #[tokio::test]
    async fn normalizes_by_cpu_lines_of_stat() {
        let dir = ProcDir::new("loadavg-cpus");
        dir.write("loadavg", "6.00 3.00 1.50 5/400 12345\n");
        // 3 online CPUs (cpu1 offline), plus the aggregate line.
        dir.write(
            "stat",
            "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu2 1 2 3 4\ncpu3 1 2 3 4\nintr 1\ncpufoo 1\n",
        );
        let mut h = Harness::<LoadAvg>::new(LoadAvgConfig::default(), dir.env()).unwrap();
        let p = h.collect().await.unwrap();
        assert_metric(&p, "01", 6.0);
        assert_metric(&p, "01_normalized", 2.0);
        assert_metric(&p, "05_normalized", 1.0);
        assert_metric(&p, "15_normalized", 0.5);
        assert_metric(&p, "processes_running", 5.0);
        assert_metric(&p, "processes_total", 400.0);

        // No stat: fall back to the parallelism available to this process.
        dir.remove("stat");
        let p = h.collect().await.unwrap();
        let n = std::thread::available_parallelism().unwrap().get() as f64;
        assert_metric(&p, "01_normalized", 6.0 / n);
        assert_metric(&p, "15_normalized", 1.5 / n);

        // A stat without cpuN lines: the same fallback.
        dir.write("stat", "cpu  1 2 3 4\nintr 1\n");
        let p = h.collect().await.unwrap();
        assert_metric(&p, "05_normalized", 3.0 / n);
    }

    #[tokio::test]
    async fn garbage_is_a_parse_error() {
        let cases: &[(&str, &str)] = &[
            ("", "line 1: empty file"),
            ("0.07 0.11\n", "no 15 minute load average"),
            ("0.07 0.11 0.07\n", "no running/total processes"),
            (
                "0.07 abc 0.07 1/86 4024\n",
                "bad 5 minute load average \"abc\"",
            ),
            (
                "nan 0.11 0.07 1/86 4024\n",
                "bad 1 minute load average \"nan\"",
            ),
            (
                "0.07 0.11 inf 1/86 4024\n",
                "bad 15 minute load average \"inf\"",
            ),
            (
                "-1 0.11 0.07 1/86 4024\n",
                "bad 1 minute load average \"-1\"",
            ),
            (
                "0.07 0.11 0.07 186 4024\n",
                "bad running/total processes \"186\"",
            ),
            (
                "0.07 0.11 0.07 1/x 4024\n",
                "bad running/total processes \"1/x\"",
            ),
            ("0.07 0.11 0.07 1/8", "line 1: truncated"),
        ];
        for (loadavg, expected) in cases {
            let msg =
                parse_error_of::<LoadAvg>(LoadAvgConfig::default(), "loadavg", loadavg.as_bytes())
                    .await;
            assert!(
                msg.contains(expected),
                "{loadavg:?}: {msg:?} lacks {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_recorded_loadavg_without_its_final_newline_is_read_whole() {
        // As seen in the field: the line has all five fields, the last pid
        // (not used) last, so the fields before it are whole.
        crate::test_support::same_without_final_newline::<LoadAvg>(
            LoadAvgConfig::default(),
            &[&[("proc-b/loadavg", "loadavg"), ("proc-b/stat", "stat")]],
        )
        .await;
    }

    #[tokio::test]
    async fn missing_file_is_an_io_error() {
        assert_eq!(
            error_label_without_files::<LoadAvg>(LoadAvgConfig::default()).await,
            "io"
        );
    }

    #[tokio::test]
    async fn real_proc() {
        let mut h =
            Harness::<LoadAvg>::new(LoadAvgConfig::default(), Environment::default()).unwrap();
        let p = h.collect().await.unwrap();
        assert_eq!(p.metrics.len(), 8, "{:?}", p.metrics);
        assert!(p.get("processes_total").unwrap() >= 1.0);
    }

    #[test]
    fn metadata_and_config() {
        assert_eq!(
            (LoadAvg::KIND, LoadAvg::DEFAULT_PATH),
            ("loadavg", "loadavg")
        );
        assert!(!LoadAvg::DESCRIPTION.contains('\n'));
        assert_eq!(
            config_from::<LoadAvgConfig, bool>(vec![]).unwrap(),
            LoadAvgConfig::default()
        );
        assert!(config_from::<LoadAvgConfig, _>(vec![("simple", true)]).is_err());
    }

    #[test]
    fn source_option() {
        assert_source_option::<LoadAvg>(|c| c.source);
        for bad in ["loadavg", ""] {
            assert!(config_from::<LoadAvgConfig, _>(vec![("source", bad)]).is_err());
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sysinfo_source_on_this_machine() {
        let config = LoadAvgConfig {
            source: Source::Sysinfo,
        };
        // The proc root is ignored: sysinfo reads the agent's own system.
        let mut h = Harness::<LoadAvg>::new(config, fixture_env("proc-b")).unwrap();
        let p = h.collect().await.unwrap();
        assert_eq!(
            p.names().collect::<Vec<_>>(),
            [
                "01",
                "01_normalized",
                "05",
                "05_normalized",
                "15",
                "15_normalized"
            ]
        );
        // The same kernel values, read a moment apart.
        let text = std::fs::read_to_string("/proc/loadavg").unwrap();
        let real: Vec<f64> = text
            .split_ascii_whitespace()
            .take(3)
            .map(|f| f.parse().unwrap())
            .collect();
        for (name, expected) in ["01", "05", "15"].into_iter().zip(&real) {
            let v = p.get(name).unwrap();
            assert!((v - expected).abs() < 0.5, "{name} {v}, /proc {expected}");
        }
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cpus = count_cpus(&stat) as f64;
        for name in ["01", "05", "15"] {
            let normalized = p.get(&format!("{name}_normalized")).unwrap();
            assert!(
                (normalized - p.get(name).unwrap() / cpus).abs() < 1e-9,
                "{name}_normalized {normalized} with {cpus} CPUs"
            );
        }
    }
}
