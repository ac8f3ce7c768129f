//! The test harness and the agent publish through one function: for the same
//! batches they publish the same values, drop the same NaN and infinities,
//! filter the same names and give the same rates (counters, resets, wraps,
//! two samples at one instant, counters forgotten after a while).
//!
//! A property-style test: a few hundred random batches, from a fixed seed
//! (and the seed of `CARAT_TEST_SEED` when set, printed on failure).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carat::pipeline::{metric_prefix, NameFilter, Publisher};
use carat_collector::testing::{Harness, Published};
use carat_collector::{Batch, Collector, CollectorError, CounterWidth, Environment, SampleValue};
use serde::Deserialize;

/// One batch to replay: its samples, and the gap since the previous one.
#[derive(Clone, Debug)]
struct Step {
    gap: Duration,
    samples: Vec<(String, SampleValue)>,
}

/// What the replayed batches were stamped with by the harness.
#[derive(Clone, Copy, Debug)]
struct Stamp {
    taken_at: Instant,
    unix_seconds: i64,
}

#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    stamps: Vec<Stamp>,
}

static SCRIPTS: LazyLock<Mutex<HashMap<String, Script>>> = LazyLock::new(Default::default);

/// Options of [`Replay`].
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ReplayConfig {
    /// The script in [`SCRIPTS`].
    key: String,
}

/// Adds the samples of the next step of its script, and records the stamp
/// the harness gave the batch.
struct Replay {
    key: String,
}

impl Collector for Replay {
    type Config = ReplayConfig;
    const KIND: &'static str = "replay";
    const DESCRIPTION: &'static str = "test: replays scripted batches";
    const DEFAULT_PATH: &'static str = "replay";
    const SAMPLE: &'static str = "## --- replay ---\n# [collector.replay]\n# key = \"\"\n";

    fn new(config: ReplayConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Replay { key: config.key })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let mut scripts = SCRIPTS.lock().unwrap();
        let script = scripts.get_mut(&self.key).expect("a script");
        let step = script.steps.pop_front().expect("a step");
        for (name, value) in &step.samples {
            batch.push(name, *value);
        }
        script.stamps.push(Stamp {
            taken_at: batch.taken_at(),
            unix_seconds: batch.unix_seconds(),
        });
        Ok(())
    }
}

/// A random value for counter `name`, moving on from `previous`: mostly
/// growing, sometimes reset, sometimes wrapping at 32 bits.
fn counter(
    rng: &mut fastrand::Rng,
    previous: &mut HashMap<String, u64>,
    name: &str,
) -> SampleValue {
    let last = previous.get(name).copied();
    let (value, width) = match (rng.u8(0..20), last) {
        // A reset: back to a small value.
        (0, _) => (rng.u64(0..10), None),
        // A 32-bit counter near its top, or wrapping past it.
        (1, _) => (
            u64::from(u32::MAX) - rng.u64(0..1000),
            Some(CounterWidth::Bits32),
        ),
        (2, Some(l)) if l > u64::from(u32::MAX) - 1000 => {
            (rng.u64(0..1000), Some(CounterWidth::Bits32))
        }
        (_, Some(l)) => (l.saturating_add(rng.u64(0..100_000)), None),
        (_, None) => (rng.u64(0..1_000_000), None),
    };
    previous.insert(name.to_owned(), value);
    SampleValue::Counter(value, width)
}

fn gauge(rng: &mut fastrand::Rng) -> SampleValue {
    SampleValue::Gauge(match rng.u8(0..12) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => 0.0,
        4 => -rng.f64() * 1e6,
        _ => rng.f64() * 1e9,
    })
}

fn script(rng: &mut fastrand::Rng, steps: usize) -> Vec<Step> {
    // Names: some always there, some that come and go (long enough for the
    // publisher to forget their counters), some that change kind.
    let names: Vec<String> = (0..16).map(|i| format!("grp{}.m{i}", i % 3)).collect();
    let mut previous = HashMap::new();
    (0..steps)
        .map(|_| {
            let gap = match rng.u8(0..10) {
                0 => Duration::ZERO,
                1 => Duration::from_millis(rng.u64(1..1000)),
                _ => Duration::from_secs(rng.u64(1..30)),
            };
            let mut samples = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let present = match i % 4 {
                    0 => true,
                    1 => rng.u8(0..4) > 0,
                    _ => rng.u8(0..16) == 0,
                };
                if !present {
                    continue;
                }
                let value = if i % 5 == 4 && rng.bool() || i % 2 == 0 {
                    counter(rng, &mut previous, name)
                } else {
                    gauge(rng)
                };
                samples.push((name.clone(), value));
            }
            Step { gap, samples }
        })
        .collect()
}

