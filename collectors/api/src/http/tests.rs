//! The client against real sockets on 127.0.0.1: fake servers that answer,
//! misbehave or never answer, over HTTP and HTTPS (a test CA and a server
//! certificate for 127.0.0.1 in `testdata/`, valid until 2126).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rustls::pki_types::PrivateKeyDer;

use super::*;

/// What a fake server does with one connection, after reading the request.
#[derive(Clone)]
enum Reply {
    /// Sends these bytes and closes.
    Send(Vec<u8>),
    /// Sends these bytes, then holds the connection open without sending
    /// more until the test ends.
    SendAndHang(Vec<u8>),
    /// Sends these headers, then a chunked body without end (1 MiB chunks)
    /// until the client goes away; counts what it wrote in `Fake::written`.
    Endless(Vec<u8>),
}

/// A fake server answering connections in order with `replies` (the last
/// one repeats), recording each request.
struct Fake {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicUsize>,
    _thread: JoinHandle<()>,
}

impl Fake {
    fn url(&self, path: &str) -> Url {
        parse_url("url", &format!("{}{path}", self.base)).unwrap()
    }

    fn request(&self, i: usize) -> String {
        self.requests.lock().unwrap()[i].clone()
    }
}

fn read_request(stream: &mut impl Read) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Serves on 127.0.0.1, in plain text or (with `tls`) over TLS with the
/// test server certificate.
fn serve(replies: Vec<Reply>, tls: bool) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    let config = tls.then(server_tls_config);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let written = Arc::new(AtomicUsize::new(0));
    let (log, count) = (Arc::clone(&requests), Arc::clone(&written));
    let thread = std::thread::spawn(move || {
        let mut held: Vec<Box<dyn Write + Send>> = Vec::new();
        for i in 0.. {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            let mut stream: Box<dyn ReadWrite> = match &config {
                Some(config) => {
                    let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else {
                        continue;
                    };
                    Box::new(rustls::StreamOwned::new(conn, tcp))
                }
                None => Box::new(tcp),
            };
            let request = read_request(&mut stream);
            log.lock().unwrap().push(request);
            match replies[i.min(replies.len() - 1)].clone() {
                Reply::Send(bytes) => {
                    let _ = stream.write_all(&bytes);
                    let _ = stream.flush();
                }
                Reply::SendAndHang(bytes) => {
                    let _ = stream.write_all(&bytes);
                    let _ = stream.flush();
                    held.push(stream);
                }
                Reply::Endless(head) => {
                    let _ = stream.write_all(&head);
                    let chunk = vec![b'x'; 1 << 20];
                    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                    frame.extend_from_slice(&chunk);
                    frame.extend_from_slice(b"\r\n");
                    // At most 1 GiB, should the client never stop reading.
                    for _ in 0..1024 {
                        if stream.write_all(&frame).is_err() {
                            break;
                        }
                        count.fetch_add(frame.len(), Ordering::Relaxed);
                    }
                }
            }
        }
    });
    Fake {
        base,
        requests,
        written,
        _thread: thread,
    }
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/http/testdata")
        .join(name)
}

