//! End to end on a recorded `/proc`: `carat once` with `proc_root` on two
//! snapshots of a real machine (tests/fixtures/proc-tree/{a,b}, recorded by
//! tests/fixtures/record-proc-tree), switched between its two runs, prints
//! exactly the metrics of tests/fixtures/proc-tree/expected.txt.
//!
//! Gauges and shares of jiffies must match exactly. Rates divide by the
//! measured time between the two runs (about `--gap`), so they are compared
//! with a 5 % tolerance; timestamps are not compared.
//!
//! To regenerate the expected file after re-recording the tree or changing
//! a metric on purpose: `CARAT_UPDATE_EXPECTED=1 cargo test --test
//! recorded_tree`, then review the diff line by line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-tree")
}

/// Points `link` at `target`, atomically.
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert!(f.len() >= 2, "bad line {l:?}");
            (
                f[0].to_owned(),
                f[1].parse()
                    .unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect()
}

#[test]
fn once_on_a_recorded_tree_prints_the_expected_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let proc_link = dir.path().join("proc");
    point(&proc_link, &fixtures().join("a"));
    let config = dir.path().join("carat.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
hostname = "recorded"
proc_root = {proc:?}

[collector.cpu]
[collector.memory]
[collector.loadavg]
[collector.uptime]
[collector.diskusage]
[collector.network]
[collector.vmstat]
[collector.sockets]
[collector.tcp]
[collector.process]
[[collector.process.groups]]
name = "sleepers"
exe = "^/usr/bin/sleep$"
[[collector.process.groups]]
name = "workers"
cmdline = "celery.*worker"

[output.stdout]
"#,
            proc = proc_link.display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_carat"))
        .args(["once", "--gap", "2", "-c"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first run takes milliseconds; switch to the second snapshot in
    // the middle of the gap.
    std::thread::sleep(Duration::from_secs(1));
    point(&proc_link, &fixtures().join("b"));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "carat once failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();

    let expected_path = fixtures().join("expected.txt");
    if std::env::var_os("CARAT_UPDATE_EXPECTED").is_some() {
        let without_ts: String = stdout
            .lines()
            .map(|l| l.rsplit_once(' ').map_or(l, |(head, _)| head).to_owned() + "\n")
            .collect();
        std::fs::write(&expected_path, without_ts).unwrap();
    }
    let expected = parse(&std::fs::read_to_string(&expected_path).unwrap());
    let got = parse(&stdout);
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nunexpected {extra:?}"
    );
    let mut wrong = Vec::new();
    for (path, want) in &expected {
        let have = got[path];
        let rate = path.contains("per_second")
            || ["network.", "vmstat.", "tcp.", "iostat."]
                .iter()
                .any(|p| path.contains(p));
        let tolerance = if rate {
            0.05 * want.abs() + 1e-9
        } else {
            1e-9 * want.abs().max(1.0)
        };
        if (have - want).abs() > tolerance {
            wrong.push(format!("{path}: {have}, expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Timestamps are whole seconds of now.
    for line in stdout.lines() {
        let ts: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(ts > 1_700_000_000, "{line}");
    }
}
