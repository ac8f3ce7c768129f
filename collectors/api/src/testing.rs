//! A harness for collector authors: build a collector from its options, run
//! it the way the agent does, and look at what would be published.
//!
//! The harness turns each run's batch into published values with
//! [`crate::publish::Publisher`], the function the agent uses: the same
//! rates, the same NaN and infinity dropped, the same whitelist and
//! blacklist, the same stamps. What a test sees is what the agent would
//! publish below the collector's path.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::batch::Batch;
use crate::collector::{Collector, Environment};
use crate::error::CollectorError;
use crate::publish::{NameFilter, PublishReport, Publisher};

/// Runs one collector like the agent would, without an agent.
///
/// The harness has its own clock, which starts at the real time and which
/// [`Harness::collect_after`] moves forward, so that rates can be checked
/// against known steps. Each batch is stamped with that clock before the
/// run, as the agent stamps it. A collector that stamps its batch again
/// ([`Batch::stamp_now`], after a slow fetch) is published as of the later
/// of the two stamps, as the agent publishes it: in real time
/// ([`Harness::collect`]) that is the collector's own stamp; on a clock
/// that [`Harness::collect_after`] moved ahead of the real time, the
/// harness's, so that rates in tests stay exact.
pub struct Harness<C: Collector> {
    collector: C,
    publisher: Publisher,
    batch: Batch,
    /// The harness's monotonic clock.
    clock: Instant,
    /// The real instant and wall-clock time the harness was built: the
    /// wall clock a batch is stamped with is `wall_origin` plus how far
    /// `clock` is from `origin`.
    origin: Instant,
    wall_origin: SystemTime,
}

/// What one run published: metric names (below the collector's path) and
/// their values, sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Published {
    /// Name → value. A name added twice in one run keeps its last value, as
    /// Graphite keeps the last value written for a point.
    pub metrics: BTreeMap<String, f64>,
    /// How many samples the run added (counters with no rate yet included).
    pub samples: usize,
    /// The whole second every value was published with.
    pub timestamp: i64,
    /// What was left out: NaN or infinite values, and names the filter
    /// excluded.
    pub report: PublishReport,
    /// The parts of the run that failed ([`Batch::fail_part`]) while the
    /// rest was published.
    pub failed_parts: Vec<FailedPart>,
}

/// A part of a run that failed ([`crate::PartFailure`]), as a test sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedPart {
    /// The part's name.
    pub part: String,
    /// The error's kind ([`CollectorError::label`]).
    pub label: &'static str,
    /// The error's message, as the agent logs it.
    pub message: String,
}

impl Published {
    /// The value published under `name`, if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }

    /// The names that were published.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.metrics.keys().map(String::as_str)
    }

    /// The failure of part `part`, if it failed.
    pub fn failed_part(&self, part: &str) -> Option<&FailedPart> {
        self.failed_parts.iter().find(|f| f.part == part)
    }

    /// Graphite-style lines `name value`, sorted, for comparing with a file.
    pub fn to_lines(&self) -> String {
        self.metrics
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect()
    }
}

impl<C: Collector> Harness<C> {
    /// Builds the collector with `config` in `env`.
    pub fn new(config: C::Config, env: Environment) -> Result<Self, CollectorError> {
        let origin = Instant::now();
        Ok(Harness {
            collector: C::new(config, &env)?,
            publisher: Publisher::default(),
            batch: Batch::new(),
            clock: origin,
            origin,
            wall_origin: SystemTime::now(),
        })
    }

    /// Publishes only the names `filter` allows, as the agent does with the
    /// instance's `metrics_whitelist` and `metrics_blacklist`. Rate state
    /// starts again.
    pub fn set_filter(&mut self, filter: NameFilter) {
        self.publisher = Publisher::new(filter);
    }

    /// Runs the collector once, stamped with the real current time (or the
    /// harness's clock, if [`Harness::collect_after`] moved it past that).
    pub async fn collect(&mut self) -> Result<Published, CollectorError> {
        let now = Instant::now();
        self.clock = self.clock.max(now);
        self.collect_at(self.clock).await
    }

    /// Runs the collector once with the harness clock moved `elapsed`
    /// forward, so rates can be checked against known time steps.
    pub async fn collect_after(&mut self, elapsed: Duration) -> Result<Published, CollectorError> {
        self.clock += elapsed;
        self.collect_at(self.clock).await
    }

    /// The wall-clock time matching instant `at` of the harness's clock.
    fn wall(&self, at: Instant) -> SystemTime {
        self.wall_origin + at.saturating_duration_since(self.origin)
    }

    async fn collect_at(&mut self, at: Instant) -> Result<Published, CollectorError> {
        self.batch.clear();
        let wall = self.wall(at);
        self.batch.stamp(at, wall);
        self.collector.collect(&mut self.batch).await?;
        if self.batch.taken_at() > at {
            // Stamped again, later than the harness's clock: the harness's
            // clock follows.
            self.clock = self.batch.taken_at();
        } else if self.batch.taken_at() != at {
            self.batch.stamp(at, wall);
        }
        // As the agent: a run over the batch's bound fails.
        self.batch.check_limit()?;
        Ok(publish(&mut self.publisher, &self.batch))
    }

