//! The `example` collector against a real HTTP server: Python's
//! `http.server`, on 127.0.0.1 and a port of its choosing, serving recorded
//! status documents from a temporary directory. The collector runs in
//! `carat_collector::testing::Harness`, which publishes the way the agent
//! does (rates included), so what a test sees is what the agent would send.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carat_collector::testing::{self, Harness};
use carat_collector::{Collector, CollectorError, Environment};
use carat_example::{Example, ExampleConfig};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Python's `http.server` serving the files of a temporary directory;
/// stopped by its PID when dropped.
struct StatusServer {
    dir: tempfile::TempDir,
    child: Child,
    base: String,
}

impl StatusServer {
    fn start() -> StatusServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // Port 0: the server picks a free port and says which (no race with
        // another test for a port chosen beforehand). `-u`: that line is
        // not held in Python's buffer.
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}): install it with `apt-get install python3`")
            });
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ...",
        // printed once it listens.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        let read = BufReader::new(stdout).read_line(&mut line);
        let port = line
            .split_whitespace()
            .skip_while(|word| *word != "port")
            .nth(1)
            .and_then(|port| port.parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 -m http.server did not say its port: {read:?} {line:?}");
        };
        StatusServer {
            dir,
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Serves `body` at `/status` (whatever the query).
    fn serve(&self, body: &[u8]) {
        std::fs::write(self.dir.path().join("status"), body).expect("write the status file");
    }

    /// The URL of `path` (`/status?json`) on this server.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(url: String) -> ExampleConfig {
    ExampleConfig {
        url,
        request_timeout: Duration::from_secs(2),
        ..ExampleConfig::default()
    }
}

fn harness(config: ExampleConfig) -> Harness<Example> {
    Harness::new(config, Environment::default()).expect("the options are valid")
}

async fn run_error(config: ExampleConfig) -> CollectorError {
    harness(config)
        .collect()
        .await
        .expect_err("the run should fail")
}

#[tokio::test]
async fn gauges_at_once_and_counters_as_rates_from_the_second_reading() {
    let server = StatusServer::start();
    let mut h = harness(config(server.url("/status?json")));

    server.serve(&fixture("php-fpm-8.2-status-a.json"));
    let first = h.collect().await.expect("the first reading");
    assert_eq!(
        first.to_lines(),
        "active_processes 1\n\
         idle_processes 2\n\
         listen_queue 0\n\
         listen_queue_len 4096\n\
         max_active_processes 2\n\
         max_listen_queue 3\n\
         start_since 5\n\
         total_processes 3\n",
        "gauges only: a counter publishes nothing on its first reading"
    );
    assert_eq!(first.samples, 11, "every member of FIELDS was read");

    // Five seconds later (on the harness's clock, so the rates are exact).
    server.serve(&fixture("php-fpm-8.2-status-b.json"));
    let second = h
        .collect_after(Duration::from_secs(5))
        .await
        .expect("the second reading");
    // accepted conn 5 → 13, slow requests 3 → 6, max children reached 0 → 1.
    let rate = |name| second.get(name).expect(name);
    assert!((rate("accepted_conn") - 1.6).abs() < 1e-9, "{second:?}");
    assert!((rate("slow_requests") - 0.6).abs() < 1e-9, "{second:?}");
    assert!(
        (rate("max_children_reached") - 0.2).abs() < 1e-9,
        "{second:?}"
    );
    assert_eq!(second.get("start_since"), Some(10.0));
    assert_eq!(second.get("max_listen_queue"), Some(4.0));
    assert_eq!(second.metrics.len(), 11);
}

#[tokio::test]
async fn the_full_document_publishes_the_same_names() {
    let server = StatusServer::start();
    server.serve(&fixture("php-fpm-8.2-status-full.json"));
    let mut h = harness(config(server.url("/status?full&json")));
    let p = h.collect().await.expect("a reading");
    assert_eq!(p.get("total_processes"), Some(3.0));
    assert_eq!(p.samples, 11, "the processes list is not published");
}

#[tokio::test]
async fn a_page_that_is_not_there_is_a_status_error() {
    let server = StatusServer::start();
    let url = server.url("/fpm-status?json");
    let err = run_error(config(url.clone())).await;
    assert_eq!(err.label(), "status", "{err}");
    let message = err.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("HTTP 404"), "{message}");
    assert!(message.contains("pm.status_path"), "{message}");
}

