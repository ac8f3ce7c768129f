//! The `network` collector: traffic, packets and errors per network
//! interface, from `/proc/net/dev`.
//!
//! `/proc/net/dev` has two header lines, then one line per interface:
//!
//! ```text
//! Inter-|   Receive                                                |  Transmit
//!  face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
//!   eth0: 157903285    8197    0    0    0     0          0         0   515905    5042    0    0    0     0       0          0
//! ```
//!
//! Every value is a counter since the interface was created. The columns are
//! read from the second header line, not assumed, so a kernel that prints
//! fewer (Linux 2.0 had no `bytes`) or more of them works: the columns named
//! in [`RX_COLUMNS`] and [`TX_COLUMNS`] are published, others are skipped.
//!
//! # Names (Diamond's)
//!
//! For each interface whose name matches `interfaces`:
//! `<iface>.rx_<unit>` and `<iface>.tx_<unit>` for each `byte_unit`
//! (`rx_bit`, `rx_byte` by default), and `<iface>.rx_packets`, `rx_errors`,
//! `rx_drop`, `rx_fifo`, `rx_frame`, `rx_compressed`, `rx_multicast`,
//! `tx_packets`, `tx_errors`, `tx_drop`, `tx_fifo`, `tx_colls`,
//! `tx_carrier`, `tx_compressed`, all per second.
//!
//! # Counters and units
//!
//! Everything is added to the batch as a raw counter, so the agent's rate
//! rules apply (rate over the measured time, nothing on the first run,
//! nothing for a counter that went backwards) and StatsD gets increments.
//! The bit and byte units are counters too: `rx_bit` is the kernel's byte
//! counter × 8, which is just as monotonic (it would overflow only past
//! 2⁶¹ bytes, 2.3 EB: that one sample is then skipped like a reset).
//!
//! A larger unit (`kilobyte`, `Mbit`, …) cannot be an integer counter
//! without losing the remainder, so its rate is computed here, with the API's
//! own [`RateTracker`] (same rules, same measured time: the batch's
//! timestamp), converted, and published as a gauge.
//!
//! The counters are added without a width. The kernel prints them as 64-bit
//! numbers, but some drivers keep 32-bit counters internally and wrap at
//! 2³²; nothing in the file says which. Declaring 32 bits would turn a real
//! reset of a 64-bit counter (an interface re-created under the same name)
//! into a made-up rate, so a decrease skips that counter for one cycle
//! instead, whatever its cause.
//!
//! # Interface names
//!
//! Names come from outside (anyone with `CAP_NET_ADMIN` names interfaces)
//! and are published as a single path component: a dot becomes `_`
//! (`eth0.100` → `eth0_100`), as does every character outside
//! `[A-Za-z0-9_-]`; bytes that are not UTF-8 are accepted (as U+FFFD, then
//! `_`) rather than failing the whole file. Two interfaces whose names give
//! the same component: the first in the file is published, the other not.
//!
//! # Errors
//!
//! A file that is empty, cut short (no final newline), without its column
//! header, or with an interface line that is not `name: <one counter per
//! column>` is a [`CollectorError::Parse`] naming the file and line, and
//! nothing is published for that run.
//!
//! # Other systems
//!
//! With `source = "sysinfo"` (the default off Linux) the counters come from
//! the `sysinfo` crate: bytes, packets and errors, received and sent, per
//! interface (on Linux from `/sys/class/net/<iface>/statistics`, the same
//! kernel counters). They are published under the same names, through the
//! same `interfaces` filter, units and rate rules: `rx_<unit>`,
//! `tx_<unit>`, `rx_packets`, `tx_packets`, `rx_errors`, `tx_errors`. The
//! other columns (`drop`, `fifo`, `frame`, `compressed`, `multicast`,
//! `colls`, `carrier`) are not published. `sysinfo` lists interfaces in no
//! order; they are taken in order of name, so of two names that give the
//! same component the same one is published every time.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use carat_collector::name::{component, push_component};
use carat_collector::options::{AtStart, ByteUnit, ByteUnits, Patterns, Whole};
use carat_collector::{Batch, Collector, CollectorError, Environment, RateTracker};
use serde::Deserialize;
use sysinfo::Networks;

use crate::procfile::parse_error;
use crate::source::{sysinfo_error, Reader, Source};

/// Diamond's default `interfaces`.
pub const DEFAULT_INTERFACES: [&str; 8] = ["eth", "bond", "em", "p1p", "eno", "enp", "ens", "enx"];

/// The receive columns of `/proc/net/dev` that are published, and their
/// names (Diamond's: `errs` is published as `errors`). `bytes` is published
/// once per `byte_unit`.
pub const RX_COLUMNS: [(&str, &str); 7] = [
    ("packets", "rx_packets"),
    ("errs", "rx_errors"),
    ("drop", "rx_drop"),
    ("fifo", "rx_fifo"),
    ("frame", "rx_frame"),
    ("compressed", "rx_compressed"),
    ("multicast", "rx_multicast"),
];

/// The transmit columns of `/proc/net/dev` that are published (see
/// [`RX_COLUMNS`]).
pub const TX_COLUMNS: [(&str, &str); 7] = [
    ("packets", "tx_packets"),
    ("errs", "tx_errors"),
    ("drop", "tx_drop"),
    ("fifo", "tx_fifo"),
    ("colls", "tx_colls"),
    ("carrier", "tx_carrier"),
    ("compressed", "tx_compressed"),
];

/// Options of the `network` collector.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// The interfaces to publish: regular expressions matched against the
    /// start of the interface name (Diamond's: a plain name such as `eth` is
    /// a prefix). A list, or one string of comma-separated items.
    #[serde(deserialize_with = "Patterns::comma_separated")]
    pub interfaces: Patterns<AtStart>,
    /// True: an entry of `interfaces` matches names that start with it
    /// (`eth` matches `eth0`). False: the whole name must match (`eth0`).
    pub greedy: bool,
    /// The units of the `rx_<unit>`/`tx_<unit>` traffic metrics, one pair of
    /// metrics per unit: `bit`, `byte`, or a binary multiple of either in
    /// Diamond's spellings (`kilobit`/`kbit`/`Kibit` … `yottabyte`/`YB`/`YiB`).
    /// A list, or one string of units separated by commas or spaces.
    pub byte_unit: ByteUnits,
    /// Where the counters come from (`auto`: `/proc/net/dev` on Linux, the
    /// `sysinfo` crate elsewhere).
    pub source: Source,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            // Constants, checked by a test: they compile.
            interfaces: Patterns::new(DEFAULT_INTERFACES).unwrap_or_default(),
            greedy: true,
            byte_unit: ByteUnits::parse(["bit", "byte"]).unwrap_or_default(),
            source: Source::Auto,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Rx,
    Tx,
}

