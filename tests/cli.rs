//! The `carat` command line, run as a process.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::bin::{carat, wait_exit};
use support::sink::LineSink;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A line of Graphite's plaintext protocol: three fields, a sanitised path.
fn assert_graphite_line(line: &str) -> (String, f64, i64) {
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "not a graphite line: {line:?}");
    let path = fields[0];
    assert!(
        path.split('.').all(|c| !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')),
        "bad path in {line:?}"
    );
    let value: f64 = fields[1]
        .parse()
        .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    let ts: i64 = fields[2]
        .parse()
        .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
    (path.to_owned(), value, ts)
}

fn require_no_system_config() {
    assert!(
        !Path::new(carat::defaults::SYSTEM_PATH).exists(),
        "{} exists on this machine; the built-in default tests need it absent",
        carat::defaults::SYSTEM_PATH
    );
}

#[test]
fn once_prints_diamond_paths_for_the_builtin_default() {
    require_no_system_config();
    let out = carat().args(["once", "--gap", "0.5"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = text.lines().map(assert_graphite_line).collect();
    let mut sorted = lines.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(lines, sorted, "output is sorted");
    let host = carat::hostname::resolve(carat::hostname::HostnameMethod::Smart);
    let host = carat_collector::name::path(&host);
    let find = |suffix: &str| {
        let path = format!("servers.{host}.{suffix}");
        lines
            .iter()
            .find(|l| l.0 == path)
            .unwrap_or_else(|| panic!("{path} missing from:\n{text}"))
            .clone()
    };
    for name in [
        "cpu.total.user",
        "cpu.total.idle",
        "cpu.cpu0.user",
        "memory.MemFree",
        "memory.MemTotal",
        "memory.MemUsedPercentage",
        "loadavg.01",
        "loadavg.05_normalized",
        "loadavg.processes_total",
    ] {
        let (_, v, ts) = find(name);
        assert!(v.is_finite() && v >= 0.0, "{name} = {v}");
        assert!((now() - 10..=now()).contains(&ts), "{name} timestamp {ts}");
    }
}

#[test]
fn list_sample_config_and_check_config() {
    let out = carat().arg("list").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for kind in ["cpu", "memory", "loadavg"] {
        assert!(
            text.lines().any(|l| l.starts_with(kind)),
            "{kind} missing: {text}"
        );
    }
    let sample = carat().arg("sample-config").output().unwrap().stdout;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carat.toml");
    std::fs::write(&path, &sample).unwrap();
    let ok = carat()
        .arg("check-config")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    std::fs::write(
        &path,
        "[agent]\ninterval = 10\n\n[collector.memory]\nbyte_unti = \"byte\"\n",
    )
    .unwrap();
    let bad = carat()
        .arg("check-config")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!("{}:5:", path.display())) && err.contains("byte_unti"),
        "{err}"
    );
}

