//! The `diskspace` collector: used, free and available space and inodes of
//! each mounted filesystem, from `/proc/mounts` and `statvfs(3)`.
//!
//! Metric names are Diamond's, so existing dashboards keep working:
//!
//! ```text
//! <fs>.<unit>_percentfree   100 × f_bfree / f_blocks (0 when f_blocks is 0)
//! <fs>.<unit>_used          (f_blocks − f_bfree) × f_frsize, in <unit>
//! <fs>.<unit>_free          f_bfree × f_frsize, in <unit>
//! <fs>.<unit>_avail         f_bavail × f_frsize, in <unit>
//! <fs>.inodes_percentfree   100 × f_ffree / f_files (only when f_files > 0)
//! <fs>.inodes_used          f_files − f_ffree
//! <fs>.inodes_free          f_ffree
//! <fs>.inodes_avail         f_favail
//! ```
//!
//! for each `<unit>` of `byte_unit` (default `byte`). `_free` counts the
//! blocks reserved for root, `_avail` does not; `_percentfree` is based on
//! `_free`, as in Diamond.
//!
//! # Which filesystems
//!
//! The lines of `<proc_root>/mounts` are taken in order. A mount is measured
//! when its type is in `filesystems`, its mount point is absolute and
//! matches none of the `exclude_filters` regexes (searched anywhere in the
//! mount point, as Diamond's `re.search`), and its device was not already
//! taken by an earlier line (a bind mount, the same NFS export mounted
//! twice): the first mount of a device wins. Sources that name no device
//! (`tmpfs`, `overlay`, `none`) are not de-duplicated. The kernel's octal
//! escapes (`\040` for a space, `\011`, `\012`, `\134`) are decoded.
//!
//! # Names
//!
//! `<fs>` is, as in Diamond, the filesystem's label when
//! `/dev/disk/by-label` has one for its device (`use_labels`), else the
//! mount point with `/` and `.` replaced by `_` and `\` removed: `/` is
//! `root`, `/tmp` is `tmp`, `/var/lib` is `_var_lib`. The result is then
//! sanitised as one path component, so a mount point can never add a level
//! to the metric path. Two mounts whose names collide: the first is
//! published, the second is reported as an error.
//!
//! # Hung filesystems
//!
//! `statvfs` on a stale NFS mount can block for minutes. The calls run on a
//! few short-lived worker threads while `collect` waits without blocking
//! the agent's runtime, for at most `statvfs_timeout`. A mount whose call
//! failed or did not return in time is left out of the batch; the others
//! are published, and the run then returns an error naming every mount left
//! out and why (the agent publishes a failed run's samples). A call that
//! never returns keeps its thread; while it is stuck no other call is made
//! for that mount point (reported as "still hung"), in this instance or any
//! other of the process, and at most [`MAX_THREADS`] such threads may exist
//! at once.
//!
//! # Other systems
//!
//! With `source = "sysinfo"` (the default off Linux) the filesystems and
//! their sizes come from the `sysinfo` crate's list of disks, filtered,
//! de-duplicated and named by the same rules (a type is compared in lower
//! case: Windows' `NTFS` is `ntfs`; a Windows drive `C:\` is named `C_`).
//! `sysinfo` gives a filesystem's size and the space available to
//! unprivileged users only, so, as Diamond's `psutil` fallback did:
//!
//! ```text
//! <fs>.<unit>_avail         available
//! <fs>.<unit>_free          available (the blocks reserved for root are not told apart)
//! <fs>.<unit>_used          total − available
//! <fs>.<unit>_percentfree   100 × available / total
//! ```
//!
//! and no `inodes_*` metric. The whole listing runs on one worker thread,
//! waited for at most `statvfs_timeout`; one that has not returned (a hung
//! network filesystem) is not started again until it does. On Linux,
//! `sysinfo` leaves out network filesystems (`nfs`, `cifs`) and `tmpfs`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Poll, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use carat_collector::{name, Batch, Collector, CollectorError, Environment};
use regex::Regex;
use serde::Deserialize;
use sysinfo::{DiskRefreshKind, Disks};

use crate::procfile::parse_error;
use crate::source::{sysinfo_error, Reader, Source};

/// Diamond's default `filesystems`.
pub const DEFAULT_FILESYSTEMS: [&str; 12] = [
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "glusterfs",
    "nfs",
    "nfs4",
    "ntfs",
    "hfs",
    "fat32",
    "fat16",
    "btrfs",
];

/// Diamond's default `exclude_filters`.
pub const DEFAULT_EXCLUDE_FILTERS: [&str; 1] = ["^/export/home"];

/// At most this many statvfs worker threads exist at once in the process
/// (busy or stuck in a call that never returned), whatever the number of
/// instances and mounts. Each stuck thread is a mount point that hangs.
pub const MAX_THREADS: usize = 32;

/// Worker threads started per run (fewer when there are fewer mounts). A
/// call that hangs holds one; the others go on with the remaining mounts.
const WORKERS_PER_RUN: usize = 4;

/// Stack of the worker and timer threads: they make one system call and
/// format at most an error message.
const THREAD_STACK: usize = 256 * 1024;

/// The longest `statvfs_timeout` accepted, in seconds.
const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// Where udev keeps one symlink per filesystem label.
const LABELS_DIR: &str = "/dev/disk/by-label";

/// Options of the `diskspace` collector.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpaceConfig {
    /// Filesystem types to measure, as the third column of `/proc/mounts`
    /// names them. A list, or one string of comma-separated types.
    #[serde(deserialize_with = "de::comma_list")]
    pub filesystems: Vec<String>,
    /// Regexes; a mount point in which any of them matches is not measured.
    /// A list, or one string holding one regex (empty: none).
    #[serde(deserialize_with = "de::one_or_many")]
    pub exclude_filters: Vec<String>,
    /// Units to publish sizes in (see [`unit_factor`]). A list, or one
    /// string of comma-separated units.
    #[serde(deserialize_with = "de::comma_list")]
    pub byte_unit: Vec<String>,
    /// Seconds to wait for the `statvfs` calls of one run.
    pub statvfs_timeout: f64,
    /// Name a filesystem by its label in `/dev/disk/by-label`, when it has
    /// one, instead of by its mount point (Diamond does).
    pub use_labels: bool,
    /// Where the filesystems and their sizes come from (`auto`:
    /// `/proc/mounts` and `statvfs` on Linux, the `sysinfo` crate
    /// elsewhere, which has no inode counts).
    pub source: Source,
}

impl Default for DiskSpaceConfig {
    fn default() -> Self {
        DiskSpaceConfig {
            filesystems: DEFAULT_FILESYSTEMS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            exclude_filters: DEFAULT_EXCLUDE_FILTERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            byte_unit: vec!["byte".to_owned()],
            statvfs_timeout: 2.0,
            use_labels: true,
            source: Source::Auto,
        }
    }
}

/// Deserializers for options that accept a list or a string, as Diamond's
/// configuration did.
mod de {
    use std::fmt;

    use serde::de::{Deserializer, SeqAccess, Visitor};

    struct ListVisitor {
        split_commas: bool,
    }

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings or a string")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            if self.split_commas {
                Ok(s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect())
            } else if s.trim().is_empty() {
                Ok(Vec::new())
            } else {
                Ok(vec![s.to_owned()])
            }
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element::<String>()? {
                let item = if self.split_commas {
                    item.trim().to_owned()
                } else {
                    item
                };
                if !item.is_empty() {
                    out.push(item);
                }
            }
            Ok(out)
        }
    }

    /// A list, or a string of comma-separated items (trimmed, empty ones
    /// dropped).
    pub fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(ListVisitor { split_commas: true })
    }

    /// A list, or a string that is one item (a regex may hold commas); an
    /// empty string is an empty list.
    pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(ListVisitor {
            split_commas: false,
        })
    }
}

/// What a size in bytes is multiplied by to give it in `unit`, for the unit
/// names of Diamond's binary convertor: `bit`, `kilobit`, … `yottabit` and
/// `byte`, `kilobyte`, … `yottabyte`, with its short forms (`B`, `kB`, `KiB`,
/// `MB`, `MiB`, `Mbyte`, `GB`, `Gbit`, …). Multiples are powers of 1024.
pub fn unit_factor(unit: &str) -> Option<f64> {
    let (bits, power) = match unit {
        "bit" | "b" => (true, 0),
        "kilobit" | "kbit" | "Kibit" => (true, 1),
        "megabit" | "Mbit" | "Mibit" => (true, 2),
        "gigabit" | "Gbit" | "Gibit" => (true, 3),
        "terabit" | "Tbit" | "Tibit" => (true, 4),
        "petabit" | "Pbit" | "Pibit" => (true, 5),
        "exabit" | "Ebit" | "Eibit" => (true, 6),
        "zettabit" | "Zbit" | "Zibit" => (true, 7),
        "yottabit" | "Ybit" | "Yibit" => (true, 8),
        "byte" | "B" => (false, 0),
        "kilobyte" | "kB" | "KiB" => (false, 1),
        "megabyte" | "MB" | "MiB" | "Mbyte" => (false, 2),
        "gigabyte" | "GB" | "GiB" => (false, 3),
        "terabyte" | "TB" | "TiB" => (false, 4),
        "petabyte" | "PB" | "PiB" => (false, 5),
        "exabyte" | "EB" | "EiB" => (false, 6),
        "zettabyte" | "ZB" | "ZiB" => (false, 7),
        "yottabyte" | "YB" | "YiB" => (false, 8),
        _ => return None,
    };
    let per_byte = if bits { 8.0 } else { 1.0 };
    Some(per_byte / 1024f64.powi(power))
}

/// The metric names of one configured unit, built once.
#[derive(Debug)]
struct Unit {
    percentfree: String,
    used: String,
    free: String,
    avail: String,
    factor: f64,
}

impl Unit {
    fn new(unit: &str) -> Result<Unit, CollectorError> {
        let factor = unit_factor(unit).ok_or_else(|| {
            CollectorError::option(
                "byte_unit",
                format!(
                    "{unit:?} is not a unit: use bit, kilobit, megabit, gigabit, terabit, \
                     petabit, byte, kilobyte, megabyte, gigabyte, terabyte or petabyte"
                ),
            )
        })?;
        Ok(Unit {
            percentfree: format!("{unit}_percentfree"),
            used: format!("{unit}_used"),
            free: format!("{unit}_free"),
            avail: format!("{unit}_avail"),
            factor,
        })
    }
}

/// The fields of a `statvfs` result the collector uses. `frsize` is the
/// unit of the block counts (the fragment size, or the block size when the
/// filesystem reports no fragment size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FsStats {
    frsize: u64,
    blocks: u64,
    bfree: u64,
    bavail: u64,
    files: u64,
    ffree: u64,
    favail: u64,
}

