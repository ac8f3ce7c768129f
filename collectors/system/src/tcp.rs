//! The `tcp` collector: the kernel's TCP counters (connections opened and
//! failed, retransmissions, listen queue overflows, …) from
//! `/proc/net/netstat` and `/proc/net/snmp`.
//!
//! Both files are made of sections, each a line of names and a line of
//! values under the same label:
//!
//! ```text
//! TcpExt: SyncookiesSent SyncookiesRecv … ListenOverflows ListenDrops …
//! TcpExt: 0 0 … 0 0 …
//! IpExt: InNoRoutes InTruncatedPkts …
//! IpExt: 0 0 …
//! ```
//!
//! As Diamond does, the collector publishes the `TcpExt:` section of
//! `netstat` and the `Tcp:` section of `snmp`, each value under its kernel
//! name (`tcp.ListenOverflows`, `tcp.CurrEstab`), limited to
//! `allowed_names` (Diamond's list, [`DEFAULT_ALLOWED_NAMES`]; empty: every
//! name of both sections). The other sections (`IpExt`, `MPTcpExt`, `Ip`,
//! `Icmp`, `Udp`, …) are read and checked but not published: they are not
//! TCP's, and `Udp` and `UdpLite` share their names.
//!
//! The names in `gauges` (`CurrEstab` and `MaxConn` by default, as Diamond)
//! are published as they are; every other value is a counter since boot,
//! published per second by the agent (nothing on the first run, nothing for
//! a counter that went backwards). The counters are `unsigned long` in the
//! kernel, 32 bits wide on 32-bit kernels, so they are added without a
//! width: a wrap skips one sample. `MaxConn` is `-1` (no fixed limit); a
//! negative value is only accepted for a gauge.
//!
//! A name in both sections (none today) is published once, with the value
//! of `snmp`'s `Tcp:` (Diamond reads `snmp` second and keeps its value).
//!
//! Both files must be readable (an I/O error otherwise), complete (not empty,
//! last line ending with a newline) and in pairs of lines with the same
//! label and as many values as names, each value an integer; each must have
//! its section. Anything else is a [`CollectorError::Parse`] naming the file
//! and line, and nothing is published for that run.

use std::path::{Path, PathBuf};

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

use crate::procfile::{file_error, parse_error, read_complete};
use carat_collector::options::string_list;

/// Diamond's default `allowed_names`.
pub const DEFAULT_ALLOWED_NAMES: [&str; 16] = [
    "ListenOverflows",
    "ListenDrops",
    "TCPLoss",
    "TCPTimeouts",
    "TCPFastRetrans",
    "TCPLostRetransmit",
    "TCPForwardRetrans",
    "TCPSlowStartRetrans",
    "CurrEstab",
    "TCPAbortOnMemory",
    "TCPBacklogDrop",
    "AttemptFails",
    "EstabResets",
    "InErrs",
    "ActiveOpens",
    "PassiveOpens",
];

/// Diamond's default `gauges`: the values that are not counters.
pub const DEFAULT_GAUGES: [&str; 2] = ["CurrEstab", "MaxConn"];

/// The section of `/proc/net/netstat` that is published.
const NETSTAT_SECTION: &str = "TcpExt";
/// The section of `/proc/net/snmp` that is published.
const SNMP_SECTION: &str = "Tcp";

/// Options of the `tcp` collector.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// The names to publish; empty: every name of the two sections. A list,
    /// or one string of comma-separated names (Diamond's form).
    #[serde(deserialize_with = "string_list")]
    pub allowed_names: Vec<String>,
    /// The names published as gauges (as they are); every other name is a
    /// counter, published per second.
    #[serde(deserialize_with = "string_list")]
    pub gauges: Vec<String>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            allowed_names: DEFAULT_ALLOWED_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            gauges: DEFAULT_GAUGES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The `tcp` collector. See the [module documentation](self).
pub struct Tcp {
    netstat: PathBuf,
    snmp: PathBuf,
    config: TcpConfig,
    netstat_buf: Vec<u8>,
    snmp_buf: Vec<u8>,
}

