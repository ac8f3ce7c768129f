//! The `exec` collector against real programs: shell and Python scripts
//! that behave, hang, fork, flood, fail and print garbage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carat_collector::options::Patterns;
use carat_collector::testing::{refused, Harness};
use carat_collector::Environment;
use carat_exec::{Exec, ExecConfig, Format, Mode};

/// A script file in a temporary directory, executable.
struct Script {
    dir: tempfile::TempDir,
    path: PathBuf,
}

fn script(body: &str) -> Script {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("script");
    std::fs::write(&path, body).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Script { dir, path }
}

impl Script {
    fn command(&self) -> Vec<String> {
        vec![self.path.display().to_string()]
    }

    /// A file in the script's directory, for what it records.
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn config(command: Vec<String>) -> ExecConfig {
    ExecConfig {
        command,
        ..ExecConfig::default()
    }
}

fn harness(config: ExecConfig, run_timeout: Duration) -> Harness<Exec> {
    let env = Environment {
        instance: "exec.test".into(),
        run_timeout,
        ..Environment::default()
    };
    Harness::new(config, env).unwrap_or_else(|e| panic!("build: {e}"))
}

/// True while process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn pids_in(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[tokio::test]
async fn a_shell_script_publishes_gauges_and_counters() {
    let s = script(
        "#!/bin/sh\n\
         # a comment, and a blank line\n\n\
         echo \"queue.depth 42\"\n\
         printf 'queue.processed\\t%s\\t1795436400 counter\\n' \"$(cat \"$(dirname \"$0\")/count\" 2>/dev/null || echo 100)\"\n\
         echo \"bytes.sent 5000\"\n\
         echo \"weird/name*chars 1.5\"\n",
    );
    let mut c = config(s.command());
    c.counters = Patterns::new(["^bytes\\."]).unwrap();
    let mut h = harness(c, Duration::from_secs(5));
    let first = h.collect().await.expect("first run");
    assert_eq!(first.get("queue.depth"), Some(42.0));
    assert_eq!(first.get("weird_name_chars"), Some(1.5));
    assert_eq!(
        first.get("queue.processed"),
        None,
        "a counter's first run has no rate"
    );
    assert_eq!(first.get("bytes.sent"), None, "a counter by pattern");
    std::fs::write(s.file("count"), "300").unwrap();
    let second = h
        .collect_after(Duration::from_secs(10))
        .await
        .expect("second run");
    assert_eq!(second.get("queue.processed"), Some(20.0), "200 in 10 s");
    assert_eq!(second.get("bytes.sent"), Some(0.0));
}

#[tokio::test]
async fn a_python_script_publishes_json() {
    let s = script(
        "#!/usr/bin/env python3\n\
         import json\n\
         print(json.dumps({'version': '1.2.3', 'up': True, 'pool': {'active': 3, 'idle': 7.5, 'accepted': 1000}, 'gone': None}))\n",
    );
    let mut c = config(s.command());
    c.format = Format::Json;
    c.counters = Patterns::new(["accepted$"]).unwrap();
    let mut h = harness(c, Duration::from_secs(5));
    let p = h.collect().await.expect("run");
    let names: Vec<&str> = p.names().collect();
    assert_eq!(
        names,
        ["pool.active", "pool.idle", "up"],
        "strings, null and the first counter value are not published"
    );
    assert_eq!(p.get("pool.idle"), Some(7.5));
    assert_eq!(p.get("up"), Some(1.0));
}

#[tokio::test]
async fn env_working_dir_and_arguments_reach_the_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker"), "").unwrap();
    let mut c = config(vec![
        "sh".into(),
        "-c".into(),
        "echo \"env.value $FROM_CONFIG\"; test -e marker && echo \"dir.ok 1\"; echo \"args.count $#\"".into(),
        "sh".into(),
        "one".into(),
        "two words".into(),
    ]);
    c.env.insert("FROM_CONFIG".into(), "17".into());
    c.working_dir = Some(dir.path().to_owned());
    let p = harness(c, Duration::from_secs(5))
        .collect()
        .await
        .expect("run");
    assert_eq!(p.get("env.value"), Some(17.0));
    assert_eq!(p.get("dir.ok"), Some(1.0));
    assert_eq!(p.get("args.count"), Some(2.0));
}

