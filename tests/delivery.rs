//! "Delivered or counted" under the faults a network gives, end to end: the
//! real binary, a real TCP receiver that misbehaves on purpose, real spool
//! directories, SIGTERM.
//!
//! Each test gives the agent a stdout output next to the graphite one: with
//! self-metrics off, what it prints is what the collectors produced. The
//! lines the receiver got are compared with it, and with the totals the
//! agent logs when it stops (`sent`, `dropped`, `left in the spool`).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use support::agent::{AgentProcess, FakeProc};
use support::receiver::{multiset, Mode, Receiver};

/// The settle window of the TCP output (lines acknowledged this long before
/// a reset are sent again), as documented.
const SETTLE_SECS: f64 = 2.0;

fn agent_config(
    name: &str,
    proc_root: &Path,
    interval: f64,
    collectors: &str,
    graphite: &str,
) -> String {
    format!(
        r#"
[agent]
hostname = "{name}"
interval = {interval}
splay = 0
self_metrics = false
proc_root = "{proc}"
health_listen = "{health}"
shutdown_timeout = 3

{collectors}

[output.stdout]
queue_size = 100000

[output.graphite]
{graphite}
"#,
        proc = proc_root.display(),
        health = AgentProcess::HEALTH,
    )
}

/// Lines of `produced` that `received` lacks (as many times as they lack).
fn missing<'a>(produced: &'a [String], received: &[String]) -> Vec<&'a str> {
    let mut have = multiset(received);
    let mut lacking = Vec::new();
    for line in produced {
        match have.get_mut(line.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => lacking.push(line.as_str()),
        }
    }
    lacking
}

/// Lines received more often than produced, with how many extra times.
fn duplicates<'a>(produced: &[String], received: &'a [String]) -> HashMap<&'a str, usize> {
    let made = multiset(produced);
    multiset(received)
        .into_iter()
        .filter_map(|(line, n)| {
            let extra = n.saturating_sub(made.get(line).copied().unwrap_or(0));
            (extra > 0).then_some((line, extra))
        })
        .collect()
}

fn timestamp(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"))
}

fn covers(received: &[String], produced: &[String]) -> bool {
    missing(produced, received).is_empty()
}

#[test]
fn a_receiver_that_accepts_and_closes_loses_no_line() {
    // A TCP load balancer with no healthy backend: every connection is
    // accepted, then closed; what was written into it is lost.
    let proc = FakeProc::new(0);
    let rx = Receiver::start(Mode::AcceptThenClose);
    let mut agent = AgentProcess::start(&agent_config(
        "accept-close",
        proc.root(),
        0.25,
        "[collector.memory]",
        &format!(
            "port = {}\ntimeout = 1\nreconnect_min = 0.05\nreconnect_max = 0.2",
            rx.port()
        ),
    ));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        rx.accepted() >= 3,
        "the agent connected {} times",
        rx.accepted()
    );
    let (status, body) = agent.health();
    assert_eq!(
        status, 500,
        "an output delivering nothing is unhealthy:\n{body}"
    );
    assert!(rx.lines().is_empty());
    assert!(agent.produced().len() >= 8 * 10);
    recover_and_stop(&mut agent, &rx, "written into closed connections");
}

