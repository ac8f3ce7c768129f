//! The HTTP(S) client of every carat collector that reads a server over HTTP
//! (cargo feature `http`).
//!
//! One client for the project, on `reqwest` with rustls and the *ring*
//! provider (no C build beyond ring's, no OpenSSL), HTTP/1.1 only. What a
//! collector gets from it, the same everywhere:
//!
//! - **basic authentication**, sent with the first request (no 401 round
//!   trip), the password never in a message or a `Debug` output;
//! - **TLS** verified against the system's CA store by default
//!   (`/etc/ssl/certs`; `SSL_CERT_FILE` / `SSL_CERT_DIR` override it), or
//!   against the certificates of one PEM file (`tls_ca_file`), or, opted
//!   into, not verified at all (`verify_tls = false`: the connection is still
//!   encrypted, and the handshake's signatures are still checked);
//! - **one timeout** for the whole request, from connecting to the last byte
//!   of the body;
//! - **a bound on the body**, checked against the announced
//!   `Content-Length` before reading and again while the body streams in, so
//!   an answer larger than the bound is never held in memory;
//! - **a redirect policy**: not followed unless asked for;
//! - **errors by kind** ([`CollectorError::Connect`],
//!   [`Timeout`](CollectorError::Timeout), [`Tls`](CollectorError::Tls),
//!   [`Status`](CollectorError::Status), [`Parse`](CollectorError::Parse) for
//!   an answer that is not HTTP, [`Io`](CollectorError::Io) for a connection
//!   lost mid-answer, [`Limit`](CollectorError::Limit) for a body over the
//!   bound), each naming the URL with any password replaced by `***`;
//! - proxies from the environment (`HTTP_PROXY`, …) are **not** used, and
//!   no connection is kept between requests (a server polled every few
//!   seconds has usually closed an idle connection by the next poll, and a
//!   request on a connection the server is closing fails for nothing).
//!
//! A collector checks its URL when it is built ([`parse_url`]) and builds
//! its client there too ([`HttpClient::builder`]): neither does any I/O, so
//! both follow the rule that `new` only checks and stores options. The TLS
//! setup (reading the CA store or file) happens at the first request of the
//! client and is kept.
//!
//! Collectors using this client name their options as the `haproxy`
//! collector does, so that the messages of this module (which name them)
//! fit: `url`, `username`, `password`, `verify_tls`, `tls_ca_file`,
//! `request_timeout`, `max_body_bytes`.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use carat_collector::http::{parse_url, HttpClient};
//! use carat_collector::CollectorError;
//!
//! # async fn run() -> Result<(), CollectorError> {
//! // In `Collector::new`: options checked, nothing read or connected yet.
//! let url = parse_url("url", "https://rabbit.example:15672/api/overview")?;
//! let client = HttpClient::builder()
//!     .basic_auth(Some("carat"), Some("s3cret"))
//!     .timeout(Duration::from_secs(5))
//!     .max_body_bytes(4 << 20)
//!     .user_agent(concat!("carat-rabbitmq/", env!("CARGO_PKG_VERSION")))
//!     .build()?;
//!
//! // In `Collector::collect`: the body of a 2xx answer, into a reused buffer.
//! let mut body = Vec::new();
//! client.get_into(&url, &mut body).await?;
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, LOCATION};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::CollectorError;
use crate::redact::{redact_url, redact_urls};

/// A URL, as [`parse_url`] returns it (the `url` crate's, which `reqwest`
/// uses): `join`, `set_query`, `path_segments_mut` and the like build the
/// URLs of one server's API from its base.
pub use reqwest::Url;