#[tokio::test]
async fn the_command_inherits_no_descriptor_but_its_pipes() {
    // A descriptor without close-on-exec, as a careless library leaves one.
    // SAFETY: dup2(2) of standard error onto a free number; closed below.
    let leaked = unsafe { libc::dup2(2, 57) };
    assert_eq!(leaked, 57);
    let c = config(vec![
        "sh".into(),
        "-c".into(),
        "for f in /proc/$$/fd/*; do echo \"fd.${f##*/} 1\"; done".into(),
    ]);
    let p = harness(c, Duration::from_secs(5))
        .collect()
        .await
        .expect("run");
    // SAFETY: the descriptor dup2 made above.
    unsafe { libc::close(leaked) };
    let fds: Vec<&str> = p.names().collect();
    // 3 is the directory the shell lists.
    assert_eq!(
        fds,
        ["fd.0", "fd.1", "fd.2", "fd.3"],
        "descriptors of the command"
    );
}

#[tokio::test]
async fn a_hanging_script_is_killed_at_the_timeout_with_its_children() {
    let s = script("#!/bin/sh\nsleep 60 &\necho $! > \"$(dirname \"$0\")/pids\"\necho $$ >> \"$(dirname \"$0\")/pids\"\nwait\n");
    let mut h = harness(config(s.command()), Duration::from_secs(1));
    let started = Instant::now();
    let e = h.collect().await.expect_err("a run that hangs fails");
    let took = started.elapsed();
    assert_eq!(e.label(), "timeout", "{e}");
    assert!(
        e.to_string().contains("killed with its process group"),
        "{e}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "ended at its timeout: {took:?}"
    );
    let pids = pids_in(&s.file("pids"));
    assert_eq!(pids.len(), 2, "the script and its sleep");
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pid in pids {
        assert!(!alive(pid), "process {pid} of the group still runs");
    }
}

#[tokio::test]
async fn a_script_that_leaves_a_child_running_finishes_and_the_child_is_ended() {
    let s = script(
        "#!/bin/sh\nsleep 60 &\necho $! > \"$(dirname \"$0\")/pids\"\necho \"left.behind 1\"\n",
    );
    let mut h = harness(config(s.command()), Duration::from_secs(10));
    let started = Instant::now();
    let p = h.collect().await.expect("the run succeeds");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not held until the timeout by the child: {:?}",
        started.elapsed()
    );
    assert_eq!(p.get("left.behind"), Some(1.0));
    let pids = pids_in(&s.file("pids"));
    assert_eq!(pids.len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!alive(pids[0]), "the child left behind was ended");
}

#[tokio::test]
async fn garbage_fails_the_run_quoting_the_line() {
    let s =
        script("#!/bin/sh\necho 'good.one 1'\necho 'Traceback (most recent call last): oops'\n");
    let e = harness(config(s.command()), Duration::from_secs(5))
        .collect()
        .await
        .expect_err("garbage fails the run");
    assert_eq!(e.label(), "parse");
    let message = e.to_string();
    assert!(message.contains("output line 2"), "{message}");
    assert!(
        message.contains("\"Traceback (most recent call last): oops\""),
        "{message}"
    );

    let long = script("#!/bin/sh\nprintf 'x %0500d\\n' 1 | tr 0 y\n");
    let message = harness(config(long.command()), Duration::from_secs(5))
        .collect()
        .await
        .expect_err("a bad value")
        .to_string();
    assert!(
        message.len() < 500,
        "the quote is bounded: {} bytes",
        message.len()
    );

    let mut c = config(vec!["sh".into(), "-c".into(), "echo '[1, 2]'".into()]);
    c.format = Format::Json;
    let message = harness(c, Duration::from_secs(5))
        .collect()
        .await
        .expect_err("an array")
        .to_string();
    assert!(message.contains("a JSON object"), "{message}");
}

