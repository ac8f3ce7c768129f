//! `statvfs(3)` on worker threads, with a deadline, never twice at once on
//! a mount point that hangs: [`carat_collector::blocking::Pool`], one for
//! the process.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use carat_collector::blocking::{Failure, Job, Pool};

/// At most this many statvfs worker threads exist at once in the process
/// (busy or stuck in a call that never returned), whatever the number of
/// instances and mounts. Each stuck thread is a mount point that hangs.
pub const MAX_THREADS: usize = 32;

/// Worker threads started per run (fewer when there are fewer mounts). A
/// call that hangs holds one; the others go on with the remaining mounts.
const WORKERS_PER_RUN: usize = 4;

/// Stack of the worker threads: they make one system call.
const THREAD_STACK: usize = 256 * 1024;

/// The fields of a `statvfs` result the collector uses. `frsize` is the
/// unit of the block counts (the fragment size, or the block size when the
/// filesystem reports no fragment size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FsStats {
    pub(super) frsize: u64,
    pub(super) blocks: u64,
    pub(super) bfree: u64,
    pub(super) bavail: u64,
    pub(super) files: u64,
    pub(super) ffree: u64,
    pub(super) favail: u64,
}

/// A `statvfs` function: the real one, or a simulation in tests.
pub(super) type StatFn = dyn Fn(&Path) -> io::Result<FsStats> + Send + Sync;

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

/// Runs `statvfs` calls on the threads of a pool that remembers, for the
/// whole process, the mount points whose call has not returned yet.
///
/// The real prober is one per process ([`Prober::shared`]), so that the
/// record of hung calls survives the agent rebuilding a collector (after a
/// run it abandoned) and is shared by every `diskspace` instance.
pub(super) struct Prober {
    stat: Arc<StatFn>,
    pool: Arc<Pool<PathBuf>>,
}

impl Prober {
    /// A prober of `stat` with a pool of its own, of at most `max_threads`.
    pub(super) fn new(stat: Arc<StatFn>, max_threads: usize) -> Prober {
        Prober {
            stat,
            pool: Arc::new(Pool::new("statvfs", max_threads).with_stack_size(THREAD_STACK)),
        }
    }

    /// The process's prober of the real `statvfs`.
    pub(super) fn shared() -> Arc<Prober> {
        static SHARED: OnceLock<Arc<Prober>> = OnceLock::new();
        Arc::clone(SHARED.get_or_init(|| Arc::new(Prober::new(Arc::new(statvfs), MAX_THREADS))))
    }

    /// Worker threads alive.
    #[cfg(test)]
    pub(super) fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Measures `paths`, taken in the order `order` gives (indices into
    /// `paths`), waiting at most `timeout` from now without blocking the
    /// caller's thread. The results are in the order of `paths`.
    pub(super) async fn measure(
        &self,
        paths: &[PathBuf],
        order: &[usize],
        timeout: Duration,
    ) -> Vec<Result<io::Result<FsStats>, Failure>> {
        let order: Vec<usize> = order.iter().copied().filter(|&i| i < paths.len()).collect();
        let jobs: Vec<(PathBuf, Job<io::Result<FsStats>>)> = order
            .iter()
            .map(|&i| {
                let stat = Arc::clone(&self.stat);
                let path = paths[i].clone();
                let key = path.clone();
                let job: Job<io::Result<FsStats>> = Box::new(move || stat(&path));
                (key, job)
            })
            .collect();
        let taken = self.pool.run_all(jobs, WORKERS_PER_RUN, timeout).await;
        let mut results: Vec<Option<Result<io::Result<FsStats>, Failure>>> =
            paths.iter().map(|_| None).collect();
        for (i, result) in order.into_iter().zip(taken) {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Failure::NotStarted(timeout))))
            .collect()
    }
}
