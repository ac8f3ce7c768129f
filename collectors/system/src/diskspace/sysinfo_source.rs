//! The `sysinfo` source: the mounted filesystems and their sizes from the
//! `sysinfo` crate's list of disks (see the module documentation, "Other
//! systems"), listed on a thread with a deadline.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use carat_collector::blocking::{Failure, Pool};
use carat_collector::{Batch, CollectorError};
use sysinfo::{DiskRefreshKind, Disks};

use super::metrics::publish_sizes;
use super::mounts::MountLine;
use super::select::path_from_bytes;
use super::{choose, DiskSpace, NotMeasured};
use crate::source::sysinfo_error;

/// What `sysinfo` tells of one mounted filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SysinfoDisk {
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
pub(super) fn list_sysinfo_disks() -> Result<Vec<SysinfoDisk>, CollectorError> {
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
    pub(super) fn new(
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

/// The pool of the `sysinfo` listings, one for the process: one listing
/// at a time, and while one that was given up on (not returned in time: a
/// hung filesystem) has not returned, no other is started, by any instance.
pub(super) fn listings() -> &'static Arc<Pool<()>> {
    static LISTINGS: OnceLock<Arc<Pool<()>>> = OnceLock::new();
    // sysinfo's own stack needs (macOS' CoreFoundation) are unknown: the
    // default stack size.
    LISTINGS.get_or_init(|| Arc::new(Pool::new("sysinfo", 1)))
}

/// Runs `list` on the thread of [`listings`] and waits for it, at most
/// `timeout`, without blocking the caller's thread. A listing given up on
/// keeps its thread; until it returns, no other is started.
pub(super) async fn list_off_thread(
    list: fn() -> Result<Vec<SysinfoDisk>, CollectorError>,
    timeout: Duration,
) -> Result<Vec<SysinfoDisk>, CollectorError> {
    let failed = |message: String| Err(CollectorError::Other(message.into()));
    match listings().run((), timeout, list).await {
        Ok(result) => result,
        Err(Failure::TimedOut(_)) => failed(format!(
            "sysinfo: listing the filesystems did not return within {timeout:?} \
             (statvfs_timeout); not retried until it does"
        )),
        Err(Failure::StillRunning { since }) => failed(format!(
            "sysinfo: still hung: a listing of the filesystems started {}s ago has not \
             returned; not retried until it does",
            since.elapsed().as_secs()
        )),
        Err(Failure::Panicked { .. }) => {
            failed("sysinfo panicked while listing the filesystems".to_owned())
        }
        Err(other) => failed(format!("sysinfo: {other}")),
    }
}

impl DiskSpace {
    /// A run with `sysinfo` as the source.
    pub(super) async fn collect_sysinfo(
        &mut self,
        batch: &mut Batch,
    ) -> Result<(), CollectorError> {
        let disks = list_off_thread(list_sysinfo_disks, self.timeout).await?;
        self.publish_sysinfo(batch, &disks)
    }

    /// Chooses, names and publishes the filesystems of `disks` as the
    /// `/proc` source does those of the mounts file.
    pub(super) fn publish_sysinfo(
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
        let mut problems = choose(
            &lines,
            "sysinfo",
            &self.filter,
            self.labels_dir.as_deref(),
            &mut self.mounts,
        )?;
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
