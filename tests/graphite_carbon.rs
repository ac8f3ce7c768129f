//! End to end against a real carbon-cache: metrics land in whisper with the
//! right values, and a carbon outage loses nothing within the buffer's bound
//! and exactly the counted drops beyond it.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carat::stats::get;
use support::carbon::Carbon;
use support::{blocking, collectors, config, eventually, sequence_toml, Running};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn meminfo_kib(key: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_metrics_reach_whisper_with_their_values() {
    let carbon = blocking(Carbon::start);
    let running = Running::start(config(&format!(
        r#"
[agent]
hostname = "e2e"
interval = 1
splay = 0

[collector.cpu]
[collector.memory]
[collector.loadavg]

[output.graphite]
port = {}
"#,
        carbon.line_port()
    )));
    let wait = Duration::from_secs(20);
    let idle = blocking(|| carbon.wait_for("servers.e2e.cpu.total.idle", 2, wait));
    let mem_total = blocking(|| carbon.wait_for("servers.e2e.memory.MemTotal", 1, wait));
    let load = blocking(|| carbon.wait_for("servers.e2e.loadavg.01", 1, wait));
    let runs = blocking(|| carbon.wait_for("servers.e2e.carat.collector.cpu.runs", 4, wait));
    let sent = blocking(|| carbon.wait_for("servers.e2e.carat.output.graphite.sent", 1, wait));
    running.stop(Duration::from_secs(15)).await;

    assert_eq!(
        mem_total[0].1,
        meminfo_kib("MemTotal") * 1024.0,
        "MemTotal in bytes"
    );
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    for &(ts, v) in &idle {
        assert!((0.0..=100.0 * cpus + 0.5).contains(&v), "idle {v} at {ts}");
        assert!(
            (now() - 120..=now() + 1).contains(&ts),
            "timestamp {ts} is the sampling time"
        );
    }
    // The states of one sample sum to 100 × CPUs.
    let (ts, _) = idle[0];
    let states = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    let sum: f64 = states
        .iter()
        .map(|s| {
            let points = carbon.fetch(&format!("servers.e2e.cpu.total.{s}"));
            points.iter().find(|p| p.0 == ts).map_or(0.0, |p| p.1)
        })
        .sum();
    assert!(
        (sum - 100.0 * cpus).abs() < 1.0,
        "cpu states sum to {sum}, expected {}",
        100.0 * cpus
    );
    assert!(load[0].1 >= 0.0);
    // Self-metrics: runs is a rate per second; at a 1 s interval about 1 on
    // average (one sample may see two runs or none, as ticks interleave).
    let mean = runs.iter().map(|p| p.1).sum::<f64>() / runs.len() as f64;
    assert!(mean > 0.5 && mean < 1.5, "{runs:?}");
    assert!(sent.iter().any(|&(_, r)| r > 0.0));
    for path in carbon.metric_paths() {
        assert!(path.starts_with("servers.e2e."), "unexpected path {path}");
    }
}

/// Starts an agent that runs the `sequence` collector every second into
/// `carbon`, with the given buffer bound.
fn sequence_agent(carbon: &Carbon, key: &str, max_buffered: usize) -> Running {
    Running::start(config(&sequence_toml(
        "outage",
        key,
        &format!(
            r#"[output.graphite]
port = {port}
batch_size = 1
max_buffered = {max_buffered}
reconnect_min = 0.2
reconnect_max = 1
"#,
            port = carbon.line_port()
        ),
    )))
}

const PATH: &str = "servers.outage.sequence.value";

/// Pauses the collector and waits until whisper holds every point it
/// published: carbon drops what it has not written when stopped, and that
/// loss is carbon's, not the agent's.
async fn settle(carbon: &Carbon, control: &collectors::Control) {
    control.paused.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expected = control.expected_points();
    let arrived = eventually(Duration::from_secs(15), || {
        blocking(|| carbon.fetch(PATH)) == expected
    })
    .await;
    assert!(
        arrived,
        "whisper {:?} != published {expected:?}",
        carbon.fetch(PATH)
    );
}

/// Pauses the collector and waits up to `limit` until whisper holds the
/// newest point it published: after an outage that overflowed the buffer,
/// [`settle`] would wait in vain, since some points were dropped.
async fn pause_and_wait_for_newest(
    carbon: &Carbon,
    control: &collectors::Control,
    limit: Duration,
) {
    control.paused.store(true, Ordering::SeqCst);
    let newest = control.count() as f64;
    let arrived = eventually(limit, || {
        blocking(|| carbon.fetch(PATH))
            .iter()
            .any(|p| p.1 == newest)
    })
    .await;
    assert!(arrived, "the newest point arrives after the outage");
}

/// The values the collector published (the last of each second, as whisper
/// keeps it) and the values whisper holds.
fn published_and_stored(
    carbon: &Carbon,
    control: &collectors::Control,
) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let published = control
        .expected_points()
        .iter()
        .map(|p| p.1 as u64)
        .collect();
    let stored = carbon.fetch(PATH).iter().map(|p| p.1 as u64).collect();
    (published, stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_within_the_buffer_loses_nothing() {
    let mut carbon = blocking(Carbon::start);
    let key = "outage-no-loss";
    let control = collectors::control(key);
    let running = sequence_agent(&carbon, key, 1000);
    let stats = running.stats.output("graphite").unwrap().clone();
    blocking(|| carbon.wait_for(PATH, 3, Duration::from_secs(20)));
    settle(&carbon, &control).await;

    blocking(|| carbon.stop());
    let before = control.count();
    control.paused.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = control.count() - before;
    assert!(
        during >= 4,
        "collected {during} points while carbon was down"
    );
    assert!(
        !stats.connected.load(Ordering::Relaxed),
        "the agent noticed carbon is gone"
    );
    assert!(get(&stats.buffered) >= 4, "points wait in the buffer");

    blocking(|| carbon.restart());
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle(&carbon, &control).await;
    running.stop(Duration::from_secs(15)).await;

    assert_eq!(get(&stats.dropped), 0);
    assert!(get(&stats.reconnects) >= 1);
    assert_eq!(get(&stats.buffered), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_beyond_the_buffer_loses_exactly_the_counted_drops() {
    let mut carbon = blocking(Carbon::start);
    let key = "outage-overflow";
    let control = collectors::control(key);
    let max_buffered = 3;
    let running = sequence_agent(&carbon, key, max_buffered);
    let stats = running.stats.output("graphite").unwrap().clone();
    blocking(|| carbon.wait_for(PATH, 2, Duration::from_secs(20)));
    settle(&carbon, &control).await;
    let last_before = control.count() as u64;

    blocking(|| carbon.stop());
    control.paused.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(8)).await;
    blocking(|| carbon.restart());
    // Settling compares all published points with whisper: it must not match,
    // some were dropped. Wait for delivery of the newest instead.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pause_and_wait_for_newest(&carbon, &control, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.stop(Duration::from_secs(15)).await;

    let (published, stored) = published_and_stored(&carbon, &control);
    let lost: Vec<u64> = published.difference(&stored).copied().collect();
    let dropped = get(&stats.dropped);
    assert!(
        dropped > 0,
        "an 8 s outage overflows a buffer of {max_buffered}"
    );
    assert_eq!(
        lost.len() as u64,
        dropped,
        "lost {lost:?}, but {dropped} drops were counted"
    );
    // Oldest first: the lost points are the first ones of the outage.
    let expected_lost: Vec<u64> = (last_before + 1..=last_before + dropped).collect();
    assert_eq!(lost, expected_lost);
}

/// Carbon goes away for longer than memory can hold, the agent is restarted
/// in the middle of the outage, then carbon comes back.
async fn outage_with_agent_restart(spool: bool) -> (BTreeSet<u64>, BTreeSet<u64>, u64) {
    let mut carbon = blocking(Carbon::start);
    let key = if spool {
        "restart-spool"
    } else {
        "restart-no-spool"
    };
    let control = collectors::control(key);
    let spool_dir = tempfile::tempdir().unwrap();
    let spool_line = if spool {
        format!("spool_dir = {:?}", spool_dir.path().display().to_string())
    } else {
        String::new()
    };
    let toml = format!(
        r#"
[agent]
hostname = "outage"
interval = 1
splay = 0
self_metrics = false
shutdown_timeout = 1

[collector.sequence]
key = "{key}"

[output.graphite]
port = {port}
batch_size = 1
max_buffered = 3
reconnect_min = 0.2
reconnect_max = 1
{spool_line}
"#,
        port = carbon.line_port()
    );
    let first = Running::start(config(&toml));
    let first_stats = first.stats.output("graphite").unwrap().clone();
    blocking(|| carbon.wait_for(PATH, 2, Duration::from_secs(20)));
    settle(&carbon, &control).await;

    blocking(|| carbon.stop());
    control.paused.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    first.stop(Duration::from_secs(10)).await;

    let second = Running::start(config(&toml));
    let second_stats = second.stats.output("graphite").unwrap().clone();
    tokio::time::sleep(Duration::from_secs(4)).await;
    blocking(|| carbon.restart());
    tokio::time::sleep(Duration::from_secs(3)).await;
    pause_and_wait_for_newest(&carbon, &control, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    second.stop(Duration::from_secs(10)).await;

    let (published, stored) = published_and_stored(&carbon, &control);
    let dropped = get(&first_stats.dropped) + get(&second_stats.dropped);
    (published, stored, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_an_outage_and_an_agent_restart_lose_nothing() {
    let (published, stored, dropped) = outage_with_agent_restart(true).await;
    let lost: Vec<_> = published.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "lost {lost:?} of {} points",
        published.len()
    );
    assert_eq!(dropped, 0);
    assert!(
        published.len() >= 12,
        "{} points published",
        published.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_the_loss_equals_the_counted_drops() {
    let (published, stored, dropped) = outage_with_agent_restart(false).await;
    let lost: Vec<_> = published.difference(&stored).collect();
    assert!(dropped > 0, "memory of 3 lines cannot hold a 9 s outage");
    assert_eq!(
        lost.len() as u64,
        dropped,
        "lost {lost:?}, counted {dropped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickle_and_udp_outputs_with_their_own_filters() {
    let carbon = blocking(Carbon::start);
    let running = Running::start(config(&format!(
        r#"
[agent]
hostname = "multi"
interval = 1
splay = 0
self_metrics = false

[collector.memory]
[collector.loadavg]

[output.graphite.pickled]
protocol = "pickle"
port = {pickle}
metrics_whitelist = ["\\.memory\\."]

[output.graphite.datagrams]
protocol = "udp"
port = {udp}
metrics_whitelist = ["\\.loadavg\\."]
metrics_blacklist = ["normalized"]
"#,
        pickle = carbon.pickle_port(),
        udp = carbon.udp_port()
    )));
    let stats = running.stats.clone();
    let wait = Duration::from_secs(20);
    let mem = blocking(|| carbon.wait_for("servers.multi.memory.MemTotal", 2, wait));
    let load = blocking(|| carbon.wait_for("servers.multi.loadavg.processes_total", 2, wait));
    running.stop(Duration::from_secs(10)).await;
    assert_eq!(
        mem[0].1,
        meminfo_kib("MemTotal") * 1024.0,
        "pickled value exact"
    );
    assert!(load.iter().all(|p| p.1 >= 1.0));
    let paths = carbon.metric_paths();
    assert!(
        paths
            .iter()
            .all(|p| p.starts_with("servers.multi.memory.")
                || p.starts_with("servers.multi.loadavg.")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("normalized")),
        "blacklisted: {paths:?}"
    );
    for name in ["graphite.pickled", "graphite.datagrams"] {
        let s = stats.output(name).unwrap();
        assert!(get(&s.sent) > 0 && get(&s.dropped) == 0, "{name}");
    }
}
