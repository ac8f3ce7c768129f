//! The `diskusage` collector (path `iostat`): disk I/O per device,
//! iostat-style, from `/proc/diskstats`.
//!
//! Each line of `/proc/diskstats` holds, for one block device or partition,
//! counters since boot (the kernel's `Documentation/admin-guide/iostats.rst`):
//!
//! ```text
//! major minor name  reads reads_merged read_sectors read_ms
//!                   writes writes_merged write_sectors write_ms
//!                   in_progress io_ms weighted_io_ms
//!                   [discards … (4.18+)] [flushes … (5.5+)]
//! ```
//!
//! The collector keeps its previous reading and publishes, for each device
//! whose name matches `devices` (and not `exclude_devices`), the movement
//! of those counters over the *measured* time between the two readings
//! (the batches' [`Batch::taken_at`] instants), with Diamond's names and
//! formulas. With Δ the change of a counter and `t` the elapsed seconds:
//!
//! ```text
//! reads, writes, reads_merged, writes_merged        Δ (per interval)
//! reads_<unit>, writes_<unit>                       Δsectors × sector_size, in <unit>
//! reads_milliseconds, writes_milliseconds,
//! io_milliseconds, io_milliseconds_weighted         Δ (ms per interval)
//! io_in_progress                                    the current value (a gauge)
//! reads_per_second, writes_per_second               Δreads / t, Δwrites / t
//! read_requests_merged_per_second, write_…          Δreads_merged / t, …
//! read_<unit>_per_second, write_<unit>_per_second   reads_<unit> / t, …
//! io                                                Δreads + Δwrites
//! iops                                              io / t
//! average_request_size_<unit>                       (reads_<unit> + writes_<unit>) / io
//! average_queue_length                              Δweighted_ms / (t × 1000)
//! util_percentage                                   Δio_ms / (t × 1000) × 100
//! read_await, write_await                           Δread_ms / Δreads, Δwrite_ms / Δwrites
//! await                                             (Δread_ms + Δwrite_ms) / io
//! service_time                                      Δio_ms / io
//! concurrent_io                                     (reads/s + writes/s) × service_time / 1000
//! ```
//!
//! A ratio whose divisor is zero is 0, as in Diamond. All values are gauges:
//! they combine several counters, so the agent's per-counter rate rules
//! cannot produce them; this module applies the same rules itself.
//!
//! # Missing and odd readings
//!
//! - The first run publishes nothing (there is no previous reading), and so
//!   does a device on the first run it appears in. A device that is gone is
//!   dropped. A device whose name now has another `major:minor` is a new
//!   device.
//! - A device with no I/O (`io` = 0) in the interval is not published unless
//!   `send_zero` (Diamond's rule).
//! - The counts (`reads` … `write_sectors`) are `unsigned long` in the kernel
//!   (32 or 64 bits, depending on the kernel's architecture): one that went
//!   backwards is a reset (a device re-created under the same name) or a
//!   wrap of unknown width, and the device publishes nothing that cycle; its
//!   reading becomes the base for the next one.
//! - The millisecond columns are printed as `unsigned int` by every kernel,
//!   so they wrap at 2³² (49.7 days of busy time, much sooner for the
//!   weighted time of a deep queue). A decrease there is unwrapped at 32
//!   bits when that gives less than half the range; otherwise it is a reset
//!   and the device is skipped for the cycle.
//! - Two runs at the same instant publish nothing, and the older reading
//!   stays the base.
//! - Lines with the 4 statistics of old (2.6 before 2.6.25) partitions are
//!   skipped; lines with 11 or more are read by position, so the discard
//!   (4.18+) and flush (5.5+) columns, and whatever a later kernel adds,
//!   are ignored. An empty file (a host without block devices) publishes
//!   nothing.
//! - Anything else that is not the kernel's format is a
//!   [`CollectorError::Parse`] naming the file and line; the previous good
//!   reading is kept, so the next good one gives values over the longer
//!   interval.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use carat_collector::options::{AtStart, ByteUnit, ByteUnits, Filter, Patterns};
use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

use crate::procfile::{parse_error, read_text};

/// Diamond's default `devices`, with NVMe namespaces and their partitions
/// (`nvme0n1`, `nvme0n1p2`) as in Diamond's latest release. Matched at the
/// start of the name only (Python's `re.match`), so each alternative ends
/// with `$` to match the whole name.
pub const DEFAULT_DEVICES: &str = concat!(
    "PhysicalDrive[0-9]+$",
    "|md[0-9]+$",
    "|sd[a-z]+[0-9]*$",
    "|x?vd[a-z]+[0-9]*$",
    "|disk[0-9]+$",
    "|nvme[0-9]+n[0-9]+(p[0-9]+)?$",
    "|dm-[0-9]+$",
);

/// Options of the `diskusage` collector.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskUsageConfig {
    /// A regular expression (or a list of them) that a device name must
    /// match, at its start (anchor the end with `$`), to be published.
    pub devices: Patterns<AtStart>,
    /// Regular expressions (matched at the start of the name) of devices
    /// not to publish even though they match `devices`. Empty: none.
    pub exclude_devices: Patterns<AtStart>,
    /// Bytes per sector of `/proc/diskstats`. The kernel counts in 512-byte
    /// units whatever the disk's own sector size, so leave it at 512.
    pub sector_size: u64,
    /// Publish devices that did no I/O during the interval (all zeros).
    pub send_zero: bool,
    /// The unit(s) of the byte metrics, each giving its own set of names
    /// (`reads_byte`, `reads_kilobyte`, …): a list, or a string of
    /// space-separated units. Diamond's binary units: `bit`, `byte`,
    /// `kilobit`, `kilobyte`, … up to `yottabyte`, and their short forms
    /// (`B`, `kB`, `KiB`, `MB`, `MiB`, …).
    pub byte_unit: ByteUnits,
}

impl Default for DiskUsageConfig {
    fn default() -> Self {
        DiskUsageConfig {
            // A constant, checked by a test: it compiles.
            devices: Patterns::new([DEFAULT_DEVICES]).unwrap_or_default(),
            exclude_devices: Patterns::default(),
            sector_size: 512,
            send_zero: false,
            byte_unit: ByteUnit::BYTE.into(),
        }
    }
}

