//! The error a collector returns from a failed run.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a collector run failed. The message always names where the bad input
/// came from (a file, a URL, a query) so an operator can act on the log line.
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
    /// The collector cannot run on this host (a Linux-only source elsewhere).
    Unsupported(String),
    /// Any other failure, with its cause.
    Other(Box<dyn std::error::Error + Send + Sync>),
}

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

    /// A short, stable label for the kind of error, used in self-metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CollectorError::Io { .. } => "io",
            CollectorError::Parse { .. } => "parse",
            CollectorError::Config(_) => "config",
            CollectorError::Unsupported(_) => "unsupported",
            CollectorError::Other(_) => "other",
        }
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
            CollectorError::Unsupported(m) => write!(f, "unsupported here: {m}"),
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
