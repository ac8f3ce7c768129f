//! A collector that panics, hangs or errors affects only itself: the others
//! keep publishing on time, and the failures are counted.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use carat::stats::get;
use support::bin::http_get;
use support::sink::LineSink;
use support::{collectors, config, Running};

const INTERVAL: f64 = 0.25;

fn agent_config(port: u16, key: &str, blocking_extra: &str) -> String {
    format!(
        r#"
[agent]
hostname = "iso"
interval = {INTERVAL}
splay = 0
self_metrics = false

[collector.sequence]
key = "{key}"

[collector.misbehave.panics]
mode = "panic"

[collector.misbehave.hangs]
mode = "hang"
timeout = 0.1

[collector.misbehave.fails]
mode = "error"
{blocking_extra}

[output.graphite]
port = {port}
reconnect_min = 0.1
reconnect_max = 0.5
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_collectors_do_not_delay_the_others() {
    let sink = LineSink::start();
    let key = "isolation-main";
    let running = Running::start(config(&agent_config(sink.port(), key, "")));
    let run_for = Duration::from_secs(4);
    tokio::time::sleep(run_for).await;
    let stats = running.stats.clone();
    running.stop(Duration::from_secs(15)).await;

    // The good collector ran on every tick: 4 s / 0.25 s = 16 ticks (the
    // first at 0), and each point reached the receiver. The agent's stop
    // waits until the receiver's host has acknowledged every line, which is
    // before the receiver's own thread has read the last of them: give it
    // that moment.
    let emitted = collectors::control(key).count();
    support::eventually(Duration::from_secs(5), || {
        sink.lines_for("servers.iso.sequence.value").len() >= emitted
    })
    .await;
    let good = sink.lines_for("servers.iso.sequence.value");
    assert!(
        emitted >= 14,
        "the healthy collector ran {emitted} times in 4 s at 0.25 s"
    );
    assert_eq!(
        good.len(),
        emitted,
        "every point of the healthy collector arrived"
    );
    let values: Vec<f64> = good.iter().map(|r| r.value).collect();
    let expected: Vec<f64> = (1..=emitted).map(|n| n as f64).collect();
    assert_eq!(values, expected, "in order, none missing");
    // On time: no gap between arrivals much longer than the interval.
    let worst_gap = good
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .max()
        .unwrap_or_default();
    assert!(
        worst_gap < Duration::from_secs_f64(INTERVAL * 4.0),
        "healthy collector delayed: largest gap between points {worst_gap:?}"
    );

    let good_stats = stats.collector("sequence").unwrap();
    assert_eq!(
        get(&good_stats.errors) + get(&good_stats.panics) + get(&good_stats.timeouts),
        0
    );
    assert!(!good_stats.failing.load(Ordering::Relaxed));

    let panics = stats.collector("misbehave.panics").unwrap();
    let hangs = stats.collector("misbehave.hangs").unwrap();
    let fails = stats.collector("misbehave.fails").unwrap();
    assert!(get(&panics.panics) >= 2, "panics counted and retried");
    assert!(get(&hangs.timeouts) >= 2, "hangs counted and retried");
    assert!(get(&fails.errors) >= 2, "errors counted and retried");
    for s in [panics, hangs, fails] {
        assert!(s.failing.load(Ordering::Relaxed));
        // Backoff: without it each would run on all 16 ticks.
        assert!(
            get(&s.runs) <= 8,
            "a failing collector must back off, it ran {} times in 16 ticks",
            get(&s.runs)
        );
    }
    // What the failing collector added before its error is published, under
    // its instance path.
    assert!(!sink
        .lines_for("servers.iso.misbehave.fails.partial")
        .is_empty());
    assert!(sink
        .lines_for("servers.iso.misbehave.panics.partial")
        .is_empty());
    assert!(sink.malformed().is_empty(), "{:?}", sink.malformed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_blocking_its_thread_does_not_stop_the_others() {
    let sink = LineSink::start();
    let key = "isolation-blocking";
    let extra = "[collector.misbehave.blocks]\nmode = \"block\"\nblock_ms = 150\ntimeout = 1\n";
    let running = Running::start(config(&agent_config(sink.port(), key, extra)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = running.stats.clone();
    running.stop(Duration::from_secs(15)).await;
    let emitted = collectors::control(key).count();
    assert!(
        emitted >= 10,
        "the healthy collector ran {emitted} times in 3 s"
    );
    // (As above: the receiver's thread may still be reading the last lines.)
    support::eventually(Duration::from_secs(5), || {
        sink.lines_for("servers.iso.sequence.value").len() >= emitted
    })
    .await;
    assert_eq!(sink.lines_for("servers.iso.sequence.value").len(), emitted);
    let blocks = stats.collector("misbehave.blocks").unwrap();
    assert!(get(&blocks.runs) >= 8 && get(&blocks.errors) == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_is_counted_without_backing_off_the_rest() {
    let sink = LineSink::start();
    let key = "isolation-part";
    let extra = "[collector.misbehave.half]\nmode = \"fail_part\"\n";
    let running = Running::start(config(&agent_config(sink.port(), key, extra)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = running.stats.clone();
    running.stop(Duration::from_secs(15)).await;
    let half = stats.collector("misbehave.half").unwrap();
    let runs = get(&half.runs);
    // Not backed off: it ran on (nearly) every one of the 12 ticks, unlike
    // a collector whose whole run fails (at most 8 in 16 ticks above).
    assert!(runs >= 10, "ran {runs} times in 12 ticks");
    assert_eq!(get(&half.errors), runs, "each failed part is counted");
    let parse = half
        .errors_by_kind()
        .find(|(label, _)| *label == "parse")
        .map(|(_, n)| n);
    assert_eq!(parse, Some(runs), "under its kind");
    assert!(
        half.failing.load(Ordering::Relaxed),
        "unhealthy while a part fails"
    );
    support::eventually(Duration::from_secs(5), || {
        sink.lines_for("servers.iso.misbehave.half.whole").len() as u64 >= runs
    })
    .await;
    assert_eq!(
        sink.lines_for("servers.iso.misbehave.half.whole").len() as u64,
        runs,
        "the rest of every run is published"
    );
}

/// `GET path` on 127.0.0.1:`port`, returning the status code and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoint_names_what_is_failing() {
    let sink = LineSink::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = format!(
        r#"
[agent]
hostname = "health"
interval = 0.25
splay = 0
health_listen = "127.0.0.1:{port}"

[collector.sequence]
key = "health"

[collector.misbehave.fails]
mode = "error"

[output.graphite]
port = {sink}
"#,
        sink = sink.port()
    );
    let running = Running::start(config(&toml));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/health"))
        .await
        .unwrap();
    let (missing, _) = tokio::task::spawn_blocking(move || http_get(port, "/nope"))
        .await
        .unwrap();
    running.stop(Duration::from_secs(10)).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("collector misbehave.fails is failing"),
        "{body}"
    );
    assert!(body.contains("collector sequence: ok"), "{body}");
    assert!(body.contains("output graphite: connected"), "{body}");
    assert_eq!(missing, 404);

    // Only healthy collectors and a reachable output: 200.
    let port2 = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let healthy = toml
        .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{port2}"))
        .replace("[collector.misbehave.fails]\nmode = \"error\"\n", "");
    let running = Running::start(config(&healthy));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port2, "/health"))
        .await
        .unwrap();
    running.stop(Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("OK\n"), "{body}");
}
