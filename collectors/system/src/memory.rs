//! The `memory` collector: memory and swap sizes from `/proc/meminfo`.
//!
//! Publishes Diamond's keys ([`KEYS`]) in bytes (or the configured
//! `byte_unit`), plus `MemUsedPercentage`:
//!
//! ```text
//! MemUsedPercentage = 100 × (MemTotal − available) / MemTotal
//! ```
//!
//! where `available` is `MemAvailable`, or `MemFree + Buffers + Cached` on
//! kernels older than 3.14 that lack `MemAvailable`. It is not published
//! when `MemTotal` is zero or a term is missing from the file.
//!
//! `/proc/meminfo` gives sizes in `kB`, which are KiB (1024 bytes). Keys
//! that the file does not have are not published. With `detailed = true`
//! every line is published, its name sanitised as one path component
//! (`Active(anon)` → `Active_anon_`); lines without a unit are page counts
//! (`HugePages_Total`) and are published as they are, not converted.
//!
//! A line that is not `Name: number [kB]`, or a unit other than `kB`, is a
//! [`CollectorError::Parse`] naming the file and line.
//!
//! # Other systems
//!
//! With `source = "sysinfo"` (the default off Linux) the sizes come from the
//! `sysinfo` crate, in the same unit: `MemTotal`, `MemFree`,
//! `MemAvailable`, `SwapTotal`, `SwapFree` and `MemUsedPercentage` (from
//! `MemAvailable`). The other keys, and `detailed`, have no equivalent there
//! and are not published. On Windows `sysinfo` has no separate free memory:
//! `MemFree` is the available memory.

use std::path::{Path, PathBuf};

use carat_collector::options::ByteUnit;
use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;
use sysinfo::{MemoryRefreshKind, System};

use crate::procfile::{parse_error, read_complete};
use crate::source::{sysinfo_error, Reader, Source};

/// The keys published without `detailed`, as Diamond does.
pub const KEYS: [&str; 16] = [
    "MemAvailable",
    "MemTotal",
    "MemFree",
    "Buffers",
    "Cached",
    "Active",
    "Dirty",
    "Inactive",
    "Shmem",
    "SwapTotal",
    "SwapFree",
    "SwapCached",
    "VmallocTotal",
    "VmallocUsed",
    "VmallocChunk",
    "Committed_AS",
];

// Positions in KEYS of the terms of MemUsedPercentage.
const MEM_AVAILABLE: usize = 0;
const MEM_TOTAL: usize = 1;
const MEM_FREE: usize = 2;
const BUFFERS: usize = 3;
const CACHED: usize = 4;

/// Options of the `memory` collector.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Publish every line of `/proc/meminfo`, not only Diamond's keys.
    pub detailed: bool,
    /// The unit sizes are published in: one of Diamond's units (`byte`,
    /// `kilobyte`, `megabyte`, `gigabyte`, … and their short forms `B`,
    /// `kB`, `MB`, `MiB`, …; binary: 1024, 1024², 1024³ bytes, as Diamond).
    pub byte_unit: ByteUnit,
    /// Where the sizes come from (`auto`: `/proc/meminfo` on Linux, the
    /// `sysinfo` crate elsewhere).
    pub source: Source,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            detailed: false,
            byte_unit: ByteUnit::BYTE,
            source: Source::Auto,
        }
    }
}

/// The `memory` collector. See the [module documentation](self).
pub struct Memory {
    path: PathBuf,
    detailed: bool,
    /// What a `kB` value is multiplied by to give the configured unit.
    kb_factor: f64,
    buf: Vec<u8>,
    /// The `sysinfo` reader, when that is the source.
    sysinfo: Option<SysinfoMemory>,
}

impl Collector for Memory {
    type Config = MemoryConfig;
    const KIND: &'static str = "memory";
    const DESCRIPTION: &'static str =
        "Memory and swap sizes (total, free, available, cached, …) and percent used, from /proc/meminfo";
    const DEFAULT_PATH: &'static str = "memory";

