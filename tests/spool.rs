//! The disk spool under faults, with the real binary, a real spool directory
//! and a plaintext receiver on 127.0.0.1: a spool file deleted while the
//! agent runs, and damaged records left by an earlier run. Counts come from
//! the health endpoint; received + dropped must equal what was produced.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carat::output::spool::Spool;
use support::agent::{collector_runs, free_port, output_health, AgentProcess, OutputHealth};
use support::sink::LineSink;

/// Lines of one run of the loadavg collector.
const LOADAVG_LINES: u64 = 8;

/// Polls `check` every 100 ms until it is true or `limit` passes.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .collect();
    files.sort();
    files
}

fn write_config(dir: &Path, health_port: u16, body: &str) -> PathBuf {
    let path = dir.join("carat.toml");
    let text = format!(
        "[agent]\nhostname = \"spool\"\ninterval = 0.25\nsplay = 0\nself_metrics = false\n\
         health_listen = \"127.0.0.1:{health_port}\"\n\n{body}"
    );
    fs::write(&path, text).unwrap();
    path
}

/// The number in `log` after "`prefix`" and before " metrics".
fn count_after(log: &str, prefix: &str) -> Option<u64> {
    let rest = &log[log.find(prefix)? + prefix.len()..];
    rest.split(" metrics").next()?.trim().parse().ok()
}

#[test]
fn a_spool_file_deleted_while_the_agent_runs_is_replaced_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let (port, health_port) = (free_port(), free_port());
    // A small memory buffer, so lines go to the spool within a second.
    let config = write_config(
        dir.path(),
        health_port,
        &format!(
            "[collector.loadavg]\n\n[output.graphite]\nport = {port}\nmax_buffered = 16\n\
             reconnect_min = 0.2\nreconnect_max = 0.5\nspool_dir = \"{}\"\n",
            spool.display()
        ),
    );
    let mut agent = AgentProcess::start_file(&config, health_port);
    // Nothing listens on `port`: lines wait in memory, then in the spool.
    let spooled = wait_until(Duration::from_secs(20), || {
        spool_files(&spool)
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.len() > 1000))
    });
    assert!(spooled, "nothing reached the spool:\n{}", agent.stderr());
    let deleted = spool_files(&spool);
    for file in &deleted {
        fs::remove_file(file).unwrap();
    }
    // The agent goes on spooling after the deletion, then the receiver
    // comes back.
    std::thread::sleep(Duration::from_secs(2));
    let sink = LineSink::start_on(port);
    let prefix = "servers.spool.loadavg.";
    let mut seen = (OutputHealth::default(), 0, 0);
    let balanced = wait_until(Duration::from_secs(30), || {
        let Some((_, body)) = agent.try_health() else {
            return false;
        };
        let (Some(out), Some(runs)) = (
            output_health(&body, "graphite"),
            collector_runs(&body, "loadavg"),
        ) else {
            return false;
        };
        let received = sink
            .lines()
            .iter()
            .filter(|l| l.path.starts_with(prefix))
            .count() as u64;
        seen = (out, runs * LOADAVG_LINES, received);
        // Everything not dropped arrived; what arrived in the last moments
        // is still settling (counted in `buffered`, not yet in `sent`).
        let produced = runs * LOADAVG_LINES;
        received + out.dropped == produced && out.sent + out.dropped + out.buffered == produced
    });
    let (out, produced, received) = seen;
    assert!(
        balanced,
        "after the receiver came back: {out:?}, produced {produced}, received {received}\n{}",
        agent.stderr()
    );
    assert!(out.dropped > 0, "the deleted file's lines are counted");
    let (status, _) = agent.stop(Duration::from_secs(15));
    let log = agent.stderr();
    assert!(status.success(), "exit status {status}");
    // One error line for the deleted file, naming it and its lines.
    let logged: Vec<u64> = deleted
        .iter()
        .filter_map(|f| {
            count_after(
                &log,
                &format!(
                    "spool file {} was deleted while being appended to:",
                    f.display()
                ),
            )
        })
        .collect();
    assert_eq!(logged, [out.dropped], "{log}");
    assert!(sink.malformed().is_empty());
}

/// A spool as an earlier run leaves it: 47 records of 3 lines.
fn spool_of_47_records(dir: &Path) -> BTreeMap<String, usize> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (mut spool, _) = Spool::open(dir, 1 << 30).unwrap();
    let mut lines = BTreeMap::new();
    for record in 1..=47 {
        let mut payload = String::new();
        for line in 0..3 {
            let path = format!("spooled.r{record:02}.l{line}");
            payload.push_str(&format!("{path} {record} {now}\n"));
            lines.insert(path, record);
        }
        assert_eq!(spool.append(payload.as_bytes(), 3).unwrap(), 0);
    }
    lines
}