/// Spawns `carat run` with `args`, returning the child and a channel of its
/// stdout lines.
fn spawn_run(args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = carat()
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child` to exit within `limit`, killing it otherwise.
fn stderr_of(child: &mut std::process::Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

#[test]
fn run_uses_the_builtin_default_and_stops_on_sigterm() {
    require_no_system_config();
    let (mut child, lines) = spawn_run(&[]);
    // memory is a gauge collector: it prints on its first run, within the
    // 1 s splay of the default.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            let (path, _, _) = assert_graphite_line(&line);
            if path.ends_with(".memory.MemTotal") {
                seen = Some(path);
                break;
            }
        }
    }
    assert!(seen.is_some(), "no memory line from the built-in default");
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    let err = stderr_of(&mut child);
    assert!(
        err.contains("built-in default"),
        "the log says the default is in use: {err}"
    );
}

#[test]
fn sigterm_flushes_to_graphite_and_exits_zero() {
    let sink = LineSink::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carat.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nhostname = \"sig\"\ninterval = 1\nsplay = 0\n[collector.memory]\n[output.graphite]\nport = {}\n",
            sink.port()
        ),
    )
    .unwrap();
    let (mut child, _lines) = spawn_run(&["-c", path.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(2500));
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(12));
    assert!(status.success(), "exit status {status}");
    std::thread::sleep(Duration::from_millis(200));
    let got = sink.lines_for("servers.sig.memory.MemTotal");
    assert!(
        got.len() >= 2,
        "each run's metrics were delivered: {}",
        got.len()
    );
    assert!(sink.malformed().is_empty());
}

#[test]
fn sigterm_with_graphite_away_exits_within_the_shutdown_timeout() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carat.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\ninterval = 0.5\nsplay = 0\nshutdown_timeout = 1.5\n[collector.memory]\n[output.graphite]\nport = {port}\nreconnect_min = 0.2\nreconnect_max = 0.5\n"
        ),
    )
    .unwrap();
    let (mut child, _lines) = spawn_run(&["-c", path.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    sigterm(&child);
    let started = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(6));
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let err = stderr_of(&mut child);
    assert!(
        err.contains("could not be delivered"),
        "the loss is reported: {err}"
    );
}

#[test]
fn once_reports_each_failing_collector_once() {
    // An empty proc root: vmstat fails in both runs, memory too; loadavg
    // is not configured. Each failing instance is one line on stderr.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carat.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nproc_root = \"{}\"\nself_metrics = false\n[collector.vmstat]\n[collector.memory]\n[output.stdout]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = carat()
        .args(["once", "--gap", "0.1", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for instance in ["vmstat", "memory"] {
        let prefix = format!("carat: collector {instance}: ");
        assert_eq!(
            err.lines().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "{instance} is reported once: {err}"
        );
    }
    assert!(
        err.contains(&format!("{}", dir.path().join("vmstat").display())),
        "{err}"
    );
}

/// `carat run` of `config` (TOML) for `seconds`, stopped with SIGTERM:
/// its standard output and standard error (both pipes).
fn run_for(config: &str, seconds: f64) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carat.toml");
    std::fs::write(
        &path,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let (mut child, lines) = spawn_run(&["-c", path.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    let out: Vec<String> = lines.try_iter().collect();
    (out.join("\n"), stderr_of(&mut child))
}

/// A named instance's self-metrics are one component, `haproxy_edge`, and
/// the log says so; the log to a pipe has no colour; run times are
/// published with sub-millisecond precision.
#[test]
fn self_metrics_of_a_named_instance_log_without_colour_and_run_times() {
    let (out, err) = run_for(
        "[agent]\nhostname = \"h\"\ninterval = 0.3\nsplay = 0\n\
         [collector.loadavg]\n\
         [collector.haproxy.edge]\nsocket = \"{dir}/missing.sock\"\n\
         [output.stdout]\n",
        2.0,
    );
    // The log names the place the failures are counted at...
    assert!(
        err.contains("further failures are counted in carat.collector.haproxy_edge.*"),
        "{err}"
    );
    assert!(!err.contains("carat.collector.haproxy.edge"), "{err}");
    // ... which is where they are published.
    assert!(
        out.lines()
            .any(|l| l.starts_with("servers.h.carat.collector.haproxy_edge.failing 1 ")),
        "{out}"
    );
    assert!(!out.contains("carat.collector.haproxy.edge."), "{out}");
    // The instance's own metrics are under its path, haproxy.edge.
    assert!(
        err.contains("collector haproxy.edge every 300ms at servers.h.haproxy.edge"),
        "{err}"
    );

    // No ANSI colour codes in a log that goes to a pipe.
    assert!(!err.contains('\u{1b}'), "{err:?}");

    // Run times in milliseconds with their fraction: loadavg takes well
    // under a millisecond here, which whole milliseconds would show as 0.
    let times: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("servers.h.carat.collector.loadavg.run_time_ms "))
        .map(|l| assert_graphite_line(l).1)
        .collect();
    assert!(
        times.iter().any(|t| t.fract() != 0.0 && *t > 0.0),
        "run times {times:?}"
    );
}

/// On a terminal the log is coloured, unless `NO_COLOR` is set. `script`
/// (util-linux) gives carat a terminal.
#[test]
fn colour_on_a_terminal_unless_no_color() {
    let script = Command::new("script").arg("--version").output();
    assert!(
        script.is_ok_and(|o| o.status.success()),
        "this test needs `script` from util-linux: apt-get install util-linux"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("carat.toml");
    std::fs::write(&config, "[collector.loadavg]\n[output.stdout]\n").unwrap();
    let on_terminal = |no_color: Option<&str>| {
        let mut c = Command::new("script");
        c.args(["-qec"])
            .arg(format!(
                "timeout --preserve-status -s TERM 1 {} run -c {} >/dev/null",
                env!("CARGO_BIN_EXE_carat"),
                config.display()
            ))
            .arg("/dev/null")
            .stdin(Stdio::null())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        // `timeout` ends carat with SIGTERM: carat exits 0, and so does
        // `script -e`.
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("\u{1b}["), "{coloured:?}");
    let plain = on_terminal(Some("1"));
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
    assert!(
        plain.contains("INFO configuration read from"),
        "the log was written: {plain:?}"
    );
}

/// `carat once` runs the collectors of any valid configuration, with or
/// without outputs (it sends nothing); `run` and `check-config` still need
/// an output.
#[test]
fn once_needs_no_output_but_run_and_check_config_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carat.toml");
    std::fs::write(
        &path,
        "[agent]\nhostname = \"h\"\nself_metrics = false\n[collector.loadavg]\n",
    )
    .unwrap();
    let out = carat()
        .args(["once", "--gap", "0", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("servers.h.loadavg.01 ")),
        "{text}"
    );
    let refusal = |command: &str| {
        let out = carat().arg(command).arg("-c").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for command in ["check-config", "run"] {
        let err = refusal(command);
        assert!(err.contains("no output is configured"), "{command}: {err}");
    }
    // A configuration `once` cannot use is refused as before.
    std::fs::write(&path, "[collector.loadavg]\nsourse = \"proc\"\n").unwrap();
    assert!(refusal("once").contains("sourse"));
}