/// What one column of the file is published as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    /// The byte counter: one metric per `byte_unit`.
    Bytes(Direction),
    /// A counter published under this name.
    Counter(&'static str),
    /// A column this collector does not know: read, not published.
    Other,
}

/// How one `byte_unit` is published.
#[derive(Clone, Debug)]
enum UnitKind {
    /// As a counter: the byte counter × this factor (8 for bits, 1 for bytes).
    Counter(u64),
    /// As a gauge: the byte rate divided by this many bytes per unit.
    Rate(f64),
}

#[derive(Clone, Debug)]
struct Unit {
    rx: String,
    tx: String,
    kind: UnitKind,
}

impl Unit {
    fn name(&self, dir: Direction) -> &str {
        match dir {
            Direction::Rx => &self.rx,
            Direction::Tx => &self.tx,
        }
    }
}

/// One matching interface of a reading: its sanitised name in
/// `Reading::names` and its counters in `Reading::values`.
#[derive(Clone, Copy, Debug)]
struct Row {
    name: (usize, usize),
    values: usize,
}

/// One parse of `/proc/net/dev`, in buffers kept from one run to the next.
#[derive(Debug, Default)]
struct Reading {
    columns: Vec<Column>,
    rows: Vec<Row>,
    names: String,
    values: Vec<u64>,
    /// Indices of the rows to publish (duplicates of a name removed).
    publish: Vec<usize>,
}

impl Reading {
    fn clear(&mut self) {
        self.columns.clear();
        self.rows.clear();
        self.names.clear();
        self.values.clear();
        self.publish.clear();
    }

    fn name(&self, row: &Row) -> &str {
        &self.names[row.name.0..row.name.1]
    }

    fn values(&self, row: &Row) -> &[u64] {
        &self.values[row.values..row.values + self.columns.len()]
    }
}

/// The `network` collector. See the [module documentation](self).
pub struct Network {
    path: PathBuf,
    filter: Interfaces,
    units: Vec<Unit>,
    /// True when some unit is published as a gauge (its rate computed here).
    has_rate_units: bool,
    buf: Vec<u8>,
    reading: Reading,
    rates: RateTracker,
    key: String,
    /// The `sysinfo` reader, when that is the source.
    sysinfo: Option<SysinfoNetworks>,
}

impl Collector for Network {
    type Config = NetworkConfig;
    const KIND: &'static str = "network";
    const DESCRIPTION: &'static str =
        "Traffic, packets and errors per network interface, from /proc/net/dev";
    const DEFAULT_PATH: &'static str = "network";

    fn new(config: NetworkConfig, env: &Environment) -> Result<Self, CollectorError> {
        let filter = Interfaces::new(&config.interfaces, config.greedy)?;
        let units = units(&config.byte_unit);
        let sysinfo = match config.source.reader(Self::KIND)? {
            Reader::Proc => None,
            Reader::Sysinfo => Some(SysinfoNetworks::default()),
        };
        Ok(Network {
            sysinfo,
            path: env.proc_path("net/dev"),
            filter,
            has_rate_units: units.iter().any(|u| matches!(u.kind, UnitKind::Rate(_))),
            units,
            buf: Vec::new(),
            reading: Reading::default(),
            rates: RateTracker::default(),
            key: String::new(),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        if let Some(source) = &mut self.sysinfo {
            source.read(&self.filter, &mut self.reading)?;
        } else {
            let text = read_complete_lossy(&self.path, &mut self.buf)?;
            parse_dev(&self.path, &text, &self.filter, &mut self.reading)?;
        }
        self.publish(batch);
        Ok(())
    }
}

impl Network {
    fn publish(&mut self, batch: &mut Batch) {
        let at = batch.taken_at();
        let reading = &self.reading;
        for &r in &reading.publish {
            let row = &reading.rows[r];
            let iface = reading.name(row);
            for (column, &value) in reading.columns.iter().zip(reading.values(row)) {
                match *column {
                    Column::Counter(metric) => batch.counter_parts(&[iface, metric], value, None),
                    Column::Bytes(dir) => {
                        let rate = if self.has_rate_units {
                            self.key.clear();
                            self.key.push_str(iface);
                            self.key.push_str(match dir {
                                Direction::Rx => ".rx",
                                Direction::Tx => ".tx",
                            });
                            self.rates.update(&self.key, value, at, None).per_second()
                        } else {
                            None
                        };
                        for unit in &self.units {
                            let metric = unit.name(dir);
                            match unit.kind {
                                UnitKind::Counter(factor) => batch.counter_parts(
                                    &[iface, metric],
                                    value.wrapping_mul(factor),
                                    None,
                                ),
                                UnitKind::Rate(bytes_per_unit) => {
                                    if let Some(bytes_per_second) = rate {
                                        batch.gauge_parts(
                                            &[iface, metric],
                                            bytes_per_second / bytes_per_unit,
                                        );
                                    }
                                }
                            }
                        }
                    }
                    Column::Other => {}
                }
            }
        }
        // Forget interfaces as soon as they are gone: one that comes back
        // (re-created, its counters from zero) starts afresh.
        self.rates.end_cycle(1);
    }
}

/// Which interfaces are published: those whose name an entry of
/// `interfaces` matches from its start (`greedy`, Diamond's `re.match`), or
/// as a whole; every interface for no entry at all with `greedy`.
#[derive(Debug)]
enum Interfaces {
    Every,
    Prefix(Patterns<AtStart>),
    Whole(Patterns<Whole>),
}

impl Interfaces {
    fn new(interfaces: &Patterns<AtStart>, greedy: bool) -> Result<Self, CollectorError> {
        Ok(match (greedy, interfaces.is_empty()) {
            (true, true) => Interfaces::Every,
            (true, false) => Interfaces::Prefix(interfaces.clone()),
            // The same regexes, which compiled when read, anchored at the
            // end too.
            (false, _) => Interfaces::Whole(
                interfaces
                    .anchored()
                    .map_err(|e| CollectorError::option("interfaces", e))?,
            ),
        })
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            Interfaces::Every => true,
            Interfaces::Prefix(p) => p.is_match(name),
            Interfaces::Whole(p) => p.is_match(name),
        }
    }
}

/// How each of `byte_unit` is published (a unit listed twice was dropped
/// when the option was read).
fn units(byte_unit: &[ByteUnit]) -> Vec<Unit> {
    byte_unit
        .iter()
        .map(|unit| {
            let kind = if unit.bits() == 1.0 {
                UnitKind::Counter(8)
            } else if unit.bits() == 8.0 {
                UnitKind::Counter(1)
            } else {
                UnitKind::Rate(unit.bits() / 8.0)
            };
            Unit {
                rx: format!("rx_{}", component(unit.name())),
                tx: format!("tx_{}", component(unit.name())),
                kind,
            }
        })
        .collect()
}

/// Reads `path` into `buf` (cleared first, its allocation kept) and checks
/// it like `procfile::read_complete` (not empty, last line ending with a
/// newline), but replaces bytes that are not UTF-8 with U+FFFD instead of
/// failing: an interface name may hold any byte but `/`, `:`, whitespace and
/// NUL, and one oddly named interface must not stop the metrics of all the
/// others. Borrows `buf` (allocates nothing) when it is valid UTF-8.
fn read_complete_lossy<'b>(
    path: &Path,
    buf: &'b mut Vec<u8>,
) -> Result<Cow<'b, str>, CollectorError> {
    crate::procfile::read_file(path, buf)?;
    check_complete(path, buf)?;
    Ok(String::from_utf8_lossy(buf))
}