/// Adds the metrics of one filesystem, named `fs` (one path component), to
/// `batch`.
fn publish_stats(batch: &mut Batch, fs: &str, s: &FsStats, units: &[Unit]) {
    let bytes = |blocks: u64| (u128::from(blocks) * u128::from(s.frsize)) as f64;
    let used = bytes(s.blocks.saturating_sub(s.bfree));
    let free = bytes(s.bfree);
    let avail = bytes(s.bavail);
    // Diamond: free / (free + used) blocks, i.e. free / total; 0 when the
    // filesystem reports no block at all (some pseudo filesystems).
    let percentfree = if s.blocks == 0 {
        0.0
    } else {
        100.0 * s.bfree as f64 / s.blocks as f64
    };
    for u in units {
        batch.gauge_parts(&[fs, &u.percentfree], percentfree);
        batch.gauge_parts(&[fs, &u.used], used * u.factor);
        batch.gauge_parts(&[fs, &u.free], free * u.factor);
        batch.gauge_parts(&[fs, &u.avail], avail * u.factor);
    }
    if s.files > 0 {
        batch.gauge_parts(
            &[fs, "inodes_percentfree"],
            100.0 * s.ffree as f64 / s.files as f64,
        );
    }
    batch.gauge_parts(&[fs, "inodes_used"], s.files.saturating_sub(s.ffree) as f64);
    batch.gauge_parts(&[fs, "inodes_free"], s.ffree as f64);
    batch.gauge_parts(&[fs, "inodes_avail"], s.favail as f64);
}

// ---------------------------------------------------------------------------
// /proc/mounts

/// One line of `/proc/mounts`, its fields decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MountLine<'a> {
    device: Cow<'a, [u8]>,
    mount_point: Cow<'a, [u8]>,
    fs_type: Cow<'a, [u8]>,
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash, …): a backslash followed by three octal
/// digits of a value below 256. Any other backslash is kept as it is.
fn decode_octal(field: &[u8]) -> Cow<'_, [u8]> {
    if !field.contains(&b'\\') {
        return Cow::Borrowed(field);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if let [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] = field[i..] {
            out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `bytes`, lossily decoded, with control
/// characters escaped: safe to put in an error message.
fn shown(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(max));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `text`, the content of `path` (`/proc/mounts`), into `out`.
///
/// The kernel writes six fields separated by single spaces: device, mount
/// point, type, options, and two zeros (dump and pass, from fstab's
/// format). Anything else is a parse error naming the file and line, as is
/// an empty file. A last line without its newline is read whole when it has
/// its six fields (the last two, not used, after the ones used), and is cut
/// short otherwise. Blank lines are ignored.
fn parse_mounts<'a>(
    path: &Path,
    text: &'a [u8],
    out: &mut Vec<MountLine<'a>>,
) -> Result<(), CollectorError> {
    out.clear();
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(parse_error(path, 1, "empty file"));
    }
    let lines = text.split(|&b| b == b'\n');
    let terminated = text.ends_with(b"\n");
    let count = text.iter().filter(|&&b| b == b'\n').count() + usize::from(!terminated);
    for (i, line) in lines.take(count).enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |why: &str| parse_error(path, i + 1, format!("{why}: {:?}", shown(line, 120)));
        let mut fields = line.split(|&b| b == b' ');
        let (
            Some(device),
            Some(mount_point),
            Some(fs_type),
            Some(_options),
            Some(dump),
            Some(pass),
            None,
        ) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        )
        else {
            if !terminated && i + 1 == count {
                return Err(crate::procfile::cut_short(
                    path,
                    i + 1,
                    "it has fewer than the 6 fields of a mount line",
                ));
            }
            return Err(bad(
                "expected 6 fields separated by single spaces (device, mount point, type, options, dump, pass)",
            ));
        };
        let number = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
        if !number(dump) || !number(pass) {
            return Err(bad("the last two fields (dump, pass) are not numbers"));
        }
        if mount_point.is_empty() || fs_type.is_empty() {
            return Err(bad("empty mount point or type"));
        }
        out.push(MountLine {
            device: decode_octal(device),
            mount_point: decode_octal(mount_point),
            fs_type: decode_octal(fs_type),
        });
    }
    Ok(())
}

/// Which mounts to measure.
#[derive(Debug)]
struct MountFilter {
    filesystems: Vec<String>,
    exclude: Vec<Regex>,
}

/// A mount to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    /// The mount point, exactly as the kernel gave it (not always UTF-8).
    path: PathBuf,
    /// The mount point for messages (lossy, control characters escaped).
    shown: String,
    /// Its metric path component, sanitised.
    name: String,
    /// A network filesystem (its source is `host:/path` or `//host/share`):
    /// measured after the local ones, which are unlikely to hang.
    remote: bool,
}

/// Diamond's name for a mount point: `/` and `.` become `_`, `\` is removed;
/// `/` is `root` and `/tmp` is `tmp`.
fn diamond_name(mount_point: &str) -> String {
    let name: String = mount_point
        .chars()
        .filter(|&c| c != '\\')
        .map(|c| if c == '/' || c == '.' { '_' } else { c })
        .collect();
    match name.as_str() {
        "_" => "root".to_owned(),
        "_tmp" => "tmp".to_owned(),
        _ => name,
    }
}

/// True for a mount point that can be measured: an absolute path, or a
/// Windows drive (`C:\`) as `sysinfo` lists it.
fn is_mount_point(path: &[u8]) -> bool {
    match path {
        [b'/', ..] => true,
        [drive, b':', b'\\' | b'/', ..] => drive.is_ascii_alphabetic(),
        _ => false,
    }
}

/// True for sources that name a device, a network export or a share, whose
/// second mount is the same filesystem again. `tmpfs`, `overlay`, `none`
/// and the like are a new filesystem at each mount.
fn names_a_device(device: &[u8]) -> bool {
    device.first() == Some(&b'/') || device.contains(&b':')
}

fn is_remote(device: &[u8]) -> bool {
    device.starts_with(b"//") || (device.first() != Some(&b'/') && device.contains(&b':'))
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Chooses the mounts to measure from `lines`, in order, into `out`:
/// filtered by type and exclude regexes, de-duplicated by device (the first
/// mount wins), and named by `label_of(device)` or else Diamond's name of
/// the mount point. A mount whose name was already taken is left out and
/// described in `problems`.
fn select_mounts(
    lines: &[MountLine<'_>],
    filter: &MountFilter,
    label_of: &dyn Fn(&[u8]) -> Option<String>,
    out: &mut Vec<Mount>,
    problems: &mut Vec<String>,
) {
    out.clear();
    let mut devices: HashSet<&[u8]> = HashSet::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for line in lines {
        let fs_type = &*line.fs_type;
        if !filter.filesystems.iter().any(|t| t.as_bytes() == fs_type) {
            continue;
        }
        let mount_point = &*line.mount_point;
        if !is_mount_point(mount_point) {
            continue;
        }
        let text = String::from_utf8_lossy(mount_point);
        if filter.exclude.iter().any(|re| re.is_match(&text)) {
            continue;
        }
        let device = &*line.device;
        if names_a_device(device) && !devices.insert(device) {
            continue;
        }
        let raw_name = label_of(device).unwrap_or_else(|| diamond_name(&text));
        let name = name::component(&raw_name);
        let shown = shown(mount_point, 200);
        if let Some(&first) = names.get(&name) {
            problems.push(format!(
                "{shown}: not measured: its metric name {name:?} is already used by {} \
                 (exclude one of them with exclude_filters)",
                out[first].shown
            ));
            continue;
        }
        names.insert(name.clone(), out.len());
        out.push(Mount {
            path: path_from_bytes(mount_point),
            shown,
            name,
            remote: is_remote(device),
        });
    }
}

/// Decodes udev's `\xHH` escapes in a `/dev/disk/by-label` entry name
/// (`my\x20disk` → `my disk`).
fn decode_udev(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let [b'\\', b'x', h, l, ..] = bytes[i..] {
            if let (Some(h), Some(l)) = ((h as char).to_digit(16), (l as char).to_digit(16)) {
                out.push((h * 16 + l) as u8);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Filesystem labels by device, from udev's `/dev/disk/by-label` symlinks.
#[derive(Debug, Default)]
struct Labels {
    by_device: HashMap<PathBuf, String>,
}

impl Labels {
    /// Reads `dir`. A missing or unreadable directory, or a dangling link,
    /// gives no label (Diamond ignores them too).
    fn read(dir: &Path) -> Labels {
        let mut by_device = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if let Ok(device) = std::fs::canonicalize(entry.path()) {
                    let label = decode_udev(&entry.file_name().to_string_lossy());
                    by_device.insert(device, label);
                }
            }
        }
        Labels { by_device }
    }

    /// The label of the filesystem on `device` (a `/proc/mounts` source),
    /// following symlinks such as `/dev/mapper/vg-root` or
    /// `/dev/disk/by-uuid/…`. Only local paths are resolved: not network
    /// sources, nor `//host/share`.
    fn of(&self, device: &[u8]) -> Option<String> {
        if self.by_device.is_empty() || device.first() != Some(&b'/') || device.starts_with(b"//") {
            return None;
        }
        let path = path_from_bytes(device);
        if let Some(label) = self.by_device.get(&path) {
            return Some(label.clone());
        }
        let real = std::fs::canonicalize(&path).ok()?;
        self.by_device.get(&real).cloned()
    }
}

// ---------------------------------------------------------------------------
// statvfs on worker threads

type StatFn = dyn Fn(&Path) -> io::Result<FsStats> + Send + Sync;

/// The real `statvfs(3)`.
#[cfg(unix)]
fn statvfs(path: &Path) -> io::Result<FsStats> {
    let s = rustix::fs::statvfs(path)?;
    Ok(FsStats {
        frsize: if s.f_frsize != 0 {
            s.f_frsize
        } else {
            s.f_bsize
        },
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        files: s.f_files,
        ffree: s.f_ffree,
        favail: s.f_favail,
    })
}

#[cfg(not(unix))]
fn statvfs(_path: &Path) -> io::Result<FsStats> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "statvfs is not available on this platform",
    ))
}

/// Runs `statvfs` calls on worker threads and remembers, process-wide, the
/// mount points whose call has not returned yet.
///
/// The real prober is one per process ([`Prober::shared`]), so that the
/// record of hung calls survives the agent rebuilding a collector (after a
/// run it abandoned) and is shared by every `diskspace` instance.
struct Prober {
    stat: Box<StatFn>,
    max_threads: usize,
    state: Mutex<ProberState>,
}

#[derive(Debug, Default)]
struct ProberState {
    /// Mount points with a call under way, and when it started.
    busy: HashMap<PathBuf, Instant>,
    /// Worker threads alive.
    threads: usize,
}

/// Locks `m`, going on when a thread panicked while holding it: every
/// update of the state guarded here is a single assignment or insertion,
/// never left half done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where one mount stands in a run.
#[derive(Debug)]
enum Slot {
    /// No worker took it yet.
    Waiting,
    /// A worker is in its `statvfs` call.
    Started,
    /// The call returned.
    Done(io::Result<FsStats>),
    /// A call from an earlier run, started then, has not returned.
    Hung(Instant),
    /// No worker could be started for it.
    NoThread(String),
}

