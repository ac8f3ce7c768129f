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
//!   later, SIGKILL to the whole group (see [`super::supervised`]).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::server::{self, tail, NotReady, StartFailed};
use super::supervised::{watchdog_command, ServerSpec, Supervised, SupervisedServer};

/// The broker's start script (the one under `/usr/sbin` switches to the
/// `rabbitmq` user when run as root; this one runs as the caller).
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The control tool of the same package.
pub const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// Erlang's port mapper (package `erlang-base`, a dependency).
pub const EPMD: &str = "/usr/bin/epmd";

/// Names the fixture in messages.
const FIXTURE: &str = "rabbitmq";
const INSTALL_HINT: &str =
    "install it with `apt-get install rabbitmq-server` (or run .ci/install-test-deps)";

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `rabbitmqctl stop` and then SIGTERM each get before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// Numbers the node names of this process.
static NODE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The broker, stopped with `rabbitmqctl stop` ([`RabbitMq::stop`]) rather
/// than a signal.
static BROKER: ServerSpec = ServerSpec {
    fixture: FIXTURE,
    name: "rabbitmq-server",
    program: RABBITMQ_SERVER,
    binaries: &[RABBITMQ_SERVER, RABBITMQCTL, EPMD],
    install_hint: INSTALL_HINT,
    // epmd writes to it too.
    log_name: "rabbitmq.log",
    start_timeout: START_TIMEOUT,
    shutdown_signal: None,
    stop_grace: STOP_GRACE,
};

/// A running RabbitMQ for one test. Dropping it stops the broker and its
/// epmd and removes its directory.
pub struct RabbitMq {
    /// The broker, in the fixture's directory; its PID is the watchdog
    /// shell's.
    broker: SupervisedServer,
    node: String,
    amqp_port: u16,
    dist_port: u16,
    epmd_port: u16,
    ctl_port: u16,
    /// The management plugin's HTTP port, when it is enabled.
    management_port: Option<u16>,
    epmd: Option<Supervised>,
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
        BROKER.require_installed();
        server::start_with_retries(FIXTURE, || {
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
                broker: SupervisedServer::new(&BROKER, server::temp_dir(FIXTURE)),
                node,
                amqp_port,
                dist_port,
                epmd_port,
                ctl_port,
                management_port: management.then_some(http_port),
                epmd: None,
            };
            broker.write_config();
            broker.start_epmd()?;
            broker.spawn_and_wait().map(|()| broker)
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
        self.broker.last_start()
    }

    /// PID of the most recently started `rabbitmq-server` script (the
    /// watchdog shell; the broker's processes are in its process group).
    pub fn pid(&self) -> u32 {
        self.broker.pid()
    }

    /// Whether the broker is running (started and not stopped or exited).
    pub fn is_running(&mut self) -> bool {
        self.broker.is_running()
    }

    /// Everything the broker and its epmd wrote to stdout and stderr (all
    /// starts so far).
    pub fn log(&self) -> String {
        self.broker.log()
    }

    /// Runs `rabbitmqctl <args>` against this broker; its output, or an error
    /// with its output.
    pub fn ctl(&self, args: &[&str], limit: Duration) -> Result<String, String> {
        let out = self.broker.dir().join("rabbitmqctl.out");
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
        let mut ctl = Supervised::spawn(command, FIXTURE, RABBITMQCTL, INSTALL_HINT);
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
            panic!("{e}");
        }
    }

    /// Stops the broker and starts it again with the same node name, ports
    /// and database, returning once a client can connect again.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait() {
            panic!(
                "rabbitmq-server did not come back after a restart: {}",
                e.message
            );
        }
    }

    fn stop_broker(&mut self) -> Result<(), String> {
        if self.broker.running()? {
            // The graceful way; SIGTERM to the group is the fallback.
            if let Err(e) = self.ctl(&["stop"], STOP_GRACE) {
                eprintln!("{FIXTURE} fixture: {e}");
            }
        }
        self.broker.try_stop()
    }

    /// The environment of the broker and of rabbitmqctl: everything in the
    /// temporary directory, nothing from the system's configuration.
    fn env(&self, command: &mut Command) {
        let dir = self.broker.dir();
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
        let dir = self.broker.dir();
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
    fn start_epmd(&mut self) -> Result<(), StartFailed> {
        let (log, log_err, _) = self.broker.open_log();
        let mut command = watchdog_command("carat-epmd-watchdog", EPMD);
        command
            .arg("-port")
            .arg(self.epmd_port.to_string())
            .arg("-address")
            .arg("127.0.0.1")
            .stdout(log)
            .stderr(log_err);
        self.env(&mut command);
        let mut epmd = Supervised::spawn(command, FIXTURE, EPMD, INSTALL_HINT);
        let ready = server::wait_until_accepts(
            epmd.child(),
            "epmd",
            &[self.epmd_port],
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(20),
            || Ok(()),
        );
        if let Err(not_ready) = ready {
            let _ = epmd.terminate(Duration::from_secs(1));
            return Err(StartFailed {
                // epmd exits at once when its port is taken.
                port_taken: matches!(not_ready, NotReady::Exited(_)),
                message: format!(
                    "epmd did not listen on 127.0.0.1:{} ({not_ready:?}); the log:\n{}",
                    self.epmd_port,
                    tail(&self.log(), 80)
                ),
            });
        }
        self.epmd = Some(epmd);
        Ok(())
    }

    /// Spawns the broker in the foreground and waits until an AMQP client
    /// can open a channel.
    fn spawn_and_wait(&mut self) -> Result<(), StartFailed> {
        let mut command = self.broker.command();
        self.env(&mut command);
        let url = self.url();
        let mut ports = vec![self.amqp_port];
        ports.extend(self.management_port);
        // Still booting or hung when it times out: no rabbitmqctl, SIGTERM
        // and SIGKILL.
        self.broker
            .start(command, &ports, Duration::from_millis(100), |_| {
                amqp_handshake(&url).map(|()| None)
            })
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // Never panic here: Drop may run while a test is already panicking.
        if let Err(e) = self.stop_broker() {
            eprintln!("{FIXTURE} fixture: {e}");
        }
        if let Some(epmd) = self.epmd.take() {
            if let Err(e) = epmd.terminate(Duration::from_secs(5)) {
                eprintln!("{FIXTURE} fixture: cannot stop epmd: {e}");
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
