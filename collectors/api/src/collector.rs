//! The `Collector` trait and what a collector is given when it is built.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde::de::DeserializeOwned;

use crate::batch::Batch;
use crate::error::CollectorError;

/// What the agent tells a collector about the host when building it.
#[derive(Clone, Debug)]
pub struct Environment {
    /// Where `/proc` is mounted: `/proc` on the host itself, the host's
    /// `/proc` bind-mounted elsewhere when carat runs in a container.
    pub proc_root: PathBuf,
    /// Where `/sys` is mounted (see `proc_root`).
    pub sys_root: PathBuf,
    /// The name of this collector instance (`cpu`, `haproxy.edge`).
    pub instance: String,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            instance: String::new(),
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