/// The default [`HttpClientBuilder::timeout`]: 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`HttpClientBuilder::max_body_bytes`]: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Checks the URL of option `option` and returns it parsed: `http://` or
/// `https://`, a host, and no credentials (`user:pass@` is refused, with a
/// message pointing at the `username` and `password` options, so a secret
/// is never written into a URL that ends up in messages). The errors name
/// `option` and show the URL with any password replaced by `***`.
///
/// ```
/// use carat_collector::http::parse_url;
///
/// let url = parse_url("url", "http://127.0.0.1:8404/stats").unwrap();
/// assert_eq!(url.as_str(), "http://127.0.0.1:8404/stats");
///
/// let err = parse_url("url", "http://admin:hunter2@lb/stats").unwrap_err();
/// assert_eq!(err.invalid_option(), Some("url"));
/// assert!(err.to_string().contains("credentials in the URL"));
/// assert!(!err.to_string().contains("hunter2"));
/// ```
pub fn parse_url(option: &str, text: &str) -> Result<Url, CollectorError> {
    let shown = redact_url(text);
    let bad = |why: &str| CollectorError::option(option, format!("{shown:?}: {why}"));
    let text = text.trim();
    let Some(scheme_end) = text.find("://") else {
        return Err(bad("no scheme: write http://host:port/path"));
    };
    // `http:///x` is `http://x/` to the URL standard; to an operator it is
    // a URL without a host.
    if text[scheme_end + 3..].starts_with(['/', '?', '#']) || text.len() == scheme_end + 3 {
        return Err(bad("no host"));
    }
    let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(bad(&format!("scheme {other:?} is not http or https"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL are not accepted: use the username and password options \
             (password = \"${ENV_VAR}\" keeps the secret out of the file)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(url)
}

/// Refuses `tls_ca_file` (the option of that name) with a URL that is not
/// `https://`: nothing would read it, and a user who set it expects the
/// connection to be verified with it.
///
/// ```
/// use carat_collector::http::{check_tls_ca_file, parse_url};
/// use std::path::Path;
///
/// let url = parse_url("url", "http://127.0.0.1/status").unwrap();
/// let err = check_tls_ca_file(&url, Some(Path::new("/etc/ca.pem"))).unwrap_err();
/// assert_eq!(err.invalid_option(), Some("tls_ca_file"));
/// assert!(check_tls_ca_file(&url, None).is_ok());
/// ```
pub fn check_tls_ca_file(url: &Url, tls_ca_file: Option<&Path>) -> Result<(), CollectorError> {
    if tls_ca_file.is_some() && url.scheme() != "https" {
        return Err(CollectorError::option(
            "tls_ca_file",
            "tls_ca_file applies to an https:// url only",
        ));
    }
    Ok(())
}

/// The longest piece of an answer [`parse_json`] quotes in its errors.
pub const JSON_EXCERPT_CHARS: usize = 60;

/// `body`, the answer of `origin` (the URL asked, as the client's messages
/// show it: without a password), read as JSON of type `T`.
///
/// An answer that is not is a [`CollectorError::Parse`] naming `origin`
/// and saying what came instead (an empty answer, an HTML page such as a
/// login or error page, truncated JSON, or JSON of another shape, with
/// serde's words and position), with a quote of the answer's start of at
/// most [`JSON_EXCERPT_CHARS`] characters, and then `expected`, what the
/// answer should have been, with a hint when one helps: `"the management
/// API's JSON (is the URL the management plugin's?)"`.
///
/// ```
/// use carat_collector::http::parse_json;
/// use serde_json::{Map, Value};
///
/// let doc: Map<String, Value> = parse_json(br#"{"accepted conn": 5}"#, "http://h/status?json", "the status").unwrap();
/// assert_eq!(doc["accepted conn"], 5);
///
/// let err = parse_json::<Map<String, Value>>(b"pool: www\n", "http://h/status", "the status as JSON").unwrap_err();
/// assert_eq!(err.label(), "parse");
/// assert_eq!(
///     err.to_string(),
///     "http://h/status: not JSON (expected value at line 1 column 1); the answer starts \"pool: www\\n\"; expected the status as JSON"
/// );
/// ```
pub fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    origin: &str,
    expected: &str,
) -> Result<T, CollectorError> {
    serde_json::from_slice(body).map_err(|e| {
        let start = body.trim_ascii_start();
        let head = &start[..start.len().min(4 * JSON_EXCERPT_CHARS + 4)];
        let quote = crate::input::excerpt(&String::from_utf8_lossy(head), JSON_EXCERPT_CHARS);
        let what = match start.first() {
            None => "an empty answer".to_owned(),
            Some(b'<') => format!("an HTML page, {quote}"),
            Some(_) if e.is_eof() => format!("truncated JSON ({e}); the answer starts {quote}"),
            Some(_) if e.is_data() => {
                format!("JSON, but not of the shape expected ({e}); the answer starts {quote}")
            }
            Some(_) => format!("not JSON ({e}); the answer starts {quote}"),
        };
        CollectorError::parse(origin, format!("{what}; expected {expected}"))
    })
}

/// Whether and how far redirects are followed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Redirects {
    /// A redirect is an error naming where it points (the default: a
    /// monitoring URL should be the final one, and a redirect to a login
    /// page would otherwise read as a parse error).
    #[default]
    NotFollowed,
    /// Followed, at most this many in a row. The `Authorization` header is
    /// not sent to another host.
    Follow(usize),
}

/// Options of an [`HttpClient`]; [`build`](HttpClientBuilder::build) checks
/// them.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct HttpClientBuilder {
    settings: Settings,
}

/// The options of a client.
#[derive(Clone)]
struct Settings {
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
    max_body_bytes: usize,
    verify_tls: bool,
    tls_ca_file: Option<PathBuf>,
    redirects: Redirects,
    user_agent: String,
    accept: Option<String>,
    hints: Vec<(u16, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            username: None,
            password: None,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            verify_tls: true,
            tls_ca_file: None,
            redirects: Redirects::NotFollowed,
            user_agent: concat!("carat/", env!("CARGO_PKG_VERSION")).to_owned(),
            accept: None,
            hints: Vec::new(),
        }
    }
}

