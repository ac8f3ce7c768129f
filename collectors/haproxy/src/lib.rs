//! The `haproxy` collector: HAProxy's per-proxy and per-server statistics,
//! from the stats page's CSV (`…;csv`, over HTTP or HTTPS) or from the stats
//! socket (`show stat`), published under Diamond's names.
//!
//! Every row of the CSV (a frontend, a backend, a server, a listener) gives
//! `<pxname>.<svname>.<column>` for each numeric cell, with `pxname` and
//! `svname` lowercased and every character outside `[A-Za-z0-9_-]` turned
//! into `_`, as Diamond did. Columns are found by the header row, so every
//! HAProxy version's column set works. On top of Diamond:
//!
//! - `status`, `check_status` and `agent_status` are published as numbers
//!   ([`stats::status_code`], [`stats::check_status_code`]);
//! - each cumulative column ([`stats::CUMULATIVE_COLUMNS`]) is also
//!   published as a rate per second under `<column>_per_second` (a counter:
//!   the agent computes the rate);
//! - a body that is not the whole CSV is an error, and nothing of it is
//!   published.
//!
//! Several HAProxy instances are several collector instances:
//! `[collector.haproxy.edge]` publishes under `haproxy.edge`, as Diamond's
//! `servers` list did.
//!
//! The README of this crate lists the options, every name with its unit,
//! and the status codes.
#![warn(missing_docs)]

/// The commented sample configuration of this crate's collectors, a
/// section per kind ([`carat_collector::sample`]): every option with its
/// default. The agent assembles `carat sample-config` from it.
pub const SAMPLE: &str = include_str!("../sample.toml");

pub mod csv;
mod fetch;
pub mod stats;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use carat_collector::options::{self, Filter, Patterns, SecondsRange};
use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

pub use stats::{Filters, StatsCsv, Summary};

use fetch::{HttpSource, SocketSource};

/// Options of the `haproxy` collector.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HaproxyConfig {
    /// The stats page, e.g. `http://127.0.0.1:8404/stats;csv`. `;csv` is
    /// appended when missing. Exactly one of `url` and `socket`.
    pub url: Option<String>,
    /// The stats socket (`stats socket` in HAProxy's `global` section).
    pub socket: Option<PathBuf>,
    /// User for the stats page's basic authentication (`stats auth`).
    pub username: Option<String>,
    /// Its password. Write `password = "${HAPROXY_STATS_PASSWORD}"` to keep
    /// it out of the file: the agent substitutes environment variables.
    pub password: Option<String>,
    /// How long reading the stats may take, from connecting to the last
    /// byte: seconds, or a string with units (`"2s"`, `"500ms"`); more than
    /// 0 and at most an hour ([`REQUEST_TIMEOUT_RANGE`]). Not `timeout`: that
    /// key is the agent's limit for the whole run (see [`Collector`]'s
    /// common options); keep this one below it, so a hanging HAProxy gives
    /// this collector's clearer error.
    #[serde(deserialize_with = "options::duration::deserialize")]
    pub request_timeout: Duration,
    /// Verify the stats page's TLS certificate against the system's CAs
    /// (or those of `tls_ca_file`).
    pub verify_tls: bool,
    /// Trust the CA certificates of this PEM file instead of the system's
    /// (an internal CA).
    pub tls_ca_file: Option<PathBuf>,
    /// Publish only the FRONTEND and BACKEND rows.
    pub ignore_servers: bool,
    /// Publish only proxies whose name matches one of these regexes
    /// (searched anywhere in the name; one regex or a list).
    pub proxy_include: Patterns,
    /// Leave out proxies whose name matches one of these regexes.
    pub proxy_exclude: Patterns,
    /// Publish only servers whose name matches one of these regexes.
    pub server_include: Patterns,
    /// Leave out servers whose name matches one of these regexes.
    pub server_exclude: Patterns,
    /// Also publish `<column>_per_second` for each cumulative column.
    pub rates: bool,
    /// The largest answer accepted, in bytes.
    pub max_body_bytes: u64,
}

/// The `request_timeout` accepted: more than 0, at most an hour.
pub const REQUEST_TIMEOUT_RANGE: SecondsRange = SecondsRange::above(0.0, 3600.0);

/// Default of `max_body_bytes`: 16 MiB, about 60,000 server rows of
/// HAProxy 2.6.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