#[tokio::test]
async fn a_non_zero_exit_fails_the_run_with_its_status_and_last_error_line() {
    let s = script("#!/bin/sh\necho 'partial 1'\necho 'cannot reach the queue' >&2\nexit 3\n");
    let e = harness(config(s.command()), Duration::from_secs(5))
        .collect()
        .await
        .expect_err("exit 3 fails");
    assert_eq!(e.label(), "status");
    let message = e.to_string();
    assert!(message.contains("exited with status 3"), "{message}");
    assert!(message.contains("cannot reach the queue"), "{message}");

    let e = harness(
        config(vec!["/nonexistent/program".into()]),
        Duration::from_secs(5),
    )
    .collect()
    .await
    .expect_err("no such program");
    assert!(e.to_string().contains("cannot start"), "{e}");
}

#[tokio::test]
async fn ten_megabytes_of_output_are_refused_without_being_held() {
    let s = script("#!/bin/sh\nhead -c 10000000 /dev/zero | tr '\\0' 'x'\n");
    let mut h = harness(config(s.command()), Duration::from_secs(10));
    let e = h.collect().await.expect_err("too much output");
    assert_eq!(e.label(), "limit", "{e}");
    assert!(e.to_string().contains("max_output (1 MiB)"), "{e}");
}

#[tokio::test]
async fn options_that_cannot_work_are_refused_naming_the_option() {
    let refused = |c: ExecConfig| refused::<Exec>(c, &Environment::default()).0;
    assert_eq!(refused(config(Vec::new())).as_deref(), Some("command"));
    let mut c = config(vec!["true".into()]);
    c.working_dir = Some("relative".into());
    assert_eq!(refused(c).as_deref(), Some("working_dir"));
    let mut c = config(vec!["true".into()]);
    c.user = Some("no-such-user-here".into());
    assert_eq!(refused(c).as_deref(), Some("user"));
    let mut c = config(vec!["true".into()]);
    c.restart_min = Duration::from_secs(10);
    c.restart_max = Duration::from_secs(5);
    assert_eq!(refused(c).as_deref(), Some("restart_min"));
    let mut c = config(vec!["true".into()]);
    c.env.insert("A=B".into(), "x".into());
    assert_eq!(refused(c).as_deref(), Some("env.A=B"));
}

#[tokio::test]
async fn the_command_runs_as_another_user_when_the_agent_is_root() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: running as another user cannot be tried here");
        return;
    }
    let mut c = config(vec![
        "sh".into(),
        "-c".into(),
        "echo \"uid $(id -u)\"; echo \"home.is_root $(test \"$HOME\" = /root && echo 1 || echo 0)\"".into(),
    ]);
    c.user = Some("nobody".into());
    let p = harness(c, Duration::from_secs(5))
        .collect()
        .await
        .expect("run as nobody");
    assert_eq!(p.get("uid"), Some(65534.0));
    assert_eq!(p.get("home.is_root"), Some(0.0));
}