/// The checks of `procfile::read_complete`, on bytes.
fn check_complete(path: &Path, bytes: &[u8]) -> Result<(), CollectorError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(parse_error(path, 1, "empty file"));
    }
    if bytes.last() != Some(&b'\n') {
        let last = bytes.split(|&b| b == b'\n').count();
        return Err(parse_error(
            path,
            last,
            "truncated: the last line does not end with a newline",
        ));
    }
    Ok(())
}

/// Parses `/proc/net/dev` (`text`, read from `path`) into `out`, keeping the
/// rows of the interfaces that `filter` matches. Every line is checked, the
/// others' too.
fn parse_dev(
    path: &Path,
    text: &str,
    filter: &Interfaces,
    out: &mut Reading,
) -> Result<(), CollectorError> {
    out.clear();
    let mut lines = text.lines();
    if lines.next().is_none() {
        return Err(parse_error(path, 1, "empty file"));
    }
    parse_header(path, lines.next().unwrap_or_default(), &mut out.columns)?;
    for (i, line) in lines.enumerate() {
        let lineno = i + 3;
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, counters)) = line.split_once(':') else {
            return Err(parse_error(
                path,
                lineno,
                "expected `<interface>: <counters>`, found no `:`",
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(parse_error(path, lineno, "no interface name before `:`"));
        }
        let start = out.values.len();
        for field in counters.split_ascii_whitespace() {
            let column = out.values.len() - start;
            let value = field.parse::<u64>().map_err(|e| {
                let what = match out.columns.get(column) {
                    Some(Column::Counter(metric)) => *metric,
                    Some(Column::Bytes(Direction::Rx)) => "rx bytes",
                    Some(Column::Bytes(Direction::Tx)) => "tx bytes",
                    Some(Column::Other) => "column",
                    None => "extra column",
                };
                parse_error(
                    path,
                    lineno,
                    format!(
                        "{name} {what} (column {}): {field:?} is not a counter: {e}",
                        column + 1
                    ),
                )
            })?;
            out.values.push(value);
        }
        let found = out.values.len() - start;
        if found != out.columns.len() {
            return Err(parse_error(
                path,
                lineno,
                format!(
                    "{name} has {found} counters but the header (line 2) names {}: \
                     truncated or corrupt",
                    out.columns.len()
                ),
            ));
        }
        if !filter.is_match(name) {
            out.values.truncate(start);
            continue;
        }
        let name_start = out.names.len();
        push_component(&mut out.names, name);
        out.rows.push(Row {
            name: (name_start, out.names.len()),
            values: start,
        });
    }
    choose_published(out);
    Ok(())
}

/// Fills `out.publish` with the rows to publish: each sanitised name once,
/// the first row that has it, in row order.
fn choose_published(out: &mut Reading) {
    let Reading {
        rows,
        names,
        publish,
        ..
    } = out;
    let key = |r: usize| -> &str {
        let (start, end) = rows[r].name;
        &names[start..end]
    };
    publish.extend(0..rows.len());
    publish.sort_by(|a, b| key(*a).cmp(key(*b)).then(a.cmp(b)));
    publish.dedup_by(|a, b| key(*a) == key(*b));
    publish.sort_unstable();
}

/// The columns of a `sysinfo` reading, in the order of `/proc/net/dev`.
const SYSINFO_COLUMNS: [Column; 6] = [
    Column::Bytes(Direction::Rx),
    Column::Counter("rx_packets"),
    Column::Counter("rx_errors"),
    Column::Bytes(Direction::Tx),
    Column::Counter("tx_packets"),
    Column::Counter("tx_errors"),
];

/// The `sysinfo` reading of the `network` collector (see the module
/// documentation, "Other systems").
#[derive(Default)]
struct SysinfoNetworks {
    /// Built on the first run (building it can fail; `new` must not).
    networks: Option<Networks>,
}

