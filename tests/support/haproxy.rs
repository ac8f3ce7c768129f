//! A real HAProxy (Debian package `haproxy`) started by a test on 127.0.0.1
//! and free ports, with its configuration and stats socket in a temporary
//! directory, and the small HTTP servers it balances over.
//!
//! ```ignore
//! mod support;
//! use support::haproxy::{Haproxy, WebServer};
//!
//! let web1 = WebServer::start();
//! let web2 = WebServer::start();
//! let haproxy = Haproxy::start(&[web1.port(), web2.port()], false);
//! haproxy.wait_for_status("web1", "UP", Duration::from_secs(10));
//! // ... read http://127.0.0.1:<haproxy.stats_port()>/stats or haproxy.socket() ...
//! ```
//!
//! The layout, fixed for every test:
//!
//! * frontend `fe_main` on [`Haproxy::frontend_port`], sending everything to
//! * backend `be.app` (a dot, so the published name shows the sanitising:
//!   `be_app`) with servers `web1`, `web2`, … on the given ports, health
//!   checked with `GET /health` every 200 ms (`inter 200ms fall 2 rise 1`:
//!   a server is DOWN after two failed checks, UP after one good one);
//! * `listen stats`: the stats page at `/stats` on [`Haproxy::stats_port`],
//!   basic authentication `carat` / [`STATS_PASSWORD`]; with `tls`, the same
//!   page over HTTPS on [`Haproxy::stats_tls_port`] with a certificate for
//!   127.0.0.1 issued by a CA made by `openssl` for the test
//!   ([`Haproxy::ca_certificate`]);
//! * the stats socket at [`Haproxy::socket`], level admin.
//!
//! HAProxy runs in the foreground (`-db`), under `setpriv --pdeathsig TERM`
//! so it ends with the test process even if the test is killed; it is
//! stopped by its PID (SIGTERM, then SIGKILL) when the fixture is dropped,
//! and the directory is removed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use super::server::{self, NotReady};

/// The binary of the Debian package.
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// Used to tie HAProxy's life to the test's (util-linux, always installed).
const SETPRIV: &str = "/usr/bin/setpriv";
/// Makes the certificate of the HTTPS stats page.
const OPENSSL: &str = "/usr/bin/openssl";
const INSTALL_HINT: &str =
    "install it with `apt-get install haproxy` (or run .ci/install-test-deps)";

/// The stats page's user.
pub const STATS_USER: &str = "carat";
/// The stats page's password.
pub const STATS_PASSWORD: &str = "t3st-Secret";

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long HAProxy gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A minimal HTTP server on 127.0.0.1 and a free port: answers every
/// request with `200 ok` and closes the connection. Stopping it closes its
/// port, so HAProxy's checks get "connection refused".
pub struct WebServer {
    port: u16,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl WebServer {
    /// Starts listening.
    pub fn start() -> WebServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, n) = (Arc::clone(&stop), Arc::clone(&served));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if answer(stream) {
                            n.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        sleep(Duration::from_millis(5));
                    }
                    Err(_) => sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped here: the port refuses connections.
        });
        WebServer {
            port,
            stop,
            served,
            thread: Some(thread),
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests answered so far (health checks included).
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops listening; returns once the port is closed.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one request and answers it; true when a request was answered.
fn answer(mut stream: TcpStream) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
        .is_ok()
}

/// A running HAProxy for one test. Dropping it stops HAProxy and removes
/// its directory.
pub struct Haproxy {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pid: u32,
    frontend_port: u16,
    stats_port: u16,
    stats_tls_port: Option<u16>,
}

