//! `check-config` and `run` refuse the same configurations, the same way:
//! exit code 2 and an error naming the file, line, column and key, at once
//! (not a collector that `run` retries forever). Run with the real binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use support::bin::{carat, check_config};

/// A configuration that must be refused: where, and what the error says.
struct Case {
    name: &'static str,
    toml: String,
    line: usize,
    key: &'static str,
    words: &'static str,
}

fn case(
    name: &'static str,
    toml: &str,
    line: usize,
    key: &'static str,
    words: &'static str,
) -> Case {
    Case {
        name,
        // An output after the case's tables, so line numbers are the case's.
        toml: format!("{toml}\n[output.stdout]\n"),
        line,
        key,
        words,
    }
}

/// Writes each case to its own file in `dir`.
fn write_cases(dir: &Path, cases: &[Case]) -> Vec<PathBuf> {
    cases
        .iter()
        .map(|c| {
            let path = dir.join(format!("{}.toml", c.name));
            std::fs::write(&path, &c.toml).unwrap();
            path
        })
        .collect()
}

/// Asserts that `out` is the refusal `c` describes for the file at `path`.
fn assert_refused(command: &str, c: &Case, path: &Path, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{command} {}: exit {}: {stderr}",
        c.name,
        out.status
    );
    let prefix = format!("carat: configuration error: {}:{}:", path.display(), c.line);
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| {
            panic!(
                "{command} {}: no line starting {prefix:?} in {stderr}",
                c.name
            )
        });
    let rest = &line[prefix.len()..];
    // `<column>: key `<key>`: <message>`
    let (column, rest) = rest.split_once(": ").unwrap_or(("", ""));
    assert!(
        column.parse::<usize>().is_ok(),
        "{command} {}: {line}",
        c.name
    );
    assert!(
        rest.starts_with(&format!("key `{}`: ", c.key)),
        "{command} {}: expected key `{}`: {line}",
        c.name,
        c.key
    );
    assert!(
        rest.contains(c.words),
        "{command} {}: expected {:?} in {line}",
        c.name,
        c.words
    );
}

