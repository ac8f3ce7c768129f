//! The error a collector returns from a failed run.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a collector run failed. The message always names where the bad input
/// came from (a file, a URL, a query) so an operator can act on the log line.
///
/// Each kind has a stable [`label`](CollectorError::label), under which the
/// agent counts failed runs in its self-metrics
/// (`carat.collector.<instance>.errors_by_kind.<label>`). A network source
/// (a server the collector talks to) has its own kinds, so that "the server
/// is down" ([`Connect`](CollectorError::Connect)), "the server hangs"
/// ([`Timeout`](CollectorError::Timeout)), "the server refused the request"
/// ([`Status`](CollectorError::Status)), "the certificate is not trusted"
/// ([`Tls`](CollectorError::Tls)) and "the server answered something odd"
/// ([`Parse`](CollectorError::Parse), with the target as its origin) are
/// told apart. The `target` of these is the address as an operator wrote
/// it, with any password replaced by `***`: a message never holds a secret.
/// The shared HTTP client (`carat_collector::http`, cargo feature `http`)
/// returns these kinds.
#[derive(Debug)]
#[non_exhaustive]
pub enum CollectorError {
    /// A file or device could not be read.
    Io {
        /// What was being read.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Input was read but is not what it should be.
    Parse {
        /// Where the input came from, e.g. `/proc/stat line 3`.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The collector's configuration cannot work (found when it is built).
    Config(String),
    /// One option of the collector's configuration cannot work (found when
    /// it is built). The agent reports it at that option's line of the
    /// configuration file; prefer it to [`CollectorError::Config`] whenever
    /// one option is at fault.
    InvalidOption {
        /// The option, as written in the configuration (`exclude_filters`);
        /// a dotted path into a list of tables is allowed (`groups.0.exe`).
        option: String,
        /// What is wrong with its value.
        message: String,
    },
    /// Input beyond one of carat's bounds: a file larger than a collector
    /// reads, a run adding more samples than its batch may hold.
    Limit(String),
    /// The collector cannot run on this host (a Linux-only source elsewhere).
    Unsupported(String),
    /// A network source could not be reached: connection refused, no route,
    /// a host name that does not resolve. Label `connect`.
    Connect {
        /// The server, as configured (a URL, `host:port`), password redacted.
        target: String,
        /// Why, from the operating system or the client library.
        message: String,
    },
    /// A network source did not give a complete answer in the time allowed.
    /// Label `timeout`.
    Timeout {
        /// The server, password redacted.
        target: String,
        /// What did not finish in time, and the time allowed.
        message: String,
    },
    /// The TLS handshake with a network source failed: a certificate that is
    /// not trusted or not for this host, no common protocol version, plain
    /// text where TLS was expected. Label `tls`.
    Tls {
        /// The server, password redacted.
        target: String,
        /// Why, from the TLS library.
        message: String,
    },
    /// A network source answered with an error: an HTTP status other than
    /// success, a database's error reply. Label `status`.
    Status {
        /// The server (the URL requested), password redacted.
        target: String,
        /// The status code, when the protocol has one (HTTP: 100 to 999).
        code: Option<u16>,
        /// The answer, with a hint when one helps (`HTTP 401 Unauthorized;
        /// check username and password`).
        message: String,
    },
    /// Any other failure, with its cause.
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Every [`CollectorError::label`], in a fixed order: the agent keeps one
/// counter per label.
pub const LABELS: [&str; 10] = [
    "io",
    "parse",
    "config",
    "limit",
    "unsupported",
    "connect",
    "timeout",
    "tls",
    "status",
    "other",
];

impl CollectorError {
    /// An I/O error while reading `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CollectorError::Io {
            path: path.into(),
            source,
        }
    }

    /// Bad input from `origin`.
    pub fn parse(origin: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Parse {
            origin: origin.into(),
            message: message.into(),
        }
    }

    /// A configuration that cannot work.
    pub fn config(message: impl Into<String>) -> Self {
        CollectorError::Config(message.into())
    }

    /// Option `option` has a value that cannot work:
    /// `CollectorError::option("exclude_filters", "\"(\" is not a regex: …")`.
    pub fn option(option: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::InvalidOption {
            option: option.into(),
            message: message.into(),
        }
    }

    /// A file (or answer) at `origin` is larger than `limit` bytes, the most
    /// that is read from it; nothing of it was used.
    pub fn too_large(origin: impl fmt::Display, limit: usize) -> Self {
        CollectorError::Limit(format!(
            "{origin} is larger than {}, the most read from one source; nothing of it was used",
            crate::input::show_bytes(limit)
        ))
    }

    /// `target` could not be reached (refused, unreachable, unknown host).
    /// Write the target without secrets: see [`CollectorError`].
    pub fn connect(target: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Connect {
            target: target.into(),
            message: message.into(),
        }
    }

    /// `target` did not answer in time: `message` says what was waited
    /// for and how long (`no complete answer within the timeout of 5 s`).
    pub fn timeout(target: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Timeout {
            target: target.into(),
            message: message.into(),
        }
    }

    /// The TLS handshake with `target` failed.
    pub fn tls(target: impl Into<String>, message: impl Into<String>) -> Self {
        CollectorError::Tls {
            target: target.into(),
            message: message.into(),
        }
    }

    /// `target` answered with an error: `code` is its status code, when the
    /// protocol has one; `message` the answer as shown to the operator.
    pub fn status(
        target: impl Into<String>,
        code: Option<u16>,
        message: impl Into<String>,
    ) -> Self {
        CollectorError::Status {
            target: target.into(),
            code,
            message: message.into(),
        }
    }

    /// The option a configuration error is about, if it names one.
    pub fn invalid_option(&self) -> Option<&str> {
        match self {
            CollectorError::InvalidOption { option, .. } => Some(option),
            _ => None,
        }
    }

    /// A short, stable label for the kind of error, used in self-metrics:
    /// one of [`LABELS`].
    ///
    /// | label | kind |
    /// |---|---|
    /// | `io` | a file or device could not be read; the connection to a server failed after it was made (reset, closed before the answer was complete) |
    /// | `parse` | the input, or a server's answer, is not what it should be |
    /// | `config` | the options cannot work |
    /// | `limit` | the input is beyond one of carat's bounds |
    /// | `unsupported` | the collector cannot run on this host |
    /// | `connect` | a server could not be reached |
    /// | `timeout` | a server did not answer in time |
    /// | `tls` | the TLS handshake with a server failed |
    /// | `status` | a server answered with an error status |
    /// | `other` | anything else |
    pub fn label(&self) -> &'static str {
        match self {
            CollectorError::Io { .. } => "io",
            CollectorError::Parse { .. } => "parse",
            CollectorError::Config(_) | CollectorError::InvalidOption { .. } => "config",
            CollectorError::Limit(_) => "limit",
            CollectorError::Unsupported(_) => "unsupported",
            CollectorError::Connect { .. } => "connect",
            CollectorError::Timeout { .. } => "timeout",
            CollectorError::Tls { .. } => "tls",
            CollectorError::Status { .. } => "status",
            CollectorError::Other(_) => "other",
        }
    }

