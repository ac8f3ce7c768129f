//! Configuration: TOML files, their validation, and the built-in default.
//!
//! The main file has an `[agent]` table, one table per collector instance
//! (`[collector.cpu]`, or named instances of one kind such as
//! `[collector.haproxy.edge]`) and one per output (`[output.graphite]`,
//! `[output.graphite.dr]`). `agent.config_dir` names a directory of extra
//! `*.toml` files holding more collector and output tables. Every problem is
//! reported with the file, line and key it is at.

mod env;
mod error;
mod load;
mod types;

pub use error::{line_and_column, ConfigError, LineIndex};
pub use load::{
    load_file, load_file_with, load_str, load_str_with, output_options, Outputs, BUILTIN_NAME,
};
pub use types::{
    AgentConfig, AmqpConfig, CommonOptions, GraphiteConfig, GraphiteProtocol, NamePatterns,
    Patterns, SecondsRange, StatsdConfig, StatsdProtocol, StdoutConfig, COMMON_COLLECTOR_KEYS,
    INTERVAL_RANGE, MAX_METRICS_RANGE, OUTPUT_TIMEOUT_RANGE, RECONNECT_RANGE, RUN_TIMEOUT_RANGE,
    SHUTDOWN_TIMEOUT_RANGE, SPLAY_RANGE,
};

use std::path::PathBuf;

use crate::registry::BuildFn;

/// Where a table was defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line of the table's first key or header.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One configured collector instance.
#[derive(Clone)]
pub struct CollectorInstance {
    /// `cpu`, or `haproxy.edge` for a named instance.
    pub name: String,
    /// The collector kind.
    pub kind: &'static str,
    /// The kind's default metric path (Diamond's).
    pub default_path: &'static str,
    /// Options every collector has.
    pub common: CommonOptions,
    /// Every option of the instance as configured (a named instance's
    /// merged with its kind table's, `${VAR}`s substituted): two instances
    /// with equal settings build the same collector, which is how a reload
    /// tells an unchanged instance from a changed one.
    pub settings: toml::Table,
    /// Builds the collector from its validated options.
    pub build: BuildFn,
    /// Where it was configured.
    pub origin: Origin,
}

impl CollectorInstance {
    /// The metric path below the host name: the `path` option, else the
    /// kind's default path, followed by the instance name for named instances
    /// (`haproxy.edge`).
    pub fn path(&self) -> String {
        if let Some(p) = &self.common.path {
            return p.clone();
        }
        match self
            .name
            .strip_prefix(self.kind)
            .and_then(|r| r.strip_prefix('.'))
        {
            Some(instance) => format!("{}.{instance}", self.default_path),
            None => self.default_path.to_owned(),
        }
    }
}

impl std::fmt::Debug for CollectorInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorInstance")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("common", &self.common)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The settings of one output.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputSettings {
    /// Lines on standard output.
    Stdout(StdoutConfig),
    /// Carbon's plaintext or pickle protocol.
    Graphite(GraphiteConfig),
    /// StatsD.
    Statsd(StatsdConfig),
    /// Graphite plaintext published to an AMQP exchange.
    #[cfg(feature = "amqp")]
    Amqp(AmqpConfig),
}

impl OutputSettings {
    /// The output kinds configuration files may name.
    pub const KINDS: &'static [&'static str] = &[
        #[cfg(feature = "amqp")]
        "amqp",
        "graphite",
        "statsd",
        "stdout",
    ];

    /// The configured queue size, if any.
    pub fn queue_size(&self) -> Option<usize> {
        match self {
            OutputSettings::Stdout(c) => c.queue_size,
            OutputSettings::Graphite(c) => c.queue_size,
            OutputSettings::Statsd(c) => c.queue_size,
            #[cfg(feature = "amqp")]
            OutputSettings::Amqp(c) => c.queue_size,
        }
    }

    /// The output's `reconnect_min` and `reconnect_max`, for the outputs that
    /// reconnect with a backoff.
    pub fn reconnect(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        match self {
            OutputSettings::Graphite(c) => Some((c.reconnect_min, c.reconnect_max)),
            #[cfg(feature = "amqp")]
            OutputSettings::Amqp(c) => Some((c.reconnect_min, c.reconnect_max)),
            OutputSettings::Stdout(_) | OutputSettings::Statsd(_) => None,
        }
    }

    /// The output's whitelist and blacklist.
    pub fn filters(&self) -> (&Patterns, &Patterns) {
        match self {
            OutputSettings::Stdout(c) => (&c.metrics_whitelist, &c.metrics_blacklist),
            OutputSettings::Graphite(c) => (&c.metrics_whitelist, &c.metrics_blacklist),
            OutputSettings::Statsd(c) => (&c.metrics_whitelist, &c.metrics_blacklist),
            #[cfg(feature = "amqp")]
            OutputSettings::Amqp(c) => (&c.metrics_whitelist, &c.metrics_blacklist),
        }
    }
}

/// One configured output.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputInstance {
    /// `graphite`, or `graphite.dr` for a named instance.
    pub name: String,
    /// Its settings.
    pub settings: OutputSettings,
    /// Where it was configured.
    pub origin: Origin,
}

/// A complete, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `[agent]` table.
    pub agent: AgentConfig,
    /// Collector instances, enabled or not, in name order.
    pub collectors: Vec<CollectorInstance>,
    /// Outputs in name order.
    pub outputs: Vec<OutputInstance>,
    /// The files that were read, main file first.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// The proc root: `agent.proc_root`, else `$HOST_PROC`, else `/proc`.
    pub fn proc_root(&self) -> PathBuf {
        self.agent.proc_root()
    }

    /// The sys root: `agent.sys_root`, else `$HOST_SYS`, else `/sys`.
    pub fn sys_root(&self) -> PathBuf {
        self.agent.sys_root()
    }

    /// The files read, for logs: `/etc/carat/carat.toml, /etc/carat/conf.d/a.toml`.
    pub fn describe_files(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        names.join(", ")
    }
}

impl AgentConfig {
    /// The proc root: `proc_root`, else `$HOST_PROC`, else `/proc`.
    pub fn proc_root(&self) -> PathBuf {
        root_from(&self.proc_root, "HOST_PROC", "/proc")
    }

    /// The sys root: `sys_root`, else `$HOST_SYS`, else `/sys`.
    pub fn sys_root(&self) -> PathBuf {
        root_from(&self.sys_root, "HOST_SYS", "/sys")
    }

    /// What collector instance `instance`, whose runs may take
    /// `run_timeout`, is built with.
    pub fn environment(
        &self,
        instance: &str,
        run_timeout: std::time::Duration,
    ) -> carat_collector::Environment {
        carat_collector::Environment {
            proc_root: self.proc_root(),
            sys_root: self.sys_root(),
            instance: instance.to_owned(),
            run_timeout,
        }
    }

    /// The interval of an instance with options `common`: its own, else the
    /// agent's.
    pub fn interval_of(&self, common: &CommonOptions) -> std::time::Duration {
        common.interval.unwrap_or(self.interval)
    }

    /// How long a run of an instance with options `common` may take: its
    /// `timeout`, else its interval.
    pub fn run_timeout_of(&self, common: &CommonOptions) -> std::time::Duration {
        common.timeout.unwrap_or_else(|| self.interval_of(common))
    }
}

fn root_from(configured: &Option<PathBuf>, var: &str, default: &str) -> PathBuf {
    configured
        .clone()
        .or_else(|| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(default))
}
