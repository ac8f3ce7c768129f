//! The `sockets` collector: how many sockets are in use, from
//! `/proc/net/sockstat` and `/proc/net/sockstat6` (Diamond's `sockstat`
//! collector, published under `sockets`).
//!
//! ```text
//! sockets: used 22
//! TCP: inuse 5 orphan 0 tw 206 alloc 5 mem 0
//! UDP: inuse 0 mem 0
//! UDPLITE: inuse 0
//! RAW: inuse 0
//! FRAG: inuse 0 memory 0
//! ```
//!
//! and, when IPv6 is enabled, `sockstat6`:
//!
//! ```text
//! TCP6: inuse 0
//! UDP6: inuse 0
//! …
//! ```
//!
//! All values are gauges, published under Diamond's names ([`METRICS`]).
//! As Diamond does, `tcp_inuse` and `udp_inuse` are the sums of the IPv4
//! (`TCP:`, `UDP:`) and IPv6 (`TCP6:`, `UDP6:`) lines; the other TCP values
//! (`orphan`, `tw`, `alloc`, `mem`) are already counted over both families
//! by the kernel and appear on the `TCP:` line only. `UDPLITE`, `RAW` and
//! `FRAG` are not published (Diamond does not either).
//!
//! A missing `sockstat6` (a kernel without IPv6, or IPv6 disabled at boot)
//! is not an error: the IPv4 values are published. A missing `sockstat` is
//! an I/O error. A value the kernel does not print is not published.
//!
//! Every line must be `<LABEL>: <key> <value> …`; on the lines that are
//! published (`sockets:`, `TCP:`, `UDP:`, `TCP6:`, `UDP6:`) the keys and
//! values must pair up and the values be counts, and `sockstat` must have
//! its `sockets: used` line. Anything else, or a file that is empty or cut
//! short, is a [`CollectorError::Parse`] naming the file and line, and
//! nothing is published for that run.

use std::path::{Path, PathBuf};

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

use crate::procfile::{
    cut_short, file_error, parse_error, read_complete, unterminated_last_line, whole_fields,
};

/// The metrics, in the order they are published.
pub const METRICS: [&str; 8] = [
    "used",
    "tcp_inuse",
    "tcp_orphan",
    "tcp_tw",
    "tcp_alloc",
    "tcp_mem",
    "udp_inuse",
    "udp_mem",
];

/// `(line label, key)` → index in [`METRICS`]. The IPv6 lines add to the
/// same metrics as the IPv4 ones.
const SOURCES: [(&str, &str, usize); 12] = [
    ("sockets", "used", 0),
    ("TCP", "inuse", 1),
    ("TCP", "orphan", 2),
    ("TCP", "tw", 3),
    ("TCP", "alloc", 4),
    ("TCP", "mem", 5),
    ("UDP", "inuse", 6),
    ("UDP", "mem", 7),
    ("TCP6", "inuse", 1),
    ("TCP6", "orphan", 2),
    ("UDP6", "inuse", 6),
    ("UDP6", "mem", 7),
];

/// Options of the `sockets` collector: it has none of its own.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SocketsConfig {}

/// The `sockets` collector. See the [module documentation](self).
pub struct Sockets {
    path: PathBuf,
    path6: PathBuf,
    buf: Vec<u8>,
}