impl fmt::Debug for Settings {
    /// Like a derived `Debug`, with the password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("verify_tls", &self.verify_tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("redirects", &self.redirects)
            .field("user_agent", &self.user_agent)
            .field("accept", &self.accept)
            .field("hints", &self.hints)
            .finish()
    }
}

impl HttpClientBuilder {
    /// Basic authentication: the options `username` and `password` as the
    /// user wrote them (`None` when unset). A password without a username,
    /// or a username with a `:`, is refused by [`build`](Self::build).
    pub fn basic_auth(mut self, username: Option<&str>, password: Option<&str>) -> Self {
        self.settings.username = username.map(str::to_owned);
        self.settings.password = password.map(str::to_owned);
        self
    }

    /// Time allowed for a whole request, from connecting to the last byte
    /// of the body ([`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The largest body accepted, in bytes ([`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.settings.max_body_bytes = max;
        self
    }

    /// Verify the server's certificate (the default). `false` accepts any
    /// certificate: the connection is still encrypted (and the handshake's
    /// signatures checked), but not authenticated.
    pub fn verify_tls(mut self, verify: bool) -> Self {
        self.settings.verify_tls = verify;
        self
    }

    /// Trust the certificates in this PEM file instead of the system's CA
    /// store (an internal CA, or a self-signed certificate that is not a
    /// CA). Read at the first HTTPS request.
    pub fn tls_ca_file(mut self, path: Option<&Path>) -> Self {
        self.settings.tls_ca_file = path.map(Path::to_owned);
        self
    }

    /// The redirect policy ([`Redirects::NotFollowed`]).
    pub fn redirects(mut self, redirects: Redirects) -> Self {
        self.settings.redirects = redirects;
        self
    }

    /// The `User-Agent` header (`carat/<version>`): name the collector,
    /// `carat-haproxy/0.1.0`, so the server's log says who asked.
    pub fn user_agent(mut self, user_agent: &str) -> Self {
        user_agent.clone_into(&mut self.settings.user_agent);
        self
    }

    /// The `Accept` header (none by default).
    pub fn accept(mut self, accept: &str) -> Self {
        self.settings.accept = Some(accept.to_owned());
        self
    }

    /// A hint added to the message of an answer with status `code`:
    /// `.hint(404, "check the path: it must be the `stats uri`")`.
    /// (401 has a hint already: check username and password, or set them.)
    pub fn hint(mut self, code: u16, hint: &str) -> Self {
        self.settings.hints.push((code, hint.to_owned()));
        self
    }

    /// Checks the options and returns the client. Does no I/O.
    pub fn build(self) -> Result<HttpClient, CollectorError> {
        let s = self.settings;
        match (&s.username, &s.password) {
            (None, Some(_)) => {
                return Err(CollectorError::option(
                    "password",
                    "password is set but username is not",
                ))
            }
            (Some(user), _) if user.contains(':') => {
                return Err(CollectorError::option(
                    "username",
                    "username may not contain ':' (HTTP basic authentication)",
                ))
            }
            _ => {}
        }
        if s.timeout.is_zero() {
            return Err(CollectorError::option(
                "request_timeout",
                "must be more than 0",
            ));
        }
        if s.max_body_bytes == 0 {
            return Err(CollectorError::option(
                "max_body_bytes",
                "must be at least 1",
            ));
        }
        if !s.verify_tls && s.tls_ca_file.is_some() {
            return Err(CollectorError::option(
                "tls_ca_file",
                "is set, but verify_tls = false accepts any certificate: \
                 remove one of the two",
            ));
        }
        if s.tls_ca_file.as_deref() == Some(Path::new("")) {
            return Err(CollectorError::option("tls_ca_file", "is empty"));
        }
        let headers = [Some(&s.user_agent), s.accept.as_ref()];
        if headers
            .into_iter()
            .flatten()
            .any(|value| HeaderValue::from_str(value).is_err())
        {
            return Err(CollectorError::config(
                "HTTP client: the user agent or Accept value is not a header value",
            ));
        }
        Ok(HttpClient {
            settings: Arc::new(s),
            plain: OnceLock::new(),
            tls: OnceLock::new(),
        })
    }
}

