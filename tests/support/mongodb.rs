//! MongoDB wire-protocol servers for the mongodb collector's tests, started
//! on 127.0.0.1 and a free port, stopped by PID.
//!
//! No mongod can be installed on the machines the tests run on, so there
//! are two stand-ins, both real servers speaking the wire protocol to the
//! official driver:
//!
//! * [`WireServer::nx`]: `nx-27017` (PyPI, installed by
//!   `.ci/install-test-deps`), a MongoDB server backed by SQLite. Its
//!   `serverStatus` is partial (connections, globalLock, mem, asserts,
//!   uptime), but it has databases and collections (`dbStats`,
//!   `collStats`), and it can be stopped and started again on its port.
//! * [`WireServer::replay`]: `mongodb_replay.py` beside this file, which
//!   answers the handshake and replays recorded documents of real mongod
//!   releases (`serverStatus` in turn, `replSetGetStatus`, …), with
//!   SCRAM-SHA-256 authentication when given a user. It needs Python's
//!   `bson` module, which comes with pymongo (a dependency of nx-27017).
//!
//! Each runs under `setpriv --pdeathsig TERM`, so it ends with the test
//! process even if the test is killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server;

const INSTALL_HINT: &str =
    "install it with `python3 -m pip install nx-27017` (or run .ci/install-test-deps)";
const SETPRIV: &str = "/usr/bin/setpriv";
/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A wire-protocol server process on 127.0.0.1.
pub struct WireServer {
    program: String,
    args: Vec<String>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl WireServer {
    /// `nx-27017` with an in-memory database. Run as the module its
    /// `nx-27017` command runs, with `python3`: a command pip installs is not
    /// always on `PATH` (pyenv's shims need a rehash), the module always is.
    /// Its PID file is in the server's own directory: at the default (one
    /// per machine) a second server refuses to start ("already running")
    /// while another test's runs.
    pub fn nx() -> WireServer {
        require_python_module(NX_MODULE);
        Self::start("nx-27017", "python3".into(), |port, dir| {
            [
                "-m",
                NX_MODULE,
                "--db",
                "memory",
                "--host",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--pid-file",
                &dir.join("nx-27017.pid").display().to_string(),
            ]
            .map(str::to_owned)
            .to_vec()
        })
    }

    /// The replay server with `args` (`--server-status a.json,b.json`,
    /// `--user u --password p`, `--silent-after-accept`, …); file names
    /// are relative to `fixtures`.
    pub fn replay(fixtures: &Path, args: &[&str]) -> WireServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mongodb_replay.py");
        require_python_module("bson.json_util");
        let fixtures = fixtures.display().to_string();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Self::start("replay", "python3".into(), move |port, _dir| {
            let mut all = vec![
                script.display().to_string(),
                "--fixtures".into(),
                fixtures.clone(),
                "--port".into(),
                port.to_string(),
            ];
            all.extend(args.iter().cloned());
            all
        })
    }

    /// Starts `program` with the `args` made for its port and its own
    /// directory.
    fn start(name: &str, program: String, args: impl Fn(u16, &Path) -> Vec<String>) -> WireServer {
        server::require_binary(SETPRIV, "util-linux's setpriv");
        server::start_with_retries(name, || {
            let port = server::free_ports(1, 0)[0];
            let dir = server::temp_dir(name);
            let mut s = WireServer {
                program: program.clone(),
                args: args(port, dir.path()),
                port,
                dir,
                child: None,
            };
            s.spawn_and_wait().map(|()| s)
        })
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), server::StartFailed> {
        let (out, err, offset) = server::open_log(&self.log());
        let mut child = Command::new(SETPRIV)
            .args(["--pdeathsig", "TERM", "--"])
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program));
        let ready = server::wait_until_accepts(
            &mut child,
            &self.program,
            &[self.port],
            Instant::now() + START_TIMEOUT,
            Duration::from_millis(50),
            || Ok(()),
        );
        self.child = Some(child);
        ready.map_err(|why| {
            let log = server::read_log_since(&self.log(), offset);
            let _ = self.stop();
            server::StartFailed {
                port_taken: log.contains("Address already in use")
                    || log.contains("address already in use"),
                message: format!(
                    "{} {:?} did not start ({why:?}); its log:\n{}",
                    self.program,
                    self.args,
                    server::tail(&log, 30)
                ),
            }
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        server::read_log(&self.log())
    }

    /// Stops it by its PID (SIGTERM, then SIGKILL); its port then refuses
    /// connections.
    pub fn stop(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            server::stop_child(&mut child, STOP_GRACE, &self.program)?;
        }
        Ok(())
    }

    /// Starts it again on the same port (after [`WireServer::stop`]).
    pub fn restart(&mut self) {
        if let Err(failed) = self.spawn_and_wait() {
            panic!("{}", failed.message);
        }
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("cannot stop {}: {e}", self.program);
        }
    }
}

/// The module `nx-27017`'s command runs.
const NX_MODULE: &str = "nx_27017.nx_27017";

/// Panics with the installation hint when `python3` cannot import `module`.
fn require_python_module(module: &str) {
    let imported = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !imported.is_ok_and(|s| s.success()) {
        panic!("python3 cannot import {module}: {INSTALL_HINT}");
    }
}

/// The number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