/// One configured byte unit, with its metric names made once.
#[derive(Debug)]
struct Unit {
    /// What one byte is in this unit.
    per_byte: f64,
    reads: String,
    writes: String,
    read_per_second: String,
    write_per_second: String,
    average_request_size: String,
}

impl Unit {
    fn new(unit: ByteUnit) -> Unit {
        let name = unit.name();
        Unit {
            per_byte: unit.from_bytes(1.0),
            reads: format!("reads_{name}"),
            writes: format!("writes_{name}"),
            read_per_second: format!("read_{name}_per_second"),
            write_per_second: format!("write_{name}_per_second"),
            average_request_size: format!("average_request_size_{name}"),
        }
    }
}

// Positions of the statistics used, after `major minor name`.
const READS: usize = 0;
const READS_MERGED: usize = 1;
const READ_SECTORS: usize = 2;
const READ_MS: usize = 3;
const WRITES: usize = 4;
const WRITES_MERGED: usize = 5;
const WRITE_SECTORS: usize = 6;
const WRITE_MS: usize = 7;
const IN_PROGRESS: usize = 8;
const IO_MS: usize = 9;
const WEIGHTED_MS: usize = 10;
/// The statistics every kernel since 2.6 prints for a whole disk.
const STATS: usize = 11;
/// What 2.6 kernels before 2.6.25 print for a partition.
const OLD_PARTITION_STATS: usize = 4;

/// The names of the statistics, for error messages.
const STAT_NAMES: [&str; STATS] = [
    "reads",
    "reads merged",
    "sectors read",
    "ms reading",
    "writes",
    "writes merged",
    "sectors written",
    "ms writing",
    "I/Os in progress",
    "ms doing I/O",
    "weighted ms doing I/O",
];

/// How each statistic moves: a count, a 32-bit millisecond counter, or the
/// in-progress gauge.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Count,
    Millis,
    Gauge,
}

const COLUMNS: [Column; STATS] = [
    Column::Count,  // reads
    Column::Count,  // reads merged
    Column::Count,  // sectors read
    Column::Millis, // ms reading
    Column::Count,  // writes
    Column::Count,  // writes merged
    Column::Count,  // sectors written
    Column::Millis, // ms writing
    Column::Gauge,  // in progress
    Column::Millis, // ms doing I/O
    Column::Millis, // weighted ms
];

/// One device of a reading.
#[derive(Clone, Debug)]
struct Device {
    /// Where its name is in [`Reading::names`].
    name: Range<usize>,
    major: u32,
    minor: u32,
    stats: [u64; STATS],
}

/// The devices of one reading of `/proc/diskstats` that pass the filter.
/// Names are stored back to back in one string, so a reading reused from
/// one cycle to the next allocates nothing once warmed up.
#[derive(Debug, Default)]
struct Reading {
    names: String,
    devices: Vec<Device>,
}

impl Reading {
    fn clear(&mut self) {
        self.names.clear();
        self.devices.clear();
    }

    fn name(&self, device: &Device) -> &str {
        self.names.get(device.name.clone()).unwrap_or_default()
    }

    /// The device of this reading that is `name` with the same
    /// `major:minor`. Devices are listed in the same order from one reading
    /// to the next, so `hint` (its position in the other reading) is tried
    /// first.
    fn find(&self, hint: usize, name: &str, major: u32, minor: u32) -> Option<&Device> {
        let same = |d: &&Device| self.name(d) == name;
        let found = self
            .devices
            .get(hint)
            .filter(same)
            .or_else(|| self.devices.iter().find(same))?;
        (found.major == major && found.minor == minor).then_some(found)
    }
}

/// Which devices are published.
#[derive(Debug)]
struct DeviceFilter(Filter<AtStart>);

impl DeviceFilter {
    fn new(config: &DiskUsageConfig) -> Self {
        DeviceFilter(Filter::new(
            config.devices.clone(),
            config.exclude_devices.clone(),
        ))
    }

    /// As Diamond: RAM disks and loop devices never, whatever the regex.
    fn matches(&self, name: &str) -> bool {
        !name.starts_with("ram") && !name.starts_with("loop") && self.0.allows(name)
    }
}

/// The `diskusage` collector. See the [module documentation](self).
pub struct DiskUsage {
    path: PathBuf,
    filter: DeviceFilter,
    sector_size: f64,
    send_zero: bool,
    units: Vec<Unit>,
    buf: Vec<u8>,
    prev: Reading,
    cur: Reading,
    /// When `prev` was taken; `None` before the first good reading.
    prev_at: Option<Instant>,
}

impl Collector for DiskUsage {
    type Config = DiskUsageConfig;
    const KIND: &'static str = "diskusage";
    const DESCRIPTION: &'static str =
        "Disk I/O per device, iostat-style (IOPS, bytes/s, await, util %), from /proc/diskstats";
    const DEFAULT_PATH: &'static str = "iostat";