/// An HTTP(S) client with the options of one collector instance: see the
/// [module documentation](self). Cheap to build; `get` may be called from
/// several tasks at once.
pub struct HttpClient {
    settings: Arc<Settings>,
    /// For `http://` URLs: no CA store is read for them.
    plain: OnceLock<reqwest::Client>,
    /// For `https://` URLs (and every URL when redirects are followed).
    tls: OnceLock<reqwest::Client>,
}

impl fmt::Debug for HttpClient {
    /// The options, with the password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A builder with the defaults: no authentication, [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_BODY_BYTES`], TLS verified against the system's CA
    /// store, redirects not followed.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }

    /// The time allowed for one request.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// The largest body accepted.
    pub fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// `GET url`: the body of a success (2xx) answer. See
    /// [`get_into`](Self::get_into).
    pub async fn get(&self, url: &Url) -> Result<Vec<u8>, CollectorError> {
        let mut body = Vec::new();
        self.get_into(url, &mut body).await?;
        Ok(body)
    }

    /// `GET url` into `body` (cleared first; its allocation is kept from
    /// one call to the next): the body of a success (2xx) answer, of at
    /// most [`max_body_bytes`](HttpClientBuilder::max_body_bytes), within
    /// the [`timeout`](HttpClientBuilder::timeout).
    ///
    /// Any other outcome is an error naming `url` (password redacted) and
    /// leaves `body` empty:
    ///
    /// | what happened | error (label) |
    /// |---|---|
    /// | refused, unreachable, unknown host | [`Connect`](CollectorError::Connect) (`connect`) |
    /// | no complete answer within the timeout | [`Timeout`](CollectorError::Timeout) (`timeout`) |
    /// | TLS handshake failed (certificate not trusted, not TLS) | [`Tls`](CollectorError::Tls) (`tls`) |
    /// | an answer with another status than 2xx, a redirect not followed | [`Status`](CollectorError::Status) (`status`) |
    /// | an answer that is not HTTP | [`Parse`](CollectorError::Parse) (`parse`) |
    /// | the connection closed or reset before the answer was complete | [`Io`](CollectorError::Io) (`io`) |
    /// | a body larger than the bound (announced or read) | [`Limit`](CollectorError::Limit) (`limit`); the body's memory is given back |
    pub async fn get_into(&self, url: &Url, body: &mut Vec<u8>) -> Result<(), CollectorError> {
        body.clear();
        let target = redact_url(url.as_str());
        let timeout = self.settings.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(url, &target, body)).await {
            Ok(result) => result,
            Err(_) => Err(CollectorError::timeout(
                target.as_ref(),
                format!(
                    "no complete answer within the timeout of {} s",
                    timeout.as_secs_f64()
                ),
            )),
        };
        if let Err(e) = &result {
            body.clear();
            if matches!(e, CollectorError::Limit(_)) {
                // An oversized answer does not stay allocated.
                *body = Vec::new();
            }
        }
        result
    }

    async fn exchange(
        &self,
        url: &Url,
        target: &str,
        body: &mut Vec<u8>,
    ) -> Result<(), CollectorError> {
        let s = &*self.settings;
        let client = self.client(url, target)?;
        let mut request = client.get(url.clone());
        if let Some(user) = &s.username {
            request = request.basic_auth(user, s.password.as_ref());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| classify(&e, target, s.timeout, Stage::Answer))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(target, &response));
        }
        let max = s.max_body_bytes;
        if let Some(announced) = response.content_length() {
            if announced > max as u64 {
                return Err(too_large(
                    target,
                    max,
                    &format!("{announced} bytes announced"),
                ));
            }
            // Announced and within the bound: read it without growing.
            body.reserve(announced as usize);
        }
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| classify(&e, target, s.timeout, Stage::Body))?
        {
            if chunk.len() > max - body.len() {
                return Err(too_large(target, max, "more"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn status_error(&self, target: &str, response: &reqwest::Response) -> CollectorError {
        let status = response.status();
        let code = status.as_u16();
        let mut message = format!("HTTP {status}");
        if let Some((_, hint)) = self.settings.hints.iter().find(|(c, _)| *c == code) {
            message.push_str("; ");
            message.push_str(hint);
        } else if code == 401 {
            message.push_str(if self.settings.username.is_some() {
                "; check username and password"
            } else {
                "; the server wants a username and password"
            });
        } else if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| redact_url(l).into_owned());
            message.push_str("; redirects are not followed: set the URL it points to");
            if let Some(location) = location {
                message.push_str(&format!(" (Location: {location:?})"));
            }
        }
        CollectorError::status(target, Some(code), message)
    }

    /// The client for `url`, built at its first use.
    fn client(&self, url: &Url, target: &str) -> Result<&reqwest::Client, CollectorError> {
        let with_tls = url.scheme() == "https" || self.settings.redirects != Redirects::NotFollowed;
        let cell = if with_tls { &self.tls } else { &self.plain };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let built = build_client(&self.settings, with_tls, target)?;
        Ok(cell.get_or_init(|| built))
    }
}

fn build_client(
    s: &Settings,
    with_tls: bool,
    target: &str,
) -> Result<reqwest::Client, CollectorError> {
    let tls = tls_config(s, with_tls).map_err(|e| CollectorError::tls(target, e))?;
    let mut headers = HeaderMap::new();
    if let Some(accept) = &s.accept {
        let accept = HeaderValue::from_str(accept).map_err(|_| {
            CollectorError::config("HTTP client: the Accept value is not a header value")
        })?;
        headers.insert(ACCEPT, accept);
    }
    let redirect = match s.redirects {
        Redirects::NotFollowed => reqwest::redirect::Policy::none(),
        Redirects::Follow(n) => reqwest::redirect::Policy::limited(n),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(redirect)
        .referer(false)
        .pool_max_idle_per_host(0)
        .user_agent(s.user_agent.as_str())
        .default_headers(headers)
        .build()
        .map_err(|e| {
            CollectorError::Other(format!("{target}: HTTP client setup: {}", chain(&e)).into())
        })
}

/// rustls with the ring provider. Without `with_tls` (a client for
/// `http://` URLs only), no CA store is read: the configuration is never
/// used for a handshake.
fn tls_config(s: &Settings, with_tls: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if !with_tls {
        builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    } else if !s.verify_tls {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &s.tls_ca_file {
            Some(path) => roots_from_file(path)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn system_roots() -> Result<rustls::RootCertStore, String> {
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
             set SSL_CERT_FILE, set tls_ca_file, or set verify_tls = false"
        ));
    }
    Ok(roots)
}

fn roots_from_file(path: &Path) -> Result<rustls::RootCertStore, String> {
    let what = || format!("tls_ca_file {}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", what()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", what()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: a certificate cannot be used: {e}", what()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: no certificate in it (a PEM file of `-----BEGIN CERTIFICATE-----` blocks)",
            what()
        ));
    }
    Ok(roots)
}

