//! systemd's notify protocol: with `NOTIFY_SOCKET` and `WATCHDOG_USEC` set
//! (as systemd sets them for a `Type=notify` unit with `WatchdogSec=`), the
//! agent reports READY once started and WATCHDOG keep-alives while its
//! runtime makes progress; with every worker of the runtime blocked on
//! purpose, the keep-alives stop (so systemd would restart it); STOPPING
//! comes when it stops.
//!
//! One test in its own file: it sets environment variables of the process.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// What arrived on the notify socket, with when.
fn receive(socket: &UnixDatagram, until: Instant, out: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the notify socket: {e}"),
        }
    }
}

#[test]
fn ready_then_keep_alives_that_stop_while_the_runtime_is_wedged() {
    let dir = support::server::temp_dir("watchdog");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    // A watchdog of 400 ms: a keep-alive every 200 ms while alive.
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "400000");
    std::env::remove_var("WATCHDOG_PID");

    // Three instances that behave for 4 runs (about 2 s at 0.5 s), then
    // each blocks its worker thread for 3 s, once: with two workers, the
    // whole runtime is stuck from about 2 s to 5 s.
    let config = support::config(
        r#"
[agent]
interval = 0.5
splay = 0
self_metrics = false

[collector.misbehave.a]
mode = "block"
block_ms = 3000
calm_runs = 4
bad_runs = 1
timeout = 10
[collector.misbehave.b]
mode = "block"
block_ms = 3000
calm_runs = 4
bad_runs = 1
timeout = 10
[collector.misbehave.c]
mode = "block"
block_ms = 3000
calm_runs = 4
bad_runs = 1
timeout = 10

[output.stdout]
"#,
    );
    let started = Instant::now();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let agent = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(carat::Agent::new(config).run_until(async move {
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
        }));
    });
    let mut got = Vec::new();
    receive(&socket, started + Duration::from_secs(7), &mut got);
    stop_tx.send(()).unwrap();
    receive(&socket, Instant::now() + Duration::from_secs(3), &mut got);
    agent.join().unwrap();

    let at = |i: Instant| i.duration_since(started);
    let keep_alives: Vec<Duration> = got
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| at(*t))
        .collect();
    assert!(
        got.first().is_some_and(|(_, m)| m.contains("READY=1")),
        "READY first: {got:?}"
    );
    // Alive while calm: at least 5 keep-alives in the first 1.8 s.
    let calm = keep_alives
        .iter()
        .filter(|t| **t < Duration::from_millis(1800))
        .count();
    assert!(calm >= 5, "keep-alives while calm: {keep_alives:?}");
    // Wedged from about 2 s to 5 s: a gap of more than the whole watchdog
    // period (systemd would have restarted it) ...
    let gaps = keep_alives.windows(2).map(|w| w[1] - w[0]);
    let longest = gaps.max().unwrap_or_default();
    assert!(
        longest >= Duration::from_millis(1500),
        "the keep-alives went on while the runtime was wedged: {keep_alives:?}"
    );
    // ... and alive again once the workers are free.
    assert!(
        keep_alives.iter().any(|t| *t > Duration::from_millis(5500)),
        "no keep-alive after the wedge: {keep_alives:?}"
    );
    assert!(
        got.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "STOPPING on stop: {got:?}"
    );
}