/// One run's shared state, between the collector and its threads.
struct Round {
    /// One slot per mount. Taken by the collector when it stops waiting;
    /// a worker returning later finds it empty and drops its result.
    slots: Vec<Slot>,
    /// The next entry of the queue to take.
    next: usize,
    /// Slots that reached `Done` or `Hung`.
    settled: usize,
    /// Workers of this run still alive.
    workers: usize,
    /// The deadline passed (or the collector stopped waiting).
    expired: bool,
    waker: Option<Waker>,
    timer: Option<Thread>,
}

impl Round {
    fn finished(&self) -> bool {
        self.expired || self.workers == 0 || self.settled >= self.slots.len()
    }

    /// Whom to wake now that the round may be finished; called with the
    /// lock held, the waking done after it is released.
    fn whom_to_notify(&mut self) -> (Option<Waker>, Option<Thread>) {
        if self.finished() {
            (self.waker.take(), self.timer.clone())
        } else {
            (None, None)
        }
    }
}

fn notify((waker, timer): (Option<Waker>, Option<Thread>)) {
    if let Some(w) = waker {
        w.wake();
    }
    if let Some(t) = timer {
        t.unpark();
    }
}

/// Releases a worker's place in the prober and in its round when the worker
/// ends, however it ends.
struct WorkerGuard {
    prober: Arc<Prober>,
    round: Arc<Mutex<Round>>,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        {
            let mut s = lock(&self.prober.state);
            s.threads = s.threads.saturating_sub(1);
        }
        let who = {
            let mut r = lock(&self.round);
            r.workers = r.workers.saturating_sub(1);
            r.whom_to_notify()
        };
        notify(who);
    }
}

impl Prober {
    fn new(stat: Box<StatFn>, max_threads: usize) -> Prober {
        Prober {
            stat,
            max_threads,
            state: Mutex::new(ProberState::default()),
        }
    }

    /// The process's prober of the real `statvfs`.
    fn shared() -> Arc<Prober> {
        static SHARED: OnceLock<Arc<Prober>> = OnceLock::new();
        Arc::clone(SHARED.get_or_init(|| Arc::new(Prober::new(Box::new(statvfs), MAX_THREADS))))
    }

    /// Worker threads alive.
    #[cfg(test)]
    fn threads(&self) -> usize {
        lock(&self.state).threads
    }

    /// Calls `statvfs` on `path` unless a call on it is still under way.
    fn call(&self, path: &Path) -> Slot {
        {
            let mut s = lock(&self.state);
            if let Some(since) = s.busy.get(path) {
                return Slot::Hung(*since);
            }
            s.busy.insert(path.to_owned(), Instant::now());
        }
        let result = catch_unwind(AssertUnwindSafe(|| (self.stat)(path)))
            .unwrap_or_else(|_| Err(io::Error::other("the statvfs call panicked")));
        lock(&self.state).busy.remove(path);
        Slot::Done(result)
    }

    /// Measures `paths` on worker threads, waiting at most `timeout` from
    /// now without blocking the caller's thread. The slots are in the order
    /// of `paths`; `order` is the order to take them in.
    async fn measure(
        self: &Arc<Self>,
        paths: Vec<PathBuf>,
        order: Vec<usize>,
        timeout: Duration,
    ) -> Vec<Slot> {
        let n = paths.len();
        if n == 0 {
            return Vec::new();
        }
        let workers = {
            let mut s = lock(&self.state);
            let k = WORKERS_PER_RUN
                .min(n)
                .min(self.max_threads.saturating_sub(s.threads));
            s.threads += k;
            k
        };
        if workers == 0 {
            let s = lock(&self.state);
            let why = format!(
                "not measured: all {} statvfs threads allowed are busy or stuck in calls that have not returned",
                s.threads
            );
            return paths
                .iter()
                .map(|p| match s.busy.get(p) {
                    Some(since) => Slot::Hung(*since),
                    None => Slot::NoThread(why.clone()),
                })
                .collect();
        }
        let round = Arc::new(Mutex::new(Round {
            slots: (0..n).map(|_| Slot::Waiting).collect(),
            next: 0,
            settled: 0,
            workers,
            expired: false,
            waker: None,
            timer: None,
        }));
        let deadline = Instant::now() + timeout;
        let timer = {
            let round = Arc::clone(&round);
            thread::Builder::new()
                .name("carat-diskspace-timer".into())
                .stack_size(THREAD_STACK)
                .spawn(move || run_timer(&round, deadline))
        };
        match timer {
            Ok(handle) => lock(&round).timer = Some(handle.thread().clone()),
            Err(e) => {
                let mut s = lock(&self.state);
                s.threads = s.threads.saturating_sub(workers);
                let why = format!("not measured: cannot start a thread: {e}");
                return (0..n).map(|_| Slot::NoThread(why.clone())).collect();
            }
        }
        let queue: Arc<[(usize, PathBuf)]> =
            order.into_iter().map(|i| (i, paths[i].clone())).collect();
        let mut spawn_error = None;
        for _ in 0..workers {
            let guard = WorkerGuard {
                prober: Arc::clone(self),
                round: Arc::clone(&round),
            };
            let queue = Arc::clone(&queue);
            let spawned = thread::Builder::new()
                .name("carat-statvfs".into())
                .stack_size(THREAD_STACK)
                .spawn(move || run_worker(guard, &queue));
            // On failure the closure, and the guard in it, is dropped:
            // the worker's place is released.
            if let Err(e) = spawned {
                spawn_error = Some(e);
            }
        }

        std::future::poll_fn(|cx| {
            let mut r = lock(&round);
            if r.finished() {
                Poll::Ready(())
            } else {
                r.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;

        let (mut slots, timer) = {
            let mut r = lock(&round);
            // Workers still running take no new mount.
            r.expired = true;
            (std::mem::take(&mut r.slots), r.timer.clone())
        };
        if let Some(t) = timer {
            t.unpark();
        }
        if let Some(e) = spawn_error {
            for slot in &mut slots {
                if matches!(slot, Slot::Waiting) {
                    *slot = Slot::NoThread(format!("not measured: cannot start a thread: {e}"));
                }
            }
        }
        slots
    }
}

/// A worker: takes mounts from the queue until it is empty or the round
/// expired.
fn run_worker(guard: WorkerGuard, queue: &[(usize, PathBuf)]) {
    loop {
        let (slot, path) = {
            let mut r = lock(&guard.round);
            if r.expired || r.next >= queue.len() {
                break;
            }
            let (slot, path) = &queue[r.next];
            r.next += 1;
            if let Some(s) = r.slots.get_mut(*slot) {
                *s = Slot::Started;
            }
            (*slot, path)
        };
        let outcome = guard.prober.call(path);
        let who = {
            let mut r = lock(&guard.round);
            if let Some(s) = r.slots.get_mut(slot) {
                *s = outcome;
            }
            r.settled += 1;
            r.whom_to_notify()
        };
        notify(who);
    }
    drop(guard);
}

/// Marks the round expired at `deadline`, unless it finished before (then
/// it is unparked and returns at once).
fn run_timer(round: &Mutex<Round>, deadline: Instant) {
    loop {
        let now = Instant::now();
        {
            let mut r = lock(round);
            if r.finished() {
                return;
            }
            if now >= deadline {
                r.expired = true;
                let waker = r.waker.take();
                drop(r);
                if let Some(w) = waker {
                    w.wake();
                }
                return;
            }
        }
        thread::park_timeout(deadline - now);
    }
}

/// The mounts left out of one run and why, returned as the run's error
/// after the others were published.
#[derive(Debug)]
struct NotMeasured {
    of: usize,
    problems: Vec<String>,
}

impl fmt::Display for NotMeasured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} filesystems not published: {}",
            self.problems.len(),
            self.of,
            self.problems.join("; ")
        )
    }
}

impl std::error::Error for NotMeasured {}

// ---------------------------------------------------------------------------
// The collector

/// The `diskspace` collector. See the [module documentation](self).
pub struct DiskSpace {
    mounts_path: PathBuf,
    /// `/dev/disk/by-label`, or `None` with `use_labels = false`.
    labels_dir: Option<PathBuf>,
    filter: MountFilter,
    units: Vec<Unit>,
    timeout: Duration,
    prober: Arc<Prober>,
    /// The bytes of the mounts file, kept from one run to the next.
    buf: Vec<u8>,
    /// The mounts of the current run.
    mounts: Vec<Mount>,
    /// True when `sysinfo` is the source.
    sysinfo: bool,
}

