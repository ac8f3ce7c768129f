//! The `Collector` trait and what a collector is given when it is built.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::batch::Batch;
use crate::error::CollectorError;

/// What the agent tells a collector about the host when building it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// Where `/proc` is mounted: `/proc` on the host itself, the host's
    /// `/proc` bind-mounted elsewhere when carat runs in a container.
    pub proc_root: PathBuf,
    /// Where `/sys` is mounted (see `proc_root`).
    pub sys_root: PathBuf,
    /// The name of this collector instance (`cpu`, `haproxy.edge`).
    pub instance: String,
    /// How long one run may take before the agent abandons it (the
    /// instance's `timeout`, by default its interval). A collector that
    /// waits on something outside the agent (a query, a command) bounds its
    /// own waits below this, so that it, not the agent, says what was slow.
    pub run_timeout: Duration,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            instance: String::new(),
            run_timeout: Duration::from_secs(10),
        }
    }
}

impl Environment {
    /// `relative` under the proc root: `proc_path("stat")` → `/proc/stat`.
    pub fn proc_path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.proc_root.join(relative)
    }

    /// `relative` under the sys root.
    pub fn sys_path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.sys_root.join(relative)
    }
}

/// A source of metrics.
///
/// The agent builds one value per configured instance with [`Collector::new`]
/// and calls [`Collector::collect`] on the instance's interval. A collector
/// keeps whatever state it needs between runs (a previous reading, an open
/// connection). It never sleeps or retries on its own: the agent times each
/// run out, backs off after errors, and rebuilds a collector that panicked.
///
/// Counters are added to the batch raw ([`Batch::counter`]); the agent turns
/// them into rates per second, so every collector gets the same rate rules.
///
/// The options a user may set are `Config`, read from the instance's table in
/// the configuration file with serde. Put `#[serde(deny_unknown_fields,
/// default)]` on it so that a mistyped key is an error naming the key, and
/// every option has a default. Options common to all collectors (`interval`,
/// `path`, `enabled`, …) are handled by the agent and never reach `Config`.
///
/// # Options that are tables, and named instances
///
/// An option may be a table (`labels = { env = "prod" }`, or
/// `[collector.<kind>.labels]`) or a list of tables
/// (`[[collector.<kind>.queries]]`), while a table under
/// `[collector.<kind>]` may also be a named instance
/// (`[collector.haproxy.edge]`). The agent tells them apart by the kind's
/// option names, [`Collector::options`]:
///
/// 1. a key of `[collector.<kind>]` that is an option of the kind (its own,
///    or one every collector has) is that option, whatever its value;
/// 2. any other key whose value is a table is a named instance: its name
///    is letters, digits, `_` and `-` (it becomes a component of the
///    metric path), and its table holds options of the kind (or nothing);
/// 3. anything else is an error that names the key and lists the kind's
///    options: a key that is not an option, or a table that is neither an
///    option nor an instance (a misspelt option, an instance name with a
///    dot, a table none of whose keys is an option).
///
/// Beside named instances, the kind table's options (tables included) are
/// defaults for each instance; an instance's own value of an option
/// replaces the default whole (tables are not merged key by key).
///
/// `options()` is read from `Config`'s derived `Deserialize`
/// ([`crate::fields::of`]): the field names, renames and aliases serde
/// itself accepts, so the list cannot drift from `Config`. A `Config` with
/// a hand-written `Deserialize` or a `#[serde(flatten)]` field has no such
/// list: override `options()` then (the agent's consistency test checks
/// every key of the kind's sample configuration against it).
///
/// # Example
///
/// A complete collector that publishes the number of open file descriptors
/// of the system from `/proc/sys/fs/file-nr`:
///
/// ```
/// use carat_collector::{Batch, Collector, CollectorError, Environment};
/// use serde::Deserialize;
/// use std::path::PathBuf;
///
/// /// Options of the `filenr` collector.
/// #[derive(Clone, Debug, Default, Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// pub struct FileNrConfig {
///     /// Also publish the system-wide maximum.
///     pub include_max: bool,
/// }
///
/// pub struct FileNr {
///     path: PathBuf,
///     config: FileNrConfig,
/// }
///
/// impl Collector for FileNr {
///     type Config = FileNrConfig;
///     const KIND: &'static str = "filenr";
///     const DESCRIPTION: &'static str = "Open file handles of the whole system";
///     const DEFAULT_PATH: &'static str = "files";
///     // Usually include_str!("../sample.toml"), shared by the crate's kinds.
///     const SAMPLE: &'static str =
///         "## --- filenr: open files ---\n# [collector.filenr]\n# include_max = false  # the maximum too\n";
///
///     fn new(config: FileNrConfig, env: &Environment) -> Result<Self, CollectorError> {
///         Ok(FileNr { path: env.proc_path("sys/fs/file-nr"), config })
///     }
///
///     async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
///         let text = std::fs::read_to_string(&self.path)
///             .map_err(|e| CollectorError::io(&self.path, e))?;
///         let mut fields = text.split_whitespace().map(|f| {
///             f.parse::<f64>().map_err(|e| {
///                 CollectorError::parse(self.path.display().to_string(), format!("{f:?}: {e}"))
///             })
///         });
///         let (Some(open), Some(_free), Some(max)) = (fields.next(), fields.next(), fields.next()) else {
///             return Err(CollectorError::parse(self.path.display().to_string(), "expected 3 fields"));
///         };
///         batch.gauge("open", open?);
///         if self.config.include_max {
///             batch.gauge("max", max?);
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The test harness runs a collector the way the agent does.
/// let dir = std::env::temp_dir().join(format!("filenr-doc-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("sys/fs")).unwrap();
/// std::fs::write(dir.join("sys/fs/file-nr"), "1184\t0\t9223372036854775807\n").unwrap();
/// let env = Environment { proc_root: dir.clone(), ..Environment::default() };
/// let mut harness = carat_collector::testing::Harness::<FileNr>::new(FileNrConfig::default(), env).unwrap();
/// let published = harness.collect().await.unwrap();
/// assert_eq!(published.get("open"), Some(1184.0));
/// assert_eq!(published.get("max"), None);
/// std::fs::remove_dir_all(dir).unwrap();
/// # }
/// ```
pub trait Collector: Send + 'static {
    /// The collector's own options.
    type Config: DeserializeOwned + Default + Clone + Send + Sync + 'static;

    /// The name used in configuration files: `[collector.<KIND>]`.
    const KIND: &'static str;
    /// One line for `carat list`.
    const DESCRIPTION: &'static str;
    /// The path under the host name that metrics are published at, unless
    /// the instance sets `path` (Diamond's path for the same collector).
    const DEFAULT_PATH: &'static str;
    /// The commented sample configuration of the crate the kind is in,
    /// usually `include_str!("../sample.toml")`, shared by all its kinds:
    /// a section per kind, starting at a line `## --- <kind>: …`, that
    /// shows every option with its default and a comment (the format is
    /// [`crate::sample`]'s). `carat sample-config` and the shipped
    /// `conf/carat.toml` are assembled from the sections of the kinds the
    /// agent registers, and the agent's tests fail when a kind, or one of
    /// its options, is missing from it, from the crate's README or from
    /// `carat list`.
    const SAMPLE: &'static str;

    /// The keys of `Config`: the options of this kind, as opposed to named
    /// instances (see "Options that are tables" above). Provided: the
    /// field names (renames and aliases included) of `Config`'s derived
    /// `Deserialize`, none when it is not a derived struct.
    fn options() -> &'static [&'static str]
    where
        Self: Sized,
    {
        crate::fields::of::<Self::Config>().unwrap_or(&[])
    }

    /// Builds a collector from its options. Fails on options that cannot
    /// work; does not fail because the source is down right now (that is a
    /// `collect` error, retried by the agent).
    fn new(config: Self::Config, env: &Environment) -> Result<Self, CollectorError>
    where
        Self: Sized;

    /// Takes one reading and adds its samples to `batch`.
    fn collect(
        &mut self,
        batch: &mut Batch,
    ) -> impl Future<Output = Result<(), CollectorError>> + Send;
}

/// A boxed future returned by [`DynCollector::collect_boxed`].
pub type CollectFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CollectorError>> + Send + 'a>>;

/// The object-safe face of a [`Collector`], for the agent to hold
/// collectors of different types side by side. Every `Collector` is one.
pub trait DynCollector: Send {
    /// Runs [`Collector::collect`].
    fn collect_boxed<'a>(&'a mut self, batch: &'a mut Batch) -> CollectFuture<'a>;
}

impl<C: Collector> DynCollector for C {
    fn collect_boxed<'a>(&'a mut self, batch: &'a mut Batch) -> CollectFuture<'a> {
        Box::pin(self.collect(batch))
    }
}
