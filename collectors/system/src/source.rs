//! Where a collector's readings come from: the kernel's `/proc` files on
//! Linux, the `sysinfo` crate elsewhere.
//!
//! The `cpu`, `memory`, `loadavg`, `diskspace` and `network` collectors take
//! a `source` option ([`Source`]). The `/proc` readers are carat's own and
//! publish everything; the `sysinfo` readers publish the same metric names,
//! in the same units, for what `sysinfo` can tell (each collector's module
//! documentation and the README list what it cannot). The `sysinfo` readers
//! are compiled on every target, Linux included, so that they are
//! type-checked and tested here; only the choice `auto` makes depends on
//! the target.
//!
//! The collectors that only `/proc` can serve (`uptime`, `diskusage`,
//! `vmstat`, `sockets`, `tcp`) refuse to be built elsewhere, with
//! [`CollectorError::Unsupported`].

use carat_collector::CollectorError;
use serde::Deserialize;

/// Where a collector reads from: the `source` option.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `proc` on Linux, `sysinfo` elsewhere.
    #[default]
    Auto,
    /// Read the kernel's files under the proc root (Linux only).
    Proc,
    /// Ask the `sysinfo` crate. Ignores the proc root: it reads the system
    /// the agent runs on (on Linux, the agent's own `/proc` and `/sys`).
    Sysinfo,
}

/// The reader a [`Source`] comes down to on one system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reader {
    Proc,
    Sysinfo,
}

/// True when this build runs on Linux, where `/proc` is the kernel's.
pub(crate) const ON_LINUX: bool = cfg!(target_os = "linux");

impl Source {
    /// The reader to use for collector `kind` on this system: `auto` is
    /// `/proc` on Linux and `sysinfo` elsewhere; `proc` off Linux is a
    /// configuration error.
    pub(crate) fn reader(self, kind: &str) -> Result<Reader, CollectorError> {
        self.reader_on(kind, ON_LINUX)
    }

    /// [`Source::reader`] on Linux (`linux`) or elsewhere, for tests.
    pub(crate) fn reader_on(self, kind: &str, linux: bool) -> Result<Reader, CollectorError> {
        match self {
            Source::Auto if linux => Ok(Reader::Proc),
            Source::Auto => Ok(Reader::Sysinfo),
            Source::Proc if linux => Ok(Reader::Proc),
            Source::Proc => Err(CollectorError::option(
                "source",
                format!(
                    "{kind}: \"proc\" reads Linux's /proc and is only available on Linux; \
                     use \"auto\" or \"sysinfo\""
                ),
            )),
            Source::Sysinfo => Ok(Reader::Sysinfo),
        }
    }
}

/// Fails, on any system but Linux, to build collector `kind`, which reads
/// `/proc` and has no other source. Called first thing in `new()`.
pub(crate) fn linux_only(kind: &str) -> Result<(), CollectorError> {
    linux_only_on(kind, ON_LINUX)
}

/// [`linux_only`] on Linux (`linux`) or elsewhere, for tests.
pub(crate) fn linux_only_on(kind: &str, linux: bool) -> Result<(), CollectorError> {
    if linux {
        Ok(())
    } else {
        Err(CollectorError::Unsupported(format!(
            "{kind} reads /proc and runs on Linux only"
        )))
    }
}

/// A `sysinfo` error as a collector error: `Unsupported` stays unsupported
/// (the agent reports it as such), `what` says what was being read.
pub(crate) fn sysinfo_error(what: &str, e: sysinfo::Error) -> CollectorError {
    match e {
        sysinfo::Error::Unsupported => {
            CollectorError::Unsupported(format!("sysinfo cannot read {what} on this system"))
        }
        other => CollectorError::Other(format!("sysinfo, reading {what}: {other}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_proc_on_linux_and_sysinfo_elsewhere() {
        assert_eq!(Source::Auto.reader_on("cpu", true).unwrap(), Reader::Proc);
        assert_eq!(
            Source::Auto.reader_on("cpu", false).unwrap(),
            Reader::Sysinfo
        );
        assert_eq!(Source::Proc.reader_on("cpu", true).unwrap(), Reader::Proc);
        for linux in [true, false] {
            assert_eq!(
                Source::Sysinfo.reader_on("cpu", linux).unwrap(),
                Reader::Sysinfo
            );
        }
        let err = Source::Proc.reader_on("memory", false).unwrap_err();
        assert_eq!(err.label(), "config");
        let msg = err.to_string();
        assert!(
            msg.contains("memory") && msg.contains("\"sysinfo\""),
            "{msg}"
        );
        #[cfg(target_os = "linux")]
        assert_eq!(Source::Auto.reader("cpu").unwrap(), Reader::Proc);
    }

    #[test]
    fn linux_only_collectors_say_so_elsewhere() {
        assert!(linux_only_on("vmstat", true).is_ok());
        let err = linux_only_on("vmstat", false).unwrap_err();
        assert_eq!(err.label(), "unsupported");
        assert_eq!(
            err.to_string(),
            "unsupported here: vmstat reads /proc and runs on Linux only"
        );
        assert_eq!(linux_only("vmstat").is_ok(), ON_LINUX);
    }

    #[test]
    fn source_option_values() {
        use serde::de::value::{Error, StrDeserializer};
        use serde::de::IntoDeserializer;
        for (text, expected) in [
            ("auto", Source::Auto),
            ("proc", Source::Proc),
            ("sysinfo", Source::Sysinfo),
        ] {
            let d: StrDeserializer<'_, Error> = text.into_deserializer();
            assert_eq!(Source::deserialize(d).unwrap(), expected);
        }
        for bad in ["", "Proc", "psutil", "procfs"] {
            let d: StrDeserializer<'_, Error> = bad.into_deserializer();
            assert!(Source::deserialize(d).is_err(), "{bad:?} accepted");
        }
    }
}
