//! The collector kinds this agent knows, and how each is built from its
//! configuration table.

use std::collections::BTreeMap;
use std::sync::Arc;

use carat_collector::{Batch, CollectFuture, Collector, CollectorError, DynCollector, Environment};
use serde::Deserialize;

/// Builds a collector instance from its already-validated options. Kept so a
/// collector that panicked or hung can be rebuilt from the same options.
pub type BuildFn =
    Arc<dyn Fn(&Environment) -> Result<Box<dyn DynCollector>, CollectorError> + Send + Sync>;

type ParseFn = fn(toml::de::ValueDeserializer<'_>) -> Result<BuildFn, toml::de::Error>;

/// One kind of collector (`cpu`, `haproxy`, …).
#[derive(Clone)]
pub struct CollectorKind {
    /// The name used in `[collector.<kind>]`.
    pub kind: &'static str,
    /// One line for `carat list`.
    pub description: &'static str,
    /// The metric path used when an instance sets none.
    pub default_path: &'static str,
    /// The kind's own option names ([`Collector::options`]): a key of
    /// `[collector.<kind>]` that is one of these (or an option every
    /// collector has) is an option, never a named instance.
    pub options: &'static [&'static str],
    /// The kind's section of its crate's sample configuration
    /// ([`Collector::SAMPLE`], [`carat_collector::sample::section`]); `None`
    /// when the crate's sample has no section for it.
    pub sample: Option<&'static str>,
    parse: ParseFn,
}

impl CollectorKind {
    /// Validates an instance's options and returns how to build it.
    pub fn parse(
        &self,
        options: toml::de::ValueDeserializer<'_>,
    ) -> Result<BuildFn, toml::de::Error> {
        (self.parse)(options)
    }
}

fn parse_options<C: Collector>(
    options: toml::de::ValueDeserializer<'_>,
) -> Result<BuildFn, toml::de::Error> {
    let config = C::Config::deserialize(options)?;
    Ok(Arc::new(move |env: &Environment| {
        let collector = C::new(config.clone(), env)?;
        Ok(Box::new(collector) as Box<dyn DynCollector>)
    }))
}

/// Wraps `build` so that each collector it builds fills a batch of at most
/// `max_samples` samples per run (the instance's `max_metrics`): beyond it
/// the batch refuses samples, so the run's memory stops growing, and the
/// scheduler fails the run ([`Batch::check_limit`]).
pub fn limit_samples(build: BuildFn, max_samples: usize) -> BuildFn {
    Arc::new(move |env: &Environment| {
        let inner = build(env)?;
        Ok(Box::new(SampleLimit { inner, max_samples }) as Box<dyn DynCollector>)
    })
}

/// A collector whose runs are bounded to `max_samples` samples.
struct SampleLimit {
    inner: Box<dyn DynCollector>,
    max_samples: usize,
}

impl DynCollector for SampleLimit {
    fn collect_boxed<'a>(&'a mut self, batch: &'a mut Batch) -> CollectFuture<'a> {
        batch.set_max_samples(self.max_samples);
        self.inner.collect_boxed(batch)
    }
}

/// The collector kinds available to configuration files.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, CollectorKind>,
    /// The kinds in the order they were registered.
    order: Vec<&'static str>,
}

impl Registry {
    /// An empty registry (tests register their own collectors).
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Every collector built into this binary.
    pub fn builtin() -> Self {
        let mut r = Registry::empty();
        r.register::<carat_system::Cpu>()
            .register::<carat_system::Memory>()
            .register::<carat_system::LoadAvg>()
            .register::<carat_system::Uptime>()
            .register::<carat_system::DiskSpace>()
            .register::<carat_system::DiskUsage>()
            .register::<carat_system::Network>()
            .register::<carat_system::VmStat>()
            .register::<carat_system::Sockets>()
            .register::<carat_system::Tcp>()
            .register::<carat_system::Process>();
        #[cfg(feature = "haproxy")]
        r.register::<carat_haproxy::Haproxy>();
        #[cfg(feature = "mongodb")]
        r.register::<carat_mongodb::Mongodb>();
        #[cfg(feature = "rabbitmq")]
        r.register::<carat_rabbitmq::Rabbitmq>();
        #[cfg(feature = "sql")]
        r.register::<carat_sql::Sql>();
        #[cfg(feature = "example")]
        r.register::<carat_example::Example>();
        #[cfg(feature = "exec")]
        r.register::<carat_exec::Exec>();
        r
    }

    /// Adds collector type `C` under its `KIND`, replacing any kind of that name.
    pub fn register<C: Collector>(&mut self) -> &mut Self {
        self.kinds.insert(
            C::KIND,
            CollectorKind {
                kind: C::KIND,
                description: C::DESCRIPTION,
                default_path: C::DEFAULT_PATH,
                options: C::options(),
                sample: carat_collector::sample::section(C::SAMPLE, C::KIND),
                parse: parse_options::<C>,
            },
        );
        if !self.order.contains(&C::KIND) {
            self.order.push(C::KIND);
        }
        self
    }

    /// The kind named `kind`.
    pub fn get(&self, kind: &str) -> Option<&CollectorKind> {
        self.kinds.get(kind)
    }

    /// All kinds, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &CollectorKind> {
        self.kinds.values()
    }

    /// All kinds in the order they were registered (the order of the
    /// sample configuration: the system collectors first).
    pub fn in_order(&self) -> impl Iterator<Item = &CollectorKind> {
        self.order.iter().filter_map(|k| self.kinds.get(k))
    }

    /// What `carat list` prints: a line per kind, sorted by name, with its
    /// description and path, then the kind's own options.
    pub fn list(&self) -> String {
        let mut out = String::new();
        for kind in self.kinds() {
            out.push_str(&format!(
                "{:<12} {}  (path: {})\n",
                kind.kind, kind.description, kind.default_path
            ));
            let options = if kind.options.is_empty() {
                "none of its own".to_owned()
            } else {
                kind.options.join(", ")
            };
            out.push_str(&format!("{:<12} options: {options}\n", ""));
        }
        out
    }
}
