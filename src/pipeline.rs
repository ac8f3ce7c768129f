//! From a collector's batch to the metrics handed to outputs: the instance's
//! path prefix added to what [`carat_collector::publish`] publishes.
//!
//! Filters, rates and the dropping of NaN are not here: they are
//! [`carat_collector::publish::Publisher`]'s, the function the test harness
//! uses too, so a collector's tests see what the agent publishes.

use carat_collector::{name, publish, Batch};

pub use carat_collector::publish::{NameFilter, PublishReport};

use crate::metrics::MetricBatch;

/// `<prefix>.<host>[.<suffix>].<collector path>`, each component sanitised.
pub fn metric_prefix(
    path_prefix: &str,
    host: &str,
    path_suffix: &str,
    collector_path: &str,
) -> String {
    let mut out = String::new();
    for part in [path_prefix, host, path_suffix, collector_path] {
        name::push_path(&mut out, part);
    }
    out
}

/// Turns the batches of one collector instance into named metrics. Holds the
/// instance's rate state, which outlives the collector itself (a collector
/// rebuilt after a panic keeps its rates).
#[derive(Debug)]
pub struct Publisher {
    prefix: String,
    inner: publish::Publisher,
}

impl Publisher {
    /// A publisher for metrics under `prefix` (see [`metric_prefix`]).
    pub fn new(prefix: String, filter: NameFilter) -> Self {
        Publisher {
            prefix,
            inner: publish::Publisher::new(filter),
        }
    }

    /// The prefix of every path this publisher writes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Publishes `batch` ([`publish::Publisher::publish`]) under the prefix.
    pub fn publish(&mut self, batch: &Batch) -> (MetricBatch, PublishReport) {
        let mut out =
            MetricBatch::with_capacity(batch.unix_seconds(), batch.len(), self.prefix.len() + 24);
        let prefix = &self.prefix;
        let report = self
            .inner
            .publish(batch, |m| out.push(prefix, m.name, m.value, m.increase));
        (out, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant, SystemTime};

    #[test]
    fn prefix_is_sanitised_and_skips_empty_parts() {
        assert_eq!(
            metric_prefix("servers", "web 01\n", "", "cpu"),
            "servers.web_01_.cpu"
        );
        assert_eq!(
            metric_prefix("servers", "a.b", "dc1", "haproxy.edge"),
            "servers.a.b.dc1.haproxy.edge"
        );
        assert_eq!(metric_prefix("", "h", "", "x"), "h.x");
    }

    #[test]
    fn counters_become_rates_and_gauges_pass() {
        let mut p = Publisher::new("servers.h.net".into(), NameFilter::default());
        let t0 = Instant::now();
        let mut b = Batch::new();
        b.stamp(t0, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        b.counter("rx", 100);
        b.gauge("up", 1.0);
        b.gauge("bad", f64::NAN);
        let (m, report) = p.publish(&b);
        let lines: Vec<_> = m
            .iter()
            .map(|m| (m.path.to_owned(), m.value, m.timestamp))
            .collect();
        assert_eq!(lines, [("servers.h.net.up".to_owned(), 1.0, 1_000)]);
        assert_eq!(report.non_finite, 1);

        b.clear();
        b.stamp(
            t0 + Duration::from_secs(4),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_004),
        );
        b.counter("rx", 500);
        let (m, _) = p.publish(&b);
        let got: Vec<_> = m.iter().map(|m| (m.path, m.value, m.increase)).collect();
        assert_eq!(got, [("servers.h.net.rx", 100.0, Some(400))]);
    }
}
