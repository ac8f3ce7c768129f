//! What the fixtures that run a real server process (carbon, RabbitMQ,
//! HAProxy, StatsD, MongoDB, PostgreSQL, MariaDB) have in common: free ports
//! that are never handed out twice, a check that the server is installed,
//! its log file, waiting until it accepts connections, and stopping it by
//! PID.
//!
//! Everything here blocks; fixtures call it from their own blocking methods.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Ports already handed out in this process. They are never reused, so the
/// fixtures of tests running in parallel threads cannot end up sharing a
/// port: carbon binds its listeners with `SO_REUSEPORT`, so two carbons on
/// one port would share it silently instead of failing.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `tcp` free TCP ports, then `udp` free UDP ports, on 127.0.0.1, all
/// distinct. All probes are held until every port is chosen (so one probe
/// cannot be handed the port of another), and no port is handed out twice
/// in this process.
pub fn free_ports(tcp: usize, udp: usize) -> Vec<u16> {
    let wanted = tcp + udp;
    let mut used = USED_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let used = used.get_or_insert_with(HashSet::new);
    let mut tcp_probes = Vec::new();
    let mut udp_probes = Vec::new();
    let mut ports = Vec::with_capacity(wanted);
    let mut attempt = 0;
    while ports.len() < wanted {
        assert!(
            attempt < 1000,
            "cannot find {wanted} free ports on 127.0.0.1 (tried {attempt} times)"
        );
        attempt += 1;
        let port = if ports.len() < tcp {
            let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap_or_else(|e| panic!("cannot bind a TCP port on 127.0.0.1: {e}"));
            let port = probe
                .local_addr()
                .expect("a bound socket has an address")
                .port();
            tcp_probes.push(probe);
            port
        } else {
            let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap_or_else(|e| panic!("cannot bind a UDP port on 127.0.0.1: {e}"));
            let port = probe
                .local_addr()
                .expect("a bound socket has an address")
                .port();
            udp_probes.push(probe);
            port
        };
        if !used.contains(&port) && !ports.contains(&port) {
            ports.push(port);
        }
    }
    used.extend(ports.iter().copied());
    ports
}

/// Panics with installation instructions (`hint`, e.g. "install it with
/// `apt-get install …`") when `path` does not exist, so a missing server
/// reads as a setup problem and not as a failing test.
pub fn require_binary(path: impl AsRef<Path>, hint: &str) {
    let path = path.as_ref();
    if !path.exists() {
        panic!("{} not found: {hint}", path.display());
    }
}

/// Whether this process runs as root: the owner of `/proc/self` is the
/// effective UID.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata("/proc/self")
        .unwrap_or_else(|e| panic!("cannot stat /proc/self: {e}"))
        .uid()
        == 0
}

/// Removes `path` unless it does not exist (a pidfile a killed server left
/// behind); panics when it cannot.
pub fn remove_file_if_exists(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => panic!("cannot remove {}: {e}", path.display()),
    }
}

/// Opens (creating it) the log file a server's stdout and stderr append to;
/// returns the two handles and the file's length before this start, so that
/// what this start wrote can be told from earlier starts
/// ([`read_log_since`]).
pub fn open_log(path: &Path) -> (Stdio, Stdio, u64) {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let offset = log
        .metadata()
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .len();
    let log_err: File = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot duplicate the handle of {}: {e}", path.display()));
    (Stdio::from(log), Stdio::from(log_err), offset)
}