#[tokio::test]
async fn answers_that_are_not_the_status_are_parse_errors_quoting_them() {
    let server = StatusServer::start();
    let url = server.url("/status?json");
    let long_garbage = "\u{1b}[31m".repeat(20_000);
    for (body, words) in [
        // The text format (a web server that drops the query).
        (
            fixture("php-fpm-8.2-status.txt"),
            "not JSON (expected value at line 1 column 1); the answer starts \"pool:",
        ),
        (
            b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            "an HTML page, \"<html><body>502",
        ),
        (b"{\"pool\":\"www\",\"accepted".to_vec(), "truncated JSON"),
        (Vec::new(), "an empty answer"),
        (
            b"{\"status\":\"ok\"}".to_vec(),
            "no \"accepted conn\" in the answer",
        ),
        (
            b"{\"accepted conn\":-1}".to_vec(),
            "\"accepted conn\" is -1, not a whole number of at least 0",
        ),
        (
            b"{\"accepted conn\":1,\"idle processes\":\"two\"}".to_vec(),
            "\"idle processes\" is \"two\", not a number",
        ),
        // Escape sequences: quoted escaped, and cut.
        (long_garbage.into_bytes(), "\"\\u{1b}[31m"),
    ] {
        server.serve(&body);
        let err = run_error(config(url.clone())).await;
        assert_eq!(err.label(), "parse", "{err}");
        let message = err.to_string();
        assert!(message.starts_with(&url), "{message}");
        assert!(message.contains(words), "{message:?} lacks {words:?}");
        assert!(message.len() < 400, "a bounded message: {message}");
        assert!(!message.contains('\u{1b}'), "escaped: {message:?}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // A port that was free a moment ago, and that nothing listens on now.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a port");
        probe.local_addr().expect("its address").port()
    };
    let url = format!("http://127.0.0.1:{port}/status?json");
    let err = run_error(config(url.clone())).await;
    assert_eq!(err.label(), "connect", "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    // Bound but never accepted: the kernel completes the handshake and
    // takes the request, and no answer ever comes.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let url = format!(
        "http://{}/status?json",
        silent.local_addr().expect("its address")
    );
    let started = Instant::now();
    let err = run_error(ExampleConfig {
        request_timeout: Duration::from_millis(300),
        ..config(url.clone())
    })
    .await;
    assert_eq!(err.label(), "timeout", "{err}");
    let message = err.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(
        message.contains("no complete answer within the timeout of 0.3 s"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{message}");
}

// ------------------------------------------------------------------ options

#[test]
fn options_that_cannot_work_are_refused_when_loaded() {
    let url = |u: &str| ExampleConfig {
        url: u.to_owned(),
        ..ExampleConfig::default()
    };
    for (config, option, words) in [
        (
            url("http://127.0.0.1/status"),
            "url",
            "with `json` in the query: write \"http://127.0.0.1/status?json\"",
        ),
        (
            url("http://127.0.0.1/status?full"),
            "url",
            "write \"http://127.0.0.1/status?full&json\"",
        ),
        (
            url("ftp://127.0.0.1/status?json"),
            "url",
            "not http or https",
        ),
        (url("127.0.0.1/status?json"), "url", "no scheme"),
        (
            url("http://carat:hunter2@127.0.0.1/status?json"),
            "url",
            "credentials in the URL",
        ),
        (
            ExampleConfig {
                request_timeout: Duration::ZERO,
                ..ExampleConfig::default()
            },
            "request_timeout",
            "more than 0 and at most 600 seconds",
        ),
        (
            ExampleConfig {
                tls_ca_file: Some(PathBuf::from("/etc/carat/ca.pem")),
                ..ExampleConfig::default()
            },
            "tls_ca_file",
            "https:// url only",
        ),
        (
            ExampleConfig {
                password: Some("hunter2".into()),
                ..ExampleConfig::default()
            },
            "password",
            "username is not",
        ),
        (
            ExampleConfig {
                max_body_bytes: 0,
                ..ExampleConfig::default()
            },
            "max_body_bytes",
            "at least 1",
        ),
    ] {
        // The option named (the agent reports the error at its line), and
        // the message.
        let (named, message) = testing::refused::<Example>(config, &Environment::default());
        assert_eq!(named.as_deref(), Some(option), "{message}");
        assert!(message.contains(words), "{message:?} lacks {words:?}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    // The defaults work: `[collector.example]` alone.
    assert!(Example::new(ExampleConfig::default(), &Environment::default()).is_ok());
}

#[test]
fn options_are_read_strictly_with_defaults() {
    use serde_json::{from_value, json};
    let empty: ExampleConfig = from_value(json!({})).expect("every option has a default");
    assert_eq!(empty, ExampleConfig::default());
    let set: ExampleConfig = from_value(json!({"request_timeout": "1.5s", "verify_tls": false}))
        .expect("a duration with units");
    assert_eq!(set.request_timeout, Duration::from_millis(1500));
    let err = from_value::<ExampleConfig>(json!({"urll": "http://x/status?json"}))
        .expect_err("an unknown key is refused");
    assert!(err.to_string().contains("unknown field `urll`"), "{err}");
    let err = from_value::<ExampleConfig>(json!({"request_timeout": "5 parsecs"}))
        .expect_err("not a duration");
    assert!(err.to_string().contains("parsecs"), "{err}");
    // The password never shows in the options' Debug (logs, panics).
    let secret = ExampleConfig {
        password: Some("hunter2".into()),
        ..ExampleConfig::default()
    };
    assert!(!format!("{secret:?}").contains("hunter2"));
}
