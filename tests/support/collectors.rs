//! Collectors that exist only for tests: one that counts, and ones that
//! panic, hang or fail on purpose. Tests control them through [`control`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// The sample configuration of the test collectors.
pub const SAMPLE: &str = r#"## --- sequence: publishes 1, 2, 3, one per run ---
# [collector.sequence]
# key = ""             # the control block it reports to

## --- feed: fixed gauges and a steady counter ---
# [collector.feed]
# key = ""             # the control block it reports to

## --- misbehave: panics, hangs or fails on purpose ---
# [collector.misbehave]
# mode = "panic"       # panic, hang, error, block or fail_part
# block_ms = 0         # for block: milliseconds to block the thread
# calm_runs = 0        # runs that behave before it misbehaves
# bad_runs = 0         # runs that misbehave, then it behaves again (0: forever)

## --- tabled: options that are a map and a list of tables ---
# [collector.tabled]
# labels = {}          # a map: each label is published
# scale = 0.0          # multiplies every value
# [[collector.tabled.queries]]  # a list of tables
# name = "q"
# value = 0.0
"#;

/// Shared between a test and the collector instances it configured.
#[derive(Debug, Default)]
pub struct Control {
    /// While true, `sequence` runs but publishes nothing.
    pub paused: AtomicBool,
    /// Every (timestamp, value) a `sequence` instance published.
    pub emitted: Mutex<Vec<(i64, f64)>>,
    /// The last value `sequence` published: kept here, not in the
    /// collector, so values go on rising across agent restarts.
    pub last: std::sync::atomic::AtomicU64,
}

impl Control {
    /// What was published, keeping the last value of each timestamp (as
    /// whisper does when two points fall in the same second).
    pub fn expected_points(&self) -> Vec<(i64, f64)> {
        let emitted = self.emitted.lock().unwrap();
        let mut by_ts = std::collections::BTreeMap::new();
        for &(ts, v) in emitted.iter() {
            by_ts.insert(ts, v);
        }
        by_ts.into_iter().collect()
    }

    /// How many points were published.
    pub fn count(&self) -> usize {
        self.emitted.lock().unwrap().len()
    }
}

static CONTROLS: LazyLock<Mutex<HashMap<String, Arc<Control>>>> = LazyLock::new(Default::default);

/// The control block for `key` (created on first use).
pub fn control(key: &str) -> Arc<Control> {
    let mut map = CONTROLS.lock().unwrap();
    Arc::clone(map.entry(key.to_owned()).or_default())
}

/// Options of `sequence`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequenceConfig {
    /// The [`control`] key this instance reports to.
    pub key: String,
}

/// Publishes `value` = 1, 2, 3… one per run, and records each.
pub struct Sequence {
    control: Arc<Control>,
}

impl Collector for Sequence {
    type Config = SequenceConfig;
    const KIND: &'static str = "sequence";
    const DESCRIPTION: &'static str = "test: publishes 1, 2, 3, … one per run";
    const DEFAULT_PATH: &'static str = "sequence";
    const SAMPLE: &'static str = SAMPLE;

    fn new(config: SequenceConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Sequence {
            control: control(&config.key),
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        if self.control.paused.load(Ordering::SeqCst) {
            return Ok(());
        }
        let value = (self.control.last.fetch_add(1, Ordering::SeqCst) + 1) as f64;
        batch.gauge("value", value);
        self.control
            .emitted
            .lock()
            .unwrap()
            .push((batch.unix_seconds(), value));
        Ok(())
    }
}

/// Options of `feed`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// The [`control`] key this instance reports to.
    pub key: String,
}

/// Publishes a positive gauge (`positive` = 7.5), a negative one
/// (`negative` = -5.25) and a counter `events` that grows by 10 per run;
/// records each run's counter value.
pub struct Feed {
    control: Arc<Control>,
    events: u64,
}

impl Collector for Feed {
    type Config = FeedConfig;
    const KIND: &'static str = "feed";
    const DESCRIPTION: &'static str = "test: fixed gauges and a steady counter";
    const DEFAULT_PATH: &'static str = "feed";
    const SAMPLE: &'static str = SAMPLE;

