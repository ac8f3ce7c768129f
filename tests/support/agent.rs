//! The real `carat` binary as an operator runs it, for end-to-end tests: a
//! configuration file and a fake `/proc` in a temporary directory, standard
//! output and error captured, the health endpoint on a free port, SIGTERM
//! to stop it.
//!
//! Tests that count lines give the agent a `[output.stdout]` next to the
//! output under test: with self-metrics off, what it prints is exactly what
//! the collectors produced, the reference to compare deliveries with.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use super::bin::{free_port, http_get};

/// A `/proc` with the files the `memory` and `network` collectors read,
/// with fixed values: every run publishes the same metrics.
pub struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    /// A tree with a small `meminfo` and `interfaces` network interfaces
    /// (`eth0`…): the network collector publishes 18 rates per interface
    /// from its second run on.
    pub fn new(interfaces: usize) -> FakeProc {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            dir.path().join("meminfo"),
            "MemTotal:       16303092 kB\nMemFree:         1021116 kB\nMemAvailable:    9143684 kB\n\
             Buffers:          528360 kB\nCached:          7556428 kB\nSwapTotal:       2097148 kB\n\
             SwapFree:        2097148 kB\n",
        )
        .expect("write meminfo");
        std::fs::create_dir_all(dir.path().join("net")).expect("net directory");
        let mut dev = String::from(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
        );
        for i in 0..interfaces {
            dev.push_str(&format!(
                "eth{i}: {} 8197 0 0 0 0 0 0 515905 5042 0 0 0 0 0 0\n",
                157_903_285 + i
            ));
        }
        std::fs::write(dir.path().join("net/dev"), dev).expect("write net/dev");
        FakeProc { dir }
    }

    /// Its root, for `proc_root`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// The resident memory of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// What the agent logged about an output when it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Lines delivered.
    pub sent: u64,
    /// Lines dropped, all counted.
    pub dropped: u64,
    /// Lines left in the spool for the next start.
    pub left: u64,
}

/// A running `carat run`.
pub struct AgentProcess {
    child: Child,
    /// The directory of a configuration written by [`AgentProcess::start`].
    dir: Option<tempfile::TempDir>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    /// The health endpoint's port, if the configuration set one with
    /// [`AgentProcess::HEALTH`].
    pub health_port: u16,
}

impl AgentProcess {
    /// Runs the agent on `config` until its stdout output prints a line
    /// starting with `wanted` (at most `limit`), stops it, and returns every
    /// line it printed. Panics, with the agent's standard error, when that
    /// line never came.
    pub fn lines_until(config: &str, wanted: &str, limit: Duration) -> Vec<String> {
        let mut agent = AgentProcess::start(config);
        let found = agent.wait_for(limit, |a| {
            a.produced().iter().any(|l| l.starts_with(wanted))
        });
        agent.stop(Duration::from_secs(10));
        let lines = agent.produced();
        assert!(
            found,
            "no line {wanted:?} within {limit:?} ({} lines); stderr:\n{}",
            lines.len(),
            agent.stderr()
        );
        lines
    }

    /// Written in a configuration, replaced by `127.0.0.1:<free port>`.
    pub const HEALTH: &'static str = "@HEALTH@";

    /// Writes `config` (with [`AgentProcess::HEALTH`] replaced) and starts
    /// `carat run -c` on it.
    pub fn start(config: &str) -> AgentProcess {
        Self::start_with_env(config, &[])
    }

    /// [`AgentProcess::start`] with changes to its environment: a variable
    /// set, or removed (`None`; `RUST_LOG`, set to `info` by default, for
    /// one).
    pub fn start_with_env(config: &str, env: &[(&str, Option<&std::ffi::OsStr>)]) -> AgentProcess {
        let dir = tempfile::tempdir().expect("temporary directory");
        let health_port = free_port();
        let path = dir.path().join("carat.toml");
        let config = config.replace(Self::HEALTH, &format!("127.0.0.1:{health_port}"));
        std::fs::write(&path, config).expect("write the configuration");
        let mut agent = Self::spawn(&path, health_port, env);
        agent.dir = Some(dir);
        agent
    }