fn daemon(command: Vec<String>) -> ExecConfig {
    ExecConfig {
        mode: Mode::Daemon,
        restart_min: Duration::from_millis(200),
        restart_max: Duration::from_millis(800),
        ..config(command)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_publishes_what_it_wrote_since_the_last_run() {
    let mut h = harness(
        daemon(vec![
            "sh".into(),
            "-c".into(),
            "i=0; while :; do i=$((i+1)); echo \"ticks $i counter\"; echo \"last $i\"; sleep 0.05; done".into(),
        ]),
        Duration::from_secs(1),
    );
    let first = h.collect().await.expect("starts it");
    assert!(first.metrics.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = h.collect().await.expect("second run");
    let last = second.get("last").expect("the last value of the interval");
    assert!(last >= 3.0, "{second:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = h.collect().await.expect("third run");
    assert!(third.get("last").unwrap() > last);
    assert!(
        third.get("ticks").is_some_and(|r| r > 5.0),
        "a rate: {third:?}"
    );
    assert!(third.failed_parts.is_empty(), "{:?}", third.failed_parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_exits_is_restarted_with_backoff_and_counted() {
    let s = script("#!/bin/sh\ndate +%s.%N >> \"$(dirname \"$0\")/starts\"\necho 'alive 1'\nsleep 0.1\nexit 2\n");
    let mut h = harness(daemon(s.command()), Duration::from_secs(1));
    h.collect().await.expect("starts it");
    let mut exits = 0;
    let mut failed_runs = 0;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let p = h.collect().await.expect("a run");
        if let Some(f) = p.failed_part("process") {
            failed_runs += 1;
            assert_eq!(f.label, "status");
            assert!(f.message.contains("exited with status 2"), "{}", f.message);
            exits += f
                .message
                .split("exited or failed to start ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
        }
    }
    assert!(failed_runs >= 3, "exits reported: {failed_runs}");
    let starts: Vec<f64> = std::fs::read_to_string(s.file("starts"))
        .unwrap()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    // 4 s: starts at about 0, 0.3, 0.7, 1.5, 2.4, 3.3 (0.1 s run, then
    // 0.2, 0.4, 0.8, 0.8… between): never a tight loop.
    assert!(
        (4..=8).contains(&starts.len()),
        "{} starts: {starts:?}",
        starts.len()
    );
    // Every exit counted; the last start may not have exited yet.
    assert!(
        (starts.len() - 1..=starts.len()).contains(&(exits as usize)),
        "{exits} exits counted for {} starts",
        starts.len()
    );
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= 0.28, "restart_min after a 0.1 s run: {gaps:?}");
    // Delays of 0.2, 0.4, 0.8 s after runs of 0.1 s: the third gap is
    // three times the first; a machine under load adds to each gap alike.
    assert!(gaps[2] > gaps[0] * 1.5, "the delay doubles: {gaps:?}");
    // Capped at restart_max (0.8 s + the 0.1 s run); uncapped, the fourth
    // gap would be 1.7 s.
    assert!(
        gaps.iter().all(|g| *g < 1.5),
        "at most restart_max: {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_floods_is_bounded_and_its_drops_counted() {
    let mut c = daemon(vec!["yes".into(), "flood 1".into()]);
    c.max_pending = 1000;
    let mut h = harness(c, Duration::from_secs(1));
    h.collect().await.expect("starts it");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = h.collect().await.expect("a run");
    assert_eq!(p.get("flood"), Some(1.0));
    let dropped = p.failed_part("pending").expect("drops are reported");
    assert_eq!(dropped.label, "limit");
    assert!(
        dropped.message.contains("max_pending = 1000"),
        "{}",
        dropped.message
    );
    // What is held between runs stays at the bound, however fast it
    // writes: measured by what one run takes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = h.collect().await.expect("a run");
    assert!(p.failed_part("pending").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_daemon_ends_its_process_group() {
    let s = script("#!/bin/sh\necho $$ > \"$(dirname \"$0\")/pids\"\nsleep 60 &\necho $! >> \"$(dirname \"$0\")/pids\"\nwait\n");
    let mut h = harness(daemon(s.command()), Duration::from_secs(1));
    h.collect().await.expect("starts it");
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids_in(&s.file("pids")).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pids = pids_in(&s.file("pids"));
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| alive(p)));
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(4);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pid in pids {
        assert!(
            !alive(pid),
            "process {pid} still runs after the collector was dropped"
        );
    }
}