    fn new(config: FeedConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Feed {
            control: control(&config.key),
            events: 1_000,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        if self.control.paused.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.events += 10;
        batch.gauge("positive", 7.5);
        batch.gauge("negative", -5.25);
        batch.counter("events", self.events);
        self.control
            .emitted
            .lock()
            .unwrap()
            .push((batch.unix_seconds(), self.events as f64));
        Ok(())
    }
}

/// How `misbehave` misbehaves.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Panics in every run.
    #[default]
    Panic,
    /// Never finishes a run.
    Hang,
    /// Returns an error from every run.
    Error,
    /// Blocks its thread (not just the task) for `block_ms`, then succeeds.
    Block,
    /// Publishes `whole` and reports its part `half` as failed
    /// (`Batch::fail_part`), as one failing query of several does.
    #[serde(rename = "fail_part")]
    FailPart,
}

/// Options of `misbehave`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MisbehaveConfig {
    /// What to do.
    pub mode: Mode,
    /// For `block`: milliseconds to block the thread.
    pub block_ms: u64,
    /// Runs that behave (publish `calm 1`) before it misbehaves.
    pub calm_runs: u64,
    /// Runs that misbehave after those, before it behaves again for good
    /// (0: it never does).
    pub bad_runs: u64,
}

/// A collector that fails in the way it is told to.
pub struct Misbehave {
    config: MisbehaveConfig,
    runs: u64,
}

impl Collector for Misbehave {
    type Config = MisbehaveConfig;
    const KIND: &'static str = "misbehave";
    const DESCRIPTION: &'static str = "test: panics, hangs or fails on purpose";
    const DEFAULT_PATH: &'static str = "misbehave";
    const SAMPLE: &'static str = SAMPLE;

    fn new(config: MisbehaveConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Misbehave { config, runs: 0 })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        self.runs += 1;
        let (calm, bad) = (self.config.calm_runs, self.config.bad_runs);
        if self.runs <= calm || (bad > 0 && self.runs > calm + bad) {
            batch.gauge("calm", 1.0);
            return Ok(());
        }
        match self.config.mode {
            Mode::Panic => panic!("misbehave: deliberate panic"),
            Mode::Hang => std::future::pending().await,
            Mode::Error => {
                batch.gauge("partial", 1.0);
                Err(CollectorError::parse(
                    "misbehave test source",
                    "deliberate failure",
                ))
            }
            Mode::Block => {
                std::thread::sleep(std::time::Duration::from_millis(self.config.block_ms));
                batch.gauge("blocked", 1.0);
                Ok(())
            }
            Mode::FailPart => {
                batch.gauge("whole", 1.0);
                batch.fail_part(
                    "part half",
                    CollectorError::parse("misbehave part half", "deliberate failure"),
                );
                Ok(())
            }
        }
    }
}

/// One entry of `tabled`'s `queries`: `[[collector.tabled.queries]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Published as `queries.<name>`.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: f64,
}

/// Options of `tabled`: a map and a list of tables beside a plain option.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TabledConfig {
    /// A map option: `labels = { env = "prod" }` or `[collector.tabled.labels]`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// A list of tables: `[[collector.tabled.queries]]`.
    pub queries: Vec<Query>,
    /// A plain option: multiplies every value.
    pub scale: f64,
}

/// Publishes `labels.<key>.<value>` = 1 for each label and
/// `queries.<name>` = value × scale for each query: its output shows the
/// options it was built with.
pub struct Tabled {
    config: TabledConfig,
}

impl Collector for Tabled {
    type Config = TabledConfig;
    const KIND: &'static str = "tabled";
    const DESCRIPTION: &'static str = "test: options that are a map and a list of tables";
    const DEFAULT_PATH: &'static str = "tabled";
    const SAMPLE: &'static str = SAMPLE;

    fn new(config: TabledConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Tabled { config })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        for (k, v) in &self.config.labels {
            batch.gauge_parts(&["labels", k, v], 1.0);
        }
        for q in &self.config.queries {
            batch.gauge_parts(&["queries", &q.name], q.value * self.config.scale);
        }
        Ok(())
    }
}

/// The built-in collectors plus the test ones.
pub fn registry() -> carat::Registry {
    let mut r = carat::Registry::builtin();
    r.register::<Sequence>()
        .register::<Misbehave>()
        .register::<Feed>()
        .register::<Tabled>();
    r
}
