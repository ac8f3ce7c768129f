//! Getting the stats CSV: `GET <url>;csv` over HTTP or HTTPS with the
//! project's shared HTTP client (`carat_collector::http`), or `show stat`
//! on the stats socket.
//!
//! Both read the whole answer into memory, refuse answers larger than the
//! configured bound (an HTTP body as it streams in, before it is all
//! there), and give up after the configured timeout, which covers
//! everything from connecting to the last byte.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use carat_collector::http::{check_tls_ca_file, parse_url, HttpClient, Url};
use carat_collector::CollectorError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const USER_AGENT: &str = concat!("carat-haproxy/", env!("CARGO_PKG_VERSION"));

/// The stats page, parsed and checked when the collector is built.
#[derive(Debug)]
pub struct HttpSource {
    /// The URL requested, with `;csv`. It never holds credentials: a URL
    /// with `user:pass@` is refused.
    url: Url,
    client: HttpClient,
}

impl HttpSource {
    /// Checks `url` and the options of the request. `;csv` is appended to
    /// the path (or query) unless it is already there.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        verify_tls: bool,
        tls_ca_file: Option<&Path>,
        timeout: Duration,
        max_body_bytes: usize,
    ) -> Result<HttpSource, CollectorError> {
        let mut url = parse_url("url", url)?;
        check_tls_ca_file(&url, tls_ca_file)?;
        // Browsers keep a fragment to themselves; so does this.
        url.set_fragment(None);
        if !url.as_str().contains(";csv") {
            match url.query() {
                Some(query) => {
                    let query = format!("{query};csv");
                    url.set_query(Some(&query));
                }
                None => {
                    let path = format!("{};csv", url.path());
                    url.set_path(&path);
                }
            }
        }
        let client = HttpClient::builder()
            .basic_auth(username, password)
            .verify_tls(verify_tls)
            .tls_ca_file(tls_ca_file)
            .timeout(timeout)
            .max_body_bytes(max_body_bytes)
            .user_agent(USER_AGENT)
            .accept("text/plain, text/csv, */*;q=0.1")
            .hint(404, "check the path: it must be the `stats uri`")
            .build()?;
        Ok(HttpSource { url, client })
    }

    /// The URL requested, for messages.
    pub fn display(&self) -> &str {
        self.url.as_str()
    }

    /// GETs the stats CSV into `buf` (cleared first): the body of a success
    /// answer of at most `max_body_bytes`, within `request_timeout`.
    pub async fn fetch(&self, buf: &mut Vec<u8>) -> Result<(), CollectorError> {
        self.client.get_into(&self.url, buf).await
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

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> HttpSource {
        HttpSource::new(url, None, None, true, None, Duration::from_secs(5), 1 << 20).unwrap()
    }

    #[test]
    fn csv_is_appended_once() {
        for (url, requested) in [
            (
                "http://127.0.0.1:8404/stats",
                "http://127.0.0.1:8404/stats;csv",
            ),
            (
                "http://127.0.0.1:8404/stats;csv",
                "http://127.0.0.1:8404/stats;csv",
            ),
            ("http://lb/haproxy?stats", "http://lb/haproxy?stats;csv"),
            (
                "http://lb/haproxy?stats;csv;norefresh",
                "http://lb/haproxy?stats;csv;norefresh",
            ),
            ("http://lb", "http://lb/;csv"),
            ("https://[::1]/stats", "https://[::1]/stats;csv"),
            (
                "http://lb.example:8404/s#top",
                "http://lb.example:8404/s;csv",
            ),
        ] {
            assert_eq!(source(url).display(), requested, "{url}");
        }
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
            let err = HttpSource::new(url, None, None, true, None, Duration::from_secs(5), 1)
                .unwrap_err();
            assert_eq!(err.label(), "config", "{url}: {err}");
            assert!(err.to_string().contains(expected), "{url}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let new = |user, password| {
            HttpSource::new(
                "http://lb/",
                user,
                password,
                true,
                None,
                Duration::from_secs(5),
                1,
            )
        };
        let err = new(None, Some("pw")).unwrap_err();
        assert!(err.to_string().contains("username is not"), "{err}");
        let err = new(Some("a:b"), Some("pw")).unwrap_err();
        assert!(err.to_string().contains("':'"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let s = HttpSource::new(
            "http://lb/",
            Some("carat"),
            Some("secret"),
            true,
            None,
            Duration::from_secs(5),
            1,
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("Y2FyYXQ6c2VjcmV0"), "{debug}");
    }
}