fn server_tls_config() -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(testdata("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(testdata("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

fn ok(body: &str) -> Reply {
    Reply::Send(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn answer(status: &str, headers: &str, body: &str) -> Reply {
    Reply::Send(
        format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";

fn client() -> HttpClient {
    HttpClient::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Asserts that `err` is of kind `label` and its message holds `text`.
fn assert_kind(err: &CollectorError, label: &str, text: &str) {
    assert_eq!(err.label(), label, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(text), "{msg:?} lacks {text:?}");
}

fn free_port() -> u16 {
    // Bound, then closed: nobody listens on it (unless another test takes
    // it in between, which the kernel's port allocation makes unlikely).
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------ error kinds

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let url = parse_url("url", &format!("http://127.0.0.1:{}/stats", free_port())).unwrap();
    let err = client().get(&url).await.unwrap_err();
    assert_eq!(err.label(), "connect", "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{url}: cannot connect: ")),
        "{msg}"
    );
    assert!(msg.contains("Connection refused"), "{msg}");
}

#[tokio::test]
async fn an_unknown_host_is_a_connect_error() {
    // `.invalid` never resolves (RFC 6761); the resolver answers at once
    // without a network.
    let url = parse_url("url", "http://carat-test.invalid/").unwrap();
    let err = client().get(&url).await.unwrap_err();
    assert!(
        matches!(err.label(), "connect" | "timeout"),
        "{}: {err}",
        err.label()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    // Accepts, reads the request, sends nothing.
    let fake = serve(vec![Reply::SendAndHang(Vec::new())], false);
    let client = HttpClient::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get(&fake.url("/stats")).await.unwrap_err();
    assert_kind(
        &err,
        "timeout",
        "timed out: no complete answer within the timeout of 0.3 s",
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Never even accepts: the kernel completes the connection (backlog),
    // nobody reads the request.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = parse_url("url", &format!("http://{}/", silent.local_addr().unwrap())).unwrap();
    let err = client.get(&url).await.unwrap_err();
    assert_eq!(err.label(), "timeout", "{err}");

    // Headers, then part of the body, then nothing: the timeout covers the
    // body too.
    let mut head = CHUNKED.to_vec();
    head.extend_from_slice(b"5\r\nhello\r\n");
    let fake = serve(vec![Reply::SendAndHang(head)], false);
    let err = client.get(&fake.url("/")).await.unwrap_err();
    assert_eq!(err.label(), "timeout", "{err}");
}

#[tokio::test]
async fn an_error_status_is_a_status_error() {
    let fake = serve(
        vec![
            answer("503 Service Unavailable", "", "<html>no server</html>"),
            answer("401 Unauthorized", "", ""),
            answer("404 Not Found", "", ""),
            answer("302 Found", "location: http://other:9/login\r\n", ""),
        ],
        false,
    );
    let client = client();
    let url = fake.url("/stats;csv");
    let err = client.get(&url).await.unwrap_err();
    assert_eq!(err.label(), "status", "{err}");
    assert!(matches!(
        err,
        CollectorError::Status {
            code: Some(503),
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!("{url}: HTTP 503 Service Unavailable")
    );
    // 401 without credentials configured.
    let err = client.get(&url).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("HTTP 401 Unauthorized; the server wants a username and password"),
        "{err}"
    );
    // A collector's own hint.
    let hinted = HttpClient::builder()
        .hint(404, "check the path")
        .build()
        .unwrap();
    let err = hinted.get(&url).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("HTTP 404 Not Found; check the path"),
        "{err}"
    );
    // A redirect, not followed: where it points is in the message.
    let err = client.get(&url).await.unwrap_err();
    assert_eq!(err.label(), "status", "{err}");
    assert!(
        err.to_string().contains(
            "HTTP 302 Found; redirects are not followed: set the URL it points to (Location: \"http://other:9/login\")"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_a_parse_error() {
    let fake = serve(
        vec![Reply::Send(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec())],
        false,
    );
    let url = fake.url("/");
    let err = client().get(&url).await.unwrap_err();
    assert_eq!(err.label(), "parse", "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{url}: the answer is not HTTP: ")),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_lost_mid_answer_is_an_io_error() {
    let fake = serve(
        vec![
            // Announces more than it sends, then closes.
            Reply::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort".to_vec()),
            // Chunked, cut before the last chunk.
            Reply::Send([CHUNKED, b"5\r\nhello\r\n"].concat()),
            // Closes without a word.
            Reply::Send(Vec::new()),
        ],
        false,
    );
    let client = client();
    let url = fake.url("/");
    for expected in ["reading the body", "reading the body", "no answer"] {
        let err = client.get(&url).await.unwrap_err();
        assert_eq!(err.label(), "io", "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("reading {url}: {expected}: ")),
            "{err}"
        );
    }
}

// ------------------------------------------------------------ body bound

#[tokio::test]
async fn the_body_bound_is_enforced_while_streaming() {
    let fake = serve(vec![Reply::Endless(CHUNKED.to_vec())], false);
    let max = 1 << 20;
    let client = HttpClient::builder()
        .max_body_bytes(max)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut body = Vec::new();
    let started = Instant::now();
    let err = client
        .get_into(&fake.url("/"), &mut body)
        .await
        .unwrap_err();
    assert_kind(
        &err,
        "limit",
        "the answer is larger than max_body_bytes (1048576 bytes; more): refused",
    );
    // Refused as soon as the bound was passed, not at the end of the
    // (endless) answer, and the memory is given back.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(body.capacity(), 0);
    // The server could write only what the socket buffers hold beyond the
    // bound before the client hung up: far from the 1 GiB it offers.
    std::thread::sleep(Duration::from_millis(200));
    let written = fake.written.load(Ordering::Relaxed);
    assert!(written < 64 << 20, "the server wrote {written} bytes");
}

#[tokio::test]
async fn an_announced_body_over_the_bound_is_refused_before_reading() {
    // Announces 10 MB and sends nothing of it: the refusal comes from the
    // header, at once, not from the timeout.
    let fake = serve(
        vec![Reply::SendAndHang(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\n\r\n".to_vec(),
        )],
        false,
    );
    let client = HttpClient::builder()
        .max_body_bytes(1000)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get(&fake.url("/")).await.unwrap_err();
    assert_kind(
        &err,
        "limit",
        "larger than max_body_bytes (1000 bytes; 10000000 bytes announced)",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_body_of_exactly_the_bound_is_read_into_the_reused_buffer() {
    let body = "x".repeat(1000);
    let fake = serve(
        vec![
            ok(&body),
            Reply::Send([CHUNKED, format!("3e8\r\n{body}\r\n0\r\n\r\n").as_bytes()].concat()),
        ],
        false,
    );
    let client = HttpClient::builder().max_body_bytes(1000).build().unwrap();
    let mut buf = Vec::new();
    client.get_into(&fake.url("/"), &mut buf).await.unwrap();
    assert_eq!(buf, body.as_bytes());
    let capacity = buf.capacity();
    client.get_into(&fake.url("/"), &mut buf).await.unwrap();
    assert_eq!(buf, body.as_bytes());
    assert_eq!(buf.capacity(), capacity);
}

// ------------------------------------------------------------ requests

#[tokio::test]
async fn the_request_carries_auth_agent_and_accept() {
    let fake = serve(vec![ok("fine")], false);
    let client = HttpClient::builder()
        .basic_auth(Some("carat"), Some("s3cret"))
        .user_agent("carat-test/1")
        .accept("text/csv")
        .build()
        .unwrap();
    let body = client.get(&fake.url("/stats;csv")).await.unwrap();
    assert_eq!(body, b"fine");
    let request = fake.request(0);
    let lower = request.to_ascii_lowercase();
    assert!(
        request.starts_with("GET /stats;csv HTTP/1.1\r\n"),
        "{request}"
    );
    // base64("carat:s3cret"), sent with the first request.
    assert!(
        lower.contains("authorization: basic y2fyyxq6cznjcmv0\r\n"),
        "{request}"
    );
    assert!(lower.contains("user-agent: carat-test/1\r\n"), "{request}");
    assert!(lower.contains("accept: text/csv\r\n"), "{request}");
    let host = fake.base.trim_start_matches("http://");
    assert!(lower.contains(&format!("host: {host}\r\n")), "{request}");
    // Debug output shows neither the password nor the header.
    let debug = format!("{client:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("Y2FyYXQ6czNjcmV0"),
        "{debug}"
    );
    assert!(debug.contains("<hidden>"), "{debug}");
}

#[tokio::test]
async fn errors_never_show_the_password() {
    let fake = serve(
        vec![
            answer("401 Unauthorized", "", "denied"),
            Reply::Send(b"garbage\r\n\r\n".to_vec()),
        ],
        false,
    );
    let client = HttpClient::builder()
        .basic_auth(Some("carat"), Some("hunter2"))
        .build()
        .unwrap();
    for _ in 0..2 {
        let err = client.get(&fake.url("/")).await.unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
}

#[tokio::test]
async fn redirects_are_followed_when_asked() {
    let fake = serve(
        vec![answer("302 Found", "location: /final\r\n", ""), ok("there")],
        false,
    );
    let client = HttpClient::builder()
        .redirects(Redirects::Follow(3))
        .build()
        .unwrap();
    assert_eq!(client.get(&fake.url("/start")).await.unwrap(), b"there");
    assert!(fake.request(1).starts_with("GET /final "));
}

// ------------------------------------------------------------ TLS

#[tokio::test]
async fn tls_verified_against_a_ca_file() {
    let fake = serve(vec![ok("secure")], true);
    let client = HttpClient::builder()
        .tls_ca_file(Some(&testdata("ca.pem")))
        .build()
        .unwrap();
    assert_eq!(client.get(&fake.url("/")).await.unwrap(), b"secure");
}

#[tokio::test]
async fn tls_with_an_unknown_issuer_is_a_tls_error() {
    let fake = serve(vec![ok("secure")], true);
    // The system's CA store does not know the test CA.
    let url = fake.url("/");
    let err = client().get(&url).await.unwrap_err();
    assert_eq!(err.label(), "tls", "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{url}: TLS handshake failed: ")) && msg.contains("certificate"),
        "{msg}"
    );
    assert!(msg.contains("set tls_ca_file to the CA"), "{msg}");
    // The CA file of another CA: the same.
    let other = tempfile_with(include_str!("testdata/server.pem"));
    let client = HttpClient::builder()
        .tls_ca_file(Some(&other.0))
        .build()
        .unwrap();
    let err = client.get(&url).await.unwrap_err();
    assert_eq!(err.label(), "tls", "{err}");
}

#[tokio::test]
async fn tls_without_verification_accepts_any_certificate() {
    let fake = serve(vec![ok("secure")], true);
    let client = HttpClient::builder().verify_tls(false).build().unwrap();
    assert_eq!(client.get(&fake.url("/")).await.unwrap(), b"secure");
}

#[tokio::test]
async fn https_to_a_plain_port_is_a_tls_error() {
    // A plain HTTP server answers the TLS hello with a 400, as nginx or
    // HAProxy do.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = parse_url(
        "url",
        &format!("https://{}/", listener.local_addr().unwrap()),
    )
    .unwrap();
    let _server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.read(&mut [0u8; 4096]);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let err = client().get(&url).await.unwrap_err();
    assert_eq!(err.label(), "tls", "{err}");
}

#[tokio::test]
async fn a_bad_ca_file_is_a_tls_error_naming_it() {
    let fake = serve(vec![ok("secure")], true);
    let missing = testdata("missing.pem");
    let empty = tempfile_with("not a certificate\n");
    for (path, expected) in [
        (missing.clone(), "tls_ca_file"),
        (empty.0.clone(), "no certificate in it"),
    ] {
        let client = HttpClient::builder()
            .tls_ca_file(Some(&path))
            .build()
            .unwrap();
        let err = client.get(&fake.url("/")).await.unwrap_err();
        assert_eq!(err.label(), "tls", "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(expected), "{msg}");
    }
}

/// A file with `text`, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_with(text: &str) -> TempFile {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "carat-http-test-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    TempFile(path)
}

// ------------------------------------------------------------ options

#[test]
fn bad_urls_are_option_errors() {
    for (url, expected) in [
        ("127.0.0.1:8404/stats", "no scheme"),
        ("ftp://lb/stats", "not http or https"),
        ("http://admin:hunter2@lb/stats", "credentials in the URL"),
        ("http://admin@lb/stats", "credentials in the URL"),
        ("http:///stats", "no host"),
        ("http://", "no host"),
        ("not a url", "no scheme"),
        ("http://lb:99999/", "invalid port"),
    ] {
        let err = parse_url("url", url).unwrap_err();
        assert_eq!(err.label(), "config", "{url}: {err}");
        assert_eq!(err.invalid_option(), Some("url"));
        assert!(err.to_string().contains(expected), "{url}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let url = parse_url("url", " https://[::1]:8443/stats?x ").unwrap();
    assert_eq!(url.as_str(), "https://[::1]:8443/stats?x");
}

#[test]
fn options_that_cannot_work() {
    let cases = [
        (
            HttpClient::builder().basic_auth(None, Some("pw")),
            "password",
            "username is not",
        ),
        (
            HttpClient::builder().basic_auth(Some("a:b"), Some("pw")),
            "username",
            "':'",
        ),
        (
            HttpClient::builder().timeout(Duration::ZERO),
            "request_timeout",
            "more than 0",
        ),
        (
            HttpClient::builder().max_body_bytes(0),
            "max_body_bytes",
            "at least 1",
        ),
        (
            HttpClient::builder()
                .verify_tls(false)
                .tls_ca_file(Some(Path::new("/etc/ca.pem"))),
            "tls_ca_file",
            "verify_tls = false",
        ),
    ];
    for (builder, option, expected) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.invalid_option(), Some(option), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}

#[test]
fn tls_configurations_build() {
    let settings = |verify_tls, tls_ca_file| Settings {
        verify_tls,
        tls_ca_file,
        ..Settings::default()
    };
    tls_config(&settings(false, None), true).unwrap();
    tls_config(&settings(true, Some(testdata("ca.pem"))), true).unwrap();
    tls_config(&settings(true, None), false).unwrap();
    // The verifying one needs the system store; ca-certificates is on
    // every Debian with TLS, but do not fail the suite without it.
    if Path::new("/etc/ssl/certs").is_dir() {
        tls_config(&settings(true, None), true).unwrap();
    }
}
