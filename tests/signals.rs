//! Signals, sent to the real binary while it delivers to a real receiver:
//! only SIGTERM, SIGINT, SIGQUIT and SIGXCPU end it, and always through the
//! orderly stop (exit 0, buffers delivered). SIGHUP reloads the
//! configuration; the other signals that would kill a process are ignored.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::bin::{carat, wait_exit};
use support::sink::LineSink;

/// Logged once a SIGHUP's reload is applied (`tests/reload.rs` tests what
/// it does).
const RELOAD_MESSAGE: &str = "reload: configuration read from";

/// `carat run` delivering `memory` every 200 ms to `sink`, and its log lines
/// as they come.
fn start(sink: &LineSink, dir: &tempfile::TempDir) -> (Child, Arc<Mutex<Vec<String>>>) {
    let path = dir.path().join("carat.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nhostname = \"sig\"\ninterval = 0.2\nsplay = 0\nself_metrics = false\n\
             [collector.memory]\n[output.graphite]\nport = {}\n",
            sink.port()
        ),
    )
    .unwrap();
    let mut child = carat()
        .arg("run")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    (child, log)
}

fn send(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill() only sends a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

/// The MemTotal lines received so far.
fn delivered(sink: &LineSink) -> usize {
    sink.lines_for("servers.sig.memory.MemTotal").len()
}

/// Waits until `check` holds, at most `limit`.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

fn count(log: &Mutex<Vec<String>>, text: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(text))
        .count()
}

#[test]
fn sighup_and_stray_signals_do_not_stop_the_agent() {
    let sink = LineSink::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, log) = start(&sink, &dir);
    assert!(
        wait_for(Duration::from_secs(10), || delivered(&sink) >= 2),
        "no delivery before the signals"
    );

    send(&child, libc::SIGHUP);
    let ignored = [
        ("SIGUSR1", libc::SIGUSR1),
        ("SIGUSR2", libc::SIGUSR2),
        ("SIGALRM", libc::SIGALRM),
        ("SIGVTALRM", libc::SIGVTALRM),
        ("SIGPROF", libc::SIGPROF),
        ("SIGIO", libc::SIGIO),
        ("SIGPWR", libc::SIGPWR),
        ("SIGXFSZ", libc::SIGXFSZ),
        ("SIGRTMIN", libc::SIGRTMIN()),
        ("SIGRTMAX", libc::SIGRTMAX()),
    ];
    for (name, number) in ignored {
        // One at a time: the kernel merges a signal sent while the same one
        // is pending, and each is to be logged.
        std::thread::sleep(Duration::from_millis(100));
        send(&child, number);
        assert!(
            wait_for(Duration::from_secs(5), || count(
                &log,
                &format!("{name} received and ignored")
            ) == 1),
            "{name} was not logged as ignored: {:?}",
            log.lock().unwrap()
        );
        assert!(child.try_wait().unwrap().is_none(), "{name} ended carat");
    }

    // Still collecting and delivering after all of them.
    let before = delivered(&sink);
    assert!(
        wait_for(Duration::from_secs(5), || delivered(&sink) >= before + 3),
        "delivery stopped after the signals: {} then {}",
        before,
        delivered(&sink)
    );
    assert!(child.try_wait().unwrap().is_none(), "carat ended");
    assert_eq!(count(&log, RELOAD_MESSAGE), 1, "{:?}", log.lock().unwrap());

    send(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(sink.malformed().is_empty());
    assert_eq!(count(&log, "SIGTERM received"), 1);
}

#[test]
fn sigquit_stops_in_order_and_delivers() {
    let sink = LineSink::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, log) = start(&sink, &dir);
    assert!(
        wait_for(Duration::from_secs(10), || delivered(&sink) >= 1),
        "no delivery"
    );
    send(&child, libc::SIGQUIT);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(wait_for(Duration::from_secs(2), || count(&log, "stopped") == 1));
    assert_eq!(count(&log, "SIGQUIT received"), 1);
}
