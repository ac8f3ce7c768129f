//! The `example` collector: the pool status of a PHP-FPM server, read as
//! JSON over HTTP(S) and published as gauges and counters.
//!
//! This crate is the template for a new collector: copy it, rename it, and
//! change what belongs to PHP-FPM (the default URL and its check in
//! [`Collector::new`], [`FIELDS`], [`publish`], the README and the sample
//! configuration). `docs/writing-a-collector.md` walks through it. The
//! comments say *why* each step is done the way it is, so that a copy keeps
//! what matters.
//!
//! PHP-FPM answers the status of one pool at its `pm.status_path`, through
//! the web server that passes FastCGI requests to it, and as JSON when the
//! query holds `json` (`/status?json`):
//!
//! ```text
//! {"pool":"www","process manager":"dynamic","start time":1795918443,"start since":10,
//!  "accepted conn":13,"listen queue":0,"max listen queue":4,"listen queue len":4096,
//!  "idle processes":2,"active processes":1,"total processes":3,
//!  "max active processes":3,"max children reached":1,"slow requests":6}
//! ```
//!
//! Each number of [`FIELDS`] is published under its name sanitised
//! (`accepted conn` → `accepted_conn`), as a gauge or as a counter (which
//! the agent turns into a rate per second). The README of this crate lists
//! the options and every name with its unit.
#![warn(missing_docs)]

/// The commented sample configuration of this crate
/// ([`carat_collector::sample`]): `carat sample-config` shows it in builds
/// with this collector, and the agent's tests check that it shows every
/// option with its default and that it loads once uncommented.
pub const SAMPLE: &str = include_str!("../sample.toml");

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use carat_collector::http::{check_tls_ca_file, parse_json, parse_url, HttpClient, Url};
use carat_collector::input::excerpt;
use carat_collector::options::{self, SecondsRange};
use carat_collector::redact::redact_url;
use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Options of the `example` collector.
///
/// The HTTP options are named as those of every collector that reads a
/// server over HTTP (`url`, `username`, `password`, `request_timeout`,
/// `verify_tls`, `tls_ca_file`, `max_body_bytes`): the shared client's
/// messages name them, and operators find the same words everywhere.
// `deny_unknown_fields`: a mistyped key is an error naming it, at its line
// of the configuration, instead of an option silently left at its default.
// `default`: every option has a default (below), so `[collector.example]`
// alone is a working configuration. No `#[serde(flatten)]`: the agent reads
// the option names from this derive (`Collector::options`).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExampleConfig {
    /// The status page: `http://` or `https://`, with `json` in its query.
    pub url: String,
    /// User for the page's basic authentication.
    pub username: Option<String>,
    /// Its password: write `"${VARIABLE}"` to keep it out of the file.
    pub password: Option<String>,
    /// Time allowed for the whole request, from connecting to the last byte
    /// of the answer: seconds, or a string with units (`"500ms"`).
    // Read with the toolkit's duration parser, so `5`, `0.5` and `"2s"`
    // mean here what they mean everywhere else.
    #[serde(deserialize_with = "options::duration::deserialize")]
    pub request_timeout: Duration,
    /// Verify an `https://` page's certificate.
    pub verify_tls: bool,
    /// Verify it against the CA certificates of this PEM file instead of
    /// the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// The largest answer accepted, in bytes.
    pub max_body_bytes: u64,
}

/// The `request_timeout` accepted: more than 0, at most 10 minutes. A
/// status page answers in milliseconds; the bound only catches a unit
/// mistake (`request_timeout = 5000`, meant as milliseconds).
pub const REQUEST_TIMEOUT_RANGE: SecondsRange = SecondsRange::above(0.0, 600.0);

