//! Reloading the configuration (SIGHUP): only what changed is stopped or
//! started; an unchanged collector keeps its collector, its rates and its
//! timing; an unchanged output keeps its connection; a changed output
//! hands what it holds to its successor; a refused configuration leaves
//! everything running and names the file and line; systemd hears RELOADING
//! then READY; the log level follows `log_level`.

mod support;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::agent::AgentProcess;
use support::collectors::control;
use support::receiver::{Mode, Receiver};
use support::{eventually, Reloadable};

/// `path value timestamp` lines, by path: the values in order.
fn values_by_path(lines: &[String]) -> HashMap<String, Vec<f64>> {
    let mut by_path: HashMap<String, Vec<f64>> = HashMap::new();
    for line in lines {
        let mut fields = line.split(' ');
        let (Some(path), Some(value)) = (fields.next(), fields.next()) else {
            panic!("malformed line {line:?}");
        };
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        by_path.entry(path.to_owned()).or_default().push(value);
    }
    by_path
}

/// The values a test collector published, in order.
fn values(control: &support::collectors::Control) -> Vec<f64> {
    control
        .emitted
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.1)
        .collect()
}

fn graphite_to(port: u16) -> String {
    format!(
        r#"
[output.graphite]
host = "127.0.0.1"
port = {port}
reconnect_min = 0.05
reconnect_max = 0.2
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_collector_keeps_its_collector_and_rates_across_ten_reloads() {
    let receiver = Receiver::start(Mode::Normal);
    let (feed, sequence) = (control("reload-ten-feed"), control("reload-ten-seq"));
    // Every other configuration adds loadavg, and moves the other tables
    // down a few lines: where a table is written is not what it is.
    let config = |with_loadavg: bool| {
        format!(
            r#"
[agent]
hostname = "ten"
interval = 0.5
splay = 0
self_metrics = false
{}
[collector.feed]
key = "reload-ten-feed"

[collector.sequence]
key = "reload-ten-seq"
{}"#,
            if with_loadavg {
                "\n\n[collector.loadavg]\n"
            } else {
                ""
            },
            graphite_to(receiver.port())
        )
    };
    let agent = Reloadable::start(&config(false));
    tokio::time::sleep(Duration::from_millis(700)).await;
    for round in 1..=10 {
        agent.reload(&config(round % 2 == 1)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let has_loadavg = agent.stats.collector("loadavg").is_some();
        assert_eq!(has_loadavg, round % 2 == 1, "reload {round} applied");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let runs = agent
        .stats
        .collector("feed")
        .expect("feed runs")
        .runs
        .load(std::sync::atomic::Ordering::Relaxed);
    agent.stop(Duration::from_secs(15)).await;

    // The same feed collector ran from start to end: its counter went on
    // rising by 10 a run, never back to its first value.
    let emitted = values(&feed);
    assert!(
        emitted.len() >= 12,
        "{} runs in about 6 s at 0.5 s",
        emitted.len()
    );
    for (i, value) in emitted.iter().enumerate() {
        assert_eq!(
            *value,
            1_010.0 + 10.0 * i as f64,
            "run {i}: the collector was rebuilt"
        );
    }
    assert_eq!(runs as usize, emitted.len(), "its statistics went on too");

    let by_path = values_by_path(&receiver.lines());
    // A rate for every run but the first: no reset, no first-sample gap.
    let rates = &by_path["servers.ten.feed.events"];
    assert_eq!(rates.len(), emitted.len() - 1, "rates: {rates:?}");
    for rate in rates {
        assert!(*rate > 5.0 && *rate < 40.0, "10 per 0.5 s: {rates:?}");
    }
    // Every point delivered, once.
    let published = values(&sequence);
    assert_eq!(by_path["servers.ten.sequence.value"], published);
    assert!(
        by_path.contains_key("servers.ten.loadavg.01"),
        "the added collector published: {:?}",
        by_path.keys()
    );
    // The output kept its connection through the ten reloads.
    assert_eq!(receiver.accepted(), 1, "connections made");
}

/// `[output.graphite.<name>]` sending to `port`.
fn named_graphite_to(name: &str, port: u16) -> String {
    graphite_to(port).replace("[output.graphite]", &format!("[output.graphite.{name}]"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_and_outputs_are_added_removed_and_changed() {
    let receiver = Receiver::start(Mode::Normal);
    let (gone, added) = (Receiver::start(Mode::Normal), Receiver::start(Mode::Normal));
    let output = named_graphite_to("kept", receiver.port());
    let gone_output = named_graphite_to("gone", gone.port());
    let added_output = named_graphite_to("added", added.port());
    let before = format!(
        r#"
[agent]
hostname = "arc"
interval = 0.3
splay = 0
self_metrics = false

[collector.sequence.a]
key = "reload-arc-a"
[collector.sequence.b]
key = "reload-arc-b"
{output}{gone_output}"#
    );
    let after = format!(
        r#"
[agent]
hostname = "arc"
interval = 0.3
splay = 0
self_metrics = false

[collector.sequence.b]
key = "reload-arc-b"
path = "renamed"
[collector.sequence.c]
key = "reload-arc-c"
{output}{added_output}"#
    );
    let (a, b, c) = (
        control("reload-arc-a"),
        control("reload-arc-b"),
        control("reload-arc-c"),
    );
    let agent = Reloadable::start(&before);
    assert!(eventually(Duration::from_secs(5), || a.count() >= 2 && b.count() >= 2).await);
    let b_runs = agent
        .stats
        .collector("sequence.b")
        .unwrap()
        .runs
        .load(std::sync::atomic::Ordering::Relaxed);
    // `a` publishes nothing from now on, so that what it published all
    // went out before its output `gone` was removed (a run in progress at
    // the reload would be published after it, to the outputs left).
    let a_stats = agent.stats.collector("sequence.a").unwrap();
    a.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    agent.reload(&after).await;
    assert!(
        eventually(Duration::from_secs(5), || c.count() >= 3).await,
        "the added instance runs"
    );
    let a_runs = || a_stats.runs.load(std::sync::atomic::Ordering::Relaxed);
    let a_runs_after = a_runs();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(a_runs(), a_runs_after, "the removed instance stopped");
    assert!(agent.stats.collector("sequence.a").is_none());
    assert!(agent.stats.output("graphite.gone").is_none());
    let added_stats = agent
        .stats
        .output("graphite.added")
        .expect("the added output's statistics");
    let gone_count = gone.count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(gone.count(), gone_count, "the removed output stopped");
    let b_stats = agent.stats.collector("sequence.b").unwrap();
    assert!(
        b_stats.runs.load(std::sync::atomic::Ordering::Relaxed) > b_runs,
        "the changed instance keeps its statistics"
    );
    agent.stop(Duration::from_secs(15)).await;

    let by_path = values_by_path(&receiver.lines());
    let old_b = by_path
        .get("servers.arc.sequence.b.value")
        .map_or(0, Vec::len);
    let new_b = by_path.get("servers.arc.renamed.value").map_or(0, Vec::len);
    assert!(old_b >= 2 && new_b >= 2, "b before {old_b}, after {new_b}");
    assert_eq!(
        old_b + new_b,
        b.count(),
        "every point of b, under one path or the other"
    );
    assert_eq!(by_path["servers.arc.sequence.a.value"].len(), a.count());
    assert_eq!(by_path["servers.arc.sequence.c.value"].len(), c.count());
    assert_eq!(
        receiver.accepted(),
        1,
        "the unchanged output kept its connection"
    );
    // The removed output delivered what it had before it went; the added
    // one delivered from its start, and its statistics say so.
    let gone_by_path = values_by_path(&gone.lines());
    assert_eq!(
        gone_by_path["servers.arc.sequence.a.value"].len(),
        a.count()
    );
    let added_lines = added.count();
    assert!(added_lines > 0);
    assert_eq!(
        agent_totals(&added_stats),
        (added_lines as u64, 0, 0),
        "(sent, dropped, buffered)"
    );
}

/// Runs `sequence` into a graphite output (with `options` added) whose
/// receiver is down until at least `waiting` points wait, then reloads with
/// the output pointed at a receiver that is up, and checks that every point
/// arrived and none was dropped.
async fn a_changed_output_delivers_what_waited(host: &str, options: &str, waiting: u64) {
    let down = support::agent::free_port();
    let key = format!("reload-{host}");
    let sequence = control(&key);
    let config = |port: u16| {
        format!(
            r#"
[agent]
hostname = "{host}"
interval = 0.2
splay = 0
self_metrics = false
shutdown_timeout = 1

[collector.sequence]
key = "{key}"
{}{options}"#,
            graphite_to(port)
        )
    };
    let agent = Reloadable::start(&config(down));
    let output = agent.stats.output("graphite").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            output.buffered.load(std::sync::atomic::Ordering::Relaxed) >= waiting
        })
        .await,
        "points wait for the receiver that is down"
    );
    // The operator points the output at a receiver that is up.
    let receiver = Receiver::start(Mode::Normal);
    agent.reload(&config(receiver.port())).await;
    let published = sequence.count();
    assert!(
        eventually(Duration::from_secs(10), || receiver.count() >= published).await,
        "the output as changed delivers what waited"
    );
    agent.stop(Duration::from_secs(15)).await;

    let published = values(&sequence);
    let mut received =
        values_by_path(&receiver.lines())[&format!("servers.{host}.sequence.value")].clone();
    received.sort_by(f64::total_cmp);
    assert_eq!(received, published, "every point, those that waited first");
    assert_eq!(
        agent_totals(&output),
        (published.len() as u64, 0, 0),
        "(sent, dropped, buffered)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_changed_while_its_receiver_is_down_hands_its_buffer_over() {
    a_changed_output_delivers_what_waited("handover", "", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_output_with_the_same_spool_delivers_what_was_spooled() {
    let spool = support::server::temp_dir("reload-spool");
    // Two points in memory at most: the rest waits in the spool.
    let options = format!(
        "max_buffered = 2\nspool_dir = \"{}\"\n",
        spool.path().display()
    );
    a_changed_output_delivers_what_waited("spooled", &options, 6).await;
}

fn agent_totals(stats: &carat::stats::OutputStats) -> (u64, u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (
        stats.sent.load(Relaxed),
        stats.dropped.load(Relaxed),
        stats.buffered.load(Relaxed),
    )
}

/// Everything that arrived on the notify socket so far.
fn notifications(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[test]
fn sighup_applies_a_good_configuration_and_refuses_a_bad_one_naming_its_line() {
    let dir = support::server::temp_dir("reload-notify");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let good = format!(
        r#"[agent]
interval = 0.2
splay = 0
self_metrics = false
health_listen = "{}"

[collector.loadavg]

[output.stdout]
"#,
        AgentProcess::HEALTH
    );
    let mut agent =
        AgentProcess::start_with_env(&good, &[("NOTIFY_SOCKET", Some(socket_path.as_os_str()))]);
    let loadavg = |a: &AgentProcess| {
        a.produced()
            .iter()
            .filter(|l| l.contains(".loadavg."))
            .count()
    };
    assert!(
        agent.wait_for(Duration::from_secs(10), |a| loadavg(a) >= 3),
        "{}",
        agent.stderr()
    );
    assert!(agent.wait_for(Duration::from_secs(5), |a| a.try_health().is_some()));
    let first = notifications(&socket);
    assert!(first.iter().any(|m| m.contains("READY=1")), "{first:?}");

    // An option loadavg does not have, on line 8.
    agent.write_config(&good.replace("[collector.loadavg]\n", "[collector.loadavg]\nbogus = 1\n"));
    agent.signal(libc::SIGHUP);
    assert!(
        agent.wait_for(Duration::from_secs(5), |a| a
            .stderr()
            .contains("reload refused")),
        "{}",
        agent.stderr()
    );
    let log = agent.stderr();
    let refused = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refused.contains("carat.toml:8") && refused.contains("bogus"),
        "names the file, the line and the key: {refused}"
    );
    let seen = loadavg(&agent);
    assert!(
        agent.wait_for(Duration::from_secs(5), |a| loadavg(a) >= seen + 3),
        "the old configuration keeps running"
    );
    assert_eq!(agent.health().0, 200, "and its health endpoint");

    // A good one: memory added, the health endpoint moved.
    let moved = support::agent::free_port();
    agent.write_config(
        &good
            .replace("[output.stdout]", "[collector.memory]\n\n[output.stdout]")
            .replace(AgentProcess::HEALTH, &format!("127.0.0.1:{moved}")),
    );
    let old_health = agent.health_port;
    agent.signal(libc::SIGHUP);
    assert!(
        agent.wait_for(Duration::from_secs(5), |a| a
            .produced()
            .iter()
            .any(|l| l.contains(".memory."))),
        "{}",
        agent.stderr()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", moved)).is_err() {
        assert!(Instant::now() < deadline, "the health endpoint moved");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", old_health)).is_err(),
        "the old health port is closed"
    );
    let (status, _) = agent.stop(Duration::from_secs(10));
    assert!(status.success());

    // systemd heard of both reloads, each closed by READY.
    let all: Vec<String> = first.into_iter().chain(notifications(&socket)).collect();
    let reloading = all.iter().filter(|m| m.contains("RELOADING=1")).count();
    let ready = all.iter().filter(|m| m.contains("READY=1")).count();
    assert_eq!((reloading, ready), (2, 3), "{all:?}");
    let first_reload = all.iter().position(|m| m.contains("RELOADING=1")).unwrap();
    assert!(all[first_reload].contains("MONOTONIC_USEC="), "{all:?}");
    assert!(all[first_reload + 1].contains("READY=1"), "{all:?}");
    assert!(all.last().unwrap().contains("STOPPING=1"), "{all:?}");
}

#[test]
fn the_log_level_follows_a_reload_unless_rust_log_sets_it() {
    let closed = support::agent::free_port();
    let config = |level: &str| {
        format!(
            r#"[agent]
interval = 0.2
splay = 0
self_metrics = false
log_level = "{level}"

[collector.loadavg]
{}"#,
            graphite_to(closed)
        )
    };
    // Reconnection attempts after the first are logged at debug.
    let debug_line = "next attempt in";
    let agent = AgentProcess::start_with_env(&config("info"), &[("RUST_LOG", None)]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!agent.stderr().contains(debug_line), "{}", agent.stderr());
    agent.write_config(&config("debug"));
    agent.signal(libc::SIGHUP);
    assert!(
        agent.wait_for(Duration::from_secs(5), |a| a.stderr().contains(debug_line)),
        "{}",
        agent.stderr()
    );

    // With RUST_LOG set, it wins over log_level.
    let fixed =
        AgentProcess::start_with_env(&config("info"), &[("RUST_LOG", Some("info".as_ref()))]);
    std::thread::sleep(Duration::from_millis(500));
    fixed.write_config(&config("debug"));
    fixed.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(fixed.stderr().contains("reload: "), "{}", fixed.stderr());
    assert!(!fixed.stderr().contains(debug_line), "{}", fixed.stderr());
}
