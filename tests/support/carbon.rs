//! A real carbon-cache (Graphite's receiver, Debian package `graphite-carbon`)
//! started by a test on 127.0.0.1 and free ports, with its whisper files in a
//! temporary directory.
//!
//! ```ignore
//! mod support;
//! use support::carbon::Carbon;
//!
//! let carbon = Carbon::start();
//! // ... point the agent at 127.0.0.1:carbon.line_port() ...
//! let points = carbon.wait_for("servers.host.cpu.total.user", 2, Duration::from_secs(10));
//! ```
//!
//! Behaviour of carbon-cache 1.1.7 worth knowing when writing a test:
//!
//! * Received points sit in carbon's in-memory cache until its writer thread
//!   stores them; the writer sleeps 1 s whenever the cache is empty, so a point
//!   shows up in whisper 0–1.5 s after it was received. Always read with
//!   [`Carbon::wait_for`], never with a fixed sleep.
//! * SIGTERM does **not** flush that cache: points received in the last
//!   second or so before [`Carbon::stop`] / [`Carbon::restart`] are lost (the
//!   writer loop ends as soon as the reactor stops). A test that needs data to
//!   survive a restart must first see it with [`Carbon::wait_for`]. A stop
//!   takes 1–2 s (carbon waits for the writer thread's sleep).
//! * The whisper schema is `1s:1h` for every metric: one point per second,
//!   points older than one hour (by their timestamp) are rejected, and a later
//!   point for the same second replaces the earlier one. Points with a
//!   timestamp in the future are stored but not returned by `whisper-fetch`.
//! * carbon binds its listeners with `SO_REUSEPORT`, so two carbons on one
//!   port would share it silently instead of failing. Ports come from
//!   [`super::server::free_ports`], which never hands one out twice within
//!   one test process, and a stopped carbon is always waited for before its
//!   successor starts.
//! * carbon's own metrics (`carbon.agents.*`) are switched off
//!   (`CARBON_METRIC_INTERVAL = 0`) so [`Carbon::metric_paths`] lists only
//!   what the test sent; tagging is off (`ENABLE_TAGS = False`), otherwise
//!   carbon posts every new metric name to a graphite-web on 127.0.0.1:80.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::server::{self, NotReady};

/// The carbon-cache script of the Debian package.
pub const CARBON_CACHE: &str = "/usr/bin/carbon-cache";
/// whisper-fetch of the Debian package `python3-whisper`.
pub const WHISPER_FETCH: &str = "/usr/bin/whisper-fetch";

