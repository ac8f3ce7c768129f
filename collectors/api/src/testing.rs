//! A harness for collector authors: build a collector from its options, run
//! it the way the agent does (counters become rates), and look at what would
//! be published.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::batch::Batch;
use crate::collector::{Collector, Environment};
use crate::error::CollectorError;
use crate::rate::RateTracker;

/// Runs one collector like the agent would, without an agent.
pub struct Harness<C: Collector> {
    collector: C,
    rates: RateTracker,
    batch: Batch,
    clock: Instant,
}

/// What one run published: metric names (below the collector's path) and
/// their values, sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Published {
    /// Name → value.
    pub metrics: BTreeMap<String, f64>,
    /// How many samples the run added (counters with no rate yet included).
    pub samples: usize,
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
        Ok(Harness {
            collector: C::new(config, &env)?,
            rates: RateTracker::default(),
            batch: Batch::new(),
            clock: Instant::now(),
        })
    }

    /// Runs the collector once, stamped with the real current time.
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

    async fn collect_at(&mut self, at: Instant) -> Result<Published, CollectorError> {
        self.batch.clear();
        self.batch.stamp(at, SystemTime::now());
        self.collector.collect(&mut self.batch).await?;
        // As the agent: a run over the batch's bound fails.
        self.batch.check_limit()?;
        let mut published = Published {
            samples: self.batch.len(),
            ..Published::default()
        };
        for sample in self.batch.iter() {
            if let Some(v) = self.rates.publishable(&sample, at) {
                published.metrics.insert(sample.name.to_owned(), v);
            }
        }
        self.rates.end_cycle(u64::MAX);
        Ok(published)
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