    /// The batch the runs fill, to set its bound
    /// ([`Batch::set_max_samples`]) as the agent does from `max_metrics`.
    pub fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// The collector itself, to inspect its state.
    pub fn collector(&mut self) -> &mut C {
        &mut self.collector
    }
}

/// Builds collector `C` from `config` in `env` expecting it to be refused,
/// as the agent's loader would refuse it: returns the option the error
/// names (the agent reports the error at that option's line; `None` for a
/// problem of several options together) and the error's message. Panics
/// when `C` builds, or when the error is not a configuration error (label
/// `config`).
pub fn refused<C: Collector>(config: C::Config, env: &Environment) -> (Option<String>, String) {
    match C::new(config, env) {
        Ok(_) => panic!("{}: the configuration should be refused", C::KIND),
        Err(e) => {
            assert_eq!(e.label(), "config", "{e}");
            (e.invalid_option().map(str::to_owned), e.to_string())
        }
    }
}

/// Publishes `batch` through `publisher`, as the agent does, into a
/// [`Published`]. For tests that build batches by hand.
pub fn publish(publisher: &mut Publisher, batch: &Batch) -> Published {
    let mut published = Published {
        samples: batch.len(),
        timestamp: batch.unix_seconds(),
        failed_parts: batch
            .failed_parts()
            .iter()
            .map(|f| FailedPart {
                part: f.part.clone(),
                label: f.error.label(),
                message: f.error.to_string(),
            })
            .collect(),
        ..Published::default()
    };
    published.report = publisher.publish(batch, |m| {
        published.metrics.insert(m.name.to_owned(), m.value);
    });
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options of [`Odd`].
    #[derive(Clone, Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct OddConfig {
        /// Stamp the batch again after this long.
        restamp_after_ms: u64,
    }

    /// Publishes odd values: NaN, infinities, a counter, a normal gauge.
    struct Odd {
        config: OddConfig,
        count: u64,
    }

    impl Collector for Odd {
        type Config = OddConfig;
        const KIND: &'static str = "odd";
        const DESCRIPTION: &'static str = "test: odd values";
        const DEFAULT_PATH: &'static str = "odd";
        const SAMPLE: &'static str = "## --- odd ---\n# [collector.odd]\n# restamp_after_ms = 0\n";

        fn new(config: OddConfig, _env: &Environment) -> Result<Self, CollectorError> {
            Ok(Odd { config, count: 0 })
        }

        async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
            self.count += 10;
            batch.gauge("nan", f64::NAN);
            batch.gauge("inf", f64::INFINITY);
            batch.gauge("ok", 1.5);
            batch.counter("count", self.count);
            if self.config.restamp_after_ms > 0 && self.count > 10 {
                std::thread::sleep(Duration::from_millis(self.config.restamp_after_ms));
                batch.stamp_now();
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn nan_and_infinity_are_dropped_as_the_agent_drops_them() {
        let mut h = Harness::<Odd>::new(OddConfig::default(), Environment::default()).unwrap();
        let first = h.collect().await.unwrap();
        assert_eq!(first.to_lines(), "ok 1.5\n");
        assert_eq!(first.samples, 4);
        assert_eq!(first.report.non_finite, 2);
        let second = h.collect_after(Duration::from_secs(5)).await.unwrap();
        assert_eq!(second.to_lines(), "count 2\nok 1.5\n");
        assert_eq!(
            second.timestamp - first.timestamp,
            5,
            "the wall clock follows the harness's"
        );
    }

    #[tokio::test]
    async fn filters_are_the_agents() {
        let mut h = Harness::<Odd>::new(OddConfig::default(), Environment::default()).unwrap();
        h.set_filter(NameFilter::new(&[], &["o".into()]).unwrap());
        h.collect().await.unwrap();
        let p = h.collect_after(Duration::from_secs(1)).await.unwrap();
        assert_eq!(p.to_lines(), "count 10\n");
        assert_eq!(p.report.filtered, 1);
    }

    #[tokio::test]
    async fn a_batch_stamped_again_is_published_as_of_its_new_stamp() {
        // The second run stamps its batch again 200 ms after it started.
        let config = OddConfig {
            restamp_after_ms: 200,
        };
        let mut h = Harness::<Odd>::new(config, Environment::default()).unwrap();
        h.collect().await.unwrap();
        let p = h.collect().await.unwrap();
        // 10 counted over the ~200 ms between the stamps, not over the
        // microseconds between the starts of the runs.
        let rate = p.get("count").unwrap();
        assert!(rate > 25.0 && rate <= 50.0, "{rate}");
        // On a clock moved ahead, the harness's stamp stays: rates are exact.
        let p = h.collect_after(Duration::from_secs(10)).await.unwrap();
        assert_eq!(p.get("count"), Some(1.0));
    }
}
