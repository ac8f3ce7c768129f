//! Getting the stats CSV: `GET <url>;csv` over HTTP or HTTPS, or
//! `show stat` on the stats socket.
//!
//! Both read the whole answer into memory, refuse answers larger than the
//! configured bound, and give up after the configured timeout, which covers
//! everything from connecting to the last byte.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use base64::Engine as _;
use carat_collector::CollectorError;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

const USER_AGENT_VALUE: &str = concat!("carat-haproxy/", env!("CARGO_PKG_VERSION"));

/// The stats page, parsed and checked when the collector is built.
#[derive(Debug)]
pub struct HttpSource {
    /// The URL as requested (with `;csv`), for messages. It never holds
    /// credentials: a URL with `user:pass@` is refused.
    display: String,
    host: String,
    port: u16,
    host_header: HeaderValue,
    path_and_query: String,
    auth: Option<HeaderValue>,
    tls: Option<Tls>,
}

#[derive(Debug)]
struct Tls {
    verify: bool,
    server_name: ServerName<'static>,
    /// Built on first use (loading the system's CA certificates reads a
    /// few hundred files), then kept.
    config: Option<Arc<rustls::ClientConfig>>,
}

impl HttpSource {
    /// Checks `url` and prepares the request. `;csv` is appended to the
    /// path (or query) unless it is already there.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        verify_tls: bool,
    ) -> Result<HttpSource, CollectorError> {
        let shown = redact(url);
        let bad = |why: &str| CollectorError::option("url", format!("{shown:?}: {why}"));
        if !url.contains("://") {
            return Err(bad("no scheme: write http://host:port/path"));
        }
        let uri: Uri = url.trim().parse().map_err(|e| bad(&format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(bad(&format!("scheme {other:?} is not http or https"))),
            None => return Err(bad("no scheme: write http://host:port/path")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not accepted: use the username and password options \
                 (password = \"${ENV_VAR}\" keeps the secret out of the file)",
            ));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut path_and_query = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        if path_and_query.is_empty() {
            path_and_query.push('/');
        }
        if !path_and_query.contains(";csv") {
            path_and_query.push_str(";csv");
        }
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&format!("host: {e}")))?;
        let auth = match (username, password) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(CollectorError::option(
                    "password",
                    "password is set but username is not",
                ))
            }
            (Some(user), password) => {
                if user.contains(':') {
                    return Err(CollectorError::option(
                        "username",
                        "username may not contain ':' (HTTP basic authentication)",
                    ));
                }
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", password.unwrap_or_default()));
                let mut value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    CollectorError::option(
                        "username",
                        "username or password holds a character not allowed in an HTTP header",
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let tls = if https {
            let server_name = ServerName::try_from(host.to_owned())
                .map_err(|e| bad(&format!("host is not a valid TLS server name: {e}")))?;
            Some(Tls {
                verify: verify_tls,
                server_name,
                config: None,
            })
        } else {
            None
        };
        let display = format!(
            "{}://{}{}",
            if https { "https" } else { "http" },
            authority.as_str(),
            path_and_query
        );
        Ok(HttpSource {
            display,
            host: host.to_owned(),
            port,
            host_header,
            path_and_query,
            auth,
            tls,
        })
    }

    /// The URL requested, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// GETs the stats CSV: the body of a `200 OK` of at most `max_bytes`,
    /// within `timeout`.
    pub async fn fetch(
        &mut self,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, CollectorError> {
        let tls_config = match &mut self.tls {
            Some(tls) => Some(match &tls.config {
                Some(c) => Arc::clone(c),
                None => {
                    let c = client_config(tls.verify).map_err(|e| {
                        CollectorError::Other(format!("{}: {e}", self.display).into())
                    })?;
                    tls.config = Some(Arc::clone(&c));
                    c
                }
            }),
            None => None,
        };
        let this = &*self;
        let work = async move {
            let tcp = TcpStream::connect((this.host.as_str(), this.port))
                .await
                .map_err(|e| this.io_error(e, "cannot connect"))?;
            // Small request, small answers: no need for Nagle's delay.
            let _ = tcp.set_nodelay(true);
            match (tls_config, &this.tls) {
                (Some(config), Some(tls)) => {
                    let connector = tokio_rustls::TlsConnector::from(config);
                    let stream = connector
                        .connect(tls.server_name.clone(), tcp)
                        .await
                        .map_err(|e| this.io_error(e, "TLS handshake failed"))?;
                    this.exchange(stream, max_bytes).await
                }
                _ => this.exchange(tcp, max_bytes).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(CollectorError::io(
                &self.display,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no complete answer within the timeout of {}",
                        seconds(timeout)
                    ),
                ),
            )),
        }
    }

    /// Sends the request on `io` and reads the answer, driving hyper's
    /// connection in this task: nothing is spawned, so a timeout that drops
    /// this future closes the socket at once.
    async fn exchange<T>(&self, io: T, max_bytes: usize) -> Result<Bytes, CollectorError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.http_error(&e))?;
        let mut request = Request::get(self.path_and_query.as_str())
            .header(HOST, self.host_header.clone())
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(ACCEPT, "text/plain, text/csv, */*;q=0.1");
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| CollectorError::Other(format!("{}: {e}", self.display).into()))?;
        let answer = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.http_error(&e))?;
            let status = response.status();
            if status != StatusCode::OK {
                let hint = match status {
                    StatusCode::UNAUTHORIZED => {
                        if self.auth.is_some() {
                            "; check username and password"
                        } else {
                            "; the stats page wants a username and password"
                        }
                    }
                    StatusCode::NOT_FOUND => "; check the path: it must be the `stats uri`",
                    _ => "",
                };
                return Err(CollectorError::Other(
                    format!("{}: HTTP {status}{hint}", self.display).into(),
                ));
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(len) = declared.filter(|&len| len > max_bytes as u64) {
                return Err(self.too_large(&format!("{len} bytes announced"), max_bytes));
            }
            match Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
            {
                Ok(body) => Ok(body.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(self.too_large("more", max_bytes))
                }
                Err(e) => Err(CollectorError::io(
                    &self.display,
                    io::Error::other(format!("reading the body: {}", chain(e.as_ref()))),
                )),
            }
        };
        drive(conn, answer).await.map_err(|e| self.http_error(&e))?
    }

    fn io_error(&self, e: io::Error, what: &str) -> CollectorError {
        CollectorError::io(
            &self.display,
            io::Error::new(e.kind(), format!("{what}: {}", chain(&e))),
        )
    }

    fn http_error(&self, e: &hyper::Error) -> CollectorError {
        CollectorError::io(&self.display, io::Error::other(chain(e)))
    }

    fn too_large(&self, got: &str, max_bytes: usize) -> CollectorError {
        CollectorError::parse(
            &self.display,
            format!("the answer is larger than max_body_bytes ({max_bytes} bytes; {got}): refused"),
        )
    }
}

