//! The real `carat` binary as a child process, watched through its health
//! endpoint (`agent.health_listen`) and its log.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (bound, noted, closed).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
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
    /// Lines waiting (memory and spool).
    pub buffered: u64,
}

/// A running `carat run -c FILE`, killed if still running when dropped.
pub struct Agent {
    child: Child,
    health_port: u16,
    log: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
}

impl Agent {
    /// Starts the binary on `config`, whose `agent.health_listen` must be
    /// `127.0.0.1:<health_port>`. Its standard error is collected as it
    /// comes (so a chatty agent never blocks on a full pipe).
    pub fn start(config: &Path, health_port: u16) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_carat"))
            .env_remove("CARAT_CONFIG")
            .env_remove("RUST_LOG")
            .arg("run")
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the carat binary");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        let log_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Agent {
            child,
            health_port,
            log,
            log_reader: Some(log_reader),
        }
    }

    /// The body of `GET /health`, or `None` while the endpoint does not
    /// answer.
    pub fn health(&self) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.health_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; returns the exit
    /// status and the whole log.
    pub fn stop(mut self, limit: Duration) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for carat") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "carat did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        (status, self.log())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