/// `verify_tls = false`: any certificate is accepted, for a server with a
/// self-signed certificate. The signatures of the handshake itself are
/// still verified, so the connection is encrypted to whoever holds the key
/// of the certificate presented.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
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
        cert: &CertificateDer<'_>,
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

/// Where in the exchange a `reqwest` error happened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connecting, sending, reading the status line and headers.
    Answer,
    /// Reading the body.
    Body,
}

/// Maps a `reqwest` error onto the kinds of [`CollectorError`].
fn classify(e: &reqwest::Error, target: &str, timeout: Duration, stage: Stage) -> CollectorError {
    // A library's message may quote a URL (a redirect's target).
    let detail = redact_urls(&chain(e)).into_owned();
    if let Some(tls) = find_tls_error(e) {
        return CollectorError::tls(target, tls);
    }
    if e.is_timeout() {
        return CollectorError::timeout(
            target,
            format!(
                "no complete answer within the timeout of {} s ({detail})",
                timeout.as_secs_f64()
            ),
        );
    }
    if e.is_connect() {
        return CollectorError::connect(target, detail);
    }
    if e.is_redirect() {
        return CollectorError::status(target, None, format!("redirects: {detail}"));
    }
    let hyper = find_source::<hyper::Error>(e);
    if stage == Stage::Answer && hyper.is_some_and(hyper::Error::is_parse) {
        return CollectorError::parse(target, format!("the answer is not HTTP: {detail}"));
    }
    let what = match stage {
        Stage::Answer => "no answer",
        Stage::Body => "reading the body",
    };
    CollectorError::io(
        target,
        io::Error::new(io_kind(e), format!("{what}: {detail}")),
    )
}