impl Haproxy {
    /// Starts HAProxy with a server `web<N>` for each port of `servers`
    /// and, with `tls`, an HTTPS stats page too. Returns once the stats
    /// page and the socket answer.
    ///
    /// Panics with installation instructions when HAProxy is not
    /// installed, and with HAProxy's output when it does not start.
    pub fn start(servers: &[u16], tls: bool) -> Haproxy {
        server::require_binary(HAPROXY, INSTALL_HINT);
        server::start_with_retries("haproxy", || {
            let ports = server::free_ports(if tls { 3 } else { 2 }, 0);
            let mut haproxy = Haproxy {
                dir: server::temp_dir("haproxy"),
                child: None,
                pid: 0,
                frontend_port: ports[0],
                stats_port: ports[1],
                stats_tls_port: ports.get(2).copied(),
            };
            if tls {
                haproxy.make_certificate();
            }
            haproxy.write_config(servers);
            match haproxy.spawn_and_wait() {
                Ok(()) => Ok(haproxy),
                Err(log) => Err(server::StartFailed {
                    port_taken: log.contains("cannot bind socket"),
                    message: format!("haproxy did not start; its output:\n{log}"),
                }),
            }
        })
    }

    /// The frontend's port.
    pub fn frontend_port(&self) -> u16 {
        self.frontend_port
    }

    /// The stats page's port (HTTP).
    pub fn stats_port(&self) -> u16 {
        self.stats_port
    }

    /// The stats page's port over HTTPS, when started with `tls`.
    pub fn stats_tls_port(&self) -> u16 {
        self.stats_tls_port
            .expect("the fixture was started without tls")
    }

    /// `http://127.0.0.1:<stats port>/stats` (without `;csv`).
    pub fn stats_url(&self) -> String {
        format!("http://127.0.0.1:{}/stats", self.stats_port)
    }

    /// The stats socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// HAProxy's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its directory (configuration, socket, certificate, output).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What HAProxy printed so far.
    pub fn log(&self) -> String {
        server::read_log(&self.dir.path().join("haproxy.log"))
    }