/// Polls `work` while also driving hyper's connection `conn`, until `work`
/// is done. An error of the connection ends it early.
async fn drive<C, W>(conn: C, work: W) -> Result<W::Output, hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future,
{
    let mut conn = pin!(conn);
    let mut work = pin!(work);
    let mut conn_done = false;
    poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if !conn_done {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                conn_done = true;
                result?;
                // The connection closed cleanly; `work` sees that through
                // its own channel and finishes (or fails) by itself.
                return work.as_mut().poll(cx).map(Ok);
            }
        }
        Poll::Pending
    })
    .await
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
fn redact(url: &str) -> Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => Cow::Owned(format!("{}***{}", &url[..start], &url[start + at..])),
        None => Cow::Borrowed(url),
    }
}

/// `e` and its sources, joined by `: `.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// rustls with the ring provider: the system's CA certificates when
/// verifying, otherwise a verifier that accepts any certificate (the
/// handshake's signatures are still checked).
fn client_config(verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if verify {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(loaded.certs);
        if roots.is_empty() {
            let why = loaded
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return Err(format!(
                "no trusted CA certificate found in the system store{why}; install ca-certificates, \
                 set SSL_CERT_FILE, or set verify_tls = false"
            ));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `verify_tls = false`: any certificate is accepted, for a stats page with
/// a self-signed certificate. The signatures of the handshake itself are
/// still verified, so the connection is encrypted to whoever holds the key
/// of the certificate presented.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The stats socket.
#[derive(Debug)]
pub struct SocketSource {
    path: PathBuf,
    display: String,
}

impl SocketSource {
    /// A source reading `path`.
    pub fn new(path: &Path) -> Result<SocketSource, CollectorError> {
        if path.as_os_str().is_empty() {
            return Err(CollectorError::option("socket", "socket is empty"));
        }
        Ok(SocketSource {
            path: path.to_owned(),
            display: format!("{} (show stat)", path.display()),
        })
    }

    /// Where the CSV comes from, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Sends `show stat` and reads the answer into `buf` (cleared first):
    /// at most `max_bytes`, within `timeout`. HAProxy answers and closes
    /// the connection (the socket's non-interactive mode).
    pub async fn fetch(
        &self,
        timeout: Duration,
        max_bytes: usize,
        buf: &mut Vec<u8>,
    ) -> Result<(), CollectorError> {
        buf.clear();
        let work = async {
            let mut stream = UnixStream::connect(&self.path).await?;
            stream.write_all(b"show stat\n").await?;
            let limit = u64::try_from(max_bytes)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            (&mut stream).take(limit).read_to_end(buf).await?;
            Ok::<(), io::Error>(())
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CollectorError::io(&self.path, e)),
            Err(_) => {
                return Err(CollectorError::io(
                    &self.path,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no complete answer to `show stat` within the timeout of {}",
                            seconds(timeout)
                        ),
                    ),
                ))
            }
        }
        if buf.len() > max_bytes {
            return Err(CollectorError::parse(
                &self.display,
                format!("the answer is larger than max_body_bytes ({max_bytes} bytes): refused"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> HttpSource {
        HttpSource::new(url, None, None, true).unwrap()
    }

    #[test]
    fn csv_is_appended_once() {
        assert_eq!(
            source("http://127.0.0.1:8404/stats").path_and_query,
            "/stats;csv"
        );
        assert_eq!(
            source("http://127.0.0.1:8404/stats;csv").path_and_query,
            "/stats;csv"
        );
        assert_eq!(
            source("http://lb/haproxy?stats").path_and_query,
            "/haproxy?stats;csv"
        );
        assert_eq!(
            source("http://lb/haproxy?stats;csv;norefresh").path_and_query,
            "/haproxy?stats;csv;norefresh"
        );
        assert_eq!(source("http://lb").path_and_query, "/;csv");
        let s = source("https://[::1]/stats");
        assert_eq!((s.host.as_str(), s.port), ("::1", 443));
        assert_eq!(s.host_header, "[::1]");
        assert_eq!(s.display(), "https://[::1]/stats;csv");
        let s = source("http://lb.example:8404/s");
        assert_eq!((s.host.as_str(), s.port), ("lb.example", 8404));
        assert_eq!(s.host_header, "lb.example:8404");
    }

    #[test]
    fn bad_urls_and_credentials_are_config_errors() {
        for (url, expected) in [
            ("127.0.0.1:8404/stats", "no scheme"),
            ("ftp://lb/stats", "not http or https"),
            ("http://admin:hunter2@lb/stats", "credentials in the URL"),
            ("http:///stats", ""),
            ("not a url", ""),
        ] {
            let err = HttpSource::new(url, None, None, true).unwrap_err();
            assert_eq!(err.label(), "config", "{url}: {err}");
            assert!(err.to_string().contains(expected), "{url}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err = HttpSource::new("http://lb/", None, Some("pw"), true).unwrap_err();
        assert!(err.to_string().contains("username is not"), "{err}");
        let err = HttpSource::new("http://lb/", Some("a:b"), Some("pw"), true).unwrap_err();
        assert!(err.to_string().contains("':'"), "{err}");
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("http://a:b@lb:1/x@y"), "http://***@lb:1/x@y");
        assert_eq!(redact("http://lb/x@y"), "http://lb/x@y");
        assert_eq!(redact("a:b@lb"), "***@lb");
    }

    #[test]
    fn basic_auth_header() {
        let s = HttpSource::new("http://lb/", Some("carat"), Some("secret"), true).unwrap();
        let auth = s.auth.as_ref().unwrap();
        assert_eq!(auth, "Basic Y2FyYXQ6c2VjcmV0");
        assert!(auth.is_sensitive());
        // Debug output of the source never shows the credentials.
        assert!(!format!("{s:?}").contains("Y2FyYXQ6c2VjcmV0"));
    }

    #[test]
    fn tls_configs_build() {
        client_config(false).unwrap();
        // The verifying one needs the system store; ca-certificates is on
        // every Debian with TLS, but do not fail the suite without it.
        if Path::new("/etc/ssl/certs").is_dir() {
            client_config(true).unwrap();
        }
    }
}
