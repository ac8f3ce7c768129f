//! The typed configuration: the `[agent]` table, the options every collector
//! instance has, and the output tables.
//!
//! Every duration may be written as a number of seconds (`10`, `0.5`) or as
//! a string with units (`"10s"`, `"500ms"`, `"1h30m"`), as
//! [`carat_collector::options::duration`] reads them, and is checked
//! against its range (`INTERVAL_RANGE`, …).

use std::path::PathBuf;
use std::time::Duration;

pub use carat_collector::options::SecondsRange;
use carat_collector::options::{AtStart, Search};
use carat_collector::redact::redact_url;
use serde::{Deserialize, Deserializer};

use crate::hostname::HostnameMethod;

/// The `[agent]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// A fixed host name for metric paths; overrides `hostname_method`.
    pub hostname: Option<String>,
    /// How to find the host name when `hostname` is not set.
    pub hostname_method: HostnameMethod,
    /// First component of every metric path.
    pub path_prefix: String,
    /// Inserted between the host name and the collector path, when not empty.
    pub path_suffix: String,
    /// Default interval between collector runs, in seconds
    /// ([`INTERVAL_RANGE`]).
    #[serde(deserialize_with = "interval")]
    pub interval: Duration,
    /// Default upper bound of the random delay before a collector's first
    /// run, in seconds, so collectors on many hosts do not run in lockstep
    /// ([`SPLAY_RANGE`]).
    #[serde(deserialize_with = "splay")]
    pub splay: Duration,
    /// A directory of extra `*.toml` files with collector and output tables,
    /// read in name order after the main file.
    pub config_dir: Option<PathBuf>,
    /// Where the host's `/proc` is (a container mounts it elsewhere). The
    /// `HOST_PROC` environment variable is used when this is not set.
    pub proc_root: Option<PathBuf>,
    /// Where the host's `/sys` is; `HOST_SYS` is used when this is not set.
    pub sys_root: Option<PathBuf>,
    /// How long, at most, SIGTERM waits for outputs to deliver what they hold
    /// ([`SHUTDOWN_TIMEOUT_RANGE`]).
    #[serde(deserialize_with = "shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Publish carat's own metrics under `<prefix>.<host>.carat`.
    pub self_metrics: bool,
    /// Log level when `RUST_LOG` is not set: error, warn, info, debug, trace.
    pub log_level: String,
    /// Address of the health endpoint (`127.0.0.1:2041`): `GET /health`
    /// answers 200 when every collector and output is healthy, 500 with the
    /// reasons otherwise. Empty: no endpoint. An `ip:port` socket address
    /// (checked when the configuration is loaded), not a host name.
    #[serde(deserialize_with = "listen_address")]
    pub health_listen: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            hostname: None,
            hostname_method: HostnameMethod::Smart,
            path_prefix: "servers".into(),
            path_suffix: String::new(),
            interval: Duration::from_secs(10),
            splay: Duration::from_secs(1),
            config_dir: None,
            proc_root: None,
            sys_root: None,
            shutdown_timeout: Duration::from_secs(10),
            self_metrics: true,
            log_level: "info".into(),
            health_listen: String::new(),
        }
    }
}

/// The keys every collector table may have, handled by the agent.
pub const COMMON_COLLECTOR_KEYS: &[&str] = &[
    "enabled",
    "interval",
    "path",
    "splay",
    "timeout",
    "max_metrics",
    "metrics_whitelist",
    "metrics_blacklist",
];

/// Options every collector instance has.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CommonOptions {
    /// Run this instance.
    pub enabled: bool,
    /// Seconds between runs; the agent's `interval` when not set.
    #[serde(deserialize_with = "optional_interval")]
    pub interval: Option<Duration>,
    /// Path under the host name; the collector's Diamond path when not set.
    pub path: Option<String>,
    /// Upper bound of the random delay before the first run, in seconds.
    #[serde(deserialize_with = "optional_splay")]
    pub splay: Option<Duration>,
    /// Seconds a run may take before it is abandoned; the interval when not set.
    #[serde(deserialize_with = "optional_run_timeout")]
    pub timeout: Option<Duration>,
    /// The most samples one run may add ([`MAX_METRICS_RANGE`]): beyond it
    /// the run's batch stops growing and the run fails, so a source that
    /// suddenly reports millions of names cannot take the host's memory.
    #[serde(deserialize_with = "max_metrics")]
    pub max_metrics: usize,
    /// Regexes on the metric name below the collector path: when any is
    /// given, only matching metrics are published.
    pub metrics_whitelist: NamePatterns,
    /// Regexes on the metric name below the collector path: matching metrics
    /// are not published.
    pub metrics_blacklist: NamePatterns,
}

