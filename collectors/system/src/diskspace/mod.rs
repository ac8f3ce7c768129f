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
//! at once ([`carat_collector::blocking::Pool`] does this).
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
//! waited for at most `statvfs_timeout`, one listing at a time in the
//! process; one that has not returned (a hung network filesystem) is not
//! started again until it does. On Linux,
//! `sysinfo` leaves out network filesystems (`nfs`, `cifs`) and `tmpfs`.

// One concern a module: the options, reading /proc/mounts, choosing and
// naming the mounts, their labels, statvfs on worker threads, the metrics,
// and the sysinfo source; the collector below puts them together.
mod config;
mod labels;
mod metrics;
mod mounts;
mod select;
mod statvfs;
mod sysinfo_source;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use carat_collector::{Batch, Collector, CollectorError, Environment};

use crate::source::Reader;

pub use config::{
    DiskSpaceConfig, DEFAULT_EXCLUDE_FILTERS, DEFAULT_FILESYSTEMS, STATVFS_TIMEOUT_RANGE,
};
pub use statvfs::MAX_THREADS;

use labels::{Labels, LABELS_DIR};
use metrics::{publish_stats, Unit};
use mounts::{parse_mounts, shown, MountLine};
use select::{select_mounts, Mount, MountFilter};
use statvfs::Prober;

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

    fn new(config: DiskSpaceConfig, env: &Environment) -> Result<Self, CollectorError> {
        if config.filesystems.is_empty() {
            return Err(CollectorError::option(
                "filesystems",
                "is empty: no filesystem would ever be measured",
            ));
        }
        // A unit named twice was dropped when the option was read.
        let units = config.byte_unit.iter().copied().map(Unit::new).collect();
        let timeout =
            STATVFS_TIMEOUT_RANGE.check_option("statvfs_timeout", config.statvfs_timeout)?;
        let sysinfo = config.source.reader(Self::KIND)? == Reader::Sysinfo;
        Ok(DiskSpace {
            sysinfo,
            mounts_path: env.proc_path("mounts"),
            labels_dir: config.use_labels.then(|| PathBuf::from(LABELS_DIR)),
            filter: MountFilter {
                filesystems: config.filesystems,
                exclude: config.exclude_filters,
            },
            units,
            timeout,
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
        let paths: Vec<PathBuf> = self.mounts.iter().map(|m| m.path.clone()).collect();
        // Local filesystems first: a dead NFS server then cannot keep them
        // waiting for a worker.
        let mut order: Vec<usize> = (0..self.mounts.len()).collect();
        order.sort_by_key(|&i| self.mounts[i].remote);
        let results = self.prober.measure(&paths, &order, self.timeout).await;
        for (mount, result) in self.mounts.iter().zip(results) {
            let why = match result {
                Ok(Ok(stats)) => {
                    publish_stats(batch, &mount.name, &stats, &self.units);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(failure) => failure.to_string(),
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
        choose(
            &lines,
            &path.display().to_string(),
            &self.filter,
            self.labels_dir.as_deref(),
            &mut self.mounts,
        )
    }
}

/// Chooses the mounts to measure from `lines`, read from `origin`, into
/// `mounts`, naming them by their label in `labels_dir` when there is one.
/// Returns the mounts left out because of a name clash; an error when there
/// is nothing to measure at all.
fn choose(
    lines: &[MountLine<'_>],
    origin: &str,
    filter: &MountFilter,
    labels_dir: Option<&std::path::Path>,
    mounts: &mut Vec<Mount>,
) -> Result<Vec<String>, CollectorError> {
    let labels = labels_dir.map(Labels::read).unwrap_or_default();
    let mut problems = Vec::new();
    select_mounts(
        lines,
        filter,
        &|device| labels.of(device),
        mounts,
        &mut problems,
    );
    if mounts.is_empty() && problems.is_empty() {
        return Err(nothing_to_measure(origin, filter, lines));
    }
    Ok(problems)
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