/// The `io::ErrorKind` behind `e`, if any (for the `Io` error's source).
fn io_kind(e: &reqwest::Error) -> io::ErrorKind {
    find_source::<io::Error>(e).map_or(io::ErrorKind::Other, io::Error::kind)
}

/// The first error of type `T` in the chain of `e`'s sources, looking
/// inside `io::Error`s too (their `source` skips the error they wrap).
fn find_source<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            if let Some(found) = find_source::<T>(inner) {
                return Some(found);
            }
        }
        next = err.source();
    }
    None
}

/// The TLS failure in `e`'s chain, as text, with a hint for the two that
/// operators meet most.
fn find_tls_error(e: &reqwest::Error) -> Option<String> {
    let tls = find_source::<rustls::Error>(e)?;
    let mut text = tls.to_string();
    if matches!(
        tls,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    ) {
        text.push_str(
            " (no trusted CA issued the server's certificate: set tls_ca_file to the CA \
             that did, or verify_tls = false to accept any certificate)",
        );
    } else if text.contains("CaUsedAsEndEntity") {
        text.push_str(
            " (the server's certificate is a CA certificate, as `openssl req -x509` makes \
             by default; a server's own certificate must not be: issue it from a CA and set \
             tls_ca_file to that CA, or set verify_tls = false)",
        );
    }
    Some(text)
}

/// `e`'s sources, joined by `: `, without `reqwest`'s own first line
/// (`error sending request for url (…)`, which repeats the URL) and
/// `hyper-util`'s wrappers (`client error (Connect)`).
fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(err) = next {
        let text = err.to_string();
        let wrapper = text.starts_with("client error (") && text.ends_with(')');
        if !wrapper && !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
        next = err.source();
        if next.is_none() {
            if let Some(inner) = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
                let inner = inner.to_string();
                if !parts.last().is_some_and(|last| last.ends_with(&inner)) {
                    parts.push(inner);
                }
            }
        }
    }
    if parts.is_empty() {
        // No source: reqwest's own message, without the URL.
        let mut text = e.to_string();
        if let Some(cut) = text.find(" for url (") {
            text.truncate(cut);
        }
        parts.push(text);
    }
    parts.join(": ")
}

fn too_large(target: &str, max: usize, got: &str) -> CollectorError {
    CollectorError::Limit(format!(
        "{target}: the answer is larger than max_body_bytes ({max} bytes; {got}): refused"
    ))
}

#[cfg(test)]
mod tests;