/// Runs `carat check-config` and `carat run` on every case: both must refuse
/// it with exit code 2 and the same error; `run` must do so at once.
fn assert_all_refused(cases: &[Case]) {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_cases(dir.path(), cases);
    for (c, path) in cases.iter().zip(&paths) {
        assert_refused("check-config", c, path, &check_config(path));
    }
    // All `run`s at once: each must exit by itself, and quickly.
    let started = Instant::now();
    let children: Vec<Child> = paths
        .iter()
        .map(|path| {
            carat()
                .arg("run")
                .arg("-c")
                .arg(path)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = started + Duration::from_secs(20);
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    while children.iter().any(Option::is_some) && Instant::now() < deadline {
        for (i, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if child.try_wait().unwrap().is_some() {
                let out = slot.take().unwrap().wait_with_output().unwrap();
                assert_refused("run", &cases[i], &paths[i], &out);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_running: Vec<&str> = children
        .iter_mut()
        .zip(cases)
        .filter_map(|(slot, c)| {
            let mut child = slot.take()?;
            let _ = child.kill();
            let _ = child.wait();
            Some(c.name)
        })
        .collect();
    assert!(
        still_running.is_empty(),
        "`run` did not refuse these at start-up: {still_running:?}"
    );
}

#[test]
fn what_run_refuses_check_config_refuses_at_its_line() {
    assert_all_refused(&[
        case(
            "memory_byte_unit",
            "[collector.memory]\nbyte_unit = \"parsec\"",
            2,
            "collector.memory.byte_unit",
            "\"parsec\" is not one of",
        ),
        case(
            "diskspace_byte_unit",
            "[collector.diskspace]\n\nbyte_unit = [\"byte\", \"parsec\"]",
            3,
            "collector.diskspace.byte_unit",
            "\"parsec\" is not one of Diamond's units",
        ),
        case(
            "diskusage_byte_unit",
            "[collector.diskusage]\nbyte_unit = \"parsec\"",
            2,
            "collector.diskusage.byte_unit",
            "\"parsec\" is not one of Diamond's units",
        ),
        case(
            "network_byte_unit",
            "[collector.network]\nbyte_unit = [\"parsec\"]",
            2,
            "collector.network.byte_unit",
            "\"parsec\" is not one of Diamond's units",
        ),
        case(
            "network_regex",
            "[collector.network]\ninterfaces = [\"eth\", \"bond(\"]",
            2,
            "collector.network.interfaces",
            "invalid regex \"bond(\": unclosed group",
        ),
        case(
            "diskspace_regex",
            "[collector.diskspace]\nexclude_filters = [\"^/mnt\", \"[unclosed\"]",
            2,
            "collector.diskspace.exclude_filters",
            "invalid regex \"[unclosed\": unclosed character class",
        ),
        case(
            "diskusage_regex",
            "[collector.diskusage]\ndevices = \"sd(\"",
            2,
            "collector.diskusage.devices",
            "invalid regex \"sd(\": unclosed group",
        ),
        case(
            "process_regex",
            "[collector.process]\n[[collector.process.groups]]\nname = \"ok\"\nexe = \"^/x$\"\n\
             [[collector.process.groups]]\nname = \"celery\"\ncmdline = \"celery(worker\"",
            7,
            "collector.process.groups.1.cmdline",
            "invalid regex \"celery(worker\": unclosed group",
        ),
        case(
            "haproxy_regex",
            "[collector.haproxy.edge]\nurl = \"http://127.0.0.1:8404/stats\"\nserver_include = [\"web(\"]",
            3,
            "collector.haproxy.edge.server_include",
            "invalid regex \"web(\": unclosed group",
        ),
        case(
            "haproxy_credentials_in_url",
            "[collector.haproxy]\nurl = \"http://stats:secret@127.0.0.1:8404/stats\"",
            2,
            "collector.haproxy.url",
            "credentials in the URL are not accepted",
        ),
        case(
            "haproxy_credentials_with_socket",
            "[collector.haproxy]\nsocket = \"/run/haproxy/admin.sock\"\nusername = \"stats\"\npassword = \"x\"",
            3,
            "collector.haproxy.username",
            "apply to url only",
        ),
        case(
            "haproxy_ftp",
            "[collector.haproxy]\nurl = \"ftp://127.0.0.1/stats\"",
            2,
            "collector.haproxy.url",
            "is not http or https",
        ),
        case(
            "haproxy_no_url",
            "\n[collector.haproxy.edge]\nverify_tls = false",
            2,
            "collector.haproxy.edge",
            "set url",
        ),
        case(
            "haproxy_request_timeout",
            "[collector.haproxy]\nurl = \"http://127.0.0.1:8404/stats\"\nrequest_timeout = 0",
            3,
            "collector.haproxy.request_timeout",
            "expected more than 0 and at most 3600 seconds",
        ),
        case(
            "health_listen",
            "[agent]\nhealth_listen = \"garbage\"",
            2,
            "agent.health_listen",
            "is not an ip:port address",
        ),
        case(
            "health_listen_hostname",
            "[agent]\nhealth_listen = \"localhost:2041\"",
            2,
            "agent.health_listen",
            "host names are not accepted",
        ),
    ]);
}

#[test]
fn durations_and_sizes_out_of_range_are_refused_with_the_range() {
    assert_all_refused(&[
        case(
            "agent_interval",
            "[agent]\ninterval = 1e-9",
            2,
            "agent.interval",
            "expected 0.01 to 86400 seconds",
        ),
        case(
            "collector_interval",
            "[collector.memory]\ninterval = 0.001",
            2,
            "collector.memory.interval",
            "expected 0.01 to 86400 seconds",
        ),
        case(
            "collector_interval_long",
            "[collector.memory]\ninterval = 100000",
            2,
            "collector.memory.interval",
            "expected 0.01 to 86400 seconds",
        ),
        case(
            "collector_timeout",
            "[collector.memory]\ntimeout = 0.000001",
            2,
            "collector.memory.timeout",
            "expected 0.01 to 86400 seconds",
        ),
        case(
            "agent_splay",
            "[agent]\nsplay = -1",
            2,
            "agent.splay",
            "expected 0 to 86400 seconds",
        ),
        case(
            "collector_splay",
            "[collector.memory]\nsplay = 1e12",
            2,
            "collector.memory.splay",
            "expected 0 to 86400 seconds",
        ),
        case(
            "shutdown_timeout",
            "[agent]\nshutdown_timeout = 100000",
            2,
            "agent.shutdown_timeout",
            "expected 0 to 600 seconds",
        ),
        case(
            "graphite_timeout",
            "[output.graphite]\ntimeout = 0",
            2,
            "output.graphite.timeout",
            "expected 0.01 to 600 seconds",
        ),
        case(
            "statsd_timeout",
            "[output.statsd]\ntimeout = 1e-9",
            2,
            "output.statsd.timeout",
            "expected 0.01 to 600 seconds",
        ),
        case(
            "reconnect_min",
            "[output.graphite]\nreconnect_min = 0.0001",
            2,
            "output.graphite.reconnect_min",
            "expected 0.01 to 3600 seconds",
        ),
        case(
            "reconnect_max",
            "[output.graphite]\nreconnect_max = 86400",
            2,
            "output.graphite.reconnect_max",
            "expected 0.01 to 3600 seconds",
        ),
        case(
            "reconnect_max_below_min",
            "[output.graphite]\nreconnect_min = 10\nreconnect_max = 2",
            3,
            "output.graphite.reconnect_max",
            "must be at least reconnect_min",
        ),
        case(
            "amqp_reconnect_max_below_min",
            "[output.amqp]\nreconnect_min = 5\nreconnect_max = 1",
            3,
            "output.amqp.reconnect_max",
            "must be at least reconnect_min",
        ),
        case(
            "max_metrics",
            "[collector.memory]\nmax_metrics = 0",
            2,
            "collector.memory.max_metrics",
            "expected 1 to 100000000",
        ),
    ]);
}

#[test]
fn the_smallest_intervals_in_range_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fast.toml");
    std::fs::write(
        &path,
        "[agent]\ninterval = 0.01\nsplay = 0\nshutdown_timeout = 0\n\
         [collector.memory]\ntimeout = 0.01\nmax_metrics = 1\n\
         [output.graphite]\ntimeout = 0.01\nreconnect_min = 0.01\nreconnect_max = 0.01\n",
    )
    .unwrap();
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a configuration of `n` collector instance tables.
fn many_tables(dir: &Path, n: usize) -> PathBuf {
    let mut text = String::from("[agent]\nhostname = \"x\"\n\n[output.stdout]\n\n");
    for i in 0..n {
        text.push_str(&format!("[collector.loadavg.i{i}]\ninterval = 10\n\n"));
    }
    let path = dir.join(format!("tables-{n}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// How long `check-config` takes on `path`; `None` when it has not finished
/// within `limit` (it is then killed).
fn check_time(path: &Path, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut child = carat()
        .arg("check-config")
        .arg("-c")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{} was refused", path.display());
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Loading grows linearly with the number of tables: four times the tables
/// take well under eight times as long (it was quadratic: sixteen times).
/// A ratio of two runs on the same machine, not an absolute time; each is
/// the best of a few, so a busy machine does not decide the outcome.
#[test]
fn loading_is_linear_in_the_number_of_tables() {
    const SMALL: usize = 5_000;
    const LARGE: usize = 4 * SMALL;
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = (
        many_tables(dir.path(), SMALL),
        many_tables(dir.path(), LARGE),
    );
    let forever = Duration::from_secs(120);
    let small_time = (0..3)
        .filter_map(|_| check_time(&small, forever))
        .min()
        .expect("the small configuration loads");
    // A quadratic loader is stopped at the bound rather than waited for.
    let bound = small_time * 8;
    let large_time = (0..2).filter_map(|_| check_time(&large, bound)).min();
    assert!(
        large_time.is_some(),
        "{LARGE} tables took more than 8 times as long as {SMALL} ({small_time:?}): not linear"
    );
}

#[test]
fn an_unreadable_entry_of_config_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("carat.toml");
    std::fs::write(&main, "[agent]\nconfig_dir = \"conf.d\"\n[output.stdout]\n").unwrap();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(conf_d.join("10-memory.toml"), "[collector.memory]\n").unwrap();
    // An editor's lock file is a hidden dangling symlink: not read.
    std::os::unix::fs::symlink("root@host.1234:1700000000", conf_d.join(".#20-cpu.toml")).unwrap();
    let ok = check_config(&main);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 collector instances enabled"));

    let dangling = conf_d.join("30-haproxy.toml");
    std::os::unix::fs::symlink(dir.path().join("gone.toml"), &dangling).unwrap();
    for command in ["check-config", "run"] {
        let out = carat()
            .arg(command)
            .arg("-c")
            .arg(&main)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "carat: configuration error: {}: cannot be read",
                dangling.display()
            )),
            "{command}: {err}"
        );
    }
    std::fs::remove_file(&dangling).unwrap();

    std::fs::create_dir(conf_d.join("40-dir.toml")).unwrap();
    let out = check_config(&main);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("40-dir.toml: is not a regular file"), "{err}");
}