    fn new(config: MemoryConfig, env: &Environment) -> Result<Self, CollectorError> {
        let kb_factor = config.byte_unit.from_bytes(1024.0);
        let sysinfo = match config.source.reader(Self::KIND)? {
            Reader::Proc => None,
            Reader::Sysinfo => Some(SysinfoMemory::default()),
        };
        Ok(Memory {
            path: env.proc_path("meminfo"),
            detailed: config.detailed,
            kb_factor,
            buf: Vec::new(),
            sysinfo,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        if let Some(source) = &mut self.sysinfo {
            return source.collect(batch, self.kb_factor / 1024.0);
        }
        let text = read_complete(&self.path, &mut self.buf)?;
        let mut found = [None::<u64>; KEYS.len()];
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry = parse_line(&self.path, i + 1, line)?;
            let key = KEYS.iter().position(|k| *k == entry.name);
            if let Some(k) = key {
                if !entry.kb {
                    return Err(parse_error(
                        &self.path,
                        i + 1,
                        format!("{} has no kB unit", entry.name),
                    ));
                }
                found[k] = Some(entry.value);
            }
            if key.is_some() || self.detailed {
                let value = if entry.kb {
                    entry.value as f64 * self.kb_factor
                } else {
                    entry.value as f64
                };
                batch.gauge_parts(&[entry.name], value);
            }
        }
        if let Some(percent) = used_percentage(&found) {
            batch.gauge("MemUsedPercentage", percent);
        }
        Ok(())
    }
}

/// One line of `/proc/meminfo`.
struct Entry<'a> {
    name: &'a str,
    value: u64,
    /// The value is in kB (else it is a count).
    kb: bool,
}

fn parse_line<'a>(path: &Path, lineno: usize, line: &'a str) -> Result<Entry<'a>, CollectorError> {
    let bad = |why: &str| {
        parse_error(
            path,
            lineno,
            format!("{why} in {line:?}; expected `Name: number [kB]`"),
        )
    };
    let (name, rest) = line.split_once(':').ok_or_else(|| bad("no colon"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("no name"));
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| bad("no value"))?
        .parse::<u64>()
        .map_err(|e| bad(&format!("bad value ({e})")))?;
    let kb = match fields.next() {
        None => false,
        Some("kB") => true,
        Some(unit) => return Err(bad(&format!("unknown unit {unit:?}"))),
    };
    if fields.next().is_some() {
        return Err(bad("extra fields"));
    }
    Ok(Entry { name, value, kb })
}

/// `MemUsedPercentage` from the keys found (in kB, indexed like [`KEYS`]).
fn used_percentage(found: &[Option<u64>; KEYS.len()]) -> Option<f64> {
    let total = found[MEM_TOTAL].filter(|t| *t > 0)?;
    let available = match found[MEM_AVAILABLE] {
        Some(a) => a,
        None => found[MEM_FREE]?
            .saturating_add(found[BUFFERS]?)
            .saturating_add(found[CACHED]?),
    };
    Some(100.0 * total.saturating_sub(available) as f64 / total as f64)
}

/// The `sysinfo` reading of the `memory` collector (see the module
/// documentation, "Other systems").
#[derive(Default)]
struct SysinfoMemory {
    /// Built on the first run (building it can fail; `new` must not).
    system: Option<System>,
}