impl SysinfoNetworks {
    /// Reads the counters of the interfaces that `filter` matches into
    /// `out`, as `parse_dev` does from `/proc/net/dev`.
    fn read(&mut self, filter: &Interfaces, out: &mut Reading) -> Result<(), CollectorError> {
        let networks = match &mut self.networks {
            Some(networks) => networks,
            none => {
                none.insert(Networks::new().map_err(|e| sysinfo_error("network interfaces", e))?)
            }
        };
        // Interfaces that went away are dropped from the list.
        networks.refresh(true);
        out.clear();
        out.columns.extend_from_slice(&SYSINFO_COLUMNS);
        let mut interfaces: Vec<_> = networks.iter().collect();
        interfaces.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (name, data) in interfaces {
            let name = name.to_string_lossy();
            if !filter.is_match(&name) {
                continue;
            }
            let start = out.values.len();
            out.values.extend([
                data.total_received(),
                data.total_packets_received(),
                data.total_errors_on_received(),
                data.total_transmitted(),
                data.total_packets_transmitted(),
                data.total_errors_on_transmitted(),
            ]);
            let name_start = out.names.len();
            push_component(&mut out.names, &name);
            out.rows.push(Row {
                name: (name_start, out.names.len()),
                values: start,
            });
        }
        choose_published(out);
        Ok(())
    }
}

