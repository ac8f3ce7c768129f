//! carat's system collectors, reading the kernel's `/proc` files:
//!
//! - [`Cpu`] (`cpu`): share of CPU time per state, per core and in total;
//! - [`Memory`] (`memory`): memory and swap sizes;
//! - [`LoadAvg`] (`loadavg`): load averages and process counts;
//! - [`Uptime`] (`uptime`): time since boot;
//! - [`DiskSpace`] (`diskspace`): space and inodes per mounted filesystem;
//! - [`DiskUsage`] (`iostat`): iostat-style I/O per disk;
//! - [`Network`] (`network`): traffic and errors per interface;
//! - [`VmStat`] (`vmstat`): paging and swapping rates;
//! - [`Sockets`] (`sockets`): sockets in use per protocol;
//! - [`Tcp`] (`tcp`): TCP counters;
//! - [`Process`] (`process`): named groups of processes.
//!
//! Metric names are Diamond's, so existing Graphite dashboards keep working.
//! On other systems than Linux, `cpu`, `memory`, `loadavg`, `diskspace`,
//! `network` and `process` read through the `sysinfo` crate instead (their
//! `source` option, see [`source`]), publishing the same names for what it
//! can tell; the others are Linux-only and refuse to be built elsewhere.
//! Every file is read under [`carat_collector::Environment::proc_root`], so
//! the collectors work with a host's `/proc` bind-mounted into a container,
//! and tests point them at recorded files. The README of this crate lists
//! every option and metric.
#![warn(missing_docs)]

pub mod cpu;
pub mod diskspace;
pub mod diskusage;
pub mod loadavg;
pub mod memory;
pub mod network;
pub mod process;
mod procfile;
pub mod sockets;
pub mod source;
pub mod tcp;
pub mod uptime;
pub mod vmstat;

pub use cpu::{Cpu, CpuConfig};
pub use diskspace::{DiskSpace, DiskSpaceConfig};
pub use diskusage::{DiskUsage, DiskUsageConfig};
pub use loadavg::{LoadAvg, LoadAvgConfig};
pub use memory::{Memory, MemoryConfig};
pub use network::{Network, NetworkConfig};
pub use process::{Process, ProcessConfig};
pub use sockets::{Sockets, SocketsConfig};
pub use tcp::{Tcp, TcpConfig};
pub use uptime::{Uptime, UptimeConfig};
pub use vmstat::{VmStat, VmStatConfig};

#[cfg(test)]
pub(crate) mod test_support {
    //! Throw-away `/proc` roots for tests.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use carat_collector::options::{Anchoring, ByteUnits, Patterns};
    use carat_collector::testing::{Harness, Published};
    use carat_collector::{Collector, CollectorError, Environment};
    use serde::de::value::{Error, MapDeserializer};
    use serde::de::{DeserializeOwned, IntoDeserializer};

    use crate::source::Source;

    /// A directory under the system's temp dir standing in for `/proc`,
    /// removed when dropped.
    pub struct ProcDir {
        pub path: PathBuf,
    }

    impl ProcDir {
        pub fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("carat-system-{}-{n}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            ProcDir { path }
        }

        /// Writes (or replaces) `relative` with `contents`.
        pub fn write(&self, relative: &str, contents: &str) {
            self.write_bytes(relative, contents.as_bytes());
        }

        pub fn write_bytes(&self, relative: &str, contents: &[u8]) {
            std::fs::write(self.path.join(relative), contents).unwrap();
        }

        /// Copies a recorded fixture file in as `relative`.
        pub fn copy_fixture(&self, fixture: &str, relative: &str) {
            std::fs::copy(fixture_path(fixture), self.path.join(relative)).unwrap();
        }

        pub fn remove(&self, relative: &str) {
            std::fs::remove_file(self.path.join(relative)).unwrap();
        }

        pub fn env(&self) -> Environment {
            Environment {
                proc_root: self.path.clone(),
                ..Environment::default()
            }
        }
    }

