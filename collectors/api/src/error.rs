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

    /// The option a configuration error is about, if it names one.
    pub fn invalid_option(&self) -> Option<&str> {
        match self {
            CollectorError::InvalidOption { option, .. } => Some(option),
            _ => None,
        }
    }

    /// A short, stable label for the kind of error, used in self-metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CollectorError::Io { .. } => "io",
            CollectorError::Parse { .. } => "parse",
            CollectorError::Config(_) | CollectorError::InvalidOption { .. } => "config",
            CollectorError::Limit(_) => "limit",
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
            CollectorError::InvalidOption { option, message } => {
                write!(f, "configuration: option `{option}`: {message}")
            }
            CollectorError::Limit(m) => write!(f, "{m}"),
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
}