/// Lets the receiver read normally again, waits until every line produced
/// so far has arrived, stops the agent, and checks that nothing was lost or
/// dropped and that every line counted as sent exactly once. Returns what
/// was produced and what was received.
fn recover_and_stop(
    agent: &mut AgentProcess,
    rx: &Receiver,
    fault: &str,
) -> (Vec<String>, Vec<String>) {
    rx.set_mode(Mode::Normal);
    let so_far = agent.produced();
    assert!(
        agent.wait_for(Duration::from_secs(15), |_| covers(&rx.lines(), &so_far)),
        "lines {fault} were not sent again: {} of {} missing",
        missing(&so_far, &rx.lines()).len(),
        so_far.len()
    );
    let (status, _) = agent.stop(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let produced = agent.produced();
    let received = rx.lines();
    assert_eq!(missing(&produced, &received), Vec::<&str>::new());
    let totals = agent.totals("graphite");
    assert_eq!(totals.dropped, 0, "{totals:?}");
    assert_eq!(
        totals.sent,
        produced.len() as u64,
        "each line counts as sent once, when it was delivered: {totals:?}"
    );
    (produced, received)
}

#[test]
fn a_receiver_that_resets_mid_stream_loses_no_line() {
    // Carbon restarting: it stops reading, its host acknowledges what
    // arrives meanwhile, then it resets the connection with that unread.
    let proc = FakeProc::new(0);
    let rx = Receiver::start(Mode::ResetAfter);
    rx.set_reset_after(40);
    let mut agent = AgentProcess::start(&agent_config(
        "reset",
        proc.root(),
        0.1,
        "[collector.memory]",
        &format!(
            "port = {}\ntimeout = 1\nreconnect_min = 0.05\nreconnect_max = 0.2",
            rx.port()
        ),
    ));
    assert!(
        agent.wait_for(Duration::from_secs(20), |_| rx.resets().len() >= 5),
        "the receiver reset {} connections",
        rx.resets().len()
    );
    let (produced, received) = recover_and_stop(&mut agent, &rx, "lost in reset connections");

    // Duplicates only within the documented window: lines sampled within
    // the settle window (plus a second of timestamp rounding) before a
    // reset.
    let resets = rx.resets();
    for (line, extra) in duplicates(&produced, &received) {
        let ts = timestamp(line);
        assert!(
            resets
                .iter()
                .any(|&r| ts >= r.floor() - SETTLE_SECS - 1.0 && ts <= r + 1.0),
            "{line:?} arrived {extra} extra times but was not sampled near a reset ({resets:?})"
        );
    }
}

#[test]
fn a_collector_run_larger_than_the_buffer_is_delivered_whole() {
    // 6,000 interfaces: 108,000 lines a run, ten times `max_buffered`,
    // to a receiver that keeps up.
    let proc = FakeProc::new(6000);
    let rx = Receiver::start(Mode::Normal);
    let mut agent = AgentProcess::start(&agent_config(
        "big-cycle",
        proc.root(),
        1.0,
        "[collector.network]",
        &format!(
            "port = {}\nmax_buffered = 10000\nbatch_size = 1000",
            rx.port()
        ),
    ));
    assert!(
        agent.wait_for(Duration::from_secs(30), |a| a.produced().len()
            >= 3 * 108_000),
        "{} lines produced",
        agent.produced().len()
    );
    let (status, _) = agent.stop(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let produced = agent.produced();
    let received = rx.lines();
    let totals = agent.totals("graphite");
    assert_eq!(totals.dropped, 0, "{totals:?}");
    assert_eq!(missing(&produced, &received).len(), 0, "{totals:?}");
    assert!(duplicates(&produced, &received).is_empty());
    assert_eq!(totals.sent, produced.len() as u64);
}

/// Starts an agent against a receiver that accepts and never reads, lets
/// it fill the socket buffers, and stops it: returns the agent (stopped),
/// the receiver, and how long the stop took.
fn stop_while_blocked(spool: Option<&Path>) -> (AgentProcess, Receiver, Duration) {
    let proc = FakeProc::new(2000);
    let rx = Receiver::start(Mode::StopReading);
    let spool_line = spool.map_or(String::new(), |dir| {
        format!("spool_dir = \"{}\"", dir.display())
    });
    let mut agent = AgentProcess::start(&agent_config(
        "blocked",
        proc.root(),
        0.5,
        "[collector.network]",
        &format!(
            "port = {}\ntimeout = 60\nmax_buffered = 20000\nreconnect_max = 1\n{spool_line}",
            rx.port()
        ),
    ));
    // 36,000 lines a run: megabytes, more than the socket buffers hold.
    assert!(
        agent.wait_for(Duration::from_secs(30), |a| a.produced().len()
            >= 5 * 36_000),
        "{} lines produced",
        agent.produced().len()
    );
    let (status, body) = agent.health();
    assert_eq!(
        status, 500,
        "connected but delivering nothing is unhealthy:\n{body}"
    );
    assert!(body.contains("delivered nothing"), "{body}");
    let (status, took) = agent.stop(Duration::from_secs(15));
    assert!(status.success(), "{status}\n{}", agent.stderr());
    (agent, rx, took)
}

#[test]
fn sigterm_while_a_write_is_blocked_spools_what_is_left() {
    let spool = tempfile::tempdir().unwrap();
    let (first, rx, took) = stop_while_blocked(Some(spool.path()));
    assert!(
        took < Duration::from_secs(3 + 3),
        "the stop took {took:?} with shutdown_timeout = 3"
    );
    let totals = first.totals("graphite");
    assert_eq!(totals.dropped, 0, "{totals:?}");
    assert!(totals.left > 0, "nothing went to the spool: {totals:?}");
    let produced = first.produced();
    assert_eq!(
        totals.sent + totals.left,
        produced.len() as u64,
        "{totals:?}"
    );

    // The receiver reads again (what its host acknowledged, it has), and
    // the next start delivers the spool.
    rx.set_mode(Mode::Normal);
    let proc = FakeProc::new(0);
    let mut second = AgentProcess::start(&agent_config(
        "blocked",
        proc.root(),
        3600.0,
        "[collector.memory]",
        &format!(
            "port = {}\nspool_dir = \"{}\"",
            rx.port(),
            spool.path().display()
        ),
    ));
    let everything = produced.clone();
    assert!(
        second.wait_for(Duration::from_secs(30), |_| covers(
            &rx.lines(),
            &everything
        )),
        "{} of {} lines never arrived",
        missing(&everything, &rx.lines()).len(),
        everything.len()
    );
    let (status, _) = second.stop(Duration::from_secs(10));
    assert!(status.success());
    let totals = second.totals("graphite");
    assert_eq!((totals.dropped, totals.left), (0, 0), "{totals:?}");
}

#[test]
fn sigterm_while_a_write_is_blocked_counts_what_is_lost_without_a_spool() {
    let (agent, rx, took) = stop_while_blocked(None);
    assert!(took < Duration::from_secs(3 + 3), "the stop took {took:?}");
    let totals = agent.totals("graphite");
    assert!(totals.dropped > 0, "{totals:?}");
    let produced = agent.produced();
    assert_eq!(
        totals.sent + totals.dropped,
        produced.len() as u64,
        "{totals:?}"
    );
    // What the receiver's host acknowledged it still has: let it read.
    rx.set_mode(Mode::Normal);
    let expected = produced.len() as u64 - totals.dropped;
    assert!(
        agent.wait_for(Duration::from_secs(10), |_| rx.count() as u64 >= expected),
        "received {} of {expected} ({totals:?}, {} produced)\n{}",
        rx.count(),
        produced.len(),
        agent.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    let received = rx.lines();
    assert!(duplicates(&produced, &received).is_empty());
    assert_eq!(
        received.len() as u64 + totals.dropped,
        produced.len() as u64,
        "received + dropped = produced ({totals:?})"
    );
    assert_eq!(totals.sent, received.len() as u64);
}

#[test]
fn under_a_flood_drops_are_counted_exactly_and_reported() {
    // A receiver that reads in bursts and stalls longer than the write
    // timeout; more lines than it can take: writes time out part way,
    // the buffer overflows.
    let proc = FakeProc::new(1500);
    let rx = Receiver::start(Mode::Bursty);
    let mut agent = AgentProcess::start(&agent_config(
        "flood",
        proc.root(),
        0.5,
        "[collector.network]",
        &format!(
            "port = {}\ntimeout = 0.5\nmax_buffered = 50000\nbatch_size = 500\n\
             reconnect_min = 0.1\nreconnect_max = 0.3\nqueue_size = 4",
            rx.port()
        ),
    ));
    let mut last = None;
    let reported_in_time = agent.wait_for(Duration::from_secs(20), |a| {
        let Some((status, body)) = a.try_health() else {
            return false;
        };
        let dropping = status == 500 && body.contains("dropped metrics");
        last = Some(body);
        dropping && a.produced().len() > 400_000
    });
    assert!(
        reported_in_time,
        "health never reported the drops ({} lines produced); last report:\n{}",
        agent.produced().len(),
        last.unwrap_or_default()
    );
    rx.set_mode(Mode::Normal);
    let (status, _) = agent.stop(Duration::from_secs(10));
    assert!(status.success());
    let totals = agent.totals("graphite");
    assert!(totals.dropped > 0, "{totals:?}");
    assert!(
        agent.stderr().contains("accepted nothing for"),
        "no write timed out part way: the test did not test that\n{}",
        agent.stderr()
    );
    let produced = agent.produced();
    let expected = produced.len() as u64 - totals.dropped;
    assert!(
        agent.wait_for(Duration::from_secs(10), |_| rx.count() as u64 >= expected),
        "received {} of the {expected} lines not counted as dropped ({totals:?})",
        rx.count()
    );
    std::thread::sleep(Duration::from_millis(500));
    let received = rx.lines();
    assert!(
        duplicates(&produced, &received).is_empty(),
        "no line arrives twice when no connection was reset"
    );
    assert_eq!(
        received.len() as u64 + totals.dropped,
        produced.len() as u64,
        "received + dropped = produced ({totals:?})"
    );
    assert_eq!(totals.sent, received.len() as u64, "{totals:?}");
}