impl Collector for Tcp {
    type Config = TcpConfig;
    const KIND: &'static str = "tcp";
    const DESCRIPTION: &'static str =
        "TCP counters (retransmits, resets, listen drops…) from /proc/net/netstat and snmp";
    const DEFAULT_PATH: &'static str = "tcp";

    fn new(config: TcpConfig, env: &Environment) -> Result<Self, CollectorError> {
        // Only /proc has these numbers: elsewhere, say so when built.
        crate::source::linux_only(Self::KIND)?;
        Ok(Tcp {
            netstat: env.proc_path("net/netstat"),
            snmp: env.proc_path("net/snmp"),
            config,
            netstat_buf: Vec::new(),
            snmp_buf: Vec::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let netstat = read_complete(&self.netstat, &mut self.netstat_buf)?;
        let ext = find_section(&self.netstat, netstat, NETSTAT_SECTION)?;
        let snmp = read_complete(&self.snmp, &mut self.snmp_buf)?;
        let tcp = find_section(&self.snmp, snmp, SNMP_SECTION)?;
        let config = &self.config;
        let sources = [(self.netstat.as_path(), ext), (self.snmp.as_path(), tcp)];
        // Check every value to publish before adding any, so that a bad one
        // leaves the batch empty.
        for (path, name, field, lineno) in published(config, &sources) {
            if config.is_gauge(name) {
                continue;
            }
            if let Err(e) = field.parse::<u64>() {
                return Err(parse_error(
                    path,
                    lineno,
                    format!("{name}: {field:?} is not a counter: {e}"),
                ));
            }
        }
        for (_, name, field, _) in published(config, &sources) {
            if config.is_gauge(name) {
                // `find_section` checked that every value is an integer.
                batch.gauge_parts(&[name], integer(field).unwrap_or(f64::NAN));
            } else if let Ok(value) = field.parse::<u64>() {
                batch.counter_parts(&[name], value, None);
            }
        }
        Ok(())
    }
}

impl TcpConfig {
    fn is_gauge(&self, name: &str) -> bool {
        self.gauges.iter().any(|g| g == name)
    }

    fn is_allowed(&self, name: &str) -> bool {
        self.allowed_names.is_empty() || self.allowed_names.iter().any(|a| a == name)
    }
}

/// The `(file, name, value, line)` to publish: `TcpExt` then `Tcp`, a name
/// of both from `Tcp` only, limited to `allowed_names`.
fn published<'a>(
    config: &'a TcpConfig,
    sources: &'a [(&'a Path, Section<'a>); 2],
) -> impl Iterator<Item = (&'a Path, &'a str, &'a str, usize)> + 'a {
    let last = &sources[1].1;
    sources
        .iter()
        .enumerate()
        .flat_map(move |(i, (path, section))| {
            section
                .pairs()
                .filter(move |(name, _)| i == 1 || !last.has(name))
                .filter(move |(name, _)| config.is_allowed(name))
                .map(move |(name, field)| (*path, name, field, section.line))
        })
}

/// `field` as a number, if it is an integer (`i64` or `u64`).
fn integer(field: &str) -> Option<f64> {
    match field.parse::<i64>() {
        Ok(v) => Some(v as f64),
        Err(_) => field.parse::<u64>().ok().map(|v| v as f64),
    }
}

/// One section of a file: its line of names and its line of values.
#[derive(Clone, Copy, Debug)]
struct Section<'t> {
    names: &'t str,
    values: &'t str,
    /// The line number of the values.
    line: usize,
}

impl<'t> Section<'t> {
    fn pairs(&self) -> impl Iterator<Item = (&'t str, &'t str)> {
        self.names
            .split_ascii_whitespace()
            .zip(self.values.split_ascii_whitespace())
    }