impl Collector for DiskSpace {
    type Config = DiskSpaceConfig;
    const KIND: &'static str = "diskspace";
    const DESCRIPTION: &'static str =
        "Used, free and available space and inodes per mounted filesystem, from /proc/mounts and statvfs";
    const DEFAULT_PATH: &'static str = "diskspace";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: DiskSpaceConfig, env: &Environment) -> Result<Self, CollectorError> {
        if config.filesystems.is_empty() {
            return Err(CollectorError::option(
                "filesystems",
                "is empty: no filesystem would ever be measured",
            ));
        }
        let exclude = config
            .exclude_filters
            .iter()
            .map(|f| {
                Regex::new(f).map_err(|e| {
                    CollectorError::option("exclude_filters", format!("{f:?} is not a regex: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut units: Vec<Unit> = Vec::with_capacity(config.byte_unit.len());
        for (i, unit) in config.byte_unit.iter().enumerate() {
            // The same unit twice would publish every metric twice.
            if !config.byte_unit[..i].contains(unit) {
                units.push(Unit::new(unit)?);
            }
        }
        let secs = config.statvfs_timeout;
        if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
            return Err(CollectorError::option(
                "statvfs_timeout",
                format!("{secs} is not a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}"),
            ));
        }
        let sysinfo = config.source.reader(Self::KIND)? == Reader::Sysinfo;
        Ok(DiskSpace {
            sysinfo,
            mounts_path: env.proc_path("mounts"),
            labels_dir: config.use_labels.then(|| PathBuf::from(LABELS_DIR)),
            filter: MountFilter {
                filesystems: config.filesystems,
                exclude,
            },
            units,
            timeout: Duration::from_secs_f64(secs),
            prober: Prober::shared(),
            buf: Vec::new(),
            mounts: Vec::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        if self.sysinfo {
            return self.collect_sysinfo(batch).await;
        }
        let mut problems = self.plan()?;
        let clashes = problems.len();
        let paths = self.mounts.iter().map(|m| m.path.clone()).collect();
        // Local filesystems first: a dead NFS server then cannot keep them
        // waiting for a worker.
        let mut order: Vec<usize> = (0..self.mounts.len()).collect();
        order.sort_by_key(|&i| self.mounts[i].remote);
        let slots = self.prober.measure(paths, order, self.timeout).await;
        for (mount, slot) in self.mounts.iter().zip(slots) {
            let why = match slot {
                Slot::Done(Ok(stats)) => {
                    publish_stats(batch, &mount.name, &stats, &self.units);
                    continue;
                }
                Slot::Done(Err(e)) => e.to_string(),
                Slot::Started => format!("timed out after {:?}", self.timeout),
                Slot::Waiting => format!(
                    "not measured: no worker was free within {:?} (other mounts were slow)",
                    self.timeout
                ),
                Slot::Hung(since) => format!(
                    "still hung: the call started {}s ago has not returned; not retried until it does",
                    since.elapsed().as_secs()
                ),
                Slot::NoThread(why) => why,
            };
            problems.push(format!("statvfs {}: {why}", mount.shown));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(CollectorError::Other(Box::new(NotMeasured {
            of: self.mounts.len() + clashes,
            problems,
        })))
    }
}

impl DiskSpace {
    /// Reads the mounts file and chooses the mounts of this run into
    /// `self.mounts`. Returns the mounts left out because of a name clash.
    fn plan(&mut self) -> Result<Vec<String>, CollectorError> {
        let path = &self.mounts_path;
        crate::procfile::read_file(path, &mut self.buf)?;
        let mut lines = Vec::new();
        parse_mounts(path, &self.buf, &mut lines)?;
        let labels = match &self.labels_dir {
            Some(dir) => Labels::read(dir),
            None => Labels::default(),
        };
        let mut problems = Vec::new();
        select_mounts(
            &lines,
            &self.filter,
            &|device| labels.of(device),
            &mut self.mounts,
            &mut problems,
        );
        if self.mounts.is_empty() && problems.is_empty() {
            return Err(nothing_to_measure(
                &path.display().to_string(),
                &self.filter,
                &lines,
            ));
        }
        Ok(problems)
    }
}

/// The error of a run that found no mount to measure in `lines`, read from
/// `origin`.
fn nothing_to_measure(
    origin: &str,
    filter: &MountFilter,
    lines: &[MountLine<'_>],
) -> CollectorError {
    let mut types: Vec<String> = lines
        .iter()
        .map(|l| shown(&l.fs_type, 40))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    types.truncate(40);
    CollectorError::Other(
        format!(
            "{origin}: no mount to measure: none of the types in filesystems ({}) is mounted \
             outside exclude_filters; types mounted: {}",
            filter.filesystems.join(", "),
            types.join(", ")
        )
        .into(),
    )
}

// ---------------------------------------------------------------------------
// The sysinfo source

/// The `sysinfo` listings of the disks that were given up on (not returned
/// in time) and have still not returned, process-wide. While there is one
/// (a hung filesystem), no other is started, by any instance.
static STUCK: Mutex<Stuck> = Mutex::new(Stuck {
    count: 0,
    since: None,
});

#[derive(Debug)]
struct Stuck {
    count: usize,
    /// When the oldest of them started.
    since: Option<Instant>,
}

/// What `sysinfo` tells of one mounted filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SysinfoDisk {
    /// What it is mounted from (a device on Linux and macOS, the volume
    /// label on Windows).
    device: Vec<u8>,
    mount_point: Vec<u8>,
    /// Its type, in lower case.
    fs_type: Vec<u8>,
    /// Size, bytes.
    total: u64,
    /// Space available to unprivileged users, bytes.
    available: u64,
}

/// Lists the mounted filesystems and their sizes through `sysinfo` (this
/// may block on a hung filesystem).
fn list_sysinfo_disks() -> Result<Vec<SysinfoDisk>, CollectorError> {
    let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
        .map_err(|e| sysinfo_error("the mounted filesystems", e))?;
    Ok(disks
        .iter()
        .map(|d| {
            SysinfoDisk::new(
                d.name(),
                d.mount_point(),
                d.file_system(),
                d.total_space(),
                d.available_space(),
            )
        })
        .collect())
}

impl SysinfoDisk {
    fn new(
        device: &std::ffi::OsStr,
        mount_point: &Path,
        fs_type: &std::ffi::OsStr,
        total: u64,
        available: u64,
    ) -> SysinfoDisk {
        SysinfoDisk {
            device: device.as_encoded_bytes().to_vec(),
            mount_point: mount_point.as_os_str().as_encoded_bytes().to_vec(),
            fs_type: fs_type.as_encoded_bytes().to_ascii_lowercase(),
            total,
            available,
        }
    }
}

/// One `sysinfo` listing, between the collector and the threads.
struct Listing {
    started: Instant,
    result: Option<Result<Vec<SysinfoDisk>, CollectorError>>,
    /// The collector took the result.
    taken: bool,
    /// The collector gave up waiting before the result came: counted in
    /// [`STUCK`] until it comes.
    abandoned: bool,
    /// The deadline passed.
    expired: bool,
    waker: Option<Waker>,
    timer: Option<Thread>,
}

/// Held while the collector waits for a listing: if it stops waiting
/// before the result came (the deadline passed, or the agent dropped the
/// run), the listing is counted as stuck until it returns.
struct Waiting(Arc<Mutex<Listing>>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let timer = {
            let mut l = lock(&self.0);
            l.expired = true;
            if l.result.is_none() && !l.taken && !l.abandoned {
                l.abandoned = true;
                let mut stuck = lock(&STUCK);
                stuck.count += 1;
                stuck.since = Some(stuck.since.map_or(l.started, |s| s.min(l.started)));
            }
            l.timer.take()
        };
        if let Some(t) = timer {
            t.unpark();
        }
    }
}

/// Runs `list` on a worker thread and waits for it, at most `timeout`,
/// without blocking the caller's thread. A listing given up on keeps its
/// thread; until it returns, no other is started (see [`STUCK`]).
async fn list_off_thread(
    list: fn() -> Result<Vec<SysinfoDisk>, CollectorError>,
    timeout: Duration,
) -> Result<Vec<SysinfoDisk>, CollectorError> {
    if let Some(since) = lock(&STUCK).since {
        return Err(CollectorError::Other(
            format!(
                "sysinfo: still hung: a listing of the filesystems started {}s ago has not \
                 returned; not retried until it does",
                since.elapsed().as_secs()
            )
            .into(),
        ));
    }
    let cannot_start =
        |e: io::Error| CollectorError::Other(format!("sysinfo: cannot start a thread: {e}").into());
    let started = Instant::now();
    let deadline = started + timeout;
    let listing = Arc::new(Mutex::new(Listing {
        started,
        result: None,
        taken: false,
        abandoned: false,
        expired: false,
        waker: None,
        timer: None,
    }));
    let timer = {
        let listing = Arc::clone(&listing);
        thread::Builder::new()
            .name("carat-diskspace-timer".into())
            .stack_size(THREAD_STACK)
            .spawn(move || loop {
                let now = Instant::now();
                {
                    let mut l = lock(&listing);
                    if l.result.is_some() || l.expired {
                        return;
                    }
                    if now >= deadline {
                        l.expired = true;
                        let waker = l.waker.take();
                        drop(l);
                        if let Some(w) = waker {
                            w.wake();
                        }
                        return;
                    }
                }
                thread::park_timeout(deadline - now);
            })
            .map_err(cannot_start)?
    };
    lock(&listing).timer = Some(timer.thread().clone());
    // From here on, giving up on the listing (whatever the reason) counts
    // it as stuck until it returns.
    let waiting = Waiting(Arc::clone(&listing));
    {
        let shared = Arc::clone(&listing);
        // sysinfo's own stack needs (macOS' CoreFoundation) are unknown:
        // the default stack size.
        thread::Builder::new()
            .name("carat-diskspace-sysinfo".into())
            .spawn(move || {
                let result = catch_unwind(list).unwrap_or_else(|_| {
                    Err(CollectorError::Other(
                        "sysinfo panicked while listing the filesystems".into(),
                    ))
                });
                let (waker, timer) = {
                    let mut l = lock(&shared);
                    l.result = Some(result);
                    if l.abandoned {
                        let mut stuck = lock(&STUCK);
                        stuck.count = stuck.count.saturating_sub(1);
                        if stuck.count == 0 {
                            stuck.since = None;
                        }
                    }
                    (l.waker.take(), l.timer.take())
                };
                if let Some(w) = waker {
                    w.wake();
                }
                if let Some(t) = timer {
                    t.unpark();
                }
            })
            .map_err(|e| {
                // No listing runs: nothing is stuck.
                lock(&listing).taken = true;
                cannot_start(e)
            })?;
    }
    let result = std::future::poll_fn(|cx| {
        let mut l = lock(&listing);
        if let Some(result) = l.result.take() {
            l.taken = true;
            return Poll::Ready(Some(result));
        }
        if l.expired {
            return Poll::Ready(None);
        }
        l.waker = Some(cx.waker().clone());
        Poll::Pending
    })
    .await;
    drop(waiting);
    result.unwrap_or_else(|| {
        Err(CollectorError::Other(
            format!(
                "sysinfo: listing the filesystems did not return within {timeout:?} \
                 (statvfs_timeout); not retried until it does"
            )
            .into(),
        ))
    })
}

/// Adds the metrics `sysinfo` can give of one filesystem, named `fs`: see
/// the module documentation, "Other systems".
fn publish_sizes(batch: &mut Batch, fs: &str, total: u64, available: u64, units: &[Unit]) {
    let available = available.min(total);
    let used = (total - available) as f64;
    let available = available as f64;
    let percentfree = if total == 0 {
        0.0
    } else {
        100.0 * available / total as f64
    };
    for u in units {
        batch.gauge_parts(&[fs, &u.percentfree], percentfree);
        batch.gauge_parts(&[fs, &u.used], used * u.factor);
        batch.gauge_parts(&[fs, &u.free], available * u.factor);
        batch.gauge_parts(&[fs, &u.avail], available * u.factor);
    }
}

impl DiskSpace {
    /// A run with `sysinfo` as the source.
    async fn collect_sysinfo(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let disks = list_off_thread(list_sysinfo_disks, self.timeout).await?;
        self.publish_sysinfo(batch, &disks)
    }

    /// Chooses, names and publishes the filesystems of `disks` as the
    /// `/proc` source does those of the mounts file.
    fn publish_sysinfo(
        &mut self,
        batch: &mut Batch,
        disks: &[SysinfoDisk],
    ) -> Result<(), CollectorError> {
        let lines: Vec<MountLine<'_>> = disks
            .iter()
            .map(|d| MountLine {
                device: Cow::Borrowed(&d.device),
                mount_point: Cow::Borrowed(&d.mount_point),
                fs_type: Cow::Borrowed(&d.fs_type),
            })
            .collect();
        let labels = match &self.labels_dir {
            Some(dir) => Labels::read(dir),
            None => Labels::default(),
        };
        let mut problems = Vec::new();
        select_mounts(
            &lines,
            &self.filter,
            &|device| labels.of(device),
            &mut self.mounts,
            &mut problems,
        );
        if self.mounts.is_empty() && problems.is_empty() {
            return Err(nothing_to_measure("sysinfo", &self.filter, &lines));
        }
        let clashes = problems.len();
        for mount in &self.mounts {
            // The first listed at that mount point, as select_mounts took it.
            let Some(disk) = disks
                .iter()
                .find(|d| path_from_bytes(&d.mount_point) == mount.path)
            else {
                continue;
            };
            if disk.total == 0 {
                problems.push(format!(
                    "sysinfo {}: no size: sysinfo could not measure it",
                    mount.shown
                ));
                continue;
            }
            publish_sizes(batch, &mount.name, disk.total, disk.available, &self.units);
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(CollectorError::Other(Box::new(NotMeasured {
            of: self.mounts.len() + clashes,
            problems,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_metric, fixture_path, source_configs, source_error, ProcDir};
    use carat_collector::testing::Harness;
    use std::future::Future;
    use std::sync::Condvar;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(fixture_path(&format!("diskspace/{name}"))).unwrap()
    }

    fn default_filter() -> MountFilter {
        let config = DiskSpaceConfig::default();
        MountFilter {
            filesystems: config.filesystems,
            exclude: config
                .exclude_filters
                .iter()
                .map(|f| Regex::new(f).unwrap())
                .collect(),
        }
    }

    /// `(mount point, metric name)` of the mounts chosen from `text`.
    fn chosen(text: &[u8], filter: &MountFilter) -> (Vec<(String, String)>, Vec<String>) {
        let mut lines = Vec::new();
        parse_mounts(Path::new("mounts"), text, &mut lines).unwrap();
        let mut mounts = Vec::new();
        let mut problems = Vec::new();
        select_mounts(&lines, filter, &|_| None, &mut mounts, &mut problems);
        let pairs = mounts.into_iter().map(|m| (m.shown, m.name)).collect();
        (pairs, problems)
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    // -- /proc/mounts ------------------------------------------------------

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(&*decode_octal(b"/mnt/my\\040disk"), b"/mnt/my disk");
        assert_eq!(&*decode_octal(b"a\\011b\\012c\\134d"), b"a\tb\nc\\d");
        assert_eq!(&*decode_octal(b"\\303\\251"), "é".as_bytes());
        // Not an escape: kept as it is.
        assert_eq!(&*decode_octal(b"a\\9b\\08\\400\\"), b"a\\9b\\08\\400\\");
        assert!(matches!(decode_octal(b"/plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn recorded_sandbox_mounts() {
        let text = fixture("mounts-sandbox");
        let mut lines = Vec::new();
        parse_mounts(Path::new("mounts-sandbox"), &text, &mut lines).unwrap();
        assert_eq!(lines.len(), text.iter().filter(|&&b| b == b'\n').count());
        let root = lines.iter().find(|l| &*l.mount_point == b"/").unwrap();
        assert_eq!(
            (&*root.device, &*root.fs_type),
            (&b"/dev/vda"[..], &b"ext4"[..])
        );
        // Only the root filesystem is of a type in Diamond's default list.
        let (chosen, problems) = chosen(&text, &default_filter());
        assert_eq!(chosen, pairs(&[("/", "root")]));
        assert!(problems.is_empty());
    }

    #[test]
    fn edge_cases_with_default_options() {
        let (chosen, problems) = chosen(&fixture("mounts-edge"), &default_filter());
        assert_eq!(
            chosen,
            pairs(&[
                ("/", "root"),
                // /srv/bind: the same device as /var/lib, left out.
                ("/var/lib", "_var_lib"),
                ("/mnt/my disk", "_mnt_my_disk"),
                // /export/home and /export/home/alice: excluded.
                // The default filter is anchored at the start.
                ("/srv/export/home", "_srv_export_home"),
                ("/data.old", "_data_old"),
                // /mnt/media-again: the same NFS export, left out.
                ("/mnt/media", "_mnt_media"),
                ("/mnt/backup", "_mnt_backup"),
                ("/mnt/back\\slash\\ttab", "_mnt_backslash_tab"),
                // /home/.snapshots: another subvolume of the same device.
                ("/home", "_home"),
                ("/mnt/caf\u{fffd}", "_mnt_caf_"),
            ])
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn tmpfs_and_no_exclude_filters() {
        let filter = MountFilter {
            filesystems: vec!["tmpfs".into(), "xfs".into(), "vfat".into()],
            exclude: Vec::new(),
        };
        let (chosen, _) = chosen(&fixture("mounts-edge"), &filter);
        assert_eq!(
            chosen,
            pairs(&[
                // tmpfs sources name no device: each mount is its own.
                ("/run", "_run"),
                ("/boot/efi", "_boot_efi"),
                ("/tmp", "tmp"),
                ("/mnt/my disk", "_mnt_my_disk"),
                ("/export/home", "_export_home"),
                ("/export/home/alice", "_export_home_alice"),
            ])
        );
    }

    #[test]
    fn exclude_filters_search_anywhere() {
        let filter = MountFilter {
            filesystems: DEFAULT_FILESYSTEMS.iter().map(|s| (*s).into()).collect(),
            exclude: vec![Regex::new("^/mnt").unwrap(), Regex::new("home").unwrap()],
        };
        let (chosen, _) = chosen(&fixture("mounts-edge"), &filter);
        let names: Vec<_> = chosen.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["root", "_var_lib", "_data_old"]);
    }

    #[test]
    fn names_follow_diamond_and_stay_one_component() {
        assert_eq!(diamond_name("/"), "root");
        assert_eq!(diamond_name("/tmp"), "tmp");
        assert_eq!(diamond_name("/tmp/x"), "_tmp_x");
        assert_eq!(diamond_name("/var/lib"), "_var_lib");
        assert_eq!(diamond_name("/a.b/c\\d"), "_a_b_cd");
        // Whatever a mount point holds, the name is one safe component.
        let text = b"/dev/sda1 /x\\012servers.evil\\040-1\\011y ext4 rw 0 0\n";
        let (chosen, _) = chosen(text, &default_filter());
        assert_eq!(chosen[0].1, "_x_servers_evil_-1_y");
        assert_eq!(chosen[0].0, "/x\\nservers.evil -1\\ty");
    }

    #[test]
    fn name_clashes_keep_the_first_and_say_so() {
        let text = b"/dev/sda1 /a.b ext4 rw 0 0\n/dev/sdb1 /a/b ext4 rw 0 0\n/dev/sdc1 /a\\040b ext4 rw 0 0\n";
        let (chosen, problems) = chosen(text, &default_filter());
        assert_eq!(chosen, pairs(&[("/a.b", "_a_b")]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "/a/b: not measured: its metric name \"_a_b\" is already used by /a.b"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn garbage_line_is_a_parse_error_naming_file_and_line() {
        let path = fixture_path("diskspace/mounts-garbage");
        let mut lines = Vec::new();
        let text = fixture("mounts-garbage");
        let err = parse_mounts(&path, &text, &mut lines).unwrap_err();
        assert_eq!(err.label(), "parse");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{} line 3", path.display())), "{msg}");
        assert!(msg.contains("this line is garbage"), "{msg}");

        let cases: [(&[u8], &str); 5] = [
            (b"", "line 1: empty file"),
            (
                b"/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /x ext4",
                "line 2: truncated",
            ),
            (b"/dev/sda1 / ext4 rw 0 x\n", "line 1: the last two fields"),
            (
                b"/dev/sda1 / ext4 rw 0 0 extra\n",
                "line 1: expected 6 fields",
            ),
            (b"/dev/sda1  ext4 rw 0 0\n", "line 1: empty mount point"),
        ];
        for (text, expected) in cases {
            let msg = parse_mounts(Path::new("m"), text, &mut lines)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(expected), "{text:?}: {msg}");
        }
        // An empty source (mount("", …)) is still six fields; blank lines
        // are ignored.
        parse_mounts(Path::new("m"), b" /mnt/x tmpfs rw 0 0\n\n", &mut lines).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(&*lines[0].device, b"");
    }

    #[test]
    fn a_recorded_mounts_without_its_final_newline_is_read_whole() {
        for name in ["mounts-sandbox", "mounts-edge"] {
            let text = fixture(name);
            let mut whole = Vec::new();
            let mut cut = Vec::new();
            parse_mounts(Path::new(name), &text, &mut whole).unwrap();
            let trimmed = text.strip_suffix(b"\n").unwrap();
            parse_mounts(Path::new(name), trimmed, &mut cut).unwrap();
            assert_eq!(whole.len(), cut.len(), "{name}");
            let last = |l: &[MountLine<'_>]| l.last().map(|m| m.mount_point.to_vec());
            assert_eq!(last(&whole), last(&cut), "{name}");
        }
    }

    // -- labels --------------------------------------------------------------

    #[cfg(unix)]
    #[test]
    fn labels_name_filesystems_like_diamond() {
        let dir = ProcDir::new("diskspace-labels");
        let devs = dir.path.join("dev");
        let by_label = devs.join("disk/by-label");
        std::fs::create_dir_all(&by_label).unwrap();
        std::fs::create_dir_all(devs.join("mapper")).unwrap();
        std::fs::write(devs.join("sda1"), "").unwrap();
        std::fs::write(devs.join("dm-0"), "").unwrap();
        std::os::unix::fs::symlink("../../sda1", by_label.join("cloudimg-rootfs")).unwrap();
        std::os::unix::fs::symlink("../../dm-0", by_label.join("my\\x20data")).unwrap();
        std::os::unix::fs::symlink("../dm-0", devs.join("mapper/vg-data")).unwrap();
        std::os::unix::fs::symlink("../../nowhere", by_label.join("dangling")).unwrap();
        let labels = Labels::read(&by_label);
        assert_eq!(labels.by_device.len(), 2, "{labels:?}");

        let d = devs.display();
        let text = format!(
            "{d}/sda1 / ext4 rw 0 0\n{d}/mapper/vg-data /srv xfs rw 0 0\n{d}/sdb1 /var ext4 rw 0 0\nnas:/x /n nfs rw 0 0\n"
        );
        let mut lines = Vec::new();
        parse_mounts(Path::new("m"), text.as_bytes(), &mut lines).unwrap();
        let mut mounts = Vec::new();
        let mut problems = Vec::new();
        select_mounts(
            &lines,
            &default_filter(),
            &|dev| labels.of(dev),
            &mut mounts,
            &mut problems,
        );
        let names: Vec<_> = mounts.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cloudimg-rootfs", "my_data", "_var", "_n"]);

        assert!(Labels::read(&dir.path.join("missing")).by_device.is_empty());
        assert_eq!(decode_udev("a\\x2fb\\x20c\\xzz"), "a/b c\\xzz");
    }

    // -- metrics from a statvfs result ---------------------------------------

    fn units(names: &[&str]) -> Vec<Unit> {
        names.iter().map(|u| Unit::new(u).unwrap()).collect()
    }

    /// The statvfs result of Diamond's own test of this collector.
    const DIAMOND_STATS: FsStats = FsStats {
        frsize: 4096,
        blocks: 360_540_255,
        bfree: 285_953_527,
        bavail: 267_639_130,
        files: 91_578_368,
        ffree: 91_229_495,
        favail: 91_229_495,
    };

    fn published(batch: &Batch) -> HashMap<String, f64> {
        batch
            .iter()
            .map(|s| match s.value {
                carat_collector::SampleValue::Gauge(v) => (s.name.to_owned(), v),
                other => panic!("{} is not a gauge: {other:?}", s.name),
            })
            .collect()
    }

    #[track_caller]
    fn close(p: &HashMap<String, f64>, name: &str, expected: f64, tolerance: f64) {
        let actual = *p
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing: {p:?}"));
        assert!(
            (actual - expected).abs() <= tolerance,
            "{name} = {actual}, expected {expected}"
        );
    }

    #[test]
    fn diamond_test_vector_in_gigabytes() {
        let mut batch = Batch::new();
        publish_stats(&mut batch, "root", &DIAMOND_STATS, &units(&["gigabyte"]));
        let p = published(&batch);
        // Diamond's expected values, rounded to 2 decimals there.
        close(&p, "root.gigabyte_used", 284.525, 0.005);
        close(&p, "root.gigabyte_free", 1090.826, 0.005);
        close(&p, "root.gigabyte_avail", 1020.962, 0.005);
        close(&p, "root.inodes_used", 348_873.0, 0.0);
        close(&p, "root.inodes_free", 91_229_495.0, 0.0);
        close(&p, "root.inodes_avail", 91_229_495.0, 0.0);
        close(
            &p,
            "root.gigabyte_percentfree",
            100.0 * 285_953_527.0 / 360_540_255.0,
            1e-9,
        );
        close(
            &p,
            "root.inodes_percentfree",
            100.0 * 91_229_495.0 / 91_578_368.0,
            1e-9,
        );
        assert_eq!(p.len(), 8, "{p:?}");
        let names: Vec<_> = batch.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "root.gigabyte_percentfree",
                "root.gigabyte_used",
                "root.gigabyte_free",
                "root.gigabyte_avail",
                "root.inodes_percentfree",
                "root.inodes_used",
                "root.inodes_free",
                "root.inodes_avail",
            ]
        );
    }

    #[test]
    fn bytes_bits_and_several_units() {
        let mut batch = Batch::new();
        publish_stats(
            &mut batch,
            "_data",
            &DIAMOND_STATS,
            &units(&["byte", "bit", "MB", "kilobit"]),
        );
        let p = published(&batch);
        let used = (360_540_255.0 - 285_953_527.0) * 4096.0;
        close(&p, "_data.byte_used", used, 0.0);
        close(&p, "_data.byte_free", 285_953_527.0 * 4096.0, 0.0);
        close(&p, "_data.byte_avail", 267_639_130.0 * 4096.0, 0.0);
        close(&p, "_data.bit_used", used * 8.0, 0.0);
        close(&p, "_data.MB_used", used / 1024.0 / 1024.0, 1e-9);
        close(
            &p,
            "_data.kilobit_free",
            285_953_527.0 * 4096.0 * 8.0 / 1024.0,
            1e-6,
        );
        assert_eq!(p["_data.byte_percentfree"], p["_data.MB_percentfree"]);
        assert_eq!(p.len(), 4 * 4 + 4);
    }

    #[test]
    fn empty_filesystems_do_not_divide_by_zero() {
        let mut batch = Batch::new();
        let s = FsStats {
            frsize: 4096,
            ..FsStats::default()
        };
        publish_stats(&mut batch, "x", &s, &units(&["byte"]));
        let p = published(&batch);
        // Diamond: percentfree 0 with no block; no inodes_percentfree
        // without inodes (btrfs reports f_files = 0).
        close(&p, "x.byte_percentfree", 0.0, 0.0);
        assert!(!p.contains_key("x.inodes_percentfree"));
        close(&p, "x.inodes_used", 0.0, 0.0);
        // Sizes beyond u64 when multiplied do not overflow.
        let huge = FsStats {
            frsize: 1 << 20,
            blocks: u64::MAX,
            bfree: 0,
            ..FsStats::default()
        };
        let mut batch = Batch::new();
        publish_stats(&mut batch, "x", &huge, &units(&["byte"]));
        close(
            &published(&batch),
            "x.byte_used",
            u64::MAX as f64 * 1048576.0,
            1e10,
        );
    }

    #[test]
    fn every_diamond_unit_name() {
        let k = 1024f64;
        for (unit, factor) in [
            ("bit", 8.0),
            ("b", 8.0),
            ("kilobit", 8.0 / k),
            ("Kibit", 8.0 / k),
            ("megabit", 8.0 / k.powi(2)),
            ("gigabit", 8.0 / k.powi(3)),
            ("terabit", 8.0 / k.powi(4)),
            ("petabit", 8.0 / k.powi(5)),
            ("byte", 1.0),
            ("B", 1.0),
            ("kilobyte", 1.0 / k),
            ("kB", 1.0 / k),
            ("KiB", 1.0 / k),
            ("megabyte", 1.0 / k.powi(2)),
            ("Mbyte", 1.0 / k.powi(2)),
            ("gigabyte", 1.0 / k.powi(3)),
            ("GiB", 1.0 / k.powi(3)),
            ("terabyte", 1.0 / k.powi(4)),
            ("petabyte", 1.0 / k.powi(5)),
            ("exabyte", 1.0 / k.powi(6)),
            ("yottabit", 8.0 / k.powi(8)),
        ] {
            assert_eq!(unit_factor(unit), Some(factor), "{unit}");
        }
        for bad in ["", "bytes", "Byte", "kb", "mb", "kibibyte"] {
            assert_eq!(unit_factor(bad), None, "{bad}");
        }
    }

    // -- options -------------------------------------------------------------

    fn build(config: DiskSpaceConfig) -> Result<DiskSpace, CollectorError> {
        DiskSpace::new(config, &Environment::default())
    }

    #[test]
    fn bad_options_are_config_errors_at_new() {
        let cases = [
            (
                DiskSpaceConfig {
                    byte_unit: vec!["byte".into(), "furlong".into()],
                    ..DiskSpaceConfig::default()
                },
                ("byte_unit", "\"furlong\" is not a unit"),
            ),
            (
                DiskSpaceConfig {
                    exclude_filters: vec!["^/ok".into(), "(unclosed".into()],
                    ..DiskSpaceConfig::default()
                },
                ("exclude_filters", "\"(unclosed\" is not a regex"),
            ),
            (
                DiskSpaceConfig {
                    filesystems: Vec::new(),
                    ..DiskSpaceConfig::default()
                },
                ("filesystems", "is empty"),
            ),
        ];
        for (config, (option, expected)) in cases {
            let err = build(config).err().unwrap();
            assert_eq!(err.label(), "config");
            assert_eq!(err.invalid_option(), Some(option), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
        for secs in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let err = build(DiskSpaceConfig {
                statvfs_timeout: secs,
                ..DiskSpaceConfig::default()
            })
            .err()
            .unwrap();
            assert_eq!(err.invalid_option(), Some("statvfs_timeout"), "{err}");
        }
        let ok = build(DiskSpaceConfig {
            byte_unit: vec!["byte".into(), "gigabyte".into(), "byte".into()],
            statvfs_timeout: 0.25,
            ..DiskSpaceConfig::default()
        })
        .unwrap();
        assert_eq!(ok.units.len(), 2);
        assert_eq!(ok.timeout, Duration::from_millis(250));
    }

    #[test]
    fn config_defaults_lists_and_unknown_keys() {
        use serde::de::value::{Error, MapDeserializer};
        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, Error> =
            MapDeserializer::new(Vec::new().into_iter());
        let config = DiskSpaceConfig::deserialize(empty).unwrap();
        assert_eq!(config, DiskSpaceConfig::default());
        assert_eq!(config.filesystems.len(), 12);
        assert!(config.filesystems.iter().any(|f| f == "nfs4"));
        assert_eq!(config.exclude_filters, ["^/export/home"]);
        assert_eq!(config.byte_unit, ["byte"]);
        assert_eq!(config.statvfs_timeout, 2.0);
        assert!(config.use_labels);

        // Strings: comma-separated for filesystems and byte_unit, one regex
        // (which may hold a comma) for exclude_filters.
        let strings: MapDeserializer<'_, _, Error> = MapDeserializer::new(
            vec![
                ("filesystems", " ext4,xfs , ,zfs"),
                ("byte_unit", "byte, gigabyte"),
                ("exclude_filters", "^/mnt/x{1,3}"),
            ]
            .into_iter(),
        );
        let config = DiskSpaceConfig::deserialize(strings).unwrap();
        assert_eq!(config.filesystems, ["ext4", "xfs", "zfs"]);
        assert_eq!(config.byte_unit, ["byte", "gigabyte"]);
        assert_eq!(config.exclude_filters, ["^/mnt/x{1,3}"]);

        let lists: MapDeserializer<'_, _, Error> = MapDeserializer::new(
            vec![
                ("filesystems", vec!["ext4", " overlay "]),
                ("exclude_filters", vec!["^/boot", "", "^/mnt"]),
            ]
            .into_iter(),
        );
        let config = DiskSpaceConfig::deserialize(lists).unwrap();
        assert_eq!(config.filesystems, ["ext4", "overlay"]);
        assert_eq!(config.exclude_filters, ["^/boot", "^/mnt"]);

        let none: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("exclude_filters", "")].into_iter());
        assert!(DiskSpaceConfig::deserialize(none)
            .unwrap()
            .exclude_filters
            .is_empty());

        let typo: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("filesystem", "ext4")].into_iter());
        let err = DiskSpaceConfig::deserialize(typo).unwrap_err().to_string();
        assert!(err.contains("filesystem"), "{err}");
    }

    #[test]
    fn description_is_one_line() {
        assert!(!DiskSpace::DESCRIPTION.contains('\n'));
        assert_eq!(DiskSpace::KIND, "diskspace");
        assert_eq!(DiskSpace::DEFAULT_PATH, "diskspace");
    }

    // -- the collector with a simulated statvfs ---------------------------

    /// A gate that hung calls wait on until the test opens it (or 30 s pass,
    /// so a failed test leaves no thread behind for long).
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        cv: Condvar,
    }

    impl Gate {
        fn wait(&self) {
            let until = Instant::now() + Duration::from_secs(30);
            let mut open = lock(&self.open);
            while !*open {
                let now = Instant::now();
                if now >= until {
                    return;
                }
                open = self
                    .cv
                    .wait_timeout(open, until - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }

        fn release(&self) {
            *lock(&self.open) = true;
            self.cv.notify_all();
        }
    }

    enum Behaviour {
        Hang,
        Fail(i32),
        Slow(Duration),
    }

    /// Simulated filesystems: every path gives `stats_for(path)`, except
    /// those with a behaviour. Counts the calls per path.
    #[derive(Default)]
    struct FakeFs {
        behaviour: HashMap<PathBuf, Behaviour>,
        calls: Mutex<HashMap<PathBuf, usize>>,
        gate: Gate,
    }

    impl FakeFs {
        fn stat(&self, path: &Path) -> io::Result<FsStats> {
            *lock(&self.calls).entry(path.to_owned()).or_default() += 1;
            match self.behaviour.get(path) {
                Some(Behaviour::Hang) => {
                    self.gate.wait();
                    Ok(stats_for(path))
                }
                Some(Behaviour::Fail(errno)) => Err(io::Error::from_raw_os_error(*errno)),
                Some(Behaviour::Slow(d)) => {
                    thread::sleep(*d);
                    Ok(stats_for(path))
                }
                None => Ok(stats_for(path)),
            }
        }

        fn calls(&self, path: &str) -> usize {
            lock(&self.calls).get(Path::new(path)).copied().unwrap_or(0)
        }
    }

    /// Distinct numbers per path: 1000 blocks of 1 KiB, free = 10 × the
    /// path's length.
    fn stats_for(path: &Path) -> FsStats {
        let n = path.as_os_str().len() as u64;
        FsStats {
            frsize: 1024,
            blocks: 1000,
            bfree: 10 * n,
            bavail: 10 * n - 5,
            files: 100,
            ffree: 50,
            favail: 40,
        }
    }

    fn fake_prober(fs: &Arc<FakeFs>, max_threads: usize) -> Arc<Prober> {
        let fs = Arc::clone(fs);
        Arc::new(Prober::new(Box::new(move |p| fs.stat(p)), max_threads))
    }

    /// A collector over `mounts` (the text of a mounts file) using `prober`.
    fn fake_collector(
        dir: &ProcDir,
        mounts: &str,
        prober: &Arc<Prober>,
        timeout: f64,
    ) -> DiskSpace {
        dir.write("mounts", mounts);
        let config = DiskSpaceConfig {
            statvfs_timeout: timeout,
            use_labels: false,
            ..DiskSpaceConfig::default()
        };
        let mut c = DiskSpace::new(config, &dir.env()).unwrap();
        c.prober = Arc::clone(prober);
        c
    }

    async fn run(c: &mut DiskSpace) -> (Vec<String>, Result<(), CollectorError>, Duration) {
        let mut batch = Batch::new();
        let started = Instant::now();
        let result = c.collect(&mut batch).await;
        let took = started.elapsed();
        let names = batch.iter().map(|s| s.name.to_owned()).collect();
        (names, result, took)
    }

    fn filesystems(names: &[String]) -> Vec<&str> {
        let mut fs: Vec<&str> = names.iter().map(|n| n.split('.').next().unwrap()).collect();
        fs.dedup();
        fs
    }

    /// Waits until `prober` has `n` threads left: workers that found the
    /// queue empty end just after the run returned, stuck ones when the
    /// test opens the gate.
    fn wait_for_threads(prober: &Prober, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while prober.threads() != n {
            assert!(
                Instant::now() < until,
                "{} statvfs threads, expected {n}",
                prober.threads()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    const FOUR_MOUNTS: &str = "/dev/sda1 / ext4 rw 0 0\n\
        nas:/export /mnt/nfs nfs4 rw 0 0\n\
        /dev/sdb1 /data xfs rw 0 0\n\
        /dev/sdc1 /denied ext4 rw 0 0\n";

    #[tokio::test]
    async fn hung_and_failing_mounts_do_not_hold_back_the_others() {
        let fs = Arc::new(FakeFs {
            behaviour: HashMap::from([
                (PathBuf::from("/mnt/nfs"), Behaviour::Hang),
                (PathBuf::from("/denied"), Behaviour::Fail(13)),
                (
                    PathBuf::from("/data"),
                    Behaviour::Slow(Duration::from_millis(50)),
                ),
            ]),
            ..FakeFs::default()
        });
        let prober = fake_prober(&fs, MAX_THREADS);
        let dir = ProcDir::new("diskspace-hung");
        let mut c = fake_collector(&dir, FOUR_MOUNTS, &prober, 0.5);

        // Run 1: the hung mount costs statvfs_timeout, no more.
        let (names, result, took) = run(&mut c).await;
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(filesystems(&names), ["root", "_data"]);
        assert_eq!(names.len(), 2 * 8);
        let err = result.unwrap_err();
        assert_eq!(err.label(), "other");
        let msg = err.to_string();
        assert!(
            msg.starts_with("2 of 4 filesystems not published: "),
            "{msg}"
        );
        assert!(
            msg.contains("statvfs /mnt/nfs: timed out after 500ms"),
            "{msg}"
        );
        assert!(msg.contains("statvfs /denied: Permission denied"), "{msg}");
        // Only the hung call keeps its thread.
        wait_for_threads(&prober, 1);

        // Run 2, while the first call is still stuck: no second call for
        // it, and no waiting either.
        let (names, result, took) = run(&mut c).await;
        assert!(took < Duration::from_millis(450), "{took:?}");
        assert_eq!(filesystems(&names), ["root", "_data"]);
        let msg = result.unwrap_err().to_string();
        assert!(
            msg.contains("statvfs /mnt/nfs: still hung: the call started 0s ago"),
            "{msg}"
        );
        assert_eq!(fs.calls("/mnt/nfs"), 1);
        assert_eq!(fs.calls("/"), 2);
        wait_for_threads(&prober, 1);

        // The server comes back: the stuck call returns, its late result is
        // dropped, and the next run measures the mount again.
        fs.gate.release();
        wait_for_threads(&prober, 0);
        let (names, result, _) = run(&mut c).await;
        assert_eq!(filesystems(&names), ["root", "_mnt_nfs", "_data"]);
        assert!(result.unwrap_err().to_string().starts_with("1 of 4"));
        assert_eq!(fs.calls("/mnt/nfs"), 2);
    }

    #[tokio::test]
    async fn stuck_threads_are_bounded() {
        let text: String = (0..6)
            .map(|i| format!("nas:/e{i} /mnt/h{i} nfs rw 0 0\n"))
            .chain(["/dev/sda1 / ext4 rw 0 0\n".to_owned()])
            .collect();
        let fs = Arc::new(FakeFs {
            behaviour: (0..6)
                .map(|i| (PathBuf::from(format!("/mnt/h{i}")), Behaviour::Hang))
                .collect(),
            ..FakeFs::default()
        });
        let prober = fake_prober(&fs, 3);
        let dir = ProcDir::new("diskspace-bound");
        let mut c = fake_collector(&dir, &text, &prober, 0.3);

        // Run 1: three workers (the limit); the local root is measured
        // first, then three calls hang and the rest wait in vain.
        let (names, result, _) = run(&mut c).await;
        assert_eq!(filesystems(&names), ["root"]);
        let msg = result.unwrap_err().to_string();
        assert_eq!(msg.matches("timed out after 300ms").count(), 3, "{msg}");
        assert_eq!(msg.matches("no worker was free").count(), 3, "{msg}");
        assert_eq!(prober.threads(), 3);

        // Run 2: at the limit, no thread at all is started.
        for _ in 0..3 {
            let (names, result, _) = run(&mut c).await;
            assert!(names.is_empty());
            let msg = result.unwrap_err().to_string();
            assert_eq!(msg.matches("still hung").count(), 3, "{msg}");
            assert_eq!(
                msg.matches("all 3 statvfs threads allowed are busy or stuck")
                    .count(),
                4,
                "{msg}"
            );
            assert_eq!(prober.threads(), 3);
        }
        let total: usize = lock(&fs.calls).values().sum();
        assert_eq!(total, 4, "one call for the root and one per stuck thread");

        fs.gate.release();
        wait_for_threads(&prober, 0);
    }

    #[tokio::test]
    async fn dropped_run_keeps_the_hung_record() {
        // The agent abandons a run that exceeds its own timeout and rebuilds
        // the collector: the stuck call is still known to the prober.
        let fs = Arc::new(FakeFs {
            behaviour: HashMap::from([(PathBuf::from("/mnt/nfs"), Behaviour::Hang)]),
            ..FakeFs::default()
        });
        let prober = fake_prober(&fs, MAX_THREADS);
        let dir = ProcDir::new("diskspace-dropped");
        let mut c = fake_collector(&dir, FOUR_MOUNTS, &prober, 5.0);
        let mut batch = Batch::new();
        {
            let mut run = std::pin::pin!(c.collect(&mut batch));
            let mut cx = std::task::Context::from_waker(Waker::noop());
            assert!(run.as_mut().poll(&mut cx).is_pending());
            thread::sleep(Duration::from_millis(200));
            assert!(
                run.as_mut().poll(&mut cx).is_pending(),
                "the run should still be waiting"
            );
        }
        drop(c);

        let mut rebuilt = fake_collector(&dir, FOUR_MOUNTS, &prober, 0.2);
        let (names, result, took) = run(&mut rebuilt).await;
        assert!(took < Duration::from_millis(180), "{took:?}");
        assert_eq!(filesystems(&names), ["root", "_data", "_denied"]);
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("statvfs /mnt/nfs: still hung"));
        assert_eq!(fs.calls("/mnt/nfs"), 1);

        fs.gate.release();
        wait_for_threads(&prober, 0);
    }

    #[tokio::test]
    async fn harness_run_over_the_edge_fixture() {
        let fs = Arc::new(FakeFs::default());
        let prober = fake_prober(&fs, MAX_THREADS);
        let dir = ProcDir::new("diskspace-harness");
        dir.copy_fixture("diskspace/mounts-edge", "mounts");
        let config = DiskSpaceConfig {
            byte_unit: vec!["byte".into(), "gigabyte".into()],
            use_labels: false,
            ..DiskSpaceConfig::default()
        };
        let mut h = Harness::<DiskSpace>::new(config, dir.env()).unwrap();
        h.collector().prober = Arc::clone(&prober);
        let p = h.collect().await.unwrap();
        // 10 filesystems × (2 units × 4 + 4 inode metrics).
        assert_eq!(
            p.metrics.len(),
            10 * 12,
            "{:?}",
            p.names().collect::<Vec<_>>()
        );
        // "/mnt/my disk" (12 bytes): 120 of 1000 blocks of 1 KiB free.
        assert_metric(&p, "_mnt_my_disk.byte_free", 120.0 * 1024.0);
        assert_metric(&p, "_mnt_my_disk.byte_used", 880.0 * 1024.0);
        assert_metric(&p, "_mnt_my_disk.byte_avail", 115.0 * 1024.0);
        assert_metric(&p, "_mnt_my_disk.byte_percentfree", 12.0);
        assert_metric(&p, "_mnt_my_disk.gigabyte_free", 120.0 / 1024.0 / 1024.0);
        assert_metric(&p, "root.inodes_percentfree", 50.0);
        assert_metric(&p, "root.inodes_used", 50.0);
        assert_metric(&p, "root.inodes_avail", 40.0);
        for name in p.names() {
            assert_eq!(name.matches('.').count(), 1, "{name}");
        }
        // The non-UTF-8 mount point was measured at its exact path.
        assert!(lock(&fs.calls)
            .keys()
            .any(|k| k.as_os_str().as_encoded_bytes() == b"/mnt/caf\xe9"));
    }

    #[tokio::test]
    async fn nothing_to_measure_is_an_error_naming_the_types() {
        let dir = ProcDir::new("diskspace-none");
        let fs = Arc::new(FakeFs::default());
        let prober = fake_prober(&fs, MAX_THREADS);
        let mut c = fake_collector(
            &dir,
            "overlay / overlay rw 0 0\ntmpfs /dev tmpfs rw 0 0\nproc /proc proc rw 0 0\n",
            &prober,
            1.0,
        );
        let (names, result, _) = run(&mut c).await;
        assert!(names.is_empty());
        let msg = result.unwrap_err().to_string();
        assert!(msg.contains("no mount to measure"), "{msg}");
        assert!(msg.contains("types mounted: overlay, proc, tmpfs"), "{msg}");

        // A missing mounts file is an I/O error naming it.
        dir.remove("mounts");
        let err = c.collect(&mut Batch::new()).await.unwrap_err();
        assert_eq!(err.label(), "io");
        assert!(err.to_string().contains("mounts"), "{err}");
    }

    // -- the real machine ----------------------------------------------------

    #[cfg(unix)]
    #[tokio::test]
    async fn real_mounts_and_statvfs() {
        // The root filesystem's type may not be in Diamond's list (overlay
        // in a container): add it.
        let mounts = std::fs::read("/proc/mounts").unwrap();
        let mut lines = Vec::new();
        parse_mounts(Path::new("/proc/mounts"), &mounts, &mut lines).unwrap();
        let root_type = lines
            .iter()
            .rev()
            .find(|l| &*l.mount_point == b"/")
            .map(|l| String::from_utf8_lossy(&l.fs_type).into_owned())
            .unwrap();
        let mut config = DiskSpaceConfig::default();
        if !config.filesystems.contains(&root_type) {
            config.filesystems.push(root_type);
        }
        let mut c = DiskSpace::new(config, &Environment::default()).unwrap();
        let mut batch = Batch::new();
        // Other mounts of this machine may fail (permissions): the root
        // must not.
        let result = c.collect(&mut batch).await;
        let p = published(&batch);
        let root_name = c
            .mounts
            .iter()
            .find(|m| m.path == Path::new("/"))
            .map(|m| m.name.clone())
            .unwrap();
        if let Err(e) = &result {
            assert!(!e.to_string().contains("statvfs /:"), "{e}");
        }
        assert!(!p.is_empty());
        let s = rustix::fs::statvfs("/").unwrap();
        let total = (s.f_blocks * s.f_frsize) as f64;
        for fs in filesystems(&batch.iter().map(|s| s.name.to_owned()).collect::<Vec<_>>()) {
            let get = |m: &str| p[&format!("{fs}.{m}")];
            let (used, free, avail) = (get("byte_used"), get("byte_free"), get("byte_avail"));
            assert!(avail <= free && free >= 0.0 && used >= 0.0, "{fs}: {p:?}");
            let pf = get("byte_percentfree");
            assert!((0.0..=100.0).contains(&pf), "{fs}: {pf}");
            if used + free > 0.0 {
                assert!((pf - 100.0 * free / (used + free)).abs() < 1e-6, "{fs}");
            }
            assert!(get("inodes_free") >= get("inodes_avail"), "{fs}");
            if fs == root_name {
                // used + free is the size: compare with our own statvfs,
                // allowing for writes in between.
                assert!(
                    (used + free - total).abs() <= 1e-9 * total,
                    "{used} + {free} vs {total}"
                );
            }
        }
        assert!(p.contains_key(&format!("{root_name}.byte_avail")), "{p:?}");
    }

    // -- the sysinfo source --------------------------------------------------

    fn sysinfo_config() -> DiskSpaceConfig {
        DiskSpaceConfig {
            source: Source::Sysinfo,
            use_labels: false,
            ..DiskSpaceConfig::default()
        }
    }

    fn disk(device: &str, mount_point: &str, fs_type: &str, total: u64, avail: u64) -> SysinfoDisk {
        SysinfoDisk::new(
            device.as_ref(),
            Path::new(mount_point),
            fs_type.as_ref(),
            total,
            avail,
        )
    }

    #[test]
    fn sysinfo_disks_are_chosen_and_named_like_mounts() {
        let mut c = build(DiskSpaceConfig {
            byte_unit: vec!["byte".into(), "kilobyte".into()],
            ..sysinfo_config()
        })
        .unwrap();
        let disks = [
            disk("/dev/vda", "/", "ext4", 10_240, 6_144),
            // The same device again (a bind mount): left out.
            disk("/dev/vda", "/srv/bind", "ext4", 10_240, 6_144),
            // Windows: a drive, its type in capitals, a volume label.
            disk("Windows", "C:\\", "NTFS", 2_048, 1_024),
            // Excluded by Diamond's default exclude_filters.
            disk("/dev/sdb1", "/export/home", "ext4", 1, 1),
            // Types not in the list.
            disk("tmpfs", "/tmp", "tmpfs", 1, 1),
            disk("/dev/disk3s5", "/System/Volumes/Data", "apfs", 1, 1),
            // More available than the size (a filesystem changing under
            // sysinfo): nothing negative.
            disk("/dev/sdd1", "/var.old", "xfs", 100, 150),
            // sysinfo could not measure it.
            disk("/dev/sdc1", "/data", "xfs", 0, 0),
        ];
        let mut batch = Batch::new();
        let err = c.publish_sysinfo(&mut batch, &disks).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("1 of 4 filesystems not published: sysinfo /data: no size"),
            "{msg}"
        );
        let p = published(&batch);
        let mut names: Vec<_> = p.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut expected = Vec::new();
        for fs in ["C_", "_var_old", "root"] {
            for unit in ["byte", "kilobyte"] {
                for m in ["avail", "free", "percentfree", "used"] {
                    expected.push(format!("{fs}.{unit}_{m}"));
                }
            }
        }
        assert_eq!(names, expected);
        close(&p, "root.byte_used", 4_096.0, 0.0);
        close(&p, "root.byte_free", 6_144.0, 0.0);
        close(&p, "root.byte_avail", 6_144.0, 0.0);
        close(&p, "root.byte_percentfree", 60.0, 1e-9);
        close(&p, "root.kilobyte_used", 4.0, 0.0);
        close(&p, "root.kilobyte_avail", 6.0, 0.0);
        close(&p, "C_.byte_used", 1_024.0, 0.0);
        close(&p, "C_.byte_percentfree", 50.0, 1e-9);
        close(&p, "_var_old.byte_used", 0.0, 0.0);
        close(&p, "_var_old.byte_free", 100.0, 0.0);
        close(&p, "_var_old.byte_percentfree", 100.0, 1e-9);

        // Nothing to measure: say which types are mounted.
        let mut batch = Batch::new();
        let err = c
            .publish_sysinfo(&mut batch, &disks[4..6])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("sysinfo: no mount to measure") && err.contains("apfs, tmpfs"),
            "{err}"
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn sysinfo_source_option() {
        assert_eq!(DiskSpaceConfig::default().source, Source::Auto);
        for (config, source) in source_configs(|c: &DiskSpaceConfig| c.source) {
            #[cfg(target_os = "linux")]
            assert_eq!(build(config).unwrap().sysinfo, source == Source::Sysinfo);
            #[cfg(not(target_os = "linux"))]
            let _ = (config, source);
        }
        let err = source_error::<DiskSpaceConfig>("statfs");
        assert!(err.contains("statfs"), "{err}");
    }

    /// Opened by [`release_hanging_list`].
    #[cfg(target_os = "linux")]
    static GATES: [(Mutex<bool>, Condvar); 2] = [
        (Mutex::new(false), Condvar::new()),
        (Mutex::new(false), Condvar::new()),
    ];

    /// A listing that hangs until released, like one on a dead NFS mount.
    #[cfg(target_os = "linux")]
    fn hanging_list(gate: usize) -> Result<Vec<SysinfoDisk>, CollectorError> {
        let (open, changed) = &GATES[gate];
        let mut open = lock(open);
        while !*open {
            open = changed.wait(open).unwrap_or_else(PoisonError::into_inner);
        }
        Ok(Vec::new())
    }

    #[cfg(target_os = "linux")]
    fn release_hanging_list(gate: usize) {
        *lock(&GATES[gate].0) = true;
        GATES[gate].1.notify_all();
    }

    #[cfg(target_os = "linux")]
    fn wait_until_nothing_is_stuck() {
        let until = Instant::now() + Duration::from_secs(10);
        while lock(&STUCK).since.is_some() {
            assert!(
                Instant::now() < until,
                "the released listing is still stuck"
            );
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lock(&STUCK).count, 0);
    }

    // One test, so that its hung listing (process-wide) cannot fail another.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sysinfo_source_on_this_machine() {
        let mounts = std::fs::read("/proc/mounts").unwrap();
        let mut lines = Vec::new();
        parse_mounts(Path::new("/proc/mounts"), &mounts, &mut lines).unwrap();
        let root_type = lines
            .iter()
            .rev()
            .find(|l| &*l.mount_point == b"/")
            .map(|l| String::from_utf8_lossy(&l.fs_type).into_owned())
            .unwrap();
        let mut config = sysinfo_config();
        if !config.filesystems.contains(&root_type) {
            config.filesystems.push(root_type);
        }
        // The proc root is ignored: sysinfo reads the agent's own system.
        let mut c = DiskSpace::new(config, &crate::test_support::fixture_env("proc-a")).unwrap();
        let mut batch = Batch::new();
        // Other filesystems of this machine may fail: the root must not.
        let result = c.collect(&mut batch).await;
        if let Err(e) = &result {
            assert!(!e.to_string().contains("sysinfo /:"), "{e}");
        }
        let p = published(&batch);
        assert!(
            c.mounts
                .iter()
                .any(|m| m.path == Path::new("/") && m.name == "root"),
            "{:?}",
            c.mounts
        );
        assert!(!p.keys().any(|k| k.contains("inodes")), "{p:?}");
        let s = rustix::fs::statvfs("/").unwrap();
        let total = (s.f_blocks * s.f_frsize) as f64;
        let avail = (s.f_bavail * s.f_frsize) as f64;
        let get = |m: &str| {
            *p.get(&format!("root.{m}"))
                .unwrap_or_else(|| panic!("no root.{m} in {p:?}"))
        };
        let (used, free) = (get("byte_used"), get("byte_free"));
        assert!(
            (used + free - total).abs() <= 0.01 * total,
            "{used} + {free} vs statvfs {total}"
        );
        // Allowing for writes in between.
        assert!(
            (get("byte_avail") - avail).abs() <= 0.01 * total,
            "{} vs statvfs {avail}",
            get("byte_avail")
        );
        assert_eq!(get("byte_avail"), free);
        let pf = get("byte_percentfree");
        assert!((pf - 100.0 * free / (used + free)).abs() < 1e-6, "{pf}");

        // A listing that does not return in time is given up on, and not
        // started again until it returns.
        let started = Instant::now();
        let err = list_off_thread(|| hanging_list(0), Duration::from_millis(50))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not return within 50ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut batch = Batch::new();
        let err = c.collect(&mut batch).await.unwrap_err().to_string();
        assert!(err.contains("still hung"), "{err}");
        assert!(batch.is_empty());
        release_hanging_list(0);
        wait_until_nothing_is_stuck();
        let mut batch = Batch::new();
        let _ = c.collect(&mut batch).await;
        assert!(published(&batch).contains_key("root.byte_avail"));

        // The agent dropping a run (its own timeout) while the listing
        // hangs: given up on the same way.
        let mut run = Box::pin(list_off_thread(
            || hanging_list(1),
            Duration::from_secs(3600),
        ));
        let mut cx = std::task::Context::from_waker(Waker::noop());
        assert!(run.as_mut().poll(&mut cx).is_pending());
        drop(run);
        assert_eq!(lock(&STUCK).count, 1);
        let mut batch = Batch::new();
        let err = c.collect(&mut batch).await.unwrap_err().to_string();
        assert!(err.contains("still hung"), "{err}");
        release_hanging_list(1);
        wait_until_nothing_is_stuck();
        let mut batch = Batch::new();
        let _ = c.collect(&mut batch).await;
        assert!(published(&batch).contains_key("root.byte_avail"));
    }
}