    impl Drop for ProcDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    /// A harness over a throw-away proc root whose `files` are replaced
    /// before each run, with the harness clock moved a known step: for
    /// tests of what successive readings publish (rates, resets, devices
    /// coming and going).
    pub struct Stepper<C: Collector> {
        /// The proc root.
        pub dir: ProcDir,
        /// The harness running the collector over it.
        pub harness: Harness<C>,
        /// The files of the proc root a run reads (`stat`, `net/dev`).
        files: &'static [&'static str],
    }

    impl<C: Collector> Stepper<C> {
        /// A collector built with `config` over a new proc root (`tag` names
        /// its directory) that will hold `files`.
        pub fn new(tag: &str, files: &'static [&'static str], config: C::Config) -> Self {
            let dir = ProcDir::new(tag);
            for file in files {
                if let Some(parent) = Path::new(file).parent() {
                    std::fs::create_dir_all(dir.path.join(parent)).unwrap();
                }
            }
            let harness = Harness::<C>::new(config, dir.env()).unwrap();
            Stepper {
                dir,
                harness,
                files,
            }
        }

        /// Writes `contents`, one for each of the files, and runs the
        /// collector `secs` seconds after its previous run.
        pub async fn run(
            &mut self,
            secs: u64,
            contents: &[&str],
        ) -> Result<Published, CollectorError> {
            let bytes: Vec<&[u8]> = contents.iter().map(|c| c.as_bytes()).collect();
            self.run_bytes(secs, &bytes).await
        }

        /// As [`run`](Self::run), with contents that need not be UTF-8.
        pub async fn run_bytes(
            &mut self,
            secs: u64,
            contents: &[&[u8]],
        ) -> Result<Published, CollectorError> {
            assert_eq!(contents.len(), self.files.len(), "one content per file");
            for (file, content) in self.files.iter().zip(contents) {
                self.dir.write_bytes(file, content);
            }
            self.harness.collect_after(Duration::from_secs(secs)).await
        }

        /// Copies the recorded `fixtures` in, one for each of the files, and
        /// runs the collector `secs` seconds after its previous run, which
        /// must succeed.
        pub async fn run_fixtures(&mut self, secs: u64, fixtures: &[impl AsRef<str>]) -> Published {
            assert_eq!(fixtures.len(), self.files.len(), "one fixture per file");
            for (file, fixture) in self.files.iter().zip(fixtures) {
                self.dir.copy_fixture(fixture.as_ref(), file);
            }
            self.harness
                .collect_after(Duration::from_secs(secs))
                .await
                .unwrap()
        }
    }

    /// `tests/fixtures/<relative>` of this crate.
    pub fn fixture_path(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(relative)
    }

    /// `patterns`, compiled (for options given in tests).
    pub fn regexes<A: Anchoring>(patterns: &[&str]) -> Patterns<A> {
        Patterns::new(patterns.iter().copied()).unwrap()
    }

    /// The units `names` (for options given in tests).
    pub fn byte_units(names: &[&str]) -> ByteUnits {
        ByteUnits::parse(names).unwrap()
    }

    /// The names of `units`.
    pub fn unit_names(units: &ByteUnits) -> Vec<&'static str> {
        units.iter().map(|u| u.name()).collect()
    }

    /// An environment whose proc root is the recorded fixture directory `dir`.
    pub fn fixture_env(dir: &str) -> Environment {
        Environment {
            proc_root: fixture_path(dir),
            ..Environment::default()
        }
    }

    /// Deserializes a collector's options from `pairs`, as from a
    /// configuration table holding them.
    pub fn config_from<T, V>(pairs: Vec<(&'static str, V)>) -> Result<T, Error>
    where
        T: DeserializeOwned,
        V: IntoDeserializer<'static, Error>,
    {
        T::deserialize(MapDeserializer::new(pairs.into_iter()))
    }

    /// The options parsed from `source = "auto"`, `"proc"` and `"sysinfo"`,
    /// each with the [`Source`] it was parsed from, after asserting that
    /// `source_of` finds that source in them.
    pub fn source_configs<T: DeserializeOwned>(
        source_of: impl Fn(&T) -> Source,
    ) -> Vec<(T, Source)> {
        [
            ("auto", Source::Auto),
            ("proc", Source::Proc),
            ("sysinfo", Source::Sysinfo),
        ]
        .into_iter()
        .map(|(text, source)| {
            let config: T = config_from(vec![("source", text)]).unwrap();
            assert_eq!(source_of(&config), source);
            (config, source)
        })
        .collect()
    }

    /// Asserts that collector `C` parses each value of its `source` option
    /// (see [`source_configs`]) and, on Linux, builds with each.
    pub fn assert_source_option<C: Collector>(source_of: impl Fn(&C::Config) -> Source) {
        for (config, _) in source_configs(source_of) {
            #[cfg(target_os = "linux")]
            assert!(C::new(config, &Environment::default()).is_ok());
            #[cfg(not(target_os = "linux"))]
            drop(config);
        }
    }

    /// The error of `source = value` for collector options `T`, as text.
    pub fn source_error<T: DeserializeOwned + std::fmt::Debug>(value: &'static str) -> String {
        config_from::<T, _>(vec![("source", value)])
            .unwrap_err()
            .to_string()
    }

    /// Runs collector `C` once over a proc root holding only `file` with
    /// `contents`, expecting a parse error naming that file; returns the
    /// error's text.
    pub async fn parse_error_of<C: Collector>(
        config: C::Config,
        file: &str,
        contents: &[u8],
    ) -> String {
        let dir = ProcDir::new(&format!("{}-garbage", C::KIND));
        dir.write_bytes(file, contents);
        let mut h = Harness::<C>::new(config, dir.env()).unwrap();
        let err = h.collect().await.unwrap_err();
        assert_eq!(
            err.label(),
            "parse",
            "{:?}: {err}",
            String::from_utf8_lossy(contents)
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.path.join(file).display().to_string()),
            "{msg}"
        );
        msg
    }

    /// The label of the error of collector `C` over an empty proc root.
    pub async fn error_label_without_files<C: Collector>(config: C::Config) -> &'static str {
        let dir = ProcDir::new(&format!("{}-missing", C::KIND));
        let mut h = Harness::<C>::new(config, dir.env()).unwrap();
        h.collect().await.unwrap_err().label()
    }

    /// Asserts that `name` was published with a value within 1e-9 of `expected`.
    #[track_caller]
    pub fn assert_metric(
        published: &carat_collector::testing::Published,
        name: &str,
        expected: f64,
    ) {
        let Some(actual) = published.get(name) else {
            panic!(
                "{name} was not published; published: {:?}",
                published.names().collect::<Vec<_>>()
            );
        };
        assert!(
            (actual - expected).abs() < 1e-9,
            "{name} = {actual}, expected {expected}"
        );
    }
}