    fn has(&self, name: &str) -> bool {
        self.names.split_ascii_whitespace().any(|n| n == name)
    }
}

/// Checks the whole of `text` (read from `path`) for pairs of lines
/// `<Label>: <names>` / `<Label>: <integers>`, and returns the section
/// labelled `wanted`.
fn find_section<'t>(
    path: &Path,
    text: &'t str,
    wanted: &str,
) -> Result<Section<'t>, CollectorError> {
    let mut found: Option<Section<'t>> = None;
    let mut lines = text.lines().enumerate();
    while let Some((i, header)) = lines.next() {
        let lineno = i + 1;
        if header.trim().is_empty() {
            continue;
        }
        let (label, names) = split_label(path, lineno, header)?;
        let Some((j, values_line)) = lines.next() else {
            return Err(parse_error(
                path,
                lineno,
                format!("`{label}:` names without a line of values: truncated"),
            ));
        };
        let vlineno = j + 1;
        let (vlabel, values) = split_label(path, vlineno, values_line)?;
        if vlabel != label {
            return Err(parse_error(
                path,
                vlineno,
                format!("expected the values of `{label}:` (line {lineno}), found `{vlabel}:`"),
            ));
        }
        let nnames = names.split_ascii_whitespace().count();
        let mut nvalues = 0;
        for (k, field) in values.split_ascii_whitespace().enumerate() {
            nvalues += 1;
            if integer(field).is_none() {
                let name = names.split_ascii_whitespace().nth(k).unwrap_or("(extra)");
                return Err(parse_error(
                    path,
                    vlineno,
                    format!("{label} {name}: {field:?} is not an integer"),
                ));
            }
        }
        if nvalues != nnames {
            return Err(parse_error(
                path,
                vlineno,
                format!(
                    "{label} has {nvalues} values but its names (line {lineno}) are {nnames}: \
                     truncated or corrupt"
                ),
            ));
        }
        if label == wanted {
            if let Some(first) = found {
                return Err(parse_error(
                    path,
                    lineno,
                    format!(
                        "a second `{label}:` section (the first is at line {})",
                        first.line - 1
                    ),
                ));
            }
            found = Some(Section {
                names,
                values,
                line: vlineno,
            });
        }
    }
    found.ok_or_else(|| file_error(path, format!("no `{wanted}:` section")))
}

