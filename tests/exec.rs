//! The `exec` collector in the agent, over thousands of runs: no
//! descriptor, no child process and no memory is left behind by commands
//! that succeed, leave a child running, or write far too much.

mod support;

use std::time::Duration;

use support::agent::{collector_runs, rss_kib, AgentProcess};

/// The agent's children (zombies included), its open descriptors and its
/// resident memory: the fewest over a few looks, since a run in progress
/// holds a child and three pipes for a moment.
fn footprint(pid: u32) -> (usize, usize, u64) {
    let mut least = (usize::MAX, usize::MAX, u64::MAX);
    for _ in 0..20 {
        let children = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split(' ').nth(1))
                    .is_some_and(|ppid| ppid == pid.to_string())
            })
            .count();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let rss = rss_kib(pid);
        least = (least.0.min(children), least.1.min(fds), least.2.min(rss));
        std::thread::sleep(Duration::from_millis(25));
    }
    least
}

#[test]
fn a_thousand_runs_leave_no_descriptor_process_or_memory_behind() {
    let config = format!(
        r#"
[agent]
hostname = "exec"
interval = 0.01
splay = 0
self_metrics = false
health_listen = "{}"

[collector.exec.quick]
command = ["sh", "-c", "echo 'quick 1'; echo 'and a line on standard error' >&2"]
timeout = 1

[collector.exec.forks]
command = ["sh", "-c", "sleep 30 & echo 'forks 1'"]
interval = 0.05
timeout = 2

[collector.exec.floods]
command = ["sh", "-c", "head -c 10000000 /dev/zero | tr '\\0' x"]
interval = 0.2
timeout = 2

[output.stdout]
"#,
        AgentProcess::HEALTH
    );
    let mut agent = AgentProcess::start(&config);
    let runs = |a: &AgentProcess| {
        a.try_health()
            .and_then(|(_, body)| collector_runs(&body, "exec.quick"))
            .unwrap_or(0)
    };
    // Warm up: the allocator's arenas and the runtime's threads reach
    // their working size in the first few seconds.
    assert!(
        agent.wait_for(Duration::from_secs(30), |a| runs(a) >= 500),
        "{}",
        agent.stderr()
    );
    let (children_warm, fds_warm, rss_warm) = footprint(agent.pid());
    let warm_runs = runs(&agent);
    assert!(
        agent.wait_for(Duration::from_secs(60), |a| runs(a) >= warm_runs + 1000),
        "1000 more runs: {}",
        runs(&agent)
    );
    let (children_end, fds_end, rss_end) = footprint(agent.pid());
    let (status, _) = agent.stop(Duration::from_secs(10));
    assert!(status.success());
    eprintln!(
        "children {children_warm} -> {children_end}, fds {fds_warm} -> {fds_end}, rss {rss_warm} -> {rss_end} KiB"
    );

    let lines = agent.produced();
    let count = |name: &str| lines.iter().filter(|l| l.contains(name)).count();
    assert!(count(".exec.quick.quick ") >= 1000, "the runs published");
    assert!(count(".exec.forks.forks ") >= 10);
    assert_eq!(
        count(".exec.floods."),
        0,
        "too much output publishes nothing"
    );
    let log = agent.stderr();
    assert!(log.contains("wrote more than max_output (1 MiB)"), "{log}");
    // Standard error is logged, but not a thousand times.
    let logged = log.matches("and a line on standard error").count();
    assert!(
        (1..=20).contains(&logged),
        "{logged} lines of standard error logged"
    );

    assert_eq!(children_end, 0, "no child process left (zombies included)");
    assert_eq!(fds_end, fds_warm, "open descriptors");
    // 1000 runs and 50 refused 10 MB outputs: a leak of a pipe buffer or
    // of the output read would be megabytes.
    assert!(
        rss_end <= rss_warm + 1024,
        "resident memory grew from {rss_warm} KiB to {rss_end} KiB"
    );
}
