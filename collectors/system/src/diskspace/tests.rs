//! Tests of the `diskspace` collector as a whole: runs over a simulated
//! `statvfs` (hung, failing and slow mounts), the recorded fixtures, this
//! machine, and the `sysinfo` source.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread;
use std::time::{Duration, Instant};

use carat_collector::testing::Harness;
use carat_collector::{Batch, Collector, CollectorError, Environment};

use super::mounts::parse_mounts;
use super::statvfs::{FsStats, Prober, MAX_THREADS};
use super::sysinfo_source::{list_off_thread, listings, SysinfoDisk};
use super::testing::{build, close, published};
use super::{DiskSpace, DiskSpaceConfig};
use crate::source::Source;
use crate::test_support::{assert_metric, byte_units, source_configs, source_error, ProcDir};

/// Locks `m`, going on when a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    Arc::new(Prober::new(
        Arc::new(move |p: &Path| fs.stat(p)),
        max_threads,
    ))
}

/// A collector over `mounts` (the text of a mounts file) using `prober`.
fn fake_collector(dir: &ProcDir, mounts: &str, prober: &Arc<Prober>, timeout: f64) -> DiskSpace {
    dir.write("mounts", mounts);
    let config = DiskSpaceConfig {
        statvfs_timeout: Duration::from_secs_f64(timeout),
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
        byte_unit: byte_units(&["byte", "gigabyte"]),
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

/// `config` with the type of this machine's root filesystem added to its
/// `filesystems`: it may not be in Diamond's list (overlay in a container).
#[cfg(unix)]
fn with_root_type(mut config: DiskSpaceConfig) -> DiskSpaceConfig {
    let mounts = std::fs::read("/proc/mounts").unwrap();
    let mut lines = Vec::new();
    parse_mounts(Path::new("/proc/mounts"), &mounts, &mut lines).unwrap();
    let root_type = lines
        .iter()
        .rev()
        .find(|l| &*l.mount_point == b"/")
        .map(|l| String::from_utf8_lossy(&l.fs_type).into_owned())
        .unwrap();
    if !config.filesystems.contains(&root_type) {
        config.filesystems.push(root_type);
    }
    config
}

#[cfg(unix)]
#[tokio::test]
async fn real_mounts_and_statvfs() {
    let config = with_root_type(DiskSpaceConfig::default());
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
        byte_unit: byte_units(&["byte", "kilobyte"]),
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

/// Waits until `busy` (0 or 1) of the process's `sysinfo` listings are
/// under way, and, for none, their thread has ended.
#[cfg(target_os = "linux")]
fn wait_until_listings_are(busy: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while listings().busy() != busy || (busy == 0 && listings().threads() != 0) {
        assert!(
            Instant::now() < until,
            "{} listings under way, expected {busy}",
            listings().busy()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

// One test, so that its hung listing (process-wide) cannot fail another.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn sysinfo_source_on_this_machine() {
    let config = with_root_type(sysinfo_config());
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
    wait_until_listings_are(0);
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
    // The listing goes on without anyone waiting for it: it is still
    // under way (once its thread has started it).
    wait_until_listings_are(1);
    let mut batch = Batch::new();
    let err = c.collect(&mut batch).await.unwrap_err().to_string();
    assert!(err.contains("still hung"), "{err}");
    release_hanging_list(1);
    wait_until_listings_are(0);
    let mut batch = Batch::new();
    let _ = c.collect(&mut batch).await;
    assert!(published(&batch).contains_key("root.byte_avail"));
}
