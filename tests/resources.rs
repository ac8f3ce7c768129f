//! carat's memory and file descriptors stay flat: the agent runs every
//! system collector at a 20 ms interval (hundreds of cycles a second run,
//! like months of a 10 s interval compressed) into a TCP receiver, and its
//! open descriptors and resident memory are compared after warm-up and at the
//! end. A leak of one descriptor or a few hundred bytes per cycle fails.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::agent::rss_kib;
use support::sink::LineSink;

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

/// The agent's descriptors and memory at one moment, and the lines it had
/// delivered by then.
struct Snapshot {
    fds: usize,
    rss_kib: u64,
    lines: usize,
}

impl Snapshot {
    fn of(pid: u32, sink: &LineSink) -> Snapshot {
        Snapshot {
            fds: fds(pid),
            rss_kib: rss_kib(pid),
            lines: sink.lines().len(),
        }
    }

    /// Since `warm`, over `what`: more than `min_lines` lines delivered (the
    /// agent was working), the same descriptors open, and resident memory
    /// grown by at most `rss_slack_kib`.
    fn assert_flat_since(&self, warm: &Snapshot, min_lines: usize, rss_slack_kib: u64, what: &str) {
        let lines = self.lines - warm.lines;
        eprintln!(
            "over {what}: fds {} -> {}, rss {} -> {} KiB, {lines} lines",
            warm.fds, self.fds, warm.rss_kib, self.rss_kib
        );
        assert!(lines > min_lines, "only {lines} lines over {what}");
        assert_eq!(
            self.fds, warm.fds,
            "open descriptors changed from {} to {} over {what}",
            warm.fds, self.fds
        );
        assert!(
            self.rss_kib <= warm.rss_kib + rss_slack_kib,
            "resident memory grew from {} KiB to {} KiB over {what}",
            warm.rss_kib,
            self.rss_kib
        );
    }
}

/// SIGTERM, and an orderly exit.
fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
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
    let child = Command::new(env!("CARGO_BIN_EXE_carat"))
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(4));
    let warm = Snapshot::of(pid, &sink);
    std::thread::sleep(Duration::from_secs(12));
    let end = Snapshot::of(pid, &sink);
    stop(child);
    // The agent was really working: 12 s at 20 ms is ~600 cycles of each
    // collector, well over 10,000 lines. Allocator noise is a few pages; a
    // per-cycle leak of 200 bytes in each of the ten collectors would be
    // over 1 MiB in 600 cycles.
    end.assert_flat_since(&warm, 10_000, 256, "12 s of cycles");
}

#[test]
fn descriptors_and_memory_stay_flat_over_hundreds_of_reloads() {
    let sink = LineSink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("carat.toml");
    let health = [support::agent::free_port(), support::agent::free_port()];
    // Each reload changes a collector (cpu comes and goes), the output (its
    // buffer bound: a new connection, the old one's buffer handed over) and
    // the health endpoint's port.
    let write = |round: usize| {
        let odd = round % 2 == 1;
        std::fs::write(
            &config,
            format!(
                r#"
[agent]
hostname = "reloads"
interval = 0.05
splay = 0
health_listen = "127.0.0.1:{}"

[collector.memory]
[collector.loadavg]
{}
[output.graphite]
port = {}
max_buffered = {}
"#,
                health[round % 2],
                if odd { "[collector.cpu]" } else { "" },
                sink.port(),
                1000 + round % 2
            ),
        )
        .unwrap();
    };
    write(0);
    let log = dir.path().join("carat.log");
    let child = Command::new(env!("CARGO_BIN_EXE_carat"))
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let hup = |round: usize| {
        write(round);
        let rc = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(rc.success());
        std::thread::sleep(Duration::from_millis(40));
    };
    std::thread::sleep(Duration::from_secs(1));
    // Warm up: allocations that are made once (thread stacks, buffers at
    // their working size) are made.
    for round in 1..=40 {
        hup(round);
    }
    std::thread::sleep(Duration::from_secs(1));
    let warm = Snapshot::of(pid, &sink);
    let rounds = 300;
    for round in 41..=40 + rounds {
        hup(round);
    }
    std::thread::sleep(Duration::from_secs(1));
    let end = Snapshot::of(pid, &sink);
    stop(child);
    let log = std::fs::read_to_string(&log).unwrap();
    let reloads = log.matches("reload: configuration read from").count();
    eprintln!("{reloads} reloads applied");
    // Signals sent while one is pending merge into one: most are applied.
    assert!(
        reloads >= (40 + rounds) * 9 / 10,
        "only {reloads} reloads applied"
    );
    assert!(!log.contains("reload refused"), "{log}");
    end.assert_flat_since(&warm, 1000, 512, &format!("{rounds} reloads"));
}