/// Reads the column names from the second header line,
/// ` face |bytes packets …|bytes packets …`.
fn parse_header(path: &Path, line: &str, columns: &mut Vec<Column>) -> Result<(), CollectorError> {
    let bad = || {
        parse_error(
            path,
            2,
            "expected the column header ` face |<receive columns>|<transmit columns>`",
        )
    };
    let mut parts = line.split('|');
    let (Some(_face), Some(rx), Some(tx), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    for (dir, names, known) in [
        (Direction::Rx, rx, &RX_COLUMNS),
        (Direction::Tx, tx, &TX_COLUMNS),
    ] {
        let before = columns.len();
        for header in names.split_ascii_whitespace() {
            columns.push(if header == "bytes" {
                Column::Bytes(dir)
            } else {
                known
                    .iter()
                    .find(|(h, _)| *h == header)
                    .map_or(Column::Other, |&(_, metric)| Column::Counter(metric))
            });
        }
        if columns.len() == before {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        assert_metric, assert_source_option, byte_units, config_from, error_label_without_files,
        fixture_env, regexes, source_error, unit_names, Stepper,
    };
    use carat_collector::testing::{Harness, Published};
    use std::time::Duration;

    const HEADER: &str = concat!(
        "Inter-|   Receive                                                |  Transmit\n",
        " face |bytes    packets errs drop fifo frame compressed multicast|",
        "bytes    packets errs drop fifo colls carrier compressed\n",
    );

    /// A `/proc/net/dev` of today's layout with one line per
    /// `(name, [16 counters])`.
    fn dev(interfaces: &[(&str, [u64; 16])]) -> String {
        let mut s = String::from(HEADER);
        for (name, values) in interfaces {
            s.push_str(&format!("{name:>6}:"));
            for v in values {
                s.push_str(&format!(" {v}"));
            }
            s.push('\n');
        }
        s
    }

    /// 16 counters: rx bytes, rx packets, tx bytes and tx packets as given,
    /// the others zero.
    fn counters(rx_bytes: u64, rx_packets: u64, tx_bytes: u64, tx_packets: u64) -> [u64; 16] {
        [
            rx_bytes, rx_packets, 0, 0, 0, 0, 0, 0, tx_bytes, tx_packets, 0, 0, 0, 0, 0, 0,
        ]
    }

    fn names(p: &Published) -> Vec<&str> {
        p.names().collect()
    }

    // The recorded fixtures (a 2-CPU VM, Linux 6.18), the lines that matter:
    //
    // dev-a:    lo: 12394330200 361281 0 0 0 0 0 0 12394330200 361281 0 0 0 0 0 0
    //         eth0: 157903285 8197 0 0 0 0 0 0 515905 5042 0 0 0 0 0 0
    // dev-b:    lo: 12395758482 361653 0 0 0 0 0 0 12395758482 361653 0 0 0 0 0 0
    //         eth0: 157984675 8212 0 0 0 0 0 0 517789 5058 0 0 0 0 0 0
    //
    // Δ eth0: rx bytes 81390, rx packets 15, tx bytes 1884, tx packets 16.
    // Δ lo:   bytes 1428282, packets 372 (both ways). ifb0, ifb1: all zero.

    const PER_INTERFACE: usize = 18;

    #[tokio::test]
    async fn recorded_fixtures_default_config() {
        let mut s =
            Stepper::<Network>::new("network-default", &["net/dev"], NetworkConfig::default());
        let first = s.run_fixtures(0, &["network/dev-a"]).await;
        assert!(first.metrics.is_empty(), "{:?}", first.metrics);
        // Only eth0 matches the default interfaces (not lo, ifb0, ifb1).
        assert_eq!(first.samples, PER_INTERFACE);

        let p = s.run_fixtures(5, &["network/dev-b"]).await;
        assert_metric(&p, "eth0.rx_byte", 81390.0 / 5.0); // 16278
        assert_metric(&p, "eth0.rx_bit", 81390.0 * 8.0 / 5.0); // 130224
        assert_metric(&p, "eth0.rx_packets", 3.0);
        assert_metric(&p, "eth0.tx_byte", 1884.0 / 5.0); // 376.8
        assert_metric(&p, "eth0.tx_bit", 1884.0 * 8.0 / 5.0); // 3014.4
        assert_metric(&p, "eth0.tx_packets", 16.0 / 5.0);
        for zero in [
            "rx_errors",
            "rx_drop",
            "rx_fifo",
            "rx_frame",
            "rx_compressed",
            "rx_multicast",
            "tx_errors",
            "tx_drop",
            "tx_fifo",
            "tx_colls",
            "tx_carrier",
            "tx_compressed",
        ] {
            assert_metric(&p, &format!("eth0.{zero}"), 0.0);
        }
        assert_eq!(p.metrics.len(), PER_INTERFACE, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn exact_names_and_larger_units() {
        let config = NetworkConfig {
            interfaces: regexes(&["lo", "ifb", "eth0"]),
            greedy: false,
            byte_unit: byte_units(&["byte", "megabyte", "kbit"]),
            ..NetworkConfig::default()
        };
        let mut s = Stepper::<Network>::new("network-units", &["net/dev"], config);
        let first = s.run_fixtures(0, &["network/dev-a"]).await;
        assert!(first.metrics.is_empty(), "{:?}", first.metrics);
        let p = s.run_fixtures(2, &["network/dev-b"]).await;
        // `ifb` is not a whole name: ifb0 and ifb1 are not published.
        assert!(!p.names().any(|n| n.starts_with("ifb")), "{:?}", names(&p));
        // lo: 1428282 bytes in 2 s = 714141 B/s.
        assert_metric(&p, "lo.rx_byte", 714141.0);
        assert_metric(&p, "lo.tx_byte", 714141.0);
        assert_metric(&p, "lo.rx_megabyte", 714141.0 / 1048576.0);
        assert_metric(&p, "lo.rx_kbit", 714141.0 * 8.0 / 1024.0);
        assert_metric(&p, "lo.tx_kbit", 714141.0 * 8.0 / 1024.0);
        assert_metric(&p, "lo.rx_packets", 186.0);
        // eth0: 81390 bytes in 2 s.
        assert_metric(&p, "eth0.rx_megabyte", 40695.0 / 1048576.0);
        assert_metric(&p, "eth0.tx_kbit", 942.0 * 8.0 / 1024.0);
        assert!(p.get("lo.rx_bit").is_none());
        // 7 + 7 counters + 3 units × 2 directions, for lo and eth0.
        assert_eq!(p.metrics.len(), 2 * 20, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn interfaces_are_regular_expressions() {
        let config = NetworkConfig {
            interfaces: regexes(&["ifb[1-9]"]),
            greedy: false,
            byte_unit: byte_units(&["bit"]),
            ..NetworkConfig::default()
        };
        let mut s = Stepper::<Network>::new("network-regex", &["net/dev"], config);
        let first = s.run_fixtures(0, &["network/dev-a"]).await;
        assert_eq!(first.samples, 16);
        let p = s.run_fixtures(1, &["network/dev-b"]).await;
        assert_metric(&p, "ifb1.rx_bit", 0.0);
        assert!(p.names().all(|n| n.starts_with("ifb1.")), "{:?}", names(&p));

        // An empty list with greedy matching takes every interface.
        let config = NetworkConfig {
            interfaces: Patterns::default(),
            ..NetworkConfig::default()
        };
        let mut s = Stepper::<Network>::new("network-all", &["net/dev"], config);
        let first = s.run_fixtures(0, &["network/dev-a"]).await;
        assert_eq!(first.samples, 4 * PER_INTERFACE);
    }

    #[tokio::test]
    async fn counter_reset_is_skipped_not_a_spike() {
        let config = NetworkConfig {
            byte_unit: byte_units(&["bit", "byte", "kilobyte"]),
            ..NetworkConfig::default()
        };
        let mut s = Stepper::<Network>::new("network-reset", &["net/dev"], config);
        s.run(0, &[&dev(&[("eth0", counters(10_000, 100, 5_000, 50))])])
            .await
            .unwrap();
        let p = s
            .run(10, &[&dev(&[("eth0", counters(30_480, 150, 5_000, 70))])])
            .await
            .unwrap();
        assert_metric(&p, "eth0.rx_byte", 2_048.0);
        assert_metric(&p, "eth0.rx_bit", 16_384.0);
        assert_metric(&p, "eth0.rx_kilobyte", 2.0);
        assert_metric(&p, "eth0.tx_kilobyte", 0.0);
        assert_metric(&p, "eth0.rx_packets", 5.0);
        assert_metric(&p, "eth0.tx_packets", 2.0);

        // The driver reset rx bytes and packets (tx went on): no rate, and no
        // spike, for those; tx is published.
        let p = s
            .run(10, &[&dev(&[("eth0", counters(1_000, 10, 6_000, 80))])])
            .await
            .unwrap();
        for gone in [
            "eth0.rx_byte",
            "eth0.rx_bit",
            "eth0.rx_kilobyte",
            "eth0.rx_packets",
        ] {
            assert!(p.get(gone).is_none(), "{gone}: {:?}", p.metrics);
        }
        assert_metric(&p, "eth0.tx_byte", 100.0);
        assert_metric(&p, "eth0.tx_kilobyte", 100.0 / 1024.0);
        assert_metric(&p, "eth0.tx_packets", 1.0);

        // The reset reading is the new base.
        let p = s
            .run(4, &[&dev(&[("eth0", counters(5_096, 30, 6_000, 80))])])
            .await
            .unwrap();
        assert_metric(&p, "eth0.rx_byte", 1_024.0);
        assert_metric(&p, "eth0.rx_kilobyte", 1.0);
        assert_metric(&p, "eth0.rx_packets", 5.0);
    }

    #[tokio::test]
    async fn a_32_bit_wrap_skips_one_sample() {
        let mut s = Stepper::<Network>::new("network-wrap", &["net/dev"], NetworkConfig::default());
        let near = u64::from(u32::MAX) - 999;
        s.run(0, &[&dev(&[("eth0", counters(near, 0, 0, 0))])])
            .await
            .unwrap();
        // Wrapped at 2³² (width unknown): skipped rather than guessed.
        let p = s
            .run(1, &[&dev(&[("eth0", counters(500, 0, 0, 0))])])
            .await
            .unwrap();
        assert!(p.get("eth0.rx_byte").is_none(), "{:?}", p.metrics);
        let p = s
            .run(1, &[&dev(&[("eth0", counters(1_500, 0, 0, 0))])])
            .await
            .unwrap();
        assert_metric(&p, "eth0.rx_byte", 1_000.0);
    }

    #[tokio::test]
    async fn interfaces_disappearing_and_appearing() {
        let config = NetworkConfig {
            byte_unit: byte_units(&["byte", "MB"]),
            ..NetworkConfig::default()
        };
        let mut s = Stepper::<Network>::new("network-churn", &["net/dev"], config);
        s.run(
            0,
            &[&dev(&[
                ("eth0", counters(1_000, 10, 0, 0)),
                ("eth1", counters(9_000, 90, 0, 0)),
            ])],
        )
        .await
        .unwrap();
        // eth1 goes away: eth0 is unaffected.
        let p = s
            .run(5, &[&dev(&[("eth0", counters(2_000, 20, 0, 0))])])
            .await
            .unwrap();
        assert_metric(&p, "eth0.rx_byte", 200.0);
        assert!(
            !p.names().any(|n| n.starts_with("eth1.")),
            "{:?}",
            names(&p)
        );
        // eth1 is re-created (its counters from zero) and eth2 appears: no
        // base for either yet (eth1's rx went backwards, eth2 is new).
        let p = s
            .run(
                5,
                &[&dev(&[
                    ("eth0", counters(3_000, 30, 0, 0)),
                    ("eth1", counters(100, 1, 0, 0)),
                    ("eth2", counters(7, 7, 0, 0)),
                ])],
            )
            .await
            .unwrap();
        assert_metric(&p, "eth0.rx_byte", 200.0);
        assert!(p.get("eth1.rx_byte").is_none(), "{:?}", p.metrics);
        assert!(p.get("eth1.rx_MB").is_none(), "{:?}", p.metrics);
        assert!(p.get("eth1.rx_packets").is_none(), "{:?}", p.metrics);
        assert!(
            !p.names().any(|n| n.starts_with("eth2.")),
            "{:?}",
            names(&p)
        );
        // The next cycle publishes all three.
        let p = s
            .run(
                5,
                &[&dev(&[
                    ("eth0", counters(4_000, 40, 0, 0)),
                    ("eth1", counters(1_100, 11, 0, 0)),
                    ("eth2", counters(5_242_887, 17, 0, 0)),
                ])],
            )
            .await
            .unwrap();
        assert_metric(&p, "eth1.rx_byte", 200.0);
        assert_metric(&p, "eth1.rx_MB", 200.0 / 1048576.0);
        assert_metric(&p, "eth1.rx_packets", 2.0);
        assert_metric(&p, "eth2.rx_MB", 1.0); // 5242880 B in 5 s
        assert_metric(&p, "eth2.rx_packets", 2.0);
    }

    #[tokio::test]
    async fn odd_interface_names_are_one_component() {
        let mut s = Stepper::<Network>::new("network-odd", &["net/dev"], NetworkConfig::default());
        let mut bytes = dev(&[
            ("eth0.100", counters(100, 1, 0, 0)),
            ("eth-é+x", counters(200, 2, 0, 0)),
            // Collides with eth0.100 once sanitised: the first one wins.
            ("eth0_100", counters(900, 9, 0, 0)),
        ])
        .into_bytes();
        // A byte that is not UTF-8 and a control character.
        bytes.extend_from_slice(b"  eth\xff\x01: 300 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
        let first = s.run_bytes(0, &[&bytes]).await.unwrap();
        assert_eq!(first.samples, 3 * PER_INTERFACE);

        let mut bytes = dev(&[
            ("eth0.100", counters(1_100, 11, 0, 0)),
            ("eth-é+x", counters(2_200, 22, 0, 0)),
            ("eth0_100", counters(99_900, 99, 0, 0)),
        ])
        .into_bytes();
        bytes.extend_from_slice(b"  eth\xff\x01: 3300 33 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
        let p = s.run_bytes(2, &[&bytes]).await.unwrap();
        assert_metric(&p, "eth0_100.rx_byte", 500.0);
        assert_metric(&p, "eth0_100.rx_packets", 5.0);
        assert_metric(&p, "eth-__x.rx_byte", 1_000.0); // é is one character
        assert_metric(&p, "eth__.rx_byte", 1_500.0); // 0xff → U+FFFD → _, 0x01 → _
        assert_eq!(p.metrics.len(), 3 * PER_INTERFACE, "{:?}", names(&p));
        for n in p.names() {
            let (iface, metric) = n.split_once('.').unwrap();
            assert!(!metric.contains('.'), "{n}");
            assert!(
                iface
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{n}"
            );
        }
    }

    #[tokio::test]
    async fn old_kernels_with_fewer_columns() {
        // Linux 2.0: no byte counters, 5 receive and 6 transmit columns; and
        // a counter wide enough to touch the colon.
        let old = concat!(
            "Inter-|   Receive                  |  Transmit\n",
            " face |packets errs drop fifo frame|packets errs drop fifo colls carrier\n",
            "    lo:      10    0    0    0    0       10    0    0    0     0       0\n",
            "  eth0:1234567890    1    2    3    4      500    5    6    7     8       9\n",
        );
        let mut s = Stepper::<Network>::new("network-old", &["net/dev"], NetworkConfig::default());
        let first = s.run(0, &[old]).await.unwrap();
        assert_eq!(first.samples, 11);
        let p = s
            .run(10, &[&old.replace("1234567890    1", "1234568890   11")])
            .await
            .unwrap();
        assert_metric(&p, "eth0.rx_packets", 100.0);
        assert_metric(&p, "eth0.rx_errors", 1.0);
        assert_metric(&p, "eth0.rx_frame", 0.0);
        assert_metric(&p, "eth0.tx_carrier", 0.0);
        assert!(p.get("eth0.rx_bit").is_none());
        assert!(p.get("eth0.rx_multicast").is_none());
        assert_eq!(p.metrics.len(), 11, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn unknown_columns_of_a_future_kernel_are_skipped() {
        let future = concat!(
            "Inter-|   Receive                                                         |  Transmit\n",
            " face |bytes    packets errs drop fifo frame compressed multicast nohandler|",
            "bytes    packets errs drop fifo colls carrier compressed\n",
            "  eth0: 100 1 0 0 0 0 0 0 77 200 2 0 0 0 0 0 0\n",
        );
        let mut s =
            Stepper::<Network>::new("network-future", &["net/dev"], NetworkConfig::default());
        s.run(0, &[future]).await.unwrap();
        let p = s
            .run(1, &[&future.replace(" 77 200 2 ", " 99 300 3 ")])
            .await
            .unwrap();
        assert_metric(&p, "eth0.tx_byte", 100.0);
        assert_metric(&p, "eth0.tx_packets", 1.0);
        assert_metric(&p, "eth0.rx_byte", 0.0);
        assert_eq!(p.metrics.len(), PER_INTERFACE, "{:?}", names(&p));
    }

    #[tokio::test]
    async fn zero_elapsed_publishes_nothing() {
        let config = NetworkConfig {
            byte_unit: byte_units(&["bit", "gigabit"]),
            ..NetworkConfig::default()
        };
        let mut s = Stepper::<Network>::new("network-zero", &["net/dev"], config);
        s.run_fixtures(0, &["network/dev-a"]).await;
        let p = s.run_fixtures(0, &["network/dev-b"]).await;
        assert!(p.metrics.is_empty(), "{:?}", p.metrics);
        // Time moves on: the rate is over the whole 4 s since dev-a.
        let p = s.run_fixtures(4, &["network/dev-b"]).await;
        assert_metric(&p, "eth0.rx_bit", 81390.0 * 8.0 / 4.0);
        assert_metric(&p, "eth0.rx_gigabit", 81390.0 * 8.0 / 4.0 / 1073741824.0);
    }

    async fn parse_error_of(dev: &[u8]) -> String {
        let mut s =
            Stepper::<Network>::new("network-garbage", &["net/dev"], NetworkConfig::default());
        let err = s.run_bytes(0, &[dev]).await.unwrap_err();
        assert_eq!(err.label(), "parse", "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&s.dir.path.join("net/dev").display().to_string()),
            "{msg}"
        );
        msg
    }

    #[tokio::test]
    async fn garbage_and_truncated_files_are_parse_errors() {
        let line = "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "line 1: empty file"),
            (b"\n \n".to_vec(), "line 1: empty file"),
            (
                format!("{HEADER}  eth0: 1 2 3").into_bytes(),
                "line 3: truncated",
            ),
            (
                format!("{HEADER}  eth0: 1 2 3 4 5 6 7 8\n").into_bytes(),
                "line 3: eth0 has 8 counters but the header (line 2) names 16",
            ),
            (
                format!("{HEADER}{line}  eth1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n")
                    .into_bytes(),
                "line 4: eth1 has 17 counters",
            ),
            (
                format!("{HEADER}  eth0: 1 x 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n").into_bytes(),
                "line 3: eth0 rx_packets (column 2): \"x\" is not a counter",
            ),
            (
                format!("{HEADER}  eth0: 1 2 3 4 5 6 7 8 -9 10 11 12 13 14 15 16\n").into_bytes(),
                "line 3: eth0 tx bytes (column 9): \"-9\"",
            ),
            (
                format!(
                    "{HEADER}  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 99999999999999999999\n"
                )
                .into_bytes(),
                "line 3: eth0 tx_compressed (column 16)",
            ),
            (
                format!("{HEADER}  eth0 1 2 3\n").into_bytes(),
                "line 3: expected `<interface>: <counters>`",
            ),
            (
                format!("{HEADER}    : 1 2 3\n").into_bytes(),
                "line 3: no interface name",
            ),
            // The header lines are missing: the first interface line is
            // taken as the header and has no columns.
            (
                format!("{line}{line}").into_bytes(),
                "line 2: expected the column header",
            ),
            (
                b"Inter-|   Receive |  Transmit\n face |bytes packets|\n".to_vec(),
                "line 2: expected the column header",
            ),
            (
                b"Inter-|   Receive |  Transmit\n".to_vec(),
                "line 2: expected the column header",
            ),
        ];
        for (dev, expected) in &cases {
            let msg = parse_error_of(dev).await;
            assert!(
                msg.contains(expected),
                "{:?}: {msg:?} does not contain {expected:?}",
                String::from_utf8_lossy(dev)
            );
        }
    }

    #[tokio::test]
    async fn a_bad_reading_publishes_nothing_and_keeps_the_base() {
        let mut s = Stepper::<Network>::new(
            "network-bad-between",
            &["net/dev"],
            NetworkConfig::default(),
        );
        s.run(0, &[&dev(&[("eth0", counters(1_000, 10, 0, 0))])])
            .await
            .unwrap();
        assert!(s.run(1, &["garbage\n"]).await.is_err());
        assert!(s.run(1, &[""]).await.is_err());
        let p = s
            .run(2, &[&dev(&[("eth0", counters(5_000, 50, 0, 0))])])
            .await
            .unwrap();
        // 4000 bytes over the 4 s since the last good reading.
        assert_metric(&p, "eth0.rx_byte", 1_000.0);
        assert_metric(&p, "eth0.rx_packets", 10.0);
    }

    #[tokio::test]
    async fn missing_file_is_an_io_error() {
        assert_eq!(
            error_label_without_files::<Network>(NetworkConfig::default()).await,
            "io"
        );
    }

    #[tokio::test]
    async fn real_proc_net_dev() {
        // Every interface, so that at least `lo` is there.
        let config = NetworkConfig {
            interfaces: Patterns::default(),
            byte_unit: byte_units(&["bit", "byte", "kilobyte"]),
            ..NetworkConfig::default()
        };
        let mut h = Harness::<Network>::new(config, Environment::default()).unwrap();
        let first = h.collect().await.unwrap();
        assert!(first.samples >= PER_INTERFACE, "{first:?}");
        // Some loopback traffic in between.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut client, &[7u8; 10_000]).unwrap();
        drop(client);
        let p = h.collect_after(Duration::from_secs(1)).await.unwrap();
        let mut interfaces = 0;
        for name in p.names().filter(|n| n.ends_with(".rx_byte")) {
            interfaces += 1;
            let iface = name.trim_end_matches(".rx_byte");
            let bytes = p.get(name).unwrap();
            assert!(bytes >= 0.0, "{name} = {bytes}");
            assert_metric(&p, &format!("{iface}.rx_bit"), bytes * 8.0);
            assert_metric(&p, &format!("{iface}.rx_kilobyte"), bytes / 1024.0);
        }
        assert!(interfaces >= 1, "{:?}", p.metrics);
        assert!(p.get("lo.rx_byte").unwrap_or(0.0) > 0.0, "{:?}", p.metrics);
    }

    #[test]
    fn description_is_one_line() {
        assert!(!Network::DESCRIPTION.contains('\n'));
        assert_eq!(Network::KIND, "network");
        assert_eq!(Network::DEFAULT_PATH, "network");
    }

    #[test]
    fn config_defaults_lists_and_unknown_keys() {
        let config: NetworkConfig = config_from::<_, bool>(vec![]).unwrap();
        assert_eq!(config, NetworkConfig::default());
        assert_eq!(
            config.interfaces.sources(),
            ["eth", "bond", "em", "p1p", "eno", "enp", "ens", "enx"]
        );
        assert_eq!(unit_names(&config.byte_unit), ["bit", "byte"]);
        assert!(config.greedy);

        let config: NetworkConfig = config_from(vec![
            ("interfaces", vec!["wl", "br-"]),
            ("byte_unit", vec!["MB"]),
        ])
        .unwrap();
        assert_eq!(config.interfaces.sources(), ["wl", "br-"]);
        assert_eq!(unit_names(&config.byte_unit), ["MB"]);

        // Diamond's comma-separated strings.
        let config: NetworkConfig =
            config_from(vec![("interfaces", "eth, bond,,em "), ("byte_unit", "bit")]).unwrap();
        assert_eq!(config.interfaces.sources(), ["eth", "bond", "em"]);
        assert_eq!(unit_names(&config.byte_unit), ["bit"]);

        let err = config_from::<NetworkConfig, _>(vec![("interface", "eth")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("interface"), "{err}");

        let err = config_from::<NetworkConfig, _>(vec![("interfaces", true)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("list of strings"), "{err}");
    }

    #[test]
    fn configurations_that_cannot_work() {
        let env = fixture_env("network");
        // Refused when read: the loader reports them at the option's line.
        let refused = |key: &'static str, value: Vec<&'static str>| {
            config_from::<NetworkConfig, _>(vec![(key, value)])
                .unwrap_err()
                .to_string()
        };
        let msg = refused("byte_unit", vec!["bit", "furlong"]);
        assert!(
            msg.contains("\"furlong\" is not one of Diamond's units"),
            "{msg}"
        );
        assert!(msg.contains("kilobyte"), "{msg}");
        let msg = refused("interfaces", vec!["eth", "eth("]);
        assert!(msg.contains("invalid regex \"eth(\""), "{msg}");
        // Every unit of Diamond's table builds, with its spellings.
        let all = ByteUnits::parse(ByteUnit::names()).unwrap();
        let network = Network::new(
            NetworkConfig {
                byte_unit: all,
                ..NetworkConfig::default()
            },
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(network.has_rate_units);
        assert_eq!(network.units.len(), 53);
        // A unit listed twice is published once.
        let network = Network::new(
            NetworkConfig {
                byte_unit: byte_units(&["bit", "byte", "bit"]),
                ..NetworkConfig::default()
            },
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(network.units.len(), 2);
        assert!(!network.has_rate_units);
    }

    #[test]
    fn source_option() {
        assert_eq!(NetworkConfig::default().source, Source::Auto);
        assert_source_option::<Network>(|c| c.source);
        let err = source_error::<NetworkConfig>("netlink");
        assert!(err.contains("netlink"), "{err}");
    }

    /// The receive bytes and packets of `iface` in this machine's
    /// `/proc/net/dev`.
    #[cfg(target_os = "linux")]
    fn proc_rx(iface: &str) -> (u64, u64) {
        let text = std::fs::read_to_string("/proc/net/dev").unwrap();
        let line = text
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{iface}:")))
            .unwrap_or_else(|| panic!("no {iface} in /proc/net/dev"));
        let mut fields = line.split_ascii_whitespace().map(|f| f.parse().unwrap());
        (fields.next().unwrap(), fields.next().unwrap())
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sysinfo_source_on_this_machine() {
        let config = NetworkConfig {
            interfaces: regexes(&["lo"]),
            greedy: false,
            byte_unit: byte_units(&["bit", "byte", "kilobyte"]),
            source: Source::Sysinfo,
        };
        // The raw counters: the same kernel counters as /proc/net/dev's.
        // The proc root is ignored: sysinfo reads the agent's own system.
        let mut network = Network::new(config.clone(), &fixture_env("network")).unwrap();
        let mut batch = Batch::new();
        let before = proc_rx("lo");
        network.collect(&mut batch).await.unwrap();
        let after = proc_rx("lo");
        let raw = |name: &str| match batch.iter().find(|s| s.name == name) {
            Some(s) => match s.value {
                carat_collector::SampleValue::Counter(v, None) => v,
                other => panic!("{name} is {other:?}, not a counter"),
            },
            None => panic!("no {name} in {:?}", batch.iter().collect::<Vec<_>>()),
        };
        let bytes = raw("lo.rx_byte");
        assert!(
            (before.0..=after.0).contains(&bytes),
            "sysinfo {bytes}, /proc/net/dev {before:?} .. {after:?}"
        );
        let packets = raw("lo.rx_packets");
        assert!((before.1..=after.1).contains(&packets), "{packets}");
        assert_eq!(raw("lo.rx_bit"), bytes * 8);

        // Through the agent's rate rules.
        let mut h = Harness::<Network>::new(config, Environment::default()).unwrap();
        let first = h.collect().await.unwrap();
        assert!(first.metrics.is_empty(), "{first:?}");
        // 4 counters per direction; kilobyte is a rate computed here, from
        // the second run on.
        assert_eq!(first.samples, 8, "{first:?}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std::io::Write::write_all(&mut client, &[7u8; 10_000]).unwrap();
        drop(client);
        let p = h.collect_after(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            names(&p),
            [
                "lo.rx_bit",
                "lo.rx_byte",
                "lo.rx_errors",
                "lo.rx_kilobyte",
                "lo.rx_packets",
                "lo.tx_bit",
                "lo.tx_byte",
                "lo.tx_errors",
                "lo.tx_kilobyte",
                "lo.tx_packets"
            ]
        );
        let rx = p.get("lo.rx_byte").unwrap();
        assert!(rx >= 10_000.0, "{rx}");
        assert_metric(&p, "lo.rx_bit", rx * 8.0);
        assert_metric(&p, "lo.rx_kilobyte", rx / 1024.0);
        assert!(p.get("lo.tx_packets").unwrap() > 0.0);
    }
}
