//! A real RabbitMQ broker (Debian package `rabbitmq-server`) started by a
//! test on 127.0.0.1 and free ports, with its database and logs in a
//! temporary directory.
//!
//! ```ignore
//! mod support;
//! use support::rabbitmq::RabbitMq;
//!
//! let broker = RabbitMq::start();
//! // ... point the agent at broker.url() ...
//! broker.restart(); // same ports, same node, same database
//! ```
//!
//! Behaviour of RabbitMQ 3.10 (Erlang 25) worth knowing when writing a test:
//!
//! * A start takes 5–8 s on two cores (about 2 s of it is the broker finding
//!   its boot steps); a graceful stop about 1–2 s. Call the blocking methods
//!   through `tokio::task::block_in_place`.
//! * Everything is private to the fixture: its own Erlang port mapper (epmd)
//!   on a free port (`ERL_EPMD_PORT`), its own node name
//!   (`carat-<pid>-<n>@localhost`), distribution port, `rabbitmqctl`
//!   distribution port, cookie (`HOME` is the temporary directory), config
//!   file and no plugins; the system's `/etc/rabbitmq` is not read. All
//!   listeners are bound to 127.0.0.1 (epmd also to ::1).
//! * The node name and database survive [`RabbitMq::restart`], so durable
//!   exchanges and queues, and the persistent messages in them, are still
//!   there afterwards.
//! * Processes are stopped by PID: `rabbitmqctl stop` first, then SIGTERM and
//!   SIGKILL to the broker's process group, then the fixture's epmd. Each
//!   runs under a small watchdog shell that holds a pipe from the test
//!   process: if the test process dies without running `Drop` (SIGKILL, a
//!   CI timeout), the pipe closes, the watchdog sends SIGTERM and, 15 s
//!   later, SIGKILL to the whole group.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::server::{self, tail, NotReady};

/// The broker's start script (the one under `/usr/sbin` switches to the
/// `rabbitmq` user when run as root; this one runs as the caller).
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The control tool of the same package.
pub const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// Erlang's port mapper (package `erlang-base`, a dependency).
pub const EPMD: &str = "/usr/bin/epmd";

const INSTALL_HINT: &str =
    "install it with `apt-get install rabbitmq-server` (or run .ci/install-test-deps)";

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `rabbitmqctl stop` and then SIGTERM each get before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// Runs `"$@"` in the background and waits for it. When standard input (a
/// pipe the test process holds) reaches end-of-file, because the test
/// process exited or died, it sends SIGTERM to the command and, 15 s later,
/// SIGKILL to its whole process group (the script is the group leader).
const WATCHDOG: &str = r#"
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

/// Numbers the node names of this process.
static NODE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A process started under [`WATCHDOG`] as the leader of its own process
/// group.
struct Supervised {
    child: Child,
    pgid: u32,
}