const INSTALL_HINT: &str = "install it with `apt-get install graphite-carbon python3-whisper` \
                            (or run .ci/install-test-deps)";

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long carbon gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Poll interval of [`Carbon::wait_for`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Starts carbon-cache inside this Python process after arming a watchdog:
/// when our end of carbon's stdin closes (the test process exited or died,
/// even by SIGKILL), carbon gets SIGTERM, and is hard-exited 10 s later if
/// that did not end it. Carbon itself never reads stdin in foreground mode.
/// The PID of the spawned process is carbon's own PID.
const WATCHDOG_LAUNCHER: &str = r#"
import os, runpy, signal, sys, threading, time
def _watchdog():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(1)
threading.Thread(target=_watchdog, name="carat-test-watchdog", daemon=True).start()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"#;

/// A running carbon-cache for one test. Dropping it stops carbon and removes
/// its directory.
pub struct Carbon {
    dir: tempfile::TempDir,
    line_port: u16,
    udp_port: u16,
    pickle_port: u16,
    cache_query_port: u16,
    child: Option<Child>,
    pid: u32,
    last_start: Duration,
}

impl Carbon {
    /// Starts carbon-cache on 127.0.0.1 with free ports (line, pickle and
    /// cache-query over TCP, the line protocol over UDP too) and returns once
    /// the line and pickle ports accept connections.
    ///
    /// Panics, with carbon's log, when it does not come up within
    /// [`START_TIMEOUT`]; panics with installation instructions when
    /// carbon-cache is not installed.
    pub fn start() -> Carbon {
        require_installed();
        server::start_with_retries("carbon", || {
            // Three TCP ports (line, pickle, cache query), then one UDP.
            let ports = server::free_ports(3, 1);
            let mut carbon = Carbon {
                dir: server::temp_dir("carbon"),
                line_port: ports[0],
                udp_port: ports[3],
                pickle_port: ports[1],
                cache_query_port: ports[2],
                child: None,
                pid: 0,
                last_start: Duration::ZERO,
            };
            carbon.write_config();
            match carbon.spawn_and_wait() {
                Ok(()) => Ok(carbon),
                Err(e) => Err(server::StartFailed {
                    port_taken: matches!(e, StartError::AddrInUse(_)),
                    message: e.to_string(),
                }),
            }
        })
    }

    /// Port of the plaintext (line) receiver over TCP.
    pub fn line_port(&self) -> u16 {
        self.line_port
    }

    /// Port of the plaintext (line) receiver over UDP.
    pub fn udp_port(&self) -> u16 {
        self.udp_port
    }

    /// Port of the pickle receiver (TCP).
    pub fn pickle_port(&self) -> u16 {
        self.pickle_port
    }

    /// Port of the cache-query (carbonlink) listener (TCP).
    pub fn cache_query_port(&self) -> u16 {
        self.cache_query_port
    }

    /// `127.0.0.1:<line port>`.
    pub fn line_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.line_port))
    }

    /// `127.0.0.1:<udp port>`.
    pub fn udp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.udp_port))
    }

    /// `127.0.0.1:<pickle port>`.
    pub fn pickle_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.pickle_port))
    }

    /// PID of the carbon-cache process most recently started (it stays the
    /// same after [`Carbon::stop`], so a test can check the process is gone).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether carbon is running (started and not yet stopped or exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | None => false,
            Some(Err(e)) => panic!("cannot query carbon-cache (pid {}): {e}", self.pid),
        }
    }

    /// How long the most recent start took, from spawning to ports ready.
    pub fn startup_time(&self) -> Duration {
        self.last_start
    }

    /// carbon's `STORAGE_DIR`.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// carbon's `LOCAL_DATA_DIR`, the root of the whisper files.
    pub fn whisper_dir(&self) -> PathBuf {
        self.storage_dir().join("whisper")
    }

    /// The whisper file carbon uses for a dotted metric path.
    pub fn whisper_file(&self, metric_path: &str) -> PathBuf {
        assert!(
            !metric_path.is_empty() && !metric_path.contains('/'),
            "not a dotted Graphite metric path: {metric_path:?}"
        );
        let mut file = self.whisper_dir();
        for component in metric_path.split('.') {
            file.push(component);
        }
        file.set_extension("wsp");
        file
    }

    /// Everything carbon wrote to stdout and stderr (all starts so far).
    pub fn log(&self) -> String {
        server::read_log(&self.log_file())
    }

    /// Stops carbon: SIGTERM, then SIGKILL if it has not exited after
    /// [`STOP_GRACE`]. Returns once the process is gone. Does nothing when
    /// carbon is not running. Points still in carbon's cache are lost (see
    /// the module documentation).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = terminate(&mut child) {
                panic!("cannot stop carbon-cache (pid {}): {e}", self.pid);
            }
        }
    }

    /// Stops carbon and starts it again with the same ports and the same
    /// storage (whisper files survive), returning once the ports accept
    /// connections again.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait() {
            panic!("carbon-cache did not come back after a restart: {e}");
        }
    }

    /// The non-null points stored for `metric_path`, oldest first, as
    /// (unix timestamp, value). Empty when carbon has not created the whisper
    /// file (yet). Values are read with full precision.
    pub fn fetch(&self, metric_path: &str) -> Vec<(i64, f64)> {
        self.try_fetch(metric_path)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls [`Carbon::fetch`] every [`POLL_INTERVAL`] until at least
    /// `min_points` points are stored for `metric_path`, and returns them.
    /// Panics after `timeout` with what was found and carbon's log.
    pub fn wait_for(
        &self,
        metric_path: &str,
        min_points: usize,
        timeout: Duration,
    ) -> Vec<(i64, f64)> {
        let deadline = Instant::now() + timeout;
        loop {
            // A whisper file that carbon is creating right now may not be
            // readable yet: such an error counts only if it persists.
            let result = self.try_fetch(metric_path);
            if let Ok(points) = &result {
                if points.len() >= min_points {
                    return points.clone();
                }
            }
            if Instant::now() >= deadline {
                let found = match result {
                    Ok(points) => format!("{} point(s): {points:?}", points.len()),
                    Err(e) => format!("an error: {e}"),
                };
                panic!(
                    "carbon: waited {timeout:?} for {min_points} point(s) of {metric_path:?}, \
                     found {found}\nmetrics carbon has stored: {:?}\ncarbon's log:\n{}",
                    self.metric_paths(),
                    server::tail(&self.log(), 60)
                );
            }
            sleep(POLL_INTERVAL);
        }
    }

    /// Every metric carbon has a whisper file for, as sorted dotted paths.
    pub fn metric_paths(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            let entries = match fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => return,
                Err(e) => panic!("cannot list {}: {e}", dir.display()),
            };
            for entry in entries {
                let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let file_type = entry
                    .file_type()
                    .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
                if file_type.is_dir() {
                    walk(&path, &format!("{prefix}{name}."), out);
                } else if let Some(stem) = name.strip_suffix(".wsp") {
                    out.push(format!("{prefix}{stem}"));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.whisper_dir(), "", &mut out);
        out.sort();
        out
    }

    fn try_fetch(&self, metric_path: &str) -> Result<Vec<(i64, f64)>, String> {
        let file = self.whisper_file(metric_path);
        if !file.exists() {
            return Ok(Vec::new());
        }
        // --json prints the values with Python's repr (full precision); the
        // plain output rounds them to 6 decimals ("%f"). Not --drop=nulls:
        // whisper-fetch then shifts the timestamps of the remaining points.
        let output = Command::new(WHISPER_FETCH)
            .arg("--json")
            .arg("--from=0")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {WHISPER_FETCH}: {e} ({INSTALL_HINT})"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "`{WHISPER_FETCH} --json --from=0 {}` failed ({}): {}{}",
                file.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            ));
        }
        parse_whisper_fetch_json(&stdout).map_err(|e| {
            format!(
                "cannot parse the output of whisper-fetch for {}: {e}\noutput: {stdout}",
                file.display()
            )
        })
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("carbon.log")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.path().join("carbon.conf")
    }

    fn pid_file(&self) -> PathBuf {
        self.storage_dir().join("run").join("carbon-cache.pid")
    }

    fn write_config(&self) {
        let storage = self.storage_dir();
        for sub in ["whisper", "lists", "log", "run"] {
            let dir = storage.join(sub);
            fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        let storage = storage
            .to_str()
            .unwrap_or_else(|| panic!("temporary directory is not UTF-8: {storage:?}"));
        assert!(
            !storage.contains(['%', '\n', '\r']),
            "carbon cannot use a storage directory containing '%' or a newline: {storage:?}"
        );
        // CONF_DIR is the directory of carbon.conf, so carbon finds
        // storage-schemas.conf and storage-aggregation.conf next to it (and no
        // whitelist.conf / blacklist.conf there means no filtering).
        let carbon_conf = format!(
            "\
[cache]
STORAGE_DIR = {storage}/
LOCAL_DATA_DIR = {storage}/whisper/
WHITELISTS_DIR = {storage}/lists/
LOG_DIR = {storage}/log/
PID_DIR = {storage}/run/
USER =
DATABASE = whisper
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_UPDATES_PER_SECOND_ON_SHUTDOWN = 100000
MAX_CREATES_PER_MINUTE = inf
MIN_TIMESTAMP_RESOLUTION = 1
CACHE_WRITE_STRATEGY = max
USE_FLOW_CONTROL = True
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = True
ENABLE_TAGS = False
CARBON_METRIC_INTERVAL = 0
ENABLE_AMQP = False
ENABLE_MANHOLE = False
LOG_LISTENER_CONNECTIONS = True
LOG_CREATES = True
LOG_UPDATES = False
LOG_CACHE_HITS = False

LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line}
ENABLE_UDP_LISTENER = True
UDP_RECEIVER_INTERFACE = 127.0.0.1
UDP_RECEIVER_PORT = {udp}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {cache_query}
",
            line = self.line_port,
            udp = self.udp_port,
            pickle = self.pickle_port,
            cache_query = self.cache_query_port,
        );
        let schemas = "\
[everything]
pattern = .*
retentions = 1s:1h
";
        let aggregation = "\
[default]
pattern = .*
xFilesFactor = 0
aggregationMethod = average
";
        for (name, text) in [
            ("carbon.conf", carbon_conf.as_str()),
            ("storage-schemas.conf", schemas),
            ("storage-aggregation.conf", aggregation),
        ] {
            let path = self.dir.path().join(name);
            fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    }

    /// Spawns carbon-cache in the foreground and waits until it listens.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        assert!(
            self.child.is_none(),
            "carbon-cache is already running (pid {})",
            self.pid
        );
        // A pidfile left by a killed carbon whose PID has since been reused
        // would make carbon refuse to start ("already running").
        match fs::remove_file(self.pid_file()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", self.pid_file().display()),
        }
        let (log, log_err, log_offset) = server::open_log(&self.log_file());

        let started = Instant::now();
        let mut command = Command::new(python_of(CARBON_CACHE));
        command
            .arg("-c")
            .arg(WATCHDOG_LAUNCHER)
            .arg(CARBON_CACHE)
            .arg(format!("--config={}", self.config_file().display()))
            .arg(format!("--pidfile={}", self.pid_file().display()))
            .arg("--nodaemon")
            .arg("start")
            .current_dir(self.dir.path())
            // The variables carbon reads would override paths of the config.
            .env_remove("GRAPHITE_ROOT")
            .env_remove("GRAPHITE_CONF_DIR")
            .env_remove("GRAPHITE_STORAGE_DIR")
            // Twisted's import-time CryptographyDeprecationWarnings are noise.
            .env("PYTHONWARNINGS", "ignore")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CARBON_CACHE}: {e} ({INSTALL_HINT})"));
        self.pid = child.id();
        self.child = Some(child);

        let child = self.child.as_mut().expect("the child was just stored");
        let ready = server::wait_until_accepts(
            child,
            "carbon-cache",
            &[self.line_port, self.pickle_port],
            started + START_TIMEOUT,
            Duration::from_millis(25),
            || Ok(()),
        );
        match ready {
            Ok(()) => {
                self.last_start = started.elapsed();
                Ok(())
            }
            Err(NotReady::Exited(status)) => {
                self.child = None;
                let log = self.log_since(log_offset);
                if log.contains("Address already in use") {
                    return Err(StartError::AddrInUse(log));
                }
                Err(StartError::Exited(status, log))
            }
            Err(NotReady::TimedOut { pending, .. }) => {
                let mut child = self.child.take().expect("the child was just stored");
                let _ = terminate(&mut child);
                let pending = pending
                    .into_iter()
                    .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                    .collect();
                Err(StartError::Timeout(pending, self.log_since(log_offset)))
            }
        }
    }

    fn log_since(&self, offset: u64) -> String {
        server::read_log_since(&self.log_file(), offset)
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Never panic here: Drop may run while a test is already panicking.
            if let Err(e) = terminate(&mut child) {
                eprintln!(
                    "carbon fixture: cannot stop carbon-cache (pid {}): {e}",
                    self.pid
                );
            }
        }
    }
}