impl Default for CommonOptions {
    fn default() -> Self {
        CommonOptions {
            enabled: true,
            interval: None,
            path: None,
            splay: None,
            timeout: None,
            max_metrics: carat_collector::Batch::DEFAULT_MAX_SAMPLES,
            metrics_whitelist: NamePatterns::default(),
            metrics_blacklist: NamePatterns::default(),
        }
    }
}

/// Regexes on the metric names below a collector's path, matched at the
/// start of the name as Diamond's `re.match` is (`total` matches
/// `total.user`, not `cpu0.total`): a collector's `metrics_whitelist` and
/// `metrics_blacklist`. One regex or a list; compiled when read, so a bad
/// one is refused at its line.
pub type NamePatterns = carat_collector::options::Patterns<AtStart>;

/// Regexes searched anywhere in the full metric path: an output's
/// `metrics_whitelist` and `metrics_blacklist`. One regex or a list;
/// compiled when read.
pub type Patterns = carat_collector::options::Patterns<Search>;

/// The `[output.stdout]` table: Graphite plaintext lines on standard output.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutConfig {
    /// Queue of batches between the collectors and this output.
    pub queue_size: Option<usize>,
    /// Regexes searched in the full metric path: when any is given, only
    /// matching metrics go to this output.
    pub metrics_whitelist: Patterns,
    /// Regexes searched in the full metric path: matches skip this output.
    pub metrics_blacklist: Patterns,
}

/// Transport of the graphite output.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GraphiteProtocol {
    /// Plaintext lines over TCP: reconnects, buffers while carbon is away.
    #[default]
    Tcp,
    /// Plaintext lines in UDP datagrams: fire and forget.
    Udp,
    /// Carbon's pickle protocol over TCP (port 2004 by default).
    Pickle,
}

/// The `[output.graphite]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphiteConfig {
    /// Carbon's host name or address.
    pub host: String,
    /// Carbon's plaintext port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: GraphiteProtocol,
    /// Seconds allowed for a connect or a write before the connection is
    /// dropped and retried.
    #[serde(deserialize_with = "output_timeout")]
    pub timeout: Duration,
    /// Lines sent in one write (TCP) at most.
    pub batch_size: usize,
    /// Lines held while carbon is away; the oldest are dropped beyond this,
    /// and every drop is counted.
    pub max_buffered: usize,
    /// First delay before reconnecting, in seconds; doubles on each failure.
    #[serde(deserialize_with = "reconnect")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts, in seconds.
    #[serde(deserialize_with = "reconnect")]
    pub reconnect_max: Duration,
    /// Largest UDP datagram, in bytes (lines are packed up to this size).
    pub max_packet_size: usize,
    /// Queue of batches between the collectors and this output.
    pub queue_size: Option<usize>,
    /// Directory of the disk spool for what memory cannot hold (TCP and
    /// pickle only); no spool when not set.
    pub spool_dir: Option<PathBuf>,
    /// Size bound of the spool in MiB; the oldest spooled metrics are
    /// dropped and counted beyond it.
    pub spool_max_mb: u64,
    /// Regexes searched in the full metric path: when any is given, only
    /// matching metrics go to this output.
    pub metrics_whitelist: Patterns,
    /// Regexes searched in the full metric path: matches skip this output.
    pub metrics_blacklist: Patterns,
}

impl Default for GraphiteConfig {
    fn default() -> Self {
        GraphiteConfig {
            host: "127.0.0.1".into(),
            port: 2003,
            protocol: GraphiteProtocol::Tcp,
            timeout: Duration::from_secs(5),
            batch_size: 5000,
            max_buffered: 100_000,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            max_packet_size: 1432,
            queue_size: None,
            spool_dir: None,
            spool_max_mb: 256,
            metrics_whitelist: Patterns::default(),
            metrics_blacklist: Patterns::default(),
        }
    }
}

/// Transport of the statsd output.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatsdProtocol {
    /// Datagrams, as StatsD is usually run.
    #[default]
    Udp,
    /// Newline-separated over TCP (StatsD's `server = "./servers/tcp"`).
    Tcp,
}

