//! Processes a fixture starts and that must not outlive the test, even when
//! the test process dies without running `Drop` (SIGKILL, a CI timeout).
//!
//! A server is started under [`WATCHDOG`], a small shell script that leads a
//! process group of its own and holds a pipe from the test process: when the
//! pipe closes, the watchdog sends SIGTERM to the server and, 15 s later,
//! SIGKILL to the whole group. [`Supervised`] stops such a group from the
//! test: SIGTERM (or whatever the fixture sent first), a grace period, then
//! SIGKILL to every process left in the group, and it returns only once the
//! group is empty, so the server's ports and files are free.
//! [`SupervisedServer`] is what a fixture builds on it: a server in a
//! temporary directory of its own, started until it is ready, stopped
//! cleanly, and what the fixture's accessors report about it.
//!
//! Used by the RabbitMQ, PostgreSQL and MariaDB fixtures.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::server::{self, tail, NotReady, StartFailed};

/// Runs `"$@"` in the background and waits for it. When standard input (a
/// pipe the test process holds) reaches end-of-file, because the test
/// process exited or died, it sends SIGTERM to the command and, 15 s later,
/// SIGKILL to its whole process group (the script is the group leader).
pub const WATCHDOG: &str = r#"
exec 3<&0 0</dev/null
"$@" 3<&- &
child=$!
{
    cat <&3 >/dev/null 2>&1
    kill -TERM "$child" 2>/dev/null
    sleep 15
    kill -KILL 0 2>/dev/null
} &
watchdog=$!
exec 3<&-
wait "$child"
status=$?
kill -KILL "$watchdog" 2>/dev/null
exit "$status"
"#;

/// A command that runs `program` (add its arguments to the command) under
/// [`WATCHDOG`]; `name` is the script's `$0`, what `ps` shows for the shell.
/// Start it with [`Supervised::spawn`].
///
/// The server is the shell's child, not the shell itself: a fixture that
/// signals the server directly takes its PID from the server's pidfile.
/// Being started by a non-interactive shell with `&`, the server starts
/// with SIGINT and SIGQUIT ignored, unless it installs handlers of its own
/// (PostgreSQL does; SIGTERM is never ignored).
pub fn watchdog_command(name: &str, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(WATCHDOG).arg(name).arg(program);
    command
}

/// A process started as the leader of its own process group (usually the
/// [`WATCHDOG`] shell of a [`watchdog_command`]), with a pipe to its
/// standard input held until it is stopped.
pub struct Supervised {
    child: Child,
    pgid: u32,
    fixture: &'static str,
}

impl Supervised {
    /// Spawns `command` as the leader of a new process group with its stdin
    /// piped from this process. `fixture` names the fixture in messages,
    /// `what` the program; panics with `install_hint` when it cannot start.
    pub fn spawn(
        mut command: Command,
        fixture: &'static str,
        what: &str,
        install_hint: &str,
    ) -> Supervised {
        command.stdin(Stdio::piped()).process_group(0);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("{fixture} fixture: cannot start {what}: {e} ({install_hint})")
        });
        let pgid = child.id();
        Supervised {
            child,
            pgid,
            fixture,
        }
    }

    /// The process group's ID, which is the leader's PID.
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// The group leader, e.g. for [`server::wait_until_accepts`].
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The leader's exit status, or `None` while it runs.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child.try_wait().map_err(|e| e.to_string())
    }

    /// Waits up to `limit` for the group leader to exit.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Result<Option<ExitStatus>, String> {
        server::wait_for_exit(&mut self.child, limit)
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then
    /// SIGKILL to whatever is left of the group; reaps the leader.
    pub fn terminate(mut self, grace: Duration) -> Result<(), String> {
        if self.exited()?.is_none() {
            signal_group(self.pgid, "TERM");
            if self.wait_for_exit(grace)?.is_none() {
                eprintln!(
                    "{} fixture: process group {} ignored SIGTERM for {grace:?}, killing it",
                    self.fixture, self.pgid
                );
            }
        }
        self.kill_group()
    }

    /// SIGKILL to the group (whatever a process that exited left behind),
    /// reaps the leader, and waits until the group is empty.
    pub fn kill_group(mut self) -> Result<(), String> {
        signal_group(self.pgid, "KILL");
        // Closing the pipe lets the watchdog's `cat` end if it survived.
        drop(self.child.stdin.take());
        self.child.wait().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(self.pgid) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "process group {} is still alive after SIGKILL",
                    self.pgid
                ));
            }
            signal_group(self.pgid, "KILL");
            sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// `kill -<signal> -- -<pgid>`: the whole group, so the server and its
