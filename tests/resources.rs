//! carat's memory and file descriptors stay flat: the agent runs every
//! system collector at a 20 ms interval (hundreds of cycles a second run,
//! like months of a 10 s interval compressed) into a TCP receiver, and its
//! open descriptors and resident memory are compared after warm-up and at the
//! end. A leak of one descriptor or a few hundred bytes per cycle fails.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::sink::LineSink;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// The agent's long-lived descriptors: the fewest open over 20 looks 50 ms
/// apart. A collector holds a few descriptors only while it runs (the
/// process scan opens `/proc/<pid>` directories), and at a 20 ms interval one
/// look alone often catches a run in progress.
fn fds(pid: u32) -> usize {
    (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .count()
        })
        .min()
        .unwrap_or(0)
}

#[test]
fn descriptors_and_memory_stay_flat_over_thousands_of_cycles() {
    let sink = LineSink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("carat.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
hostname = "flat"
interval = 0.02
splay = 0

[collector.cpu]
[collector.memory]
[collector.loadavg]
[collector.uptime]
[collector.diskusage]
[collector.network]
[collector.vmstat]
[collector.sockets]
[collector.tcp]
[collector.process]
[[collector.process.groups]]
name = "self"
selfmon = true

# In flight (written, not yet settled) the output keeps up to a tenth of
# max_buffered lines: a bounded window, not a leak, but at 20 ms runs the
# default one (10,000 lines) takes a while to reach its steady size and
# would blur the picture.
[output.graphite]
port = {}
max_buffered = 1000
"#,
            sink.port()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_carat"))
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(4));
    let (fds_warm, rss_warm) = (fds(pid), rss_kib(pid));
    let lines_warm = sink.lines().len();
    std::thread::sleep(Duration::from_secs(12));
    let (fds_end, rss_end) = (fds(pid), rss_kib(pid));
    let lines_end = sink.lines().len();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    eprintln!(
        "fds {fds_warm} -> {fds_end}, rss {rss_warm} -> {rss_end} KiB, {} lines in 12 s",
        lines_end - lines_warm
    );

    // The agent was really working: 12 s at 20 ms is ~600 cycles of each
    // collector, well over 10,000 lines.
    assert!(
        lines_end - lines_warm > 10_000,
        "only {} lines in 12 s",
        lines_end - lines_warm
    );
    assert_eq!(
        fds_end, fds_warm,
        "open descriptors changed from {fds_warm} to {fds_end}"
    );
    // Allocator noise is a few pages; a per-cycle leak of 200 bytes in each
    // of the ten collectors would be over 1 MiB in 600 cycles.
    assert!(
        rss_end <= rss_warm + 256,
        "resident memory grew from {rss_warm} KiB to {rss_end} KiB"
    );
}