    /// Runs one command on the stats socket and returns its answer.
    pub fn command(&self, command: &str) -> String {
        let mut stream = UnixStream::connect(self.socket())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.socket().display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        stream
            .write_all(format!("{command}\n").as_bytes())
            .expect("send a command");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|e| panic!("reading the answer to {command:?}: {e}"));
        answer
    }

    /// The `status` of `be.app/<server>` now.
    pub fn status_of(&self, server: &str) -> Option<String> {
        let csv = self.command("show stat");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let at = header.iter().position(|c| *c == "status")?;
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"be.app") && f.get(1) == Some(&server))
            .and_then(|f| f.get(at).map(|s| s.to_string()))
    }

    /// Waits until `be.app/<server>` has `status`; panics after `limit`.
    pub fn wait_for_status(&self, server: &str, status: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.status_of(server);
            if now.as_deref() == Some(status) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "be.app/{server} is {now:?}, not {status:?}, after {limit:?}; haproxy's output:\n{}",
                    self.log()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Sends `n` requests to the frontend, one connection each, and checks
    /// each is answered `200`.
    pub fn send_requests(&self, n: usize) {
        for i in 0..n {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.frontend_port))
                .unwrap_or_else(|e| panic!("request {i}: cannot connect to the frontend: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            stream
                .write_all(b"GET /traffic HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
                .expect("send a request");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            assert!(
                response.starts_with("HTTP/1.1 200"),
                "request {i}: {response:?}"
            );
        }
    }

    fn write_config(&self, servers: &[u16]) {
        let dir = self.dir.path().display();
        let mut text = format!(
            "global\n\
             \x20   stats socket {dir}/admin.sock mode 600 level admin\n\
             \x20   stats timeout 10s\n\
             \n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 5s\n\
             \x20   timeout server 5s\n\
             \n\
             frontend fe_main\n\
             \x20   bind 127.0.0.1:{fe}\n\
             \x20   default_backend be.app\n\
             \n\
             backend be.app\n\
             \x20   option httpchk GET /health\n",
            fe = self.frontend_port
        );
        for (i, port) in servers.iter().enumerate() {
            text.push_str(&format!(
                "    server web{} 127.0.0.1:{port} check inter 200ms fall 2 rise 1\n",
                i + 1
            ));
        }
        text.push_str(&format!(
            "\nlisten stats\n\
             \x20   bind 127.0.0.1:{}\n",
            self.stats_port
        ));
        if let Some(port) = self.stats_tls_port {
            text.push_str(&format!(
                "    bind 127.0.0.1:{port} ssl crt {dir}/stats.pem\n"
            ));
        }
        text.push_str(&format!(
            "    stats enable\n\
             \x20   stats uri /stats\n\
             \x20   stats auth {STATS_USER}:{STATS_PASSWORD}\n"
        ));
        std::fs::write(self.dir.path().join("haproxy.cfg"), text).expect("write haproxy.cfg");
    }

    /// A certificate for 127.0.0.1 issued by a CA made for the test
    /// (`ca.crt`, in no system store), key included, as HAProxy's `crt`
    /// wants it (`stats.pem`).
    fn make_certificate(&self) {
        server::require_binary(
            OPENSSL,
            "install it with `apt-get install openssl` (or run .ci/install-test-deps)",
        );
        let dir = self.dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        // The CA: self-signed, `CA:TRUE` (openssl's default for -x509).
        openssl(
            Command::new(OPENSSL)
                .args(["req", "-x509"])
                .args(ec)
                .args(["-days", "1", "-subj", "/CN=carat test CA", "-keyout"])
                .arg(dir.join("ca.key"))
                .arg("-out")
                .arg(dir.join("ca.crt")),
        );
        // The page's key and request, then its certificate from the CA.
        openssl(
            Command::new(OPENSSL)
                .args(["req", "-new"])
                .args(ec)
                .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(dir.join("stats.key"))
                .arg("-out")
                .arg(dir.join("stats.csr")),
        );
        std::fs::write(
            dir.join("stats.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
        )
        .expect("write stats.ext");
        openssl(
            Command::new(OPENSSL)
                .args(["x509", "-req", "-days", "1", "-in"])
                .arg(dir.join("stats.csr"))
                .arg("-CA")
                .arg(dir.join("ca.crt"))
                .arg("-CAkey")
                .arg(dir.join("ca.key"))
                .arg("-CAcreateserial")
                .arg("-extfile")
                .arg(dir.join("stats.ext"))
                .arg("-out")
                .arg(dir.join("stats.crt")),
        );
        let mut pem = std::fs::read(dir.join("stats.crt")).expect("read the certificate");
        pem.extend(std::fs::read(dir.join("stats.key")).expect("read the key"));
        std::fs::write(dir.join("stats.pem"), pem).expect("write stats.pem");
    }

    /// The CA that issued the HTTPS stats page's certificate (with `tls`).
    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        // A fresh directory per start: the log holds this start's output only.
        let (log, log_err, _) = server::open_log(&self.dir.path().join("haproxy.log"));
        let config = self.dir.path().join("haproxy.cfg");
        // setpriv execs HAProxy, so the child's PID is HAProxy's.
        let mut command = if Path::new(SETPRIV).exists() {
            let mut c = Command::new(SETPRIV);
            c.args(["--pdeathsig", "TERM", HAPROXY]);
            c
        } else {
            Command::new(HAPROXY)
        };
        command
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {HAPROXY}: {e} ({INSTALL_HINT})"));
        self.pid = child.id();
        self.child = Some(child);

        let socket = self.socket();
        let child = self.child.as_mut().expect("just started");
        let ready = server::wait_until_accepts(
            child,
            "haproxy",
            &[self.stats_port],
            Instant::now() + START_TIMEOUT,
            Duration::from_millis(20),
            || {
                UnixStream::connect(&socket)
                    .map(drop)
                    .map_err(|e| format!("the stats socket does not answer: {e}"))
            },
        );
        match ready {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => {
                self.child = None;
                Err(format!("(exited: {status})\n{}", self.log()))
            }
            Err(NotReady::TimedOut { .. }) => {
                self.stop();
                Err(format!(
                    "(not listening after {START_TIMEOUT:?})\n{}",
                    self.log()
                ))
            }
        }
    }

    /// Stops HAProxy (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and waits
    /// for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Also called from Drop: a failure must not panic.
            if let Err(e) = server::stop_child(&mut child, STOP_GRACE, "haproxy fixture: haproxy") {
                eprintln!(
                    "haproxy fixture: cannot stop haproxy (pid {}): {e}",
                    self.pid
                );
            }
        }
    }

    /// Whether the HAProxy process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `command` (an `openssl` step) and fails with its output if it fails.
fn openssl(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL}: {e}"));
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