    /// The position of [`label`](CollectorError::label) in [`LABELS`].
    pub fn label_index(&self) -> usize {
        let label = self.label();
        LABELS
            .iter()
            .position(|l| *l == label)
            .unwrap_or(LABELS.len() - 1)
    }
}

impl fmt::Display for CollectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectorError::Io { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
            CollectorError::Parse { origin, message } => write!(f, "{origin}: {message}"),
            CollectorError::Config(m) => write!(f, "configuration: {m}"),
            CollectorError::InvalidOption { option, message } => {
                write!(f, "configuration: option `{option}`: {message}")
            }
            CollectorError::Limit(m) => write!(f, "{m}"),
            CollectorError::Unsupported(m) => write!(f, "unsupported here: {m}"),
            CollectorError::Connect { target, message } => {
                write!(f, "{target}: cannot connect: {message}")
            }
            CollectorError::Timeout { target, message } => {
                write!(f, "{target}: timed out: {message}")
            }
            CollectorError::Tls { target, message } => {
                write!(f, "{target}: TLS handshake failed: {message}")
            }
            CollectorError::Status {
                target, message, ..
            } => write!(f, "{target}: {message}"),
            CollectorError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CollectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CollectorError::Io { source, .. } => Some(source),
            CollectorError::Other(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_error_names_the_option() {
        let e = CollectorError::option("exclude_filters", "\"(\" is not a regex");
        assert_eq!(e.label(), "config");
        assert_eq!(e.invalid_option(), Some("exclude_filters"));
        assert_eq!(
            e.to_string(),
            "configuration: option `exclude_filters`: \"(\" is not a regex"
        );
        assert_eq!(CollectorError::config("x").invalid_option(), None);
    }

    #[test]
    fn a_limit_error_names_the_source_and_the_limit() {
        let e = CollectorError::too_large("/proc/diskstats", 16 << 20);
        assert_eq!(e.label(), "limit");
        assert_eq!(
            e.to_string(),
            "/proc/diskstats is larger than 16 MiB, the most read from one source; nothing of it was used"
        );
    }

    #[test]
    fn network_errors_name_the_target_and_their_kind() {
        let target = "http://127.0.0.1:8404/stats;csv";
        let cases = [
            (
                CollectorError::connect(target, "Connection refused (os error 111)"),
                "connect",
                "http://127.0.0.1:8404/stats;csv: cannot connect: Connection refused (os error 111)",
            ),
            (
                CollectorError::timeout(target, "no complete answer within the timeout of 5 s"),
                "timeout",
                "http://127.0.0.1:8404/stats;csv: timed out: no complete answer within the timeout of 5 s",
            ),
            (
                CollectorError::tls(target, "invalid peer certificate: UnknownIssuer"),
                "tls",
                "http://127.0.0.1:8404/stats;csv: TLS handshake failed: invalid peer certificate: UnknownIssuer",
            ),
            (
                CollectorError::status(target, Some(503), "HTTP 503 Service Unavailable"),
                "status",
                "http://127.0.0.1:8404/stats;csv: HTTP 503 Service Unavailable",
            ),
            (
                CollectorError::parse(target, "the answer is not HTTP"),
                "parse",
                "http://127.0.0.1:8404/stats;csv: the answer is not HTTP",
            ),
        ];
        for (e, label, text) in cases {
            assert_eq!(e.label(), label);
            assert_eq!(LABELS[e.label_index()], label);
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn every_label_is_listed_once() {
        let all = [
            CollectorError::io("/x", io::Error::other("x")),
            CollectorError::parse("x", "x"),
            CollectorError::config("x"),
            CollectorError::Limit("x".into()),
            CollectorError::Unsupported("x".into()),
            CollectorError::connect("x", "x"),
            CollectorError::timeout("x", "x"),
            CollectorError::tls("x", "x"),
            CollectorError::status("x", None, "x"),
            CollectorError::Other("x".into()),
        ];
        let labels: Vec<&str> = all.iter().map(CollectorError::label).collect();
        assert_eq!(labels, LABELS);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.label_index(), i);
        }
    }
}