impl Collector for Sockets {
    type Config = SocketsConfig;
    const KIND: &'static str = "sockets";
    const DESCRIPTION: &'static str =
        "Socket counts per protocol from /proc/net/sockstat and sockstat6";
    const DEFAULT_PATH: &'static str = "sockets";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(_config: SocketsConfig, env: &Environment) -> Result<Self, CollectorError> {
        // Only /proc has these numbers: elsewhere, say so when built.
        crate::source::linux_only(Self::KIND)?;
        Ok(Sockets {
            path: env.proc_path("net/sockstat"),
            path6: env.proc_path("net/sockstat6"),
            buf: Vec::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let mut values = [None; METRICS.len()];
        let text = read_complete(&self.path, &mut self.buf)?;
        parse_sockstat(&self.path, text, &mut values)?;
        if values[0].is_none() {
            return Err(file_error(&self.path, "no `sockets: used` line"));
        }
        match read_complete(&self.path6, &mut self.buf) {
            Ok(text) => parse_sockstat(&self.path6, text, &mut values)?,
            Err(CollectorError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for (name, value) in METRICS.iter().zip(values) {
            if let Some(value) = value {
                batch.gauge(name, value as f64);
            }
        }
        Ok(())
    }
}

/// Adds the values of one sockstat file (`text`, read from `path`) to
/// `values`, indexed like [`METRICS`].
fn parse_sockstat(
    path: &Path,
    text: &str,
    values: &mut [Option<u64>; METRICS.len()],
) -> Result<(), CollectorError> {
    let unterminated = unterminated_last_line(text);
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        // The last line without its newline: its fields are whole but for
        // the last one, unless whitespace ends it.
        let whole = if unterminated == Some(lineno) {
            whole_fields(line.split_once(':').map_or(line, |(_, r)| r))
        } else {
            usize::MAX
        };
        let Some((label, rest)) = line.split_once(':') else {
            if whole != usize::MAX {
                return Err(cut_short(
                    path,
                    lineno,
                    "it is not a whole `<LABEL>: …` line",
                ));
            }
            return Err(parse_error(
                path,
                lineno,
                format!("expected `<LABEL>: <key> <value> …`, found {line:?}"),
            ));
        };
        let label = label.trim();
        if label.is_empty() || label.contains(char::is_whitespace) {
            return Err(parse_error(
                path,
                lineno,
                format!("{label:?} is not a protocol label"),
            ));
        }
        if !SOURCES.iter().any(|(l, _, _)| *l == label) {
            continue; // UDPLITE, RAW, FRAG, …: not published
        }
        let mut fields = rest.split_ascii_whitespace();
        let mut value_index = 1;
        while let Some(key) = fields.next() {
            let Some(field) = fields.next() else {
                if whole != usize::MAX {
                    let why = format!("{label} {key}, which ends it, has no value");
                    return Err(cut_short(path, lineno, &why));
                }
                return Err(parse_error(
                    path,
                    lineno,
                    format!("{label} {key} has no value: truncated or corrupt"),
                ));
            };
            let published = SOURCES.iter().any(|(l, k, _)| *l == label && *k == key);
            if published && value_index >= whole {
                let why = format!("the value of {label} {key}, which ends it, may be cut short");
                return Err(cut_short(path, lineno, &why));
            }
            value_index += 2;
            let value = field.parse::<u64>().map_err(|e| {
                parse_error(
                    path,
                    lineno,
                    format!("{label} {key}: {field:?} is not a count: {e}"),
                )
            })?;
            if let Some(&(_, _, at)) = SOURCES.iter().find(|(l, k, _)| *l == label && *k == key) {
                let slot = &mut values[at];
                *slot = Some(slot.unwrap_or(0).saturating_add(value));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_metric, ProcDir};
    use carat_collector::testing::{Harness, Published};

    fn proc_dir(tag: &str, sockstat: Option<&str>, sockstat6: Option<&str>) -> ProcDir {
        let dir = ProcDir::new(tag);
        std::fs::create_dir_all(dir.path.join("net")).unwrap();
        if let Some(text) = sockstat {
            dir.write("net/sockstat", text);
        }
        if let Some(text) = sockstat6 {
            dir.write("net/sockstat6", text);
        }
        dir
    }

    async fn collect(dir: &ProcDir) -> Result<Published, CollectorError> {
        let mut h = Harness::<Sockets>::new(SocketsConfig::default(), dir.env()).unwrap();
        h.collect().await
    }

    fn names(p: &Published) -> Vec<&str> {
        p.names().collect()
    }

    #[tokio::test]
    async fn recorded_fixtures() {
        // Recorded on a 2-CPU VM, Linux 6.18:
        //   sockets: used 22
        //   TCP: inuse 5 orphan 0 tw 206 alloc 5 mem 0
        //   UDP: inuse 0 mem 0
        //   TCP6: inuse 0
        //   UDP6: inuse 0
        let dir = ProcDir::new("sockets-recorded");
        std::fs::create_dir_all(dir.path.join("net")).unwrap();
        dir.copy_fixture("sockets/sockstat", "net/sockstat");
        dir.copy_fixture("sockets/sockstat6", "net/sockstat6");
        let p = collect(&dir).await.unwrap();
        assert_metric(&p, "used", 22.0);
        assert_metric(&p, "tcp_inuse", 5.0);
        assert_metric(&p, "tcp_orphan", 0.0);
        assert_metric(&p, "tcp_tw", 206.0);
        assert_metric(&p, "tcp_alloc", 5.0);
        assert_metric(&p, "tcp_mem", 0.0);
        assert_metric(&p, "udp_inuse", 0.0);
        assert_metric(&p, "udp_mem", 0.0);
        assert_eq!(p.metrics.len(), 8, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn ipv6_lines_add_to_the_ipv4_ones() {
        let dir = proc_dir(
            "sockets-v6",
            Some(concat!(
                "sockets: used 1234\n",
                "TCP: inuse 40 orphan 3 tw 17 alloc 52 mem 9\n",
                "UDP: inuse 6 mem 2\n",
                "UDPLITE: inuse 1\n",
                "RAW: inuse 1\n",
                "FRAG: inuse 0 memory 0\n",
            )),
            Some(concat!(
                "TCP6: inuse 11\n",
                "UDP6: inuse 4\n",
                "UDPLITE6: inuse 0\n",
                "RAW6: inuse 2\n",
                "FRAG6: inuse 0 memory 0\n",
            )),
        );
        let p = collect(&dir).await.unwrap();
        assert_metric(&p, "used", 1234.0);
        assert_metric(&p, "tcp_inuse", 51.0); // 40 + 11
        assert_metric(&p, "udp_inuse", 10.0); // 6 + 4
        assert_metric(&p, "tcp_orphan", 3.0);
        assert_metric(&p, "tcp_tw", 17.0);
        assert_metric(&p, "tcp_alloc", 52.0);
        assert_metric(&p, "tcp_mem", 9.0);
        assert_metric(&p, "udp_mem", 2.0);
        assert_eq!(p.metrics.len(), 8, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn no_sockstat6_is_not_an_error() {
        let dir = proc_dir(
            "sockets-no-v6",
            Some("sockets: used 7\nTCP: inuse 2 orphan 0 tw 1 alloc 3 mem 1\nUDP: inuse 1 mem 1\n"),
            None,
        );
        let p = collect(&dir).await.unwrap();
        assert_metric(&p, "used", 7.0);
        assert_metric(&p, "tcp_inuse", 2.0);
        assert_metric(&p, "udp_inuse", 1.0);
        assert_eq!(p.metrics.len(), 8, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn old_kernel_lines_publish_what_they_have() {
        // Linux 2.4 printed no `UDP: mem` and older ones no `alloc`/`mem`.
        let dir = proc_dir(
            "sockets-old",
            Some("sockets: used 50\nTCP: inuse 4 orphan 0 tw 2\nUDP: inuse 3\nRAW: inuse 0\n"),
            None,
        );
        let p = collect(&dir).await.unwrap();
        assert_eq!(
            names(&p),
            ["tcp_inuse", "tcp_orphan", "tcp_tw", "udp_inuse", "used"]
        );
        assert_metric(&p, "tcp_tw", 2.0);
        assert_metric(&p, "udp_inuse", 3.0);
    }

    #[tokio::test]
    async fn missing_sockstat_is_an_io_error() {
        let dir = proc_dir("sockets-missing", None, Some("TCP6: inuse 1\n"));
        assert_eq!(collect(&dir).await.unwrap_err().label(), "io");
    }

    #[tokio::test]
    async fn an_unreadable_sockstat6_is_an_error() {
        // A directory where the file should be: not "IPv6 disabled".
        let dir = proc_dir("sockets-v6-dir", Some("sockets: used 1\n"), None);
        std::fs::create_dir_all(dir.path.join("net/sockstat6")).unwrap();
        let err = collect(&dir).await.unwrap_err();
        assert_eq!(err.label(), "io", "{err}");
        assert!(err.to_string().contains("sockstat6"), "{err}");
    }

    #[tokio::test]
    async fn recorded_files_without_their_final_newline_are_read_whole() {
        // Their last lines (FRAG, FRAG6) are not published.
        crate::test_support::same_without_final_newline::<Sockets>(
            SocketsConfig::default(),
            &[&[
                ("sockets/sockstat", "net/sockstat"),
                ("sockets/sockstat6", "net/sockstat6"),
            ]],
        )
        .await;
        // A published value followed by a space is whole.
        let dir = proc_dir("sockets-unterminated", Some("sockets: used 7 "), None);
        assert_metric(&collect(&dir).await.unwrap(), "used", 7.0);
        let dir = proc_dir("sockets-unterminated", Some("sockets: used 7"), None);
        let msg = collect(&dir).await.unwrap_err().to_string();
        assert!(
            msg.contains("line 1: truncated") && msg.contains("sockets used"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn garbage_and_truncated_files_are_parse_errors() {
        let good = "sockets: used 1\nTCP: inuse 2 orphan 0 tw 1 alloc 3 mem 1\n";
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("", None, "sockstat line 1: empty file"),
            (
                "sockets: used 1\nTCP: inuse 2 orph",
                None,
                "sockstat line 2: truncated",
            ),
            (
                "sockets: used 1\nTCP: inuse 2 orphan\n",
                None,
                "sockstat line 2: TCP orphan has no value",
            ),
            (
                "sockets: used x\n",
                None,
                "sockstat line 1: sockets used: \"x\" is not a count",
            ),
            (
                "sockets: used 1\nUDP: inuse -1 mem 0\n",
                None,
                "sockstat line 2: UDP inuse: \"-1\"",
            ),
            (
                "sockets: used 1\nthis is not sockstat\n",
                None,
                "sockstat line 2: expected `<LABEL>: <key> <value> …`",
            ),
            (
                "sockets: used 1\nT C P: inuse 1\n",
                None,
                "sockstat line 2: \"T C P\" is not a protocol label",
            ),
            (
                "TCP: inuse 2 orphan 0 tw 1 alloc 3 mem 1\n",
                None,
                "sockstat: no `sockets: used` line",
            ),
            (good, Some(""), "sockstat6 line 1: empty file"),
            (
                good,
                Some("TCP6: inuse 1\nUDP6: inuse"),
                "sockstat6 line 2: truncated",
            ),
            (
                good,
                Some("TCP6: inuse 99999999999999999999\n"),
                "sockstat6 line 1: TCP6 inuse",
            ),
        ];
        for (sockstat, sockstat6, expected) in cases {
            let dir = proc_dir("sockets-garbage", Some(sockstat), *sockstat6);
            let err = collect(&dir).await.unwrap_err();
            assert_eq!(err.label(), "parse", "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&dir.path.join("net").display().to_string()),
                "{msg}"
            );
            assert!(
                msg.contains(expected),
                "{sockstat:?} / {sockstat6:?}: {msg:?} does not contain {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn real_proc_net_sockstat() {
        let mut h =
            Harness::<Sockets>::new(SocketsConfig::default(), Environment::default()).unwrap();
        // Hold a listening socket and a connection open while collecting.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let p = h.collect().await.unwrap();
        assert!(p.get("used").unwrap() >= 3.0, "{:?}", p.metrics);
        assert!(p.get("tcp_inuse").unwrap() >= 3.0, "{:?}", p.metrics);
        for name in METRICS {
            if let Some(v) = p.get(name) {
                assert!(v >= 0.0, "{name} = {v}");
            }
        }
    }

    #[test]
    fn description_is_one_line() {
        assert!(!Sockets::DESCRIPTION.contains('\n'));
        assert_eq!(Sockets::KIND, "sockets");
        assert_eq!(Sockets::DEFAULT_PATH, "sockets");
    }

    #[test]
    fn config_has_no_options() {
        use serde::de::value::{Error, MapDeserializer};
        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, bool)>, Error> =
            MapDeserializer::new(Vec::new().into_iter());
        assert_eq!(
            SocketsConfig::deserialize(empty).unwrap(),
            SocketsConfig::default()
        );
        let typo: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![("ipv6", true)].into_iter());
        let err = SocketsConfig::deserialize(typo).unwrap_err().to_string();
        assert!(err.contains("ipv6"), "{err}");
    }
}