/// The `[output.statsd]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatsdConfig {
    /// StatsD's host name or address.
    pub host: String,
    /// StatsD's port.
    pub port: u16,
    /// `udp` or `tcp`.
    pub protocol: StatsdProtocol,
    /// Largest datagram in bytes; metrics are packed up to it.
    pub max_packet_size: usize,
    /// Prepended to every name (`prefix.servers.web01.cpu.total.user`).
    pub prefix: String,
    /// DogStatsD-style tags added to every metric (`["env:prod"]`).
    pub tags: Vec<String>,
    /// Seconds for a TCP connect or write.
    #[serde(deserialize_with = "output_timeout")]
    pub timeout: Duration,
    /// Queue of batches between the collectors and this output.
    pub queue_size: Option<usize>,
    /// Regexes searched in the full metric path: when any is given, only
    /// matching metrics go to this output.
    pub metrics_whitelist: Patterns,
    /// Regexes searched in the full metric path: matches skip this output.
    pub metrics_blacklist: Patterns,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            host: "127.0.0.1".into(),
            port: 8125,
            protocol: StatsdProtocol::Udp,
            max_packet_size: 1432,
            prefix: String::new(),
            tags: Vec::new(),
            timeout: Duration::from_secs(5),
            queue_size: None,
            metrics_whitelist: Patterns::default(),
            metrics_blacklist: Patterns::default(),
        }
    }
}

/// The `[output.amqp]` table: Graphite plaintext published to an AMQP
/// exchange, for carbon's AMQP listener (`ENABLE_AMQP = True`).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (the vhost URL-encoded: `%2f`
    /// is `/`). Write the password as `${VAR}` to keep it out of the file.
    pub url: String,
    /// The exchange to publish to (carbon's `AMQP_EXCHANGE`).
    pub exchange: String,
    /// Declare the exchange on connect as carbon does: a durable topic
    /// exchange. Off: it must exist already.
    pub declare_exchange: bool,
    /// Carbon's `AMQP_METRIC_NAME_IN_BODY`. Off: one message per metric,
    /// routing key = metric path, body = `value timestamp`. On: messages of
    /// `path value timestamp` lines, published with `routing_key`.
    pub metric_name_in_body: bool,
    /// Routing key of the messages when `metric_name_in_body` is on.
    pub routing_key: String,
    /// Seconds allowed for a connect, or without progress in a publish
    /// (publisher confirms included), before the connection is dropped and
    /// retried.
    #[serde(deserialize_with = "output_timeout")]
    pub timeout: Duration,
    /// Metrics published per round of publisher confirms at most (and lines
    /// per message with `metric_name_in_body`).
    pub batch_size: usize,
    /// Metrics held while the broker is away; the oldest are dropped beyond
    /// this, and every drop is counted.
    pub max_buffered: usize,
    /// First delay before reconnecting, in seconds; doubles on each failure.
    #[serde(deserialize_with = "reconnect")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts, in seconds.
    #[serde(deserialize_with = "reconnect")]
    pub reconnect_max: Duration,
    /// Queue of batches between the collectors and this output.
    pub queue_size: Option<usize>,
    /// Directory of the disk spool for what memory cannot hold; no spool
    /// when not set.
    pub spool_dir: Option<PathBuf>,
    /// Size bound of the spool in MiB; the oldest spooled metrics are
    /// dropped and counted beyond it.
    pub spool_max_mb: u64,
    /// Regexes searched in the full metric path: when any is given, only
    /// matching metrics go to this output.
    pub metrics_whitelist: Patterns,
    /// Regexes searched in the full metric path: matches skip this output.
    pub metrics_blacklist: Patterns,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        let graphite = GraphiteConfig::default();
        AmqpConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "graphite".into(),
            declare_exchange: true,
            metric_name_in_body: false,
            routing_key: String::new(),
            timeout: graphite.timeout,
            batch_size: graphite.batch_size,
            max_buffered: graphite.max_buffered,
            reconnect_min: graphite.reconnect_min,
            reconnect_max: graphite.reconnect_max,
            queue_size: None,
            spool_dir: None,
            spool_max_mb: graphite.spool_max_mb,
            metrics_whitelist: Patterns::default(),
            metrics_blacklist: Patterns::default(),
        }
    }
}

/// Like the derived one, but never prints the password of `url`.
impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("declare_exchange", &self.declare_exchange)
            .field("metric_name_in_body", &self.metric_name_in_body)
            .field("routing_key", &self.routing_key)
            .field("timeout", &self.timeout)
            .field("batch_size", &self.batch_size)
            .field("max_buffered", &self.max_buffered)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("queue_size", &self.queue_size)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_mb", &self.spool_max_mb)
            .field("metrics_whitelist", &self.metrics_whitelist)
            .field("metrics_blacklist", &self.metrics_blacklist)
            .finish()
    }
}