    fn new(config: DiskUsageConfig, env: &Environment) -> Result<Self, CollectorError> {
        // Only /proc has these numbers: elsewhere, say so when built.
        crate::source::linux_only(Self::KIND)?;
        if config.sector_size == 0 {
            return Err(CollectorError::option("sector_size", "must be at least 1"));
        }
        if config.byte_unit.is_empty() {
            return Err(CollectorError::option("byte_unit", "names no unit"));
        }
        // A unit named twice was dropped when the option was read.
        let units = config.byte_unit.iter().copied().map(Unit::new).collect();
        Ok(DiskUsage {
            path: env.proc_path("diskstats"),
            filter: DeviceFilter::new(&config),
            sector_size: config.sector_size as f64,
            send_zero: config.send_zero,
            units,
            buf: Vec::new(),
            prev: Reading::default(),
            cur: Reading::default(),
            prev_at: None,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let text = read_text(&self.path, &mut self.buf)?;
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(parse_error(
                &self.path,
                text.lines().count(),
                "truncated: the last line does not end with a newline",
            ));
        }
        parse_diskstats(&self.path, text, &self.filter, &mut self.cur)?;
        let at = batch.taken_at();
        if let Some(prev_at) = self.prev_at {
            match at.checked_duration_since(prev_at) {
                Some(elapsed) if !elapsed.is_zero() => self.publish(batch, elapsed.as_secs_f64()),
                // No time passed: nothing to divide by. Keep the older
                // reading as the base so the next run covers the whole time.
                _ => return Ok(()),
            }
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.prev_at = Some(at);
        Ok(())
    }
}

impl DiskUsage {
    /// Adds the metrics of every device in both `self.prev` and `self.cur`,
    /// `secs` seconds apart, to `batch`.
    fn publish(&self, batch: &mut Batch, secs: f64) {
        for (i, dev) in self.cur.devices.iter().enumerate() {
            let name = self.cur.name(dev);
            let Some(prev) = self.prev.find(i, name, dev.major, dev.minor) else {
                continue; // new since the previous reading
            };
            let Some(d) = deltas(&prev.stats, &dev.stats) else {
                continue; // reset: this reading is the next base
            };
            let io = d[READS] + d[WRITES];
            if io == 0 && !self.send_zero {
                continue;
            }
            let mut put = |metric: &str, value: f64| batch.gauge_parts(&[name, metric], value);
            let ratio = |n: f64, d: u64| if d == 0 { 0.0 } else { n / d as f64 };
            let f = |i: usize| d[i] as f64;

            let read_bytes = f(READ_SECTORS) * self.sector_size;
            let write_bytes = f(WRITE_SECTORS) * self.sector_size;

            put("reads", f(READS));
            put("reads_merged", f(READS_MERGED));
            put("reads_milliseconds", f(READ_MS));
            put("writes", f(WRITES));
            put("writes_merged", f(WRITES_MERGED));
            put("writes_milliseconds", f(WRITE_MS));
            put("io_in_progress", f(IN_PROGRESS));
            put("io_milliseconds", f(IO_MS));
            put("io_milliseconds_weighted", f(WEIGHTED_MS));
            put("read_requests_merged_per_second", f(READS_MERGED) / secs);
            put("write_requests_merged_per_second", f(WRITES_MERGED) / secs);
            let reads_per_second = f(READS) / secs;
            let writes_per_second = f(WRITES) / secs;
            put("reads_per_second", reads_per_second);
            put("writes_per_second", writes_per_second);
            for unit in &self.units {
                let read = read_bytes * unit.per_byte;
                let write = write_bytes * unit.per_byte;
                put(&unit.reads, read);
                put(&unit.writes, write);
                put(&unit.read_per_second, read / secs);
                put(&unit.write_per_second, write / secs);
                put(&unit.average_request_size, ratio(read + write, io));
            }
            put("io", io as f64);
            put("iops", io as f64 / secs);
            put("average_queue_length", f(WEIGHTED_MS) / secs / 1000.0);
            put("util_percentage", f(IO_MS) / secs / 10.0);
            put("read_await", ratio(f(READ_MS), d[READS]));
            put("write_await", ratio(f(WRITE_MS), d[WRITES]));
            put("await", ratio(f(READ_MS) + f(WRITE_MS), io));
            let service_time = ratio(f(IO_MS), io);
            put("service_time", service_time);
            put(
                "concurrent_io",
                (reads_per_second + writes_per_second) * service_time / 1000.0,
            );
        }
    }
}

/// How each statistic moved from `prev` to `cur` (the in-progress gauge:
/// its current value), or `None` when a counter went backwards and cannot
/// be a 32-bit wrap of a millisecond column.
fn deltas(prev: &[u64; STATS], cur: &[u64; STATS]) -> Option<[u64; STATS]> {
    let mut out = [0u64; STATS];
    for (i, column) in COLUMNS.iter().enumerate() {
        out[i] = match column {
            Column::Gauge => cur[i],
            Column::Count => cur[i].checked_sub(prev[i])?,
            Column::Millis => millis_delta(prev[i], cur[i])?,
        };
    }
    Some(out)
}

/// The increase of a millisecond column, which the kernel prints as a
/// 32-bit `unsigned int`: a decrease is a wrap at 2³² when that gives an
/// increase under 2³¹, else a reset (`None`).
fn millis_delta(prev: u64, cur: u64) -> Option<u64> {
    if cur >= prev {
        return Some(cur - prev);
    }
    const RANGE: u64 = 1 << 32;
    if prev >= RANGE {
        return None; // not a 32-bit value: cannot have wrapped at 32 bits
    }
    let unwrapped = RANGE - prev + cur;
    (unwrapped < RANGE / 2).then_some(unwrapped)
}

/// Parses `/proc/diskstats` (`text`, read from `path`) into `out`, keeping
/// only the devices that pass `filter`, and reusing `out`'s allocations.
fn parse_diskstats(
    path: &Path,
    text: &str,
    filter: &DeviceFilter,
    out: &mut Reading,
) -> Result<(), CollectorError> {
    out.clear();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let mut fields = line.split_ascii_whitespace();
        let Some(major) = fields.next() else {
            continue; // blank line
        };
        let number = |field: Option<&str>, what: &str| -> Result<u32, CollectorError> {
            let field = field.ok_or_else(|| parse_error(path, lineno, format!("no {what}")))?;
            field.parse::<u32>().map_err(|e| {
                parse_error(
                    path,
                    lineno,
                    format!("{what} {field:?} is not a number: {e}"),
                )
            })
        };
        let major = number(Some(major), "major number")?;
        let minor = number(fields.next(), "minor number")?;
        let name = fields
            .next()
            .ok_or_else(|| parse_error(path, lineno, "no device name"))?;
        let mut stats = [0u64; STATS];
        let mut count = 0;
        for (slot, field) in stats.iter_mut().zip(fields.by_ref()) {
            *slot = field.parse::<u64>().map_err(|e| {
                parse_error(
                    path,
                    lineno,
                    format!(
                        "{name} {}: {field:?} is not a counter: {e}",
                        STAT_NAMES[count]
                    ),
                )
            })?;
            count += 1;
        }
        if count == OLD_PARTITION_STATS && fields.next().is_none() {
            continue; // an old-style partition line: other columns
        }
        if count < STATS {
            return Err(parse_error(
                path,
                lineno,
                format!(
                    "{name} has {count} statistics, expected at least {STATS} \
                     (or {OLD_PARTITION_STATS} for an old-style partition)"
                ),
            ));
        }
        if !filter.matches(name) {
            continue;
        }
        let start = out.names.len();
        out.names.push_str(name);
        out.devices.push(Device {
            name: start..out.names.len(),
            major,
            minor,
            stats,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        assert_metric, byte_units, config_from, regexes, unit_names, ProcDir, Stepper,
    };
    use carat_collector::testing::{Harness, Published};
    use std::time::Duration;

    fn send_zero() -> DiskUsageConfig {
        DiskUsageConfig {
            send_zero: true,
            ..DiskUsageConfig::default()
        }
    }

    /// A line in the kernel's format: 11 statistics, then `extra` more
    /// columns (4 discard, 2 flush on a 5.5+ kernel), all zero.
    fn line(minor: u32, name: &str, s: [u64; STATS], extra: usize) -> String {
        let mut l = format!("   8 {minor:7} {name}");
        for v in s.iter().chain(std::iter::repeat_n(&0, extra)) {
            l.push_str(&format!(" {v}"));
        }
        l.push('\n');
        l
    }

    fn devices(p: &Published) -> Vec<&str> {
        let mut d: Vec<&str> = p
            .names()
            .filter_map(|n| n.split_once('.').map(|(dev, _)| dev))
            .collect();
        d.dedup();
        d
    }

    // Recorded from this machine's vda (Linux 6.18, 17 statistics per
    // line), with 16 MiB written and read back with O_DIRECT in between:
    //
    //  a: vda 144370 10820 9310226 171086 12876 34591 9439592 40595 0 17180 212772 …
    //  b: vda 144649 10843 9343426 171114 12934 34700 9477664 40617 0 17220 212822 …
    //
    //  Δ: reads 279, merged 23, sectors 33200, ms 28,
    //     writes 58, merged 109, sectors 38072, ms 22,
    //     in progress 0, io ms 40, weighted ms 50.
    #[tokio::test]
    async fn recorded_fixtures() {
        let dir = ProcDir::new("diskusage-recorded");
        let mut h = Harness::<DiskUsage>::new(DiskUsageConfig::default(), dir.env()).unwrap();
        dir.copy_fixture("diskusage/diskstats-a", "diskstats");
        let first = h.collect().await.unwrap();
        assert!(first.metrics.is_empty(), "{:?}", first.metrics);
        dir.copy_fixture("diskusage/diskstats-b", "diskstats");
        let p = h.collect_after(Duration::from_secs(10)).await.unwrap();

        // loop0–7 never, zram0 does not match the default regex.
        assert_eq!(devices(&p), ["vda"]);
        assert_eq!(p.metrics.len(), 27, "{:?}", p.metrics);
        assert_metric(&p, "vda.reads", 279.0);
        assert_metric(&p, "vda.reads_merged", 23.0);
        assert_metric(&p, "vda.reads_byte", 33200.0 * 512.0);
        assert_metric(&p, "vda.reads_milliseconds", 28.0);
        assert_metric(&p, "vda.writes", 58.0);
        assert_metric(&p, "vda.writes_merged", 109.0);
        assert_metric(&p, "vda.writes_byte", 38072.0 * 512.0);
        assert_metric(&p, "vda.writes_milliseconds", 22.0);
        assert_metric(&p, "vda.io_in_progress", 0.0);
        assert_metric(&p, "vda.io_milliseconds", 40.0);
        assert_metric(&p, "vda.io_milliseconds_weighted", 50.0);
        assert_metric(&p, "vda.read_requests_merged_per_second", 2.3);
        assert_metric(&p, "vda.write_requests_merged_per_second", 10.9);
        assert_metric(&p, "vda.reads_per_second", 27.9);
        assert_metric(&p, "vda.writes_per_second", 5.8);
        assert_metric(&p, "vda.read_byte_per_second", 1_699_840.0);
        assert_metric(&p, "vda.write_byte_per_second", 1_949_286.4);
        assert_metric(&p, "vda.io", 337.0);
        assert_metric(&p, "vda.iops", 33.7);
        assert_metric(
            &p,
            "vda.average_request_size_byte",
            (33200.0 + 38072.0) * 512.0 / 337.0,
        );
        assert_metric(&p, "vda.average_queue_length", 0.005); // 50 ms / 10 s
        assert_metric(&p, "vda.util_percentage", 0.4); // 40 ms of 10 s
        assert_metric(&p, "vda.read_await", 28.0 / 279.0);
        assert_metric(&p, "vda.write_await", 22.0 / 58.0);
        assert_metric(&p, "vda.await", 50.0 / 337.0);
        assert_metric(&p, "vda.service_time", 40.0 / 337.0);
        // (27.9 + 5.8) × (40 / 337) / 1000 = 40 ms / 10 s = 0.004
        assert_metric(&p, "vda.concurrent_io", 0.004);
    }

    #[tokio::test]
    async fn formulas_with_round_numbers() {
        let mut s = Stepper::<DiskUsage>::new(
            "diskusage-formulas",
            &["diskstats"],
            DiskUsageConfig::default(),
        );
        let base = [1000, 10, 8000, 3000, 500, 5, 4000, 1000, 0, 2000, 9000];
        assert!(s
            .run(0, &[&line(0, "sda", base, 6)])
            .await
            .unwrap()
            .metrics
            .is_empty());
        // Over 5 s: 100 reads taking 500 ms, 2048 sectors (1 MiB) read;
        // 300 writes taking 2100 ms, 6144 sectors (3 MiB) written;
        // 4 in flight now; busy 2000 ms; weighted 10000 ms.
        let next = [1100, 30, 10048, 3500, 800, 65, 10144, 3100, 4, 4000, 19000];
        let p = s.run(5, &[&line(0, "sda", next, 6)]).await.unwrap();
        assert_metric(&p, "sda.reads", 100.0);
        assert_metric(&p, "sda.reads_merged", 20.0);
        assert_metric(&p, "sda.reads_byte", 1_048_576.0);
        assert_metric(&p, "sda.reads_milliseconds", 500.0);
        assert_metric(&p, "sda.writes", 300.0);
        assert_metric(&p, "sda.writes_merged", 60.0);
        assert_metric(&p, "sda.writes_byte", 3_145_728.0);
        assert_metric(&p, "sda.writes_milliseconds", 2100.0);
        assert_metric(&p, "sda.io_in_progress", 4.0);
        assert_metric(&p, "sda.io_milliseconds", 2000.0);
        assert_metric(&p, "sda.io_milliseconds_weighted", 10000.0);
        assert_metric(&p, "sda.read_requests_merged_per_second", 4.0);
        assert_metric(&p, "sda.write_requests_merged_per_second", 12.0);
        assert_metric(&p, "sda.reads_per_second", 20.0);
        assert_metric(&p, "sda.writes_per_second", 60.0);
        assert_metric(&p, "sda.read_byte_per_second", 209_715.2);
        assert_metric(&p, "sda.write_byte_per_second", 629_145.6);
        assert_metric(&p, "sda.io", 400.0);
        assert_metric(&p, "sda.iops", 80.0);
        assert_metric(&p, "sda.average_request_size_byte", 10_485.76); // 4 MiB / 400
        assert_metric(&p, "sda.average_queue_length", 2.0); // 10 s of waiting in 5 s
        assert_metric(&p, "sda.util_percentage", 40.0); // busy 2 s of 5
        assert_metric(&p, "sda.read_await", 5.0); // 500 ms / 100
        assert_metric(&p, "sda.write_await", 7.0); // 2100 ms / 300
        assert_metric(&p, "sda.await", 6.5); // 2600 ms / 400
        assert_metric(&p, "sda.service_time", 5.0); // 2000 ms / 400
        assert_metric(&p, "sda.concurrent_io", 0.4); // 80/s × 5 ms
        assert_eq!(p.metrics.len(), 27);

        // The same movement over 2 s instead: per-interval values are the
        // same, per-second ones follow the measured time.
        let later = [
            1200, 50, 12096, 4000, 1100, 125, 16288, 5200, 0, 6000, 29000,
        ];
        let p = s.run(2, &[&line(0, "sda", later, 6)]).await.unwrap();
        assert_metric(&p, "sda.reads", 100.0);
        assert_metric(&p, "sda.reads_per_second", 50.0);
        assert_metric(&p, "sda.iops", 200.0);
        assert_metric(&p, "sda.util_percentage", 100.0);
        assert_metric(&p, "sda.average_queue_length", 5.0);
        assert_metric(&p, "sda.read_await", 5.0);
        assert_metric(&p, "sda.io_in_progress", 0.0);
    }

    #[tokio::test]
    async fn idle_devices_only_with_send_zero() {
        let two = |a: [u64; STATS], b: [u64; STATS]| line(0, "sda", a, 0) + &line(16, "sdb", b, 0);
        let busy0 = [10, 0, 80, 10, 0, 0, 0, 0, 0, 10, 10];
        let busy1 = [20, 0, 160, 20, 0, 0, 0, 0, 0, 20, 20];
        let idle = [5, 0, 40, 5, 5, 0, 40, 5, 0, 10, 10];

        let mut s =
            Stepper::<DiskUsage>::new("diskusage-idle", &["diskstats"], DiskUsageConfig::default());
        s.run(0, &[&two(busy0, idle)]).await.unwrap();
        let p = s.run(10, &[&two(busy1, idle)]).await.unwrap();
        assert_eq!(devices(&p), ["sda"]);
        assert_metric(&p, "sda.write_await", 0.0); // no writes: 0, not NaN

        let mut s = Stepper::<DiskUsage>::new("diskusage-send-zero", &["diskstats"], send_zero());
        s.run(0, &[&two(busy0, idle)]).await.unwrap();
        let p = s.run(10, &[&two(busy1, idle)]).await.unwrap();
        assert_eq!(devices(&p), ["sda", "sdb"]);
        for (metric, value) in p.metrics.iter().filter(|(n, _)| n.starts_with("sdb.")) {
            assert_eq!(*value, 0.0, "{metric}");
        }
        assert_eq!(p.metrics.len(), 54);
    }

    #[tokio::test]
    async fn counter_reset_skips_that_device_once() {
        let mut s = Stepper::<DiskUsage>::new(
            "diskusage-reset",
            &["diskstats"],
            DiskUsageConfig::default(),
        );
        let a = [1000, 0, 8000, 500, 1000, 0, 8000, 500, 0, 900, 1000];
        s.run(0, &[&(line(0, "sda", a, 0) + &line(16, "sdb", a, 0))])
            .await
            .unwrap();
        // sdb was re-created (counters back near zero); sda moved on.
        let a2 = [1100, 0, 8800, 600, 1100, 0, 8800, 600, 0, 1000, 1200];
        let b2 = [10, 0, 80, 5, 0, 0, 0, 0, 0, 5, 5];
        let p = s
            .run(10, &[&(line(0, "sda", a2, 0) + &line(16, "sdb", b2, 0))])
            .await
            .unwrap();
        assert_eq!(devices(&p), ["sda"]);
        assert_metric(&p, "sda.reads", 100.0);
        // The reset reading is the new base for sdb: no spike next time.
        let b3 = [60, 0, 480, 55, 0, 0, 0, 0, 0, 55, 55];
        let p = s
            .run(10, &[&(line(0, "sda", a2, 0) + &line(16, "sdb", b3, 0))])
            .await
            .unwrap();
        assert_eq!(devices(&p), ["sdb"]);
        assert_metric(&p, "sdb.reads", 50.0);
        assert_metric(&p, "sdb.read_await", 1.0);
        assert_metric(&p, "sdb.reads_per_second", 5.0);

        // A count going backwards on a 64-bit kernel near its top is still
        // a reset (the width of `unsigned long` is not known): skipped.
        let mut s = Stepper::<DiskUsage>::new(
            "diskusage-reset-top",
            &["diskstats"],
            DiskUsageConfig::default(),
        );
        let top = [u64::MAX - 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        s.run(0, &[&line(0, "sda", top, 0)]).await.unwrap();
        let wrapped = [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let p = s.run(10, &[&line(0, "sda", wrapped, 0)]).await.unwrap();
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
    }

    #[tokio::test]
    async fn millisecond_columns_wrap_at_32_bits() {
        let mut s =
            Stepper::<DiskUsage>::new("diskusage-wrap", &["diskstats"], DiskUsageConfig::default());
        let max = u64::from(u32::MAX);
        // read ms, io ms and weighted ms 100 ms short of 2³².
        let a = [1000, 0, 0, max - 99, 0, 0, 0, 0, 0, max - 99, max - 99];
        s.run(0, &[&line(0, "sda", a, 0)]).await.unwrap();
        // 100 ms to reach 2³² (printed as 0), then 400 more.
        let b = [1100, 0, 0, 400, 0, 0, 0, 0, 0, 400, 400];
        let p = s.run(10, &[&line(0, "sda", b, 0)]).await.unwrap();
        assert_metric(&p, "sda.reads_milliseconds", 500.0);
        assert_metric(&p, "sda.read_await", 5.0);
        assert_metric(&p, "sda.util_percentage", 5.0); // 500 ms of 10 s
        assert_metric(&p, "sda.io_milliseconds_weighted", 500.0);

        // A millisecond column that drops from low in the range cannot be a
        // wrap (it would mean > 2³¹ ms in one interval): a reset, skipped.
        let c = [1200, 0, 0, 10, 0, 0, 0, 0, 0, 800, 800];
        let p = s.run(10, &[&line(0, "sda", c, 0)]).await.unwrap();
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
        let d = [1300, 0, 0, 210, 0, 0, 0, 0, 0, 900, 900];
        let p = s.run(10, &[&line(0, "sda", d, 0)]).await.unwrap();
        assert_metric(&p, "sda.read_await", 2.0);
    }

    #[tokio::test]
    async fn devices_that_disappear_and_appear() {
        let mut s = Stepper::<DiskUsage>::new(
            "diskusage-hotplug",
            &["diskstats"],
            DiskUsageConfig::default(),
        );
        let r = |n: u64| [n, 0, n * 8, n, 0, 0, 0, 0, 0, n, n];
        s.run(
            0,
            &[&(line(0, "sda", r(100), 0) + &line(16, "sdb", r(100), 0))],
        )
        .await
        .unwrap();
        // sdb unplugged.
        let p = s.run(10, &[&line(0, "sda", r(200), 0)]).await.unwrap();
        assert_eq!(devices(&p), ["sda"]);
        // sdc plugged in, and listed first: nothing for it yet.
        let p = s
            .run(
                10,
                &[&(line(32, "sdc", r(7), 0) + &line(0, "sda", r(300), 0))],
            )
            .await
            .unwrap();
        assert_eq!(devices(&p), ["sda"]);
        assert_metric(&p, "sda.reads", 100.0);
        let p = s
            .run(
                10,
                &[&(line(32, "sdc", r(17), 0) + &line(0, "sda", r(400), 0))],
            )
            .await
            .unwrap();
        assert_eq!(devices(&p), ["sda", "sdc"]);
        assert_metric(&p, "sdc.reads", 10.0);
        // sdb back under another minor number: a new device, no delta
        // against the old one even though the name is the same.
        s.run(10, &[&line(48, "sdb", r(500), 0)]).await.unwrap();
        let p = s.run(10, &[&line(64, "sdb", r(600), 0)]).await.unwrap();
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
        let p = s.run(10, &[&line(64, "sdb", r(650), 0)]).await.unwrap();
        assert_metric(&p, "sdb.reads", 50.0);
    }

    #[tokio::test]
    async fn kernels_with_fewer_and_more_columns() {
        let a = [100, 0, 800, 100, 100, 0, 800, 300, 0, 200, 400];
        let b = [200, 0, 1600, 200, 300, 0, 2400, 900, 0, 400, 800];
        // 11 (before 4.18), 15 (4.18+ discard), 17 (5.5+ flush), 20 (later).
        for extra in [0, 4, 6, 9] {
            let mut s = Stepper::<DiskUsage>::new(
                "diskusage-columns",
                &["diskstats"],
                DiskUsageConfig::default(),
            );
            s.run(0, &[&line(0, "sda", a, extra)]).await.unwrap();
            let p = s.run(10, &[&line(0, "sda", b, extra)]).await.unwrap();
            assert_eq!(p.metrics.len(), 27, "{extra} extra columns");
            assert_metric(&p, "sda.reads", 100.0);
            assert_metric(&p, "sda.write_await", 3.0);
            assert_metric(&p, "sda.await", 700.0 / 300.0); // (100 + 600) ms / (100 + 200)
            assert_metric(&p, "sda.io_milliseconds_weighted", 400.0);
        }

        // Linux 2.6.0–2.6.24: partitions have 4 statistics
        // (reads, sectors read, writes, sectors written): skipped.
        let mut s =
            Stepper::<DiskUsage>::new("diskusage-old-partitions", &["diskstats"], send_zero());
        let old = |s: [u64; STATS]| line(0, "sda", s, 0) + "   8    1 sda1 54 3422 12 96\n";
        s.run(0, &[&old(a)]).await.unwrap();
        let p = s.run(10, &[&old(b)]).await.unwrap();
        assert_eq!(devices(&p), ["sda"]);
    }

    #[tokio::test]
    async fn garbage_is_a_parse_error_naming_file_and_line() {
        let good = line(0, "sda", [1; STATS], 6);
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{good}   8 1 sda1 1 2 x 4 5 6 7 8 9 10 11\n"),
                "line 2: sda1 sectors read: \"x\" is not a counter",
            ),
            (
                format!("{good}   8 1 sda1 1 2 -3 4 5 6 7 8 9 10 11\n"),
                "line 2: sda1 sectors read: \"-3\" is not a counter",
            ),
            (
                format!("   8 0 sda 1 2 3 4 5 6 7\n{good}"),
                "line 1: sda has 7 statistics, expected at least 11",
            ),
            (
                format!("{good}   8 1 sda1\n"),
                "line 2: sda1 has 0 statistics",
            ),
            (format!("{good}   8\n"), "line 2: no minor number"),
            (format!("{good}   8 1\n"), "line 2: no device name"),
            (
                format!("sda 8 0 {good}"),
                "line 1: major number \"sda\" is not a number",
            ),
            (
                "hello world\n".to_owned(),
                "line 1: major number \"hello\" is not a number",
            ),
            (format!("{good}   8 1 sda1 1 2 3"), "line 2: truncated"),
        ];
        for (diskstats, expected) in &cases {
            let dir = ProcDir::new("diskusage-garbage");
            dir.write("diskstats", diskstats);
            let mut h = Harness::<DiskUsage>::new(DiskUsageConfig::default(), dir.env()).unwrap();
            let err = h.collect().await.unwrap_err();
            assert_eq!(err.label(), "parse", "{diskstats:?}: {err}");
            let msg = err.to_string();
            let file = dir.path.join("diskstats").display().to_string();
            assert!(msg.contains(&file), "{msg}");
            assert!(
                msg.contains(expected),
                "{diskstats:?}: {msg:?} lacks {expected:?}"
            );
        }

        // Not UTF-8, and a missing file.
        let dir = ProcDir::new("diskusage-binary");
        dir.write_bytes("diskstats", b"   8 0 sda 1 2 \xff\n");
        let mut h = Harness::<DiskUsage>::new(DiskUsageConfig::default(), dir.env()).unwrap();
        let err = h.collect().await.unwrap_err();
        assert_eq!(err.label(), "parse");
        assert!(err.to_string().contains("diskstats line 1"), "{err}");
        dir.remove("diskstats");
        assert_eq!(h.collect().await.unwrap_err().label(), "io");
    }

    #[tokio::test]
    async fn a_bad_reading_keeps_the_last_good_one_as_base() {
        let mut s = Stepper::<DiskUsage>::new(
            "diskusage-bad-middle",
            &["diskstats"],
            DiskUsageConfig::default(),
        );
        let r = |n: u64| [n, 0, n * 8, n * 2, 0, 0, 0, 0, 0, n, n];
        s.run(0, &[&line(0, "sda", r(100), 0)]).await.unwrap();
        assert!(s.run(10, &["   8 0 sda 1 2 3\n"]).await.is_err());
        let p = s.run(10, &[&line(0, "sda", r(300), 0)]).await.unwrap();
        assert_metric(&p, "sda.reads", 200.0);
        assert_metric(&p, "sda.reads_per_second", 10.0); // over 20 s
    }

    #[tokio::test]
    async fn zero_elapsed_publishes_nothing_and_keeps_the_base() {
        let mut s = Stepper::<DiskUsage>::new(
            "diskusage-zero-time",
            &["diskstats"],
            DiskUsageConfig::default(),
        );
        let r = |n: u64| [n, 0, n * 8, n * 2, 0, 0, 0, 0, 0, n, n];
        s.run(0, &[&line(0, "sda", r(100), 0)]).await.unwrap();
        let p = s.run(0, &[&line(0, "sda", r(150), 0)]).await.unwrap();
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
        let p = s.run(4, &[&line(0, "sda", r(200), 0)]).await.unwrap();
        assert_metric(&p, "sda.reads", 100.0); // against the reading of 100
        assert_metric(&p, "sda.reads_per_second", 25.0);
    }

    #[tokio::test]
    async fn an_empty_file_is_a_host_without_disks() {
        let mut s = Stepper::<DiskUsage>::new("diskusage-empty", &["diskstats"], send_zero());
        assert!(s.run(0, &[""]).await.unwrap().metrics.is_empty());
        assert!(s.run(10, &[""]).await.unwrap().metrics.is_empty());
        assert!(s.run(10, &["\n"]).await.unwrap().metrics.is_empty());
    }

    #[test]
    fn default_devices_regex() {
        let f = DeviceFilter::new(&DiskUsageConfig::default());
        for yes in [
            "sda",
            "sda1",
            "sdaa12",
            "vda",
            "vdb3",
            "xvda",
            "xvdf1",
            "md0",
            "md127",
            "dm-0",
            "dm-12",
            "disk0",
            "PhysicalDrive0",
            "nvme0n1",
            "nvme0n1p2",
            "nvme12n3p10",
        ] {
            assert!(f.matches(yes), "{yes} should match");
        }
        for no in [
            "loop0",
            "ram0",
            "zram0",
            "sr0",
            "fd0",
            "nvme0",
            "nvme0c0n1",
            "nvme0n1x",
            "mmcblk0",
            "dm-",
            "md",
            "sda-1",
            "xsda",
            "nbd0",
        ] {
            assert!(!f.matches(no), "{no} should not match");
        }
    }

    #[tokio::test]
    async fn custom_regexes_and_odd_names() {
        let config = DiskUsageConfig {
            // Diamond users' configs escape the dash; loop devices are never
            // published, as in Diamond, even when the regex matches them.
            devices: regexes(&[r".*|dm\-[0-9]+$"]),
            exclude_devices: regexes(&["sd[a-z]+[0-9]+$"]),
            ..send_zero()
        };
        let mut s = Stepper::<DiskUsage>::new("diskusage-regex", &["diskstats"], config);
        let all = |n: u64| {
            [
                line(0, "sda", [n; STATS], 0),
                line(1, "sda1", [n; STATS], 0),
                line(2, "loop0", [n; STATS], 0),
                line(3, "cciss!c0d0", [n; STATS], 0),
                line(4, "mmcblk0", [n; STATS], 0),
            ]
            .concat()
        };
        s.run(0, &[&all(1)]).await.unwrap();
        let p = s.run(10, &[&all(2)]).await.unwrap();
        // Names from the file are sanitised like any outside name.
        assert_eq!(devices(&p), ["cciss_c0d0", "mmcblk0", "sda"]);

        // A regex that does not compile is refused when the option is read.
        for (option, regex) in [("devices", "sd[a-z"), ("exclude_devices", "(x")] {
            let err = config_from::<DiskUsageConfig, _>(vec![(option, regex)])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("invalid regex {regex:?}")),
                "{err}"
            );
        }
        // An empty exclude_devices excludes nothing (Diamond: falsy).
        let config: DiskUsageConfig = config_from(vec![("exclude_devices", "")]).unwrap();
        assert!(config.exclude_devices.is_empty());
        let f = DeviceFilter::new(&config);
        assert!(f.matches("sda"));
    }

    #[tokio::test]
    async fn byte_units_and_sector_size() {
        let config = DiskUsageConfig {
            byte_unit: byte_units(&["kilobyte", "bit", "MiB", "bit"]),
            sector_size: 1024,
            ..DiskUsageConfig::default()
        };
        let mut s = Stepper::<DiskUsage>::new("diskusage-units", &["diskstats"], config);
        s.run(0, &[&line(0, "sda", [0; STATS], 0)]).await.unwrap();
        // 4096 sectors of 1 KiB read, 1024 written, by 8 I/Os, over 4 s.
        let b = [4, 0, 4096, 0, 4, 0, 1024, 0, 0, 0, 0];
        let p = s.run(4, &[&line(0, "sda", b, 0)]).await.unwrap();
        assert_metric(&p, "sda.reads_kilobyte", 4096.0);
        assert_metric(&p, "sda.writes_kilobyte", 1024.0);
        assert_metric(&p, "sda.read_kilobyte_per_second", 1024.0);
        assert_metric(&p, "sda.write_kilobyte_per_second", 256.0);
        assert_metric(&p, "sda.average_request_size_kilobyte", 640.0);
        assert_metric(&p, "sda.reads_bit", 4096.0 * 1024.0 * 8.0);
        assert_metric(&p, "sda.read_bit_per_second", 1024.0 * 1024.0 * 8.0);
        assert_metric(&p, "sda.reads_MiB", 4.0);
        assert_metric(&p, "sda.average_request_size_MiB", 0.625);
        assert!(p.get("sda.reads_byte").is_none());
        // 22 unit-free metrics + 5 per unit, "bit" once.
        assert_eq!(p.metrics.len(), 22 + 3 * 5, "{:?}", p.metrics);

        for (unit, ok) in [
            ("megabyte", true),
            ("kB", true),
            ("Kilobyte", false),
            ("", false),
        ] {
            let built = config_from::<DiskUsageConfig, _>(vec![("byte_unit", unit)])
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    DiskUsage::new(c, &Environment::default()).map_err(|e| e.to_string())
                });
            assert_eq!(built.is_ok(), ok, "{unit:?}");
        }
        let config = DiskUsageConfig {
            byte_unit: ByteUnits::default(),
            ..DiskUsageConfig::default()
        };
        let err = DiskUsage::new(config, &Environment::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("byte_unit"), "{err}");
        let config = DiskUsageConfig {
            sector_size: 0,
            ..DiskUsageConfig::default()
        };
        let err = DiskUsage::new(config, &Environment::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("sector_size"), "{err}");
    }

    #[test]
    fn millis_delta_edges() {
        let max = u64::from(u32::MAX);
        assert_eq!(millis_delta(5, 5), Some(0));
        assert_eq!(millis_delta(5, 9), Some(4));
        assert_eq!(millis_delta(max, 0), Some(1));
        assert_eq!(millis_delta(max, 9), Some(10));
        assert_eq!(millis_delta(1 << 31, 0), None); // exactly half: reset
        assert_eq!(millis_delta((1 << 31) + 1, 0), Some((1 << 31) - 1));
        assert_eq!(millis_delta(1 << 40, 5), None);
    }

    #[tokio::test]
    async fn real_proc() {
        let mut h = Harness::<DiskUsage>::new(send_zero(), Environment::default()).unwrap();
        let first = h.collect().await.unwrap();
        assert!(first.metrics.is_empty());
        std::thread::sleep(Duration::from_millis(20));
        let p = h.collect().await.unwrap();
        for (name, value) in &p.metrics {
            assert!(value.is_finite() && *value >= 0.0, "{name} = {value}");
            let (device, metric) = name.split_once('.').unwrap();
            assert!(f_matches_default(device), "{name}");
            assert!(!metric.contains('.'), "{name}");
        }
        // Every device the kernel lists that matches gets its 27 metrics.
        assert_eq!(p.metrics.len() % 27, 0, "{:?}", p.metrics);
    }

    fn f_matches_default(device: &str) -> bool {
        DeviceFilter::new(&DiskUsageConfig::default()).matches(device)
    }

    #[test]
    fn metadata_and_config() {
        assert_eq!(
            (DiskUsage::KIND, DiskUsage::DEFAULT_PATH),
            ("diskusage", "iostat")
        );
        assert!(!DiskUsage::DESCRIPTION.contains('\n'));
        use serde::de::value::{Error, MapDeserializer};
        use serde::de::IntoDeserializer;

        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, Error> =
            MapDeserializer::new(Vec::new().into_iter());
        let config = DiskUsageConfig::deserialize(empty).unwrap();
        assert_eq!(config, DiskUsageConfig::default());
        assert_eq!(unit_names(&config.byte_unit), ["byte"]);
        assert_eq!(config.devices.sources(), [DEFAULT_DEVICES]);
        assert_eq!(config.sector_size, 512);
        assert!(!config.send_zero && config.exclude_devices.is_empty());

        // byte_unit as Diamond's space-separated string…
        let set: MapDeserializer<'_, _, Error> = MapDeserializer::new(
            vec![("byte_unit", "byte  kilobyte"), ("devices", "sd[a-z]$")].into_iter(),
        );
        let config = DiskUsageConfig::deserialize(set).unwrap();
        assert_eq!(unit_names(&config.byte_unit), ["byte", "kilobyte"]);
        assert_eq!(config.devices.sources(), ["sd[a-z]$"]);
        // …or as a list.
        let list: Vec<&str> = vec!["megabyte", "bit"];
        let set: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("byte_unit", list.into_deserializer())].into_iter());
        assert_eq!(
            unit_names(&DiskUsageConfig::deserialize(set).unwrap().byte_unit),
            ["megabyte", "bit"]
        );

        let typo: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("device", "sda")].into_iter());
        let err = DiskUsageConfig::deserialize(typo).unwrap_err().to_string();
        assert!(err.contains("device"), "{err}");
    }
}