impl SysinfoMemory {
    /// Publishes the sizes `sysinfo` has, in bytes × `byte_factor`.
    fn collect(&mut self, batch: &mut Batch, byte_factor: f64) -> Result<(), CollectorError> {
        let system = match &mut self.system {
            Some(system) => system,
            none => none.insert(System::new().map_err(|e| sysinfo_error("memory", e))?),
        };
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let total = system.total_memory();
        if total == 0 {
            // sysinfo reports what it could not read as 0.
            return Err(CollectorError::Other(
                "sysinfo reports a total memory of 0: it could not read the memory sizes".into(),
            ));
        }
        let available = system.available_memory();
        // The order of /proc/meminfo.
        for (name, bytes) in [
            ("MemTotal", total),
            ("MemFree", system.free_memory()),
            ("MemAvailable", available),
            ("SwapTotal", system.total_swap()),
            ("SwapFree", system.free_swap()),
        ] {
            batch.gauge(name, bytes as f64 * byte_factor);
        }
        batch.gauge(
            "MemUsedPercentage",
            100.0 * total.saturating_sub(available) as f64 / total as f64,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        assert_metric, assert_source_option, config_from, fixture_env, parse_error_of,
        source_error, ProcDir,
    };
    use carat_collector::testing::Harness;

    const KIB: f64 = 1024.0;

    fn config(detailed: bool, unit: &str) -> MemoryConfig {
        MemoryConfig {
            detailed,
            byte_unit: ByteUnit::parse(unit).unwrap(),
            ..MemoryConfig::default()
        }
    }

    #[tokio::test]
    async fn recorded_fixture_in_bytes() {
        let mut h = Harness::<Memory>::new(MemoryConfig::default(), fixture_env("proc-a")).unwrap();
        let p = h.collect().await.unwrap();
        // Values from tests/fixtures/proc-a/meminfo, in kB × 1024.
        assert_metric(&p, "MemTotal", 24684092.0 * KIB);
        assert_metric(&p, "MemFree", 24273112.0 * KIB);
        assert_metric(&p, "MemAvailable", 24326188.0 * KIB);
        assert_metric(&p, "Buffers", 3160.0 * KIB);
        assert_metric(&p, "Cached", 228868.0 * KIB);
        assert_metric(&p, "Active", 86004.0 * KIB);
        assert_metric(&p, "Inactive", 175228.0 * KIB);
        assert_metric(&p, "Dirty", 40.0 * KIB);
        assert_metric(&p, "Shmem", 8856.0 * KIB);
        assert_metric(&p, "SwapTotal", 0.0);
        assert_metric(&p, "SwapFree", 0.0);
        assert_metric(&p, "SwapCached", 0.0);
        assert_metric(&p, "VmallocTotal", 34359738367.0 * KIB);
        assert_metric(&p, "VmallocUsed", 14188.0 * KIB);
        assert_metric(&p, "VmallocChunk", 0.0);
        assert_metric(&p, "Committed_AS", 103404.0 * KIB);
        // 100 × (24684092 − 24326188) / 24684092
        assert_metric(&p, "MemUsedPercentage", 100.0 * 357904.0 / 24684092.0);
        assert_eq!(p.metrics.len(), 17, "{:?}", p.metrics);
        // Not Diamond keys: not published without `detailed`.
        assert!(p.get("Active_anon_").is_none());
        assert!(p.get("HugePages_Total").is_none());
    }

    #[tokio::test]
    async fn old_kernel_without_mem_available() {
        let dir = ProcDir::new("mem-old");
        dir.copy_fixture("meminfo-2.6.32", "meminfo");
        let mut h = Harness::<Memory>::new(config(false, "kilobyte"), dir.env()).unwrap();
        let p = h.collect().await.unwrap();
        assert!(p.get("MemAvailable").is_none());
        assert_metric(&p, "MemTotal", 1922160.0);
        assert_metric(&p, "VmallocChunk", 34359715524.0);
        // available = MemFree 180412 + Buffers 133004 + Cached 1129932 = 1443348
        assert_metric(
            &p,
            "MemUsedPercentage",
            100.0 * (1922160.0 - 1443348.0) / 1922160.0,
        );
        assert_eq!(p.metrics.len(), 16, "{:?}", p.metrics);
    }

    #[tokio::test]
    async fn units() {
        for (unit, divisor) in [
            ("byte", 1.0),
            ("kilobyte", 1024.0),
            ("megabyte", 1024.0 * 1024.0),
            ("gigabyte", 1024.0 * 1024.0 * 1024.0),
            // Every name of Diamond's units, as the other collectors.
            ("B", 1.0),
            ("MB", 1024.0 * 1024.0),
            ("terabyte", 1024f64.powi(4)),
            ("bit", 1.0 / 8.0),
            ("Mibit", 1024.0 * 1024.0 / 8.0),
        ] {
            let mut h = Harness::<Memory>::new(config(false, unit), fixture_env("proc-a")).unwrap();
            let p = h.collect().await.unwrap();
            assert_metric(&p, "MemTotal", 24684092.0 * 1024.0 / divisor);
            assert_metric(&p, "Committed_AS", 103404.0 * 1024.0 / divisor);
            // A percentage is not a size.
            assert_metric(&p, "MemUsedPercentage", 100.0 * 357904.0 / 24684092.0);
        }
    }

    #[test]
    fn unknown_unit_is_a_config_error() {
        // Refused when read: the loader reports it at the option's line.
        for unit in ["", "bytes", "kibibyte", "mb"] {
            let err = config_from::<MemoryConfig, _>(vec![("byte_unit", unit)])
                .err()
                .unwrap_or_else(|| panic!("{unit:?} accepted"))
                .to_string();
            assert!(
                err.starts_with(&format!("{unit:?} is not one of Diamond's units")),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn detailed_publishes_every_line_sanitised() {
        let mut h = Harness::<Memory>::new(config(true, "byte"), fixture_env("proc-a")).unwrap();
        let p = h.collect().await.unwrap();
        let lines =
            std::fs::read_to_string(crate::test_support::fixture_path("proc-a/meminfo")).unwrap();
        // Every line, plus MemUsedPercentage.
        assert_eq!(
            p.metrics.len(),
            lines.lines().count() + 1,
            "{:?}",
            p.metrics
        );
        assert_metric(&p, "Active_anon_", 1524.0 * KIB);
        assert_metric(&p, "Inactive_file_", 138688.0 * KIB);
        assert_metric(&p, "MemTotal", 24684092.0 * KIB);
        // Page counts are not converted.
        assert_metric(&p, "HugePages_Total", 0.0);
        assert_metric(&p, "Hugepagesize", 2048.0 * KIB);
        assert!(p.names().all(|n| n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')));

        let dir = ProcDir::new("mem-detailed-counts");
        dir.write(
            "meminfo",
            "MemTotal: 100 kB\nHugePages_Total:      7\nWeird name.x:  3 kB\n",
        );
        let mut h = Harness::<Memory>::new(config(true, "kilobyte"), dir.env()).unwrap();
        let p = h.collect().await.unwrap();
        assert_metric(&p, "HugePages_Total", 7.0);
        assert_metric(&p, "Weird_name_x", 3.0);
        assert_metric(&p, "MemTotal", 100.0);
        // No MemAvailable nor MemFree: no percentage.
        assert!(p.get("MemUsedPercentage").is_none());
        assert_eq!(p.metrics.len(), 3);
    }

    #[tokio::test]
    async fn absent_keys_are_not_published() {
        let dir = ProcDir::new("mem-partial");
        dir.write("meminfo", "MemTotal:  1000 kB\nMemAvailable:  250 kB\n");
        let mut h = Harness::<Memory>::new(MemoryConfig::default(), dir.env()).unwrap();
        let p = h.collect().await.unwrap();
        assert_eq!(
            p.names().collect::<Vec<_>>(),
            ["MemAvailable", "MemTotal", "MemUsedPercentage"]
        );
        assert_metric(&p, "MemUsedPercentage", 75.0);

        dir.write("meminfo", "MemTotal:  0 kB\nMemAvailable:  0 kB\n");
        let p = h.collect().await.unwrap();
        assert!(p.get("MemUsedPercentage").is_none());
        assert_metric(&p, "MemTotal", 0.0);

        // Old kernel missing one of the fallback terms: no percentage.
        dir.write(
            "meminfo",
            "MemTotal:  1000 kB\nMemFree:  250 kB\nCached:  10 kB\n",
        );
        let p = h.collect().await.unwrap();
        assert!(p.get("MemUsedPercentage").is_none());
    }

    #[tokio::test]
    async fn garbage_is_a_parse_error_naming_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("", "line 1: empty file"),
            ("MemTotal: 100 kB\nMemFree 100 kB\n", "line 2: no colon"),
            ("MemTotal: 100 kB\n: 100 kB\n", "line 2: no name"),
            ("MemTotal:\n", "line 1: no value"),
            ("MemTotal: lots kB\n", "line 1: bad value"),
            ("MemTotal: -5 kB\n", "line 1: bad value"),
            ("MemTotal: 100 MB\n", "line 1: unknown unit \"MB\""),
            ("MemTotal: 100 kB extra\n", "line 1: extra fields"),
            ("MemTotal: 100\n", "line 1: MemTotal has no kB unit"),
            ("MemTotal: 100 kB\nMemFree:  12", "line 2: truncated"),
        ];
        for (meminfo, expected) in cases {
            let msg =
                parse_error_of::<Memory>(MemoryConfig::default(), "meminfo", meminfo.as_bytes())
                    .await;
            assert!(
                msg.contains(expected),
                "{meminfo:?}: {msg:?} lacks {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn real_proc() {
        let mut h =
            Harness::<Memory>::new(MemoryConfig::default(), Environment::default()).unwrap();
        let p = h.collect().await.unwrap();
        let total = p.get("MemTotal").expect("MemTotal");
        assert!(total > 0.0 && total % 1024.0 == 0.0, "{total}");
        let used = p.get("MemUsedPercentage").expect("MemUsedPercentage");
        assert!((0.0..=100.0).contains(&used), "{used}");
    }

    #[test]
    fn metadata_and_config() {
        assert_eq!((Memory::KIND, Memory::DEFAULT_PATH), ("memory", "memory"));
        assert!(!Memory::DESCRIPTION.contains('\n'));
        assert_eq!(
            config_from::<MemoryConfig, &str>(vec![]).unwrap(),
            MemoryConfig::default()
        );
        assert_eq!(
            config_from::<MemoryConfig, _>(vec![("byte_unit", "megabyte")])
                .unwrap()
                .byte_unit
                .name(),
            "megabyte"
        );
        assert!(config_from::<MemoryConfig, _>(vec![("byteunit", "byte")]).is_err());
    }

    #[test]
    fn source_option() {
        // All three build on Linux.
        assert_source_option::<Memory>(|c| c.source);
        let err = source_error::<MemoryConfig>("psutil");
        assert!(err.contains("psutil"), "{err}");
    }

    /// The value of `key` in this machine's `/proc/meminfo`, in kB.
    #[cfg(target_os = "linux")]
    fn real_meminfo_kb(key: &str) -> f64 {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"));
        line.split_ascii_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sysinfo_source_on_this_machine() {
        let sysinfo = |unit: &str| MemoryConfig {
            byte_unit: ByteUnit::parse(unit).unwrap(),
            source: Source::Sysinfo,
            ..MemoryConfig::default()
        };
        // The proc root is ignored: sysinfo reads the agent's own system.
        let mut h = Harness::<Memory>::new(sysinfo("byte"), fixture_env("proc-a")).unwrap();
        let p = h.collect().await.unwrap();
        assert_eq!(
            p.names().collect::<Vec<_>>(),
            [
                "MemAvailable",
                "MemFree",
                "MemTotal",
                "MemUsedPercentage",
                "SwapFree",
                "SwapTotal"
            ]
        );
        let total = p.get("MemTotal").unwrap();
        let expected = real_meminfo_kb("MemTotal") * KIB;
        assert!(
            (total - expected).abs() <= expected * 0.01,
            "MemTotal {total}, /proc/meminfo {expected}"
        );
        let swap = p.get("SwapTotal").unwrap();
        let expected_swap = real_meminfo_kb("SwapTotal") * KIB;
        assert!(
            (swap - expected_swap).abs() <= expected_swap * 0.01,
            "SwapTotal {swap}, /proc/meminfo {expected_swap}"
        );
        let (free, available) = (p.get("MemFree").unwrap(), p.get("MemAvailable").unwrap());
        assert!(free > 0.0 && free <= total, "MemFree {free} of {total}");
        assert!(
            available > 0.0 && available <= total,
            "{available} of {total}"
        );
        assert!(p.get("SwapFree").unwrap() <= swap);
        let used = p.get("MemUsedPercentage").unwrap();
        assert!(
            (used - 100.0 * (total - available) / total).abs() < 1.0,
            "{used}"
        );

        // Other units scale the same way.
        let mut h = Harness::<Memory>::new(sysinfo("megabyte"), Environment::default()).unwrap();
        let p = h.collect().await.unwrap();
        let total_mb = p.get("MemTotal").unwrap();
        assert!(
            (total_mb - expected / (KIB * KIB)).abs() <= total_mb * 0.01,
            "{total_mb}"
        );
    }
}