/// helpers go too, not only the watchdog shell that leads it.
pub fn signal_group(pgid: u32, signal: &str) -> bool {
    server::send_signal(signal, -i64::from(pgid))
}

/// Whether any process of group `pgid` is still running. Zombies do not
/// count: they hold no ports or files any more, and an orphan (the
/// watchdog's `cat`) is reaped by PID 1 when PID 1 gets to it, which the
/// init of some containers and VMs does only every second or two (measured
/// here: 1.2–2 s), while `kill -0` succeeds until then.
pub fn group_alive(pgid: u32) -> bool {
    !group_members(pgid).is_empty()
}

/// The state letter and process group of `pid` from `/proc/<pid>/stat`, or
/// `None` when there is no such process.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether `pid` is a running process: it exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The PIDs of the running (not zombie) processes in group `pgid`, from
/// `/proc`: a server and the helpers it forked, so that a test can check
/// later that each of them is gone.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z'))
        .collect();
    pids.sort_unstable();
    pids
}

/// Runs a client program (`psql`, `mariadb`) to completion with `input` on
/// its stdin and returns what it wrote; kills it (SIGKILL) when it takes
/// longer than `limit`, so that a query that waits forever on a lock or a
/// server fails the test instead of hanging it.
pub fn output_within(mut command: Command, input: &str, limit: Duration) -> Result<Output, String> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    // Threads of their own: the client may fill its output pipes before it
    // has read all its input, and the wait must be able to time out.
    let writer = std::thread::spawn(move || {
        // A client that exits early closes the pipe: its status tells why.
        let _ = stdin.write_all(input.as_bytes());
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let result = match rx.recv_timeout(limit) {
        Ok(output) => output.map_err(|e| format!("cannot wait for it: {e}")),
        Err(_) => {
            server::send_signal("KILL", i64::from(pid));
            Err(format!("it did not finish within {limit:?} (killed)"))
        }
    };
    let _ = writer.join();
    result
}

/// Removes from `command`'s environment every variable of this process
/// whose name starts with `prefix` (`PG`, `MYSQL`): a client or server a
/// fixture runs reads them, and the environment of whoever runs the tests
/// must not redirect it.
pub fn clear_env_prefixed(command: &mut Command, prefix: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(prefix) {
            command.env_remove(&key);
        }
    }
}