/// Splits `Label: rest` at the first colon.
fn split_label<'t>(
    path: &Path,
    lineno: usize,
    line: &'t str,
) -> Result<(&'t str, &'t str), CollectorError> {
    match line.split_once(':') {
        Some((label, rest)) if !label.is_empty() && !label.contains(char::is_whitespace) => {
            Ok((label, rest))
        }
        _ => Err(parse_error(
            path,
            lineno,
            format!("expected `<Section>: …`, found {line:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_metric, config_from, ProcDir, Stepper};
    use carat_collector::testing::{Harness, Published};
    use std::time::Duration;

    /// The files a run reads.
    const FILES: &[&str] = &["net/netstat", "net/snmp"];

    /// The recorded fixtures `tcp/netstat-<suffix>` and `tcp/snmp-<suffix>`.
    fn recorded(suffix: &str) -> [String; 2] {
        [
            format!("tcp/netstat-{suffix}"),
            format!("tcp/snmp-{suffix}"),
        ]
    }

    fn names(p: &Published) -> Vec<&str> {
        p.names().collect()
    }

    fn netstat(tcpext: &[(&str, &str)]) -> String {
        let names: Vec<&str> = tcpext.iter().map(|(n, _)| *n).collect();
        let values: Vec<&str> = tcpext.iter().map(|(_, v)| *v).collect();
        format!(
            "TcpExt: {}\nTcpExt: {}\nIpExt: InNoRoutes InOctets\nIpExt: 0 12345\n",
            names.join(" "),
            values.join(" ")
        )
    }

    /// A `/proc/net/snmp` of today's layout, with these `Tcp:` values.
    fn snmp(active_opens: u64, curr_estab: u64, in_errs: u64, retrans: u64) -> String {
        format!(
            concat!(
                "Ip: Forwarding DefaultTTL InReceives\n",
                "Ip: 2 64 367656\n",
                "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails ",
                "EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n",
                "Tcp: 1 200 120000 -1 {} 0 0 0 {} 0 0 {} {} 0 0\n",
                "Udp: InDatagrams NoPorts InErrors OutDatagrams\n",
                "Udp: 127 0 5 128\n",
            ),
            active_opens, curr_estab, retrans, in_errs
        )
    }

    // The recorded fixtures (a 2-CPU VM, Linux 6.18), the default names:
    //
    //                  a      b     Δ
    //   ActiveOpens    6933   6982  49
    //   PassiveOpens   3747   3781  34
    //   AttemptFails   3116   3130  14
    //   EstabResets    1935   1942   7
    //   TCPFastRetrans 770    770    0
    //   TCPTimeouts    2      2      0
    //   CurrEstab      0      0      (gauge)
    //   ListenOverflows, ListenDrops, TCPLostRetransmit, TCPSlowStartRetrans,
    //   TCPAbortOnMemory, TCPBacklogDrop, InErrs: 0 in both.
    //   TCPLoss and TCPForwardRetrans: not printed by this kernel.

    #[tokio::test]
    async fn recorded_fixtures_default_config() {
        let mut s = Stepper::<Tcp>::new("tcp-default", FILES, TcpConfig::default());
        let first = s.run_fixtures(0, &recorded("a")).await;
        // Only the gauge on the first run; the 13 counters have no rate yet.
        assert_eq!(names(&first), ["CurrEstab"]);
        assert_metric(&first, "CurrEstab", 0.0);
        assert_eq!(first.samples, 14);

        let p = s.run_fixtures(7, &recorded("b")).await;
        assert_metric(&p, "ActiveOpens", 7.0); // 49 / 7
        assert_metric(&p, "PassiveOpens", 34.0 / 7.0);
        assert_metric(&p, "AttemptFails", 2.0); // 14 / 7
        assert_metric(&p, "EstabResets", 1.0); // 7 / 7
        assert_metric(&p, "CurrEstab", 0.0);
        for zero in [
            "TCPFastRetrans",
            "TCPTimeouts",
            "ListenOverflows",
            "ListenDrops",
            "TCPLostRetransmit",
            "TCPSlowStartRetrans",
            "TCPAbortOnMemory",
            "TCPBacklogDrop",
            "InErrs",
        ] {
            assert_metric(&p, zero, 0.0);
        }
        assert!(p.get("TCPLoss").is_none());
        assert!(p.get("TCPForwardRetrans").is_none());
        assert!(p.get("MaxConn").is_none(), "not in the default names");
        assert_eq!(p.metrics.len(), 14, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn empty_allowed_names_publishes_both_sections() {
        let config = TcpConfig {
            allowed_names: Vec::new(),
            ..TcpConfig::default()
        };
        let mut s = Stepper::<Tcp>::new("tcp-all", FILES, config);
        let first = s.run_fixtures(0, &recorded("a")).await;
        // 135 TcpExt names and 15 Tcp names; gauges: CurrEstab, MaxConn.
        assert_eq!(first.samples, 150);
        assert_eq!(names(&first), ["CurrEstab", "MaxConn"]);
        assert_metric(&first, "MaxConn", -1.0);
        let p = s.run_fixtures(1, &recorded("b")).await;
        assert_eq!(p.metrics.len(), 150);
        assert_metric(&p, "TW", 32.0); // 2783 → 2815
        assert_metric(&p, "TCPOrigDataSent", 155.0); // 224615 → 224770
        assert_metric(&p, "InSegs", 385.0); // 369329 → 369714
        assert_metric(&p, "OutRsts", 18.0); // 4413 → 4431
        assert_metric(&p, "RtoMin", 0.0); // a constant, a counter as in Diamond
                                          // Other sections are not published.
        for other in [
            "InOctets",
            "InNoRoutes",
            "InDatagrams",
            "InErrors",
            "MPCurrEstab",
        ] {
            assert!(p.get(other).is_none(), "{other}");
        }
    }

    #[tokio::test]
    async fn gauges_and_allowed_names_as_diamond_strings() {
        use serde::de::value::{Error, MapDeserializer};
        let strings: MapDeserializer<'_, _, Error> = MapDeserializer::new(
            vec![
                ("allowed_names", "RtoMin, MaxConn,ActiveOpens, RetransSegs"),
                ("gauges", "RtoMin, MaxConn"),
            ]
            .into_iter(),
        );
        let config = TcpConfig::deserialize(strings).unwrap();
        assert_eq!(
            config.allowed_names,
            ["RtoMin", "MaxConn", "ActiveOpens", "RetransSegs"]
        );
        let mut s = Stepper::<Tcp>::new("tcp-gauges", FILES, config);
        let first = s
            .run(0, &[&netstat(&[("TW", "1")]), &snmp(10, 3, 0, 100)])
            .await
            .unwrap();
        assert_eq!(names(&first), ["MaxConn", "RtoMin"]);
        assert_metric(&first, "RtoMin", 200.0);
        let p = s
            .run(4, &[&netstat(&[("TW", "9")]), &snmp(30, 5, 0, 140)])
            .await
            .unwrap();
        assert_metric(&p, "ActiveOpens", 5.0);
        assert_metric(&p, "RetransSegs", 10.0);
        assert_metric(&p, "MaxConn", -1.0);
        // CurrEstab is not allowed here, TW neither.
        assert_eq!(p.metrics.len(), 4, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn snmp_wins_for_a_name_in_both_files() {
        let config = TcpConfig {
            allowed_names: vec!["CurrEstab".into(), "InErrs".into(), "ListenDrops".into()],
            ..TcpConfig::default()
        };
        let mut s = Stepper::<Tcp>::new("tcp-precedence", FILES, config);
        // A (made-up) kernel that also prints CurrEstab and InErrs in TcpExt.
        let ext =
            |a: &str, b: &str| netstat(&[("CurrEstab", a), ("ListenDrops", "4"), ("InErrs", b)]);
        let first = s
            .run(0, &[&ext("999", "5000"), &snmp(0, 12, 100, 0)])
            .await
            .unwrap();
        assert_eq!(first.samples, 3, "each name once");
        assert_metric(&first, "CurrEstab", 12.0);
        let p = s
            .run(2, &[&ext("1", "9000"), &snmp(0, 13, 110, 0)])
            .await
            .unwrap();
        assert_metric(&p, "CurrEstab", 13.0);
        assert_metric(&p, "InErrs", 5.0); // snmp's 100 → 110, not netstat's
        assert_metric(&p, "ListenDrops", 0.0);
        assert_eq!(p.samples, 3);
    }

    #[tokio::test]
    async fn counter_reset_is_skipped_not_a_spike() {
        let config = TcpConfig {
            allowed_names: vec![
                "ActiveOpens".into(),
                "RetransSegs".into(),
                "CurrEstab".into(),
            ],
            ..TcpConfig::default()
        };
        let mut s = Stepper::<Tcp>::new("tcp-reset", FILES, config);
        let ns = netstat(&[("TW", "0")]);
        s.run(0, &[&ns, &snmp(1_000, 5, 0, 50)]).await.unwrap();
        let p = s.run(10, &[&ns, &snmp(1_100, 6, 0, 70)]).await.unwrap();
        assert_metric(&p, "ActiveOpens", 10.0);
        assert_metric(&p, "RetransSegs", 2.0);
        // ActiveOpens went backwards (a 32-bit kernel wrapped, or a new
        // network namespace): skipped; the others go on.
        let p = s.run(10, &[&ns, &snmp(40, 7, 0, 80)]).await.unwrap();
        assert!(p.get("ActiveOpens").is_none(), "{:?}", p.metrics);
        assert_metric(&p, "RetransSegs", 1.0);
        assert_metric(&p, "CurrEstab", 7.0);
        let p = s.run(5, &[&ns, &snmp(90, 7, 0, 80)]).await.unwrap();
        assert_metric(&p, "ActiveOpens", 10.0);
    }

    #[tokio::test]
    async fn old_kernel_with_fewer_columns() {
        // 2.6.32: no InCsumErrors in Tcp:, a short TcpExt: with TCPLoss and
        // TCPForwardRetrans (gone from later kernels).
        let old_snmp = |opens: u64| {
            format!(
                concat!(
                    "Ip: Forwarding DefaultTTL\nIp: 1 64\n",
                    "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens ",
                    "AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts\n",
                    "Tcp: 1 200 120000 -1 {} 0 0 0 2 0 0 0 0 0\n",
                ),
                opens
            )
        };
        let old_netstat = |loss: &str| {
            format!(
                "TcpExt: SyncookiesSent TCPLoss TCPForwardRetrans ListenDrops\nTcpExt: 0 {loss} 6 0\n"
            )
        };
        let mut s = Stepper::<Tcp>::new("tcp-old", FILES, TcpConfig::default());
        let first = s
            .run(0, &[&old_netstat("10"), &old_snmp(100)])
            .await
            .unwrap();
        assert_eq!(names(&first), ["CurrEstab"]);
        let p = s
            .run(3, &[&old_netstat("16"), &old_snmp(130)])
            .await
            .unwrap();
        assert_metric(&p, "TCPLoss", 2.0);
        assert_metric(&p, "TCPForwardRetrans", 0.0);
        assert_metric(&p, "ActiveOpens", 10.0);
        assert_metric(&p, "CurrEstab", 2.0);
        assert!(p.get("TCPTimeouts").is_none());
        // TCPLoss TCPForwardRetrans ListenDrops + 6 of Tcp's.
        assert_eq!(p.metrics.len(), 9, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn zero_elapsed_publishes_gauges_only() {
        let mut s = Stepper::<Tcp>::new("tcp-zero", FILES, TcpConfig::default());
        s.run_fixtures(0, &recorded("a")).await;
        let p = s.run_fixtures(0, &recorded("b")).await;
        assert_eq!(names(&p), ["CurrEstab"]);
        let p = s.run_fixtures(2, &recorded("b")).await;
        assert_metric(&p, "ActiveOpens", 24.5); // 49 over the 2 s since a
    }

    async fn parse_error_of(netstat: &str, snmp: &str) -> (String, ProcDir) {
        let mut s = Stepper::<Tcp>::new("tcp-garbage", FILES, TcpConfig::default());
        let err = s.run(0, &[netstat, snmp]).await.unwrap_err();
        assert_eq!(err.label(), "parse", "{err}");
        (err.to_string(), s.dir)
    }

    #[tokio::test]
    async fn garbage_and_truncated_files_are_parse_errors() {
        let ns = netstat(&[("ListenDrops", "0"), ("TCPTimeouts", "1")]);
        let sn = snmp(1, 2, 3, 4);
        let cases: Vec<(String, String, &str)> = vec![
            (String::new(), sn.clone(), "netstat line 1: empty file"),
            (
                "TcpExt: A B\nTcpExt: 1 2".into(),
                sn.clone(),
                "netstat line 2: truncated",
            ),
            (
                "TcpExt: A B C\nTcpExt: 1 2\n".into(),
                sn.clone(),
                "netstat line 2: TcpExt has 2 values but its names (line 1) are 3",
            ),
            (
                "TcpExt: A B\nTcpExt: 1 2 3\n".into(),
                sn.clone(),
                "netstat line 2: TcpExt has 3 values but its names (line 1) are 2",
            ),
            (
                // Mismatch in a section that is not published is still corrupt.
                format!("{ns}MPTcpExt: A B\nMPTcpExt: 1\n"),
                sn.clone(),
                "netstat line 6: MPTcpExt has 1 values",
            ),
            (
                "TcpExt: A B\nIpExt: 1 2\n".into(),
                sn.clone(),
                "netstat line 2: expected the values of `TcpExt:` (line 1), found `IpExt:`",
            ),
            (
                "TcpExt: A B\nTcpExt: 1 2\nIpExt: C D\n".into(),
                sn.clone(),
                "netstat line 3: `IpExt:` names without a line of values",
            ),
            (
                "TcpExt: A B\nTcpExt: 1 x\n".into(),
                sn.clone(),
                "netstat line 2: TcpExt B: \"x\" is not an integer",
            ),
            (
                "this is not netstat\n".into(),
                sn.clone(),
                "netstat line 1: expected `<Section>: …`",
            ),
            (
                "IpExt: A\nIpExt: 1\n".into(),
                sn.clone(),
                "netstat: no `TcpExt:` section",
            ),
            (
                format!("{ns}{ns}"),
                sn.clone(),
                "netstat line 5: a second `TcpExt:` section (the first is at line 1)",
            ),
            (
                // A negative value for a published counter.
                netstat(&[("ListenDrops", "-3")]),
                sn.clone(),
                "netstat line 2: ListenDrops: \"-3\" is not a counter",
            ),
            (
                ns.clone(),
                sn.replace("Tcp: 1 200", "Tcp: 1 200 7"),
                "snmp line 4: Tcp has 16 values but its names (line 3) are 15",
            ),
            (
                ns.clone(),
                sn.replace(" 120000 -1 ", " 120000 99999999999999999999 "),
                "snmp line 4: Tcp MaxConn: \"99999999999999999999\" is not an integer",
            ),
            (
                ns.clone(),
                "Ip: A\nIp: 1\n".into(),
                "snmp: no `Tcp:` section",
            ),
            (ns.clone(), "\n".into(), "snmp line 1: empty file"),
        ];
        for (netstat, snmp, expected) in &cases {
            let (msg, dir) = parse_error_of(netstat, snmp).await;
            assert!(
                msg.contains(&dir.path.join("net").display().to_string()),
                "{msg}"
            );
            assert!(
                msg.contains(expected),
                "{netstat:?} / {snmp:?}: {msg:?} does not contain {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_negative_value_is_fine_where_not_published() {
        // ListenDrops is negative but not allowed here; MaxConn is a gauge.
        let config = TcpConfig {
            allowed_names: vec!["MaxConn".into(), "ActiveOpens".into()],
            ..TcpConfig::default()
        };
        let mut s = Stepper::<Tcp>::new("tcp-negative", FILES, config);
        let p = s
            .run(0, &[&netstat(&[("ListenDrops", "-3")]), &snmp(1, 2, 3, 4)])
            .await
            .unwrap();
        assert_eq!(names(&p), ["MaxConn"]);
        assert_metric(&p, "MaxConn", -1.0);
        assert_eq!(p.samples, 2);
    }

    #[tokio::test]
    async fn missing_files_are_io_errors() {
        let mut s = Stepper::<Tcp>::new("tcp-missing", FILES, TcpConfig::default());
        let err = s.harness.collect().await.unwrap_err();
        assert_eq!(err.label(), "io");
        assert!(err.to_string().contains("netstat"), "{err}");
        s.dir.write("net/netstat", &netstat(&[("TW", "1")]));
        let err = s.harness.collect().await.unwrap_err();
        assert_eq!(err.label(), "io");
        assert!(err.to_string().contains("snmp"), "{err}");
    }

    #[tokio::test]
    async fn real_proc_net_netstat_and_snmp() {
        let mut h = Harness::<Tcp>::new(TcpConfig::default(), Environment::default()).unwrap();
        let first = h.collect().await.unwrap();
        assert!(first.get("CurrEstab").is_some(), "{first:?}");
        // Open a few connections in between.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(std::net::TcpStream::connect(addr).unwrap());
            held.push(listener.accept().unwrap().0);
        }
        let p = h.collect_after(Duration::from_secs(1)).await.unwrap();
        // At least our 5 (other tests may open and close their own).
        assert!(p.get("ActiveOpens").unwrap() >= 5.0, "{:?}", p.metrics);
        assert!(p.get("PassiveOpens").unwrap() >= 5.0, "{:?}", p.metrics);
        assert!(p.get("CurrEstab").unwrap() >= 10.0, "{:?}", p.metrics);
        for (name, value) in &p.metrics {
            assert!(*value >= 0.0, "{name} = {value}");
            assert!(DEFAULT_ALLOWED_NAMES.contains(&name.as_str()), "{name}");
        }
    }

    #[test]
    fn description_is_one_line() {
        assert!(!Tcp::DESCRIPTION.contains('\n'));
        assert_eq!(Tcp::KIND, "tcp");
        assert_eq!(Tcp::DEFAULT_PATH, "tcp");
    }

    #[test]
    fn config_defaults_lists_and_unknown_keys() {
        let config: TcpConfig = config_from::<_, bool>(vec![]).unwrap();
        assert_eq!(config, TcpConfig::default());
        assert_eq!(config.allowed_names.len(), 16);
        assert_eq!(config.gauges, ["CurrEstab", "MaxConn"]);

        let config: TcpConfig = config_from(vec![
            ("allowed_names", Vec::<&str>::new()),
            ("gauges", vec!["MaxConn"]),
        ])
        .unwrap();
        assert!(config.allowed_names.is_empty());
        assert_eq!(config.gauges, ["MaxConn"]);

        let err = config_from::<TcpConfig, _>(vec![("allowed", "TW")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowed"), "{err}");
    }
}