impl Default for HaproxyConfig {
    fn default() -> Self {
        HaproxyConfig {
            url: None,
            socket: None,
            username: None,
            password: None,
            request_timeout: Duration::from_secs(5),
            verify_tls: true,
            tls_ca_file: None,
            ignore_servers: false,
            proxy_include: Patterns::default(),
            proxy_exclude: Patterns::default(),
            server_include: Patterns::default(),
            server_exclude: Patterns::default(),
            rates: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl fmt::Debug for HaproxyConfig {
    /// Like a derived `Debug`, with the password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaproxyConfig")
            .field("url", &self.url)
            .field("socket", &self.socket)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("request_timeout", &self.request_timeout)
            .field("verify_tls", &self.verify_tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("ignore_servers", &self.ignore_servers)
            .field("proxy_include", &self.proxy_include)
            .field("proxy_exclude", &self.proxy_exclude)
            .field("server_include", &self.server_include)
            .field("server_exclude", &self.server_exclude)
            .field("rates", &self.rates)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

enum Source {
    Http(HttpSource),
    Socket(SocketSource),
}

/// The `haproxy` collector. See the [crate documentation](crate).
pub struct Haproxy {
    source: Source,
    timeout: Duration,
    max_body_bytes: usize,
    stats: StatsCsv,
    buf: Vec<u8>,
}

impl Collector for Haproxy {
    type Config = HaproxyConfig;
    const KIND: &'static str = "haproxy";
    const DESCRIPTION: &'static str =
        "HAProxy per-proxy and per-server stats from the stats page CSV or the stats socket";
    const DEFAULT_PATH: &'static str = "haproxy";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: HaproxyConfig, _env: &Environment) -> Result<Self, CollectorError> {
        let timeout =
            REQUEST_TIMEOUT_RANGE.check_option("request_timeout", config.request_timeout)?;
        if config.max_body_bytes == 0 {
            return Err(CollectorError::option(
                "max_body_bytes",
                "must be at least 1",
            ));
        }
        let max_body_bytes = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
        let source = match (&config.url, &config.socket) {
            (Some(url), None) => Source::Http(HttpSource::new(
                url,
                config.username.as_deref(),
                config.password.as_deref(),
                config.verify_tls,
                config.tls_ca_file.as_deref(),
                timeout,
                max_body_bytes,
            )?),
            (None, Some(path)) => {
                if config.username.is_some() || config.password.is_some() {
                    let option = if config.username.is_some() {
                        "username"
                    } else {
                        "password"
                    };
                    return Err(CollectorError::option(
                        option,
                        "username and password apply to url only: the stats socket has no authentication \
                         (protect it with its file mode)",
                    ));
                }
                if config.tls_ca_file.is_some() {
                    return Err(CollectorError::option(
                        "tls_ca_file",
                        "tls_ca_file applies to an https:// url only: the stats socket has no TLS",
                    ));
                }
                Source::Socket(SocketSource::new(path)?)
            }
            (Some(_), Some(_)) => {
                return Err(CollectorError::option(
                    "socket",
                    "set either url or socket, not both (one instance per HAProxy: \
                     [collector.haproxy.<name>])",
                ))
            }
            (None, None) => {
                return Err(CollectorError::config(
                    "set url (the stats page, e.g. \"http://127.0.0.1:8404/stats;csv\") \
                     or socket (the stats socket, e.g. \"/run/haproxy/admin.sock\")",
                ))
            }
        };
        // The regexes were compiled when the options were read.
        let filters = Filters {
            ignore_servers: config.ignore_servers,
            proxies: Filter::new(config.proxy_include, config.proxy_exclude),
            servers: Filter::new(config.server_include, config.server_exclude),
        };
        Ok(Haproxy {
            source,
            timeout,
            max_body_bytes,
            stats: StatsCsv::new(filters, config.rates),
            buf: Vec::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let origin;
        let text: Cow<'_, str> = match &self.source {
            Source::Http(http) => {
                http.fetch(&mut self.buf).await?;
                origin = http.display();
                String::from_utf8_lossy(&self.buf)
            }
            Source::Socket(socket) => {
                socket
                    .fetch(self.timeout, self.max_body_bytes, &mut self.buf)
                    .await?;
                origin = socket.display();
                let text = String::from_utf8_lossy(&self.buf);
                stats::check_starts_like_csv(&text, origin)?;
                // The socket ends every answer with an empty line; without
                // it the answer was cut short.
                if !text.ends_with("\n\n") {
                    return Err(CollectorError::parse(
                        origin,
                        "truncated: the answer does not end with the empty line HAProxy puts after every answer",
                    ));
                }
                text
            }
        };
        // The values are as of now, not as of when the run was scheduled.
        batch.stamp_now();
        self.stats.publish(&text, origin, batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