/// Runs a SQL client (`psql`, `mariadb`; `name` in messages) with `sql` on
/// its stdin through [`output_within`] and returns what it wrote to stdout;
/// panics with its stderr and the SQL when it fails, cannot start or takes
/// longer than `limit`.
pub fn run_client(command: Command, name: &str, sql: &str, limit: Duration) -> String {
    let output =
        output_within(command, sql, limit).unwrap_or_else(|e| panic!("{name}: {e}; SQL:\n{sql}"));
    if !output.status.success() {
        panic!(
            "{name} failed ({}): {}SQL:\n{sql}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout)
        .unwrap_or_else(|e| panic!("{name} wrote something that is not UTF-8: {e}"))
}

/// How many lines of a server's log a start failure quotes.
const LOG_TAIL: usize = 80;

/// What the log of a server that could not bind a port says.
const ADDR_IN_USE: [&str; 2] = ["Address already in use", "eaddrinuse"];

/// What [`SupervisedServer`] needs to know about a fixture's server.
pub struct ServerSpec {
    /// Names the fixture in messages (`postgres`), and the watchdog shell
    /// (`carat-postgres-watchdog`).
    pub fixture: &'static str,
    /// Names the server in messages (`postgres`, `mariadbd`).
    pub name: &'static str,
    /// The server's program, which [`SupervisedServer::command`] runs.
    pub program: &'static str,
    /// Every program the fixture runs ([`ServerSpec::require_installed`]).
    pub binaries: &'static [&'static str],
    /// How to install them: "install it with `apt-get install …`".
    pub install_hint: &'static str,
    /// The log file, in the fixture's directory, that the server's stdout
    /// and stderr append to.
    pub log_name: &'static str,
    /// How long a start may take.
    pub start_timeout: Duration,
    /// The signal [`SupervisedServer::stop`] sends to the server's PID for
    /// a clean shutdown; `None` when the fixture asks for one in a way of
    /// its own (a control tool) before it calls `stop`.
    pub shutdown_signal: Option<&'static str>,
    /// How long the clean shutdown, and then SIGTERM to the process group,
    /// each get before SIGKILL.
    pub stop_grace: Duration,
}

impl ServerSpec {
    /// Panics with [`ServerSpec::install_hint`] unless every one of
    /// [`ServerSpec::binaries`] exists.
    pub fn require_installed(&self) {
        for path in self.binaries {
            server::require_binary(path, self.install_hint);
        }
    }
}

/// What a test does with a fixture built on [`SupervisedServer`], whichever
/// server it runs: look at its processes, stop it, start it again. A
/// fixture gives its [`SupervisedServer`], its URL and how it starts again;
/// the rest is provided.
pub trait ServerFixture {
    /// The fixture's server.
    fn server(&self) -> &SupervisedServer;
    /// The fixture's server, to stop it.
    fn server_mut(&mut self) -> &mut SupervisedServer;
    /// The URL a client (the collector under test) connects with.
    fn url(&self) -> String;
    /// Starts a stopped server again on the same port and data directory,
    /// returning once clients can connect.
    fn start_again(&mut self);

    /// PID of the most recently started server process.
    fn pid(&self) -> u32 {
        self.server().pid()
    }

    /// The PIDs of the server's processes right now (the server, whatever
    /// it forked, and the watchdog shell); empty when it is stopped.
    fn pids(&self) -> Vec<u32> {
        self.server().pids()
    }

    /// How long the most recent start took, until clients could connect
    /// (without creating the data directory on the first start).
    fn last_start(&self) -> Duration {
        self.server().last_start()
    }

    /// Whether the server is running (started and not stopped or exited).
    fn is_running(&mut self) -> bool {
        self.server_mut().is_running()
    }

    /// Everything the fixture's programs wrote to the log file.
    fn log(&self) -> String {
        self.server().log()
    }

    /// Stops the server cleanly (see the fixture's module documentation)
    /// and returns once all its processes are gone. Does nothing when it is
    /// not running; [`ServerFixture::start_again`] starts it again.
    fn stop(&mut self) {
        self.server_mut().stop();
    }

    /// [`ServerFixture::stop`], then [`ServerFixture::start_again`].
    fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

/// A fixture's server: its temporary directory (configuration, data, log),
/// and the server process, run under [`WATCHDOG`] as a [`Supervised`]
/// process group while it is started. Dropping it stops the server as
/// [`SupervisedServer::stop`] does (a failure is printed, not a panic) and
/// then removes the directory.
pub struct SupervisedServer {
    spec: &'static ServerSpec,
    process: Option<Supervised>,
    /// PID of the most recently started server.
    pid: u32,
    last_start: Duration,
    dir: tempfile::TempDir,
}

impl SupervisedServer {
    /// A server described by `spec` that is not started yet, in `dir`.
    pub fn new(spec: &'static ServerSpec, dir: tempfile::TempDir) -> SupervisedServer {
        SupervisedServer {
            spec,
            process: None,
            pid: 0,
            last_start: Duration::ZERO,
            dir,
        }
    }

    /// The temporary directory, removed when this is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file ([`ServerSpec::log_name`] in [`SupervisedServer::dir`]).
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join(self.spec.log_name)
    }

    /// [`server::open_log`] of the log file, for the fixture's other
    /// programs (a setup tool, a helper daemon) to write to it too.
    pub fn open_log(&self) -> (Stdio, Stdio, u64) {
        server::open_log(&self.log_file())
    }

    /// Everything written to the log file, by every start so far.
    pub fn log(&self) -> String {
        server::read_log(&self.log_file())
    }

    /// What was written to the log file after `offset`
    /// ([`SupervisedServer::open_log`]).
    pub fn log_since(&self, offset: u64) -> String {
        server::read_log_since(&self.log_file(), offset)
    }

    /// A [`watchdog_command`] that runs [`ServerSpec::program`]: add its
    /// arguments and hand it to [`SupervisedServer::start`].
    pub fn command(&self) -> Command {
        let spec = self.spec;
        watchdog_command(&format!("carat-{}-watchdog", spec.fixture), spec.program)
    }

    /// PID of the most recently started server: the one the readiness
    /// check of [`SupervisedServer::start`] named, else the watchdog shell.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The PIDs of the server's process group right now (the watchdog
    /// shell, the server and whatever it forked); empty when it is stopped.
    pub fn pids(&self) -> Vec<u32> {
        self.process
            .as_ref()
            .map(|process| group_members(process.pgid()))
            .unwrap_or_default()
    }

    /// How long the most recent start took, until the server was ready.
    pub fn last_start(&self) -> Duration {
        self.last_start
    }

    /// Whether the server is running (started and not stopped or exited);
    /// panics when that cannot be told.
    pub fn is_running(&mut self) -> bool {
        self.running().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`SupervisedServer::is_running`], with an error instead of a panic.
    pub fn running(&mut self) -> Result<bool, String> {
        match self.process.as_mut().map(Supervised::exited) {
            None => Ok(false),
            Some(Ok(status)) => Ok(status.is_none()),
            Some(Err(e)) => Err(format!(
                "cannot query {} (pid {}): {e}",
                self.spec.name, self.pid
            )),
        }
    }

    /// Starts `command` (from [`SupervisedServer::command`]), its stdout and
    /// stderr appended to the log file, and waits until it is ready: each of
    /// `ports` on 127.0.0.1 accepts a connection and then `ready` succeeds.
    /// `ready` is called every `poll` with the log file's length before this
    /// start ([`SupervisedServer::log_since`]); it returns the server's PID
    /// when it is not the watchdog shell's (from a pidfile), or `None`.
    ///
    /// When the server exits or is not ready within
    /// [`ServerSpec::start_timeout`], it is stopped and the error quotes its
    /// log; [`StartFailed::port_taken`] when the log says a port was taken.
    pub fn start(
        &mut self,
        mut command: Command,
        ports: &[u16],
        poll: Duration,
        mut ready: impl FnMut(u64) -> Result<Option<u32>, String>,
    ) -> Result<(), StartFailed> {
        let spec = self.spec;
        let name = spec.name;
        assert!(self.process.is_none(), "{name} is already running");
        let (log, log_err, offset) = self.open_log();
        command.stdout(log).stderr(log_err);
        let started = Instant::now();
        let process = self.process.insert(Supervised::spawn(
            command,
            spec.fixture,
            spec.program,
            spec.install_hint,
        ));
        let leader = process.pgid();
        let mut pid = None;
        let outcome = server::wait_until_accepts(
            process.child(),
            name,
            ports,
            started + spec.start_timeout,
            poll,
            || {
                pid = ready(offset)?;
                Ok(())
            },
        );
        let failed = match outcome {
            Ok(()) => {
                self.pid = pid.unwrap_or(leader);
                self.last_start = started.elapsed();
                return Ok(());
            }
            Err(NotReady::Exited(status)) => {
                if let Some(process) = self.process.take() {
                    let _ = process.kill_group();
                }
                let log = self.log_since(offset);
                let port_taken = ADDR_IN_USE.iter().any(|needle| log.contains(needle));
                let what = if port_taken {
                    "could not bind its port (address in use)".to_owned()
                } else {
                    format!("exited ({status}) before it accepted clients")
                };
                StartFailed {
                    port_taken,
                    message: format!("{name} {what}; its log:\n{}", tail(&log, LOG_TAIL)),
                }
            }
            Err(NotReady::TimedOut {
                pending,
                last_error,
            }) => {
                if let Some(process) = self.process.take() {
                    let _ = process.terminate(Duration::from_secs(5));
                }
                let last_error = last_error
                    .unwrap_or_else(|| format!("port(s) {pending:?} refused connections"));
                StartFailed {
                    port_taken: false,
                    message: format!(
                        "{name} did not accept clients within {:?} ({last_error}); its log:\n{}",
                        spec.start_timeout,
                        tail(&self.log_since(offset), LOG_TAIL)
                    ),
                }
            }
        };
        Err(failed)
    }

    /// Stops the server and returns once its whole process group is gone:
    /// [`ServerSpec::shutdown_signal`] to its PID (when it has one and the
    /// server runs), up to [`ServerSpec::stop_grace`] for it to exit, then
    /// [`Supervised::terminate`]. Does nothing when it is not running;
    /// panics when it cannot be stopped.
    pub fn stop(&mut self) {
        if let Err(e) = self.try_stop() {
            panic!("{e}");
        }
    }

    /// [`SupervisedServer::stop`], with an error instead of a panic.
    pub fn try_stop(&mut self) -> Result<(), String> {
        let spec = self.spec;
        let pid = self.pid;
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        let failed = |e: String| format!("cannot stop {} (pid {pid}): {e}", spec.name);
        if process.exited().map_err(failed)?.is_none() {
            if let Some(signal) = spec.shutdown_signal {
                // The watchdog shell exits with the server; SIGTERM and
                // SIGKILL to the group are the fallback.
                server::send_signal(signal, i64::from(pid));
            }
            if process
                .wait_for_exit(spec.stop_grace)
                .map_err(failed)?
                .is_none()
            {
                eprintln!(
                    "{} fixture: {} (pid {pid}) did not shut down within {:?}",
                    spec.fixture, spec.name, spec.stop_grace
                );
            }
        }
        process.terminate(spec.stop_grace).map_err(failed)
    }
}

impl Drop for SupervisedServer {
    fn drop(&mut self) {
        // Never panic here: Drop may run while a test is already panicking.
        if let Err(e) = self.try_stop() {
            eprintln!("{} fixture: {e}", self.spec.fixture);
        }
    }
}