impl Default for ExampleConfig {
    fn default() -> Self {
        ExampleConfig {
            // A pool's status through the web server on this host: the usual
            // set-up, and nothing to write for it.
            url: "http://127.0.0.1/status?json".into(),
            username: None,
            password: None,
            request_timeout: Duration::from_secs(5),
            verify_tls: true,
            tls_ca_file: None,
            // The document is about 300 bytes; with `full` in the query it
            // grows by about 400 bytes a process. 1 MiB is room for some
            // 2,500 processes, and a bound on what a wrong URL can make the
            // agent hold.
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl fmt::Debug for ExampleConfig {
    /// Like a derived `Debug`, with the password hidden: options end up in
    /// logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExampleConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("request_timeout", &self.request_timeout)
            .field("verify_tls", &self.verify_tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// How a number of the document is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value as of now (processes, queue length), published as it is.
    Gauge,
    /// A count since the pool started: the agent publishes its rate per
    /// second, and nothing for the first reading.
    Counter,
}

/// The members of the status document that are published, in the
/// document's order, and how.
///
/// The name published is the member's, sanitised by the toolkit as one
/// path component (`accepted conn` → `accepted_conn`): predictable from
/// PHP-FPM's documentation, and a member name with a dot or a space can
/// never add a level to the path. `pool`, `process manager` (text) and
/// `start time` (a date; `start since` says the same as a number) are not
/// published, nor `processes` (the list `full` adds).
pub const FIELDS: [(&str, Kind); 11] = [
    ("start since", Kind::Gauge),
    ("accepted conn", Kind::Counter),
    ("listen queue", Kind::Gauge),
    ("max listen queue", Kind::Gauge),
    ("listen queue len", Kind::Gauge),
    ("idle processes", Kind::Gauge),
    ("active processes", Kind::Gauge),
    ("total processes", Kind::Gauge),
    ("max active processes", Kind::Gauge),
    ("max children reached", Kind::Counter),
    ("slow requests", Kind::Counter),
];

/// What the answer should be, for the messages of answers that are not.
const EXPECTED: &str = "PHP-FPM's pool status as JSON (is the url PHP-FPM's pm.status_path?)";

/// The `example` collector. See the [crate documentation](crate).
pub struct Example {
    url: Url,
    /// The URL for messages (`url` holds no credentials, but its query
    /// might hold a token).
    shown: String,
    client: HttpClient,
    /// The answer, kept between runs so its allocation is reused.
    body: Vec<u8>,
}

impl Collector for Example {
    type Config = ExampleConfig;
    const KIND: &'static str = "example";
    const DESCRIPTION: &'static str =
        "PHP-FPM pool status from its JSON status page (the template for new collectors)";
    // The path below the host name when an instance sets none.
    const DEFAULT_PATH: &'static str = "example";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: ExampleConfig, _env: &Environment) -> Result<Self, CollectorError> {
        // Everything is checked here, when the configuration is loaded: an
        // option that cannot work is refused at its line by `carat
        // check-config` and by `run` at start-up, instead of failing every
        // run. `CollectorError::option` names the option. Nothing is read
        // or connected here (the agent builds every instance at load,
        // disabled ones too): a server that is down is a `collect` error.
        let timeout =
            REQUEST_TIMEOUT_RANGE.check_option("request_timeout", config.request_timeout)?;
        // http(s), a host, no `user:pass@` (the password would end up in
        // every message that shows the URL).
        let url = parse_url("url", &config.url)?;
        // Without `json` PHP-FPM answers plain text: refuse the URL now,
        // with the fix, rather than fail every run with a parse error.
        if !url.query_pairs().any(|(key, _)| key == "json") {
            let mut fixed = url.clone();
            let query = match url.query() {
                Some(query) if !query.is_empty() => format!("{query}&json"),
                _ => "json".to_owned(),
            };
            fixed.set_query(Some(&query));
            return Err(CollectorError::option(
                "url",
                format!(
                    "{:?}: PHP-FPM answers JSON only with `json` in the query: write {:?}",
                    redact_url(url.as_str()),
                    redact_url(fixed.as_str())
                ),
            ));
        }
        check_tls_ca_file(&url, config.tls_ca_file.as_deref())?;
        // The project's one HTTP client: the timeout covers the whole
        // request, the body is bounded as it streams in, TLS is rustls,
        // and every failure is an error of the kind the agent counts
        // (connect, timeout, tls, status, parse, io, limit) naming the URL.
        let client = HttpClient::builder()
            .basic_auth(config.username.as_deref(), config.password.as_deref())
            .verify_tls(config.verify_tls)
            .tls_ca_file(config.tls_ca_file.as_deref())
            .timeout(timeout)
            .max_body_bytes(usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX))
            // The server's log says who asked.
            .user_agent(concat!("carat-example/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .hint(
                404,
                "check the url: its path must be PHP-FPM's pm.status_path, passed to PHP-FPM by the web server",
            )
            .build()?;
        Ok(Example {
            shown: redact_url(url.as_str()).into_owned(),
            url,
            client,
            body: Vec::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        // No retry and no sleep here: a failed run returns its error, and
        // the agent logs it once, counts it by kind, and backs off. The
        // agent also abandons a run that takes longer than the instance's
        // `timeout`; `request_timeout` (below it) gives the clearer error.
        self.client.get_into(&self.url, &mut self.body).await?;
        // The values are as of the answer, not as of when the run was
        // scheduled: rates divide by the time between two answers.
        batch.stamp_now();
        publish(&self.body, &self.shown, batch)
    }
}

/// A number of the document, read and checked.
#[derive(Clone, Copy)]
enum Reading {
    Gauge(f64),
    Counter(u64),
}

/// Publishes the status document `body`, the answer of `origin`, into
/// `batch`: each member of [`FIELDS`] that the document has. A document
/// that is not PHP-FPM's status, or a member that is not a number of its
/// kind, is a parse error naming `origin`, and nothing of it is published.
pub fn publish(body: &[u8], origin: &str, batch: &mut Batch) -> Result<(), CollectorError> {
    // Read as a map, not as a struct of the fields: a member PHP-FPM adds
    // in a later version is left alone, and one an older version lacks is
    // not published (rather than failing the whole document).
    let doc: Map<String, Value> = parse_json(body, origin, EXPECTED)?;
    // JSON from another server (a URL pointing elsewhere) is not a status
    // with nothing to publish: say so.
    if !doc.contains_key("accepted conn") {
        return Err(CollectorError::parse(
            origin,
            format!("no \"accepted conn\" in the answer: not {EXPECTED}"),
        ));
    }
    // Check every member first, then add them: the agent publishes what a
    // failed run added, and half a document would be misleading.
    let mut readings = [None; FIELDS.len()];
    for (reading, (field, kind)) in readings.iter_mut().zip(FIELDS) {
        let Some(value) = doc.get(field) else {
            continue;
        };
        *reading = Some(match kind {
            Kind::Gauge => Reading::Gauge(
                value
                    .as_f64()
                    .ok_or_else(|| not_a(origin, field, value, "a number"))?,
            ),
            // A counter is a whole number: `as_u64` refuses -1 and 1.5.
            Kind::Counter => Reading::Counter(
                value
                    .as_u64()
                    .ok_or_else(|| not_a(origin, field, value, "a whole number of at least 0"))?,
            ),
        });
    }
    for ((field, _), reading) in FIELDS.iter().zip(readings) {
        // `*_parts`: the toolkit sanitises the member's name as one path
        // component. A counter is added raw: the agent divides by the time
        // measured between two readings, publishes nothing for the first,
        // and skips a reading that went down (PHP-FPM restarted).
        match reading {
            Some(Reading::Gauge(value)) => batch.gauge_parts(&[field], value),
            Some(Reading::Counter(value)) => batch.counter_parts(&[field], value, None),
            None => {}
        }
    }
    Ok(())
}

/// The error for member `field` whose value is not `what`, quoting the
/// value (bounded and escaped: it came from outside).
fn not_a(origin: &str, field: &str, value: &Value, what: &str) -> CollectorError {
    let shown = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => excerpt(text, 40),
        other => excerpt(&other.to_string(), 40),
    };
    CollectorError::parse(origin, format!("\"{field}\" is {shown}, not {what}"))
}