impl Supervised {
    fn spawn(mut command: Command, what: &str) -> Supervised {
        command.stdin(Stdio::piped()).process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e} ({INSTALL_HINT})"));
        let pgid = child.id();
        Supervised { child, pgid }
    }

    fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child.try_wait().map_err(|e| e.to_string())
    }

    /// Waits up to `limit` for the group leader to exit.
    fn wait_for_exit(&mut self, limit: Duration) -> Result<Option<ExitStatus>, String> {
        server::wait_for_exit(&mut self.child, limit)
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then
    /// SIGKILL to whatever is left of the group; reaps the leader.
    fn terminate(mut self, grace: Duration) -> Result<(), String> {
        if self.exited()?.is_none() {
            signal_group(self.pgid, "TERM");
            if self.wait_for_exit(grace)?.is_none() {
                eprintln!(
                    "rabbitmq fixture: process group {} ignored SIGTERM for {grace:?}, killing it",
                    self.pgid
                );
            }
        }
        self.kill_group()
    }

    /// SIGKILL to the group (whatever a process that exited left behind),
    /// reaps the leader, and waits until the group is empty.
    fn kill_group(mut self) -> Result<(), String> {
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

/// `kill -<signal> -- -<pgid>`: the whole group, so the broker's Erlang VM
/// and helpers go too, not only the watchdog shell that leads it.
fn signal_group(pgid: u32, signal: &str) -> bool {
    server::send_signal(signal, -i64::from(pgid))
}

fn group_alive(pgid: u32) -> bool {
    signal_group(pgid, "0")
}

/// A running RabbitMQ for one test. Dropping it stops the broker and its
/// epmd and removes its directory.
pub struct RabbitMq {
    dir: tempfile::TempDir,
    node: String,
    amqp_port: u16,
    dist_port: u16,
    epmd_port: u16,
    ctl_port: u16,
    /// The management plugin's HTTP port, when it is enabled.
    management_port: Option<u16>,
    epmd: Option<Supervised>,
    broker: Option<Supervised>,
    broker_pid: u32,
    last_start: Duration,
}

impl RabbitMq {
    /// Starts a broker on 127.0.0.1 with free ports and returns once an
    /// AMQP client can connect and open a channel.
    ///
    /// Panics, with the broker's log, when it does not come up within
    /// [`START_TIMEOUT`]; panics with installation instructions when
    /// rabbitmq-server is not installed.
    pub fn start() -> RabbitMq {
        Self::start_with(false)
    }

    /// Starts a broker as [`RabbitMq::start`] does, with the management
    /// plugin's HTTP API on 127.0.0.1 and a free port too
    /// ([`RabbitMq::management_url`]), and statistics collected every
    /// 500 ms instead of 5 s, so that rates move within a test. The start
    /// takes a few seconds more (the plugin and its listener).
    pub fn start_with_management() -> RabbitMq {
        Self::start_with(true)
    }

    fn start_with(management: bool) -> RabbitMq {
        require_installed();
        server::start_with_retries("rabbitmq", || {
            // AMQP, distribution, epmd, rabbitmqctl's distribution, HTTP.
            let [amqp_port, dist_port, epmd_port, ctl_port, http_port] =
                server::free_ports(5, 0)[..]
            else {
                unreachable!("free_ports returns as many ports as asked for")
            };
            let node = format!(
                "carat-{}-{}@localhost",
                std::process::id(),
                NODE_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let mut broker = RabbitMq {
                dir: server::temp_dir("rabbitmq"),
                node,
                amqp_port,
                dist_port,
                epmd_port,
                ctl_port,
                management_port: management.then_some(http_port),
                epmd: None,
                broker: None,
                broker_pid: 0,
                last_start: Duration::ZERO,
            };
            broker.write_config();
            match broker.start_epmd().and_then(|()| broker.spawn_and_wait()) {
                Ok(()) => Ok(broker),
                Err(e) => Err(server::StartFailed {
                    port_taken: matches!(e, StartError::AddrInUse(_)),
                    message: e.to_string(),
                }),
            }
        })
    }

    /// The AMQP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.amqp_port
    }

    /// `127.0.0.1:<AMQP port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.amqp_port))
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`: the default user (allowed
    /// from loopback only) on the default virtual host.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// `http://127.0.0.1:<port>`: the management API of a broker started
    /// with [`RabbitMq::start_with_management`] (user `guest`, password
    /// `guest`, allowed from loopback).
    pub fn management_url(&self) -> String {
        let port = self
            .management_port
            .expect("the broker was started without the management plugin");
        format!("http://127.0.0.1:{port}")
    }

    /// The Erlang node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How long the most recent start took, until a client could connect.
    pub fn last_start(&self) -> Duration {
        self.last_start
    }

    /// PID of the most recently started `rabbitmq-server` script (the
    /// watchdog shell; the broker's processes are in its process group).
    pub fn pid(&self) -> u32 {
        self.broker_pid
    }

    /// Whether the broker is running (started and not stopped or exited).
    pub fn is_running(&mut self) -> bool {
        match self.broker.as_mut().map(Supervised::exited) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | None => false,
            Some(Err(e)) => panic!(
                "cannot query rabbitmq-server (pid {}): {e}",
                self.broker_pid
            ),
        }
    }

    /// Everything the broker wrote to stdout and stderr (all starts so far).
    pub fn log(&self) -> String {
        server::read_log(&self.log_file())
    }

    /// Runs `rabbitmqctl <args>` against this broker; its output, or an error
    /// with its output.
    pub fn ctl(&self, args: &[&str], limit: Duration) -> Result<String, String> {
        let out = self.dir.path().join("rabbitmqctl.out");
        let file =
            fs::File::create(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let file_err = file.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(RABBITMQCTL);
        command
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(file_err));
        self.env(&mut command);
        let mut ctl = Supervised::spawn(command, RABBITMQCTL);
        let status = ctl.wait_for_exit(limit)?;
        let output = fs::read_to_string(&out).unwrap_or_default();
        let result = match status {
            Some(s) if s.success() => Ok(output),
            Some(s) => Err(format!(
                "`rabbitmqctl {}` failed ({s}): {output}",
                args.join(" ")
            )),
            None => Err(format!(
                "`rabbitmqctl {}` did not finish in {limit:?}: {output}",
                args.join(" ")
            )),
        };
        let _ = ctl.kill_group();
        result
    }

    /// Stops the broker: `rabbitmqctl stop`, then SIGTERM and SIGKILL to its
    /// process group if needed. Returns once every process of it is gone.
    /// Does nothing when it is not running. The fixture's epmd keeps running.
    pub fn stop(&mut self) {
        if let Err(e) = self.stop_broker() {
            panic!("cannot stop rabbitmq-server (pid {}): {e}", self.broker_pid);
        }
    }

    /// Stops the broker and starts it again with the same node name, ports
    /// and database, returning once a client can connect again.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait() {
            panic!("rabbitmq-server did not come back after a restart: {e}");
        }
    }

    fn stop_broker(&mut self) -> Result<(), String> {
        let Some(mut broker) = self.broker.take() else {
            return Ok(());
        };
        if broker.exited()?.is_none() {
            // The graceful way; SIGTERM (below) is the fallback.
            if let Err(e) = self.ctl(&["stop"], STOP_GRACE) {
                eprintln!("rabbitmq fixture: {e}");
            }
            broker.wait_for_exit(STOP_GRACE)?;
        }
        broker.terminate(STOP_GRACE)
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("rabbitmq.log")
    }

    /// The environment of the broker and of rabbitmqctl: everything in the
    /// temporary directory, nothing from the system's configuration.
    fn env(&self, command: &mut Command) {
        let dir = self.dir.path();
        for (key, _) in std::env::vars_os() {
            let key_str = key.to_string_lossy();
            if key_str.starts_with("RABBITMQ_") || key_str.starts_with("ERL_") {
                command.env_remove(&key);
            }
        }
        let loopback_only = "-kernel inet_dist_use_interface {127,0,0,1}";
        command
            .current_dir(dir)
            .env("HOME", dir.join("home"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CTL_DIST_PORT_MIN", self.ctl_port.to_string())
            .env("RABBITMQ_CTL_DIST_PORT_MAX", self.ctl_port.to_string())
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", loopback_only)
            .env("RABBITMQ_CTL_ERL_ARGS", loopback_only)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        for sub in ["home", "mnesia", "log"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        }
        let mut config = format!(
            "\
listeners.tcp.1 = 127.0.0.1:{port}
log.console = true
log.console.level = info
log.console.use_colors = off
log.file = false
",
            port = self.amqp_port
        );
        // Without the management plugin: no HTTP listener, a faster start.
        let mut plugins = "[].\n";
        if let Some(http) = self.management_port {
            config.push_str(&format!(
                "management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {http}\ncollect_statistics_interval = 500\n"
            ));
            plugins = "[rabbitmq_management].\n";
        }
        for (name, text) in [
            ("rabbitmq.conf", config.as_str()),
            ("enabled_plugins", plugins),
            // Read instead of /etc/rabbitmq/rabbitmq-env.conf.
            (
                "rabbitmq-env.conf",
                "# empty: the fixture sets the environment\n",
            ),
        ] {
            let path = dir.join(name);
            fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    }

    /// Starts the fixture's own epmd, so the broker does not start a daemon
    /// of its own that would outlive the test.
    fn start_epmd(&mut self) -> Result<(), StartError> {
        let (log, log_err, _) = server::open_log(&self.log_file());
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("carat-epmd-watchdog")
            .arg(EPMD)
            .arg("-port")
            .arg(self.epmd_port.to_string())
            .arg("-address")
            .arg("127.0.0.1")
            .stdout(log)
            .stderr(log_err);
        self.env(&mut command);
        let mut epmd = Supervised::spawn(command, EPMD);
        let ready = server::wait_until_accepts(
            &mut epmd.child,
            "epmd",
            &[self.epmd_port],
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(20),
            || Ok(()),
        );
        if let Err(not_ready) = ready {
            let _ = epmd.terminate(Duration::from_secs(1));
            let log = format!(
                "epmd did not listen on 127.0.0.1:{} ({not_ready:?})\n{}",
                self.epmd_port,
                self.log()
            );
            // epmd exits at once when its port is taken.
            return Err(match not_ready {
                NotReady::Exited(_) => StartError::AddrInUse(log),
                NotReady::TimedOut { .. } => StartError::Timeout("epmd did not start".into(), log),
            });
        }
        self.epmd = Some(epmd);
        Ok(())
    }

    /// Spawns the broker in the foreground and waits until an AMQP client
    /// can open a channel.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        assert!(self.broker.is_none(), "rabbitmq-server is already running");
        let (log, log_err, log_offset) = server::open_log(&self.log_file());
        let started = Instant::now();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("carat-rabbitmq-watchdog")
            .arg(RABBITMQ_SERVER)
            .stdout(log)
            .stderr(log_err);
        self.env(&mut command);
        let broker = Supervised::spawn(command, RABBITMQ_SERVER);
        self.broker_pid = broker.pgid;
        self.broker = Some(broker);

        let url = self.url();
        let mut ports = vec![self.amqp_port];
        ports.extend(self.management_port);
        let broker = self.broker.as_mut().expect("the broker was just stored");
        let ready = server::wait_until_accepts(
            &mut broker.child,
            "rabbitmq-server",
            &ports,
            started + START_TIMEOUT,
            Duration::from_millis(100),
            || amqp_handshake(&url),
        );
        match ready {
            Ok(()) => {
                self.last_start = started.elapsed();
                Ok(())
            }
            Err(NotReady::Exited(status)) => {
                let broker = self.broker.take().expect("the broker was just stored");
                let _ = broker.kill_group();
                let log = self.log_since(log_offset);
                if log.contains("eaddrinuse") || log.contains("Address already in use") {
                    return Err(StartError::AddrInUse(log));
                }
                Err(StartError::Exited(status, log))
            }
            Err(NotReady::TimedOut { last_error, .. }) => {
                // Still booting or hung: no rabbitmqctl, SIGTERM and SIGKILL.
                if let Some(broker) = self.broker.take() {
                    let _ = broker.terminate(Duration::from_secs(5));
                }
                let last_error = last_error
                    .unwrap_or_else(|| "the AMQP port does not accept connections yet".to_owned());
                Err(StartError::Timeout(last_error, self.log_since(log_offset)))
            }
        }
    }

    fn log_since(&self, offset: u64) -> String {
        server::read_log_since(&self.log_file(), offset)
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // Never panic here: Drop may run while a test is already panicking.
        if let Err(e) = self.stop_broker() {
            eprintln!(
                "rabbitmq fixture: cannot stop rabbitmq-server (pid {}): {e}",
                self.broker_pid
            );
        }
        if let Some(epmd) = self.epmd.take() {
            if let Err(e) = epmd.terminate(Duration::from_secs(5)) {
                eprintln!("rabbitmq fixture: cannot stop epmd: {e}");
            }
        }
    }
}

/// Connects with lapin and opens a channel, on a thread of its own (the
/// fixture's methods are blocking and may be called from a test's runtime).
#[cfg(feature = "amqp")]
fn amqp_handshake(url: &str) -> Result<(), String> {
    let url = url.to_owned();
    let attempt = std::thread::spawn(move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let connect = async {
                let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                    .await
                    .map_err(|e| format!("AMQP connection failed: {e}"))?;
                let channel = conn
                    .create_channel()
                    .await
                    .map_err(|e| format!("AMQP channel failed: {e}"))?;
                let _ = channel.close(200, "OK".into()).await;
                let _ = conn.close(200, "OK".into()).await;
                Ok(())
            };
            tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .unwrap_or_else(|_| Err("no AMQP handshake within 5 s".into()))
        })
    });
    attempt
        .join()
        .unwrap_or_else(|_| Err("the AMQP handshake thread panicked".into()))
}

/// Without the amqp feature there is no client: an accepted connection has
/// to do.
#[cfg(not(feature = "amqp"))]
fn amqp_handshake(_url: &str) -> Result<(), String> {
    Ok(())
}

enum StartError {
    AddrInUse(String),
    Exited(ExitStatus, String),
    Timeout(String, String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AddrInUse(log) => write!(
                f,
                "rabbitmq-server could not bind its ports (address in use); its log:\n{}",
                tail(log, 80)
            ),
            StartError::Exited(status, log) => write!(
                f,
                "rabbitmq-server exited ({status}) before it accepted clients; its log:\n{}",
                tail(log, 80)
            ),
            StartError::Timeout(last, log) => write!(
                f,
                "rabbitmq-server did not accept AMQP clients within {START_TIMEOUT:?} ({last}); its log:\n{}",
                tail(log, 80)
            ),
        }
    }
}

fn require_installed() {
    for path in [RABBITMQ_SERVER, RABBITMQCTL, EPMD] {
        server::require_binary(path, INSTALL_HINT);
    }
}