/// The agent's publication of a batch, as the harness reports it: names
/// below the instance's path.
fn agent_publish(publisher: &mut Publisher, batch: &Batch, prefix: &str) -> Published {
    let (metrics, report) = publisher.publish(batch);
    let mut out = Published {
        samples: batch.len(),
        timestamp: metrics.timestamp(),
        report,
        metrics: BTreeMap::new(),
        failed_parts: Vec::new(),
    };
    for m in metrics.iter() {
        let name = m
            .path
            .strip_prefix(prefix)
            .and_then(|p| p.strip_prefix('.'))
            .expect("the instance's prefix");
        assert_eq!(m.timestamp, out.timestamp);
        out.metrics.insert(name.to_owned(), m.value);
    }
    out
}

async fn compare(seed: u64, filter: (&[String], &[String])) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let steps = script(&mut rng, 300);
    let key = format!("{seed}-{}", filter.0.len() + filter.1.len());
    SCRIPTS.lock().unwrap().insert(
        key.clone(),
        Script {
            steps: steps.iter().cloned().collect(),
            stamps: Vec::new(),
        },
    );

    // The harness.
    let mut harness =
        Harness::<Replay>::new(ReplayConfig { key: key.clone() }, Environment::default()).unwrap();
    harness.set_filter(NameFilter::new(filter.0, filter.1).unwrap());
    let mut by_harness = Vec::new();
    for step in &steps {
        by_harness.push(harness.collect_after(step.gap).await.unwrap());
    }

    // The agent's publisher, given the same batches with the same stamps.
    let stamps = SCRIPTS.lock().unwrap().remove(&key).unwrap().stamps;
    let prefix = metric_prefix("servers", "host", "", "replay");
    let mut publisher =
        Publisher::new(prefix.clone(), NameFilter::new(filter.0, filter.1).unwrap());
    let mut batch = Batch::new();
    let mut published = 0;
    let mut dropped = 0;
    let mut filtered = 0;
    for (i, (step, stamp)) in steps.iter().zip(&stamps).enumerate() {
        batch.clear();
        let wall = UNIX_EPOCH + Duration::from_secs(stamp.unix_seconds as u64);
        batch.stamp(stamp.taken_at, wall);
        for (name, value) in &step.samples {
            batch.push(name, *value);
        }
        let by_agent = agent_publish(&mut publisher, &batch, &prefix);
        assert_eq!(
            by_agent, by_harness[i],
            "seed {seed}, batch {i}: the agent and the harness differ"
        );
        published += by_agent.metrics.len();
        dropped += by_agent.report.non_finite;
        filtered += by_agent.report.filtered;
    }
    // The script exercised what it is meant to.
    assert!(published > 500, "{published}");
    assert!(dropped > 20, "{dropped}");
    assert_eq!(filtered > 0, !(filter.0.is_empty() && filter.1.is_empty()));
}

fn seeds() -> Vec<u64> {
    match std::env::var("CARAT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => vec![
            1,
            42,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(7, |d| d.as_secs()),
        ],
    }
}

#[tokio::test]
async fn the_harness_publishes_what_the_agent_publishes() {
    for seed in seeds() {
        compare(seed, (&[], &[])).await;
    }
}

#[tokio::test]
async fn with_filters_too() {
    let whitelist = ["grp[01]".to_owned()];
    let blacklist = ["grp1\\.m1$".to_owned(), "grp0\\.m[39]".to_owned()];
    for seed in seeds() {
        compare(seed, (&whitelist, &blacklist)).await;
    }
}

/// NaN: the agent's pipeline drops it, and so does the harness, counted.
#[tokio::test]
async fn nan_is_dropped_by_both() {
    let key = "nan".to_owned();
    let samples = vec![
        ("a".to_owned(), SampleValue::Gauge(f64::NAN)),
        ("b".to_owned(), SampleValue::Gauge(2.0)),
    ];
    SCRIPTS.lock().unwrap().insert(
        key.clone(),
        Script {
            steps: [Step {
                gap: Duration::ZERO,
                samples,
            }]
            .into(),
            stamps: Vec::new(),
        },
    );
    let mut harness = Harness::<Replay>::new(ReplayConfig { key }, Environment::default()).unwrap();
    let p = harness.collect().await.unwrap();
    assert_eq!(p.to_lines(), "b 2\n");
    assert_eq!(p.report.non_finite, 1);
}