/// Where the payload of record `record` starts in the spool's one file.
fn payload_of(dir: &Path, record: usize) -> (PathBuf, usize) {
    let files = spool_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let data = fs::read(&files[0]).unwrap();
    let marker = format!("spooled.r{record:02}.l0 ");
    let at = data
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the record's payload");
    (files[0].clone(), at)
}

/// Starts the agent against a receiver on `dir`'s spool and waits until it
/// has delivered what it will; returns the output's counts, the lines
/// received (path → how many times) and the log.
fn replay(dir: &Path, spool: &Path) -> (OutputHealth, BTreeMap<String, usize>, String) {
    let sink = LineSink::start();
    let health_port = free_port();
    // A collector keeps the agent as it runs in production; the whitelist
    // keeps its lines out of the counts.
    let config = write_config(
        dir,
        health_port,
        &format!(
            "[collector.loadavg]\n\n[output.graphite]\nport = {}\nspool_dir = \"{}\"\n\
             metrics_whitelist = [\"^spooled\\\\.\"]\n",
            sink.port(),
            spool.display()
        ),
    );
    let mut agent = AgentProcess::start_file(&config, health_port);
    let mut out = OutputHealth::default();
    let mut body = String::new();
    let settled = wait_until(Duration::from_secs(20), || {
        body = agent.try_health().map(|(_, b)| b).unwrap_or_default();
        let health = output_health(&body, "graphite");
        out = health.unwrap_or_default();
        let received = sink.lines().len() as u64;
        health.is_some() && out.connected && out.buffered == 0 && out.sent == received
    });
    assert!(
        settled,
        "the spool was not replayed: {out:?}\n{body}\n{}",
        agent.stderr()
    );
    let (status, _) = agent.stop(Duration::from_secs(15));
    let log = agent.stderr();
    assert!(status.success(), "exit status {status}");
    let mut received = BTreeMap::new();
    for line in sink.lines() {
        *received.entry(line.path).or_insert(0) += 1;
    }
    assert!(sink.malformed().is_empty(), "{:?}", sink.malformed());
    (out, received, log)
}

/// Damages record 10 with `damage(file, payload offset)`, replays, and
/// checks that exactly the 46 other records arrive and record 10's 3 lines
/// are counted as dropped.
fn only_the_damaged_record_is_lost(damage: impl FnOnce(&Path, usize)) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let lines = spool_of_47_records(&spool);
    let (file, payload) = payload_of(&spool, 10);
    damage(&file, payload);
    let (out, received, log) = replay(dir.path(), &spool);
    let expected: BTreeMap<String, usize> = lines
        .iter()
        .filter(|(_, &record)| record != 10)
        .map(|(path, _)| (path.clone(), 1))
        .collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|p| !received.contains_key(*p))
        .collect();
    let wrong: Vec<_> = received
        .iter()
        .filter(|(p, n)| expected.get(*p) != Some(n))
        .collect();
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "each line of the other 46 records, once: missing {missing:?}, unexpected or repeated {wrong:?}"
    );
    assert_eq!((out.sent, out.dropped), (46 * 3, 3), "{log}");
    assert!(
        log.contains(&format!("spool file {}", file.display())) && log.contains("3 metrics"),
        "the damage is logged: {log}"
    );
}

#[test]
fn flipped_bytes_in_a_spooled_record_lose_only_that_record() {
    only_the_damaged_record_is_lost(|file, payload| {
        let mut data = fs::read(file).unwrap();
        data[payload + 3] ^= 0x01;
        data[payload + 7] ^= 0x01;
        fs::write(file, data).unwrap();
    });
}

#[test]
fn a_tampered_line_count_in_a_spooled_record_loses_only_that_record() {
    only_the_damaged_record_is_lost(|file, payload| {
        // The line count is the header field 8 bytes before the payload.
        let mut data = fs::read(file).unwrap();
        data[payload - 8..payload - 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        fs::write(file, data).unwrap();
    });
}

#[test]
fn a_spool_file_numbered_at_the_top_of_the_range_is_replayed() {
    // An earlier run left its file at the last number there is: the next
    // file must not wrap around to 0 (it would sort first) nor overflow.
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let lines = spool_of_47_records(&spool);
    let files = spool_files(&spool);
    assert_eq!(files.len(), 1);
    fs::rename(&files[0], spool.join(format!("{}.spool", u64::MAX))).unwrap();
    let (out, received, log) = replay(dir.path(), &spool);
    assert_eq!((out.sent, out.dropped), (47 * 3, 0), "{log}");
    let expected: BTreeMap<String, usize> = lines.keys().map(|p| (p.clone(), 1)).collect();
    assert_eq!(received, expected);
}