enum StartError {
    AddrInUse(String),
    Exited(ExitStatus, String),
    Timeout(Vec<SocketAddr>, String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AddrInUse(log) => {
                write!(f, "carbon-cache could not bind its ports (address in use); its log:\n{log}")
            }
            StartError::Exited(status, log) => {
                write!(f, "carbon-cache exited ({status}) before it listened; its log:\n{log}")
            }
            StartError::Timeout(addrs, log) => write!(
                f,
                "carbon-cache did not accept connections on {addrs:?} within {START_TIMEOUT:?}; its log:\n{log}"
            ),
        }
    }
}

/// SIGTERM (not Child::kill's SIGKILL, so carbon shuts down cleanly), wait
/// up to [`STOP_GRACE`], then SIGKILL; always reaps the child.
fn terminate(child: &mut Child) -> Result<ExitStatus, String> {
    server::stop_child(child, STOP_GRACE, "carbon fixture: carbon-cache")
}

/// The interpreter named by a script's `#!` line.
fn python_of(script: &str) -> String {
    let text =
        fs::read(script).unwrap_or_else(|e| panic!("cannot read {script}: {e} ({INSTALL_HINT})"));
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = String::from_utf8_lossy(first_line);
    first_line
        .strip_prefix("#!")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|interpreter| interpreter.contains("python"))
        .unwrap_or_else(|| {
            panic!("{script} does not start with a #! line naming python: {first_line:?}")
        })
        .to_owned()
}