    /// Starts `carat run -c` on the configuration at `path`, whose health
    /// endpoint (if any) is on `health_port`.
    pub fn start_file(path: &Path, health_port: u16) -> AgentProcess {
        Self::spawn(path, health_port, &[])
    }

    /// The configuration file written by [`AgentProcess::start`].
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir
            .as_ref()
            .expect("an agent started with AgentProcess::start")
            .path()
            .join("carat.toml")
    }

    /// Replaces the configuration file (with [`AgentProcess::HEALTH`]
    /// replaced as at start); SIGHUP makes the agent read it.
    pub fn write_config(&self, config: &str) {
        let config = config.replace(Self::HEALTH, &format!("127.0.0.1:{}", self.health_port));
        std::fs::write(self.config_path(), config).expect("write the configuration");
    }

    fn spawn(
        path: &Path,
        health_port: u16,
        env: &[(&str, Option<&std::ffi::OsStr>)],
    ) -> AgentProcess {
        let mut command = super::bin::carat();
        command.env("RUST_LOG", "info");
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .args(["run", "-c"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start carat");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let lines = Arc::clone(&stdout);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        if let Some(mut err) = child.stderr.take() {
            let text = Arc::clone(&stderr);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }));
        }
        AgentProcess {
            child,
            dir: None,
            stdout,
            stderr,
            readers,
            health_port,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines printed by its stdout output so far.
    pub fn produced(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Its standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `check` holds, at most `limit`; false if it never did.
    pub fn wait_for(&self, limit: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        check(self)
    }

    /// `GET /health`: status and body.
    pub fn health(&self) -> (u16, String) {
        http_get(self.health_port, "/health")
    }

    /// `GET /health`, or `None` while the endpoint is not listening yet.
    pub fn try_health(&self) -> Option<(u16, String)> {
        std::net::TcpStream::connect(("127.0.0.1", self.health_port))
            .ok()
            .map(|_| self.health())
    }

    /// Sends `signal` (a libc signal number).
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with the pid of a child this fixture owns.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Sends SIGTERM and waits for the exit, at most `limit`; returns the
    /// status and how long it took. Standard output and error are read to
    /// their end.
    pub fn stop(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal(libc::SIGTERM);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for carat") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "carat did not exit within {limit:?} of SIGTERM; its log:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The totals the agent logged for `output` when it stopped.
    pub fn totals(&self, output: &str) -> Totals {
        let log = self.stderr();
        let marker = format!("output {output} totals: ");
        let line = log
            .lines()
            .find_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("no totals for output {output} in the log:\n{log}"));
        let number = |key: &str| -> u64 {
            line.split(key)
                .nth(1)
                .and_then(|rest| {
                    rest.trim_start()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                })
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no `{key}` in {line:?}"))
        };
        Totals {
            sent: number("sent"),
            dropped: number("dropped"),
            left: number("left in the spool"),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the health endpoint says of one output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputHealth {
    /// Connected to its receiver.
    pub connected: bool,
    /// Lines sent.
    pub sent: u64,
    /// Lines dropped.
    pub dropped: u64,
    /// Lines held (memory, spool, in flight).
    pub buffered: u64,
}

/// Reads output `name` from a health body:
/// `output NAME: connected (sent N, dropped N, buffered N)`.
pub fn output_health(body: &str, name: &str) -> Option<OutputHealth> {
    let rest = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("output {name}: ")))?;
    let (state, counts) = rest.split_once(" (")?;
    let mut health = OutputHealth {
        connected: state == "connected",
        ..OutputHealth::default()
    };
    for field in counts.trim_end_matches(')').split(", ") {
        let (key, value) = field.split_once(' ')?;
        let value = value.parse().ok()?;
        match key {
            "sent" => health.sent = value,
            "dropped" => health.dropped = value,
            "buffered" => health.buffered = value,
            _ => {}
        }
    }
    Some(health)
}

/// Reads the run count of collector `name` from a health body
/// (`collector NAME: ok (runs N, …)`).
pub fn collector_runs(body: &str, name: &str) -> Option<u64> {
    let rest = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("collector {name}: ")))?;
    rest.split_once("(runs ")?
        .1
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