// Durations are written as a number of seconds or as a string with units
// ("10s", "500ms", "1h30m"): see carat_collector::options::duration. Each
// has a range; a value outside it is refused naming the range.

/// `interval` (agent and collectors): 10 ms, the shortest interval that
/// still leaves a core mostly idle with every system collector enabled
/// (tests run at 20 ms), to one day.
pub const INTERVAL_RANGE: SecondsRange = SecondsRange::new(0.01, 86_400.0);

/// A collector's `timeout`: as `interval`.
pub const RUN_TIMEOUT_RANGE: SecondsRange = INTERVAL_RANGE;

/// `splay` (agent and collectors): none at all, to one day (it is also
/// never more than the instance's interval).
pub const SPLAY_RANGE: SecondsRange = SecondsRange::new(0.0, 86_400.0);

/// `shutdown_timeout`: 0 (stop at once, counting what is left as dropped
/// or spooling it) to 10 minutes; init systems kill a service long before
/// that (systemd's default is 90 s).
pub const SHUTDOWN_TIMEOUT_RANGE: SecondsRange = SecondsRange::new(0.0, 600.0);

/// An output's `timeout` for a connect or a write: 10 ms to 10 minutes.
pub const OUTPUT_TIMEOUT_RANGE: SecondsRange = SecondsRange::new(0.01, 600.0);

/// An output's `reconnect_min` and `reconnect_max`: 10 ms to one hour
/// (and `reconnect_max` at least `reconnect_min`).
pub const RECONNECT_RANGE: SecondsRange = SecondsRange::new(0.01, 3_600.0);

fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    INTERVAL_RANGE.deserialize(d)
}

fn optional_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    INTERVAL_RANGE.deserialize(d).map(Some)
}

fn optional_run_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    RUN_TIMEOUT_RANGE.deserialize(d).map(Some)
}

fn splay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    SPLAY_RANGE.deserialize(d)
}

fn optional_splay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    SPLAY_RANGE.deserialize(d).map(Some)
}

fn shutdown_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    SHUTDOWN_TIMEOUT_RANGE.deserialize(d)
}

fn output_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    OUTPUT_TIMEOUT_RANGE.deserialize(d)
}

fn reconnect<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    RECONNECT_RANGE.deserialize(d)
}

/// The bounds of a collector's `max_metrics`: one sample, to 100 million
/// (a batch takes about 75 bytes a sample, so some 7 GB; the default is
/// [`carat_collector::Batch::DEFAULT_MAX_SAMPLES`]).
pub const MAX_METRICS_RANGE: std::ops::RangeInclusive<usize> = 1..=100_000_000;

fn max_metrics<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    usize::try_from(n)
        .ok()
        .filter(|n| MAX_METRICS_RANGE.contains(n))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{n} is not a valid number of samples: expected {} to {}",
                MAX_METRICS_RANGE.start(),
                MAX_METRICS_RANGE.end()
            ))
        })
}

/// An `ip:port` socket address, or the empty string for none.
fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.is_empty() && s.parse::<std::net::SocketAddr>().is_err() {
        return Err(serde::de::Error::custom(format!(
            "{s:?} is not an ip:port address (e.g. \"127.0.0.1:2041\" or \"[::1]:2041\"; \
             host names are not accepted, so the endpoint cannot end up on an address a \
             resolver chose)"
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_their_ends_and_nothing_outside() {
        for range in [
            INTERVAL_RANGE,
            SPLAY_RANGE,
            SHUTDOWN_TIMEOUT_RANGE,
            OUTPUT_TIMEOUT_RANGE,
            RECONNECT_RANGE,
        ] {
            assert!(range.check(range.min).is_ok(), "{range:?}");
            assert!(range.check(range.max).is_ok(), "{range:?}");
            for bad in [
                range.min - 0.001,
                range.max + 0.001,
                f64::NAN,
                f64::INFINITY,
            ] {
                let e = range.check(bad).unwrap_err();
                assert!(
                    e.contains(&format!("expected {} to {} seconds", range.min, range.max)),
                    "{e}"
                );
            }
        }
        assert_eq!(
            INTERVAL_RANGE.check(1e-9).unwrap_err(),
            "0.000000001 is not a valid number of seconds here: expected 0.01 to 86400 seconds"
        );
        assert_eq!(
            INTERVAL_RANGE.check(0.25).unwrap(),
            Duration::from_millis(250)
        );
    }
}