fn require_installed() {
    server::require_binary(CARBON_CACHE, INSTALL_HINT);
    server::require_binary(WHISPER_FETCH, INSTALL_HINT);
}

/// Parses `whisper-fetch --json` output:
/// `{"start" : S, "end" : E, "step" : T, "values" : [v, null, ...]}` where the
/// i-th value belongs to the interval starting at `S + i*T` (the timestamp
/// whisper-fetch prints for it in its plain format). Nulls are skipped.
pub fn parse_whisper_fetch_json(text: &str) -> Result<Vec<(i64, f64)>, String> {
    fn field<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
        let quoted = format!("\"{key}\"");
        let at = text
            .find(&quoted)
            .ok_or_else(|| format!("no {quoted} field"))?;
        let rest = text[at + quoted.len()..].trim_start();
        rest.strip_prefix(':')
            .map(str::trim_start)
            .ok_or_else(|| format!("no ':' after {quoted}"))
    }
    fn int(text: &str, key: &str) -> Result<i64, String> {
        let rest = field(text, key)?;
        let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
        let raw = rest[..end].trim();
        raw.parse()
            .map_err(|e| format!("\"{key}\" is not an integer: {raw:?} ({e})"))
    }
    let start = int(text, "start")?;
    let step = int(text, "step")?;
    if step <= 0 {
        return Err(format!("\"step\" is not positive: {step}"));
    }
    let values = field(text, "values")?;
    let values = values
        .strip_prefix('[')
        .ok_or_else(|| "\"values\" is not a list".to_owned())?;
    let end = values
        .find(']')
        .ok_or_else(|| "\"values\" list is not closed".to_owned())?;
    let values = values[..end].trim();
    let mut points = Vec::new();
    if values.is_empty() {
        return Ok(points);
    }
    for (i, raw) in values.split(',').enumerate() {
        let raw = raw.trim();
        if raw == "null" || raw == "None" {
            continue;
        }
        // Python's repr: "42.0", "1e-07", "nan", "inf", "-inf" all parse.
        let value: f64 = raw
            .parse()
            .map_err(|e| format!("value #{i} is not a number: {raw:?} ({e})"))?;
        let offset = i64::try_from(i).map_err(|_| format!("too many values ({i})"))?;
        points.push((start + offset * step, value));
    }
    Ok(points)
}