/// The whole log file, or a note saying why it cannot be read (it ends up in
/// a panic message, where an error of its own would hide the real one).
pub fn read_log(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// What was appended to the log file after `offset` (see [`open_log`]).
pub fn read_log_since(path: &Path, offset: u64) -> String {
    let log = read_log(path);
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    match log.get(offset..) {
        Some(rest) => rest.to_owned(),
        None => log,
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    let mut out = String::new();
    if skip > 0 {
        let _ = writeln!(out, "[... {skip} earlier line(s) ...]");
    }
    for line in &all[skip..] {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Why a server did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// The process exited first.
    Exited(ExitStatus),
    /// The deadline passed: the ports that still refused connections and,
    /// when they all accepted, the last complaint of the extra check.
    TimedOut {
        /// Ports that did not accept a connection.
        pending: Vec<u16>,
        /// The extra check's last error, if it ran.
        last_error: Option<String>,
    },
}

/// Polls every `poll` until each of `ports` on 127.0.0.1 has accepted a TCP
/// connection and then `check` succeeds (a protocol handshake, a socket
/// file, or `Ok(())` when accepting is enough). Stops early when `child`
/// exits, since a server that died will never accept; gives up at
/// `deadline`. Leaves `child` running either way: what to do with it is the
/// fixture's business.
///
/// Panics when `child`'s status cannot be queried (`what` names it).
pub fn wait_until_accepts(
    child: &mut Child,
    what: &str,
    ports: &[u16],
    deadline: Instant,
    poll: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), NotReady> {
    let mut pending = ports.to_vec();
    let mut last_error = None;
    loop {
        pending.retain(|&port| {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
        });
        if pending.is_empty() {
            match check() {
                Ok(()) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        let exited = child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot query {what} (pid {}): {e}", child.id()));
        if let Some(status) = exited {
            return Err(NotReady::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut {
                pending,
                last_error,
            });
        }
        sleep(poll);
    }
}

/// Sends `signal` ("TERM", "KILL", "0", …) with the `kill` command to
/// `target`: a PID, or minus a process group ID. The command and not
/// `Child::kill`, which can only send SIGKILL, while servers get SIGTERM
/// first to shut down cleanly. True when `kill` succeeded.
pub fn send_signal(signal: &str, target: i64) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits up to `limit` for `child` to exit; `None` when it is still running.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        sleep(Duration::from_millis(20));
    }
}

/// Stops `child` by its PID: SIGTERM, up to `grace` for it to exit, then
/// SIGKILL; always reaps it, so its ports are free when this returns. `what`
/// names it in the note printed when it ignores SIGTERM.
pub fn stop_child(child: &mut Child, grace: Duration, what: &str) -> Result<ExitStatus, String> {
    if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
        return Ok(status);
    }
    if send_signal("TERM", i64::from(child.id())) {
        if let Some(status) = wait_for_exit(child, grace)? {
            return Ok(status);
        }
        eprintln!(
            "{what} (pid {}) ignored SIGTERM for {grace:?}, killing it",
            child.id()
        );
    }
    match child.kill() {
        Ok(()) => {}
        // Exited in the meantime: wait() below reaps it.
        Err(e) if e.kind() == ErrorKind::InvalidInput => {}
        Err(e) => return Err(format!("SIGKILL failed: {e}")),
    }
    child.wait().map_err(|e| e.to_string())
}

/// A new temporary directory `carat-<name>-…` for a server's configuration,
/// data and log, removed when dropped.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("carat-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory for {name}: {e}"))
}

/// A start attempt that failed.
pub struct StartFailed {
    /// The server could not bind one of its ports: worth another attempt
    /// with new ones.
    pub port_taken: bool,
    /// What went wrong, with the server's log.
    pub message: String,
}

/// Runs `attempt` (pick ports, configure, start, wait until ready) up to
/// three times and returns what it started. A port from [`free_ports`] is
/// free only until its probe closes, so another process may take it before
/// the server binds it; such an attempt is retried with new ports. Panics
/// with the message of the last failure, or of the first one that is not
/// about a port.
pub fn start_with_retries<T>(
    fixture: &str,
    mut attempt: impl FnMut() -> Result<T, StartFailed>,
) -> T {
    const ATTEMPTS: usize = 3;
    for n in 1..=ATTEMPTS {
        match attempt() {
            Ok(started) => return started,
            Err(failed) if failed.port_taken && n < ATTEMPTS => eprintln!(
                "{fixture} fixture: a port was taken before the server could bind it, \
                 retrying with new ports; {}",
                failed.message
            ),
            Err(failed) => panic!("{}", failed.message),
        }
    }
    unreachable!("the last start attempt either returns or panics")
}
